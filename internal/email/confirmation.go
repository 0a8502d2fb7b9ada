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

const (
	dayTimeLayout  = "Monday, 2 January 2006, 15:04"
	zoneLayout     = "(UTC-07:00)"
	paidTimeLayout = "2 January 2006, 15:04 (UTC-07:00)"
)

// Confirmation renders the registration confirmation email: the ticket, the
// receipt of its payment, the event with an .ics invitation, and who to ask.
type Confirmation struct {
	RegistrationID string
	// MessageID is the message's id when it is not the registration's first
	// confirmation (a confirmation sent again); "" means RegistrationID.
	MessageID                                          string
	AttendeeFirstName, AttendeeLastName, AttendeeEmail string
	TicketName                                         string
	Amount                                             string // already formatted, e.g. "149.00"
	Currency                                           string // "EUR"
	Free                                               bool   // amount is zero: "Free ticket", no receipt
	EventName                                          string
	// EventStart is shown in its own location, e.g. "Thursday, 10 June
	// 2027, 09:00 (UTC+02:00)"; every other time in the email is shown in
	// that location too.
	EventStart time.Time
	// EventEnd is optional. Without it the email shows the start alone and
	// the invitation has no DTEND, which calendars read as an entry that
	// ends when it starts: no end time is made up.
	EventEnd         time.Time
	EventDescription string // optional plain text, for the invitation
	Venue            string
	StatusURL        string
	// The receipt of a paid ticket; each part may be empty, and none is
	// shown for a free ticket.
	CardBrand, CardLast4 string
	PaymentReference     string        // the provider's id of the payment
	PaidAt               time.Time     // when the payment was taken
	Billing              PostalAddress // the cardholder's address
	RefundPolicy         string        // plain text, shown with the receipt
	// Organiser sells the tickets; optional. Its email becomes the
	// message's Reply-To and the invitation's ORGANIZER.
	Organiser Organiser
}

// Organiser is who sells the tickets. Every field is optional.
type Organiser struct {
	Name  string
	Email string // a plain address
	URL   string // absolute http or https URL
}

// PostalAddress is a billing address. Every field is optional.
type PostalAddress struct {
	Line1, Line2, City, PostalCode, Region, Country string
}

// lines returns the address as the lines of a letter, the empty ones left
// out: street lines, then postal code and city, region, country.
func (a PostalAddress) lines() []string {
	var lines []string
	for _, l := range []string{a.Line1, a.Line2, strings.Join(strings.Fields(a.PostalCode+" "+a.City), " "), a.Region, a.Country} {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
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
	Subject          string
	FirstName        string
	AttendeeName     string
	TicketName       string
	Free             bool
	Price            string // "€149.00" or "Free ticket"
	Card             string // "Visa •••• 1111", or empty
	PaidAt           string // "5 January 2027, 11:00 (UTC+02:00)", or empty
	PaymentReference string
	Billing          []string // address lines
	RefundPolicy     string
	EventName        string
	When             string
	Venue            string
	CalendarFile     string
	Organiser        *Organiser // nil without one
	StatusURL        string
	RegistrationID   string
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
		Free:           c.Free,
		Price:          "Free ticket",
		EventName:      c.EventName,
		When:           eventWhen(c.EventStart, c.EventEnd),
		Venue:          c.Venue,
		CalendarFile:   calendarFilename(c.EventName),
		StatusURL:      c.StatusURL,
		RegistrationID: c.RegistrationID,
	}
	if !c.Free {
		view.Price = formatMoney(c.Amount, c.Currency)
		if c.CardBrand != "" && c.CardLast4 != "" {
			view.Card = cardBrandName(c.CardBrand) + " •••• " + c.CardLast4
		}
		if !c.PaidAt.IsZero() {
			view.PaidAt = c.PaidAt.In(c.EventStart.Location()).Format(paidTimeLayout)
		}
		view.PaymentReference = c.PaymentReference
		view.Billing = c.Billing.lines()
		view.RefundPolicy = strings.TrimSpace(c.RefundPolicy)
	}
	if c.Organiser != (Organiser{}) {
		org := c.Organiser
		view.Organiser = &org
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
		Attachments: []Attachment{{
			Filename:    view.CalendarFile,
			ContentType: CalendarContentType,
			Data:        c.calendar(now).ics(),
		}},
	}
	if c.Organiser.Email != "" {
		m.ReplyTo = Address{Name: c.Organiser.Name, Email: c.Organiser.Email}
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
	} else if !c.EventEnd.IsZero() && !c.EventEnd.After(c.EventStart) {
		problems = append(problems, "Confirmation.EventEnd: must be after EventStart (or zero when the end is not known)")
	}
	if c.StatusURL != "" {
		u, err := url.Parse(c.StatusURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
			problems = append(problems, "Confirmation.StatusURL: must be an absolute http or https URL")
		}
	}
	if c.Organiser.URL != "" && !absoluteHTTP(c.Organiser.URL) {
		problems = append(problems, "Confirmation.Organiser.URL: must be an absolute http or https URL")
	}
	if p := checkHeaderText(c.Organiser.Name, maxNameLen); p != "" {
		problems = append(problems, "Confirmation.Organiser.Name: "+p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, strings.Join(problems, "; "))
	}
	return nil
}

// calendar is the invitation's event. Its UID is the registration id at the
// status page's host, the same for every confirmation of a registration
// (one sent again included), so that a calendar updates its entry rather than
// adding a second one.
func (c Confirmation) calendar(now time.Time) calendarEvent {
	host := "localhost"
	if u, err := url.Parse(c.StatusURL); err == nil && u.Hostname() != "" {
		host = strings.ToLower(u.Hostname())
	}
	description := "Your registration: " + c.StatusURL
	if d := strings.TrimSpace(c.EventDescription); d != "" {
		description = d + "\n\n" + description
	}
	return calendarEvent{
		UID:            c.RegistrationID + "@" + host,
		Stamp:          now,
		Start:          c.EventStart,
		End:            c.EventEnd,
		Summary:        c.EventName,
		Location:       c.Venue,
		Description:    description,
		URL:            c.StatusURL,
		OrganizerName:  c.Organiser.Name,
		OrganizerEmail: c.Organiser.Email,
	}
}

// eventWhen shows when the event takes place, in the start's location:
// "Thursday, 10 June 2027, 09:00 – 18:00 (UTC+02:00)" for one day,
// "Thursday, 10 June 2027, 09:00 – Friday, 11 June 2027, 18:00 (UTC+02:00)"
// for several, and the start alone without an end.
func eventWhen(start, end time.Time) string {
	if end.IsZero() {
		return start.Format(eventTimeLayout)
	}
	end = end.In(start.Location())
	endLayout := dayTimeLayout
	if y, m, d := start.Date(); end.Year() == y && end.Month() == m && end.Day() == d {
		endLayout = "15:04"
	}
	return start.Format(dayTimeLayout) + " – " + end.Format(endLayout) + " " + start.Format(zoneLayout)
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
