package registration

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
)

// fakeStore records what the service asks of storage and answers as told.
type fakeStore struct {
	mu sync.Mutex

	startReplay *Outcome
	startErr    error
	// completeErrs are returned by the next CompleteAttempt calls, in order;
	// nil entries succeed.
	completeErrs []error
	abandoned    []Attempt
	abandonedErr error
	// lookup, when set, answers Registration; by default nothing is stored.
	lookup func(id string) (Registration, error)
	// keyOutcome and keyErr answer KeyOutcome; keyLookups records its keys.
	keyOutcome *Outcome
	keyErr     error
	keyLookups []string
	// availability answers Availability; with availabilityErr it fails.
	availability    map[string]Availability
	availabilityErr error

	started   []Attempt
	failed    []failCall
	completed []Registration
	postponed []postponeCall
	incidents []Incident
	limits    []int
}

type failCall struct {
	attempt Attempt
	outcome *Outcome
}

type postponeCall struct {
	id    string
	after time.Time
}

func (s *fakeStore) StartAttempt(ctx context.Context, a Attempt, soldOut Outcome) (*Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = append(s.started, a)
	if soldOut.Code != CodeSoldOut || soldOut.Message == "" {
		return nil, fmt.Errorf("bad sold-out outcome %+v", soldOut)
	}
	return s.startReplay, s.startErr
}

func (s *fakeStore) KeyOutcome(ctx context.Context, key, requestHash string) (*Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keyLookups = append(s.keyLookups, key)
	return s.keyOutcome, s.keyErr
}

func (s *fakeStore) FailAttempt(ctx context.Context, a Attempt, o *Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = append(s.failed, failCall{a, o})
	return nil
}

func (s *fakeStore) CompleteAttempt(ctx context.Context, a Attempt, r Registration, enqueue EnqueueFunc) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.completeErrs) > 0 {
		err := s.completeErrs[0]
		s.completeErrs = s.completeErrs[1:]
		if err != nil {
			return err
		}
	}
	s.completed = append(s.completed, r)
	return enqueue(ctx, nil, r.ID)
}

func (s *fakeStore) AbandonedAttempts(ctx context.Context, now time.Time, limit int) ([]Attempt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = append(s.limits, limit)
	var due []Attempt
	for _, a := range s.abandoned {
		if a.ResolveAfter.Before(now) {
			due = append(due, a)
		}
	}
	return due, s.abandonedErr
}

func (s *fakeStore) PostponeAttempt(ctx context.Context, id string, after time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.postponed = append(s.postponed, postponeCall{id, after})
	return nil
}

func (s *fakeStore) RecordIncident(ctx context.Context, in Incident) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.incidents = append(s.incidents, in)
	return nil
}

func (s *fakeStore) Registration(ctx context.Context, id string) (Registration, error) {
	if s.lookup != nil {
		return s.lookup(id)
	}
	return Registration{}, ErrNotFound
}

// incidentKinds lists the kinds of the recorded incidents, in order.
func (s *fakeStore) incidentKinds() []IncidentKind {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kinds []IncidentKind
	for _, in := range s.incidents {
		kinds = append(kinds, in.Kind)
	}
	return kinds
}

// fakeProcessor answers charges as told and records them.
type fakeProcessor struct {
	mu        sync.Mutex
	chargeErr error
	refundErr error
	// resolveCharge and resolveErr answer Resolve; with neither set it
	// reports ErrNotCharged.
	resolveCharge *payment.Charge
	resolveErr    error
	charges       []payment.ChargeRequest
	ctxErrs       []error
	deadlines     []time.Time
	resolves      []payment.ChargeRequest
	refunds       []payment.Charge
	refundIDs     []string
}

func (p *fakeProcessor) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.charges = append(p.charges, req)
	p.ctxErrs = append(p.ctxErrs, ctx.Err())
	d, _ := ctx.Deadline()
	p.deadlines = append(p.deadlines, d)
	if p.chargeErr != nil {
		return payment.Charge{}, p.chargeErr
	}
	return payment.Charge{Provider: "fake", Reference: "ref-" + req.RequestID,
		Brand: payment.Brand(req.Card.Number), Last4: payment.Last4(req.Card.Number)}, nil
}

func (p *fakeProcessor) Resolve(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resolves = append(p.resolves, req)
	switch {
	case p.resolveErr != nil:
		return payment.Charge{}, p.resolveErr
	case p.resolveCharge != nil:
		return *p.resolveCharge, nil
	}
	return payment.Charge{}, payment.ErrNotCharged
}

func (p *fakeProcessor) Refund(ctx context.Context, c payment.Charge, amount int64, currency, requestID string) (payment.RefundOutcome, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refunds = append(p.refunds, c)
	p.refundIDs = append(p.refundIDs, requestID)
	if p.refundErr != nil {
		return payment.RefundOutcome{}, p.refundErr
	}
	return payment.RefundOutcome{Reference: "refund-" + requestID}, nil
}

type serviceFixture struct {
	svc      *Service
	store    *fakeStore
	proc     *fakeProcessor
	enqueued []string
	logs     *bytes.Buffer
}

func newServiceFixture(t *testing.T) *serviceFixture {
	t.Helper()
	f := &serviceFixture{store: &fakeStore{}, proc: &fakeProcessor{}, logs: &bytes.Buffer{}}
	enqueue := func(ctx context.Context, tx *sql.Tx, id string) error {
		f.enqueued = append(f.enqueued, id)
		return nil
	}
	f.svc = NewService(f.store, f.proc, enqueue, testEvent(t), slog.New(slog.NewTextHandler(f.logs, nil)))
	f.svc.now = func() time.Time { return testNow }
	return f
}

// apiErr asserts err is an *Error with the code and returns it.
func apiErr(t *testing.T, err error, code string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an *Error with code %s", err, code)
	}
	if e.Code != code {
		t.Fatalf("code: got %q, want %q (%v)", e.Code, code, err)
	}
	if e.Message == "" {
		t.Errorf("no message for %s", code)
	}
	return e
}

func TestRegisterPaid(t *testing.T) {
	t.Parallel()
	for _, newsletter := range []bool{false, true} {
		t.Run(fmt.Sprint("newsletter=", newsletter), func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			req := validReq()
			req.Newsletter = newsletter
			req.Billing.Card.Number = "4111 1111 1111 1111" // normalised by Register
			req.Attendee.FirstName = " Ada "
			id, err := f.svc.Register(context.Background(), req, "api:k1")
			if err != nil {
				t.Fatal(err)
			}
			if len(f.store.started) != 1 {
				t.Fatalf("StartAttempt calls: %d", len(f.store.started))
			}
			a := f.store.started[0]
			norm := validReq()
			norm.Newsletter = newsletter
			if a.ID != id || !ValidID(id) || a.EventID != "testconf-2027" || a.TicketID != "standard" ||
				a.IdempotencyKey != "api:k1" || a.RequestHash != norm.Hash() ||
				!a.CreatedAt.Equal(testNow) || !a.ResolveAfter.Equal(testNow.Add(90*time.Second)) {
				t.Errorf("attempt: %+v", a)
			}
			if len(f.proc.charges) != 1 {
				t.Fatalf("charges: %d", len(f.proc.charges))
			}
			c := f.proc.charges[0]
			if c.RequestID != id || c.Amount != 14900 || c.Currency != "EUR" || c.Email != "ada@example.org" ||
				c.Card.Number != "4111111111111111" || c.Card.ExpiryYear != 2030 || c.Card.ExpiryMonth != 12 ||
				c.Card.SecurityCode != "123" || c.Address.Country != "GB" {
				t.Errorf("charge request: %+v", c)
			}
			if f.proc.deadlines[0].IsZero() || time.Until(f.proc.deadlines[0]) > 30*time.Second {
				t.Errorf("the charge has no deadline of at most 30 s: %v", f.proc.deadlines[0])
			}
			if len(f.store.completed) != 1 {
				t.Fatalf("CompleteAttempt calls: %d", len(f.store.completed))
			}
			r := f.store.completed[0]
			mailing := StepSkipped
			if newsletter {
				mailing = StepPending
			}
			want := []Step{{Name: StepSaveOrder, Status: StepPending}, {Name: StepSendConfirmation, Status: StepPending},
				{Name: StepAddToMailingList, Status: mailing}}
			if r.ID != id || r.Status != StatusPaid || r.Amount != 14900 || r.Currency != "EUR" || r.FirstName != "Ada" ||
				r.Newsletter != newsletter || r.Payment.Brand != "visa" || r.Payment.Last4 != "1111" ||
				r.Payment.Reference != "ref-"+id || fmt.Sprint(r.Steps) != fmt.Sprint(want) {
				t.Errorf("registration: %+v", r)
			}
			// Consent through the API records the form's label as its text.
			wantText := ""
			if newsletter {
				wantText = NewsletterConsentText
			}
			if r.NewsletterConsentText != wantText || r.NewsletterConsentedAt.IsZero() == newsletter {
				t.Errorf("consent text %q at %v; want %q", r.NewsletterConsentText, r.NewsletterConsentedAt, wantText)
			}
			// The attempt was recorded with what it becomes once paid.
			draft := r
			draft.Payment = payment.Charge{}
			if fmt.Sprintf("%+v", a.Draft) != fmt.Sprintf("%+v", draft) {
				t.Errorf("attempt draft =\n%+v\nwant the registration without its payment\n%+v", a.Draft, draft)
			}
			if len(f.enqueued) != 1 || f.enqueued[0] != id {
				t.Errorf("enqueued %v, want [%s]", f.enqueued, id)
			}
			if len(f.store.failed) != 0 || len(f.proc.refunds) != 0 || len(f.proc.resolves) != 0 || len(f.store.incidents) != 0 {
				t.Errorf("failed %v, refunds %v, resolves %v, incidents %v", f.store.failed, f.proc.refunds, f.proc.resolves, f.store.incidents)
			}
			if strings.Contains(f.logs.String(), "4111111111111111") {
				t.Errorf("card number logged: %s", f.logs)
			}
		})
	}
}

func TestRegisterFree(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	req := validReq()
	req.Ticket = "community"
	req.Billing = nil
	id, err := f.svc.Register(context.Background(), req, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.proc.charges) != 0 {
		t.Errorf("a free ticket was charged")
	}
	if r := f.store.completed[0]; r.ID != id || r.Amount != 0 || r.Payment != (payment.Charge{}) {
		t.Errorf("registration: %+v", r)
	}
}

// TestRegisterOutlivesClient: once a seat is held, a client hanging up does
// not abandon the attempt half-way.
func TestRegisterOutlivesClient(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.svc.Register(ctx, validReq(), ""); err != nil {
		t.Fatalf("Register with a cancelled request: %v", err)
	}
	if err := f.proc.ctxErrs[0]; err != nil {
		t.Errorf("the charge saw a cancelled context: %v", err)
	}
	if len(f.store.completed) != 1 {
		t.Error("the paid registration was not stored")
	}
}

func TestRegisterStartOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		replay  *Outcome
		err     error
		wantID  string
		code    string
		message string
	}{
		{name: "replayed registration", replay: &Outcome{RegistrationID: "abc"}, wantID: "abc"},
		{name: "replayed decline", replay: &Outcome{Code: CodePaymentDeclined, Message: "Declined."},
			code: CodePaymentDeclined, message: "Declined."},
		{name: "sold out", err: ErrSoldOut, code: CodeSoldOut, message: "The Standard ticket is sold out."},
		{name: "in progress", err: ErrKeyInProgress, code: CodeIdempotencyInProgress},
		{name: "reused", err: ErrKeyReused, code: CodeIdempotencyKeyReused},
		{name: "wrapped sold out", err: fmt.Errorf("hold: %w", ErrSoldOut), code: CodeSoldOut},
		{name: "store down", err: errors.New("sql: database is closed"), code: CodeInternal,
			message: "Something went wrong on our side. Please try again."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			f.store.startReplay, f.store.startErr = tt.replay, tt.err
			id, err := f.svc.Register(context.Background(), validReq(), "api:k")
			if tt.code == "" {
				if err != nil || id != tt.wantID {
					t.Fatalf("got %q, %v; want %q", id, err, tt.wantID)
				}
			} else {
				e := apiErr(t, err, tt.code)
				if tt.message != "" && e.Message != tt.message {
					t.Errorf("message: got %q, want %q", e.Message, tt.message)
				}
				if strings.Contains(e.Message, "sql") {
					t.Errorf("message reveals internals: %q", e.Message)
				}
			}
			if len(f.proc.charges) != 0 || len(f.store.completed) != 0 || len(f.store.failed) != 0 {
				t.Errorf("charged %d, completed %d, failed %d; want nothing", len(f.proc.charges), len(f.store.completed), len(f.store.failed))
			}
		})
	}
}

func TestRegisterChargeFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		code       string
		message    string
		keepsKey   bool // the outcome is stored under the key (else the key is forgotten)
		keyOutcome string
		resolved   bool // the processor was asked whether the charge went through
	}{
		{"declined", &payment.DeclinedError{Reason: "No funds."}, CodePaymentDeclined, "No funds.", true, CodePaymentDeclined, false},
		{"wrapped decline", fmt.Errorf("paypal: %w", &payment.DeclinedError{Reason: "Expired."}), CodePaymentDeclined, "Expired.", true, CodePaymentDeclined, false},
		{"unavailable", fmt.Errorf("%w: timeout", payment.ErrUnavailable), CodePaymentUnavailable, "", false, "", true},
		{"unknown failure", errors.New("boom"), CodePaymentUnavailable, "", false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			f.proc.chargeErr = tt.err
			_, err := f.svc.Register(context.Background(), validReq(), "api:k")
			e := apiErr(t, err, tt.code)
			if tt.message != "" && e.Message != tt.message {
				t.Errorf("message: got %q, want %q", e.Message, tt.message)
			}
			if tt.code == CodePaymentUnavailable && !strings.Contains(e.Message, "Nothing was charged") {
				t.Errorf("message %q does not say nothing was charged", e.Message)
			}
			if len(f.store.failed) != 1 {
				t.Fatalf("FailAttempt calls: %d, want 1 (the held seat must be released)", len(f.store.failed))
			}
			fc := f.store.failed[0]
			if fc.attempt.ID != f.store.started[0].ID {
				t.Errorf("released attempt %s, held %s", fc.attempt.ID, f.store.started[0].ID)
			}
			if (fc.outcome != nil) != tt.keepsKey || (fc.outcome != nil && (fc.outcome.Code != tt.keyOutcome || fc.outcome.Message != tt.message)) {
				t.Errorf("outcome stored under the key: %+v", fc.outcome)
			}
			if got := len(f.proc.resolves) == 1; got != tt.resolved {
				t.Errorf("Resolve calls: %d; want asked = %v", len(f.proc.resolves), tt.resolved)
			}
			if len(f.store.completed) != 0 || len(f.enqueued) != 0 || len(f.proc.refunds) != 0 {
				t.Errorf("completed %d, enqueued %d, refunded %d; want nothing", len(f.store.completed), len(f.enqueued), len(f.proc.refunds))
			}
		})
	}
}

// TestRegisterChargeOutcomeUnknown: when the charge fails with a provider
// error, the processor is asked once whether it went through after all.
func TestRegisterChargeOutcomeUnknown(t *testing.T) {
	t.Parallel()
	charged := payment.Charge{Provider: "fake", Reference: "late-capture", Brand: "visa", Last4: "1111"}
	tests := []struct {
		name          string
		resolveCharge *payment.Charge
		resolveErr    error
		code          string // "" for success
		released      bool   // FailAttempt(nil): seat released, key forgotten
		message       string // part of the message
	}{
		{name: "charged after all", resolveCharge: &charged},
		{name: "not charged", resolveErr: fmt.Errorf("paypal: %w", payment.ErrNotCharged), code: CodePaymentUnavailable,
			released: true, message: "Nothing was charged"},
		{name: "still unknown", resolveErr: errors.New("paypal: 503"), code: CodePaymentUnavailable,
			message: "you will not be charged twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			f.proc.chargeErr = fmt.Errorf("paypal: %w: context deadline exceeded", payment.ErrUnavailable)
			f.proc.resolveCharge, f.proc.resolveErr = tt.resolveCharge, tt.resolveErr
			id, err := f.svc.Register(context.Background(), validReq(), "api:k")
			if len(f.proc.charges) != 1 || len(f.proc.resolves) != 1 {
				t.Fatalf("charges %d, resolves %d; want 1, 1", len(f.proc.charges), len(f.proc.resolves))
			}
			a := f.store.started[0]
			rq := f.proc.resolves[0]
			if rq.RequestID != a.ID || rq.Amount != 14900 || rq.Currency != "EUR" || rq.Card != (payment.Card{}) {
				t.Errorf("resolve request = %+v; want the attempt's request id and amount, without card", rq)
			}
			if tt.code == "" {
				if err != nil || id != a.ID {
					t.Fatalf("Register = %q, %v; want %q", id, err, a.ID)
				}
				if len(f.store.completed) != 1 || f.store.completed[0].Payment != charged {
					t.Fatalf("completed %+v; want one registration with the resolved charge", f.store.completed)
				}
				if len(f.enqueued) != 1 || len(f.store.failed) != 0 || len(f.proc.refunds) != 0 {
					t.Errorf("enqueued %d, failed %d, refunds %d; want 1, 0, 0", len(f.enqueued), len(f.store.failed), len(f.proc.refunds))
				}
				return
			}
			e := apiErr(t, err, tt.code)
			if !strings.Contains(e.Message, tt.message) {
				t.Errorf("message %q; want it to contain %q", e.Message, tt.message)
			}
			if strings.Contains(e.Message, "503") || strings.Contains(e.Message, "deadline") {
				t.Errorf("message reveals internals: %q", e.Message)
			}
			if len(f.store.completed) != 0 || len(f.proc.refunds) != 0 {
				t.Errorf("completed %d, refunds %d; want none", len(f.store.completed), len(f.proc.refunds))
			}
			if tt.released {
				if len(f.store.failed) != 1 || f.store.failed[0].outcome != nil || f.store.failed[0].attempt.ID != a.ID {
					t.Errorf("FailAttempt calls %+v; want one forgetting the key", f.store.failed)
				}
			} else if len(f.store.failed) != 0 {
				// The resolver settles it: the seat and the key stay.
				t.Errorf("FailAttempt calls %+v; want none (the attempt is left to the resolver)", f.store.failed)
			}
		})
	}
}

// TestRegisterCommitFails covers invariant 7: money taken but the
// registration not stored is refunded and the seat released, or, when the
// refund fails too, left to the resolver with its seat and key.
func TestRegisterCommitFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		completeErr error
		refundErr   error
		code        string
		outcome     *Outcome // stored under the key; nil: forgotten
		released    bool     // FailAttempt called
		incident    IncidentKind
		logged      string
		// availability is the ticket's seats (or availabilityErr the
		// failure reading them) when the hold turns out lost.
		availability    Availability
		availabilityErr error
		retryable       bool // the answer says so, with a RetryAfter
	}{
		{name: "commit fails", completeErr: errors.New("disk full"), code: CodePaymentUnavailable,
			released: true, incident: IncidentRefunded, logged: "charge refunded"},
		{name: "hold lost and every seat paid", completeErr: fmt.Errorf("complete: %w", ErrAttemptUnavailable), code: CodeSoldOut,
			availability: Availability{Capacity: 3, Taken: 3},
			outcome:      &Outcome{Code: CodeSoldOut, Message: "The Standard ticket is sold out."}, released: true,
			incident: IncidentRefunded, logged: "charge refunded"},
		// Invariant 10: a sell-out is stored only once every seat is paid.
		{name: "hold lost and seats only held", completeErr: fmt.Errorf("complete: %w", ErrAttemptUnavailable), code: CodeSoldOut,
			availability: Availability{Capacity: 3, Taken: 3, Held: 1}, retryable: true, released: true,
			incident: IncidentRefunded, logged: "charge refunded"},
		{name: "hold lost and a lowered capacity filled by paid seats", completeErr: fmt.Errorf("complete: %w", ErrAttemptUnavailable), code: CodeSoldOut,
			availability: Availability{Capacity: 2, Taken: 3, Held: 1},
			outcome:      &Outcome{Code: CodeSoldOut, Message: "The Standard ticket is sold out."}, released: true,
			incident: IncidentRefunded, logged: "charge refunded"},
		{name: "hold lost and seats unknown", completeErr: fmt.Errorf("complete: %w", ErrAttemptUnavailable), code: CodeSoldOut,
			availabilityErr: errors.New("database is locked"), retryable: true, released: true,
			incident: IncidentRefunded, logged: "charge refunded"},
		{name: "refund fails too", completeErr: errors.New("disk full"), refundErr: errors.New("provider down"),
			code: CodeInternal, incident: IncidentRefundFailed, logged: "REFUND NEEDED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			f.store.completeErrs, f.proc.refundErr = []error{tt.completeErr}, tt.refundErr
			f.store.availability = map[string]Availability{"standard": tt.availability}
			f.store.availabilityErr = tt.availabilityErr
			_, err := f.svc.Register(context.Background(), validReq(), "api:k")
			e := apiErr(t, err, tt.code)
			if strings.Contains(e.Message, "disk") || strings.Contains(e.Message, "provider down") || strings.Contains(e.Message, "locked") {
				t.Errorf("message reveals internals: %q", e.Message)
			}
			if e.Retryable != tt.retryable || (e.RetryAfter > 0) != tt.retryable {
				t.Errorf("retryable %v after %s; want retryable = %v", e.Retryable, e.RetryAfter, tt.retryable)
			}
			if tt.code == CodeSoldOut && !strings.Contains(e.Message, "Your payment was refunded.") {
				t.Errorf("message %q does not say the payment was refunded", e.Message)
			}
			if len(f.proc.charges) != 1 || len(f.proc.refunds) != 1 {
				t.Fatalf("charges %d, refunds %d; want 1, 1", len(f.proc.charges), len(f.proc.refunds))
			}
			a := f.store.started[0]
			if ref := f.proc.refunds[0].Reference; ref != "ref-"+a.ID {
				t.Errorf("refunded %q, want the charge of the attempt", ref)
			}
			if got := len(f.store.failed) == 1; got != tt.released {
				t.Fatalf("seat released = %v (%d calls), want %v", got, len(f.store.failed), tt.released)
			}
			if tt.released {
				o := f.store.failed[0].outcome
				if (o == nil) != (tt.outcome == nil) || (o != nil && (o.Code != tt.outcome.Code || !strings.HasPrefix(o.Message, tt.outcome.Message))) {
					t.Errorf("outcome stored: %+v, want %+v", o, tt.outcome)
				}
			}
			if len(f.store.incidents) != 1 {
				t.Fatalf("incidents %+v; want one %s", f.store.incidents, tt.incident)
			}
			in := f.store.incidents[0]
			if in.Kind != tt.incident || in.AttemptID != a.ID || in.Provider != "fake" || in.Reference != "ref-"+a.ID ||
				in.Amount != 14900 || in.Currency != "EUR" || !strings.Contains(in.Detail, tt.completeErr.Error()) || !in.CreatedAt.Equal(testNow) {
				t.Errorf("incident = %+v; want %s for the attempt's charge", in, tt.incident)
			}
			if !strings.Contains(f.logs.String(), tt.logged) {
				t.Errorf("log lacks %q:\n%s", tt.logged, f.logs)
			}
			if strings.Contains(f.logs.String(), "4111111111111111") {
				t.Errorf("card number logged")
			}
		})
	}
}

// TestRefundFailureLeftToResolver: after a failed commit whose refund failed
// too, the attempt keeps its seat and key; the resolver later finds the
// charge and completes the registration, charging nothing more.
func TestRefundFailureLeftToResolver(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	f.store.completeErrs = []error{errors.New("disk full")}
	f.proc.refundErr = errors.New("provider down")
	_, err := f.svc.Register(context.Background(), validReq(), "api:k")
	e := apiErr(t, err, CodeInternal)
	if !strings.Contains(e.Message, "not be charged twice") {
		t.Errorf("message %q does not reassure about the payment", e.Message)
	}
	if len(f.store.failed) != 0 {
		t.Fatalf("FailAttempt calls %+v; want none (the seat and key stay)", f.store.failed)
	}
	if got := f.store.incidentKinds(); fmt.Sprint(got) != fmt.Sprint([]IncidentKind{IncidentRefundFailed}) {
		t.Fatalf("incidents %v; want [refund_failed]", got)
	}

	// The resolver: the attempt is past its ResolveAfter.
	a := f.store.started[0]
	f.store.abandoned = []Attempt{a}
	charge := payment.Charge{Provider: "fake", Reference: "ref-" + a.ID, Brand: "visa", Last4: "1111"}
	f.proc.resolveCharge = &charge
	f.proc.refundErr = nil
	n, err := f.svc.ResolveAbandoned(context.Background(), a.ResolveAfter.Add(time.Second))
	if err != nil || n != 1 {
		t.Fatalf("ResolveAbandoned = %d, %v; want 1, nil", n, err)
	}
	if len(f.store.completed) != 1 || f.store.completed[0].ID != a.ID || f.store.completed[0].Payment != charge {
		t.Fatalf("completed %+v; want the attempt's registration with its charge", f.store.completed)
	}
	if len(f.proc.charges) != 1 || len(f.proc.refunds) != 1 {
		t.Errorf("charges %d, refunds %d; want 1 charge and only the failed refund", len(f.proc.charges), len(f.proc.refunds))
	}
	if got := f.store.incidentKinds(); fmt.Sprint(got) != fmt.Sprint([]IncidentKind{IncidentRefundFailed, IncidentResolvedCharged}) {
		t.Errorf("incidents %v; want [refund_failed resolved_charged]", got)
	}
}

func TestResolveAbandoned(t *testing.T) {
	t.Parallel()
	charged := payment.Charge{Provider: "fake", Reference: "CAPTURE-1", Brand: "visa", Last4: "1111"}
	created := testNow.Add(-time.Hour)
	tests := []struct {
		name          string
		free          bool // the attempt is for a free ticket
		noDraft       bool // an attempt from before drafts were kept
		age           time.Duration
		resolveCharge *payment.Charge
		resolveErr    error
		completeErr   error
		refundErr     error

		settled   int
		resolved  bool // the processor was asked
		completed bool
		released  bool // FailAttempt(nil)
		postponed bool
		refunded  bool
		incidents []IncidentKind
	}{
		{name: "charged", resolveCharge: &charged, settled: 1, resolved: true, completed: true,
			incidents: []IncidentKind{IncidentResolvedCharged}},
		{name: "charged, registered meanwhile", resolveCharge: &charged, completeErr: fmt.Errorf("x: %w", ErrAlreadyRegistered),
			settled: 1, resolved: true, incidents: []IncidentKind{IncidentResolvedCharged}},
		{name: "charged, cannot be stored", resolveCharge: &charged, completeErr: errors.New("disk full"),
			resolved: true, released: true, refunded: true, incidents: []IncidentKind{IncidentRefunded}},
		{name: "charged, cannot be stored nor refunded", resolveCharge: &charged, completeErr: errors.New("disk full"),
			refundErr: errors.New("down"), resolved: true, refunded: true, incidents: []IncidentKind{IncidentRefundFailed}},
		{name: "not charged", resolveErr: payment.ErrNotCharged, settled: 1, resolved: true, released: true,
			incidents: []IncidentKind{IncidentResolvedNotCharged}},
		{name: "unknown", resolveErr: errors.New("paypal: 503"), resolved: true, postponed: true},
		{name: "unknown just before giving up", age: 5*time.Hour - time.Second, resolveErr: errors.New("paypal: 503"),
			resolved: true, postponed: true},
		{name: "unknown for too long", age: 5*time.Hour + time.Second, resolveErr: errors.New("paypal: 503"),
			settled: 1, resolved: true, released: true, incidents: []IncidentKind{IncidentUnresolved}},
		{name: "free ticket", free: true, settled: 1, released: true},
		{name: "no draft", noDraft: true, settled: 1, released: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			req := validReq()
			if tt.free {
				req.Ticket, req.Billing = "community", nil
			}
			ticket, _ := f.svc.event.Ticket(req.Ticket)
			a := Attempt{ID: "attempt-1", EventID: "testconf-2027", TicketID: ticket.ID, IdempotencyKey: "api:k",
				RequestHash: req.Hash(), CreatedAt: created, ResolveAfter: created.Add(90 * time.Second),
				Draft: f.svc.draft("attempt-1", ticket, req, created)}
			if tt.noDraft {
				a.Draft = Registration{}
			}
			now := created.Add(time.Hour)
			if tt.age != 0 {
				now = created.Add(tt.age)
			}
			live := Attempt{ID: "attempt-2", ResolveAfter: now.Add(time.Second)}
			f.store.abandoned = []Attempt{a, live}
			f.store.completeErrs = []error{tt.completeErr}
			f.proc.resolveCharge, f.proc.resolveErr, f.proc.refundErr = tt.resolveCharge, tt.resolveErr, tt.refundErr

			n, err := f.svc.ResolveAbandoned(context.Background(), now)
			if err != nil || n != tt.settled {
				t.Fatalf("ResolveAbandoned = %d, %v; want %d, nil", n, err, tt.settled)
			}
			if len(f.store.limits) != 1 || f.store.limits[0] <= 0 {
				t.Errorf("AbandonedAttempts limits %v; want one call with a limit", f.store.limits)
			}
			if got := len(f.proc.resolves) == 1; got != tt.resolved || len(f.proc.resolves) > 1 {
				t.Fatalf("Resolve calls %d; want asked = %v", len(f.proc.resolves), tt.resolved)
			}
			if tt.resolved {
				rq := f.proc.resolves[0]
				if rq.RequestID != a.ID || rq.Amount != 14900 || rq.Currency != "EUR" || rq.Email != "ada@example.org" {
					t.Errorf("resolve request = %+v; want the attempt's id, amount and email", rq)
				}
			}
			if len(f.proc.charges) != 0 {
				t.Errorf("the resolver charged %d times", len(f.proc.charges))
			}
			if got := len(f.store.completed) == 1; got != tt.completed {
				t.Errorf("completed %+v; want completed = %v", f.store.completed, tt.completed)
			}
			if tt.completed {
				r := f.store.completed[0]
				want := a.Draft
				want.Payment = charged
				if fmt.Sprintf("%+v", r) != fmt.Sprintf("%+v", want) {
					t.Errorf("registration =\n%+v\nwant the draft with the charge\n%+v", r, want)
				}
				if len(f.enqueued) != 1 || f.enqueued[0] != a.ID {
					t.Errorf("enqueued %v; want [%s]", f.enqueued, a.ID)
				}
			}
			if got := len(f.store.failed) == 1; got != tt.released || len(f.store.failed) > 1 {
				t.Errorf("FailAttempt calls %+v; want released = %v", f.store.failed, tt.released)
			}
			if tt.released && (f.store.failed[0].attempt.ID != a.ID || f.store.failed[0].outcome != nil) {
				t.Errorf("FailAttempt %+v; want the attempt with its key forgotten", f.store.failed[0])
			}
			if tt.postponed {
				if len(f.store.postponed) != 1 || f.store.postponed[0] != (postponeCall{a.ID, now.Add(time.Minute)}) {
					t.Errorf("postponed %+v; want %s until %s", f.store.postponed, a.ID, now.Add(time.Minute))
				}
			} else if len(f.store.postponed) != 0 {
				t.Errorf("postponed %+v; want none", f.store.postponed)
			}
			if got := len(f.proc.refunds) == 1; got != tt.refunded || len(f.proc.refunds) > 1 {
				t.Errorf("refunds %+v; want refunded = %v", f.proc.refunds, tt.refunded)
			}
			if tt.refunded && (f.proc.refunds[0] != charged || f.proc.refundIDs[0] != "refund-"+a.ID) {
				t.Errorf("refund of %+v as %s; want the resolved charge as refund-%s", f.proc.refunds[0], f.proc.refundIDs[0], a.ID)
			}
			if got := f.store.incidentKinds(); fmt.Sprint(got) != fmt.Sprint(tt.incidents) {
				t.Errorf("incidents %v; want %v", got, tt.incidents)
			}
			for _, in := range f.store.incidents {
				if in.AttemptID != a.ID || in.Amount != 14900 || in.Currency != "EUR" {
					t.Errorf("incident %+v; want the attempt's amount", in)
				}
				if in.Kind == IncidentResolvedCharged && (in.Provider != "fake" || in.Reference != "CAPTURE-1") {
					t.Errorf("incident %+v; want the charge's reference", in)
				}
			}
		})
	}
}

func TestResolveAbandonedStoreFails(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	f.store.abandonedErr = errors.New("database is locked")
	if n, err := f.svc.ResolveAbandoned(context.Background(), testNow); err == nil || n != 0 {
		t.Errorf("ResolveAbandoned = %d, %v; want 0 and the error", n, err)
	}
	if len(f.proc.resolves) != 0 {
		t.Error("the processor was asked without attempts")
	}
}

func TestRegisterValidationFirst(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	req := validReq()
	req.Billing.Card.Number = "4111111111111112"
	req.Attendee.Email = "nope"
	_, err := f.svc.Register(context.Background(), req, "api:k")
	e := apiErr(t, err, CodeValidationFailed)
	if len(e.Fields) != 2 || e.Fields["billing.card.number"] == "" || e.Fields["attendee.email"] == "" {
		t.Errorf("fields: %v", e.Fields)
	}
	if len(f.store.started) != 0 || len(f.proc.charges) != 0 {
		t.Error("an invalid request reached the store or the processor")
	}
}

func TestServiceRegistrationRejectsBadIDs(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	for _, id := range []string{"", "x", "../etc/passwd", strings.Repeat("A", 32)} {
		if _, err := f.svc.Registration(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Registration(%q): got %v, want ErrNotFound", id, err)
		}
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	e := &Error{Code: CodeInternal, Message: "Oops.", Err: cause}
	if !errors.Is(e, cause) || e.Error() != "internal: Oops.: cause" {
		t.Errorf("got %q, unwraps to cause = %v", e.Error(), errors.Is(e, cause))
	}
	if got := (&Error{Code: CodeSoldOut, Message: "Gone."}).Error(); got != "sold_out: Gone." {
		t.Errorf("got %q", got)
	}
}

// A commit that reports an error may have gone through all the same (a
// timeout or a broken connection during COMMIT): a stored registration is
// never refunded, and one whose fate is unknown is left to the resolver,
// with its seat and key, instead of being refunded.
func TestRegisterCommitOutcomeUnknown(t *testing.T) {
	t.Parallel()
	stored := func(id string) (Registration, error) { return Registration{ID: id}, nil }
	tests := []struct {
		name        string
		completeErr error
		lookup      func(id string) (Registration, error)
		code        string // "" for success
		logged      string
	}{
		{name: "stored despite the error", completeErr: errors.New("commit: connection reset by peer"), lookup: stored,
			logged: "registration stored although its commit reported an error"},
		{name: "timed out and not visible", completeErr: fmt.Errorf("commit: %w", context.DeadlineExceeded),
			code: CodeInternal, logged: "the resolver settles it"},
		{name: "broken connection and not visible", completeErr: fmt.Errorf("commit: %w", driver.ErrBadConn),
			code: CodeInternal, logged: "the resolver settles it"},
		{name: "cannot look", completeErr: errors.New("disk I/O error"),
			lookup: func(string) (Registration, error) { return Registration{}, errors.New("too many open files") },
			code:   CodeInternal, logged: "the resolver settles it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			f.store.completeErrs, f.store.lookup = []error{tt.completeErr}, tt.lookup
			id, err := f.svc.Register(context.Background(), validReq(), "api:k")
			if tt.code == "" {
				if err != nil || id == "" {
					t.Fatalf("Register = %q, %v; want the registration", id, err)
				}
			} else if e := apiErr(t, err, tt.code); e.Message != msgPaymentSafe {
				t.Errorf("message %q; want %q", e.Message, msgPaymentSafe)
			}
			if len(f.proc.charges) != 1 || len(f.proc.refunds) != 0 {
				t.Errorf("charges %d, refunds %d; want 1, 0: a charge that may be registered is never refunded", len(f.proc.charges), len(f.proc.refunds))
			}
			if len(f.store.failed) != 0 {
				t.Errorf("FailAttempt called %d times; want none: the seat and key stay for the resolver", len(f.store.failed))
			}
			if len(f.store.incidents) != 0 {
				t.Errorf("incidents %+v; want none yet (the resolver records how it settles)", f.store.incidents)
			}
			if !strings.Contains(f.logs.String(), tt.logged) {
				t.Errorf("log lacks %q:\n%s", tt.logged, f.logs)
			}
		})
	}
}

func (s *fakeStore) Availability(ctx context.Context, eventID string) (map[string]Availability, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.availabilityErr != nil {
		return nil, s.availabilityErr
	}
	if s.availability == nil {
		return nil, errors.New("fakeStore: no availability set")
	}
	return s.availability, nil
}

func (s *fakeStore) RecentRegistrations(ctx context.Context, eventID, ticketID, email string, since time.Time) ([]Registration, error) {
	return nil, errors.New("fakeStore: RecentRegistrations is not used by these tests")
}

// TestRegisterAttemptEmail: the attempt carries the attendee's address
// lower-cased and the ticket's limit per address.
func TestRegisterAttemptEmail(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ticket string
		max    int
	}{{"standard", 0}, {"community", 1}} {
		f := newServiceFixture(t)
		req := validReq()
		req.Ticket = tt.ticket
		if tt.ticket == "community" {
			req.Billing = nil
		}
		req.Attendee.Email = "  Ada.Lovelace@Example.ORG "
		if _, err := f.svc.Register(context.Background(), req, ""); err != nil {
			t.Fatalf("%s: %v", tt.ticket, err)
		}
		a := f.store.started[0]
		if a.Email != "ada.lovelace@example.org" || a.MaxPerEmail != tt.max {
			t.Errorf("%s: attempt email %q, limit %d; want ada.lovelace@example.org, %d", tt.ticket, a.Email, a.MaxPerEmail, tt.max)
		}
		if r := f.store.completed[0]; r.Email != "Ada.Lovelace@Example.ORG" {
			t.Errorf("%s: registration email %q; want the address as typed, trimmed", tt.ticket, r.Email)
		}
	}
}

// TestRegisterRefusedAtStart: seats only held answer a retryable sold out;
// an email address at its limit answers a field error. Neither charges.
func TestRegisterRefusedAtStart(t *testing.T) {
	t.Parallel()
	limited := testEvent(t)
	limited.Tickets[0].MaxPerEmail = 3
	tests := []struct {
		name      string
		ev        *event.Event
		ticket    string
		err       error
		code      string
		retryable bool
		field     string // the attendee.email message
	}{
		{name: "seats held", err: ErrSeatsHeld, code: CodeSoldOut, retryable: true},
		{name: "wrapped seats held", err: fmt.Errorf("hold: %w", ErrSeatsHeld), code: CodeSoldOut, retryable: true},
		{name: "every seat paid", err: ErrSoldOut, code: CodeSoldOut},
		{name: "one per person", ticket: "community", err: ErrEmailLimit, code: CodeValidationFailed,
			field: "This email address already has a Community ticket (one per person)."},
		{name: "three per person", ev: limited, err: ErrEmailLimit, code: CodeValidationFailed,
			field: "This email address already has 3 Standard tickets, the most allowed per person."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			if tt.ev != nil {
				f.svc.event = tt.ev
			}
			req := validReq()
			if tt.ticket != "" {
				req.Ticket, req.Billing = tt.ticket, nil
			}
			f.store.startErr = tt.err
			_, err := f.svc.Register(context.Background(), req, "api:k")
			e := apiErr(t, err, tt.code)
			if e.Retryable != tt.retryable {
				t.Errorf("retryable = %v; want %v", e.Retryable, tt.retryable)
			}
			if tt.retryable && e.RetryAfter != 5*time.Second {
				t.Errorf("retry after %s; want 5s", e.RetryAfter)
			}
			if tt.retryable && !strings.Contains(e.Message, "Standard") {
				t.Errorf("message %q does not name the ticket", e.Message)
			}
			if got := e.Fields["attendee.email"]; got != tt.field || (tt.field != "" && len(e.Fields) != 1) {
				t.Errorf("fields %v; want attendee.email = %q", e.Fields, tt.field)
			}
			if len(f.proc.charges) != 0 || len(f.store.completed) != 0 || len(f.store.failed) != 0 {
				t.Errorf("charged %d, completed %d, failed %d; want nothing", len(f.proc.charges), len(f.store.completed), len(f.store.failed))
			}
		})
	}
}

// TestRegisterSalesWindow: outside the sales window nothing reaches the
// store: no seat is held, nothing is stored under the key.
func TestRegisterSalesWindow(t *testing.T) {
	t.Parallel()
	ev := func(t *testing.T, extra string) *event.Event {
		t.Helper()
		e, err := event.Parse([]byte(`{
		  "id": "testconf-2027", "name": "TestConf 2027", "starts_at": "2027-06-10T09:00:00+02:00",
		  "venue": "Hall 1", "currency": "EUR", ` + extra + `
		  "email_from": {"address": "tickets@testconf.example", "name": "TestConf"},
		  "tickets": [{"id": "standard", "name": "Standard", "price": "149.00", "capacity": 100}]
		}`))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	window := `"sales_start": "2027-03-01T09:00:00Z", "sales_end": "2027-06-01T00:00:00+02:00",`
	tests := []struct {
		name    string
		extra   string
		now     time.Time
		code    string // "" when on sale
		message string
	}{
		{"before sales open", window, time.Date(2027, 2, 28, 12, 0, 0, 0, time.UTC), CodeSalesNotOpen,
			"Ticket sales open on 1 March 2027 at 11:00 UTC+02:00."},
		{"the moment sales open", window, time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC), "", ""},
		{"just before sales end", window, time.Date(2027, 5, 31, 21, 59, 59, 0, time.UTC), "", ""},
		{"once sales ended", window, time.Date(2027, 5, 31, 22, 0, 0, 0, time.UTC), CodeSalesClosed,
			"Ticket sales for TestConf 2027 have closed."},
		{"once the event started", "", time.Date(2027, 6, 10, 7, 0, 0, 0, time.UTC), CodeSalesClosed,
			"Ticket sales for TestConf 2027 have closed."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			f.svc.event = ev(t, tt.extra)
			f.svc.now = func() time.Time { return tt.now }
			_, err := f.svc.Register(context.Background(), validReq(), "api:k")
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Register on sale: %v", err)
				}
				return
			}
			e := apiErr(t, err, tt.code)
			if e.Message != tt.message {
				t.Errorf("message %q; want %q", e.Message, tt.message)
			}
			if e.Retryable {
				t.Error("a sales answer is marked retryable")
			}
			if len(f.store.started) != 0 || len(f.proc.charges) != 0 {
				t.Errorf("started %d, charged %d; want nothing outside the sales window", len(f.store.started), len(f.proc.charges))
			}
		})
	}
}

// TestRegisterChargeNotCharged: a provider that certainly took nothing
// (PayPal refused the order before any charge) gives the seat and the key
// back at once, without asking whether the charge went through.
func TestRegisterChargeNotCharged(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t)
	f.proc.chargeErr = fmt.Errorf("paypal: create order: 422 UNPROCESSABLE_ENTITY: %w", payment.ErrNotCharged)
	f.proc.resolveCharge = &payment.Charge{Provider: "fake", Reference: "must-not-be-asked"}
	_, err := f.svc.Register(context.Background(), validReq(), "api:k")
	e := apiErr(t, err, CodePaymentUnavailable)
	if !strings.Contains(e.Message, "Nothing was charged") || strings.Contains(e.Message, "422") {
		t.Errorf("message %q; want it to say nothing was charged, without internals", e.Message)
	}
	if len(f.proc.resolves) != 0 {
		t.Errorf("Resolve called %d times; want none: the provider already said nothing was taken", len(f.proc.resolves))
	}
	if len(f.store.failed) != 1 || f.store.failed[0].outcome != nil || f.store.failed[0].attempt.ID != f.store.started[0].ID {
		t.Fatalf("FailAttempt calls %+v; want one releasing the seat and forgetting the key", f.store.failed)
	}
	if len(f.store.completed) != 0 || len(f.proc.refunds) != 0 || len(f.store.incidents) != 0 {
		t.Errorf("completed %d, refunds %d, incidents %d; want none", len(f.store.completed), len(f.proc.refunds), len(f.store.incidents))
	}
}

// TestRegisterChargeRateLimited: a provider that refused the charge for its
// rate limit and said how long to wait: nothing was charged, the seat goes
// back, and the answer tells when to try again (the API's Retry-After).
func TestRegisterChargeRateLimited(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		wait  time.Duration
		words string
	}{
		{45 * time.Second, "try again in 45 seconds"},
		{10 * time.Minute, "try again in 10 minutes"},
	} {
		f := newServiceFixture(t)
		f.proc.chargeErr = fmt.Errorf("%w: paypal create order: 429 RATE_LIMIT_REACHED: %w: %w",
			payment.ErrUnavailable, &payment.RateLimitedError{Wait: tc.wait}, payment.ErrNotCharged)
		_, err := f.svc.Register(context.Background(), validReq(), "api:k")
		e := apiErr(t, err, CodePaymentUnavailable)
		if !e.Retryable || e.RetryAfter != tc.wait || !strings.Contains(e.Message, "Nothing was charged") || !strings.Contains(e.Message, tc.words) {
			t.Errorf("rate limited for %v: retryable %v after %v, message %q; want retryable after the wait, saying %q",
				tc.wait, e.Retryable, e.RetryAfter, e.Message, tc.words)
		}
		if len(f.store.failed) != 1 || len(f.proc.resolves) != 0 {
			t.Errorf("FailAttempt calls %d, Resolve calls %d; want the seat back at once", len(f.store.failed), len(f.proc.resolves))
		}
	}
}

// TestRegisterReplayOutsideSales: a retry of a request answered before
// sales closed gets its answer again; a new request is told sales closed.
func TestRegisterReplayOutsideSales(t *testing.T) {
	t.Parallel()
	closed := testNow.AddDate(2, 0, 0) // after the event started
	tests := []struct {
		name   string
		key    string
		replay *Outcome
		err    error
		wantID string
		code   string
	}{
		{name: "registered before", key: "api:k", replay: &Outcome{RegistrationID: "abc"}, wantID: "abc"},
		{name: "declined before", key: "api:k", replay: &Outcome{Code: CodePaymentDeclined, Message: "Declined."}, code: CodePaymentDeclined},
		{name: "in progress", key: "api:k", err: ErrKeyInProgress, code: CodeIdempotencyInProgress},
		{name: "reused", key: "api:k", err: ErrKeyReused, code: CodeIdempotencyKeyReused},
		{name: "unknown key", key: "api:k", code: CodeSalesClosed},
		{name: "cannot read the key", key: "api:k", err: errors.New("database is locked"), code: CodeSalesClosed},
		{name: "no key", code: CodeSalesClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			f.svc.now = func() time.Time { return closed }
			f.store.keyOutcome, f.store.keyErr = tt.replay, tt.err
			id, err := f.svc.Register(context.Background(), validReq(), tt.key)
			if tt.code == "" {
				if err != nil || id != tt.wantID {
					t.Fatalf("Register = %q, %v; want %q replayed", id, err, tt.wantID)
				}
			} else {
				apiErr(t, err, tt.code)
			}
			if want := tt.key != ""; (len(f.store.keyLookups) == 1) != want || (want && f.store.keyLookups[0] != tt.key) {
				t.Errorf("key lookups %v; want %v", f.store.keyLookups, want)
			}
			if len(f.store.started) != 0 || len(f.proc.charges) != 0 {
				t.Errorf("started %d, charged %d; want nothing outside the sales window", len(f.store.started), len(f.proc.charges))
			}
		})
	}
}

func TestAvailability(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a       Availability
		left    int
		soldOut bool
	}{
		{Availability{Capacity: 3}, 3, false},
		{Availability{Capacity: 3, Taken: 2, Held: 1}, 1, false},
		{Availability{Capacity: 3, Taken: 3, Held: 2}, 0, false},
		{Availability{Capacity: 3, Taken: 3}, 0, true},
		// A capacity lowered below the seats taken.
		{Availability{Capacity: 2, Taken: 3, Held: 1}, 0, true},
		{Availability{Capacity: 2, Taken: 3, Held: 2}, 0, false},
	}
	for _, tt := range tests {
		if left, sold := tt.a.Left(), tt.a.SoldOut(); left != tt.left || sold != tt.soldOut {
			t.Errorf("%+v: left %d, sold out %v; want %d, %v", tt.a, left, sold, tt.left, tt.soldOut)
		}
	}
}
