package email_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/email"
)

func cancellation() email.Cancellation {
	return email.Cancellation{
		MessageID:         "cancel-Xq3v9",
		RegistrationID:    "7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
		AttendeeFirstName: "Ada",
		AttendeeLastName:  "Lovelace",
		AttendeeEmail:     "ada@example.org",
		TicketName:        "Standard",
		EventName:         "GopherFest 2027",
		EventStart:        time.Date(2027, 6, 10, 9, 0, 0, 0, berlin),
		Refund:            "74.50 EUR",
		CardBrand:         "visa",
		CardLast4:         "1111",
		StatusURL:         "http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
	}
}

func notices() email.Notices {
	at := time.Date(2027, 1, 5, 9, 58, 0, 0, time.UTC)
	return email.Notices{
		MessageID: "notices-3-4",
		EventName: "GopherFest 2027",
		OfficeURL: "http://localhost:8080/admin",
		Items: []email.NoticeItem{
			{Title: "A registration needs attention: Ada Lovelace", Detail: "send_confirmation failed: mailer: 550 recipient rejected",
				URL: "http://localhost:8080/admin/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10", At: at},
			{Title: "A payment's outcome stayed unknown", Detail: "paypal: timeout\n\tafter 5 hours",
				URL: "http://localhost:8080/admin/incidents", At: at.Add(time.Minute)},
		},
	}
}

func TestRenderCancellationGolden(t *testing.T) {
	t.Parallel()
	noRefund := cancellation()
	noRefund.MessageID, noRefund.Refund = "cancel-Yr4w0", ""
	tests := []struct {
		name string
		c    email.Cancellation
	}{
		{"cancellation", cancellation()},
		{"cancellation_no_refund", noRefund},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := newRenderer(t).RenderCancellation(tt.c, organiser, sentAt)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := m.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if m.ID != tt.c.MessageID || m.To.Email != "ada@example.org" || m.Headers["X-Registration-ID"] != tt.c.RegistrationID {
				t.Errorf("message = id %q to %q headers %v", m.ID, m.To.Email, m.Headers)
			}
			checkGolden(t, tt.name+".eml.golden", raw)
			checkGolden(t, tt.name+".txt.golden", []byte(m.Text))
			checkGolden(t, tt.name+".html.golden", []byte(m.HTML))
		})
	}
}

func TestRenderCancellationContent(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	m, err := r.RenderCancellation(cancellation(), organiser, sentAt)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cancelled", "74.50 EUR, to your Visa ending in 1111", "Standard", "7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10"} {
		if !strings.Contains(m.Text, want) || !strings.Contains(m.HTML, want) {
			t.Errorf("cancellation lacks %q", want)
		}
	}
	c := cancellation()
	c.Refund = ""
	if m, err = r.RenderCancellation(c, organiser, sentAt); err != nil || !strings.Contains(m.Text, "Refund:     None") {
		t.Errorf("without refund: %v\n%s", err, m.Text)
	}
	c = cancellation()
	c.AttendeeFirstName = "<b>Ada</b>"
	if m, err = r.RenderCancellation(c, organiser, sentAt); err != nil || strings.Contains(m.HTML, "<b>Ada") {
		t.Errorf("attendee input not escaped: %v", err)
	}
	for name, broken := range map[string]func(c *email.Cancellation){
		"no message id":     func(c *email.Cancellation) { c.MessageID = "" },
		"bad message id":    func(c *email.Cancellation) { c.MessageID = "a b" },
		"no email":          func(c *email.Cancellation) { c.AttendeeEmail = "" },
		"header injection":  func(c *email.Cancellation) { c.AttendeeLastName = "Lovelace\r\nBcc: x@example.org" },
		"relative url":      func(c *email.Cancellation) { c.StatusURL = "/registrations/x" },
		"no event start":    func(c *email.Cancellation) { c.EventStart = time.Time{} },
		"no ticket name":    func(c *email.Cancellation) { c.TicketName = " " },
		"no registration":   func(c *email.Cancellation) { c.RegistrationID = "" },
		"no event name":     func(c *email.Cancellation) { c.EventName = "" },
		"bad address":       func(c *email.Cancellation) { c.AttendeeEmail = "not an address" },
		"newline in ticket": func(c *email.Cancellation) { c.EventName = "Gopher\nFest" },
	} {
		c := cancellation()
		broken(&c)
		if _, err := r.RenderCancellation(c, organiser, sentAt); !errors.Is(err, email.ErrInvalidMessage) {
			t.Errorf("%s: err = %v, want ErrInvalidMessage", name, err)
		}
	}
}

func TestRenderNotices(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	to := email.Address{Email: "owner@example.org"}
	m, err := r.RenderNotices(notices(), organiser, to, sentAt)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "notices.eml.golden", raw)
	checkGolden(t, "notices.txt.golden", []byte(m.Text))
	checkGolden(t, "notices.html.golden", []byte(m.HTML))
	if m.Subject != "GopherFest 2027: 2 things need your attention" || m.To != to {
		t.Errorf("subject %q, to %v", m.Subject, m.To)
	}
	for _, want := range []string{"http://localhost:8080/admin/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
		"http://localhost:8080/admin/incidents", "paypal: timeout after 5 hours"} {
		if !strings.Contains(m.Text, want) || !strings.Contains(m.HTML, want) {
			t.Errorf("notices lack %q:\n%s", want, m.Text)
		}
	}
	one := notices()
	one.Items = one.Items[:1]
	one.Items[0].Detail = strings.Repeat("x", 1000)
	if m, err = r.RenderNotices(one, organiser, to, sentAt); err != nil || m.Subject != "GopherFest 2027: 1 thing needs your attention" ||
		strings.Contains(m.Text, strings.Repeat("x", 301)) {
		t.Errorf("one long notice: %v, subject %q", err, m.Subject)
	}
	for name, broken := range map[string]func(n *email.Notices){
		"no items":     func(n *email.Notices) { n.Items = nil },
		"relative url": func(n *email.Notices) { n.Items[0].URL = "/admin" },
		"no title":     func(n *email.Notices) { n.Items[1].Title = "" },
		"no office":    func(n *email.Notices) { n.OfficeURL = "" },
		"no id":        func(n *email.Notices) { n.MessageID = "" },
		"no event":     func(n *email.Notices) { n.EventName = "" },
	} {
		n := notices()
		broken(&n)
		if _, err := r.RenderNotices(n, organiser, to, sentAt); !errors.Is(err, email.ErrInvalidMessage) {
			t.Errorf("%s: err = %v, want ErrInvalidMessage", name, err)
		}
	}
}

func TestRenderResentConfirmation(t *testing.T) {
	t.Parallel()
	c := paidConfirmation()
	c.MessageID = "resend-k1"
	c.AttendeeEmail = "ada@example.net"
	m, err := newRenderer(t).Render(c, organiser, sentAt)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "resend-k1" || m.To.Email != "ada@example.net" || m.Headers["X-Registration-ID"] != c.RegistrationID {
		t.Errorf("resent confirmation: id %q to %q headers %v", m.ID, m.To.Email, m.Headers)
	}
}
