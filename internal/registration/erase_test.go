package registration

import (
	"fmt"
	"testing"

	"github.com/registrar/registrar/internal/payment"
)

func TestPersonalTermsAndScrub(t *testing.T) {
	t.Parallel()
	r := Registration{FirstName: "Ed", LastName: "Lovelace", Email: "ada@example.org", Company: "Analytical Engines",
		Billing: payment.BillingAddress{Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"}}
	terms := PersonalTerms(r)
	// Longest first, so a full name goes before its parts; "Ed" is too
	// short to replace without mangling words; the country is kept.
	want := "[12 St James's Square Analytical Engines ada@example.org Ed Lovelace Lovelace SW1Y 4JH London]"
	if fmt.Sprint(terms) != want {
		t.Errorf("PersonalTerms = %v; want %s", terms, want)
	}
	tests := []struct{ in, want string }{
		{"confirmation resent to ADA@Example.org", "confirmation resent to [erased]"},
		{"Ed Lovelace asked; edited twice", "[erased] asked; edited twice"},
		{"mail for lovelace at london, SW1Y 4JH", "mail for [erased] at [erased], [erased]"},
		{"nothing personal", "nothing personal"},
		{"İstanbul ada@example.org", "İstanbul [erased]"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Scrub(tt.in, terms); got != tt.want {
			t.Errorf("Scrub(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
	if got := ErasedEmail("abc"); got != "erased-abc@invalid" {
		t.Errorf("ErasedEmail = %q", got)
	}
}
