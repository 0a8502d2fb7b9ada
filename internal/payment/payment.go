// Package payment defines how registrar charges a card and provides the
// built-in test payment processor.
package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Card is the card data of one charge. It lives only in memory for the
// duration of the charge: it is never stored, logged, queued or emailed.
type Card struct {
	Number       string // digits only
	ExpiryYear   int
	ExpiryMonth  int
	SecurityCode string
	Name         string
}

// String keeps card data out of logs and error messages even when a Card is
// printed by mistake: only brand and last four digits show.
func (c Card) String() string { return "card(" + Brand(c.Number) + " " + Last4(c.Number) + ")" }

// LogValue implements slog.LogValuer with the same redaction as String.
func (c Card) LogValue() slog.Value { return slog.StringValue(c.String()) }

// BillingAddress is the cardholder's address.
type BillingAddress struct {
	Line1, Line2, City, PostalCode, Region, Country string
}

// ChargeRequest asks for one payment. RequestID identifies the payment
// attempt: a processor must charge at most once per RequestID.
type ChargeRequest struct {
	RequestID   string
	Amount      int64 // minor units
	Currency    string
	Description string
	Card        Card
	Address     BillingAddress
	Email       string
}

// Charge is the outcome of a successful charge: what registrar keeps.
type Charge struct {
	Provider  string // "test", "paypal"
	Reference string // the provider's id for the captured payment
	Brand     string
	Last4     string
}

// DeclinedError reports a card the provider refused. Reason is written for the
// attendee.
type DeclinedError struct {
	Reason string
}

func (e *DeclinedError) Error() string { return "payment declined: " + e.Reason }

// ErrUnavailable reports a provider failure or timeout: nothing was charged.
var ErrUnavailable = errors.New("payment provider unavailable")

// ErrNotCharged reports that an attempt certainly took no money: from
// Resolve, an attempt whose outcome was unknown; from Charge (wrapped), a
// failure before any charge could happen (the order was never sent, or the
// provider refused it before charging), so the seat can go back at once.
var ErrNotCharged = errors.New("no charge was taken")

// RateLimitedError reports a call the provider refused for its rate limit,
// with the wait it asked for (0: none given). It is wrapped in the call's
// error, so that the attendee can be told when to try again.
type RateLimitedError struct {
	Wait time.Duration
}

func (e *RateLimitedError) Error() string {
	if e.Wait <= 0 {
		return "rate limited by the payment provider"
	}
	return fmt.Sprintf("rate limited by the payment provider for %v", e.Wait)
}

// RetryAfter is the wait a rate-limited provider asked for somewhere in
// err's chain; 0 when none did.
func RetryAfter(err error) time.Duration {
	var rl *RateLimitedError
	if errors.As(err, &rl) {
		return max(rl.Wait, 0)
	}
	return 0
}

// Processor charges cards and refunds charges.
type Processor interface {
	// Charge takes the payment. It charges at most once per req.RequestID.
	Charge(ctx context.Context, req ChargeRequest) (Charge, error)
	// Resolve finds out whether an earlier attempt with req.RequestID, whose
	// outcome is unknown (a timeout, a crash), took money. req carries no
	// card. It returns the charge, ErrNotCharged, or another error when the
	// provider cannot tell yet.
	Resolve(ctx context.Context, req ChargeRequest) (Charge, error)
	// Refund gives amount (minor units) of a charge's money back; requestID
	// makes it idempotent: a repeat returns the first refund's outcome. A
	// refund the provider refuses for good is a *RefundRefusedError; other
	// errors (a timeout, a provider failure) may be retried with the same
	// requestID.
	Refund(ctx context.Context, charge Charge, amount int64, currency, requestID string) (RefundOutcome, error)
}

// RefundOutcome is a refund the provider accepted.
type RefundOutcome struct {
	Reference string // the provider's id of the refund
	// Pending reports a refund the provider accepted but settles later.
	Pending bool
}

// RefundRefusedError reports a refund the provider refused for good:
// retrying the same request cannot change the answer. Reason is written for
// organisers; Issue is the provider's code, if any.
type RefundRefusedError struct {
	Issue  string
	Reason string
	Err    error // a sentinel such as ErrAlreadyRefunded, or nil
}

func (e *RefundRefusedError) Error() string {
	if e.Issue != "" {
		return "refund refused (" + e.Issue + "): " + e.Reason
	}
	return "refund refused: " + e.Reason
}

func (e *RefundRefusedError) Unwrap() error { return e.Err }

// Permanent marks the error as one retrying cannot fix.
func (e *RefundRefusedError) Permanent() bool { return true }

// ErrAlreadyRefunded reports a charge that was refunded in full before
// (by an earlier request with another id, or outside registrar). Wrapped by
// a *RefundRefusedError.
var ErrAlreadyRefunded = errors.New("the charge was already refunded in full")

// Luhn reports whether digits (digits only) pass the Luhn checksum.
func Luhn(digits string) bool {
	if len(digits) < 12 || len(digits) > 19 {
		return false
	}
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// NormalizeNumber strips spaces and dashes from a card number as typed.
func NormalizeNumber(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s)
}

// Brand names the card network from the number's prefix.
func Brand(digits string) string {
	p := func(n int) int {
		if len(digits) < n {
			return -1
		}
		v := 0
		for _, c := range digits[:n] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	switch {
	case p(1) == 4:
		return "visa"
	case p(2) >= 51 && p(2) <= 55, p(4) >= 2221 && p(4) <= 2720:
		return "mastercard"
	case p(2) == 34 || p(2) == 37:
		return "amex"
	case p(4) == 6011 || p(2) == 65 || (p(3) >= 644 && p(3) <= 649):
		return "discover"
	case p(4) >= 3528 && p(4) <= 3589:
		return "jcb"
	case p(2) == 36 || p(2) == 38 || (p(3) >= 300 && p(3) <= 305):
		return "diners"
	default:
		return "card"
	}
}

// Last4 returns the last four digits of a card number.
func Last4(digits string) string {
	if len(digits) < 4 {
		return ""
	}
	return digits[len(digits)-4:]
}

// BrandName is the brand as shown to people ("Visa").
func BrandName(brand string) string {
	switch brand {
	case "visa":
		return "Visa"
	case "mastercard":
		return "Mastercard"
	case "amex":
		return "American Express"
	case "discover":
		return "Discover"
	case "jcb":
		return "JCB"
	case "diners":
		return "Diners Club"
	case "":
		return ""
	default:
		return "Card"
	}
}

// Describe is a short human description of a charge for messages.
func Describe(c Charge) string {
	if c.Last4 == "" {
		return ""
	}
	return fmt.Sprintf("%s ending in %s", BrandName(c.Brand), c.Last4)
}
