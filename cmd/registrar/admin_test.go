package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/sqlite"
)

// runAdmin runs "registrar admin ..." with stdin.
func runAdmin(t *testing.T, e env, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"admin"}, args...), e.get, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// account reads an account straight from the SQLite file.
func account(t *testing.T, dir, email string) admin.Account {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "registrar.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := sqlite.NewStore(db).AccountByEmail(context.Background(), email)
	if err != nil {
		t.Fatalf("account %s: %v", email, err)
	}
	return a
}

func checkPassword(t *testing.T, a admin.Account, password string, want bool) {
	t.Helper()
	ok, err := admin.VerifyPassword(a.PasswordHash, password)
	if err != nil || ok != want {
		t.Errorf("password %q of %s verifies %v (%v), want %v", password, a.Email, ok, err, want)
	}
}

func TestAdminArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		want    adminArgs
		wantErr string
	}{
		{args: []string{"add", "Ada@Example.org", "--role", "finance"}, want: adminArgs{cmd: "add", email: "ada@example.org", role: admin.RoleFinance}},
		{args: []string{"add", "--role=staff", "bob@example.org"}, want: adminArgs{cmd: "add", email: "bob@example.org", role: admin.RoleStaff}},
		{args: []string{"password", "ada@example.org"}, want: adminArgs{cmd: "password", email: "ada@example.org"}},
		{args: []string{"list"}, want: adminArgs{cmd: "list"}},
		{args: []string{"add", "ada@example.org", "--role", "owner", "--password", "hunter2hunter2"}, wantErr: "never taken from the command line"},
		{args: []string{"password", "ada@example.org", "--password=hunter2hunter2"}, wantErr: "never taken from the command line"},
		{args: []string{"add", "ada@example.org", "-p", "x"}, wantErr: "never taken from the command line"},
		{args: []string{"add", "ada@example.org"}, wantErr: "--role owner"},
		{args: []string{"add", "ada@example.org", "--role", "root"}, wantErr: `unknown role "root"`},
		{args: []string{"add", "ada@example.org", "--role"}, wantErr: "--role needs a value"},
		{args: []string{"add", "not-an-email", "--role", "staff"}, wantErr: "is not an email address"},
		{args: []string{"add", "a@example.org", "b@example.org", "--role", "staff"}, wantErr: "exactly one"},
		{args: []string{"password"}, wantErr: "exactly one"},
		{args: []string{"list", "extra"}, wantErr: "takes no arguments"},
		{args: []string{"remove", "ada@example.org"}, wantErr: `unknown command "remove"`},
		{args: nil, wantErr: "name a command"},
		{args: []string{"list", "--verbose"}, wantErr: `unknown flag "--verbose"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			got, err := parseAdminArgs(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseAdminArgs = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestAdminCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := baseEnv(dir)

	out, prompt, err := runAdmin(t, e, "correct horse battery\n", "add", "Ada@Example.org", "--role", "finance")
	if err != nil || !strings.Contains(out, "added ada@example.org (finance)") {
		t.Fatalf("add: %q, %v", out, err)
	}
	if !strings.Contains(prompt, "Password for ada@example.org") || strings.Contains(prompt+out, "correct horse") {
		t.Errorf("prompt %q / output %q: want a prompt on stderr and no echo", prompt, out)
	}
	a := account(t, dir, "ada@example.org")
	if a.Role != admin.RoleFinance {
		t.Errorf("role %s", a.Role)
	}
	checkPassword(t, a, "correct horse battery", true)

	refusals := []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"duplicate", "another long password\n", []string{"add", "ada@example.org", "--role", "staff"}, "exists already"},
		{"short password", "short\n", []string{"add", "bob@example.org", "--role", "staff"}, "shorter than 12 characters"},
		{"no password", "", []string{"add", "bob@example.org", "--role", "staff"}, "no password on standard input"},
		{"unknown account", "another long password\n", []string{"password", "nobody@example.org"}, "registrar admin add nobody@example.org"},
		{"argv password", "", []string{"password", "ada@example.org", "--password", "another long password"}, "never taken from the command line"},
	}
	for _, r := range refusals {
		if _, _, err := runAdmin(t, e, r.stdin, r.args...); err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("%s: error %v, want one containing %q", r.name, err, r.want)
		}
	}

	if out, _, err := runAdmin(t, e, "a new passphrase here\r\n", "password", "ada@example.org"); err != nil || !strings.Contains(out, "password of ada@example.org changed") {
		t.Fatalf("password: %q, %v", out, err)
	}
	a = account(t, dir, "ada@example.org")
	checkPassword(t, a, "a new passphrase here", true)
	checkPassword(t, a, "correct horse battery", false)

	if _, _, err := runAdmin(t, e, "staff member password\n", "add", "bob@example.org", "--role", "staff"); err != nil {
		t.Fatal(err)
	}
	out, _, err = runAdmin(t, e, "", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "EMAIL") ||
		!regexp.MustCompile(`^ada@example\.org\s+finance\s+\S+\s+never$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^bob@example\.org\s+staff\s`).MatchString(lines[2]) {
		t.Errorf("list:\n%s", out)
	}
}

var passwordLine = regexp.MustCompile(`\|\s+Password:\s+(\S+)\s+\|`)

// TestFirstOwner checks the first start: the owner account is created with
// a generated password, printed once in a box on stderr and never in a log
// line; later starts print nothing.
func TestFirstOwner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := baseEnv(dir)
	e["REGISTRAR_ADMIN_EMAIL"] = "Owner@Example.org"
	s := startRun(t, e)
	s.stop(t)
	logs := s.logs.String()
	m := passwordLine.FindAllStringSubmatch(logs, -1)
	if len(m) != 1 {
		t.Fatalf("want the password printed once, got %d times:\n%s", len(m), logs)
	}
	password := m[0][1]
	if len(password) < admin.MinPasswordLength {
		t.Errorf("generated password %q is short", password)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.HasPrefix(line, "time=") && strings.Contains(line, password) {
			t.Errorf("the password is in a log line: %s", line)
		}
	}
	if !strings.Contains(logs, "owner@example.org") || !strings.Contains(logs, "/admin") {
		t.Errorf("the box does not say where and as whom to log in:\n%s", logs)
	}
	a := account(t, dir, "owner@example.org")
	if a.Role != admin.RoleOwner {
		t.Errorf("first account's role %s", a.Role)
	}
	checkPassword(t, a, password, true)

	again := startRun(t, e)
	again.stop(t)
	if strings.Contains(again.logs.String(), password) || passwordLine.MatchString(again.logs.String()) {
		t.Errorf("the second start printed a password:\n%s", again.logs)
	}
}

func TestFirstOwnerWithPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := baseEnv(dir)
	e["REGISTRAR_ADMIN_PASSWORD"] = "short"
	var out, logs bytes.Buffer
	if err := run(context.Background(), nil, e.get, strings.NewReader(""), &out, &logs); err == nil ||
		!strings.Contains(err.Error(), "REGISTRAR_ADMIN_PASSWORD") {
		t.Fatalf("a short REGISTRAR_ADMIN_PASSWORD: %v", err)
	}
	e["REGISTRAR_ADMIN_PASSWORD"] = "the organisers' passphrase"
	s := startRun(t, e)
	s.stop(t)
	if passwordLine.MatchString(s.logs.String()) || strings.Contains(s.logs.String(), "organisers' passphrase") {
		t.Errorf("a configured password was printed:\n%s", s.logs)
	}
	checkPassword(t, account(t, dir, "admin@localhost"), "the organisers' passphrase", true)
}
