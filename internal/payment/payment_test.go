package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestLuhn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		number string
		want   bool
	}{
		{TestCardVisa, true}, {TestCardVisa2, true}, {TestCardDeclined, true}, {TestCardExpired, true},
		{TestCardProcessErr, true}, {"378282246310005", true}, {"5555555555554444", true},
		{"4111111111111112", false}, {"", false}, {"41111111111", false}, {"4111-1111-1111-1111", false},
		{"41111111111111111111", false}, {"411111111111111a", false},
	}
	for _, tt := range tests {
		if got := Luhn(tt.number); got != tt.want {
			t.Errorf("Luhn(%q) = %v, want %v", tt.number, got, tt.want)
		}
	}
}

func TestBrandAndLast4(t *testing.T) {
	t.Parallel()
	tests := []struct{ number, brand, last4 string }{
		{"4111111111111111", "visa", "1111"},
		{"5555555555554444", "mastercard", "4444"},
		{"2223000048400011", "mastercard", "0011"},
		{"378282246310005", "amex", "0005"},
		{"6011111111111117", "discover", "1117"},
		{"3530111333300000", "jcb", "0000"},
		{"36259600000004", "diners", "0004"},
		{"9999999999999995", "card", "9995"},
		{"12", "card", ""},
	}
	for _, tt := range tests {
		if got := Brand(tt.number); got != tt.brand {
			t.Errorf("Brand(%q) = %q, want %q", tt.number, got, tt.brand)
		}
		if got := Last4(tt.number); got != tt.last4 {
			t.Errorf("Last4(%q) = %q, want %q", tt.number, got, tt.last4)
		}
	}
	if got := NormalizeNumber("4111 1111-1111 1111"); got != "4111111111111111" {
		t.Errorf("NormalizeNumber = %q", got)
	}
}

// A Card printed or logged by mistake shows only brand and last four digits
// (invariant 1).
func TestCardNeverPrintsItsData(t *testing.T) {
	t.Parallel()
	c := Card{Number: TestCardVisa, ExpiryYear: 2030, ExpiryMonth: 12, SecurityCode: "737", Name: "Ada"}
	var b strings.Builder
	log := slog.New(slog.NewJSONHandler(&b, nil))
	log.Info("oops", "card", c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %s", c, c, c), b.String()} {
		if strings.Contains(out, TestCardVisa) || strings.Contains(out, "737") {
			t.Errorf("card data printed: %s", out)
		}
		if !strings.Contains(out, "1111") {
			t.Errorf("last four missing: %s", out)
		}
	}
}

func TestTestProcessor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := NewTestProcessor()
	charge := func(id, number string) (Charge, error) {
		return p.Charge(ctx, ChargeRequest{RequestID: id, Amount: 14900, Currency: "EUR", Card: Card{Number: number}})
	}
	c, err := charge("a", TestCardVisa)
	if err != nil || c.Provider != "test" || c.Brand != "visa" || c.Last4 != "1111" || c.Reference == "" {
		t.Fatalf("Charge = %+v, %v", c, err)
	}
	again, err := charge("a", TestCardVisa)
	if err != nil || again != c {
		t.Errorf("same request id charged again: %+v, %v", again, err)
	}
	var declined *DeclinedError
	if _, err := charge("b", TestCardDeclined); !errors.As(err, &declined) {
		t.Errorf("declined card: %v", err)
	}
	if _, err := charge("c", TestCardExpired); !errors.As(err, &declined) || !strings.Contains(declined.Reason, "expired") {
		t.Errorf("expired card: %v", err)
	}
	if _, err := charge("d", TestCardProcessErr); !errors.Is(err, ErrUnavailable) {
		t.Errorf("processor error: %v", err)
	}
	if got, err := p.Resolve(ctx, ChargeRequest{RequestID: "a"}); err != nil || got != c {
		t.Errorf("Resolve of a charge = %+v, %v", got, err)
	}
	for _, id := range []string{"b", "d", "never"} {
		if _, err := p.Resolve(ctx, ChargeRequest{RequestID: id}); !errors.Is(err, ErrNotCharged) {
			t.Errorf("Resolve(%s) = %v, want ErrNotCharged", id, err)
		}
	}
	if out, err := p.Refund(ctx, c, 14900, "EUR", "r1"); err != nil || out.Reference == "" || out.Pending {
		t.Errorf("Refund = %+v, %v", out, err)
	}
	var refused *RefundRefusedError
	if _, err := p.Refund(ctx, Charge{Reference: "nope"}, 1, "EUR", "r2"); !errors.As(err, &refused) {
		t.Errorf("refund of an unknown charge: %v, want a refusal", err)
	}
	if charged, refunded := p.Charges(); charged != 1 || refunded != 1 {
		t.Errorf("Charges() = %d, %d; want 1, 1", charged, refunded)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Charge(cctx, ChargeRequest{RequestID: "e", Card: Card{Number: TestCardVisa}}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("cancelled charge: %v", err)
	}
}

func TestTestProcessorRefunds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := NewTestProcessor()
	c, err := p.Charge(ctx, ChargeRequest{RequestID: "a", Amount: 14900, Currency: "EUR", Card: Card{Number: TestCardVisa}})
	if err != nil {
		t.Fatal(err)
	}
	half, err := p.Refund(ctx, c, 7450, "EUR", "half")
	if err != nil {
		t.Fatalf("half refund: %v", err)
	}
	if again, err := p.Refund(ctx, c, 7450, "EUR", "half"); err != nil || again != half {
		t.Errorf("replayed refund = %+v, %v; want %+v", again, err, half)
	}
	if got := p.Refunded(c.Reference); got != 7450 {
		t.Errorf("refunded %d after a refund and its replay, want 7450", got)
	}
	var refused *RefundRefusedError
	if _, err := p.Refund(ctx, c, 7451, "EUR", "too-much"); !errors.As(err, &refused) || refused.Issue != "REFUND_AMOUNT_EXCEEDED" {
		t.Errorf("refund of more than the rest: %v", err)
	}
	if _, err := p.Refund(ctx, c, 7450, "EUR", "rest"); err != nil {
		t.Fatalf("refund of the rest: %v", err)
	}
	_, err = p.Refund(ctx, c, 1, "EUR", "more")
	if !errors.As(err, &refused) || !errors.Is(err, ErrAlreadyRefunded) {
		t.Errorf("refund of a refunded charge: %v, want ErrAlreadyRefunded", err)
	}
	if _, err := p.Refund(ctx, c, 0, "EUR", "zero"); !errors.As(err, &refused) {
		t.Errorf("refund of nothing: %v", err)
	}
	// A test charge from before a restart is unknown: the refund goes through.
	if _, err := p.Refund(ctx, Charge{Provider: "test", Reference: "test_0123456789abcdef01234567"}, 100, "EUR", "old"); err != nil {
		t.Errorf("refund of an earlier test charge: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Refund(cctx, c, 1, "EUR", "cancelled"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("cancelled refund: %v", err)
	}
}
