package email_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/email"
)

func newOutbox(t testing.TB) *email.Outbox {
	t.Helper()
	o, err := email.NewOutbox(filepath.Join(t.TempDir(), "data", "outbox"))
	if err != nil {
		t.Fatalf("NewOutbox() = %v", err)
	}
	return o
}

// dirEntries lists every entry in dir, hidden temp files included.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestNewOutbox(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "b")
	o, err := email.NewOutbox(dir)
	if err != nil {
		t.Fatalf("NewOutbox() = %v", err)
	}
	if o.Dir != dir {
		t.Errorf("Dir = %q, want %q", o.Dir, dir)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("outbox directory not created: %v", err)
	}
	if perm := fi.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("directory mode = %v, want at most 0750", perm)
	}
	if _, err := email.NewOutbox(dir); err != nil {
		t.Errorf("NewOutbox() on an existing directory = %v", err)
	}
	if _, err := email.NewOutbox(""); err == nil {
		t.Errorf("NewOutbox(\"\") = nil error")
	}
}

func TestOutboxSend(t *testing.T) {
	t.Parallel()
	o := newOutbox(t)
	ctx := t.Context()
	m := validMessage()

	ref, err := o.Send(ctx, m)
	if err != nil {
		t.Fatalf("Send() = %v", err)
	}
	if want := "<reg-0123456789abcdef@gopherfest.example>"; ref != want {
		t.Errorf("Send() = %q, want %q", ref, want)
	}
	if got, want := dirEntries(t, o.Dir), []string{"reg-0123456789abcdef.eml"}; !slices.Equal(got, want) {
		t.Fatalf("outbox holds %q, want %q", got, want)
	}
	path := filepath.Join(o.Dir, "reg-0123456789abcdef.eml")
	wantBytes, _ := m.Bytes()
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, wantBytes) {
		t.Errorf("file content differs from Message.Bytes() (%v)", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&^0o640 != 0 {
		t.Errorf("file mode = %v, %v; want at most 0640", fi.Mode().Perm(), err)
	}

	// Resending (a retried job) overwrites the same file.
	m.Text = "Hello again.\n"
	ref2, err := o.Send(ctx, m)
	if err != nil || ref2 != ref {
		t.Fatalf("second Send() = %q, %v; want %q", ref2, err, ref)
	}
	if got, want := dirEntries(t, o.Dir), []string{"reg-0123456789abcdef.eml"}; !slices.Equal(got, want) {
		t.Fatalf("after resending, outbox holds %q, want %q", got, want)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, parts := parseMessage(t, raw); parts[0].body != "Hello again.\r\n" {
		t.Errorf("resent file not overwritten: text part %q", parts[0].body)
	}

	// Another message gets its own file.
	other := validMessage()
	other.ID = "reg-2"
	if _, err := o.Send(ctx, other); err != nil {
		t.Fatalf("Send(other) = %v", err)
	}
	if got, want := dirEntries(t, o.Dir), []string{"reg-0123456789abcdef.eml", "reg-2.eml"}; !slices.Equal(got, want) {
		t.Errorf("outbox holds %q, want %q", got, want)
	}
}

func TestOutboxFileNames(t *testing.T) {
	t.Parallel()
	safe := regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*\.eml$`)
	tests := []struct {
		name     string
		id       string
		wantFile string // "" means sanitised: checked against safe only
	}{
		{"clean", "reg-0123456789abcdef", "reg-0123456789abcdef.eml"},
		{"dots and underscores", "reg_1.a", "reg_1.a.eml"},
		{"slash", "a/b", ""},
		{"specials", "a+b=c?d", ""},
		{"path separators", "x/y/z.eml", ""},
		{"long", strings.Repeat("x", 200), ""},
	}
	o := newOutbox(t)
	seen := map[string]string{}
	for _, tt := range tests {
		m := validMessage()
		m.ID = tt.id
		if _, err := o.Send(t.Context(), m); err != nil {
			t.Errorf("%s: Send() = %v", tt.name, err)
			continue
		}
	}
	files := dirEntries(t, o.Dir)
	if len(files) != len(tests) {
		t.Fatalf("outbox holds %d files %q, want one per ID (%d)", len(files), files, len(tests))
	}
	for _, f := range files {
		if !safe.MatchString(f) || len(f) > 255 {
			t.Errorf("unsafe file name %q", f)
		}
		raw, err := os.ReadFile(filepath.Join(o.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := parseMessage(t, raw)
		seen[msg.Header.Get("Message-Id")] = f
	}
	for _, tt := range tests {
		f, ok := seen["<"+tt.id+"@gopherfest.example>"]
		if !ok {
			t.Errorf("%s: no file for ID %q", tt.name, tt.id)
			continue
		}
		if tt.wantFile != "" && f != tt.wantFile {
			t.Errorf("%s: file %q, want %q", tt.name, f, tt.wantFile)
		}
	}
}

func TestOutboxRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(m *email.Message)
	}{
		{"empty ID", func(m *email.Message) { m.ID = "" }},
		{"ID escaping the directory", func(m *email.Message) { m.ID = "../../etc/passwd" }},
		{"ID with injection", func(m *email.Message) { m.ID = "reg" + evil }},
		{"To.Name injection", func(m *email.Message) { m.To.Name = "Ada" + evil }},
		{"From.Name injection", func(m *email.Message) { m.From.Name = "GopherFest" + evil }},
		{"Subject injection", func(m *email.Message) { m.Subject = "Hi" + evil }},
		{"To.Email injection", func(m *email.Message) { m.To.Email = "ada@example.org" + evil }},
		{"header value injection", func(m *email.Message) { m.Headers["X-Registration-ID"] = "1" + evil }},
		{"header name injection", func(m *email.Message) { m.Headers = map[string]string{"Bcc: evil@example.org\r\nX-A": "1"} }},
		{"missing HTML", func(m *email.Message) { m.HTML = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newOutbox(t)
			m := validMessage()
			tt.mutate(&m)
			ref, err := o.Send(t.Context(), m)
			if err == nil || ref != "" {
				t.Fatalf("Send() = %q, %v; want an error", ref, err)
			}
			if !errors.Is(err, email.ErrInvalidMessage) {
				t.Errorf("Send() = %v, want it to wrap ErrInvalidMessage", err)
			}
			if got := dirEntries(t, o.Dir); len(got) != 0 {
				t.Errorf("outbox holds %q, want nothing", got)
			}
			if _, err := os.Stat(filepath.Join(o.Dir, "..", "..", "etc")); err == nil {
				t.Errorf("something was written outside the outbox")
			}
		})
	}
}

func TestOutboxRenderedInjectionWritesNothing(t *testing.T) {
	t.Parallel()
	o := newOutbox(t)
	c := paidConfirmation()
	c.AttendeeFirstName = "Ada" + evil
	m, err := newRenderer(t).Render(c, organiser, sentAt)
	if err == nil {
		t.Fatal("Render() = nil error")
	}
	// A caller that ignored the error would send the zero Message.
	if _, err := o.Send(t.Context(), m); err == nil {
		t.Error("Send(zero Message) = nil error")
	}
	if got := dirEntries(t, o.Dir); len(got) != 0 {
		t.Errorf("outbox holds %q, want nothing", got)
	}
}

func TestOutboxCanceledContext(t *testing.T) {
	t.Parallel()
	o := newOutbox(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := o.Send(ctx, validMessage()); !errors.Is(err, context.Canceled) {
		t.Errorf("Send() = %v, want context.Canceled", err)
	}
	if got := dirEntries(t, o.Dir); len(got) != 0 {
		t.Errorf("outbox holds %q, want nothing", got)
	}
}

func TestOutboxConcurrentResend(t *testing.T) {
	t.Parallel()
	o := newOutbox(t)
	m := validMessage()
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			_, err := o.Send(t.Context(), m)
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Errorf("Send() = %v", err)
		}
	}
	if got, want := dirEntries(t, o.Dir), []string{"reg-0123456789abcdef.eml"}; !slices.Equal(got, want) {
		t.Errorf("outbox holds %q, want %q (no temp files left behind)", got, want)
	}
}

func TestOutboxMissingDirectory(t *testing.T) {
	t.Parallel()
	o := &email.Outbox{Dir: filepath.Join(t.TempDir(), "gone")}
	if _, err := o.Send(t.Context(), validMessage()); err == nil {
		t.Error("Send() into a missing directory = nil error")
	}
	if _, err := (&email.Outbox{}).Send(t.Context(), validMessage()); err == nil {
		t.Error("Send() with an empty Dir = nil error")
	}
}

func TestNewOutboxRemovesStaleTempFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stale := filepath.Join(dir, ".outbox-123.tmp")
	keep := filepath.Join(dir, "abc.eml")
	for _, f := range []string{stale, keep} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := email.NewOutbox(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file still there: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a sent message was removed: %v", err)
	}
}

// TestOutboxWritesReceipt: the .eml a mail client opens is the whole
// receipt: Reply-To, both alternatives and the invitation attached.
func TestOutboxWritesReceipt(t *testing.T) {
	t.Parallel()
	o := newOutbox(t)
	m, err := newRenderer(t).Render(paidConfirmation(), organiser, sentAt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Send(t.Context(), m); err != nil {
		t.Fatalf("Send() = %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(o.Dir, m.ID+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	checkWireFormat(t, raw, 78)
	msg, parts, attachments := parseMIME(t, raw)
	if got := msg.Header.Get("Reply-To"); got != `"GopherFest e.V." <hello@gopherfest.example>` {
		t.Errorf("Reply-To = %q", got)
	}
	if !strings.HasPrefix(msg.Header.Get("Content-Type"), "multipart/mixed;") {
		t.Errorf("Content-Type = %q, want multipart/mixed", msg.Header.Get("Content-Type"))
	}
	if len(parts) != 2 || parts[0].contentType != "text/plain; charset=utf-8" || parts[1].contentType != "text/html; charset=utf-8" {
		t.Fatalf("alternatives = %+v", parts)
	}
	for _, want := range []string{"€149.00", "Visa •••• 1111", "8MC585209K746392H", "SW1Y 4JH London"} {
		if !strings.Contains(parts[0].body, want) || !strings.Contains(parts[1].body, want) {
			t.Errorf("the receipt lacks %q", want)
		}
	}
	if len(attachments) != 1 {
		t.Fatalf("%d attachments, want 1", len(attachments))
	}
	a := attachments[0]
	if a.filename != "gopherfest-2027.ics" || a.contentType != "text/calendar; charset=utf-8; method=PUBLISH" {
		t.Errorf("attachment %q, %q", a.filename, a.contentType)
	}
	if ev := vevent(t, parseICS(t, a.data)); ev["UID"].value != m.ID+"@localhost" {
		t.Errorf("UID = %q", ev["UID"].value)
	}
}
