package payment

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
)

// Test card numbers of the built-in test processor (DESIGN.md §7).
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
	mu      sync.Mutex
	charges map[string]Charge // by request id
	refunds map[string]string // by request id → charge reference
	calls   int
}

// NewTestProcessor returns an empty test processor.
func NewTestProcessor() *TestProcessor {
	return &TestProcessor{charges: map[string]Charge{}, refunds: map[string]string{}}
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

// Refund implements Processor.
func (p *TestProcessor) Refund(ctx context.Context, c Charge, amount int64, currency, requestID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, have := range p.charges {
		if have.Reference == c.Reference {
			p.refunds[requestID] = c.Reference
			return nil
		}
	}
	return fmt.Errorf("refund %s: no such charge", c.Reference)
}

// Charges returns how many distinct charges were taken and how many were
// refunded.
func (p *TestProcessor) Charges() (charged, refunded int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.charges), len(p.refunds)
}
