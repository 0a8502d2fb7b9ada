package registration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/payment"
)

// fakeStore records what the service asks of storage and answers as told.
type fakeStore struct {
	mu sync.Mutex

	startReplay *Outcome
	startErr    error
	completeErr error

	started   []Attempt
	failed    []failCall
	completed []Registration
}

type failCall struct {
	attempt Attempt
	outcome *Outcome
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

func (s *fakeStore) FailAttempt(ctx context.Context, a Attempt, o *Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = append(s.failed, failCall{a, o})
	return nil
}

func (s *fakeStore) CompleteAttempt(ctx context.Context, a Attempt, r Registration, enqueue EnqueueFunc) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.completeErr != nil {
		return s.completeErr
	}
	s.completed = append(s.completed, r)
	return enqueue(ctx, nil, r.ID)
}

func (s *fakeStore) Registration(ctx context.Context, id string) (Registration, error) {
	return Registration{}, ErrNotFound
}

// fakeProcessor answers charges as told and records them.
type fakeProcessor struct {
	mu        sync.Mutex
	chargeErr error
	refundErr error
	charges   []payment.ChargeRequest
	ctxErrs   []error
	deadlines []time.Time
	refunds   []payment.Charge
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
	return payment.Charge{}, payment.ErrNotCharged
}

func (p *fakeProcessor) Refund(ctx context.Context, c payment.Charge, amount int64, currency, requestID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refunds = append(p.refunds, c)
	return p.refundErr
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
				!a.CreatedAt.Equal(testNow) || !a.ExpiresAt.Equal(testNow.Add(10*time.Minute)) {
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
			if len(f.enqueued) != 1 || f.enqueued[0] != id {
				t.Errorf("enqueued %v, want [%s]", f.enqueued, id)
			}
			if len(f.store.failed) != 0 || len(f.proc.refunds) != 0 {
				t.Errorf("failed %v, refunds %v", f.store.failed, f.proc.refunds)
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
	}{
		{"declined", &payment.DeclinedError{Reason: "No funds."}, CodePaymentDeclined, "No funds.", true, CodePaymentDeclined},
		{"wrapped decline", fmt.Errorf("paypal: %w", &payment.DeclinedError{Reason: "Expired."}), CodePaymentDeclined, "Expired.", true, CodePaymentDeclined},
		{"unavailable", fmt.Errorf("%w: timeout", payment.ErrUnavailable), CodePaymentUnavailable, "", false, ""},
		{"unknown failure", errors.New("boom"), CodePaymentUnavailable, "", false, ""},
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
			if len(f.store.completed) != 0 || len(f.enqueued) != 0 || len(f.proc.refunds) != 0 {
				t.Errorf("completed %d, enqueued %d, refunded %d; want nothing", len(f.store.completed), len(f.enqueued), len(f.proc.refunds))
			}
		})
	}
}

// TestRegisterCommitFails covers invariant 7: money taken but the
// registration not stored is refunded and the seat released.
func TestRegisterCommitFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		completeErr error
		refundErr   error
		code        string
		outcome     *Outcome // stored under the key; nil: forgotten
		released    bool     // FailAttempt called
		logged      string
	}{
		{name: "commit fails", completeErr: errors.New("disk full"), code: CodePaymentUnavailable,
			released: true, logged: "charge refunded"},
		{name: "hold lost and no seat left", completeErr: fmt.Errorf("complete: %w", ErrAttemptUnavailable), code: CodeSoldOut,
			outcome: &Outcome{Code: CodeSoldOut, Message: "The Standard ticket is sold out."}, released: true, logged: "charge refunded"},
		{name: "refund fails too", completeErr: errors.New("disk full"), refundErr: errors.New("provider down"),
			code: CodeInternal, logged: "REFUND NEEDED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			f.store.completeErr, f.proc.refundErr = tt.completeErr, tt.refundErr
			_, err := f.svc.Register(context.Background(), validReq(), "api:k")
			e := apiErr(t, err, tt.code)
			if strings.Contains(e.Message, "disk") || strings.Contains(e.Message, "provider down") {
				t.Errorf("message reveals internals: %q", e.Message)
			}
			if len(f.proc.charges) != 1 || len(f.proc.refunds) != 1 {
				t.Fatalf("charges %d, refunds %d; want 1, 1", len(f.proc.charges), len(f.proc.refunds))
			}
			if ref := f.proc.refunds[0].Reference; ref != "ref-"+f.store.started[0].ID {
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
			if !strings.Contains(f.logs.String(), tt.logged) {
				t.Errorf("log lacks %q:\n%s", tt.logged, f.logs)
			}
			if strings.Contains(f.logs.String(), "4111111111111111") {
				t.Errorf("card number logged")
			}
		})
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
