package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/storetest"
)

// runAttendee runs "registrar attendee ..." with stdin.
func runAttendee(t *testing.T, e env, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"attendee"}, args...), e.get, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// dumpCells returns every text cell of every table of the SQLite database
// at path, as "table.column: value".
func dumpCells(t *testing.T, path string) []string {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	return storetest.TextCells(t, db)
}

func holding(cells []string, values ...string) []string { return storetest.Holding(cells, values...) }

// TestAttendeeExportErase registers an attendee twice (and someone else)
// through the running service, then exports her data by email and by id
// and erases both registrations from the command line: afterwards no text
// column of any table and no outbox file holds her email or name, the
// other attendee's data is untouched, and erasing again is a no-op.
func TestAttendeeExportErase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := baseEnv(dir)
	s := startRun(t, e)
	var ids []string
	for _, b := range []string{
		registrationBody(0, "standard", true, "4111 1111 1111 1111"),
		strings.Replace(registrationBody(0, "student", false, "4111 1111 1111 1111"), "Lovelace-0", "Lovelace-0 King", 1),
		registrationBody(1, "standard", true, "4111 1111 1111 1111"),
	} {
		code, c, err := post(http.DefaultClient, s.url, b, "")
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("register: %d %v", code, err)
		}
		ids = append(ids, c.ID)
	}
	waitCompleted(t, s.url, ids, 30*time.Second)
	s.stop(t)
	outbox := filepath.Join(dir, "outbox")
	dbPath := filepath.Join(dir, "registrar.db")
	// (The other attendee shares her billing address: the export checks it went.)
	ada := []string{"ada.0@example.org", "Lovelace-0"}
	if len(holding(dumpCells(t, dbPath), ada...)) == 0 {
		t.Fatal("the database does not hold the attendee's data before the erasure: the test would prove nothing")
	}
	files := func() map[string]string {
		entries, err := os.ReadDir(outbox)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, en := range entries {
			raw, err := os.ReadFile(filepath.Join(outbox, en.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m[en.Name()] = string(raw)
		}
		return m
	}
	if f := files(); f[ids[0]+".eml"] == "" || f[ids[2]+".eml"] == "" {
		t.Fatalf("outbox before the erasure: %d files, without the confirmations", len(f))
	}

	// Export by email: both of her registrations, newest first, with the
	// consent's time and text; by id: one.
	out, _, err := runAttendee(t, e, "", "export", "ADA.0@example.org")
	if err != nil {
		t.Fatalf("export by email: %v", err)
	}
	var x admin.DataExport
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, out)
	}
	if len(x.Registrations) != 2 {
		t.Fatalf("export by email holds %d registrations; want 2:\n%s", len(x.Registrations), out)
	}
	got := map[string]admin.RegistrationExport{}
	for _, r := range x.Registrations {
		got[r.ID] = r
	}
	first := got[ids[0]]
	if first.Attendee.LastName != "Lovelace-0" || first.Billing == nil || first.Billing.PostalCode != "SW1Y 4JH" ||
		first.Payment == nil || first.Payment.Reference == "" || first.Amount != "149.00" || first.Status != "completed" ||
		first.Newsletter.ConsentText != registration.NewsletterConsentText || first.Newsletter.ConsentedAt == nil ||
		len(first.Steps) != 3 || len(first.Emails) == 0 {
		t.Errorf("exported registration:\n%s", out)
	}
	if got[ids[1]].Newsletter.Consented || got[ids[1]].Ticket.ID != "student" {
		t.Errorf("second exported registration: %+v", got[ids[1]])
	}
	out, _, err = runAttendee(t, e, "", "export", ids[2])
	if err != nil || !strings.Contains(out, `"email": "Ada.1@Example.org"`) || strings.Contains(out, "Lovelace-0") {
		t.Errorf("export by id: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "nobody@example.org"}, "no registration has the email address nobody@example.org"},
		{[]string{"export", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}, "there is no registration zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"},
		{[]string{"erase", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "--yes"}, "there is no registration zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"},
		{[]string{"erase", "ada.0@example.org"}, "give a registration id, not an email address"},
		{[]string{"erase", "not-an-id"}, "is not a registration id"},
		{[]string{"erase", ids[0]}, "confirm with --yes"},
		{[]string{"forget", ids[0]}, "unknown command"},
	} {
		if _, _, err := runAttendee(t, e, "yes\n", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("attendee %v: %v; want an error saying %q", c.args, err, c.want)
		}
	}
	if len(holding(dumpCells(t, dbPath), "erased-")) != 0 {
		t.Fatal("a refused erase changed the database")
	}

	for _, id := range ids[:2] {
		out, _, err := runAttendee(t, e, "", "erase", id, "--yes")
		if err != nil || !strings.Contains(out, "erased the personal data of registration "+id) {
			t.Fatalf("erase %s: %v\n%s", id, err, out)
		}
	}
	if l := holding(dumpCells(t, dbPath), ada...); len(l) > 0 {
		t.Errorf("after the erasure the database still holds her data:\n%s", strings.Join(l, "\n"))
	}
	// Nor do the file's bytes: the rows' old versions, the index entries
	// and the pages freed are overwritten, not left for a file reader.
	for _, name := range []string{dbPath, dbPath + "-wal"} {
		raw, err := os.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range ada {
			if n := bytes.Count(bytes.ToLower(raw), []byte(strings.ToLower(v))); n > 0 {
				t.Errorf("%s still holds %q %d times in its bytes after the erasure", filepath.Base(name), v, n)
			}
		}
	}
	after := files()
	for name, content := range after {
		if strings.Contains(name, ids[0]) || strings.Contains(name, ids[1]) {
			t.Errorf("outbox file %s of an erased registration is left", name)
		}
		if len(holding([]string{content}, "ada.0@example.org", "Lovelace-0")) > 0 {
			t.Errorf("outbox file %s holds her data", name)
		}
	}
	if after[ids[2]+".eml"] == "" {
		t.Error("the other attendee's confirmation left the outbox")
	}
	if l := holding(dumpCells(t, dbPath), "ada.1@example.org"); len(l) == 0 {
		t.Error("the other attendee's data went too")
	}
	// Kept for the accounts, and said so in the export.
	out, _, err = runAttendee(t, e, "", "export", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	x = admin.DataExport{}
	if err := json.Unmarshal([]byte(out), &x); err != nil || len(x.Registrations) != 1 {
		t.Fatalf("export after the erasure: %v\n%s", err, out)
	}
	if r := x.Registrations[0]; r.AnonymisedAt == nil || r.Attendee.Email != registration.ErasedEmail(ids[0]) ||
		r.Amount != first.Amount || r.Payment == nil || r.Payment.Reference != first.Payment.Reference ||
		r.Billing == nil || r.Billing.Country != "GB" || r.Billing.Line1 != "" {
		t.Errorf("export after the erasure:\n%s", out)
	}
	// Twice: a clear no-op.
	out, _, err = runAttendee(t, e, "", "erase", ids[0], "--yes")
	if err != nil || !strings.Contains(out, "already erased") {
		t.Errorf("second erase: %v %q", err, out)
	}
}
