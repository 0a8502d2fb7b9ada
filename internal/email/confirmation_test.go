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
		Venue:             "Kulturbrauerei, Berlin",
		StatusURL:         "http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
		CardBrand:         "visa",
		CardLast4:         "1111",
	}
}

func freeConfirmation() email.Confirmation {
	c := paidConfirmation()
	c.RegistrationID = "0b1d3f5a7c9e2b4d6f8a0c2e4a6c8e0f"
	c.StatusURL = "http://localhost:8080/registrations/0b1d3f5a7c9e2b4d6f8a0c2e4a6c8e0f"
	c.TicketName, c.Amount, c.Free = "Community", "0.00", true
	c.CardBrand, c.CardLast4 = "", ""
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, raw := render(t, tt.c)
			checkGolden(t, tt.name+".eml.golden", raw)
			// The decoded parts too, so that template changes are easy to review.
			checkGolden(t, tt.name+".txt.golden", []byte(m.Text))
			checkGolden(t, tt.name+".html.golden", []byte(m.HTML))
		})
	}
}

func TestRenderContent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(c *email.Confirmation)
		want    []string // in both parts
		notWant []string // in neither part
	}{
		{
			name:   "paid by card",
			mutate: func(c *email.Confirmation) {},
			want: []string{"Hello Ada,", "Ada Lovelace", "Standard", "149.00 EUR", "Visa ending in 1111", "GopherFest 2027",
				"Thursday, 10 June 2027, 09:00 (UTC+02:00)", "Kulturbrauerei, Berlin",
				"http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
				"7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10"},
			notWant: []string{"Free"},
		},
		{
			name:    "free ticket",
			mutate:  func(c *email.Confirmation) { *c = freeConfirmation() },
			want:    []string{"Hello Ada,", "Community", "Free", "GopherFest 2027", "Kulturbrauerei, Berlin"},
			notWant: []string{"0.00", "EUR", "ending in", "Paid with"},
		},
		{
			name:   "other card brand",
			mutate: func(c *email.Confirmation) { c.CardBrand, c.CardLast4 = "mastercard", "4444" },
			want:   []string{"Mastercard ending in 4444"},
		},
		{
			name:    "brand without last four digits",
			mutate:  func(c *email.Confirmation) { c.CardLast4 = "" },
			want:    []string{"149.00 EUR"},
			notWant: []string{"ending in", "Paid with"},
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
			},
			want: []string{"Hello Zoë,", "Café Conf", "Zürich"},
		},
		{
			name:   "event in UTC",
			mutate: func(c *email.Confirmation) { c.EventStart = time.Date(2027, 3, 1, 18, 30, 0, 0, time.UTC) },
			want:   []string{"Monday, 1 March 2027, 18:30 (UTC+00:00)"},
		},
		{
			name: "event west of UTC",
			mutate: func(c *email.Confirmation) {
				c.EventStart = time.Date(2027, 11, 20, 8, 5, 0, 0, time.FixedZone("", -5*60*60))
			},
			want: []string{"Saturday, 20 November 2027, 08:05 (UTC-05:00)"},
		},
		{
			name: "event shown in its own location",
			mutate: func(c *email.Confirmation) {
				c.EventStart = time.Date(2027, 6, 10, 9, 0, 0, 0, time.FixedZone("", 5*60*60+30*60))
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
			if m.From != organiser || m.ID != c.RegistrationID || !m.Date.Equal(sentAt) {
				t.Errorf("From, ID, Date = %+v, %q, %v", m.From, m.ID, m.Date)
			}
			if len(m.Headers) != 1 || m.Headers["X-Registration-ID"] != c.RegistrationID {
				t.Errorf("Headers = %q", m.Headers)
			}

			_, parts := parseMessage(t, raw)
			if len(parts) != 2 {
				t.Fatalf("got %d parts, want 2", len(parts))
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
