package payment

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
)

// Test card numbers of the built-in test processor (listed in the README).
const (
	TestCardVisa       = "4111111111111111"
	TestCardVisa2      = "4242424242424242"
	TestCardDeclined   = "4000000000000002"
	TestCardExpired    = "4000000000000069"
	TestCardProcessErr = "4000000000000119"
)

// TestProcessor is the built-in test payment processor: it behaves like a
// card processor's test mode so the whole flow can be tried without an
// account. Charges are kept in memory, keyed by request id, so a repeated
// request id returns the first outcome and never charges twice.
type TestProcessor struct {
	mu       sync.Mutex
	charges  map[string]Charge        // by request id
	amounts  map[string]int64         // charged, by charge reference
	refunded map[string]int64         // refunded so far, by charge reference
	refunds  map[string]RefundOutcome // by refund request id
	calls    int
}

// NewTestProcessor returns an empty test processor.
func NewTestProcessor() *TestProcessor {
	return &TestProcessor{charges: map[string]Charge{}, amounts: map[string]int64{},
		refunded: map[string]int64{}, refunds: map[string]RefundOutcome{}}
}

// Charge implements Processor.
func (p *TestProcessor) Charge(ctx context.Context, req ChargeRequest) (Charge, error) {
	if err := ctx.Err(); err != nil {
		return Charge{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if c, ok := p.charges[req.RequestID]; ok {
		return c, nil
	}
	switch req.Card.Number {
	case TestCardDeclined:
		return Charge{}, &DeclinedError{Reason: "Your card was declined. Please use another card or contact your bank."}
	case TestCardExpired:
		return Charge{}, &DeclinedError{Reason: "Your card has expired. Please use another card."}
	case TestCardProcessErr:
		return Charge{}, fmt.Errorf("%w: test processor error for card ending in 0119", ErrUnavailable)
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Charge{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	c := Charge{
		Provider:  "test",
		Reference: "test_" + hex.EncodeToString(b[:]),
		Brand:     Brand(req.Card.Number),
		Last4:     Last4(req.Card.Number),
	}
	p.charges[req.RequestID] = c
	p.amounts[c.Reference] = req.Amount
	return c, nil
}

// Resolve implements Processor.
func (p *TestProcessor) Resolve(ctx context.Context, req ChargeRequest) (Charge, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.charges[req.RequestID]; ok {
		return c, nil
	}
	return Charge{}, ErrNotCharged
}

// Refund implements Processor. A repeated requestID returns the first
// refund. Refunds of a charge never add up to more than it: one that would
// is refused (REFUND_AMOUNT_EXCEEDED), and one of a charge refunded in full
// is refused with ErrAlreadyRefunded. The processor keeps charges in memory
// only: a refund of a test charge it does not know (taken before a restart)
// is accepted, as its amount cannot be checked here.
func (p *TestProcessor) Refund(ctx context.Context, c Charge, amount int64, currency, requestID string) (RefundOutcome, error) {
	if err := ctx.Err(); err != nil {
		return RefundOutcome{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if out, ok := p.refunds[requestID]; ok {
		return out, nil
	}
	if amount <= 0 {
		return RefundOutcome{}, &RefundRefusedError{Issue: "INVALID_AMOUNT", Reason: fmt.Sprintf("the amount %d is not positive", amount)}
	}
	charged, known := p.amounts[c.Reference]
	switch {
	case !known && !strings.HasPrefix(c.Reference, "test_"):
		return RefundOutcome{}, &RefundRefusedError{Issue: "INVALID_RESOURCE_ID", Reason: fmt.Sprintf("there is no test charge %q", c.Reference)}
	case known && p.refunded[c.Reference] >= charged:
		return RefundOutcome{}, &RefundRefusedError{Issue: "CAPTURE_FULLY_REFUNDED",
			Reason: "the charge was already refunded in full", Err: ErrAlreadyRefunded}
	case known && p.refunded[c.Reference]+amount > charged:
		return RefundOutcome{}, &RefundRefusedError{Issue: "REFUND_AMOUNT_EXCEEDED",
			Reason: fmt.Sprintf("the refund of %d is more than the %d left of the charge", amount, charged-p.refunded[c.Reference])}
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return RefundOutcome{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	out := RefundOutcome{Reference: "test_refund_" + hex.EncodeToString(b[:])}
	p.refunded[c.Reference] += amount
	p.refunds[requestID] = out
	return out, nil
}

// Refunded returns how much of the charge with reference ref was refunded.
func (p *TestProcessor) Refunded(ref string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refunded[ref]
}

// Charges returns how many distinct charges were taken and how many were
// refunded.
func (p *TestProcessor) Charges() (charged, refunded int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.charges), len(p.refunds)
}
