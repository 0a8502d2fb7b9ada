package email

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Cancellation renders the email that tells an attendee an organiser
// cancelled their registration.
type Cancellation struct {
	MessageID                                          string // the message's id (Message-ID local part)
	RegistrationID                                     string
	AttendeeFirstName, AttendeeLastName, AttendeeEmail string
	TicketName                                         string
	EventName                                          string
	EventStart                                         time.Time
	// Refund is the amount given back, formatted with its currency
	// ("74.50 EUR"); "" for none.
	Refund               string
	CardBrand, CardLast4 string // the card refunded to; may be empty
	StatusURL            string
}

type cancellationView struct {
	Subject        string
	FirstName      string
	AttendeeName   string
	TicketName     string
	EventName      string
	When           string
	Refund         string
	Card           string
	StatusURL      string
	RegistrationID string
}

// RenderCancellation builds the cancellation notice for c, sent from from
// and dated now. Like Render, it escapes attendee input in the HTML part and
// fails (wrapping ErrInvalidMessage) on input that would corrupt headers.
func (r *Renderer) RenderCancellation(c Cancellation, from Address, now time.Time) (Message, error) {
	if err := c.validate(); err != nil {
		return Message{}, fmt.Errorf("email: render cancellation: %w", err)
	}
	view := cancellationView{
		Subject:        "Your registration for " + c.EventName + " is cancelled",
		FirstName:      c.AttendeeFirstName,
		AttendeeName:   strings.TrimSpace(c.AttendeeFirstName + " " + c.AttendeeLastName),
		TicketName:     c.TicketName,
		EventName:      c.EventName,
		When:           c.EventStart.Format(eventTimeLayout),
		Refund:         c.Refund,
		StatusURL:      c.StatusURL,
		RegistrationID: c.RegistrationID,
	}
	if c.CardBrand != "" && c.CardLast4 != "" {
		view.Card = cardBrandName(c.CardBrand) + " ending in " + c.CardLast4
	}
	var text, html bytes.Buffer
	if err := r.cancelText.Execute(&text, view); err != nil {
		return Message{}, fmt.Errorf("email: render cancellation text: %w", err)
	}
	if err := r.cancelHTML.Execute(&html, view); err != nil {
		return Message{}, fmt.Errorf("email: render cancellation HTML: %w", err)
	}
	m := Message{
		ID:      c.MessageID,
		From:    from,
		To:      Address{Name: view.AttendeeName, Email: c.AttendeeEmail},
		Subject: view.Subject,
		Date:    now,
		Text:    text.String(),
		HTML:    html.String(),
		Headers: map[string]string{"X-Registration-ID": c.RegistrationID},
	}
	if err := m.Validate(); err != nil {
		return Message{}, fmt.Errorf("email: render cancellation: %w", err)
	}
	return m, nil
}

func (c Cancellation) validate() error {
	var problems []string
	for _, r := range []struct{ field, value string }{
		{"MessageID", c.MessageID},
		{"RegistrationID", c.RegistrationID},
		{"AttendeeEmail", c.AttendeeEmail},
		{"TicketName", c.TicketName},
		{"EventName", c.EventName},
		{"StatusURL", c.StatusURL},
	} {
		if strings.TrimSpace(r.value) == "" {
			problems = append(problems, "Cancellation."+r.field+": is required")
		}
	}
	if c.EventStart.IsZero() {
		problems = append(problems, "Cancellation.EventStart: is required")
	}
	if c.StatusURL != "" && !absoluteHTTP(c.StatusURL) {
		problems = append(problems, "Cancellation.StatusURL: must be an absolute http or https URL")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, strings.Join(problems, "; "))
	}
	return nil
}
