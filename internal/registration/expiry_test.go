package registration

import (
	"testing"
	"time"
)

func TestNormalizeExpiry(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"12/30": "2030-12", "12 / 30": "2030-12", "1230": "2030-12", "12/2030": "2030-12",
		"2030-12": "2030-12", "1/30": "2030-01", "01/30": "2030-01", "12-30": "2030-12",
		"12.30": "2030-12", "122030": "2030-12", "2030/1": "2030-01",
		// Left as typed, for validation to name the problem:
		"123": "123", "abc": "abc", "": "", "12/3": "12/3", "12//30": "12//30",
	} {
		if got := NormalizeExpiry(in); got != want {
			t.Errorf("NormalizeExpiry(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExpiryAsTyped(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, typed := range []string{"12/30", "12 / 30", "1230", "12/2030", "2030-12", " 12/30 "} {
		req := validReq()
		req.Billing.Card.Expiry = typed
		req.Normalize()
		if f := req.Validate(testEvent(t), now); f["billing.card.expiry"] != "" {
			t.Errorf("expiry %q refused: %s", typed, f["billing.card.expiry"])
		}
		if c := req.Card(); c.ExpiryYear != 2030 || c.ExpiryMonth != 12 {
			t.Errorf("expiry %q became %d-%02d; want 2030-12", typed, c.ExpiryYear, c.ExpiryMonth)
		}
	}
	for typed, want := range map[string]string{
		"":      "Enter the card's expiry date as MM / YY, e.g. 12 / 30.",
		"13/30": "The expiry month must be 01 to 12.",
		"11/26": "This card has expired.",
		"soon":  "Enter the expiry as MM / YY, e.g. 12 / 30.",
	} {
		req := validReq()
		req.Billing.Card.Expiry = typed
		req.Normalize()
		if got := req.Validate(testEvent(t), now)["billing.card.expiry"]; got != want {
			t.Errorf("expiry %q: %q, want %q", typed, got, want)
		}
	}
}
