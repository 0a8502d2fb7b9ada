// Package storetest is the conformance suite every registrar storage engine
// passes: registrations, seats, idempotency keys, steps, orders, email
// deliveries and the mailing list, including under concurrency. Each engine's
// tests run it with a Harness that opens a fresh database of that engine.
// Only tests import this package.
package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/metrics"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/web"
)

// Store is everything registrar asks of a storage engine.
type Store interface {
	registration.Store
	pipeline.Store
	pipeline.MailingList
	pipeline.OptInList
	web.Newsletter
	pipeline.OfficeStore
	admin.Store
	metrics.StatsSource
	SyncTickets(ctx context.Context, ev *event.Event) error
	// StepStarted, StepFailed and EmailSending are StepsStartedTx (for one
	// step), StepFailedTx and EmailSendingTx in a write of their own.
	StepStarted(ctx context.Context, id string, step registration.StepName) error
	// FinishStepTx is FinishStepsTx for one step.
	FinishStepTx(ctx context.Context, tx *sql.Tx, id string, step registration.StepName) error
	StepFailed(ctx context.Context, id string, step registration.StepName, msg string, final bool) error
	EmailSending(ctx context.Context, id string) error
	// BeginTx starts a transaction of its own, outside group commit.
	BeginTx(ctx context.Context) (*sql.Tx, error)
}

// Env is one test's store, on an empty, migrated database of its own.
type Env struct {
	Store Store
	// DB is the database under Store, writable, for the suite's own
	// assertions and arrangements.
	DB *sql.DB
	// Bind rewrites a query written with ? placeholders for the engine.
	Bind func(query string) string
	// RiverTime is a time as the engine's River tables store it, for the
	// suite's own rows of river_job.
	RiverTime func(time.Time) any
}

// Harness opens an Env for one test; the store reads the time from now, or
// from time.Now when now is nil. It cleans up with t.Cleanup.
type Harness func(t *testing.T, now func() time.Time) Env

// Run runs the suite, each test in parallel on an Env of its own.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"SyncTickets", testSyncTickets},
		{"AnonymiseRegistration", testAnonymiseRegistration},
		{"StartAndFailAttempt", testStartAndFailAttempt},
		{"CompleteAttempt", testCompleteAttempt},
		{"AbandonedAttempts", testAbandonedAttempts},
		{"RecordIncident", testRecordIncident},
		{"Registration", testRegistration},
		{"ForeignKeys", testForeignKeys},
		{"NoOversell", testNoOversell},
		{"Launch", testLaunch},
		{"IdempotencyRace", testIdempotencyRace},
		{"FanIn", testFanIn},
		{"ConcurrentFanIn", testConcurrentFanIn},
		{"StepFailedTruncatesLongErrors", testStepFailedTruncatesLongErrors},
		{"SaveOrder", testSaveOrder},
		{"EmailDelivery", testEmailDelivery},
		{"Subscribe", testSubscribe},
		{"EmailLimit", testEmailLimit},
		{"EmailLimitRace", testEmailLimitRace},
		{"Availability", testAvailability},
		{"RecentRegistrations", testRecentRegistrations},
		{"OperatorStats", testOperatorStats},
	}
	tests = append(tests, officeTests...)
	tests = append(tests, newsletterTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, h)
		})
	}
}

const testEventID = "testconf"

func testEvent(capacity int) *event.Event {
	return &event.Event{
		ID:       testEventID,
		Name:     "Test Conference",
		Currency: "EUR",
		Tickets: []event.Ticket{
			{ID: "standard", Name: "Standard", Price: 14900, Capacity: capacity},
			{ID: "community", Name: "Community", Price: 0, Capacity: 50},
		},
	}
}

// newStore returns a store on a fresh database whose "standard" ticket has
// the given capacity.
func newStore(t *testing.T, h Harness, capacity int) (Store, Env) {
	t.Helper()
	e := h(t, nil)
	if err := e.Store.SyncTickets(t.Context(), testEvent(capacity)); err != nil {
		t.Fatalf("SyncTickets: %v", err)
	}
	return e.Store, e
}

func newAttempt(t *testing.T, key, hash string) registration.Attempt {
	t.Helper()
	id, err := registration.NewID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	return registration.Attempt{
		ID:             id,
		EventID:        testEventID,
		TicketID:       "standard",
		IdempotencyKey: key,
		RequestHash:    hash,
		CreatedAt:      now,
		ResolveAfter:   now.Add(10 * time.Minute),
	}
}

func newRegistration(a registration.Attempt, newsletter bool) registration.Registration {
	r := registration.Registration{
		ID:         a.ID,
		EventID:    a.EventID,
		TicketID:   a.TicketID,
		Status:     registration.StatusPaid,
		Amount:     14900,
		Currency:   "EUR",
		FirstName:  "Ada",
		LastName:   "Lovelace",
		Email:      "ada@example.org",
		Company:    "Analytical Engines",
		Newsletter: newsletter,
		Payment:    payment.Charge{Provider: "test", Reference: "test_ref_" + a.ID[:8], Brand: "visa", Last4: "1111"},
		CreatedAt:  a.CreatedAt.Truncate(time.Microsecond),
		UpdatedAt:  a.CreatedAt.Truncate(time.Microsecond),
	}
	for _, name := range registration.Steps {
		st := registration.StepPending
		if name == registration.StepAddToMailingList && !newsletter {
			st = registration.StepSkipped
		}
		r.Steps = append(r.Steps, registration.Step{Name: name, Status: st})
	}
	return r
}

// register stores a paid registration for a fresh attempt.
func register(t *testing.T, s Store, newsletter bool) registration.Registration {
	t.Helper()
	a := newAttempt(t, "", "h")
	if _, err := s.StartAttempt(t.Context(), a, registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	r := newRegistration(a, newsletter)
	if err := s.CompleteAttempt(t.Context(), a, r, noEnqueue); err != nil {
		t.Fatal(err)
	}
	return r
}

func noEnqueue(context.Context, *sql.Tx, string) error { return nil }

// inTx runs f in a transaction of the store and commits it.
func inTx(ctx context.Context, s Store, f func(tx *sql.Tx) error) error {
	tx, err := s.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (e Env) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := e.DB.ExecContext(t.Context(), e.Bind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func (e Env) queryInt(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.DB.QueryRowContext(t.Context(), e.Bind(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (e Env) taken(t *testing.T, ticket string) int {
	t.Helper()
	return e.queryInt(t, `SELECT taken FROM ticket_stock WHERE event_id = ? AND ticket_id = ?`, testEventID, ticket)
}

func (e Env) holdCount(t *testing.T) int {
	t.Helper()
	return e.queryInt(t, `SELECT count(*) FROM seat_holds`)
}

type keyRow struct {
	exists               bool
	state, attemptID     string
	regID, code, message string
	requestHash          string
}

func (e Env) readKey(t *testing.T, key string) keyRow {
	t.Helper()
	var k keyRow
	var regID, code, msg sql.NullString
	err := e.DB.QueryRowContext(t.Context(), e.Bind(`SELECT state, attempt_id, request_hash, registration_id, error_code, error_message
		FROM idempotency_keys WHERE key = ?`), key).Scan(&k.state, &k.attemptID, &k.requestHash, &regID, &code, &msg)
	if errors.Is(err, sql.ErrNoRows) {
		return k
	}
	if err != nil {
		t.Fatalf("read key %s: %v", key, err)
	}
	k.exists, k.regID, k.code, k.message = true, regID.String, code.String, msg.String
	return k
}

// storedTime scans a stored time, whichever way the engine keeps it: a
// time, or RFC 3339 text.
type storedTime struct{ time.Time }

func (st *storedTime) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		st.Time = v.UTC()
		return nil
	case string:
		return st.parse(v)
	case []byte:
		return st.parse(string(v))
	}
	return fmt.Errorf("stored time: unexpected %T", src)
}

func (st *storedTime) parse(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("stored time: %w", err)
	}
	st.Time = t.UTC()
	return nil
}

// stored is t as the engines keep it: to the microsecond.
func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
