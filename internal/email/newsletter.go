package email

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"
)

// NewsletterConfirmation is the email that asks an attendee who ticked the
// newsletter box to confirm their address (double opt-in): until they
// follow its link they are not subscribed, so nobody is subscribed with an
// address that is not theirs.
type NewsletterConfirmation struct {
	// MessageID is the message's id. Each link sent is a message of its
	// own: a link sent again must not be taken for a copy of the first.
	MessageID           string
	RegistrationID      string
	FirstName, LastName string
	Email               string
	EventName           string
	// ConfirmURL is the link that confirms, e.g.
	// https://tickets.example.org/newsletter/confirm/<token>.
	ConfirmURL string
}

// NewsletterRenderer renders NewsletterConfirmation emails from the
// embedded templates, parsed once. It is safe for concurrent use.
type NewsletterRenderer struct {
	html *htmltemplate.Template
	text *texttemplate.Template
}

// NewNewsletterRenderer parses the embedded newsletter templates.
func NewNewsletterRenderer() (*NewsletterRenderer, error) {
	h, err := htmltemplate.ParseFS(templateFS, "templates/newsletter_confirm.html")
	if err != nil {
		return nil, fmt.Errorf("email: parse newsletter HTML template: %w", err)
	}
	x, err := texttemplate.ParseFS(templateFS, "templates/newsletter_confirm.txt")
	if err != nil {
		return nil, fmt.Errorf("email: parse newsletter text template: %w", err)
	}
	return &NewsletterRenderer{html: h.Option("missingkey=error"), text: x.Option("missingkey=error")}, nil
}

type newsletterView struct {
	Subject    string
	FirstName  string
	EventName  string
	Email      string
	ConfirmURL string
}

// Render builds the message for c, sent from from and dated now. As with
// confirmations, attendee input is escaped in the HTML part, and a value
// that would corrupt the headers makes Render fail with an error wrapping
// ErrInvalidMessage.
func (r *NewsletterRenderer) Render(c NewsletterConfirmation, from Address, now time.Time) (Message, error) {
	if err := c.validate(); err != nil {
		return Message{}, fmt.Errorf("email: render newsletter confirmation: %w", err)
	}
	view := newsletterView{
		Subject:    "Confirm your subscription to " + c.EventName + " news",
		FirstName:  c.FirstName,
		EventName:  c.EventName,
		Email:      c.Email,
		ConfirmURL: c.ConfirmURL,
	}
	var text, html bytes.Buffer
	if err := r.text.Execute(&text, view); err != nil {
		return Message{}, fmt.Errorf("email: render newsletter confirmation text: %w", err)
	}
	if err := r.html.Execute(&html, view); err != nil {
		return Message{}, fmt.Errorf("email: render newsletter confirmation HTML: %w", err)
	}
	m := Message{
		ID:      c.MessageID,
		From:    from,
		To:      Address{Name: strings.TrimSpace(c.FirstName + " " + c.LastName), Email: c.Email},
		Subject: view.Subject,
		Date:    now,
		Text:    text.String(),
		HTML:    html.String(),
		Headers: map[string]string{"X-Registration-ID": c.RegistrationID},
	}
	if err := m.Validate(); err != nil {
		return Message{}, fmt.Errorf("email: render newsletter confirmation: %w", err)
	}
	return m, nil
}

func (c NewsletterConfirmation) validate() error {
	var problems []string
	for _, f := range []struct{ field, value string }{
		{"MessageID", c.MessageID},
		{"RegistrationID", c.RegistrationID},
		{"Email", c.Email},
		{"EventName", c.EventName},
		{"ConfirmURL", c.ConfirmURL},
	} {
		if strings.TrimSpace(f.value) == "" {
			problems = append(problems, "NewsletterConfirmation."+f.field+": is required")
		}
	}
	if c.ConfirmURL != "" {
		u, err := url.Parse(c.ConfirmURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			problems = append(problems, "NewsletterConfirmation.ConfirmURL: must be an absolute http or https URL")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, strings.Join(problems, "; "))
	}
	return nil
}

// confirmTokenBytes is how much randomness a confirmation link carries.
const confirmTokenBytes = 32

// confirmTokenLen is the length of a token as it appears in a link:
// confirmTokenBytes in base64url without padding.
var confirmTokenLen = base64.RawURLEncoding.EncodedLen(confirmTokenBytes)

// NewConfirmToken returns a fresh token for a confirmation link (32 random
// bytes, base64url) and the hash to store in its place: only the hash is
// kept, so the database alone never gives anyone a working link.
func NewConfirmToken() (token, hash string, err error) {
	b := make([]byte, confirmTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("email: confirmation token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token), nil
}

// ConfirmTokenHash returns the stored hash of a token taken from a link,
// and false when the text cannot be a token at all (wrong length or
// characters), which then needs no look-up.
func ConfirmTokenHash(token string) (string, bool) {
	if len(token) != confirmTokenLen {
		return "", false
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(token); err != nil {
		return "", false
	}
	return hashToken(token), true
}

// hashToken is the hex SHA-256 of a token.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
