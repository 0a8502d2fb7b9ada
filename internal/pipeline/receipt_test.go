package pipeline_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// receipt is a confirmation email as a mail client reads it.
type receipt struct {
	header     mail.Header
	text, html string
	ics        string // the attached invitation, unfolded
	icsName    string
}

// readReceipt parses an outbox file with net/mail and mime/multipart: a
// multipart/mixed of the text and HTML alternatives and one base64 .ics.
func readReceipt(t *testing.T, path string) receipt {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	r := receipt{header: msg.Header}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/mixed" {
		t.Fatalf("Content-Type = %q (%v), want multipart/mixed", msg.Header.Get("Content-Type"), err)
	}
	mixed := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; ; i++ {
		p, err := mixed.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		mediaType, params, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 0 && mediaType == "multipart/alternative":
			alt := multipart.NewReader(p, params["boundary"])
			for _, want := range []string{"text/plain", "text/html"} {
				q, err := alt.NextPart()
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(q)
				if !strings.HasPrefix(q.Header.Get("Content-Type"), want) {
					t.Fatalf("alternative %q, want %s", q.Header.Get("Content-Type"), want)
				}
				if want == "text/plain" {
					r.text = string(body)
				} else {
					r.html = string(body)
				}
			}
		case i == 1 && mediaType == "text/calendar" && params["method"] == "PUBLISH":
			_, dparams, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
			if err != nil || p.Header.Get("Content-Transfer-Encoding") != "base64" {
				t.Fatalf("invitation headers %v (%v)", p.Header, err)
			}
			encoded, _ := io.ReadAll(p)
			data, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(encoded), "\r\n", ""))
			if err != nil {
				t.Fatal(err)
			}
			r.ics, r.icsName = strings.ReplaceAll(string(data), "\r\n ", ""), dparams["filename"]
		default:
			t.Fatalf("part %d is %s", i, mediaType)
		}
	}
	if r.text == "" || r.ics == "" {
		t.Fatalf("%s lacks the text or the invitation", path)
	}
	return r
}

// icsValue returns the value of the named property of the invitation.
func (r receipt) icsValue(t *testing.T, name string) string {
	t.Helper()
	for line := range strings.SplitSeq(r.ics, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
		if v, ok := strings.CutPrefix(line, name+";"); ok {
			return v
		}
	}
	return ""
}

// TestConfirmationIsAReceipt: the confirmation of a paid ticket carries the
// payment (reference, date in the event's zone, amount, card, billing
// address), the organiser (also as Reply-To) and the event's invitation.
func TestConfirmationIsAReceipt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	id := h.register(t, 1, false)
	r := h.waitStatus(t, id, registration.StatusCompleted)
	got := readReceipt(t, filepath.Join(h.outboxDir, id+".eml"))

	if a, err := mail.ParseAddress(got.header.Get("Reply-To")); err != nil || a.Address != "hello@gopherfest.example" || a.Name != "GopherFest e.V." {
		t.Errorf("Reply-To = %q (%v), want the organiser", got.header.Get("Reply-To"), err)
	}
	if r.Payment.Reference == "" {
		t.Fatal("the registration has no payment reference")
	}
	paidOn := r.CreatedAt.In(time.FixedZone("", 2*60*60)).Format("2 January 2006, 15:04 (UTC-07:00)")
	for _, want := range []string{
		"€149.00", "Visa •••• 1111", r.Payment.Reference, paidOn,
		"12 St James's Square", "SW1Y 4JH London", "GB",
		"Full refund until 10 May 2027", "GopherFest e.V.", "hello@gopherfest.example", "https://gopherfest.example",
		"Thursday, 10 June 2027, 09:00 – Friday, 11 June 2027, 18:00 (UTC+02:00)", "Kulturbrauerei, Berlin",
	} {
		if !strings.Contains(got.text, want) {
			t.Errorf("text part lacks %q:\n%s", want, got.text)
		}
	}
	for _, part := range []string{got.text, got.html, got.ics} {
		if strings.Contains(part, testCardRaw) || strings.Contains(part, testCard) {
			t.Errorf("the email holds the card number:\n%s", part)
		}
	}
	if got.icsName != "gopherfest-2027.ics" {
		t.Errorf("invitation file %q", got.icsName)
	}
	for name, want := range map[string]string{
		"UID":       id + "@registrar.test",
		"DTSTART":   "20270610T070000Z",
		"DTEND":     "20270611T160000Z",
		"SUMMARY":   "GopherFest 2027",
		"LOCATION":  `Kulturbrauerei\, Berlin`,
		"ORGANIZER": `CN="GopherFest e.V.":mailto:hello@gopherfest.example`,
		"URL":       "http://registrar.test/registrations/" + id,
	} {
		if v := got.icsValue(t, name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
}

// TestConfirmationOfAFreeTicket: no payment block, never "paid".
func TestConfirmationOfAFreeTicket(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	req := request(2, false)
	req.Ticket = "community"
	id, err := h.svc.Register(t.Context(), req, "")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	h.waitStatus(t, id, registration.StatusCompleted)
	got := readReceipt(t, filepath.Join(h.outboxDir, id+".eml"))
	if !strings.Contains(got.text, "Free ticket") || !strings.Contains(got.html, "Free ticket") {
		t.Errorf("the email does not say \"Free ticket\":\n%s", got.text)
	}
	for _, part := range []string{got.text, got.html, got.ics} {
		for _, bad := range []string{"paid", "Paid", "PAID", "Receipt", "RECEIPT", "€", "St James"} {
			if strings.Contains(part, bad) {
				t.Errorf("the free ticket's email contains %q:\n%s", bad, part)
			}
		}
	}
	if got.icsValue(t, "UID") != id+"@registrar.test" {
		t.Errorf("UID = %q", got.icsValue(t, "UID"))
	}
}

// TestResentConfirmationKeepsTheInvitation: a confirmation sent again from
// the back office carries the same calendar UID, so the attendee's calendar
// updates its entry instead of adding a second one.
func TestResentConfirmationKeepsTheInvitation(t *testing.T) {
	t.Parallel()
	h := newOfficeHarness(t, "sqlite", officeOptions{})
	id := h.register(t, "standard", 1)
	h.waitStatus(t, id, registration.StatusCompleted)
	if err := h.office.Resend(t.Context(), organiser, id, "ada@example.net", "k-receipt-1"); err != nil {
		t.Fatalf("Resend: %v", err)
	}
	h.waitMessage(t, "resend-k-receipt-1", registration.MessageSent)

	first := readReceipt(t, filepath.Join(h.outboxDir, id+".eml"))
	again := readReceipt(t, filepath.Join(h.outboxDir, "resend-k-receipt-1.eml"))
	if first.header.Get("Message-Id") == again.header.Get("Message-Id") {
		t.Fatalf("both emails have Message-ID %q", first.header.Get("Message-Id"))
	}
	uid := first.icsValue(t, "UID")
	if uid != id+"@registrar.test" || again.icsValue(t, "UID") != uid {
		t.Errorf("UID %q, then %q when sent again; want %s@registrar.test both times", uid, again.icsValue(t, "UID"), id)
	}
	// This event file names no organiser and no end: no Reply-To, no
	// ORGANIZER, no DTEND.
	if v := again.header.Get("Reply-To"); v != "" {
		t.Errorf("Reply-To = %q without an organiser", v)
	}
	if again.icsValue(t, "ORGANIZER") != "" || again.icsValue(t, "DTEND") != "" {
		t.Errorf("invitation has ORGANIZER or DTEND:\n%s", again.ics)
	}
}
