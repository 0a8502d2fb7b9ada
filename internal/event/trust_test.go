package event

import (
	"strings"
	"testing"
	"time"
)

func TestParseTrustFields(t *testing.T) {
	t.Parallel()
	e, err := Parse(demoWith(t, func(m map[string]any) {
		m["sales_start"] = "2027-03-01T10:00:00+01:00"
		m["sales_end"] = "2027-06-01T00:00:00+02:00"
		m["organiser"] = map[string]any{"name": "Gopher e.V."}
		ticket(m, 0)["max_per_email"] = 4
		ticket(m, 2)["max_per_email"] = 0
	}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if want := time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC); !e.SalesStart.Equal(want) {
		t.Errorf("SalesStart = %v, want %v", e.SalesStart, want)
	}
	if want := time.Date(2027, 5, 31, 22, 0, 0, 0, time.UTC); !e.SalesEnd.Equal(want) {
		t.Errorf("SalesEnd = %v, want %v", e.SalesEnd, want)
	}
	if e.Organiser != (Organiser{Name: "Gopher e.V."}) {
		t.Errorf("Organiser = %+v; want the name only", e.Organiser)
	}
	if got := []int{e.Tickets[0].MaxPerEmail, e.Tickets[1].MaxPerEmail, e.Tickets[2].MaxPerEmail}; got[0] != 4 || got[1] != 0 || got[2] != 0 {
		t.Errorf("MaxPerEmail = %v; want [4 0 0]: explicit values win over the free ticket's default of 1", got)
	}
}

func TestParseTrustFieldsInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(m map[string]any)
		want   string
	}{
		{"ends before it starts", func(m map[string]any) { m["ends_at"] = "2027-06-10T08:00:00+02:00" },
			"event file: ends_at: must be after starts_at"},
		{"ends_at not a time", func(m map[string]any) { m["ends_at"] = "tomorrow" },
			`event file: ends_at: "tomorrow" is not an RFC 3339 time; use a time like "2027-06-10T09:00:00+02:00"`},
		{"sales end before start", func(m map[string]any) {
			m["sales_start"] = "2027-03-01T10:00:00Z"
			m["sales_end"] = "2027-02-01T10:00:00Z"
		}, "event file: sales_end: must be after sales_start"},
		{"sales start after the event", func(m map[string]any) { m["sales_start"] = "2027-07-01T10:00:00Z" },
			"event file: sales_start: must be before starts_at: sales close once the event has started"},
		{"plain http terms", func(m map[string]any) { m["terms_url"] = "http://gopherfest.example/terms" },
			`event file: terms_url: "http://gopherfest.example/terms" must start with https://`},
		{"relative privacy url", func(m map[string]any) { m["privacy_url"] = "/privacy" },
			`event file: privacy_url: "/privacy" is not an absolute URL; use one like "https://example.org/terms"`},
		{"javascript url", func(m map[string]any) { m["organiser"] = map[string]any{"name": "X", "url": "javascript:alert(1)"} },
			`event file: organiser.url: "javascript:alert(1)" is not an absolute URL; use one like "https://example.org/terms"`},
		{"organiser without a name", func(m map[string]any) { m["organiser"] = map[string]any{"email": "a@example.org"} },
			"event file: organiser.name: is required"},
		{"organiser email with a name", func(m map[string]any) {
			m["organiser"] = map[string]any{"name": "X", "email": "X <a@example.org>"}
		}, `event file: organiser.email: "X <a@example.org>" is not a valid email address; use a plain address like "hello@example.org"`},
		{"organiser name with a line break", func(m map[string]any) { m["organiser"] = map[string]any{"name": "X\r\nBcc: y"} },
			"event file: organiser.name: must not contain line breaks or other control characters"},
		{"unknown organiser field", func(m map[string]any) { m["organiser"] = map[string]any{"name": "X", "phone": "1"} },
			"event file: organiser.phone: unknown field; the fields are name, email, url"},
		{"negative max_per_email", func(m map[string]any) { ticket(m, 0)["max_per_email"] = -1 },
			"event file: tickets[0].max_per_email: must be from 0 to 1000 (0 means no limit)"},
		{"fractional max_per_email", func(m map[string]any) { ticket(m, 0)["max_per_email"] = 1.5 },
			"event file: tickets[0].max_per_email: must be a whole number from 0 to 1000, not 1.5"},
		{"refund policy with a control character", func(m map[string]any) { m["refund_policy"] = "no\x07refunds" },
			"event file: refund_policy: must not contain control characters other than line breaks"},
		{"description too long", func(m map[string]any) { m["description"] = strings.Repeat("a", 2001) },
			"event file: description: is longer than 2000 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(demoWith(t, tt.change))
			if err == nil {
				t.Fatalf("Parse accepted it; want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			found := false
			for _, l := range lines {
				found = found || l == tt.want
			}
			if !found {
				t.Errorf("error lines:\n  %s\nwant the line\n  %s", strings.Join(lines, "\n  "), tt.want)
			}
		})
	}
}

func TestParseDuplicateOrganiserKey(t *testing.T) {
	t.Parallel()
	data := []byte(strings.Replace(string(demoJSON), `"organiser": {"name": "GopherFest e.V.",`,
		`"organiser": {"name": "GopherFest e.V.", "name": "Someone else",`, 1))
	_, err := Parse(data)
	if err == nil || !strings.Contains(err.Error(), "event file: organiser.name: appears more than once") {
		t.Fatalf("Parse = %v; want the duplicate organiser.name named", err)
	}
}

func TestSalesAt(t *testing.T) {
	t.Parallel()
	start := time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC)
	end := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	begins := time.Date(2027, 6, 10, 7, 0, 0, 0, time.UTC)
	windowed := &Event{SalesStart: start, SalesEnd: end, StartsAt: begins}
	open := &Event{StartsAt: begins}
	tests := []struct {
		name string
		e    *Event
		at   time.Time
		want Sales
	}{
		{"before sales start", windowed, start.Add(-time.Nanosecond), SalesNotOpen},
		{"at sales start", windowed, start, SalesOpen},
		{"just before sales end", windowed, end.Add(-time.Nanosecond), SalesOpen},
		{"at sales end", windowed, end, SalesClosed},
		{"no window, before the event", open, begins.Add(-time.Minute), SalesOpen},
		{"no window, once started", open, begins, SalesClosed},
		{"no window, long after", open, begins.AddDate(1, 0, 0), SalesClosed},
	}
	for _, tt := range tests {
		if got := tt.e.SalesAt(tt.at); got != tt.want {
			t.Errorf("%s: SalesAt = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestEnd(t *testing.T) {
	t.Parallel()
	starts := time.Date(2027, 6, 10, 7, 0, 0, 0, time.UTC)
	if got := (&Event{StartsAt: starts}).End(); !got.Equal(starts) {
		t.Errorf("End without ends_at = %v; want the start", got)
	}
	ends := starts.Add(30 * time.Hour)
	if got := (&Event{StartsAt: starts, EndsAt: ends}).End(); !got.Equal(ends) {
		t.Errorf("End = %v; want %v", got, ends)
	}
}
