package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

const adminUsage = `usage:
  registrar admin add EMAIL --role ROLE   (ROLE is owner, finance or staff)
  registrar admin password EMAIL
  registrar admin list
The password is read from standard input (one line), never from the command line.`

// adminArgs is a parsed "registrar admin" command line.
type adminArgs struct {
	cmd   string // add, password, list
	email string
	role  admin.Role
}

// parseAdminArgs parses what follows "admin". A password on the command
// line is refused: it would stay in the shell's history and show in ps.
func parseAdminArgs(args []string) (adminArgs, error) {
	var a adminArgs
	for _, arg := range args {
		if name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "="); strings.HasPrefix(arg, "-") && (name == "password" || name == "p") {
			return a, errors.New("admin: passwords are never taken from the command line (they would stay in the shell history and show in ps); write the password to standard input instead, e.g. registrar admin password EMAIL < file")
		}
	}
	if len(args) == 0 {
		return a, fmt.Errorf("admin: name a command\n%s", adminUsage)
	}
	a.cmd = args[0]
	rest := args[1:]
	var positional []string
	for i := 0; i < len(rest); i++ {
		arg := rest[i]
		switch {
		case arg == "--role" || arg == "-role":
			if i+1 >= len(rest) {
				return a, fmt.Errorf("admin: --role needs a value: owner, finance or staff\n%s", adminUsage)
			}
			i++
			a.role = admin.Role(rest[i])
		case strings.HasPrefix(arg, "--role=") || strings.HasPrefix(arg, "-role="):
			_, v, _ := strings.Cut(arg, "=")
			a.role = admin.Role(v)
		case strings.HasPrefix(arg, "-"):
			return a, fmt.Errorf("admin: unknown flag %q\n%s", arg, adminUsage)
		default:
			positional = append(positional, arg)
		}
	}
	switch a.cmd {
	case "add", "password":
		if len(positional) != 1 {
			return a, fmt.Errorf("admin %s: name exactly one account email\n%s", a.cmd, adminUsage)
		}
		email, err := accountEmail(positional[0])
		if err != nil {
			return a, fmt.Errorf("admin %s: %w", a.cmd, err)
		}
		a.email = email
		if a.cmd == "add" && !a.role.Valid() {
			if a.role == "" {
				return a, fmt.Errorf("admin add: give the account a role with --role owner, --role finance or --role staff\n%s", adminUsage)
			}
			return a, fmt.Errorf("admin add: unknown role %q; use owner, finance or staff", a.role)
		}
		if a.cmd == "password" && a.role != "" {
			return a, fmt.Errorf("admin password: --role cannot be changed here\n%s", adminUsage)
		}
	case "list":
		if len(positional) > 0 || a.role != "" {
			return a, fmt.Errorf("admin list takes no arguments\n%s", adminUsage)
		}
	default:
		return a, fmt.Errorf("admin: unknown command %q\n%s", a.cmd, adminUsage)
	}
	return a, nil
}

// checkAdminArgs validates the command line before anything is opened.
func checkAdminArgs(args []string) error {
	_, err := parseAdminArgs(args)
	return err
}

// accountEmail is a login email: a bare address, lower-cased.
func accountEmail(v string) (string, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" || len(v) > 254 {
		return "", fmt.Errorf("%q is not an email address; use the address the organiser logs in with, e.g. ada@example.org", v)
	}
	return v, nil
}

// adminCommand runs "registrar admin ...".
func adminCommand(ctx context.Context, args []string, st admin.Store, stdin io.Reader, stdout, stderr io.Writer) error {
	a, err := parseAdminArgs(args)
	if err != nil {
		return err
	}
	switch a.cmd {
	case "list":
		accounts, err := st.Accounts(ctx)
		if err != nil {
			return fmt.Errorf("admin list: %w", err)
		}
		if len(accounts) == 0 {
			fmt.Fprintln(stdout, "no accounts yet: the first start creates the owner REGISTRAR_ADMIN_EMAIL, or run registrar admin add EMAIL --role owner")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "EMAIL\tROLE\tCREATED\tLAST LOGIN")
		for _, acc := range accounts {
			last := "never"
			if !acc.LastLoginAt.IsZero() {
				last = acc.LastLoginAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", acc.Email, acc.Role, acc.CreatedAt.UTC().Format(time.RFC3339), last)
		}
		return tw.Flush()
	case "add":
		if _, err := st.AccountByEmail(ctx, a.email); err == nil {
			return fmt.Errorf("admin add: an account %s exists already; change its password with registrar admin password %s", a.email, a.email)
		} else if !errors.Is(err, registration.ErrNotFound) {
			return fmt.Errorf("admin add: %w", err)
		}
		hash, err := readPassword(stdin, stderr, a.email)
		if err != nil {
			return fmt.Errorf("admin add: %w", err)
		}
		acc, err := st.CreateAccount(ctx, admin.Account{Email: a.email, PasswordHash: hash, Role: a.role, CreatedAt: time.Now().UTC()})
		if errors.Is(err, admin.ErrAccountExists) {
			return fmt.Errorf("admin add: an account %s exists already; change its password with registrar admin password %s", a.email, a.email)
		}
		if err != nil {
			return fmt.Errorf("admin add: %w", err)
		}
		if err := st.Audit(ctx, registration.AuditEntry{At: time.Now().UTC(), Actor: "cli", Action: "account_add",
			Detail: fmt.Sprintf("account %s added with role %s", acc.Email, acc.Role)}); err != nil {
			return fmt.Errorf("admin add: audit: %w", err)
		}
		fmt.Fprintf(stdout, "added %s (%s)\n", acc.Email, acc.Role)
		return nil
	case "password":
		acc, err := st.AccountByEmail(ctx, a.email)
		if errors.Is(err, registration.ErrNotFound) {
			return fmt.Errorf("admin password: there is no account %s; create it with registrar admin add %s --role ROLE", a.email, a.email)
		}
		if err != nil {
			return fmt.Errorf("admin password: %w", err)
		}
		hash, err := readPassword(stdin, stderr, a.email)
		if err != nil {
			return fmt.Errorf("admin password: %w", err)
		}
		if err := st.SetPassword(ctx, acc.ID, hash); err != nil {
			return fmt.Errorf("admin password: %w", err)
		}
		if err := st.Audit(ctx, registration.AuditEntry{At: time.Now().UTC(), Actor: "cli", Action: "password_set",
			Detail: "password of " + acc.Email + " set; its sessions ended"}); err != nil {
			return fmt.Errorf("admin password: audit: %w", err)
		}
		fmt.Fprintf(stdout, "password of %s changed; its sessions were ended\n", acc.Email)
		return nil
	}
	return fmt.Errorf("admin: unknown command %q", a.cmd)
}

// readPassword prompts on stderr, reads one line from stdin and returns its
// argon2id hash.
func readPassword(stdin io.Reader, stderr io.Writer, email string) (string, error) {
	fmt.Fprintf(stderr, "Password for %s (at least %d characters), then Enter: ", email, admin.MinPasswordLength)
	line, err := bufio.NewReader(stdin).ReadString('\n')
	fmt.Fprintln(stderr)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return "", errors.New("no password on standard input; type it, or pipe it in (e.g. registrar admin password EMAIL < file)")
	}
	if len([]rune(password)) < admin.MinPasswordLength {
		return "", fmt.Errorf("the password is shorter than %d characters; choose a longer one (a passphrase of several words works well)", admin.MinPasswordLength)
	}
	hash, err := admin.HashPassword(password)
	if err != nil {
		return "", err
	}
	return hash, nil
}

// bootstrapOwner creates the first owner account when there is none:
// REGISTRAR_ADMIN_EMAIL with REGISTRAR_ADMIN_PASSWORD or, when that is
// unset, a generated password, which is printed once to stderr — never
// through the log, which may be kept in a file. Only its hash is stored.
// Several processes starting at once create one account: the others find
// it taken and print nothing.
func bootstrapOwner(ctx context.Context, st admin.Store, email, password, baseURL string, stderr io.Writer, log *slog.Logger) error {
	n, err := st.CountAccounts(ctx)
	if err != nil {
		return fmt.Errorf("back office accounts: %w", err)
	}
	if n > 0 {
		return nil
	}
	generated := password == ""
	if generated {
		password = admin.GeneratePassword()
	} else if len([]rune(password)) < admin.MinPasswordLength {
		return fmt.Errorf("REGISTRAR_ADMIN_PASSWORD: shorter than %d characters; choose a longer one, or unset it to have a strong one generated and printed once", admin.MinPasswordLength)
	}
	hash, err := admin.HashPassword(password)
	if err != nil {
		return fmt.Errorf("first owner account: %w", err)
	}
	_, err = st.CreateAccount(ctx, admin.Account{Email: email, PasswordHash: hash, Role: admin.RoleOwner, CreatedAt: time.Now().UTC()})
	if errors.Is(err, admin.ErrAccountExists) {
		return nil // another process created it first
	}
	if err != nil {
		return fmt.Errorf("first owner account: %w", err)
	}
	log.Info("created the first owner account of the back office", "email", email, "password_generated", generated)
	if generated {
		printBox(stderr, []string{
			"The back office's first owner account was created.",
			"",
			"  Log in at:  " + baseURL + "/admin",
			"  Email:      " + email,
			"  Password:   " + password,
			"",
			"This password is shown only this once: keep it in a password manager.",
			"Change it with: registrar admin password " + email,
		})
	}
	return nil
}

// printBox writes lines framed in a box, to stand out among log lines.
func printBox(w io.Writer, lines []string) {
	width := 0
	for _, l := range lines {
		width = max(width, len([]rune(l)))
	}
	border := "+" + strings.Repeat("-", width+2) + "+"
	var b strings.Builder
	b.WriteString("\n" + border + "\n")
	for _, l := range lines {
		b.WriteString("| " + l + strings.Repeat(" ", width-len([]rune(l))) + " |\n")
	}
	b.WriteString(border + "\n\n")
	io.WriteString(w, b.String())
}

// ownerEmails are the owners' addresses, where organiser notices go unless
// REGISTRAR_NOTIFY_EMAIL names others.
func ownerEmails(ctx context.Context, st admin.Store) ([]string, error) {
	accounts, err := st.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range accounts {
		if a.Role == admin.RoleOwner {
			out = append(out, a.Email)
		}
	}
	return out, nil
}

// newBackOffice builds the back office served under /admin, with River UI
// (jobs) at /admin/jobs/ for owners.
func newBackOffice(st admin.Store, office *pipeline.Office, ev *event.Event, jobs http.Handler, log *slog.Logger) (http.Handler, error) {
	h, err := admin.New(admin.Deps{
		Store:   st,
		Actions: office,
		Preview: office,
		Event:   ev,
		Jobs:    jobs,
		Log:     log.With("component", "admin"),
	})
	if err != nil {
		return nil, fmt.Errorf("back office: %w", err)
	}
	return h, nil
}
