package event

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func wantDemo() *Event {
	return &Event{
		ID:           "gopherfest-2027",
		Name:         "GopherFest 2027",
		Description:  "Two days of talks and workshops about Go, for people who build with it every day and people who are just starting.",
		StartsAt:     time.Date(2027, 6, 10, 9, 0, 0, 0, time.FixedZone("", 2*60*60)),
		EndsAt:       time.Date(2027, 6, 11, 18, 0, 0, 0, time.FixedZone("", 2*60*60)),
		Venue:        "Kulturbrauerei, Berlin",
		Currency:     "EUR",
		EmailFrom:    Address{Address: "tickets@gopherfest.example", Name: "GopherFest"},
		Organiser:    Organiser{Name: "GopherFest e.V.", Email: "hello@gopherfest.example", URL: "https://gopherfest.example"},
		TermsURL:     "https://gopherfest.example/terms",
		PrivacyURL:   "https://gopherfest.example/privacy",
		RefundPolicy: "Full refund until 10 May 2027; after that, tickets can be transferred to a colleague free of charge.",
		Tickets: []Ticket{
			{ID: "standard", Name: "Standard", Price: 14900, Capacity: 400},
			{ID: "student", Name: "Student", Price: 4900, Capacity: 100},
			{ID: "community", Name: "Community", Price: 0, Capacity: 50, MaxPerEmail: 1},
		},
	}
}

func equalEvent(t *testing.T, got, want *Event) {
	t.Helper()
	if !got.StartsAt.Equal(want.StartsAt) {
		t.Errorf("StartsAt = %v, want %v", got.StartsAt, want.StartsAt)
	}
	_, gotOff := got.StartsAt.Zone()
	_, wantOff := want.StartsAt.Zone()
	if gotOff != wantOff {
		t.Errorf("StartsAt offset = %d, want %d", gotOff, wantOff)
	}
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{{"EndsAt", got.EndsAt, want.EndsAt}, {"SalesStart", got.SalesStart, want.SalesStart}, {"SalesEnd", got.SalesEnd, want.SalesEnd}} {
		if !tm.got.Equal(tm.want) {
			t.Errorf("%s = %v, want %v", tm.name, tm.got, tm.want)
		}
	}
	g, w := *got, *want
	g.StartsAt, w.StartsAt = time.Time{}, time.Time{}
	g.EndsAt, w.EndsAt, g.SalesStart, w.SalesStart, g.SalesEnd, w.SalesEnd = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("event = %+v\nwant    %+v", g, w)
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	equalEvent(t, Demo(), wantDemo())

	// Every call returns its own copy.
	a, b := Demo(), Demo()
	a.Tickets[0].Capacity = 1
	a.Name = "changed"
	if b.Tickets[0].Capacity != 400 || b.Name != "GopherFest 2027" {
		t.Error("Demo() returned shared state")
	}
}

func TestEventTicket(t *testing.T) {
	t.Parallel()
	e := Demo()
	tests := []struct {
		id     string
		want   Ticket
		wantOK bool
	}{
		{"standard", Ticket{ID: "standard", Name: "Standard", Price: 14900, Capacity: 400}, true},
		{"community", Ticket{ID: "community", Name: "Community", Price: 0, Capacity: 50, MaxPerEmail: 1}, true},
		{"vip", Ticket{}, false},
		{"", Ticket{}, false},
		{"Standard", Ticket{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			t.Parallel()
			got, ok := e.Ticket(tt.id)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("Ticket(%q) = %+v, %v; want %+v, %v", tt.id, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestEventMinorUnits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		currency string
		want     int
	}{
		{"EUR", 2}, {"USD", 2}, {"HUF", 2}, {"CHF", 2}, {"JPY", 0}, {"KRW", 0}, {"ISK", 0},
	}
	for _, tt := range tests {
		t.Run(tt.currency, func(t *testing.T) {
			t.Parallel()
			e := &Event{Currency: tt.currency}
			if got := e.MinorUnits(); got != tt.want {
				t.Errorf("MinorUnits() for %s = %d, want %d", tt.currency, got, tt.want)
			}
		})
	}
}

// demoWith returns the demo event file as JSON after applying change to its
// decoded form.
func demoWith(t *testing.T, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(demoJSON, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func ticket(m map[string]any, i int) map[string]any {
	return m["tickets"].([]any)[i].(map[string]any)
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(m map[string]any)
		check  func(t *testing.T, e *Event)
	}{
		{"demo", func(map[string]any) {}, func(t *testing.T, e *Event) { equalEvent(t, e, wantDemo()) }},
		{"yen without decimals", func(m map[string]any) {
			m["currency"] = "JPY"
			ticket(m, 0)["price"] = "15000"
			ticket(m, 1)["price"] = "5000"
			ticket(m, 2)["price"] = "0"
		}, func(t *testing.T, e *Event) {
			if e.Tickets[0].Price != 15000 || e.MinorUnits() != 0 {
				t.Errorf("price = %d, minor units = %d", e.Tickets[0].Price, e.MinorUnits())
			}
		}},
		{"forint has two decimals", func(m map[string]any) {
			m["currency"] = "HUF"
			ticket(m, 0)["price"] = "59900.50"
		}, func(t *testing.T, e *Event) {
			if e.Tickets[0].Price != 5990050 {
				t.Errorf("price = %d", e.Tickets[0].Price)
			}
		}},
		{"sender name optional", func(m map[string]any) {
			m["email_from"] = map[string]any{"address": "a@example.org"}
		}, func(t *testing.T, e *Event) {
			if e.EmailFrom != (Address{Address: "a@example.org"}) {
				t.Errorf("email_from = %+v", e.EmailFrom)
			}
		}},
		{"sender name null", func(m map[string]any) {
			m["email_from"] = map[string]any{"address": "a@example.org", "name": nil}
		}, func(t *testing.T, e *Event) {
			if e.EmailFrom != (Address{Address: "a@example.org"}) {
				t.Errorf("email_from = %+v", e.EmailFrom)
			}
		}},
		{"capacity limits", func(m map[string]any) {
			ticket(m, 0)["capacity"] = 1
			ticket(m, 1)["capacity"] = 10_000_000
		}, func(t *testing.T, e *Event) {
			if e.Tickets[0].Capacity != 1 || e.Tickets[1].Capacity != 10_000_000 {
				t.Errorf("capacities = %d, %d", e.Tickets[0].Capacity, e.Tickets[1].Capacity)
			}
		}},
		{"UTC start", func(m map[string]any) {
			m["starts_at"] = "2027-06-10T07:00:00Z"
		}, func(t *testing.T, e *Event) {
			if !e.StartsAt.Equal(time.Date(2027, 6, 10, 7, 0, 0, 0, time.UTC)) {
				t.Errorf("starts_at = %v", e.StartsAt)
			}
		}},
		{"one ticket", func(m map[string]any) {
			m["tickets"] = m["tickets"].([]any)[:1]
		}, func(t *testing.T, e *Event) {
			if len(e.Tickets) != 1 {
				t.Errorf("tickets = %+v", e.Tickets)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := Parse(demoWith(t, tt.change))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, e)
		})
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		data   []byte                 // used when change is nil
		change func(m map[string]any) // applied to the demo event
		want   []string               // lines the error must contain, each complete
	}{
		{name: "empty input", data: []byte(""), want: []string{
			"event file: invalid JSON at line 1, column 1: unexpected end of JSON input"}},
		{name: "syntax error", data: []byte("{\n  \"id\": \"x\",\n}"), want: []string{
			"event file: invalid JSON at line 3, column 1: invalid character '}' looking for beginning of object key string"}},
		{name: "trailing data", data: []byte(`{} {}`), want: []string{
			"event file: invalid JSON at line 1, column 4: invalid character '{' after top-level value"}},
		{name: "array", data: []byte(`[]`), want: []string{"event file: must be a JSON object"}},
		{name: "empty object", data: []byte(`{}`), want: []string{
			"event file: id: is required",
			"event file: name: is required",
			"event file: starts_at: is required",
			"event file: venue: is required",
			"event file: currency: is required",
			"event file: email_from: is required",
			"event file: tickets: is required; list at least one ticket",
		}},
		{name: "unknown top-level field", change: func(m map[string]any) { m["colour"] = "blue" }, want: []string{
			"event file: colour: unknown field; the fields are id, name, description, starts_at, ends_at, venue, currency, email_from, organiser, terms_url, privacy_url, refund_policy, sales_start, sales_end, tickets"}},
		{name: "unknown ticket field", change: func(m map[string]any) { ticket(m, 1)["vat"] = "19" }, want: []string{
			"event file: tickets[1].vat: unknown field; the fields are id, name, price, capacity, max_per_email"}},
		{name: "unknown sender field", change: func(m map[string]any) { m["email_from"].(map[string]any)["reply_to"] = "x" }, want: []string{
			"event file: email_from.reply_to: unknown field; the fields are address, name"}},
		{name: "field in other case", change: func(m map[string]any) { m["ID"] = m["id"]; delete(m, "id") }, want: []string{
			"event file: ID: unknown field; the fields are id, name, description, starts_at, ends_at, venue, currency, email_from, organiser, terms_url, privacy_url, refund_policy, sales_start, sales_end, tickets",
			"event file: id: is required"}},
		{name: "duplicate field", data: []byte(strings.Replace(string(demoJSON), `"venue"`, `"name": "Again", "venue"`, 1)), want: []string{
			"event file: name: appears more than once"}},
		{name: "id empty", change: func(m map[string]any) { m["id"] = "" }, want: []string{"event file: id: must not be empty"}},
		{name: "id not a slug", change: func(m map[string]any) { m["id"] = "GopherFest 2027" }, want: []string{
			`event file: id: "GopherFest 2027" is not a slug; use only lower-case letters a-z, digits and '-'`}},
		{name: "id wrong type", change: func(m map[string]any) { m["id"] = 2027 }, want: []string{"event file: id: must be a string"}},
		{name: "name blank", change: func(m map[string]any) { m["name"] = "  " }, want: []string{"event file: name: must not be empty"}},
		{name: "starts_at not RFC 3339", change: func(m map[string]any) { m["starts_at"] = "2027-06-10 09:00" }, want: []string{
			`event file: starts_at: "2027-06-10 09:00" is not an RFC 3339 time; use a time like "2027-06-10T09:00:00+02:00"`}},
		{name: "starts_at without zone", change: func(m map[string]any) { m["starts_at"] = "2027-06-10T09:00:00" }, want: []string{
			`event file: starts_at: "2027-06-10T09:00:00" is not an RFC 3339 time; use a time like "2027-06-10T09:00:00+02:00"`}},
		{name: "venue empty", change: func(m map[string]any) { m["venue"] = "" }, want: []string{"event file: venue: must not be empty"}},
		{name: "currency unknown", change: func(m map[string]any) { m["currency"] = "EURO" }, want: []string{
			`event file: currency: "EURO" is not a supported ISO 4217 currency code; use one of AUD, BRL, CAD, CHF, CZK, DKK, EUR, GBP, HKD, HUF, INR, ISK, JPY, KRW, MXN, NOK, NZD, PLN, SEK, SGD, USD, ZAR`}},
		{name: "currency lower case", change: func(m map[string]any) { m["currency"] = "eur" }, want: []string{
			`event file: currency: "eur" is not a supported ISO 4217 currency code; use one of AUD, BRL, CAD, CHF, CZK, DKK, EUR, GBP, HKD, HUF, INR, ISK, JPY, KRW, MXN, NOK, NZD, PLN, SEK, SGD, USD, ZAR`}},
		{name: "email_from not an object", change: func(m map[string]any) { m["email_from"] = "a@example.org" }, want: []string{
			"event file: email_from: must be an object"}},
		{name: "email address missing", change: func(m map[string]any) { m["email_from"] = map[string]any{"name": "X"} }, want: []string{
			"event file: email_from.address: is required"}},
		{name: "email address invalid", change: func(m map[string]any) { m["email_from"].(map[string]any)["address"] = "tickets" }, want: []string{
			`event file: email_from.address: "tickets" is not a valid email address; use a plain address like "tickets@example.org"`}},
		{name: "email address with name", change: func(m map[string]any) { m["email_from"].(map[string]any)["address"] = "GopherFest <t@example.org>" }, want: []string{
			`event file: email_from.address: "GopherFest <t@example.org>" is not a valid email address; use a plain address like "tickets@example.org"`}},
		{name: "email address header injection", change: func(m map[string]any) {
			m["email_from"].(map[string]any)["address"] = "t@example.org\r\nBcc: x@example.org"
		}, want: []string{
			`event file: email_from.address: "t@example.org\r\nBcc: x@example.org" is not a valid email address; use a plain address like "tickets@example.org"`}},
		{name: "email name with CRLF", change: func(m map[string]any) { m["email_from"].(map[string]any)["name"] = "Gopher\r\nBcc: x@example.org" }, want: []string{
			"event file: email_from.name: must not contain line breaks or other control characters"}},
		{name: "email name with LF", change: func(m map[string]any) { m["email_from"].(map[string]any)["name"] = "Gopher\nFest" }, want: []string{
			"event file: email_from.name: must not contain line breaks or other control characters"}},
		{name: "tickets empty", change: func(m map[string]any) { m["tickets"] = []any{} }, want: []string{
			"event file: tickets: must list at least one ticket"}},
		{name: "tickets not an array", change: func(m map[string]any) { m["tickets"] = map[string]any{} }, want: []string{
			"event file: tickets: must be an array of tickets"}},
		{name: "ticket not an object", change: func(m map[string]any) { m["tickets"].([]any)[1] = "student" }, want: []string{
			"event file: tickets[1]: must be an object"}},
		{name: "ticket id empty", change: func(m map[string]any) { ticket(m, 0)["id"] = "" }, want: []string{
			"event file: tickets[0].id: must not be empty"}},
		{name: "ticket id not a slug", change: func(m map[string]any) { ticket(m, 0)["id"] = "early_bird" }, want: []string{
			`event file: tickets[0].id: "early_bird" is not a slug; use only lower-case letters a-z, digits and '-'`}},
		{name: "ticket id duplicate", change: func(m map[string]any) { ticket(m, 2)["id"] = "standard" }, want: []string{
			`event file: tickets[2].id: "standard" is already the id of tickets[0]; ticket ids must be unique`}},
		{name: "ticket name missing", change: func(m map[string]any) { delete(ticket(m, 1), "name") }, want: []string{
			"event file: tickets[1].name: is required"}},
		{name: "ticket name empty", change: func(m map[string]any) { ticket(m, 1)["name"] = "" }, want: []string{
			"event file: tickets[1].name: must not be empty"}},
		{name: "price missing", change: func(m map[string]any) { delete(ticket(m, 0), "price") }, want: []string{
			"event file: tickets[0].price: is required"}},
		{name: "price as number", change: func(m map[string]any) { ticket(m, 0)["price"] = 149.0 }, want: []string{
			"event file: tickets[0].price: must be a string"}},
		{name: "price too many decimals", change: func(m map[string]any) { ticket(m, 0)["price"] = "149.999" }, want: []string{
			`event file: tickets[0].price: amount "149.999" has more than 2 decimals, the most EUR allows`}},
		{name: "price decimals in yen", change: func(m map[string]any) {
			m["currency"] = "JPY"
			ticket(m, 0)["price"] = "15000"
			ticket(m, 1)["price"] = "5000"
			ticket(m, 2)["price"] = "0"
			ticket(m, 0)["price"] = "15000.00"
		}, want: []string{
			`event file: tickets[0].price: amount "15000.00" has decimals, but JPY has none; use a whole number like "149"`}},
		{name: "price negative", change: func(m map[string]any) { ticket(m, 1)["price"] = "-49.00" }, want: []string{
			`event file: tickets[1].price: amount "-49.00" is negative; use 0 or more`}},
		{name: "price garbage", change: func(m map[string]any) { ticket(m, 1)["price"] = "€49" }, want: []string{
			`event file: tickets[1].price: amount "€49" is not a decimal number; use digits with at most 2 decimals, like "149.00"`}},
		{name: "price overflow", change: func(m map[string]any) { ticket(m, 1)["price"] = "99999999999999999999.00" }, want: []string{
			`event file: tickets[1].price: amount "99999999999999999999.00" is too large`}},
		{name: "capacity missing", change: func(m map[string]any) { delete(ticket(m, 1), "capacity") }, want: []string{
			"event file: tickets[1].capacity: is required"}},
		{name: "capacity zero", change: func(m map[string]any) { ticket(m, 1)["capacity"] = 0 }, want: []string{
			"event file: tickets[1].capacity: must be at least 1"}},
		{name: "capacity negative", change: func(m map[string]any) { ticket(m, 1)["capacity"] = -5 }, want: []string{
			"event file: tickets[1].capacity: must be at least 1"}},
		{name: "capacity too large", change: func(m map[string]any) { ticket(m, 1)["capacity"] = 10_000_001 }, want: []string{
			"event file: tickets[1].capacity: must be at most 10000000"}},
		{name: "capacity overflows", data: []byte(strings.Replace(string(demoJSON), `"capacity": 400`, `"capacity": 99999999999999999999`, 1)), want: []string{
			"event file: tickets[0].capacity: must be at most 10000000"}},
		{name: "capacity fractional", change: func(m map[string]any) { ticket(m, 1)["capacity"] = 1.5 }, want: []string{
			"event file: tickets[1].capacity: must be a whole number, not 1.5"}},
		{name: "capacity as string", change: func(m map[string]any) { ticket(m, 1)["capacity"] = "100" }, want: []string{
			"event file: tickets[1].capacity: must be a number"}},
		{name: "all problems reported together", change: func(m map[string]any) {
			m["id"] = "Bad Id"
			m["currency"] = "XYZ"
			m["email_from"].(map[string]any)["address"] = "nope"
			ticket(m, 0)["capacity"] = 0
			ticket(m, 1)["id"] = "standard"
			ticket(m, 2)["name"] = ""
			m["extra"] = true
		}, want: []string{
			`event file: extra: unknown field; the fields are id, name, description, starts_at, ends_at, venue, currency, email_from, organiser, terms_url, privacy_url, refund_policy, sales_start, sales_end, tickets`,
			`event file: id: "Bad Id" is not a slug; use only lower-case letters a-z, digits and '-'`,
			`event file: currency: "XYZ" is not a supported ISO 4217 currency code; use one of AUD, BRL, CAD, CHF, CZK, DKK, EUR, GBP, HKD, HUF, INR, ISK, JPY, KRW, MXN, NOK, NZD, PLN, SEK, SGD, USD, ZAR`,
			`event file: email_from.address: "nope" is not a valid email address; use a plain address like "tickets@example.org"`,
			`event file: tickets[0].capacity: must be at least 1`,
			`event file: tickets[1].id: "standard" is already the id of tickets[0]; ticket ids must be unique`,
			`event file: tickets[2].name: must not be empty`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := tt.data
			if tt.change != nil {
				data = demoWith(t, tt.change)
			}
			e, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want errors %q", e, tt.want)
			}
			if e != nil {
				t.Errorf("Parse returned an event with its error")
			}
			lines := strings.Split(err.Error(), "\n")
			if !equalSets(lines, tt.want) {
				t.Errorf("Parse error lines:\n  %s\nwant:\n  %s", strings.Join(lines, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func equalSets(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	seen := make(map[string]int)
	for _, s := range got {
		seen[s]++
	}
	for _, s := range want {
		if seen[s] == 0 {
			return false
		}
		seen[s]--
	}
	return true
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	yen := strings.NewReplacer(`"EUR"`, `"JPY"`, `"149.00"`, `"15000"`, `"49.00"`, `"5000"`, `"0.00"`, `"0"`).Replace(string(demoJSON))
	if err := os.WriteFile(good, []byte(yen), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"id": "x", "tickets": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	malformed := filepath.Join(dir, "malformed.json")
	if err := os.WriteFile(malformed, []byte(`{"id": `), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.json")

	tests := []struct {
		name      string
		path      string
		wantErr   bool
		wantPrice int64
	}{
		{"demo", "", false, 14900},
		{"file", good, false, 15000},
		{"invalid", bad, true, 0},
		{"malformed", malformed, true, 0},
		{"missing", missing, true, 0},
		{"directory", dir, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := Load(tt.path)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Load(%q): %v", tt.path, err)
				}
				if e.Tickets[0].Price != tt.wantPrice {
					t.Errorf("Load(%q): price = %d, want %d", tt.path, e.Tickets[0].Price, tt.wantPrice)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load(%q) succeeded, want an error", tt.path)
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "event file") || !strings.Contains(line, tt.path) {
					t.Errorf("Load(%q) error line %q does not name the file", tt.path, line)
				}
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// holds the invariants the rest of the program relies on.
func FuzzParse(f *testing.F) {
	f.Add(demoJSON)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"tickets": [{"capacity": 1e3, "price": "1.000"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data)
		if err != nil {
			if e != nil {
				t.Fatal("event returned with an error")
			}
			return
		}
		if len(e.Tickets) == 0 {
			t.Fatal("accepted an event without tickets")
		}
		ids := map[string]bool{}
		for _, tk := range e.Tickets {
			if tk.Price < 0 || tk.Capacity < 1 || tk.Capacity > maxCapacity || tk.ID == "" || ids[tk.ID] {
				t.Fatalf("accepted bad ticket %+v", tk)
			}
			ids[tk.ID] = true
		}
		if strings.ContainsAny(e.EmailFrom.Name, "\r\n") || strings.ContainsAny(e.EmailFrom.Address, "\r\n") {
			t.Fatalf("accepted header injection in %+v", e.EmailFrom)
		}
	})
}
