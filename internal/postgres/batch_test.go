package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/groupcommit"
	"github.com/registrar/registrar/internal/registration"
)

// notWaiting is how long a call that must not wait for a lock may take.
const notWaiting = 3 * time.Second

// within runs f and fails the test if it has not returned after d: it
// waited for a lock it must not wait for. It returns f's error, or nil
// after a failure (f is left running).
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Errorf("%s waited for more than %s: it waits for a lock the other transaction holds", what, d)
		return nil
	}
}

func dueAttempt(t *testing.T, ev *event.Event, key string) registration.Attempt {
	t.Helper()
	id, err := registration.NewID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	return registration.Attempt{ID: id, EventID: ev.ID, TicketID: "standard", IdempotencyKey: key, RequestHash: "hash",
		CreatedAt: now.Add(-time.Hour), ResolveAfter: now.Add(-time.Minute)}
}

// TestOpenBatchBlocksNoOtherTransaction holds a batch open, its locks on
// idempotency keys, seat holds and the ticket's stock row taken, and runs
// everything that runs outside the batcher meanwhile: the resolver's reads
// and postponements, the pipeline's step bookkeeping, incidents. None waits
// for the batch, so none can be part of a circle with it. SyncTickets, the
// one writer of several stock rows outside the batcher, waits for the batch
// to commit and then succeeds.
func TestOpenBatchBlocksNoOtherTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openDB(t)
	s := NewStore(db)
	ev := &event.Event{ID: "testconf", Currency: "EUR", Tickets: []event.Ticket{{ID: "standard", Price: 14900, Capacity: 100}}}
	if err := s.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	r := newRegistration(t, s, ev, true)
	due, locked := dueAttempt(t, ev, "due"), dueAttempt(t, ev, "locked")
	for _, a := range []registration.Attempt{due, locked} {
		if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
			t.Fatal(err)
		}
	}

	// The batch: the resolver releasing one due attempt, a new attempt
	// taking a seat, and a new registration completed.
	fresh := dueAttempt(t, ev, "fresh")
	fresh.ResolveAfter = time.Now().Add(time.Hour)
	paid := dueAttempt(t, ev, "")
	if _, err := s.StartAttempt(ctx, paid, registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	held, release := make(chan struct{}), make(chan struct{})
	batchDone := make(chan error, 1)
	go func() {
		batchDone <- func() error {
			tx, err := s.BeginTx(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			fails := []*groupcommit.Item[*failItem]{{Ctx: ctx, Val: &failItem{a: locked, now: time.Now()}}}
			if err := runFails(ctx, tx, fails); err != nil || fails[0].Err != nil {
				return fmt.Errorf("runFails = %v, %v", err, fails[0].Err)
			}
			starts := []*groupcommit.Item[*startItem]{{Ctx: ctx, Val: &startItem{a: fresh}}}
			if err := runStarts(ctx, tx, starts); err != nil || starts[0].Err != nil || starts[0].Val.replay != nil || starts[0].Val.refused != nil {
				return fmt.Errorf("runStarts = %v, %v, %v, %v", err, starts[0].Err, starts[0].Val.replay, starts[0].Val.refused)
			}
			reg := r
			reg.ID = paid.ID
			completes := []*groupcommit.Item[*completeItem]{{Ctx: ctx, Val: &completeItem{a: paid, r: reg,
				enqueue: func(context.Context, *sql.Tx, string) error { return nil }}}}
			if err := runCompletes(ctx, tx, completes); err != nil || completes[0].Err != nil {
				return fmt.Errorf("runCompletes = %v, %v", err, completes[0].Err)
			}
			close(held)
			<-release
			return tx.Commit()
		}()
	}()
	<-held

	synced := make(chan error, 1)
	go func() { synced <- s.SyncTickets(context.WithoutCancel(ctx), ev) }()

	now := time.Now().UTC()
	err := within(t, notWaiting, "AbandonedAttempts", func() error {
		got, err := s.AbandonedAttempts(ctx, now.Add(time.Hour), 100)
		if err != nil {
			return err
		}
		var ids []string
		for _, a := range got {
			ids = append(ids, a.ID)
		}
		// Not the attempt the batch is releasing (locked), nor the one it is
		// creating (not committed).
		if !slices.Equal(ids, []string{due.ID}) {
			return fmt.Errorf("AbandonedAttempts = %v; want only %s", ids, due.ID)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	steps := []struct {
		name string
		f    func() error
	}{
		{"PostponeAttempt", func() error { return s.PostponeAttempt(ctx, due.ID, now.Add(time.Minute)) }},
		{"StepStarted", func() error { return s.StepStarted(ctx, r.ID, registration.StepSaveOrder) }},
		{"StepFailed", func() error {
			return s.StepFailed(ctx, r.ID, registration.StepAddToMailingList, "list down", false)
		}},
		{"EmailSending", func() error { return s.EmailSending(ctx, r.ID) }},
		{"FinishStepTx", func() error {
			tx, err := s.BeginTx(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if err := s.SaveOrderTx(ctx, tx, r); err != nil {
				return err
			}
			if err := s.FinishStepTx(ctx, tx, r.ID, registration.StepSaveOrder); err != nil {
				return err
			}
			return tx.Commit()
		}},
		{"RecordIncident", func() error {
			return s.RecordIncident(ctx, registration.Incident{AttemptID: due.ID, Kind: registration.IncidentUnresolved,
				Provider: "test", CreatedAt: now})
		}},
		{"Registration", func() error { _, err := s.Registration(ctx, r.ID); return err }},
	}
	for _, st := range steps {
		if err := within(t, notWaiting, st.name, st.f); err != nil {
			t.Errorf("%s: %v", st.name, err)
		}
	}
	select {
	case err := <-synced:
		t.Errorf("SyncTickets returned (%v) while a batch held stock rows; want it to wait for the batch", err)
	default:
	}

	close(release)
	if err := <-batchDone; err != nil {
		t.Fatalf("batch: %v", err)
	}
	if err := within(t, notWaiting, "SyncTickets after the batch", func() error { return <-synced }); err != nil {
		t.Errorf("SyncTickets: %v", err)
	}
	// The batch's writes committed: the locked attempt released, the fresh
	// one holding, the paid one registered.
	if got := queryInt(t, db.SQL, `SELECT taken FROM ticket_stock WHERE ticket_id = 'standard'`); got != 4 {
		t.Errorf("taken = %d; want 4 (r, due, fresh, paid)", got)
	}
	if got := queryInt(t, db.SQL, `SELECT count(*) FROM seat_holds WHERE id IN ($1, $2)`, due.ID, fresh.ID); got != 2 {
		t.Errorf("%d of the due and fresh holds left; want 2", got)
	}
	if _, err := s.Registration(ctx, paid.ID); err != nil {
		t.Errorf("the registration completed in the batch: %v", err)
	}
}

// TestBatchDoesNotWaitForPipelineTransactions holds a pipeline transaction
// open with the locks a River worker takes (a registration's row, its steps,
// its order) and runs the hot path's writes meanwhile, including a second
// completion of that registration's attempt (the resolver after a slow
// Register): none waits.
func TestBatchDoesNotWaitForPipelineTransactions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openDB(t)
	s := NewStore(db)
	ev := &event.Event{ID: "testconf", Currency: "EUR", Tickets: []event.Ticket{{ID: "standard", Price: 14900, Capacity: 100}}}
	if err := s.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	r := newRegistration(t, s, ev, true)
	due := dueAttempt(t, ev, "due")
	if _, err := s.StartAttempt(ctx, due, registration.Outcome{}); err != nil {
		t.Fatal(err)
	}

	tx, err := s.BeginTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := s.StartPipelineTx(ctx, tx, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveOrderTx(ctx, tx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishStepTx(ctx, tx, r.ID, registration.StepSaveOrder); err != nil {
		t.Fatal(err)
	}

	noEnqueue := func(context.Context, *sql.Tx, string) error { return nil }
	again := registration.Attempt{ID: r.ID, EventID: r.EventID, TicketID: r.TicketID, CreatedAt: r.CreatedAt}
	fresh := dueAttempt(t, ev, "fresh")
	calls := []struct {
		name string
		f    func() error
		want error
	}{
		{"CompleteAttempt of a registered attempt", func() error { return s.CompleteAttempt(ctx, again, r, noEnqueue) },
			registration.ErrAlreadyRegistered},
		{"StartAttempt", func() error { _, err := s.StartAttempt(ctx, fresh, registration.Outcome{}); return err }, nil},
		{"CompleteAttempt", func() error {
			reg := r
			reg.ID = fresh.ID
			return s.CompleteAttempt(ctx, fresh, reg, noEnqueue)
		}, nil},
		{"FailAttempt", func() error { return s.FailAttempt(ctx, due, nil) }, nil},
	}
	for _, c := range calls {
		if err := within(t, notWaiting, c.name, c.f); !errors.Is(err, c.want) {
			t.Errorf("%s: %v; want %v", c.name, err, c.want)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, db.SQL, `SELECT taken FROM ticket_stock WHERE ticket_id = 'standard'`); got != 2 {
		t.Errorf("taken = %d; want 2 (two registrations)", got)
	}
}

// TestBatchesOfSeveralProcessesDoNotDeadlock runs three stores (three
// processes, each with its own batcher) on one database: attempts on two
// tickets in random order, idempotency keys shared between the processes,
// and SyncTickets of the two tickets in both orders (processes starting).
// One batch's write locks a ticket or a key that a later write of another
// process's batch needs, and the other way round; only the order in which
// every batch takes its locks keeps them from waiting for each other in a
// circle (PostgreSQL would abort one with "deadlock detected").
func TestBatchesOfSeveralProcessesDoNotDeadlock(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	url := newSchema(t)
	first := open(t, url)
	if err := first.Migrate(ctx, discardLog()); err != nil {
		t.Fatal(err)
	}
	stores := []*Store{NewStore(first), NewStore(open(t, url)), NewStore(open(t, url))}
	tickets := []event.Ticket{{ID: "a", Price: 100, Capacity: 100000}, {ID: "b", Price: 100, Capacity: 100000}}
	events := []*event.Event{
		{ID: "testconf", Currency: "EUR", Tickets: tickets},
		{ID: "testconf", Currency: "EUR", Tickets: []event.Ticket{tickets[1], tickets[0]}},
	}
	if err := stores[0].SyncTickets(ctx, events[0]); err != nil {
		t.Fatal(err)
	}

	const workers, rounds, keys = 60, 25, 40
	errs := make(chan error, workers*rounds+100)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := stores[1+i].SyncTickets(ctx, events[i]); err != nil {
					errs <- fmt.Errorf("SyncTickets: %w", err)
					return
				}
			}
		})
	}
	var attempts sync.WaitGroup
	for range workers {
		attempts.Go(func() {
			for range rounds {
				s := stores[rand.IntN(len(stores))]
				id, err := registration.NewID()
				if err != nil {
					errs <- err
					return
				}
				now := time.Now().UTC()
				a := registration.Attempt{ID: id, EventID: "testconf", TicketID: tickets[rand.IntN(2)].ID,
					RequestHash: "hash", CreatedAt: now, ResolveAfter: now.Add(time.Hour)}
				if rand.IntN(4) > 0 {
					a.IdempotencyKey = fmt.Sprintf("key-%d", rand.IntN(keys))
				}
				replay, err := s.StartAttempt(ctx, a, registration.Outcome{Code: registration.CodeSoldOut})
				switch {
				case errors.Is(err, registration.ErrKeyInProgress), err == nil && replay != nil:
					continue
				case err != nil:
					errs <- fmt.Errorf("StartAttempt: %w", err)
					continue
				}
				// Another process may finish the attempt (the resolver).
				s = stores[rand.IntN(len(stores))]
				if rand.IntN(2) == 0 {
					err = s.FailAttempt(ctx, a, nil)
				} else {
					reg := registration.Registration{ID: a.ID, EventID: a.EventID, TicketID: a.TicketID,
						Status: registration.StatusPaid, Amount: 100, Currency: "EUR", FirstName: "A", LastName: "B",
						Email: "a@example.org", CreatedAt: now, UpdatedAt: now,
						Steps: []registration.Step{{Name: registration.StepSaveOrder, Status: registration.StepPending}}}
					err = s.CompleteAttempt(ctx, a, reg, func(context.Context, *sql.Tx, string) error { return nil })
				}
				if err != nil {
					errs <- fmt.Errorf("finish attempt: %w", err)
				}
			}
		})
	}
	attempts.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... and %d more errors", n-10)
	}
	q := first.SQL
	taken := queryInt(t, q, `SELECT sum(taken) FROM ticket_stock`)
	regs := queryInt(t, q, `SELECT count(*) FROM registrations`)
	if holds := queryInt(t, q, `SELECT count(*) FROM seat_holds`); taken != regs || holds != 0 {
		t.Errorf("taken = %d with %d registrations and %d holds left; want taken = registrations and no hold", taken, regs, holds)
	}
	if got := queryInt(t, q, `SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress'`); got != 0 {
		t.Errorf("%d keys left in progress; want 0", got)
	}
	batches := 0
	for _, s := range stores {
		batches += s.Batches()
	}
	t.Logf("%d registrations; %d batches in three processes", regs, batches)
}
