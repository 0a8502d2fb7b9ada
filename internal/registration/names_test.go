package registration

import (
	"strings"
	"testing"
)

// Names are printed in emails sent from the organiser's address: nothing
// that reads as a link, nothing invisible, nothing that reorders the text.
func TestNamesRefused(t *testing.T) {
	t.Parallel()
	ev := testEvent(t)
	cases := []struct {
		name, value, want string
	}{
		{"URL", "URGENT: re-enter card at https://evil.example/pay", "web or email address"},
		{"scheme only", "javascript://x", "web or email address"},
		{"www", "Ada www.evil", "web or email address"},
		{"bare host", "Ada evil-pay.com", "web or email address"},
		{"host with path", "Ada paypa1.co/login", "web or email address"},
		{"email address", "ada@evil.example", "web or email address"},
		{"right-to-left override", "Ada \u202Egnp.exe", "invisible characters"},
		{"left-to-right embedding", "\u202AAda", "invisible characters"},
		{"pop directional", "Ada\u202C", "invisible characters"},
		{"isolate", "Ada \u2066x\u2069", "invisible characters"},
		{"direction mark", "Ada\u200F", "invisible characters"},
		{"left-to-right mark", "\u200EAda", "invisible characters"},
		{"arabic letter mark", "Ada\u061C", "invisible characters"},
		{"zero-width space", "Ad\u200Ba", "invisible characters"},
		{"word joiner", "Ad\u2060a", "invisible characters"},
		{"byte order mark", "\uFEFFAda", "invisible characters"},
		{"zero-width joiner alone", "Ada \u200D", "invisible characters"},
		{"zero-width non-joiner at the start", "\u200CAda", "invisible characters"},
		{"line separator", "Ada\u2028Lovelace", "invisible characters"},
		{"private use", "Ada\uE000", "invisible characters"},
		{"unassigned", "Ada\U000E0080", "invisible characters"},
		{"control", "Ada\x07", "control characters"},
	}
	for _, field := range []struct {
		key string
		set func(r *Request, v string)
	}{
		{"attendee.first_name", func(r *Request, v string) { r.Attendee.FirstName = v }},
		{"attendee.last_name", func(r *Request, v string) { r.Attendee.LastName = v }},
		{"billing.card.name", func(r *Request, v string) { r.Billing.Card.Name = v }},
	} {
		for _, tc := range cases {
			t.Run(field.key+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				r := validReq()
				field.set(&r, tc.value)
				f := r.Validate(ev, testNow)
				if msg := f[field.key]; !strings.Contains(msg, tc.want) {
					t.Errorf("Validate(%q) on %s = %q; want a message with %q", tc.value, field.key, msg, tc.want)
				}
				if len(f) != 1 {
					t.Errorf("Validate reported %v; want only %s", f, field.key)
				}
			})
		}
	}
}

// Invisible characters are refused in every other text field too; links
// only in names (an address line may well hold "www." or a company a host).
func TestOtherFieldsRefuseInvisible(t *testing.T) {
	t.Parallel()
	ev := testEvent(t)
	r := validReq()
	r.Attendee.Company = "Analytical\u202E Engines"
	r.Billing.Address.City = "Lon\u200Bdon"
	f := r.Validate(ev, testNow)
	if !strings.Contains(f["attendee.company"], "invisible") || !strings.Contains(f["billing.address.city"], "invisible") {
		t.Errorf("Validate = %v; want company and city refused", f)
	}
	r = validReq()
	r.Attendee.Company = "example.com Ltd"
	if f := r.Validate(ev, testNow); len(f) != 0 {
		t.Errorf("a company named after its domain: %v; want it accepted", f)
	}
}

// Real names of many scripts pass, the joiners that scripts need included.
func TestNamesAccepted(t *testing.T) {
	t.Parallel()
	ev := testEvent(t)
	for _, v := range []string{
		"Ada", "Mary-Jane", "O'Brien", "J. R. R.", "Jean-Luc Picard", "Zoë Ångström", "Nguyễn Thị Minh Khai",
		"محمد\u200Cحسین", // Persian, with a zero-width non-joiner between letters
		"क्\u200Dष",      // Devanagari, with a zero-width joiner
		"王小明", "Δημήτρης", "Мария", "St. John", "Dr.Smith", "Ana María de la Cruz", "Siân",
		"\u05E9\u05E8\u05D4", // Hebrew: right-to-left by itself, no override needed
	} {
		r := validReq()
		r.Attendee.FirstName, r.Attendee.LastName, r.Billing.Card.Name = v, v, v
		if f := r.Validate(ev, testNow); len(f) != 0 {
			t.Errorf("Validate(%q) = %v; want it accepted", v, f)
		}
	}
}

// An organiser's edit follows the same rules.
func TestEditRefusesLinkNames(t *testing.T) {
	t.Parallel()
	e := AttendeeEdit{FirstName: "Ada https://evil.example", LastName: "Love\u202Elace", Email: "ada@example.org"}
	f := e.Validate()
	if !strings.Contains(f["first_name"], "web or email address") || !strings.Contains(f["last_name"], "invisible") {
		t.Errorf("Validate = %v; want first and last name refused", f)
	}
}
