package email_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/email"
)

var (
	newsletterFrom   = email.Address{Name: "GopherFest", Email: "tickets@gopherfest.example"}
	newsletterSentAt = time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
)

func newsletterConfirmation() email.NewsletterConfirmation {
	return email.NewsletterConfirmation{
		MessageID:      "newsletter-7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10-3a7bd3e2360a",
		RegistrationID: "7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
		FirstName:      "Ada",
		LastName:       "Lovelace",
		Email:          "ada@example.org",
		EventName:      "GopherFest 2027",
		ConfirmURL:     "http://localhost:8080/newsletter/confirm/q3Z7mL0v4Xc2NfR9sT1uW6yB8dE5gH0jK3lM7nP9rQw",
	}
}

func newNewsletterRenderer(t *testing.T) *email.NewsletterRenderer {
	t.Helper()
	r, err := email.NewNewsletterRenderer()
	if err != nil {
		t.Fatalf("NewNewsletterRenderer: %v", err)
	}
	return r
}

func TestNewsletterConfirmationGolden(t *testing.T) {
	t.Parallel()
	m, err := newNewsletterRenderer(t).Render(newsletterConfirmation(), newsletterFrom, newsletterSentAt)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	raw, err := m.Bytes()
	if err != nil {
		t.Fatalf("Bytes: %v", err)
	}
	checkGolden(t, "newsletter_confirm.eml.golden", raw)
	checkGolden(t, "newsletter_confirm.txt.golden", []byte(m.Text))
	checkGolden(t, "newsletter_confirm.html.golden", []byte(m.HTML))
}

func TestNewsletterConfirmationContent(t *testing.T) {
	t.Parallel()
	c := newsletterConfirmation()
	m, err := newNewsletterRenderer(t).Render(c, newsletterFrom, newsletterSentAt)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if m.Subject != "Confirm your subscription to GopherFest 2027 news" {
		t.Errorf("Subject = %q", m.Subject)
	}
	if m.ID != c.MessageID || m.To != (email.Address{Name: "Ada Lovelace", Email: "ada@example.org"}) || m.From != newsletterFrom {
		t.Errorf("ID %q, To %+v, From %+v", m.ID, m.To, m.From)
	}
	if m.Headers["X-Registration-ID"] != c.RegistrationID {
		t.Errorf("X-Registration-ID = %q", m.Headers["X-Registration-ID"])
	}
	for part, body := range map[string]string{"text": m.Text, "HTML": m.HTML} {
		for _, want := range []string{c.ConfirmURL, "ada@example.org", "GopherFest 2027", "Hello Ada,", "you will not be subscribed"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s part lacks %q", part, want)
			}
		}
	}
	if !strings.Contains(m.HTML, `href="`+c.ConfirmURL+`"`) {
		t.Error("the HTML part does not link to the confirmation URL")
	}
}

func TestNewsletterConfirmationEscapes(t *testing.T) {
	t.Parallel()
	c := newsletterConfirmation()
	c.FirstName = `<script>alert("x")</script>`
	m, err := newNewsletterRenderer(t).Render(c, newsletterFrom, newsletterSentAt)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if strings.Contains(m.HTML, "<script>") {
		t.Errorf("the HTML part carries the attendee's markup:\n%s", m.HTML)
	}
	c = newsletterConfirmation()
	c.LastName = "Lovelace\r\nBcc: everyone@example.org"
	if _, err := newNewsletterRenderer(t).Render(c, newsletterFrom, newsletterSentAt); !errors.Is(err, email.ErrInvalidMessage) {
		t.Errorf("Render with a line break in a name = %v; want ErrInvalidMessage", err)
	}
}

func TestNewsletterConfirmationInvalid(t *testing.T) {
	t.Parallel()
	r := newNewsletterRenderer(t)
	tests := []struct {
		name  string
		edit  func(*email.NewsletterConfirmation)
		field string
	}{
		{"no message id", func(c *email.NewsletterConfirmation) { c.MessageID = "" }, "MessageID"},
		{"no email", func(c *email.NewsletterConfirmation) { c.Email = "" }, "Email"},
		{"no event", func(c *email.NewsletterConfirmation) { c.EventName = " " }, "EventName"},
		{"relative link", func(c *email.NewsletterConfirmation) { c.ConfirmURL = "/newsletter/confirm/x" }, "ConfirmURL"},
		{"javascript link", func(c *email.NewsletterConfirmation) { c.ConfirmURL = "javascript:alert(1)" }, "ConfirmURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newsletterConfirmation()
			tt.edit(&c)
			_, err := r.Render(c, newsletterFrom, newsletterSentAt)
			if !errors.Is(err, email.ErrInvalidMessage) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Render = %v; want ErrInvalidMessage naming %s", err, tt.field)
			}
		})
	}
}

func TestConfirmToken(t *testing.T) {
	t.Parallel()
	token, hash, err := email.NewConfirmToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(token) != 43 || strings.ContainsAny(token, "+/=") {
		t.Errorf("token %q is not 32 bytes in base64url without padding", token)
	}
	if len(hash) != 64 || hash == token {
		t.Errorf("hash %q is not a hex SHA-256", hash)
	}
	if got, ok := email.ConfirmTokenHash(token); !ok || got != hash {
		t.Errorf("ConfirmTokenHash(token) = %q, %v; want %q", got, ok, hash)
	}
	other, _, err := email.NewConfirmToken()
	if err != nil || other == token {
		t.Errorf("two tokens are the same: %q", token)
	}
	for _, bad := range []string{"", "short", token[:42], token + "A", strings.Repeat("*", 43), token[:42] + "=",
		strings.Repeat("A", 42) + "B"} { // the last: non-zero padding bits
		if _, ok := email.ConfirmTokenHash(bad); ok {
			t.Errorf("ConfirmTokenHash(%q) accepted it", bad)
		}
	}
}
