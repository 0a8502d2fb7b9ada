package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

func testSyncTickets(t *testing.T, h Harness) {
	ctx := t.Context()
	s, db := newStore(t, h, 2)
	if _, err := s.StartAttempt(ctx, newAttempt(t, "", "h"), registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	ev := testEvent(5)
	ev.Tickets = append(ev.Tickets, event.Ticket{ID: "student", Name: "Student", Price: 4900, Capacity: 3})
	if err := s.SyncTickets(ctx, ev); err != nil {
		t.Fatalf("SyncTickets: %v", err)
	}
	rows, err := db.DB.QueryContext(ctx, db.Bind(`SELECT ticket_id, capacity, taken FROM ticket_stock WHERE event_id = ? ORDER BY ticket_id`), testEventID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id string
		var capacity, taken int
		if err := rows.Scan(&id, &capacity, &taken); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%d/%d", id, taken, capacity))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := "community:0/50 standard:1/5 student:0/3"
	if strings.Join(got, " ") != want {
		t.Errorf("ticket_stock (ticket:taken/capacity) = %q; want %q", strings.Join(got, " "), want)
	}
}

func testStartAndFailAttempt(t *testing.T, h Harness) {
	soldOut := registration.Outcome{Code: registration.CodeSoldOut, Message: "The Standard ticket is sold out."}

	t.Run("hold takes a seat", func(t *testing.T) {
		t.Parallel()
		s, db := newStore(t, h, 2)
		a := newAttempt(t, "key-1", "hash-1")
		replay, err := s.StartAttempt(t.Context(), a, soldOut)
		if err != nil || replay != nil {
			t.Fatalf("StartAttempt = %v, %v; want nil, nil", replay, err)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
		var id, key string
		var expires storedTime
		if err := db.DB.QueryRowContext(t.Context(), `SELECT id, idempotency_key, expires_at FROM seat_holds`).Scan(&id, &key, &expires); err != nil {
			t.Fatalf("read hold: %v", err)
		}
		if id != a.ID || key != "key-1" || !expires.Equal(stored(a.ResolveAfter)) {
			t.Errorf("hold = (%s, %s, %s); want (%s, key-1, %s)", id, key, expires, a.ID, stored(a.ResolveAfter))
		}
		if k := db.readKey(t, "key-1"); !k.exists || k.state != "in_progress" || k.attemptID != a.ID || k.requestHash != "hash-1" {
			t.Errorf("key = %+v; want in_progress for attempt %s with hash-1", k, a.ID)
		}
	})

	t.Run("fail without outcome releases the seat and forgets the key", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 2)
		a := newAttempt(t, "key-1", "hash-1")
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		if err := s.FailAttempt(ctx, a, nil); err != nil {
			t.Fatalf("FailAttempt: %v", err)
		}
		if got := db.taken(t, "standard"); got != 0 {
			t.Errorf("taken = %d; want 0", got)
		}
		if got := db.holdCount(t); got != 0 {
			t.Errorf("%d seat holds left; want 0", got)
		}
		if k := db.readKey(t, "key-1"); k.exists {
			t.Errorf("key still stored (%+v); want it forgotten so the client may retry", k)
		}
		// The client may retry with the same key and another request.
		retry := newAttempt(t, "key-1", "hash-2")
		if replay, err := s.StartAttempt(ctx, retry, soldOut); err != nil || replay != nil {
			t.Fatalf("StartAttempt after a forgotten key = %v, %v; want nil, nil", replay, err)
		}
	})

	t.Run("fail with outcome stores it for replay", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 2)
		a := newAttempt(t, "key-1", "hash-1")
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		declined := registration.Outcome{Code: registration.CodePaymentDeclined, Message: "Your card was declined."}
		if err := s.FailAttempt(ctx, a, &declined); err != nil {
			t.Fatalf("FailAttempt: %v", err)
		}
		if got := db.taken(t, "standard"); got != 0 {
			t.Errorf("taken = %d; want 0", got)
		}
		if got := db.holdCount(t); got != 0 {
			t.Errorf("%d seat holds left; want 0", got)
		}
		replay, err := s.StartAttempt(ctx, newAttempt(t, "key-1", "hash-1"), soldOut)
		if err != nil {
			t.Fatalf("replaying StartAttempt: %v", err)
		}
		if replay == nil || *replay != declined {
			t.Errorf("replay = %+v; want %+v", replay, declined)
		}
		if got := db.taken(t, "standard"); got != 0 {
			t.Errorf("a replay took a seat: taken = %d", got)
		}
		if _, err := s.StartAttempt(ctx, newAttempt(t, "key-1", "hash-other"), soldOut); !errors.Is(err, registration.ErrKeyReused) {
			t.Errorf("same key, other hash: err = %v; want ErrKeyReused", err)
		}
		// KeyOutcome reads the same without starting anything.
		if o, err := s.KeyOutcome(ctx, "key-1", "hash-1"); err != nil || o == nil || *o != declined {
			t.Errorf("KeyOutcome = %+v, %v; want %+v", o, err, declined)
		}
		if _, err := s.KeyOutcome(ctx, "key-1", "hash-other"); !errors.Is(err, registration.ErrKeyReused) {
			t.Errorf("KeyOutcome with another hash: err = %v; want ErrKeyReused", err)
		}
		if o, err := s.KeyOutcome(ctx, "key-unknown", "hash-1"); o != nil || err != nil {
			t.Errorf("KeyOutcome of an unknown key = %+v, %v; want nil, nil", o, err)
		}
		held := newAttempt(t, "key-held", "hash-held")
		if _, err := s.StartAttempt(ctx, held, soldOut); err != nil {
			t.Fatal(err)
		}
		if _, err := s.KeyOutcome(ctx, "key-held", "hash-held"); !errors.Is(err, registration.ErrKeyInProgress) {
			t.Errorf("KeyOutcome while in progress: err = %v; want ErrKeyInProgress", err)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1 (KeyOutcome takes nothing)", got)
		}
	})

	t.Run("conflicting keys", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 5)
		if _, err := s.StartAttempt(ctx, newAttempt(t, "key-1", "hash-1"), soldOut); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, hash string
			want       error
		}{
			{"same hash while in progress", "hash-1", registration.ErrKeyInProgress},
			{"other hash", "hash-2", registration.ErrKeyReused},
		}
		for _, tt := range tests {
			replay, err := s.StartAttempt(ctx, newAttempt(t, "key-1", tt.hash), soldOut)
			if !errors.Is(err, tt.want) || replay != nil {
				t.Errorf("%s: StartAttempt = %v, %v; want nil, %v", tt.name, replay, err, tt.want)
			}
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d after refused attempts; want 1", got)
		}
		if got := db.holdCount(t); got != 1 {
			t.Errorf("%d seat holds; want 1", got)
		}
	})

	// Invariant 10: a sold out stored under a key is final, so only once
	// every seat is paid.
	t.Run("every seat paid stores the sold-out outcome", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 1)
		register(t, s, false)
		a := newAttempt(t, "key-late", "hash-late")
		replay, err := s.StartAttempt(ctx, a, soldOut)
		if !errors.Is(err, registration.ErrSoldOut) || errors.Is(err, registration.ErrSeatsHeld) || replay != nil {
			t.Fatalf("StartAttempt on a full ticket = %v, %v; want nil, ErrSoldOut (final)", replay, err)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
		if got := db.holdCount(t); got != 0 {
			t.Errorf("%d seat holds; want 0", got)
		}
		if k := db.readKey(t, "key-late"); k.state != "done" || k.code != soldOut.Code || k.message != soldOut.Message || k.regID != "" {
			t.Errorf("key = %+v; want done with the sold-out outcome", k)
		}
		replay, err = s.StartAttempt(ctx, newAttempt(t, "key-late", "hash-late"), soldOut)
		if err != nil || replay == nil || *replay != soldOut {
			t.Errorf("replay = %+v, %v; want %+v", replay, err, soldOut)
		}
		// Without a key, sold out stores nothing.
		if _, err := s.StartAttempt(ctx, newAttempt(t, "", "h"), soldOut); !errors.Is(err, registration.ErrSoldOut) {
			t.Errorf("keyless StartAttempt on a full ticket: err = %v; want ErrSoldOut", err)
		}
		if got := db.queryInt(t, `SELECT count(*) FROM idempotency_keys`); got != 1 {
			t.Errorf("%d idempotency keys; want 1", got)
		}
	})

	// While seats are only held by attempts that may still fail, no seat is
	// free but the answer is not final: nothing is stored under the key,
	// and the same request proceeds once a seat comes back.
	t.Run("seats held is not stored under the key", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 2)
		register(t, s, false)
		holder := newAttempt(t, "key-holder", "hash-holder")
		if _, err := s.StartAttempt(ctx, holder, soldOut); err != nil {
			t.Fatal(err)
		}
		for i, key := range []string{"key-late", "key-late", ""} {
			replay, err := s.StartAttempt(ctx, newAttempt(t, key, "hash-late"), soldOut)
			if !errors.Is(err, registration.ErrSeatsHeld) || replay != nil {
				t.Fatalf("try %d: StartAttempt while the last seat is held = %v, %v; want nil, ErrSeatsHeld", i, replay, err)
			}
		}
		if k := db.readKey(t, "key-late"); k.exists {
			t.Errorf("key = %+v; want nothing stored while seats are only held", k)
		}
		if got, holds := db.taken(t, "standard"), db.holdCount(t); got != 2 || holds != 1 {
			t.Errorf("taken = %d, holds = %d; want 2, 1 (a refusal takes nothing)", got, holds)
		}
		// The holder is declined: its seat is on sale again, and the same
		// key and request now take it.
		declined := registration.Outcome{Code: registration.CodePaymentDeclined, Message: "Declined."}
		if err := s.FailAttempt(ctx, holder, &declined); err != nil {
			t.Fatal(err)
		}
		late := newAttempt(t, "key-late", "hash-late")
		if replay, err := s.StartAttempt(ctx, late, soldOut); err != nil || replay != nil {
			t.Fatalf("StartAttempt once the seat came back = %v, %v; want nil, nil", replay, err)
		}
		if k := db.readKey(t, "key-late"); k.state != "in_progress" || k.attemptID != late.ID {
			t.Errorf("key = %+v; want in progress for the new attempt", k)
		}
		if err := s.CompleteAttempt(ctx, late, newRegistration(late, false), noEnqueue); err != nil {
			t.Fatal(err)
		}
		// Now every seat is paid: final. The writer stores it under the
		// key; SQLite, whose ticket has refused attempts before, answers
		// from the committed stock and writes nothing. Either way the same
		// key hears sold out again and nothing is taken or held.
		replay, err := s.StartAttempt(ctx, newAttempt(t, "key-final", "hash-final"), soldOut)
		if !errors.Is(err, registration.ErrSoldOut) || errors.Is(err, registration.ErrSeatsHeld) || replay != nil {
			t.Fatalf("StartAttempt once every seat is paid = %v, %v; want ErrSoldOut", replay, err)
		}
		if k := db.readKey(t, "key-final"); k.exists && (k.state != "done" || k.code != soldOut.Code) {
			t.Errorf("key = %+v; want the sold-out outcome stored, or nothing", k)
		}
		replay, err = s.StartAttempt(ctx, newAttempt(t, "key-final", "hash-final"), soldOut)
		if !errors.Is(err, registration.ErrSoldOut) && (err != nil || replay == nil || replay.Code != soldOut.Code) {
			t.Errorf("the same key again = %+v, %v; want sold out again", replay, err)
		}
		if got, holds := db.taken(t, "standard"), db.holdCount(t); got != 2 || holds != 0 {
			t.Errorf("taken = %d, holds = %d; want 2, 0", got, holds)
		}
	})

	// A capacity lowered below the seats already paid: no held seat coming
	// back can make room, so the sell-out is final though some are held.
	t.Run("paid seats filling a lowered capacity are final", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 3)
		register(t, s, false)
		paid := register(t, s, false)
		if _, err := s.StartAttempt(ctx, newAttempt(t, "key-holder", "hash-holder"), soldOut); err != nil {
			t.Fatal(err)
		}
		if err := s.SyncTickets(ctx, testEvent(2)); err != nil {
			t.Fatal(err)
		}
		replay, err := s.StartAttempt(ctx, newAttempt(t, "key-late", "hash-late"), soldOut)
		if !errors.Is(err, registration.ErrSoldOut) || errors.Is(err, registration.ErrSeatsHeld) || replay != nil {
			t.Fatalf("StartAttempt with 2 paid of 2 and one held = %v, %v; want ErrSoldOut (final)", replay, err)
		}
		if k := db.readKey(t, "key-late"); k.state != "done" || k.code != soldOut.Code {
			t.Errorf("key = %+v; want the sold-out outcome stored", k)
		}
		av, err := s.Availability(ctx, testEventID)
		if err != nil {
			t.Fatal(err)
		}
		if got := av["standard"]; got != (registration.Availability{Capacity: 2, Taken: 3, Held: 1}) || !got.SoldOut() || got.Left() != 0 {
			t.Errorf("availability = %+v (sold out %v); want 2 seats, 3 taken, 1 held, sold out", got, got.SoldOut())
		}
		// One of them cancelled: one seat paid of 2, one held, none free, and
		// the answer is no longer final.
		if err := s.CancelRegistration(ctx, paid.ID, nil, auditEntry("cancel", paid.ID), nil); err != nil {
			t.Fatal(err)
		}
		replay, err = s.StartAttempt(ctx, newAttempt(t, "key-later", "hash-later"), soldOut)
		if !errors.Is(err, registration.ErrSeatsHeld) || replay != nil {
			t.Fatalf("StartAttempt with 1 paid of 2 and one held = %v, %v; want ErrSeatsHeld", replay, err)
		}
		if k := db.readKey(t, "key-later"); k.exists {
			t.Errorf("key = %+v; want nothing stored", k)
		}
	})

	t.Run("a cancelled registration's seat is on sale again", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 1)
		r := register(t, s, false)
		if _, err := s.StartAttempt(ctx, newAttempt(t, "key-1", "hash-1"), soldOut); !errors.Is(err, registration.ErrSoldOut) {
			t.Fatalf("StartAttempt on a full ticket: %v; want ErrSoldOut", err)
		}
		if err := s.CancelRegistration(ctx, r.ID, nil, auditEntry("cancel", r.ID), nil); err != nil {
			t.Fatalf("CancelRegistration: %v", err)
		}
		av, err := s.Availability(ctx, testEventID)
		if err != nil {
			t.Fatal(err)
		}
		if got := av["standard"]; got != (registration.Availability{Capacity: 1}) || got.Left() != 1 || got.SoldOut() {
			t.Errorf("availability after the cancellation = %+v; want the seat free", got)
		}
		// A new key takes the seat; the key told sold out before keeps its
		// answer (it was final when given).
		a := newAttempt(t, "key-2", "hash-2")
		if replay, err := s.StartAttempt(ctx, a, soldOut); err != nil || replay != nil {
			t.Fatalf("StartAttempt after the cancellation = %v, %v; want nil, nil", replay, err)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
	})

	t.Run("unknown ticket is sold out", func(t *testing.T) {
		t.Parallel()
		s, db := newStore(t, h, 1)
		a := newAttempt(t, "", "h")
		a.TicketID = "vip"
		if _, err := s.StartAttempt(t.Context(), a, soldOut); !errors.Is(err, registration.ErrSoldOut) {
			t.Errorf("err = %v; want ErrSoldOut", err)
		}
		if got := db.holdCount(t); got != 0 {
			t.Errorf("%d seat holds; want 0", got)
		}
	})
}

func testCompleteAttempt(t *testing.T, h Harness) {
	soldOut := registration.Outcome{Code: registration.CodeSoldOut, Message: "sold out"}

	t.Run("stores the registration in the enqueue's transaction", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 2)
		a := newAttempt(t, "key-1", "hash-1")
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		r := newRegistration(a, true)
		var calls int
		enqueue := func(ctx context.Context, tx *sql.Tx, id string) error {
			calls++
			if id != r.ID {
				t.Errorf("enqueue id = %q; want %q", id, r.ID)
			}
			// Inside the transaction the registration is there...
			var status string
			if err := tx.QueryRowContext(ctx, db.Bind(`SELECT status FROM registrations WHERE id = ?`), id).Scan(&status); err != nil {
				t.Errorf("registration not visible in the enqueue's transaction: %v", err)
			}
			// ...but not yet committed.
			if _, err := s.Registration(ctx, id); !errors.Is(err, registration.ErrNotFound) {
				t.Errorf("registration visible outside the transaction before commit: err = %v", err)
			}
			_, err := tx.ExecContext(ctx, db.Bind(`INSERT INTO orders (registration_id, event_id, ticket_id, amount, currency,
				first_name, last_name, email, company, payment_provider, payment_reference, saved_at)
				VALUES (?, 'e', 't', 1, 'EUR', 'a', 'b', 'c', '', '', '', ?)`), id, time.Now().UTC())
			return err
		}
		if err := s.CompleteAttempt(ctx, a, r, enqueue); err != nil {
			t.Fatalf("CompleteAttempt: %v", err)
		}
		if calls != 1 {
			t.Errorf("enqueue called %d times; want 1", calls)
		}
		if got := db.queryInt(t, `SELECT count(*) FROM orders WHERE registration_id = ?`, r.ID); got != 1 {
			t.Errorf("the enqueue's write was not committed with the registration")
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1 (the seat stays taken)", got)
		}
		if got := db.holdCount(t); got != 0 {
			t.Errorf("%d seat holds; want the hold removed", got)
		}
		got, err := s.Registration(ctx, r.ID)
		if err != nil {
			t.Fatalf("Registration: %v", err)
		}
		if fmt.Sprint(got) != fmt.Sprint(r) {
			t.Errorf("stored registration =\n%+v\nwant\n%+v", got, r)
		}
		if k := db.readKey(t, "key-1"); k.state != "done" || k.regID != r.ID || k.code != "" {
			t.Errorf("key = %+v; want done with registration %s", k, r.ID)
		}
		replay, err := s.StartAttempt(ctx, newAttempt(t, "key-1", "hash-1"), soldOut)
		if err != nil || replay == nil || *replay != (registration.Outcome{RegistrationID: r.ID}) {
			t.Errorf("replay = %+v, %v; want the registration id %s", replay, err, r.ID)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d after the replay; want 1", got)
		}
	})

	t.Run("a failing enqueue rolls everything back", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 2)
		a := newAttempt(t, "key-1", "hash-1")
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("queue is down")
		err := s.CompleteAttempt(ctx, a, newRegistration(a, true), func(context.Context, *sql.Tx, string) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("CompleteAttempt err = %v; want it to wrap %v", err, boom)
		}
		if _, err := s.Registration(ctx, a.ID); !errors.Is(err, registration.ErrNotFound) {
			t.Errorf("Registration after a failed enqueue: err = %v; want ErrNotFound", err)
		}
		for _, table := range []string{"registrations", "registration_steps"} {
			if got := db.queryInt(t, `SELECT count(*) FROM `+table); got != 0 {
				t.Errorf("%s has %d rows; want 0", table, got)
			}
		}
		if got := db.holdCount(t); got != 1 {
			t.Errorf("%d seat holds; want the hold still present", got)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
		if k := db.readKey(t, "key-1"); k.state != "in_progress" {
			t.Errorf("key = %+v; want still in_progress", k)
		}
		// The caller then fails the attempt: everything is released.
		if err := s.FailAttempt(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
		if got := db.taken(t, "standard"); got != 0 {
			t.Errorf("taken = %d after FailAttempt; want 0", got)
		}
	})

	t.Run("after the hold was released a late charge takes a free seat again", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 1)
		a := newAttempt(t, "", "h")
		a.ResolveAfter = a.CreatedAt.Add(-time.Second)
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		// The resolver found no charge and released the hold; then the
		// charge landed after all.
		if err := s.FailAttempt(ctx, a, nil); err != nil {
			t.Fatalf("FailAttempt: %v", err)
		}
		if got := db.taken(t, "standard"); got != 0 {
			t.Fatalf("taken = %d after the release; want 0", got)
		}
		if err := s.CompleteAttempt(ctx, a, newRegistration(a, false), noEnqueue); err != nil {
			t.Fatalf("CompleteAttempt: %v", err)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
		if _, err := s.Registration(ctx, a.ID); err != nil {
			t.Errorf("Registration: %v", err)
		}
	})

	t.Run("after the hold was released and the seat resold", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 1)
		a := newAttempt(t, "", "h")
		a.ResolveAfter = a.CreatedAt.Add(-time.Second)
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		if err := s.FailAttempt(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StartAttempt(ctx, newAttempt(t, "", "h"), soldOut); err != nil {
			t.Fatalf("a second attempt could not take the released seat: %v", err)
		}
		enqueued := false
		err := s.CompleteAttempt(ctx, a, newRegistration(a, false), func(context.Context, *sql.Tx, string) error {
			enqueued = true
			return nil
		})
		if !errors.Is(err, registration.ErrAttemptUnavailable) {
			t.Fatalf("CompleteAttempt err = %v; want ErrAttemptUnavailable", err)
		}
		if enqueued {
			t.Error("the pipeline was enqueued for an attempt without a seat")
		}
		if _, err := s.Registration(ctx, a.ID); !errors.Is(err, registration.ErrNotFound) {
			t.Errorf("Registration: err = %v; want ErrNotFound", err)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1 (capacity)", got)
		}
	})

	// Invariant 3 even after the key was forgotten: the resolver released
	// the attempt and forgot its key, then its charge went through after all
	// and the registration is stored. The key is stored again, settled, so a
	// client retry replays the registration instead of charging again.
	t.Run("a forgotten key is stored settled", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 2)
		a := newAttempt(t, "key-1", "hash-1")
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		if err := s.FailAttempt(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
		if k := db.readKey(t, "key-1"); k.exists {
			t.Fatalf("key = %+v after FailAttempt(nil); want it forgotten", k)
		}
		r := newRegistration(a, false)
		if err := s.CompleteAttempt(ctx, a, r, noEnqueue); err != nil {
			t.Fatalf("CompleteAttempt: %v", err)
		}
		k := db.readKey(t, "key-1")
		if want := (keyRow{exists: true, state: "done", attemptID: a.ID, regID: r.ID, requestHash: "hash-1"}); k != want {
			t.Errorf("key = %+v; want %+v", k, want)
		}
		replay, err := s.StartAttempt(ctx, newAttempt(t, "key-1", "hash-1"), soldOut)
		if err != nil || replay == nil || *replay != (registration.Outcome{RegistrationID: r.ID}) {
			t.Errorf("retry with the same key and body = %+v, %v; want the registration id %s", replay, err, r.ID)
		}
		if _, err := s.StartAttempt(ctx, newAttempt(t, "key-1", "hash-2"), soldOut); !errors.Is(err, registration.ErrKeyReused) {
			t.Errorf("retry with the same key and another body: err = %v; want ErrKeyReused", err)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1 (the registration, no seat for the replays)", got)
		}
		if got := db.holdCount(t); got != 0 {
			t.Errorf("%d seat holds; want 0", got)
		}
	})

	// Once forgotten, the key may be reserved by a new attempt of the client;
	// the late completion of the first attempt leaves it to that attempt.
	t.Run("a key re-reserved by another attempt is not overwritten", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 3)
		a := newAttempt(t, "key-1", "hash-1")
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		if err := s.FailAttempt(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
		b := newAttempt(t, "key-1", "hash-2")
		if replay, err := s.StartAttempt(ctx, b, soldOut); err != nil || replay != nil {
			t.Fatalf("StartAttempt of the new attempt = %v, %v; want nil, nil", replay, err)
		}
		want := keyRow{exists: true, state: "in_progress", attemptID: b.ID, requestHash: "hash-2"}
		if err := s.CompleteAttempt(ctx, a, newRegistration(a, false), noEnqueue); err != nil {
			t.Fatalf("CompleteAttempt of the first attempt: %v", err)
		}
		if k := db.readKey(t, "key-1"); k != want {
			t.Errorf("key after the first attempt completed = %+v; want it left to the new attempt: %+v", k, want)
		}
		// Nor does storing an outcome for the first attempt (FailAttempt
		// with an outcome settles the key the same way).
		declined := registration.Outcome{Code: registration.CodePaymentDeclined, Message: "Declined."}
		if err := s.FailAttempt(ctx, a, &declined); err != nil {
			t.Fatal(err)
		}
		if k := db.readKey(t, "key-1"); k != want {
			t.Errorf("key after FailAttempt of the first attempt = %+v; want %+v", k, want)
		}
		// Nor forgetting it for the first attempt.
		if err := s.FailAttempt(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
		if k := db.readKey(t, "key-1"); k != want {
			t.Errorf("key after FailAttempt(nil) of the first attempt = %+v; want %+v", k, want)
		}
		if _, err := s.StartAttempt(ctx, newAttempt(t, "key-1", "hash-2"), soldOut); !errors.Is(err, registration.ErrKeyInProgress) {
			t.Errorf("retry while the new attempt runs: err = %v; want ErrKeyInProgress", err)
		}
		// The new attempt settles its own key.
		rb := newRegistration(b, false)
		if err := s.CompleteAttempt(ctx, b, rb, noEnqueue); err != nil {
			t.Fatal(err)
		}
		if k := db.readKey(t, "key-1"); k.state != "done" || k.attemptID != b.ID || k.regID != rb.ID {
			t.Errorf("key = %+v; want done for the new attempt with registration %s", k, rb.ID)
		}
		if got := db.taken(t, "standard"); got != 2 {
			t.Errorf("taken = %d; want 2 (two registrations)", got)
		}
	})

	t.Run("completing twice is refused and stores one registration", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, db := newStore(t, h, 3)
		a := newAttempt(t, "key-1", "hash-1")
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		r := newRegistration(a, true)
		var enqueued int
		enqueue := func(context.Context, *sql.Tx, string) error { enqueued++; return nil }
		if err := s.CompleteAttempt(ctx, a, r, enqueue); err != nil {
			t.Fatalf("first CompleteAttempt: %v", err)
		}
		// The second one (the resolver after a slow Register, say) carries
		// another charge reference: it must change nothing.
		r2 := r
		r2.Payment.Reference = "test_other"
		err := s.CompleteAttempt(ctx, a, r2, enqueue)
		if !errors.Is(err, registration.ErrAlreadyRegistered) {
			t.Fatalf("second CompleteAttempt err = %v; want ErrAlreadyRegistered", err)
		}
		if enqueued != 1 {
			t.Errorf("enqueue called %d times; want 1", enqueued)
		}
		if got := db.queryInt(t, `SELECT count(*) FROM registrations`); got != 1 {
			t.Errorf("%d registrations; want 1", got)
		}
		if got := db.queryInt(t, `SELECT count(*) FROM registration_steps`); got != 3 {
			t.Errorf("%d registration steps; want 3", got)
		}
		if got, err := s.Registration(ctx, a.ID); err != nil || got.Payment.Reference != r.Payment.Reference {
			t.Errorf("Registration = %+v, %v; want the first charge %s kept", got.Payment, err, r.Payment.Reference)
		}
		if got := db.taken(t, "standard"); got != 1 {
			t.Errorf("taken = %d; want 1", got)
		}
		if k := db.readKey(t, "key-1"); k.state != "done" || k.regID != r.ID || k.attemptID != a.ID {
			t.Errorf("key = %+v; want done with registration %s", k, r.ID)
		}
	})
}

// testAbandonedAttempts covers what the payment resolver reads and writes:
// attempts still holding a seat past ResolveAfter, postponing one whose
// outcome is unknown, and releasing the others.
func testAbandonedAttempts(t *testing.T, h Harness) {
	ctx := t.Context()
	s, db := newStore(t, h, 10)
	soldOut := registration.Outcome{Code: registration.CodeSoldOut}
	now := time.Now().UTC()

	start := func(key string, resolveAfter time.Time) registration.Attempt {
		t.Helper()
		a := newAttempt(t, key, "hash-"+key)
		a.CreatedAt = now.Add(-2 * time.Hour)
		a.ResolveAfter = resolveAfter
		a.Draft = newRegistration(a, key == "expired")
		a.Draft.Payment = payment.Charge{} // a draft is not paid yet
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatalf("StartAttempt %s: %v", key, err)
		}
		return a
	}
	expired := start("expired", now.Add(-time.Minute))
	noKey := start("", now.Add(-time.Second))        // past due, no key
	live := start("live", now.Add(time.Hour))        // not due yet
	settled := start("settled", now.Add(-time.Hour)) // past due, but its key was settled meanwhile
	db.exec(t, `UPDATE idempotency_keys SET state = 'done', error_code = 'payment_declined' WHERE key = 'settled'`)
	// A completed registration's settled key is not a hold at all.
	done := start("done", now.Add(-time.Hour))
	if err := s.CompleteAttempt(ctx, done, newRegistration(done, false), noEnqueue); err != nil {
		t.Fatal(err)
	}
	if got := db.taken(t, "standard"); got != 5 {
		t.Fatalf("taken = %d; want 5", got)
	}

	got, err := s.AbandonedAttempts(ctx, now, 100)
	if err != nil {
		t.Fatalf("AbandonedAttempts: %v", err)
	}
	// Oldest due first; each with what the resolver needs to settle it.
	want := []registration.Attempt{settled, expired, noKey}
	want[2].RequestHash = "" // only a key needs the request's hash
	for i := range want {
		want[i].CreatedAt = want[i].CreatedAt.Truncate(time.Microsecond)
		want[i].ResolveAfter = want[i].ResolveAfter.Truncate(time.Microsecond)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("AbandonedAttempts =\n%+v\nwant\n%+v", got, want)
	}
	if len(got) == 3 && !got[1].Draft.Newsletter {
		t.Error("the draft lost its fields")
	}
	if lim, err := s.AbandonedAttempts(ctx, now, 2); err != nil || len(lim) != 2 || lim[0].ID != settled.ID || lim[1].ID != expired.ID {
		t.Errorf("AbandonedAttempts with limit 2 = %d attempts, %v; want the two oldest", len(lim), err)
	}
	if early, err := s.AbandonedAttempts(ctx, now.Add(-90*time.Minute), 100); err != nil || len(early) != 0 {
		t.Errorf("AbandonedAttempts before any is due = %+v, %v; want none", early, err)
	}

	// The outcome of one is still unknown: it is looked at again later.
	later := now.Add(time.Minute)
	if err := s.PostponeAttempt(ctx, expired.ID, later); err != nil {
		t.Fatalf("PostponeAttempt: %v", err)
	}
	var resolveAfter storedTime
	if err := db.DB.QueryRowContext(ctx, db.Bind(`SELECT expires_at FROM seat_holds WHERE id = ?`), expired.ID).Scan(&resolveAfter); err != nil {
		t.Fatal(err)
	}
	if !resolveAfter.Equal(stored(later)) {
		t.Errorf("resolve after = %s; want %s", resolveAfter, stored(later))
	}
	if k := db.readKey(t, "expired"); k.state != "in_progress" || k.attemptID != expired.ID {
		t.Errorf("key of the postponed attempt = %+v; want still in progress", k)
	}
	// The others took no money: released, their keys forgotten (the settled
	// one keeps its outcome).
	for _, a := range []registration.Attempt{got[0], got[2]} {
		if err := s.FailAttempt(ctx, a, nil); err != nil {
			t.Fatalf("FailAttempt %s: %v", a.ID, err)
		}
	}
	if got := db.taken(t, "standard"); got != 3 {
		t.Errorf("taken = %d after the releases; want 3 (postponed, live, registration)", got)
	}
	var ids []string
	rows, err := db.DB.QueryContext(ctx, `SELECT id FROM seat_holds ORDER BY expires_at`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if fmt.Sprint(ids) != fmt.Sprint([]string{expired.ID, live.ID}) {
		t.Errorf("holds left = %v; want the postponed %s and the live %s", ids, expired.ID, live.ID)
	}
	keys := []struct {
		key        string
		wantExists bool
		wantState  string
	}{
		{"expired", true, "in_progress"},
		{"live", true, "in_progress"},
		{"settled", true, "done"},
		{"done", true, "done"},
	}
	for _, k := range keys {
		got := db.readKey(t, k.key)
		if got.exists != k.wantExists || got.state != k.wantState {
			t.Errorf("key %s = %+v; want exists=%v state=%q", k.key, got, k.wantExists, k.wantState)
		}
	}

	// Nothing is due now; after the postponement the attempt is due again.
	if again, err := s.AbandonedAttempts(ctx, now, 100); err != nil || len(again) != 0 {
		t.Errorf("AbandonedAttempts after resolving = %+v, %v; want none", again, err)
	}
	if again, err := s.AbandonedAttempts(ctx, later.Add(time.Second), 100); err != nil || len(again) != 1 || again[0].ID != expired.ID {
		t.Errorf("AbandonedAttempts after the postponement = %+v, %v; want the postponed attempt", again, err)
	}
	// A released attempt's key can be used again.
	if _, err := s.StartAttempt(ctx, newAttempt(t, "", "hash-other"), soldOut); err != nil {
		t.Errorf("StartAttempt after the release: %v", err)
	}
}

func testRecordIncident(t *testing.T, h Harness) {
	ctx := t.Context()
	s, db := newStore(t, h, 1)
	at := time.Date(2027, 1, 5, 10, 0, 0, 123456000, time.UTC)
	kinds := []registration.IncidentKind{registration.IncidentRefunded, registration.IncidentRefundFailed,
		registration.IncidentResolvedCharged, registration.IncidentResolvedNotCharged, registration.IncidentUnresolved}
	for i, kind := range kinds {
		in := registration.Incident{AttemptID: fmt.Sprintf("attempt-%d", i), Kind: kind, Provider: "paypal",
			Reference: "CAPTURE-1", Amount: 14900, Currency: "EUR", Detail: strings.Repeat("x", 1500), CreatedAt: at}
		if err := s.RecordIncident(ctx, in); err != nil {
			t.Fatalf("RecordIncident(%s): %v", kind, err)
		}
	}
	rows, err := db.DB.QueryContext(ctx, `SELECT attempt_id, kind, provider, reference, amount, currency, length(detail), created_at
		FROM payment_incidents ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id, kind, provider, ref, currency string
		var created storedTime
		var amount, detailLen int
		if err := rows.Scan(&id, &kind, &provider, &ref, &amount, &currency, &detailLen, &created); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s %d %s %v %s", id, kind, provider, ref, amount, currency, detailLen > 0 && detailLen <= 1001, created.Format(time.RFC3339Nano)))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, kind := range kinds {
		want = append(want, fmt.Sprintf("attempt-%d %s paypal CAPTURE-1 14900 EUR true %s", i, kind, at.Format(time.RFC3339Nano)))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("payment_incidents =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := s.RecordIncident(ctx, registration.Incident{AttemptID: "x", Kind: "bogus", CreatedAt: at}); err == nil {
		t.Error("an incident of an unknown kind was stored")
	}
}

func testRegistration(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := newStore(t, h, 5)
	a := newAttempt(t, "", "h")
	if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	r := newRegistration(a, true)
	// Stored in reverse: Registration must return display order.
	r.Steps = []registration.Step{
		{Name: registration.StepAddToMailingList, Status: registration.StepPending},
		{Name: registration.StepSendConfirmation, Status: registration.StepPending},
		{Name: registration.StepSaveOrder, Status: registration.StepPending},
	}
	if err := s.CompleteAttempt(ctx, a, r, noEnqueue); err != nil {
		t.Fatal(err)
	}
	got, err := s.Registration(ctx, r.ID)
	if err != nil {
		t.Fatalf("Registration: %v", err)
	}
	var names []string
	for _, st := range got.Steps {
		names = append(names, string(st.Name))
	}
	if want := "save_order send_confirmation add_to_mailing_list"; strings.Join(names, " ") != want {
		t.Errorf("steps = %q; want %q", strings.Join(names, " "), want)
	}
	if got.Amount != 14900 || got.Payment.Last4 != "1111" || got.Payment.Brand != "visa" || !got.Newsletter ||
		got.Status != registration.StatusPaid || !got.CreatedAt.Equal(r.CreatedAt) {
		t.Errorf("Registration = %+v; want the stored fields back", got)
	}

	for _, id := range []string{"", "nope", strings.Repeat("a", 32)} {
		if _, err := s.Registration(ctx, id); !errors.Is(err, registration.ErrNotFound) {
			t.Errorf("Registration(%q) err = %v; want ErrNotFound", id, err)
		}
	}
}

// testNoOversell is invariant 5: at any concurrency, seats taken never
// exceed the capacity.
func testNoOversell(t *testing.T, h Harness) {
	const capacity, attempts = 7, 200
	ctx := t.Context()
	s, db := newStore(t, h, capacity)

	var maxSeen atomic.Int64
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			var n int64
			if err := db.DB.QueryRowContext(ctx, db.Bind(`SELECT taken FROM ticket_stock WHERE event_id = ? AND ticket_id = 'standard'`), testEventID).Scan(&n); err == nil && n > maxSeen.Load() {
				maxSeen.Store(n)
			}
			select {
			case <-stopWatch:
				return
			default:
			}
		}
	}()

	var ok, keyed, held atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, attempts)
	for i := range attempts {
		key := ""
		if i%2 == 0 {
			key = fmt.Sprintf("key-%d", i)
		}
		a := newAttempt(t, key, "hash")
		wg.Go(func() {
			<-start
			replay, err := s.StartAttempt(ctx, a, registration.Outcome{Code: registration.CodeSoldOut})
			switch {
			case err == nil && replay == nil:
				ok.Add(1)
				if a.IdempotencyKey != "" {
					keyed.Add(1)
				}
			case errors.Is(err, registration.ErrSeatsHeld):
				// Every seat is held, none paid: sold out for now only.
				held.Add(1)
			default:
				errs <- fmt.Errorf("StartAttempt = %v, %v", replay, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(stopWatch)
	<-watched
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok.Load() != capacity || held.Load() != attempts-capacity {
		t.Errorf("%d attempts held a seat and %d were told the seats are held; want %d and %d", ok.Load(), held.Load(), capacity, attempts-capacity)
	}
	if got := db.queryInt(t, `SELECT count(*) FROM idempotency_keys`); got != int(keyed.Load()) {
		t.Errorf("%d idempotency keys stored; want %d, those of the attempts holding a seat", got, keyed.Load())
	}
	if got := db.taken(t, "standard"); got != capacity {
		t.Errorf("taken = %d; want %d", got, capacity)
	}
	if got := db.holdCount(t); got != capacity {
		t.Errorf("%d seat holds; want %d", got, capacity)
	}
	if m := maxSeen.Load(); m > capacity {
		t.Errorf("taken was seen at %d, above the capacity %d", m, capacity)
	}
}
