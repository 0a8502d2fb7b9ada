package pipeline_test

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/registration"
)

// newsletterEmail is one of the newsletter's requests to confirm, as the
// outbox holds it, decoded.
type newsletterEmail struct {
	file, to, subject, text, html string
	// token is the one in the email's link.
	token string
}

var confirmLink = regexp.MustCompile(`http://registrar\.test/newsletter/confirm/([A-Za-z0-9_-]+)`)

// newsletterEmails reads the newsletter's requests to confirm from the
// outbox, by file name.
func (h *harness) newsletterEmails(t *testing.T) []newsletterEmail {
	t.Helper()
	entries, err := os.ReadDir(h.outboxDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []newsletterEmail
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "newsletter-") || !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		f, err := os.Open(filepath.Join(h.outboxDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m := parseEmail(t, f)
		f.Close()
		m.file = e.Name()
		out = append(out, m)
	}
	return out
}

func parseEmail(t *testing.T, r io.Reader) newsletterEmail {
	t.Helper()
	msg, err := mail.ReadMessage(r)
	if err != nil {
		t.Fatalf("read email: %v", err)
	}
	var m newsletterEmail
	m.to = msg.Header.Get("To")
	if m.subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	parts := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := parts.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
			m.text = string(body)
		} else {
			m.html = string(body)
		}
	}
	if l := confirmLink.FindStringSubmatch(m.text); l != nil {
		m.token = l[1]
	}
	return m
}

// TestNewsletterConfirmationEmail: an attendee who ticks the newsletter box
// is emailed a link, through the pipeline's mailer, that confirms their
// address once; one who does not tick it is sent nothing.
func TestNewsletterConfirmationEmail(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, nil)
	id := h.register(t, 1, true)
	without := h.register(t, 2, false)
	r := h.waitStatus(t, id, registration.StatusCompleted)
	h.waitStatus(t, without, registration.StatusCompleted)
	checkStep(t, r, registration.StepAddToMailingList, registration.StepSucceeded, 1)

	got := h.newsletterEmails(t)
	if len(got) != 1 {
		t.Fatalf("outbox holds %d requests to confirm; want 1 (for the consenting attendee only)", len(got))
	}
	m := got[0]
	if !strings.HasPrefix(m.file, "newsletter-"+id+"-") {
		t.Errorf("request to confirm is %s; want it named for registration %s", m.file, id)
	}
	if m.subject != "Confirm your subscription to GopherFest 2027 news" {
		t.Errorf("subject = %q", m.subject)
	}
	if !strings.Contains(m.to, "Ada.1@Example.org") {
		t.Errorf("To = %q; want the attendee", m.to)
	}
	hash, ok := email.ConfirmTokenHash(m.token)
	if !ok {
		t.Fatalf("the email's link carries %q, not a token:\n%s", m.token, m.text)
	}
	if !strings.Contains(m.html, `href="http://registrar.test/newsletter/confirm/`+m.token+`"`) {
		t.Errorf("the HTML part lacks the link:\n%s", m.html)
	}
	if stored := h.count(t, `SELECT count(*) FROM mailing_list WHERE confirm_token_hash = ? AND status = 'pending'`, hash); stored != 1 {
		t.Errorf("the link's hash is on %d pending rows; want 1", stored)
	}
	if n := h.count(t, `SELECT count(*) FROM mailing_list WHERE confirm_token_hash = ?`, m.token); n != 0 {
		t.Error("the token itself is stored")
	}

	sub, err := h.store.PendingSubscription(ctx, hash)
	if err != nil || sub.RegistrationID != id {
		t.Fatalf("PendingSubscription(the email's link) = %+v, %v; want registration %s", sub, err, id)
	}
	if _, err := h.store.ConfirmSubscription(ctx, hash); err != nil {
		t.Fatalf("ConfirmSubscription(the email's link) = %v", err)
	}
	if _, err := h.store.ConfirmSubscription(ctx, hash); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("the link confirmed twice: %v", err)
	}
	if st, err := h.store.NewsletterState(ctx, id); err != nil || st.ConfirmedAt.IsZero() {
		t.Errorf("NewsletterState = %+v, %v; want confirmed", st, err)
	}
	if n := h.count(t, `SELECT count(*) FROM mailing_list WHERE status = 'subscribed'`); n != 1 {
		t.Errorf("%d subscribed addresses; want 1", n)
	}
}

// TestNewsletterRetryReissuesLink: a send whose outcome the mailer could
// not tell is retried with a new link, and only that newest link works.
func TestNewsletterRetryReissuesLink(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, func(m *testMailer) {
		m.newsletterErrs = []error{errors.New("mailer: connection reset after DATA")}
	})
	id := h.register(t, 1, true)
	r := h.waitStatus(t, id, registration.StatusCompleted)
	checkStep(t, r, registration.StepAddToMailingList, registration.StepSucceeded, 2)

	got := h.newsletterEmails(t)
	if len(got) != 2 {
		t.Fatalf("outbox holds %d requests to confirm; want 2 (the first attempt's went out too)", len(got))
	}
	var working []string
	for _, m := range got {
		hash, ok := email.ConfirmTokenHash(m.token)
		if !ok {
			t.Fatalf("%s: no token in its link", m.file)
		}
		if _, err := h.store.PendingSubscription(ctx, hash); err == nil {
			working = append(working, m.file)
		} else if !errors.Is(err, registration.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if len(working) != 1 {
		t.Fatalf("%d of the 2 links work (%v); want exactly 1, the newest", len(working), working)
	}
	// The newest is the second attempt's: its file was written last.
	newest := slices.MaxFunc(got, func(a, b newsletterEmail) int {
		ia, _ := os.Stat(filepath.Join(h.outboxDir, a.file))
		ib, _ := os.Stat(filepath.Join(h.outboxDir, b.file))
		return ia.ModTime().Compare(ib.ModTime())
	})
	if working[0] != newest.file {
		t.Errorf("the working link is %s's; want the newest email's, %s", working[0], newest.file)
	}
}

// TestNewsletterSubscribedNotAskedAgain: an address already confirmed is
// not asked again when it registers again, and that registration counts
// as confirmed.
func TestNewsletterSubscribedNotAskedAgain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, nil)
	first := h.register(t, 1, true)
	h.waitStatus(t, first, registration.StatusCompleted)
	got := h.newsletterEmails(t)
	if len(got) != 1 {
		t.Fatalf("%d requests to confirm; want 1", len(got))
	}
	hash, _ := email.ConfirmTokenHash(got[0].token)
	if _, err := h.store.ConfirmSubscription(ctx, hash); err != nil {
		t.Fatal(err)
	}

	again, err := h.svc.Register(ctx, request(1, true), "second")
	if err != nil {
		t.Fatal(err)
	}
	r := h.waitStatus(t, again, registration.StatusCompleted)
	checkStep(t, r, registration.StepAddToMailingList, registration.StepSucceeded, 1)
	if got := h.newsletterEmails(t); len(got) != 1 {
		t.Errorf("%d requests to confirm after the second registration; want still 1", len(got))
	}
	if st, err := h.store.NewsletterState(ctx, again); err != nil || st.ConfirmedAt.IsZero() || st.Pending {
		t.Errorf("the second registration's NewsletterState = %+v, %v; want confirmed", st, err)
	}
}
