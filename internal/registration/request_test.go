package registration

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
)

// testNow is the clock of validation tests: cards expiring in June 2026 or
// later are valid.
var testNow = time.Date(2026, time.June, 15, 12, 0, 0, 0, time.UTC)

func testEvent(t testing.TB) *event.Event {
	t.Helper()
	ev, err := event.Parse([]byte(`{
	  "id": "testconf-2027", "name": "TestConf 2027", "starts_at": "2027-06-10T09:00:00+02:00",
	  "venue": "Hall 1", "currency": "EUR",
	  "email_from": {"address": "tickets@testconf.example", "name": "TestConf"},
	  "tickets": [
	    {"id": "standard", "name": "Standard", "price": "149.00", "capacity": 100},
	    {"id": "community", "name": "Community", "price": "0.00", "capacity": 50}
	  ]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// validReq is a fresh, valid, normalised request for the "standard" ticket.
func validReq() Request {
	return Request{
		Ticket:   "standard",
		Attendee: Attendee{FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.org", Company: "Analytical Engines"},
		Billing: &Billing{
			Card: CardInput{Number: "4111111111111111", Expiry: "2030-12", CVC: "123", Name: "Ada Lovelace"},
			Address: Address{Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH",
				Country: "GB"},
		},
		Newsletter: true,
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("é", n) } // n runes, 2n bytes
	tests := []struct {
		name   string
		edit   func(r *Request)
		fields []string // the field paths reported, none for a valid request
	}{
		{"valid", func(r *Request) {}, nil},
		{"valid without optional fields", func(r *Request) {
			r.Attendee.Company = ""
			r.Billing.Address.PostalCode = ""
			r.Newsletter = false
		}, nil},
		{"valid with every optional field", func(r *Request) {
			r.Billing.Address.Line2 = "Flat 2"
			r.Billing.Address.Region = "Greater London"
		}, nil},
		{"valid at the length limits", func(r *Request) {
			r.Attendee.FirstName, r.Attendee.LastName, r.Attendee.Company = long(100), long(100), long(200)
			r.Billing.Card.Name, r.Billing.Address.Line1, r.Billing.Address.Line2 = long(100), long(200), long(200)
			r.Billing.Address.City, r.Billing.Address.PostalCode, r.Billing.Address.Region = long(100), long(20), long(100)
		}, nil},
		{"4-digit CVC on an Amex card", func(r *Request) { r.Billing.Card.Number = "378282246310005"; r.Billing.Card.CVC = "1234" }, nil},
		{"4-digit CVC on a Visa card", func(r *Request) { r.Billing.Card.CVC = "1234" }, []string{"billing.card.cvc"}},
		{"3-digit CVC on an Amex card", func(r *Request) { r.Billing.Card.Number = "378282246310005" }, []string{"billing.card.cvc"}},
		{"valid other test card", func(r *Request) { r.Billing.Card.Number = "4242424242424242" }, nil},
		{"card expiring this month", func(r *Request) { r.Billing.Card.Expiry = "2026-06" }, nil},
		{"card expiring in 25 years", func(r *Request) { r.Billing.Card.Expiry = "2051-01" }, nil},

		{"no ticket", func(r *Request) { r.Ticket = "" }, []string{"ticket"}},
		{"unknown ticket", func(r *Request) { r.Ticket = "vip" }, []string{"ticket"}},
		{"ticket in another case", func(r *Request) { r.Ticket = "Standard" }, []string{"ticket"}},
		{"unknown ticket without billing", func(r *Request) { r.Ticket = "vip"; r.Billing = nil }, []string{"ticket"}},

		{"no first name", func(r *Request) { r.Attendee.FirstName = "" }, []string{"attendee.first_name"}},
		{"no last name", func(r *Request) { r.Attendee.LastName = "" }, []string{"attendee.last_name"}},
		{"long first name", func(r *Request) { r.Attendee.FirstName = long(101) }, []string{"attendee.first_name"}},
		{"long last name", func(r *Request) { r.Attendee.LastName = long(101) }, []string{"attendee.last_name"}},
		{"control character in name", func(r *Request) { r.Attendee.FirstName = "Ada\nBcc: x" }, []string{"attendee.first_name"}},
		{"invalid UTF-8 in name", func(r *Request) { r.Attendee.LastName = "Love\xfflace" }, []string{"attendee.last_name"}},
		{"long company", func(r *Request) { r.Attendee.Company = long(201) }, []string{"attendee.company"}},
		{"control character in company", func(r *Request) { r.Attendee.Company = "A\x00B" }, []string{"attendee.company"}},

		{"no email", func(r *Request) { r.Attendee.Email = "" }, []string{"attendee.email"}},
		{"email without at", func(r *Request) { r.Attendee.Email = "ada.example.org" }, []string{"attendee.email"}},
		{"email without domain", func(r *Request) { r.Attendee.Email = "ada@" }, []string{"attendee.email"}},
		{"email without dot in domain", func(r *Request) { r.Attendee.Email = "ada@localhost" }, []string{"attendee.email"}},
		{"email with display name", func(r *Request) { r.Attendee.Email = "Ada <ada@example.org>" }, []string{"attendee.email"}},
		{"email in angle brackets", func(r *Request) { r.Attendee.Email = "<ada@example.org>" }, []string{"attendee.email"}},
		{"two emails", func(r *Request) { r.Attendee.Email = "ada@example.org, eve@example.org" }, []string{"attendee.email"}},
		{"email with header injection", func(r *Request) { r.Attendee.Email = "ada@example.org\r\nBcc: eve@example.org" }, []string{"attendee.email"}},
		{"email too long", func(r *Request) { r.Attendee.Email = strings.Repeat("a", 64) + "@" + strings.Repeat("b", 186) + ".org" }, []string{"attendee.email"}},

		{"paid ticket without billing", func(r *Request) { r.Billing = nil }, []string{"billing"}},
		{"free ticket without billing", func(r *Request) { r.Ticket = "community"; r.Billing = nil }, nil},
		{"free ticket ignores bad billing", func(r *Request) {
			r.Ticket = "community"
			r.Billing.Card = CardInput{Number: "1234", Expiry: "soon", CVC: "x"}
		}, nil},
		{"free ticket still needs a name", func(r *Request) { r.Ticket = "community"; r.Attendee.FirstName = "" }, []string{"attendee.first_name"}},

		{"no card number", func(r *Request) { r.Billing.Card.Number = "" }, []string{"billing.card.number"}},
		{"luhn-invalid card", func(r *Request) { r.Billing.Card.Number = "4111111111111112" }, []string{"billing.card.number"}},
		{"letters in card", func(r *Request) { r.Billing.Card.Number = "411111111111111a" }, []string{"billing.card.number"}},
		{"card not normalised", func(r *Request) { r.Billing.Card.Number = "4111 1111 1111 1111" }, []string{"billing.card.number"}},
		{"card too short", func(r *Request) { r.Billing.Card.Number = "42" }, []string{"billing.card.number"}},
		{"card too long", func(r *Request) { r.Billing.Card.Number = "41111111111111111111" }, []string{"billing.card.number"}},
		{"non-ASCII digits in card", func(r *Request) { r.Billing.Card.Number = "４１１１１１１１１１１１１１１１" }, []string{"billing.card.number"}},

		{"no expiry", func(r *Request) { r.Billing.Card.Expiry = "" }, []string{"billing.card.expiry"}},
		{"expiry MM/YY", func(r *Request) { r.Billing.Card.Expiry = "12/30" }, []string{"billing.card.expiry"}},
		{"expiry with day", func(r *Request) { r.Billing.Card.Expiry = "2030-12-01" }, []string{"billing.card.expiry"}},
		{"expiry month 00", func(r *Request) { r.Billing.Card.Expiry = "2030-00" }, []string{"billing.card.expiry"}},
		{"expiry month 13", func(r *Request) { r.Billing.Card.Expiry = "2030-13" }, []string{"billing.card.expiry"}},
		{"expired last month", func(r *Request) { r.Billing.Card.Expiry = "2026-05" }, []string{"billing.card.expiry"}},
		{"expired years ago", func(r *Request) { r.Billing.Card.Expiry = "2020-12" }, []string{"billing.card.expiry"}},
		{"expiry too far ahead", func(r *Request) { r.Billing.Card.Expiry = "2052-01" }, []string{"billing.card.expiry"}},

		{"no CVC", func(r *Request) { r.Billing.Card.CVC = "" }, []string{"billing.card.cvc"}},
		{"2-digit CVC", func(r *Request) { r.Billing.Card.CVC = "12" }, []string{"billing.card.cvc"}},
		{"5-digit CVC", func(r *Request) { r.Billing.Card.CVC = "12345" }, []string{"billing.card.cvc"}},
		{"letters in CVC", func(r *Request) { r.Billing.Card.CVC = "12a" }, []string{"billing.card.cvc"}},

		{"no name on card", func(r *Request) { r.Billing.Card.Name = "" }, []string{"billing.card.name"}},
		{"long name on card", func(r *Request) { r.Billing.Card.Name = long(101) }, []string{"billing.card.name"}},
		{"no address", func(r *Request) { r.Billing.Address.Line1 = "" }, []string{"billing.address.line1"}},
		{"long address", func(r *Request) { r.Billing.Address.Line1 = long(201) }, []string{"billing.address.line1"}},
		{"long address line 2", func(r *Request) { r.Billing.Address.Line2 = long(201) }, []string{"billing.address.line2"}},
		{"no city", func(r *Request) { r.Billing.Address.City = "" }, []string{"billing.address.city"}},
		{"long city", func(r *Request) { r.Billing.Address.City = long(101) }, []string{"billing.address.city"}},
		{"long postal code", func(r *Request) { r.Billing.Address.PostalCode = long(21) }, []string{"billing.address.postal_code"}},
		{"long region", func(r *Request) { r.Billing.Address.Region = long(101) }, []string{"billing.address.region"}},
		{"control character in city", func(r *Request) { r.Billing.Address.City = "Lon\tdon" }, []string{"billing.address.city"}},

		{"no country", func(r *Request) { r.Billing.Address.Country = "" }, []string{"billing.address.country"}},
		{"three-letter country", func(r *Request) { r.Billing.Address.Country = "GBR" }, []string{"billing.address.country"}},
		{"lower-case country (not normalised)", func(r *Request) { r.Billing.Address.Country = "gb" }, []string{"billing.address.country"}},
		{"country name", func(r *Request) { r.Billing.Address.Country = "United Kingdom" }, []string{"billing.address.country"}},
		{"digits as country", func(r *Request) { r.Billing.Address.Country = "44" }, []string{"billing.address.country"}},

		{"empty request", func(r *Request) { *r = Request{} }, []string{"ticket", "attendee.first_name", "attendee.last_name", "attendee.email"}},
		{"empty billing", func(r *Request) { r.Billing = &Billing{} }, []string{"billing.card.number", "billing.card.expiry",
			"billing.card.cvc", "billing.card.name", "billing.address.line1", "billing.address.city", "billing.address.country"}},
	}
	ev := testEvent(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := validReq()
			tt.edit(&r)
			got := r.Validate(ev, testNow)
			if keys, want := slices.Sorted(maps.Keys(got)), slices.Sorted(slices.Values(tt.fields)); !slices.Equal(keys, want) {
				t.Fatalf("fields: got %v, want %v", got, want)
			}
			for f, msg := range got {
				if msg == "" || msg[len(msg)-1] != '.' {
					t.Errorf("field %s: message %q is not a sentence", f, msg)
				}
				if strings.Contains(msg, r.cardNumber()) && r.cardNumber() != "" {
					t.Errorf("field %s: message %q repeats the card number", f, msg)
				}
			}
		})
	}
}

func (r Request) cardNumber() string {
	if r.Billing == nil {
		return ""
	}
	return r.Billing.Card.Number
}

// TestValidateExpiryUsesUTC: the expiry is judged by the UTC month, whatever
// the zone of the clock passed in.
func TestValidateExpiryUsesUTC(t *testing.T) {
	t.Parallel()
	ev := testEvent(t)
	// 1 July 01:00 in Berlin is still 30 June in UTC.
	now := time.Date(2026, time.July, 1, 1, 0, 0, 0, time.FixedZone("CEST", 2*60*60))
	r := validReq()
	r.Billing.Card.Expiry = "2026-06"
	if got := r.Validate(ev, now); len(got) != 0 {
		t.Errorf("a card valid through June (UTC) was refused on 30 June UTC: %v", got)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Request
		want Request
	}{
		{
			name: "everything needs trimming",
			in: Request{
				Ticket:   " standard\n",
				Attendee: Attendee{FirstName: " Ada ", LastName: "\tLovelace", Email: " ada@example.org ", Company: " AE "},
				Billing: &Billing{
					Card: CardInput{Number: " 4111 1111 1111 1111 ", Expiry: " 2030-12 ", CVC: " 123 ", Name: " Ada Lovelace "},
					Address: Address{Line1: " 12 Square ", Line2: " Flat 2 ", City: " London ", PostalCode: " SW1Y 4JH ",
						Region: " London ", Country: " gb "},
				},
				Newsletter: true,
			},
			want: Request{
				Ticket:   "standard",
				Attendee: Attendee{FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.org", Company: "AE"},
				Billing: &Billing{
					Card: CardInput{Number: "4111111111111111", Expiry: "2030-12", CVC: "123", Name: "Ada Lovelace"},
					Address: Address{Line1: "12 Square", Line2: "Flat 2", City: "London", PostalCode: "SW1Y 4JH",
						Region: "London", Country: "GB"},
				},
				Newsletter: true,
			},
		},
		{
			name: "dashes in card number, mixed-case country",
			in:   Request{Billing: &Billing{Card: CardInput{Number: "4242-4242-4242-4242"}, Address: Address{Country: "De"}}},
			want: Request{Billing: &Billing{Card: CardInput{Number: "4242424242424242"}, Address: Address{Country: "DE"}}},
		},
		{
			name: "inner spaces of text are kept",
			in:   Request{Attendee: Attendee{FirstName: "Ada  Augusta", Company: "Analytical  Engines"}},
			want: Request{Attendee: Attendee{FirstName: "Ada  Augusta", Company: "Analytical  Engines"}},
		},
		{
			name: "no billing stays none",
			in:   Request{Ticket: "community "},
			want: Request{Ticket: "community"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.in
			if tt.in.Billing != nil {
				b := *tt.in.Billing
				got.Billing = &b
			}
			got.Normalize()
			if !equalRequest(got, tt.want) {
				t.Errorf("got %+v %+v, want %+v %+v", got, got.Billing, tt.want, tt.want.Billing)
			}
			again := got
			if got.Billing != nil {
				b := *got.Billing
				again.Billing = &b
			}
			again.Normalize()
			if !equalRequest(again, got) {
				t.Errorf("Normalize is not idempotent: %+v then %+v", got, again)
			}
		})
	}
	// A normalised request that was typed loosely is then valid.
	r := validReq()
	r.Billing.Card.Number = "4111 1111 1111 1111"
	r.Billing.Address.Country = "gb"
	r.Attendee.Email = " ada@example.org\n"
	r.Normalize()
	if got := r.Validate(testEvent(t), testNow); len(got) != 0 {
		t.Errorf("normalised request is invalid: %v", got)
	}
}

func equalRequest(a, b Request) bool {
	if (a.Billing == nil) != (b.Billing == nil) {
		return false
	}
	if a.Billing != nil && *a.Billing != *b.Billing {
		return false
	}
	a.Billing, b.Billing = nil, nil
	return a == b
}

func TestHash(t *testing.T) {
	t.Parallel()
	base := validReq()
	baseHash := base.Hash()
	if len(baseHash) != 64 || strings.Trim(baseHash, "0123456789abcdef") != "" {
		t.Fatalf("hash %q is not hex SHA-256", baseHash)
	}
	if other := validReq(); other.Hash() != baseHash {
		t.Fatal("equal requests hash differently")
	}
	// Hash must not change the request it fingerprints.
	if base.Billing.Card.Number != "4111111111111111" || base.Billing.Card.CVC != "123" {
		t.Fatalf("Hash changed the request: %+v", base.Billing.Card)
	}

	tests := []struct {
		name string
		edit func(r *Request)
		same bool
	}{
		{"ticket", func(r *Request) { r.Ticket = "community" }, false},
		{"first name", func(r *Request) { r.Attendee.FirstName = "Augusta" }, false},
		{"last name", func(r *Request) { r.Attendee.LastName = "King" }, false},
		{"email", func(r *Request) { r.Attendee.Email = "augusta@example.org" }, false},
		{"company", func(r *Request) { r.Attendee.Company = "" }, false},
		{"newsletter", func(r *Request) { r.Newsletter = false }, false},
		{"no billing", func(r *Request) { r.Billing = nil }, false},
		{"empty billing", func(r *Request) { r.Billing = &Billing{} }, false},
		{"expiry", func(r *Request) { r.Billing.Card.Expiry = "2031-12" }, false},
		{"name on card", func(r *Request) { r.Billing.Card.Name = "A. Lovelace" }, false},
		{"line1", func(r *Request) { r.Billing.Address.Line1 = "13 St James's Square" }, false},
		{"line2", func(r *Request) { r.Billing.Address.Line2 = "Flat 2" }, false},
		{"city", func(r *Request) { r.Billing.Address.City = "Londonderry" }, false},
		{"postal code", func(r *Request) { r.Billing.Address.PostalCode = "SW1Y 4JJ" }, false},
		{"region", func(r *Request) { r.Billing.Address.Region = "London" }, false},
		{"country", func(r *Request) { r.Billing.Address.Country = "IE" }, false},
		{"last four digits", func(r *Request) { r.Billing.Card.Number = "4242424242424242" }, false},
		{"brand", func(r *Request) { r.Billing.Card.Number = "5555555555551111" }, false},
		// Card number and CVC never enter the fingerprint (invariant 1), so by
		// design a request differing only in the CVC, or in card digits that
		// keep the brand and last four, is the same request for idempotency.
		{"CVC", func(r *Request) { r.Billing.Card.CVC = "999" }, true},
		{"no CVC", func(r *Request) { r.Billing.Card.CVC = "" }, true},
		{"middle digits", func(r *Request) { r.Billing.Card.Number = "4000000000001111" }, true},
		// Fields cannot bleed into each other.
		{"shifted between names", func(r *Request) { r.Attendee.FirstName, r.Attendee.LastName = "AdaL", "ovelace" }, false},
	}
	seen := map[string]string{baseHash: "base"}
	for _, tt := range tests {
		r := validReq()
		tt.edit(&r)
		h := r.Hash()
		if got := h == baseHash; got != tt.same {
			t.Errorf("%s: same hash = %v, want %v", tt.name, got, tt.same)
		}
		if !tt.same {
			if other, dup := seen[h]; dup {
				t.Errorf("%s hashes like %s", tt.name, other)
			}
			seen[h] = tt.name
		}
	}
}

// TestHashHidesCardData checks the fingerprint cannot be used to recover
// card data: requests whose card numbers differ only in the hidden digits all
// hash alike.
func TestHashHidesCardData(t *testing.T) {
	t.Parallel()
	base := validReq()
	want := base.Hash()
	for _, number := range []string{"4111111111111111", "4999999999991111", "4000000000001111", "4123456789011111"} {
		for _, cvc := range []string{"123", "000", "9999"} {
			r := validReq()
			r.Billing.Card.Number, r.Billing.Card.CVC = number, cvc
			if got := r.Hash(); got != want {
				t.Errorf("number %s cvc %s: hash differs, so card data beyond brand and last four entered it", number, cvc)
			}
		}
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	const n = 10_000
	seen := make(map[string]bool, n)
	for range n {
		id, err := NewID()
		if err != nil {
			t.Fatal(err)
		}
		if !ValidID(id) {
			t.Fatalf("NewID gave %q, which ValidID refuses", id)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
	}
	// 32 base32 characters carry 160 bits (at least 128); with
	// 10k ids every character position must take many values.
	for pos := range 32 {
		chars := map[byte]bool{}
		for id := range seen {
			chars[id[pos]] = true
		}
		if len(chars) != 32 {
			t.Errorf("position %d takes %d distinct characters, want all 32", pos, len(chars))
		}
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id   string
		want bool
	}{
		{id, true},
		{strings.Repeat("a", 32), true},
		{strings.Repeat("7", 32), true},
		{"abcdefghijklmnopqrstuvwxyz234567", true},
		{"", false},
		{id[:31], false},
		{id + "a", false},
		{strings.ToUpper(id), false},
		{strings.Repeat("a", 31) + "0", false},
		{strings.Repeat("a", 31) + "1", false},
		{strings.Repeat("a", 31) + "8", false},
		{strings.Repeat("a", 31) + "9", false},
		{strings.Repeat("a", 31) + "=", false},
		{strings.Repeat("a", 31) + "/", false},
		{strings.Repeat("a", 30) + "é", false}, // 32 bytes, 31 runes
		{strings.Repeat("a", 31) + "\x00", false},
		{"../../../../../../../etc/passwd0", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestCardInputRedacted(t *testing.T) {
	t.Parallel()
	pointer := regexp.MustCompile(`0x[0-9a-f]+`)
	c := validReq().Billing.Card
	for _, s := range []string{c.String(), strings.Join([]string{
		// the ways a card ends up in a log line or error message
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%s", c), fmt.Sprintf("%+v", *validReq().Billing),
		fmt.Sprintf("%v", validReq()),
	}, " ")} {
		// %v of a struct holding a pointer prints its address, whose hex
		// digits can spell the CVC by chance.
		s = pointer.ReplaceAllString(s, "0x…")
		if strings.Contains(s, c.Number) || strings.Contains(s, "123") {
			t.Errorf("card input printed as %q", s)
		}
	}
}

// FuzzNormalizeValidate: normalising twice changes nothing, validation never
// panics, and a request it accepts can be charged (Card does not panic and
// carries a real expiry).
func FuzzNormalizeValidate(f *testing.F) {
	f.Add("standard", "Ada", "ada@example.org", "4111 1111 1111 1111", "2030-12", "123", "gb", true)
	f.Add("community", " ", "x@y.z", "", "", "", "", false)
	f.Add("standard", "\x00", "a@b", "4111-1111-1111-1111", "2030-13", "12345", "GBR", true)
	f.Add("standard", "Ada", "ada@example.org", "-\u00a04111111111111111", "2030-12", "123", "GB", true)
	ev := testEvent(f)
	f.Fuzz(func(t *testing.T, ticket, name, email, number, expiry, cvc, country string, billing bool) {
		r := Request{Ticket: ticket, Attendee: Attendee{FirstName: name, LastName: name, Email: email}}
		if billing {
			r.Billing = &Billing{Card: CardInput{Number: number, Expiry: expiry, CVC: cvc, Name: name},
				Address: Address{Line1: name, City: name, Country: country}}
		}
		r.Normalize()
		once := r
		if r.Billing != nil {
			b := *r.Billing
			once.Billing = &b
		}
		r.Normalize()
		if !equalRequest(r, once) {
			t.Fatalf("Normalize is not idempotent: %+v %+v vs %+v %+v", once, once.Billing, r, r.Billing)
		}
		if once.Hash() != r.Hash() {
			t.Fatal("Hash is not stable")
		}
		if fields := r.Validate(ev, testNow); len(fields) == 0 && r.Billing != nil {
			if tk, _ := ev.Ticket(r.Ticket); tk.Price > 0 {
				c := r.Card()
				if c.ExpiryMonth < 1 || c.ExpiryMonth > 12 || c.ExpiryYear < testNow.Year() || !payment.Luhn(c.Number) {
					t.Fatalf("accepted a card that cannot be charged: %+v", c)
				}
			}
		}
	})
}
