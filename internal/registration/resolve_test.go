package registration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/sqlite"
	"github.com/registrar/registrar/internal/sqlite/sqlitetest"
)

// These tests run the payment resolution on the real SQLite store, the real
// River pipeline and the built-in test processor, wrapped to lose answers.

// waitFor bounds every wait for the pipeline; generous for the race detector.
const waitFor = 45 * time.Second

// flakyProcessor is the test processor with a provider that fails as told.
type flakyProcessor struct {
	*payment.TestProcessor

	mu sync.Mutex
	// chargeLost: the charge goes through but its answer is lost (a
	// timeout after the capture).
	chargeLost bool
	// chargeFails: the provider fails before charging.
	chargeFails bool
	// resolveErr, when set, is Resolve's answer: the provider cannot tell.
	resolveErr error
	// refundErr, when set, fails every refund.
	refundErr             error
	chargeCalls, resolves int
	refundCalls           int
	// resolveGate, when set, holds every Resolve until it is closed.
	resolveGate chan struct{}
	// resolving counts Resolve calls in progress; maxResolving the most.
	resolving, maxResolving int
	// slowDeclines, when set, holds every charge of the declined test card
	// until it is closed, as a slow provider would; slowCharging counts the
	// charges it holds.
	slowDeclines chan struct{}
	slowCharging int
}

func (p *flakyProcessor) set(f func(p *flakyProcessor)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *flakyProcessor) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	p.mu.Lock()
	p.chargeCalls++
	lost, fails, slow := p.chargeLost, p.chargeFails, p.slowDeclines
	if slow != nil && req.Card.Number == payment.TestCardDeclined {
		p.slowCharging++
	} else {
		slow = nil
	}
	p.mu.Unlock()
	if slow != nil {
		<-slow
	}
	switch {
	case fails:
		return payment.Charge{}, fmt.Errorf("paypal: %w: 503 service unavailable", payment.ErrUnavailable)
	case lost:
		if _, err := p.TestProcessor.Charge(ctx, req); err != nil {
			return payment.Charge{}, err
		}
		return payment.Charge{}, fmt.Errorf("paypal: %w: context deadline exceeded", payment.ErrUnavailable)
	}
	return p.TestProcessor.Charge(ctx, req)
}

func (p *flakyProcessor) Resolve(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	p.mu.Lock()
	p.resolves++
	p.resolving++
	p.maxResolving = max(p.maxResolving, p.resolving)
	err, gate := p.resolveErr, p.resolveGate
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.resolving--
		p.mu.Unlock()
	}()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return payment.Charge{}, ctx.Err()
		}
	}
	if req.Card != (payment.Card{}) {
		return payment.Charge{}, errors.New("Resolve got card data")
	}
	if err != nil {
		return payment.Charge{}, err
	}
	return p.TestProcessor.Resolve(ctx, req)
}

func (p *flakyProcessor) Refund(ctx context.Context, c payment.Charge, amount int64, currency, requestID string) (payment.RefundOutcome, error) {
	p.mu.Lock()
	p.refundCalls++
	err := p.refundErr
	p.mu.Unlock()
	if err != nil {
		return payment.RefundOutcome{}, err
	}
	return p.TestProcessor.Refund(ctx, c, amount, currency, requestID)
}

func (p *flakyProcessor) calls() (charges, resolves int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.chargeCalls, p.resolves
}

// flakyStore is the SQLite store whose next CompleteAttempt calls fail.
type flakyStore struct {
	*sqlite.Store

	mu            sync.Mutex
	completeFails int
}

func (s *flakyStore) CompleteAttempt(ctx context.Context, a registration.Attempt, r registration.Registration, enqueue registration.EnqueueFunc) error {
	s.mu.Lock()
	fail := s.completeFails > 0
	if fail {
		s.completeFails--
	}
	s.mu.Unlock()
	if fail {
		return errors.New("sqlite: disk I/O error")
	}
	return s.Store.CompleteAttempt(ctx, a, r, enqueue)
}

// template is the migrated database every test copies.
var template sqlitetest.Template

type env struct {
	db    *sqlite.DB
	store *sqlite.Store
	flaky *flakyStore
	proc  *flakyProcessor
	svc   *registration.Service
}

// resolverFunc adapts a function to pipeline.Resolver.
type resolverFunc func(ctx context.Context, now time.Time) (int, error)

func (f resolverFunc) ResolveAbandoned(ctx context.Context, now time.Time) (int, error) {
	return f(ctx, now)
}

// newEnv wires the store, River and the service as cmd/registrar does and
// starts River. River's periodic resolver is left out so that the tests
// decide when ResolveAbandoned runs.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvFor(t, event.Demo())
}

// newEnvFor is newEnv for the event ev.
func newEnvFor(t *testing.T, ev *event.Event) *env {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	db, store := template.Open(t, ev)
	outbox, err := email.NewOutbox(filepath.Join(dir, "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := email.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	opts := pipeline.DefaultOptions()
	opts.RetryBase, opts.RetryCap, opts.FetchPollInterval = 10*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond
	cfg, err := pipeline.Config(pipeline.Deps{
		Store: store, Mailer: outbox, List: store, Renderer: renderer, Event: ev, BaseURL: "http://registrar.test", Log: log,
		Payments: resolverFunc(func(context.Context, time.Time) (int, error) { return 0, nil }),
	}, opts, true, log)
	if err != nil {
		t.Fatal(err)
	}
	client, err := river.NewClient(riversqlite.New(db.Write), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Stop(stopCtx); err != nil {
			t.Errorf("stop River: %v", err)
		}
	})
	e := &env{db: db, store: store, flaky: &flakyStore{Store: store}, proc: &flakyProcessor{TestProcessor: payment.NewTestProcessor()}}
	e.svc = registration.NewService(e.flaky, e.proc, pipeline.Enqueue(client), ev, log)
	return e
}

func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Read.QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (e *env) taken(t *testing.T) int {
	t.Helper()
	return e.count(t, `SELECT taken FROM ticket_stock WHERE ticket_id = 'standard'`)
}

func (e *env) keyState(t *testing.T, key string) (state, regID string) {
	t.Helper()
	var reg sql.NullString
	err := e.db.Read.QueryRowContext(t.Context(), `SELECT state, registration_id FROM idempotency_keys WHERE key = ?`, key).Scan(&state, &reg)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return state, reg.String
}

func (e *env) incidents(t *testing.T, attemptID string) []string {
	t.Helper()
	rows, err := e.db.Read.QueryContext(t.Context(), `SELECT kind, amount, currency FROM payment_incidents WHERE attempt_id = ? ORDER BY id`, attemptID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var kinds []string
	for rows.Next() {
		var kind, currency string
		var amount int64
		if err := rows.Scan(&kind, &amount, &currency); err != nil {
			t.Fatal(err)
		}
		if amount != 14900 || currency != "EUR" {
			t.Errorf("incident %s of %d %s; want 14900 EUR", kind, amount, currency)
		}
		kinds = append(kinds, kind)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return kinds
}

// holdID returns the one attempt holding a seat.
func (e *env) holdID(t *testing.T) string {
	t.Helper()
	var id string
	if err := e.db.Read.QueryRowContext(t.Context(), `SELECT id FROM seat_holds`).Scan(&id); err != nil {
		t.Fatalf("read the held attempt: %v", err)
	}
	return id
}

// waitCompleted polls until the registration's pipeline completed.
func (e *env) waitCompleted(t *testing.T, id string) registration.Registration {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		r, err := e.store.Registration(t.Context(), id)
		if err != nil && !errors.Is(err, registration.ErrNotFound) {
			t.Fatal(err)
		}
		if err == nil && r.Status == registration.StatusCompleted {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration %s is %q after %s (err %v); want completed", id, r.Status, waitFor, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func request(n int) registration.Request {
	return registration.Request{
		Ticket: "standard",
		Attendee: registration.Attendee{FirstName: "Ada", LastName: fmt.Sprintf("Lovelace %d", n),
			Email: fmt.Sprintf("ada.%d@example.org", n)},
		Billing: &registration.Billing{
			Card: registration.CardInput{Number: payment.TestCardVisa, Expiry: time.Now().AddDate(2, 0, 0).Format("2006-01"),
				CVC: "123", Name: "Ada Lovelace"},
			Address: registration.Address{Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"},
		},
	}
}

// abandon holds a seat for an attempt whose process died before it got an
// answer, as Register records it: with its key and draft.
func (e *env) abandon(t *testing.T, n int, key string, created time.Time) (registration.Attempt, registration.Request) {
	t.Helper()
	id, err := registration.NewID()
	if err != nil {
		t.Fatal(err)
	}
	req := request(n)
	req.Normalize()
	draft := registration.Registration{ID: id, EventID: "gopherfest-2027", TicketID: "standard", Status: registration.StatusPaid,
		Amount: 14900, Currency: "EUR", FirstName: req.Attendee.FirstName, LastName: req.Attendee.LastName,
		Email: req.Attendee.Email, CreatedAt: created, UpdatedAt: created,
		Steps: []registration.Step{{Name: registration.StepSaveOrder, Status: registration.StepPending},
			{Name: registration.StepSendConfirmation, Status: registration.StepPending},
			{Name: registration.StepAddToMailingList, Status: registration.StepSkipped}}}
	a := registration.Attempt{ID: id, EventID: "gopherfest-2027", TicketID: "standard", IdempotencyKey: key,
		RequestHash: req.Hash(), CreatedAt: created, ResolveAfter: created.Add(90 * time.Second), Draft: draft}
	if _, err := e.store.StartAttempt(t.Context(), a, registration.Outcome{Code: registration.CodeSoldOut, Message: "Sold out."}); err != nil {
		t.Fatalf("StartAttempt: %v", err)
	}
	return a, req
}

func apiCode(err error) string {
	var e *registration.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return fmt.Sprintf("not an *Error: %v", err)
}

func TestResolveAbandonedOnSQLite(t *testing.T) {
	t.Parallel()

	t.Run("charged: the registration completes", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		a, req := e.abandon(t, 1, "api:k1", time.Now().Add(-10*time.Minute))
		// The process died after the provider took the money.
		charge, err := e.proc.TestProcessor.Charge(ctx, payment.ChargeRequest{RequestID: a.ID, Amount: 14900, Currency: "EUR",
			Card: payment.Card{Number: payment.TestCardVisa, ExpiryYear: 2030, ExpiryMonth: 12, SecurityCode: "123"}})
		if err != nil {
			t.Fatal(err)
		}
		n, err := e.svc.ResolveAbandoned(ctx, time.Now())
		if err != nil || n != 1 {
			t.Fatalf("ResolveAbandoned = %d, %v; want 1, nil", n, err)
		}
		r := e.waitCompleted(t, a.ID)
		if r.Payment != charge || r.Amount != 14900 || r.Email != "ada.1@example.org" {
			t.Errorf("registration = %+v; want the draft paid with %+v", r, charge)
		}
		if state, regID := e.keyState(t, "api:k1"); state != "done" || regID != a.ID {
			t.Errorf("key = %s, %s; want done with registration %s", state, regID, a.ID)
		}
		if got := e.incidents(t, a.ID); fmt.Sprint(got) != "[resolved_charged]" {
			t.Errorf("incidents %v; want [resolved_charged]", got)
		}
		if got := e.taken(t); got != 1 {
			t.Errorf("taken = %d; want 1 (the registration keeps its seat)", got)
		}
		if got := e.count(t, `SELECT count(*) FROM seat_holds`); got != 0 {
			t.Errorf("%d seat holds; want 0", got)
		}
		// The client retries the request it never got an answer to.
		id, err := e.svc.Register(ctx, req, "api:k1")
		if err != nil || id != a.ID {
			t.Errorf("retry = %q, %v; want the registration %s replayed", id, err, a.ID)
		}
		if charged, refunded := e.proc.Charges(); charged != 1 || refunded != 0 {
			t.Errorf("charges %d, refunds %d; want 1, 0", charged, refunded)
		}
		if charges, _ := e.proc.calls(); charges != 0 {
			t.Errorf("the service charged %d times; want 0", charges)
		}
	})

	t.Run("not charged: the seat is released", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		a, _ := e.abandon(t, 1, "api:k1", time.Now().Add(-10*time.Minute))
		n, err := e.svc.ResolveAbandoned(ctx, time.Now())
		if err != nil || n != 1 {
			t.Fatalf("ResolveAbandoned = %d, %v; want 1, nil", n, err)
		}
		if got := e.taken(t); got != 0 {
			t.Errorf("taken = %d; want 0", got)
		}
		if got := e.count(t, `SELECT count(*) FROM seat_holds`); got != 0 {
			t.Errorf("%d seat holds; want 0", got)
		}
		if state, _ := e.keyState(t, "api:k1"); state != "" {
			t.Errorf("key is %s; want it forgotten", state)
		}
		if _, err := e.store.Registration(ctx, a.ID); !errors.Is(err, registration.ErrNotFound) {
			t.Errorf("Registration: err = %v; want ErrNotFound", err)
		}
		if got := e.incidents(t, a.ID); fmt.Sprint(got) != "[resolved_not_charged]" {
			t.Errorf("incidents %v; want [resolved_not_charged]", got)
		}
		if charged, _ := e.proc.Charges(); charged != 0 {
			t.Errorf("%d charges; want 0", charged)
		}
	})

	t.Run("unknown: postponed, still holding", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		e.proc.set(func(p *flakyProcessor) { p.resolveErr = errors.New("paypal: 503 service unavailable") })
		a, _ := e.abandon(t, 1, "api:k1", time.Now().Add(-10*time.Minute))
		now := time.Now()
		n, err := e.svc.ResolveAbandoned(ctx, now)
		if err != nil || n != 0 {
			t.Fatalf("ResolveAbandoned = %d, %v; want 0, nil", n, err)
		}
		var after string
		if err := e.db.Read.QueryRowContext(ctx, `SELECT expires_at FROM seat_holds WHERE id = ?`, a.ID).Scan(&after); err != nil {
			t.Fatalf("the hold is gone: %v", err)
		}
		at, err := time.Parse("2006-01-02T15:04:05.000000Z", after)
		if err != nil {
			t.Fatal(err)
		}
		if d := at.Sub(now); d < 55*time.Second || d > 65*time.Second {
			t.Errorf("postponed by %s; want about a minute", d)
		}
		if got := e.taken(t); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
		if state, _ := e.keyState(t, "api:k1"); state != "in_progress" {
			t.Errorf("key is %q; want in_progress", state)
		}
		if got := e.incidents(t, a.ID); len(got) != 0 {
			t.Errorf("incidents %v; want none yet", got)
		}
		// Not due again before the postponement ends.
		if n, err := e.svc.ResolveAbandoned(ctx, now.Add(30*time.Second)); err != nil || n != 0 {
			t.Errorf("ResolveAbandoned before the postponement ends = %d, %v; want 0, nil", n, err)
		}
		if _, resolves := e.proc.calls(); resolves != 1 {
			t.Errorf("Resolve called %d times; want 1", resolves)
		}
	})

	t.Run("unknown for too long: released and handed to an operator", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		e.proc.set(func(p *flakyProcessor) { p.resolveErr = errors.New("paypal: 503 service unavailable") })
		a, _ := e.abandon(t, 1, "api:k1", time.Now().Add(-5*time.Hour-time.Minute))
		n, err := e.svc.ResolveAbandoned(ctx, time.Now())
		if err != nil || n != 1 {
			t.Fatalf("ResolveAbandoned = %d, %v; want 1, nil", n, err)
		}
		if got := e.taken(t); got != 0 {
			t.Errorf("taken = %d; want 0", got)
		}
		if got := e.count(t, `SELECT count(*) FROM seat_holds`); got != 0 {
			t.Errorf("%d seat holds; want 0", got)
		}
		if state, _ := e.keyState(t, "api:k1"); state != "" {
			t.Errorf("key is %s; want it forgotten", state)
		}
		if got := e.incidents(t, a.ID); fmt.Sprint(got) != "[unresolved]" {
			t.Errorf("incidents %v; want [unresolved]", got)
		}
		if got := e.count(t, `SELECT count(*) FROM payment_incidents WHERE attempt_id = ? AND detail LIKE '%503%'`, a.ID); got != 1 {
			t.Error("the unresolved incident does not say why")
		}
	})
}

// TestRegisterChargeOutcomeOnSQLite: Register when the charge fails with a
// provider error and the provider is asked once whether it went through.
func TestRegisterChargeOutcomeOnSQLite(t *testing.T) {
	t.Parallel()

	t.Run("charged after all: 202", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		e.proc.set(func(p *flakyProcessor) { p.chargeLost = true })
		id, err := e.svc.Register(ctx, request(1), "api:k1")
		if err != nil {
			t.Fatalf("Register: %v", err)
		}
		r := e.waitCompleted(t, id)
		if r.Payment.Provider != "test" || r.Payment.Reference == "" || r.Payment.Last4 != "1111" {
			t.Errorf("payment = %+v; want the resolved test charge", r.Payment)
		}
		if charged, refunded := e.proc.Charges(); charged != 1 || refunded != 0 {
			t.Errorf("charges %d, refunds %d; want 1, 0", charged, refunded)
		}
		if state, regID := e.keyState(t, "api:k1"); state != "done" || regID != id {
			t.Errorf("key = %s, %s; want done with %s", state, regID, id)
		}
		if got := e.taken(t); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
	})

	t.Run("not charged: 502, nothing left", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		e.proc.set(func(p *flakyProcessor) { p.chargeFails = true })
		_, err := e.svc.Register(ctx, request(1), "api:k1")
		if code := apiCode(err); code != registration.CodePaymentUnavailable {
			t.Fatalf("Register: %v; want %s", err, registration.CodePaymentUnavailable)
		}
		if got := e.taken(t); got != 0 {
			t.Errorf("taken = %d; want 0", got)
		}
		for _, table := range []string{"seat_holds", "idempotency_keys", "registrations", "river_job WHERE kind = 'register'"} {
			if got := e.count(t, `SELECT count(*) FROM `+table); got != 0 {
				t.Errorf("%s: %d rows; want 0", table, got)
			}
		}
		if charged, _ := e.proc.Charges(); charged != 0 {
			t.Errorf("%d charges; want 0", charged)
		}
		// The key was forgotten: a retry is a fresh attempt.
		e.proc.set(func(p *flakyProcessor) { p.chargeFails = false })
		id, err := e.svc.Register(ctx, request(1), "api:k1")
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		e.waitCompleted(t, id)
	})

	t.Run("unknown: 502, left to the resolver", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		e.proc.set(func(p *flakyProcessor) {
			p.chargeLost = true
			p.resolveErr = errors.New("paypal: 503 service unavailable")
		})
		_, err := e.svc.Register(ctx, request(1), "api:k1")
		if code := apiCode(err); code != registration.CodePaymentUnavailable {
			t.Fatalf("Register: %v; want %s", err, registration.CodePaymentUnavailable)
		}
		var apiErr *registration.Error
		if errors.As(err, &apiErr) && !strings.Contains(apiErr.Message, "not be charged twice") {
			t.Errorf("message %q does not say the client will not be charged twice", apiErr.Message)
		}
		attemptID := e.holdID(t)
		if got := e.taken(t); got != 1 {
			t.Errorf("taken = %d; want the seat still held", got)
		}
		if state, _ := e.keyState(t, "api:k1"); state != "in_progress" {
			t.Errorf("key is %q; want in_progress", state)
		}
		// The client retries at once: the attempt is still in doubt.
		_, err = e.svc.Register(ctx, request(1), "api:k1")
		if code := apiCode(err); code != registration.CodeIdempotencyInProgress {
			t.Errorf("retry: %v; want %s", err, registration.CodeIdempotencyInProgress)
		}
		if charges, _ := e.proc.calls(); charges != 1 {
			t.Errorf("Charge called %d times; want 1", charges)
		}
		// Not due yet.
		if n, err := e.svc.ResolveAbandoned(ctx, time.Now()); err != nil || n != 0 {
			t.Errorf("ResolveAbandoned right away = %d, %v; want 0, nil", n, err)
		}
		// The provider answers again; the resolver's turn comes.
		e.proc.set(func(p *flakyProcessor) { p.resolveErr = nil })
		n, err := e.svc.ResolveAbandoned(ctx, time.Now().Add(2*time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("ResolveAbandoned = %d, %v; want 1, nil", n, err)
		}
		e.waitCompleted(t, attemptID)
		id, err := e.svc.Register(ctx, request(1), "api:k1")
		if err != nil || id != attemptID {
			t.Errorf("retry after resolution = %q, %v; want the registration %s", id, err, attemptID)
		}
		if charged, refunded := e.proc.Charges(); charged != 1 || refunded != 0 {
			t.Errorf("charges %d, refunds %d; want 1, 0", charged, refunded)
		}
		if charges, _ := e.proc.calls(); charges != 1 {
			t.Errorf("Charge called %d times; want 1", charges)
		}
		if got := e.incidents(t, attemptID); fmt.Sprint(got) != "[resolved_charged]" {
			t.Errorf("incidents %v; want [resolved_charged]", got)
		}
		if got := e.taken(t); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
	})
}

// TestRefundFailureKeepsSeatAndKey is invariant 7 when everything fails: the
// registration cannot be stored and the refund fails too. The attempt keeps
// its seat and key, operators see it, and the resolver later completes it.
func TestRefundFailureKeepsSeatAndKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	e.flaky.completeFails = 1
	e.proc.set(func(p *flakyProcessor) { p.refundErr = errors.New("paypal: 500 internal error") })
	_, err := e.svc.Register(ctx, request(1), "api:k1")
	if code := apiCode(err); code != registration.CodeInternal {
		t.Fatalf("Register: %v; want %s", err, registration.CodeInternal)
	}
	attemptID := e.holdID(t)
	if got := e.taken(t); got != 1 {
		t.Errorf("taken = %d; want the seat kept", got)
	}
	if state, _ := e.keyState(t, "api:k1"); state != "in_progress" {
		t.Errorf("key is %q; want in_progress", state)
	}
	if got := e.incidents(t, attemptID); fmt.Sprint(got) != "[refund_failed]" {
		t.Errorf("incidents %v; want [refund_failed]", got)
	}
	if got := e.count(t, `SELECT count(*) FROM payment_incidents WHERE attempt_id = ? AND reference <> '' AND detail LIKE '%disk I/O%'`, attemptID); got != 1 {
		t.Error("the refund_failed incident lacks the charge reference or the cause")
	}
	// A retry cannot charge twice.
	if _, err := e.svc.Register(ctx, request(1), "api:k1"); apiCode(err) != registration.CodeIdempotencyInProgress {
		t.Errorf("retry: %v; want %s", err, registration.CodeIdempotencyInProgress)
	}

	n, err := e.svc.ResolveAbandoned(ctx, time.Now().Add(2*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("ResolveAbandoned = %d, %v; want 1, nil", n, err)
	}
	e.waitCompleted(t, attemptID)
	if id, err := e.svc.Register(ctx, request(1), "api:k1"); err != nil || id != attemptID {
		t.Errorf("retry after resolution = %q, %v; want %s", id, err, attemptID)
	}
	if charged, refunded := e.proc.Charges(); charged != 1 || refunded != 0 {
		t.Errorf("charges %d, refunds %d; want 1, 0", charged, refunded)
	}
	if got := e.incidents(t, attemptID); fmt.Sprint(got) != "[refund_failed resolved_charged]" {
		t.Errorf("incidents %v; want [refund_failed resolved_charged]", got)
	}
}

// A crash during a launch leaves many attempts holding seats: one run of the
// resolver settles all of them, several at a time, and a second run started
// meanwhile does nothing.
func TestResolveAbandonedSettlesEveryAttempt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	const n = 250 // more than one batch
	created := time.Now().Add(-10 * time.Minute)
	var charged []string
	for i := range n {
		a, _ := e.abandon(t, i, fmt.Sprintf("api:k%d", i), created)
		if i%2 == 0 {
			if _, err := e.proc.TestProcessor.Charge(ctx, payment.ChargeRequest{RequestID: a.ID, Amount: 14900, Currency: "EUR",
				Card: payment.Card{Number: payment.TestCardVisa, ExpiryYear: 2030, ExpiryMonth: 12, SecurityCode: "123"}}); err != nil {
				t.Fatal(err)
			}
			charged = append(charged, a.ID)
		}
	}
	gate := make(chan struct{})
	e.proc.set(func(p *flakyProcessor) { p.resolveGate = gate })
	type result struct {
		n   int
		err error
	}
	first := make(chan result, 1)
	go func() {
		n, err := e.svc.ResolveAbandoned(ctx, time.Now())
		first <- result{n, err}
	}()
	deadline := time.Now().Add(waitFor)
	for {
		e.proc.mu.Lock()
		inFlight := e.proc.resolving
		e.proc.mu.Unlock()
		// Held at the gate, the lookups pile up: several at once, if the
		// resolver runs them concurrently.
		if inFlight >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d provider lookups at once after %v; want several", inFlight, waitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, err := e.svc.ResolveAbandoned(ctx, time.Now()); got != 0 || err != nil {
		t.Errorf("a second run during the first = %d, %v; want 0, nil", got, err)
	}
	close(gate)
	r := <-first
	if r.err != nil || r.n != n {
		t.Fatalf("ResolveAbandoned = %d, %v; want %d, nil: every attempt in one run", r.n, r.err, n)
	}
	e.proc.mu.Lock()
	resolves, most := e.proc.resolves, e.proc.maxResolving
	e.proc.mu.Unlock()
	if resolves != n {
		t.Errorf("%d provider lookups; want %d, one per attempt", resolves, n)
	}
	if most < 2 || most > 16 {
		t.Errorf("%d lookups at once; want several, at most 16", most)
	}
	if got := e.count(t, `SELECT count(*) FROM seat_holds`); got != 0 {
		t.Errorf("%d seat holds left; want 0", got)
	}
	if got := e.count(t, `SELECT count(*) FROM registrations`); got != len(charged) {
		t.Errorf("%d registrations; want %d, one per charged attempt", got, len(charged))
	}
	if got := e.taken(t); got != len(charged) {
		t.Errorf("taken = %d; want %d", got, len(charged))
	}
	if got := e.count(t, `SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress'`); got != 0 {
		t.Errorf("%d keys still in progress; want 0", got)
	}
	for _, id := range charged[:3] {
		e.waitCompleted(t, id)
	}
}

// TestSlowPaymentsDoNotSellOut is a slow provider at a launch: of three
// seats one is paid and two are held by attempts whose charges hang and
// are then declined. A buyer meanwhile is told sold out, but that it may
// change, and nothing is kept under their key; once the declines give the
// seats back, the same request with the same key succeeds (invariant 10).
func TestSlowPaymentsDoNotSellOut(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ev, err := event.Parse([]byte(`{
	  "id": "slowconf-2036", "name": "SlowConf 2036", "starts_at": "2036-06-10T09:00:00+02:00",
	  "venue": "Hall 1", "currency": "EUR",
	  "email_from": {"address": "tickets@slowconf.example", "name": "SlowConf"},
	  "tickets": [{"id": "standard", "name": "Standard", "price": "149.00", "capacity": 3}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvFor(t, ev)
	gate := make(chan struct{})
	e.proc.set(func(p *flakyProcessor) { p.slowDeclines = gate })
	if _, err := e.svc.Register(ctx, request(1), "api:first"); err != nil {
		t.Fatalf("the first buyer: %v", err)
	}
	declined := make(chan error, 2)
	for n := 2; n <= 3; n++ {
		req := request(n)
		req.Billing.Card.Number = payment.TestCardDeclined
		go func() {
			_, err := e.svc.Register(context.WithoutCancel(ctx), req, fmt.Sprintf("api:slow%d", n))
			declined <- err
		}()
	}
	deadline := time.Now().Add(waitFor)
	for {
		e.proc.mu.Lock()
		hanging := e.proc.slowCharging
		e.proc.mu.Unlock()
		if hanging == 2 {
			break
		}
		if time.Now().After(deadline) {
			close(gate)
			t.Fatalf("%d slow charges started; want 2", hanging)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := e.taken(t); got != 3 {
		t.Fatalf("taken = %d with one paid and two held; want 3", got)
	}

	good := request(4)
	for try := range 2 {
		_, err = e.svc.Register(ctx, good, "api:good")
		var apiErr *registration.Error
		if !errors.As(err, &apiErr) || apiErr.Code != registration.CodeSoldOut || !apiErr.Retryable || apiErr.RetryAfter != 5*time.Second {
			close(gate)
			t.Fatalf("try %d while seats are held: %v (%+v); want a retryable sold_out after 5 s", try, err, apiErr)
		}
		if state, _ := e.keyState(t, "api:good"); state != "" {
			t.Errorf("try %d: key is %q; want nothing stored", try, state)
		}
	}
	if charges, _ := e.proc.calls(); charges != 3 {
		t.Errorf("%d charges; want 3 (the buyer told sold out was not charged)", charges)
	}

	close(gate)
	for range 2 {
		if err := <-declined; apiCode(err) != registration.CodePaymentDeclined {
			t.Errorf("slow attempt: %v; want payment_declined", err)
		}
	}
	id, err := e.svc.Register(ctx, good, "api:good")
	if err != nil {
		t.Fatalf("the same request once the seats came back: %v", err)
	}
	if state, regID := e.keyState(t, "api:good"); state != "done" || regID != id {
		t.Errorf("key = %s, %s; want done with %s", state, regID, id)
	}
	e.waitCompleted(t, id)

	// One seat is left: the next buyer takes it; then every seat is paid
	// and a sold out is final: the same answer each time, given from the
	// committed stock (this ticket has refused attempts before) with
	// nothing stored under the key.
	if _, err := e.svc.Register(ctx, request(5), "api:fifth"); err != nil {
		t.Fatalf("the last seat: %v", err)
	}
	for range 2 {
		_, err = e.svc.Register(ctx, request(6), "api:late")
		var apiErr *registration.Error
		if !errors.As(err, &apiErr) || apiErr.Code != registration.CodeSoldOut || apiErr.Retryable {
			t.Fatalf("every seat paid: %v; want a final sold_out", err)
		}
		if state, _ := e.keyState(t, "api:late"); state != "" {
			t.Errorf("key is %q; want nothing written for a refusal from the stock", state)
		}
	}
	if got := e.taken(t); got != 3 {
		t.Errorf("taken = %d; want 3", got)
	}
}

// TestSettleAllOnSQLite: at start, a single process settles what a dead
// one left, within a bound; what the provider cannot tell in time stays,
// postponed, however old it is.
func TestSettleAllOnSQLite(t *testing.T) {
	t.Parallel()

	t.Run("settles every attempt", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		created := time.Now().Add(-10 * time.Minute)
		charged, _ := e.abandon(t, 1, "api:k1", created)
		if _, err := e.proc.TestProcessor.Charge(ctx, payment.ChargeRequest{RequestID: charged.ID, Amount: 14900, Currency: "EUR",
			Card: payment.Card{Number: payment.TestCardVisa, ExpiryYear: 2030, ExpiryMonth: 12, SecurityCode: "123"}}); err != nil {
			t.Fatal(err)
		}
		notCharged, _ := e.abandon(t, 2, "api:k2", created)
		n, complete, err := e.svc.SettleAll(ctx, 10*time.Second)
		if err != nil || n != 2 || !complete {
			t.Fatalf("SettleAll = %d, %v, %v; want 2, true, nil", n, complete, err)
		}
		if got := e.count(t, `SELECT count(*) FROM seat_holds`); got != 0 {
			t.Errorf("%d seat holds; want 0", got)
		}
		if got := e.taken(t); got != 1 {
			t.Errorf("taken = %d; want 1, the charged attempt's registration", got)
		}
		e.waitCompleted(t, charged.ID)
		if state, _ := e.keyState(t, "api:k2"); state != "" {
			t.Errorf("key of the attempt not charged is %q; want it forgotten", state)
		}
		if got := e.incidents(t, notCharged.ID); fmt.Sprint(got) != "[resolved_not_charged]" {
			t.Errorf("incidents %v; want [resolved_not_charged]", got)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := newEnv(t)
		gate := make(chan struct{})
		defer close(gate)
		e.proc.set(func(p *flakyProcessor) { p.resolveGate = gate })
		// More than are asked about at once, all older than the resolver's
		// give-up age: a lookup cut short by the bound must not release one.
		const n = 20
		created := time.Now().Add(-6 * time.Hour)
		for i := range n {
			e.abandon(t, i, fmt.Sprintf("api:k%d", i), created)
		}
		began := time.Now()
		settled, complete, err := e.svc.SettleAll(ctx, 300*time.Millisecond)
		if err != nil || settled != 0 || complete {
			t.Fatalf("SettleAll = %d, %v, %v; want 0, false, nil", settled, complete, err)
		}
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("SettleAll took %s; want about its bound", d)
		}
		now := formatted(time.Now())
		asked := e.count(t, `SELECT count(*) FROM seat_holds WHERE expires_at > ?`, now)
		due := e.count(t, `SELECT count(*) FROM seat_holds WHERE expires_at < ?`, now)
		if _, resolves := e.proc.calls(); asked != resolves || asked == 0 || due == 0 || asked+due != n {
			t.Errorf("%d attempts postponed after %d lookups, %d still due; want every one asked postponed, the rest due, %d in all",
				asked, resolves, due, n)
		}
		if got := e.taken(t); got != n {
			t.Errorf("taken = %d; want %d: nothing released", got, n)
		}
		if got := e.count(t, `SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress'`); got != n {
			t.Errorf("%d keys in progress; want %d", got, n)
		}
		if got := e.count(t, `SELECT count(*) FROM payment_incidents`); got != 0 {
			t.Errorf("%d incidents; want none: the provider never answered", got)
		}
	})
}

// formatted is t as the SQLite store writes times.
func formatted(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }
