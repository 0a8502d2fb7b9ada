package email_test

import (
	"bytes"
	"errors"
	"flag"
	"html"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/email"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	organiser = email.Address{Name: "GopherFest", Email: "tickets@gopherfest.example"}
	sentAt    = time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	berlin    = time.FixedZone("", 2*60*60) // as parsed from "2027-06-10T09:00:00+02:00"
)

func paidConfirmation() email.Confirmation {
	return email.Confirmation{
		RegistrationID:    "7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
		AttendeeFirstName: "Ada",
		AttendeeLastName:  "Lovelace",
		AttendeeEmail:     "ada@example.org",
		TicketName:        "Standard",
		Amount:            "149.00",
		Currency:          "EUR",
		EventName:         "GopherFest 2027",
		EventStart:        time.Date(2027, 6, 10, 9, 0, 0, 0, berlin),
		EventEnd:          time.Date(2027, 6, 11, 18, 0, 0, 0, berlin),
		EventDescription:  "Two days of talks and workshops about Go.",
		Venue:             "Kulturbrauerei, Berlin",
		StatusURL:         "http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
		CardBrand:         "visa",
		CardLast4:         "1111",
		PaymentReference:  "8MC585209K746392H",
		PaidAt:            time.Date(2027, 1, 5, 9, 58, 0, 0, time.UTC), // 11:58 in the event's zone
		Billing: email.PostalAddress{
			Line1: "12 St James's Square", Line2: "Flat 3", City: "London", PostalCode: "SW1Y 4JH", Country: "GB",
		},
		RefundPolicy: "Full refund until 10 May 2027.\nAfter that, tickets can be transferred to a colleague free of charge.",
		Organiser: email.Organiser{
			Name: "GopherFest e.V.", Email: "hello@gopherfest.example", URL: "https://gopherfest.example",
		},
	}
}

func freeConfirmation() email.Confirmation {
	c := paidConfirmation()
	c.RegistrationID = "0b1d3f5a7c9e2b4d6f8a0c2e4a6c8e0f"
	c.StatusURL = "http://localhost:8080/registrations/0b1d3f5a7c9e2b4d6f8a0c2e4a6c8e0f"
	c.TicketName, c.Amount, c.Free = "Community", "0.00", true
	c.CardBrand, c.CardLast4 = "", ""
	c.PaymentReference, c.PaidAt, c.Billing = "", time.Time{}, email.PostalAddress{}
	return c
}

// bareConfirmation is a paid ticket of an event file with the least it
// needs: no organiser, end, description, refund policy or billing address.
func bareConfirmation() email.Confirmation {
	c := paidConfirmation()
	c.RegistrationID = "5e7a9c1b3d5f7a9c1e3b5d7f9a1c3e5b"
	c.StatusURL = "http://localhost:8080/registrations/5e7a9c1b3d5f7a9c1e3b5d7f9a1c3e5b"
	c.EventEnd, c.EventDescription, c.RefundPolicy = time.Time{}, "", ""
	c.Organiser, c.Billing = email.Organiser{}, email.PostalAddress{}
	return c
}

func newRenderer(t testing.TB) *email.Renderer {
	t.Helper()
	r, err := email.NewRenderer()
	if err != nil {
		t.Fatalf("NewRenderer() = %v", err)
	}
	return r
}

func render(t testing.TB, c email.Confirmation) (email.Message, []byte) {
	t.Helper()
	m, err := newRenderer(t).Render(c, organiser, sentAt)
	if err != nil {
		t.Fatalf("Render() = %v", err)
	}
	raw, err := m.Bytes()
	if err != nil {
		t.Fatalf("Bytes() = %v", err)
	}
	return m, raw
}

// checkGolden compares got with testdata/name, or rewrites the file with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered output (run go test -update after checking the change):\n--- got ---\n%s\n--- want ---\n%s",
			path, got, want)
	}
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    email.Confirmation
	}{
		{"confirmation", paidConfirmation()},
		{"confirmation_free", freeConfirmation()},
		{"confirmation_no_organiser", bareConfirmation()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, raw := render(t, tt.c)
			checkGolden(t, tt.name+".eml.golden", raw)
			// The decoded parts too, so that template changes are easy to review.
			checkGolden(t, tt.name+".txt.golden", []byte(m.Text))
			checkGolden(t, tt.name+".html.golden", []byte(m.HTML))
			if len(m.Attachments) != 1 {
				t.Fatalf("%d attachments, want the invitation", len(m.Attachments))
			}
			checkGolden(t, tt.name+".ics.golden", m.Attachments[0].Data)
		})
	}
}

func TestRenderContent(t *testing.T) {
	t.Parallel()
	noEnd := func(c *email.Confirmation) { c.EventEnd = time.Time{} }
	tests := []struct {
		name    string
		mutate  func(c *email.Confirmation)
		want    []string // in both parts
		notWant []string // in neither part
	}{
		{
			name:   "paid by card",
			mutate: func(c *email.Confirmation) {},
			want: []string{"Hello Ada,", "Ada Lovelace", "Standard", "Amount", "€149.00", "Visa •••• 1111",
				"Paid on", "5 January 2027, 11:58 (UTC+02:00)", "8MC585209K746392H",
				"Billed to", "12 St James's Square", "Flat 3", "SW1Y 4JH London", "GB",
				"Refund policy", "Full refund until 10 May 2027.", "transferred to a colleague",
				"GopherFest 2027", "Thursday, 10 June 2027, 09:00 – Friday, 11 June 2027, 18:00 (UTC+02:00)",
				"Kulturbrauerei, Berlin", "gopherfest-2027.ics",
				"GopherFest e.V.", "hello@gopherfest.example", "https://gopherfest.example", "Reply to this email",
				"http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
				"7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10"},
			notWant: []string{"Free", "149.00 EUR", "ending in"},
		},
		{
			name:   "free ticket",
			mutate: func(c *email.Confirmation) { *c = freeConfirmation() },
			want: []string{"Hello Ada,", "Community", "Free ticket", "GopherFest 2027", "Kulturbrauerei, Berlin",
				"gopherfest-2027.ics", "GopherFest e.V.", "hello@gopherfest.example"},
			notWant: []string{"0.00", "EUR", "€", "paid", "Paid", "Receipt", "RECEIPT", "Reference", "Billed", "Refund", "••••"},
		},
		{
			name: "free ticket with payment details set",
			mutate: func(c *email.Confirmation) {
				*c = freeConfirmation()
				c.CardBrand, c.CardLast4, c.PaymentReference = "visa", "1111", "8MC585209K746392H"
				c.PaidAt, c.Billing = sentAt, email.PostalAddress{Line1: "12 St James's Square"}
			},
			want:    []string{"Free ticket"},
			notWant: []string{"paid", "Paid", "Receipt", "8MC585209K746392H", "••••", "St James", "Refund"},
		},
		{
			name:    "no organiser",
			mutate:  func(c *email.Confirmation) { *c = bareConfirmation() },
			want:    []string{"€149.00", "Visa •••• 1111", "Thursday, 10 June 2027, 09:00 (UTC+02:00)"},
			notWant: []string{"rganiser", "ORGANISER", "Reply to this email", "Contact", "Website", "Billed to", "Refund policy", "–"},
		},
		{
			name:    "organiser without an email",
			mutate:  func(c *email.Confirmation) { c.Organiser.Email = "" },
			want:    []string{"GopherFest e.V.", "https://gopherfest.example"},
			notWant: []string{"Reply to this email", "Contact", "hello@gopherfest.example"},
		},
		{
			name:    "organiser with only an email",
			mutate:  func(c *email.Confirmation) { c.Organiser = email.Organiser{Email: "hello@gopherfest.example"} },
			want:    []string{"hello@gopherfest.example", "Reply to this email and the organisers will answer."},
			notWant: []string{"Website", "GopherFest e.V."},
		},
		{
			name:   "other card brand",
			mutate: func(c *email.Confirmation) { c.CardBrand, c.CardLast4 = "mastercard", "4444" },
			want:   []string{"Mastercard •••• 4444"},
		},
		{
			name:    "brand without last four digits",
			mutate:  func(c *email.Confirmation) { c.CardLast4 = "" },
			want:    []string{"€149.00", "Amount"},
			notWant: []string{"••••", "Visa"},
		},
		{
			name: "no reference, date or address",
			mutate: func(c *email.Confirmation) {
				c.PaymentReference, c.PaidAt, c.Billing = "", time.Time{}, email.PostalAddress{}
			},
			want:    []string{"€149.00", "Visa •••• 1111"},
			notWant: []string{"Reference", "Paid on", "Billed to"},
		},
		{
			name: "address with region",
			mutate: func(c *email.Confirmation) {
				c.Billing = email.PostalAddress{Line1: "1 Main St", City: "Springfield", PostalCode: "62701", Region: "IL", Country: "US"}
			},
			want: []string{"1 Main St", "62701 Springfield", "IL", "US"},
		},
		{
			name:   "amount with thousands",
			mutate: func(c *email.Confirmation) { c.Amount = "1490.00" },
			want:   []string{"€1,490.00"},
		},
		{
			name:   "yen",
			mutate: func(c *email.Confirmation) { c.Amount, c.Currency = "15000", "JPY" },
			want:   []string{"¥15,000"},
		},
		{
			name:   "Swiss francs",
			mutate: func(c *email.Confirmation) { c.Amount, c.Currency = "1250000.50", "CHF" },
			want:   []string{"CHF\u00a01,250,000.50"},
		},
		{
			name:   "US and Canadian dollars",
			mutate: func(c *email.Confirmation) { c.Amount, c.Currency = "49.00", "CAD" },
			want:   []string{"CA$49.00"},
		},
		{
			name: "payment date in the event's zone",
			mutate: func(c *email.Confirmation) {
				c.EventStart = time.Date(2027, 11, 20, 8, 5, 0, 0, time.FixedZone("", -5*60*60))
				c.EventEnd = time.Date(2027, 11, 20, 17, 0, 0, 0, time.FixedZone("", -5*60*60))
				c.PaidAt = time.Date(2027, 1, 5, 3, 0, 0, 0, time.UTC)
			},
			want: []string{"4 January 2027, 22:00 (UTC-05:00)", "Saturday, 20 November 2027, 08:05 – 17:00 (UTC-05:00)"},
		},
		{
			name: "end given in another zone",
			mutate: func(c *email.Confirmation) {
				c.EventEnd = time.Date(2027, 6, 10, 16, 30, 0, 0, time.UTC)
			},
			want: []string{"Thursday, 10 June 2027, 09:00 – 18:30 (UTC+02:00)"},
		},
		{
			name:    "no first name",
			mutate:  func(c *email.Confirmation) { c.AttendeeFirstName = "" },
			want:    []string{"Hello,"},
			notWant: []string{"Hello ,"},
		},
		{
			name:    "no venue",
			mutate:  func(c *email.Confirmation) { c.Venue = "" },
			want:    []string{"GopherFest 2027"},
			notWant: []string{"Venue"},
		},
		{
			name: "non-ASCII",
			mutate: func(c *email.Confirmation) {
				c.AttendeeFirstName, c.AttendeeLastName, c.EventName, c.Venue = "Zoë", "Ünal", "Café Conf", "Zürich"
				c.Organiser.Name = "Café Conf Zürich, e.V."
			},
			want: []string{"Hello Zoë,", "Café Conf", "Zürich", "café-conf.ics", "Café Conf Zürich, e.V."},
		},
		{
			name: "event in UTC",
			mutate: func(c *email.Confirmation) {
				c.EventStart = time.Date(2027, 3, 1, 18, 30, 0, 0, time.UTC)
				noEnd(c)
			},
			want: []string{"Monday, 1 March 2027, 18:30 (UTC+00:00)"},
		},
		{
			name: "event west of UTC",
			mutate: func(c *email.Confirmation) {
				c.EventStart = time.Date(2027, 11, 20, 8, 5, 0, 0, time.FixedZone("", -5*60*60))
				noEnd(c)
			},
			want: []string{"Saturday, 20 November 2027, 08:05 (UTC-05:00)"},
		},
		{
			name: "event shown in its own location",
			mutate: func(c *email.Confirmation) {
				c.EventStart = time.Date(2027, 6, 10, 9, 0, 0, 0, time.FixedZone("", 5*60*60+30*60))
				noEnd(c)
			},
			want: []string{"Thursday, 10 June 2027, 09:00 (UTC+05:30)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := paidConfirmation()
			tt.mutate(&c)
			m, raw := render(t, c)

			if want := "Your ticket for " + c.EventName; m.Subject != want {
				t.Errorf("Subject = %q, want %q", m.Subject, want)
			}
			wantTo := email.Address{Name: strings.TrimSpace(c.AttendeeFirstName + " " + c.AttendeeLastName), Email: c.AttendeeEmail}
			if m.To != wantTo {
				t.Errorf("To = %+v, want %+v", m.To, wantTo)
			}
			var wantReplyTo email.Address
			if c.Organiser.Email != "" {
				wantReplyTo = email.Address{Name: c.Organiser.Name, Email: c.Organiser.Email}
			}
			if m.ReplyTo != wantReplyTo {
				t.Errorf("ReplyTo = %+v, want %+v", m.ReplyTo, wantReplyTo)
			}
			if m.From != organiser || m.ID != c.RegistrationID || !m.Date.Equal(sentAt) {
				t.Errorf("From, ID, Date = %+v, %q, %v", m.From, m.ID, m.Date)
			}
			if len(m.Headers) != 1 || m.Headers["X-Registration-ID"] != c.RegistrationID {
				t.Errorf("Headers = %q", m.Headers)
			}

			msg, parts, attachments := parseMIME(t, raw)
			if len(parts) != 2 {
				t.Fatalf("got %d parts, want 2", len(parts))
			}
			if len(attachments) != 1 || attachments[0].contentType != email.CalendarContentType ||
				!bytes.Equal(attachments[0].data, m.Attachments[0].Data) || attachments[0].filename != m.Attachments[0].Filename {
				t.Errorf("attachments = %+v, want the invitation", attachments)
			}
			if got := msg.Header.Get("Reply-To"); (got != "") != (c.Organiser.Email != "") {
				t.Errorf("Reply-To header = %q with organiser email %q", got, c.Organiser.Email)
			} else if got != "" {
				a, err := mail.ParseAddress(got)
				if err != nil || a.Address != c.Organiser.Email || a.Name != c.Organiser.Name {
					t.Errorf("Reply-To = %+v, %v; want %q <%s>", a, err, c.Organiser.Name, c.Organiser.Email)
				}
			}
			// html/template escapes more than html.EscapeString (e.g. "+"):
			// compare the text the reader sees.
			text, htmlPart := parts[0].body, html.UnescapeString(parts[1].body)
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("text part lacks %q:\n%s", w, text)
				}
				if !strings.Contains(htmlPart, w) {
					t.Errorf("HTML part lacks %q:\n%s", w, htmlPart)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(text, w) {
					t.Errorf("text part contains %q:\n%s", w, text)
				}
				if strings.Contains(htmlPart, w) {
					t.Errorf("HTML part contains %q:\n%s", w, htmlPart)
				}
			}
		})
	}
}

func TestRenderEscapesHTML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *email.Confirmation)
	}{
		{"first name", func(c *email.Confirmation) { c.AttendeeFirstName = `<script>alert("x")</script>` }},
		{"last name", func(c *email.Confirmation) { c.AttendeeLastName = `<script>alert("x")</script>` }},
		{"event name", func(c *email.Confirmation) { c.EventName = `Conf<script>alert("x")</script>` }},
		{"ticket and venue", func(c *email.Confirmation) {
			c.TicketName, c.Venue = `<script>alert("x")</script>`, `"><script>alert("x")</script>`
		}},
		{"organiser name", func(c *email.Confirmation) { c.Organiser.Name = `<script>alert("x")</script>` }},
		{"refund policy", func(c *email.Confirmation) { c.RefundPolicy = `Refunds: <script>alert("x")</script>` }},
		{"billing address", func(c *email.Confirmation) { c.Billing.Line2 = `<script>alert("x")</script>` }},
		{"payment reference", func(c *email.Confirmation) { c.PaymentReference = `<script>alert("x")</script>` }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := paidConfirmation()
			tt.mutate(&c)
			m, raw := render(t, c)
			if strings.Contains(strings.ToLower(m.HTML), "<script") {
				t.Errorf("HTML part contains an unescaped script tag:\n%s", m.HTML)
			}
			if !strings.Contains(m.HTML, "&lt;script&gt;") {
				t.Errorf("HTML part lacks the escaped input:\n%s", m.HTML)
			}
			if !strings.Contains(m.Text, `<script>alert("x")</script>`) {
				t.Errorf("text part should show the input as typed:\n%s", m.Text)
			}
			// The header carries the name intact, and safely.
			msg, _ := parseMessage(t, raw)
			var dec mime.WordDecoder
			if subject, err := dec.DecodeHeader(msg.Header.Get("Subject")); err != nil || subject != m.Subject {
				t.Errorf("Subject = %q, %v; want %q", subject, err, m.Subject)
			}
			to, err := mail.ParseAddress(msg.Header.Get("To"))
			if err != nil || to.Name != m.To.Name {
				t.Errorf("To = %+v, %v; want name %q", to, err, m.To.Name)
			}
		})
	}
}

func TestRenderRejectsHeaderInjection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *email.Confirmation)
		field  string
	}{
		{"first name CRLF", func(c *email.Confirmation) { c.AttendeeFirstName = "Ada" + evil }, "To.Name"},
		{"last name LF", func(c *email.Confirmation) { c.AttendeeLastName = "Lovelace\nBcc: evil@example.org" }, "To.Name"},
		{"last name CR", func(c *email.Confirmation) { c.AttendeeLastName = "Lovelace\rBcc: evil@example.org" }, "To.Name"},
		{"email", func(c *email.Confirmation) { c.AttendeeEmail = "ada@example.org" + evil }, "To.Email"},
		{"email list", func(c *email.Confirmation) { c.AttendeeEmail = "ada@example.org, evil@example.org" }, "To.Email"},
		{"event name (subject)", func(c *email.Confirmation) { c.EventName = "GopherFest" + evil }, "Subject"},
		{"registration ID", func(c *email.Confirmation) { c.RegistrationID = "reg" + evil }, "ID"},
		{"organiser name (Reply-To)", func(c *email.Confirmation) { c.Organiser.Name = "GopherFest" + evil }, "Confirmation.Organiser.Name"},
		{"organiser email (Reply-To)", func(c *email.Confirmation) { c.Organiser.Email = "hello@gopherfest.example" + evil }, "ReplyTo.Email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := paidConfirmation()
			tt.mutate(&c)
			m, err := newRenderer(t).Render(c, organiser, sentAt)
			if err == nil {
				t.Fatalf("Render() = nil error, want one naming %s", tt.field)
			}
			if !errors.Is(err, email.ErrInvalidMessage) || !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("Render() = %v, want ErrInvalidMessage naming %s", err, tt.field)
			}
			if m.ID != "" || m.Text != "" || m.HTML != "" {
				t.Errorf("Render() returned a message along with the error: %+v", m)
			}
		})
	}
}

func TestRenderRejectsHeaderInjectionFromOrganiser(t *testing.T) {
	t.Parallel()
	from := organiser
	from.Name = "GopherFest" + evil
	if _, err := newRenderer(t).Render(paidConfirmation(), from, sentAt); !errors.Is(err, email.ErrInvalidMessage) {
		t.Errorf("Render() = %v, want ErrInvalidMessage", err)
	}
}

func TestRenderInvalidConfirmation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *email.Confirmation)
		field  string
	}{
		{"no registration ID", func(c *email.Confirmation) { c.RegistrationID = "" }, "Confirmation.RegistrationID"},
		{"no attendee email", func(c *email.Confirmation) { c.AttendeeEmail = "" }, "Confirmation.AttendeeEmail"},
		{"invalid attendee email", func(c *email.Confirmation) { c.AttendeeEmail = "ada" }, "To.Email"},
		{"no ticket name", func(c *email.Confirmation) { c.TicketName = " " }, "Confirmation.TicketName"},
		{"no event name", func(c *email.Confirmation) { c.EventName = "" }, "Confirmation.EventName"},
		{"no event start", func(c *email.Confirmation) { c.EventStart = time.Time{} }, "Confirmation.EventStart"},
		{"no amount for a paid ticket", func(c *email.Confirmation) { c.Amount = "" }, "Confirmation.Amount"},
		{"no currency for a paid ticket", func(c *email.Confirmation) { c.Currency = "" }, "Confirmation.Currency"},
		{"no status URL", func(c *email.Confirmation) { c.StatusURL = "" }, "Confirmation.StatusURL"},
		{"relative status URL", func(c *email.Confirmation) { c.StatusURL = "/registrations/x" }, "Confirmation.StatusURL"},
		{"javascript status URL", func(c *email.Confirmation) { c.StatusURL = "javascript:alert(1)" }, "Confirmation.StatusURL"},
		{"end before start", func(c *email.Confirmation) { c.EventEnd = c.EventStart.Add(-time.Hour) }, "Confirmation.EventEnd"},
		{"end at start", func(c *email.Confirmation) { c.EventEnd = c.EventStart }, "Confirmation.EventEnd"},
		{"relative organiser URL", func(c *email.Confirmation) { c.Organiser.URL = "gopherfest.example" }, "Confirmation.Organiser.URL"},
		{"javascript organiser URL", func(c *email.Confirmation) { c.Organiser.URL = "javascript:alert(1)" }, "Confirmation.Organiser.URL"},
		{"invalid organiser email", func(c *email.Confirmation) { c.Organiser.Email = "hello" }, "ReplyTo.Email"},
		{"organiser email list", func(c *email.Confirmation) { c.Organiser.Email = "a@example.org, b@example.org" }, "ReplyTo.Email"},
		{"organiser name with a line break", func(c *email.Confirmation) {
			c.Organiser.Email, c.Organiser.Name = "", "GopherFest\nBcc: evil@example.org"
		}, "Confirmation.Organiser.Name"},
		{"invalid organiser address", func(c *email.Confirmation) {}, "From.Email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := paidConfirmation()
			tt.mutate(&c)
			from := organiser
			if tt.field == "From.Email" {
				from.Email = "tickets"
			}
			_, err := newRenderer(t).Render(c, from, sentAt)
			if !errors.Is(err, email.ErrInvalidMessage) || !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("Render() = %v, want ErrInvalidMessage naming %s", err, tt.field)
			}
		})
	}
}

func TestRendererConcurrentUse(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	want, err := r.Render(paidConfirmation(), organiser, sentAt)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			m, err := r.Render(paidConfirmation(), organiser, sentAt)
			if err == nil && (m.Text != want.Text || m.HTML != want.HTML) {
				err = errors.New("concurrent render differs")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
