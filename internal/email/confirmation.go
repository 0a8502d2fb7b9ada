package email

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"
)

//go:embed templates/*.html templates/*.txt
var templateFS embed.FS

// eventTimeLayout renders e.g. "Thursday, 10 June 2027, 09:00 (UTC+02:00)".
const eventTimeLayout = "Monday, 2 January 2006, 15:04 (UTC-07:00)"

// Confirmation renders the registration confirmation email.
type Confirmation struct {
	RegistrationID string
	// MessageID is the message's id when it is not the registration's first
	// confirmation (a confirmation sent again); "" means RegistrationID.
	MessageID                                          string
	AttendeeFirstName, AttendeeLastName, AttendeeEmail string
	TicketName                                         string
	Amount                                             string // already formatted, e.g. "149.00"
	Currency                                           string // "EUR"
	Free                                               bool   // amount is zero
	EventName                                          string
	EventStart                                         time.Time // shown in its own location, e.g. "Thursday, 10 June 2027, 09:00 (UTC+02:00)"
	Venue                                              string
	StatusURL                                          string
	CardBrand, CardLast4                               string // may be empty (free ticket)
}

// Renderer renders the emails (confirmations, cancellation notices and
// the organisers' notices) from the embedded templates, parsed once. It is
// safe for concurrent use.
type Renderer struct {
	html, cancelHTML, noticesHTML *htmltemplate.Template
	text, cancelText, noticesText *texttemplate.Template
}

// NewRenderer parses the embedded templates.
func NewRenderer() (*Renderer, error) {
	r := &Renderer{}
	for _, t := range []struct {
		name string
		html **htmltemplate.Template
		text **texttemplate.Template
	}{
		{"confirmation", &r.html, &r.text},
		{"cancellation", &r.cancelHTML, &r.cancelText},
		{"notices", &r.noticesHTML, &r.noticesText},
	} {
		h, err := htmltemplate.ParseFS(templateFS, "templates/"+t.name+".html")
		if err != nil {
			return nil, fmt.Errorf("email: parse HTML template: %w", err)
		}
		x, err := texttemplate.ParseFS(templateFS, "templates/"+t.name+".txt")
		if err != nil {
			return nil, fmt.Errorf("email: parse text template: %w", err)
		}
		*t.html, *t.text = h.Option("missingkey=error"), x.Option("missingkey=error")
	}
	return r, nil
}

// confirmationView is what the templates see: every value already formatted.
type confirmationView struct {
	Subject        string
	FirstName      string
	AttendeeName   string
	TicketName     string
	Price          string // "149.00 EUR" or "Free"
	Card           string // "Visa ending in 1111", or empty
	EventName      string
	When           string
	Venue          string
	StatusURL      string
	RegistrationID string
}

// Render builds the confirmation message for c, sent from from and dated now.
// Attendee input is never trusted: the HTML part escapes it, and a value that
// would corrupt the headers (a line break in a name, say) makes Render fail
// with an error wrapping ErrInvalidMessage rather than be sent.
func (r *Renderer) Render(c Confirmation, from Address, now time.Time) (Message, error) {
	if err := c.validate(); err != nil {
		return Message{}, fmt.Errorf("email: render confirmation: %w", err)
	}
	view := confirmationView{
		Subject:        "Your ticket for " + c.EventName,
		FirstName:      c.AttendeeFirstName,
		AttendeeName:   strings.TrimSpace(c.AttendeeFirstName + " " + c.AttendeeLastName),
		TicketName:     c.TicketName,
		Price:          "Free",
		EventName:      c.EventName,
		When:           c.EventStart.Format(eventTimeLayout),
		Venue:          c.Venue,
		StatusURL:      c.StatusURL,
		RegistrationID: c.RegistrationID,
	}
	if !c.Free {
		view.Price = c.Amount + " " + c.Currency
	}
	if c.CardBrand != "" && c.CardLast4 != "" {
		view.Card = cardBrandName(c.CardBrand) + " ending in " + c.CardLast4
	}

	var text, html bytes.Buffer
	if err := r.text.Execute(&text, view); err != nil {
		return Message{}, fmt.Errorf("email: render confirmation text: %w", err)
	}
	if err := r.html.Execute(&html, view); err != nil {
		return Message{}, fmt.Errorf("email: render confirmation HTML: %w", err)
	}

	id := c.RegistrationID
	if c.MessageID != "" {
		id = c.MessageID
	}
	m := Message{
		ID:   id,
		From: from,
		To: Address{
			Name:  view.AttendeeName,
			Email: c.AttendeeEmail,
		},
		Subject: view.Subject,
		Date:    now,
		Text:    text.String(),
		HTML:    html.String(),
		Headers: map[string]string{"X-Registration-ID": c.RegistrationID},
	}
	if err := m.Validate(); err != nil {
		return Message{}, fmt.Errorf("email: render confirmation: %w", err)
	}
	return m, nil
}

// validate checks what the templates need; the message-level checks (names,
// addresses, header safety) are left to Message.Validate.
func (c Confirmation) validate() error {
	var problems []string
	required := []struct{ field, value string }{
		{"RegistrationID", c.RegistrationID},
		{"AttendeeEmail", c.AttendeeEmail},
		{"TicketName", c.TicketName},
		{"EventName", c.EventName},
		{"StatusURL", c.StatusURL},
	}
	if !c.Free {
		required = append(required,
			struct{ field, value string }{"Amount", c.Amount},
			struct{ field, value string }{"Currency", c.Currency})
	}
	for _, r := range required {
		if strings.TrimSpace(r.value) == "" {
			problems = append(problems, "Confirmation."+r.field+": is required")
		}
	}
	if c.EventStart.IsZero() {
		problems = append(problems, "Confirmation.EventStart: is required")
	}
	if c.StatusURL != "" {
		u, err := url.Parse(c.StatusURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			problems = append(problems, "Confirmation.StatusURL: must be an absolute http or https URL")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, strings.Join(problems, "; "))
	}
	return nil
}

// cardBrandName turns a brand code such as "visa" into its display name.
func cardBrandName(brand string) string {
	switch strings.ToLower(strings.NewReplacer("_", "", "-", "", " ", "").Replace(brand)) {
	case "visa":
		return "Visa"
	case "mastercard":
		return "Mastercard"
	case "amex", "americanexpress":
		return "American Express"
	case "discover":
		return "Discover"
	case "jcb":
		return "JCB"
	case "diners", "dinersclub":
		return "Diners Club"
	case "maestro":
		return "Maestro"
	case "unionpay":
		return "UnionPay"
	}
	if brand == strings.ToLower(brand) {
		r, size := utf8.DecodeRuneInString(brand)
		return string(unicode.ToUpper(r)) + brand[size:]
	}
	return brand
}
