package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// batcher is a store that group-commits its writes and counts its
// transactions; the tests report how well writes were grouped.
type batcher interface{ Batches() int }

// testLaunch is a launch: 500 customers at once for 50 seats, each
// starting an attempt, then paying (CompleteAttempt) or being declined
// (FailAttempt) at random. A customer told "sold out" while seats are still
// held by attempts that may fail tries again with a new attempt, as a
// retrying client would; one declined gives up. Exactly 50 registrations
// are stored, every seat taken is a registration's, and no hold or key in
// progress is left (invariants 5 and 6).
func testLaunch(t *testing.T, h Harness) {
	const capacity, customers = 50, 500
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, db := newStore(t, h, capacity)
	soldOut := registration.Outcome{Code: registration.CodeSoldOut, Message: "sold out"}
	declined := registration.Outcome{Code: registration.CodePaymentDeclined, Message: "declined"}

	var registered, keyed, refused, gaveUp, writes atomic.Int64
	errs := make(chan error, customers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	began := time.Now()
	for i := range customers {
		wg.Go(func() {
			<-start
			for try := 0; ; try++ {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("customer %d: %w", i, ctx.Err())
					return
				}
				a, err := attempt(i, try)
				if err != nil {
					errs <- err
					return
				}
				writes.Add(1)
				replay, err := s.StartAttempt(ctx, a, soldOut)
				switch {
				case errors.Is(err, registration.ErrSoldOut):
					if registered.Load() >= capacity {
						refused.Add(1)
						return
					}
					// Seats are held by attempts still paying: some may come back.
					time.Sleep(time.Duration(1+rand.IntN(3)) * time.Millisecond)
					continue
				case err != nil || replay != nil:
					errs <- fmt.Errorf("customer %d: StartAttempt = %+v, %v", i, replay, err)
					return
				}
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // the charge
				writes.Add(1)
				if rand.IntN(2) == 0 {
					var o *registration.Outcome
					if rand.IntN(2) == 0 {
						o = &declined
					}
					if err := s.FailAttempt(ctx, a, o); err != nil {
						errs <- fmt.Errorf("customer %d: FailAttempt: %w", i, err)
					}
					gaveUp.Add(1)
					return
				}
				if err := s.CompleteAttempt(ctx, a, newRegistration(a, false), noEnqueue); err != nil {
					errs <- fmt.Errorf("customer %d: CompleteAttempt: %w", i, err)
					return
				}
				registered.Add(1)
				if a.IdempotencyKey != "" {
					keyed.Add(1)
				}
				return
			}
		})
	}
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := registered.Load(); got != capacity {
		t.Errorf("%d customers registered; want %d", got, capacity)
	}
	if got := registered.Load() + refused.Load() + gaveUp.Load(); got != customers {
		t.Errorf("%d customers registered, sold out or declined; want all %d", got, customers)
	}
	if got := db.queryInt(t, `SELECT count(*) FROM registrations`); got != capacity {
		t.Errorf("%d registrations stored; want %d", got, capacity)
	}
	if got := db.taken(t, "standard"); got != capacity {
		t.Errorf("taken = %d; want %d", got, capacity)
	}
	if got := db.holdCount(t); got != 0 {
		t.Errorf("%d seat holds left; want 0", got)
	}
	if got := db.queryInt(t, `SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress'`); got != 0 {
		t.Errorf("%d idempotency keys left in progress; want 0", got)
	}
	if got := db.queryInt(t, `SELECT count(*) FROM idempotency_keys k JOIN registrations r ON r.id = k.registration_id
		WHERE k.state = 'done' AND k.attempt_id = r.id`); got != int(keyed.Load()) {
		t.Errorf("%d keys settled with their registration; want %d (the customers with keys who registered)", got, keyed.Load())
	}
	report := fmt.Sprintf("%d writes in %s", writes.Load(), elapsed.Round(time.Millisecond))
	if b, ok := s.(batcher); ok {
		n := b.Batches()
		report += fmt.Sprintf(" in %d transactions (%.1f writes per transaction)", n, float64(writes.Load())/float64(max(n, 1)))
	}
	t.Log(report)
}

// attempt is customer i's attempt number try: even customers send an
// idempotency key, a new one per attempt.
func attempt(i, try int) (registration.Attempt, error) {
	id, err := registration.NewID()
	if err != nil {
		return registration.Attempt{}, err
	}
	now := time.Now().UTC()
	a := registration.Attempt{ID: id, EventID: testEventID, TicketID: "standard", RequestHash: "hash",
		CreatedAt: now, ResolveAfter: now.Add(10 * time.Minute)}
	if i%2 == 0 {
		a.IdempotencyKey = fmt.Sprintf("customer-%d-%d", i, try)
	}
	return a, nil
}

// testIdempotencyRace sends one request 20 times at once with the same key
// and body, as a client retrying impatiently: exactly one attempt reserves
// the key and a seat; the others are told the request is in progress, or
// (once the first has completed) get its registration back (invariant 3).
func testIdempotencyRace(t *testing.T, h Harness) {
	const copies, rounds = 20, 5
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, db := newStore(t, h, rounds)
	soldOut := registration.Outcome{Code: registration.CodeSoldOut}
	for round := range rounds {
		key := fmt.Sprintf("key-%d", round)
		var won atomic.Pointer[registration.Attempt]
		var reserved, inProgress, replayed atomic.Int64
		var regID atomic.Value
		errs := make(chan error, copies)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range copies {
			wg.Go(func() {
				<-start
				id, err := registration.NewID()
				if err != nil {
					errs <- err
					return
				}
				now := time.Now().UTC()
				a := registration.Attempt{ID: id, EventID: testEventID, TicketID: "standard", IdempotencyKey: key,
					RequestHash: "same-body", CreatedAt: now, ResolveAfter: now.Add(10 * time.Minute)}
				replay, err := s.StartAttempt(ctx, a, soldOut)
				switch {
				case errors.Is(err, registration.ErrKeyInProgress):
					inProgress.Add(1)
				case err != nil:
					errs <- fmt.Errorf("StartAttempt: %w", err)
				case replay != nil:
					replayed.Add(1)
					if replay.Code != "" || replay.RegistrationID == "" {
						errs <- fmt.Errorf("replay = %+v; want the registration", replay)
					}
					regID.CompareAndSwap(nil, replay.RegistrationID)
				default:
					reserved.Add(1)
					won.Store(&a)
					// The winner pays at once, so that later copies may replay.
					if err := s.CompleteAttempt(ctx, a, newRegistration(a, false), noEnqueue); err != nil {
						errs <- fmt.Errorf("CompleteAttempt: %w", err)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		if reserved.Load() != 1 || reserved.Load()+inProgress.Load()+replayed.Load() != copies {
			t.Fatalf("round %d: %d copies reserved the key, %d were told it is in progress, %d replayed; want 1 and %d in all",
				round, reserved.Load(), inProgress.Load(), replayed.Load(), copies)
		}
		a := won.Load()
		if id, ok := regID.Load().(string); ok && id != a.ID {
			t.Errorf("round %d: a copy replayed registration %s; want %s", round, id, a.ID)
		}
		if k := db.readKey(t, key); k.state != "done" || k.attemptID != a.ID || k.regID != a.ID {
			t.Errorf("round %d: key = %+v; want done with the winner's registration %s", round, k, a.ID)
		}
		// A late copy replays the registration.
		late := newAttempt(t, key, "same-body")
		if replay, err := s.StartAttempt(ctx, late, soldOut); err != nil || replay == nil || replay.RegistrationID != a.ID {
			t.Errorf("round %d: late copy = %+v, %v; want the registration %s", round, replay, err, a.ID)
		}
		t.Logf("round %d: 1 reserved, %d in progress, %d replayed", round, inProgress.Load(), replayed.Load())
	}
	if got := db.queryInt(t, `SELECT count(*) FROM registrations`); got != rounds {
		t.Errorf("%d registrations; want %d (one per key)", got, rounds)
	}
	if got := db.taken(t, "standard"); got != rounds {
		t.Errorf("taken = %d; want %d (one seat per key)", got, rounds)
	}
	if got := db.holdCount(t); got != 0 {
		t.Errorf("%d seat holds left; want 0", got)
	}
}
