package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// limitAttempt is a fresh attempt for the standard ticket by email, limited
// to max registrations per address (0 for none). The attempt carries the
// address lower-cased, as the service passes it.
func limitAttempt(t *testing.T, key, email string, max int) registration.Attempt {
	t.Helper()
	a := newAttempt(t, key, "hash-"+key)
	a.Email, a.MaxPerEmail = registration.EmailKey(email), max
	return a
}

// registerEmail stores a paid registration of the standard ticket for
// email, written as given.
func registerEmail(t *testing.T, s Store, email string, max int) registration.Registration {
	t.Helper()
	a := limitAttempt(t, "", email, max)
	if _, err := s.StartAttempt(t.Context(), a, registration.Outcome{}); err != nil {
		t.Fatalf("StartAttempt for %s: %v", email, err)
	}
	r := newRegistration(a, false)
	r.Email = email
	if err := s.CompleteAttempt(t.Context(), a, r, noEnqueue); err != nil {
		t.Fatalf("CompleteAttempt for %s: %v", email, err)
	}
	return r
}

// testEmailLimit covers Attempt.MaxPerEmail: registrations not cancelled
// and seats held with the address count against it, compared lower-cased;
// a refusal writes nothing (no seat, no key, no hold).
func testEmailLimit(t *testing.T, h Harness) {
	soldOut := registration.Outcome{Code: registration.CodeSoldOut, Message: "sold out"}

	// refused asserts that a StartAttempt for email is refused with
	// ErrEmailLimit and changes nothing.
	refused := func(t *testing.T, s Store, e Env, email string, max int) {
		t.Helper()
		taken, holds := e.taken(t, "standard"), e.holdCount(t)
		a := limitAttempt(t, "key-refused", email, max)
		replay, err := s.StartAttempt(t.Context(), a, soldOut)
		if !errors.Is(err, registration.ErrEmailLimit) || replay != nil {
			t.Fatalf("StartAttempt for %s = %v, %v; want ErrEmailLimit", email, replay, err)
		}
		if got := e.taken(t, "standard"); got != taken {
			t.Errorf("taken = %d after the refusal; want %d", got, taken)
		}
		if got := e.holdCount(t); got != holds {
			t.Errorf("%d holds after the refusal; want %d", got, holds)
		}
		if k := e.readKey(t, "key-refused"); k.exists {
			t.Errorf("key = %+v after the refusal; want none kept", k)
		}
	}

	t.Run("a held seat blocks", func(t *testing.T) {
		t.Parallel()
		s, e := newStore(t, h, 10)
		first := limitAttempt(t, "key-1", "ada@example.org", 1)
		if _, err := s.StartAttempt(t.Context(), first, soldOut); err != nil {
			t.Fatal(err)
		}
		var email string
		if err := e.DB.QueryRowContext(t.Context(), e.Bind(`SELECT email FROM seat_holds WHERE id = ?`), first.ID).Scan(&email); err != nil {
			t.Fatal(err)
		}
		if email != "ada@example.org" {
			t.Errorf("hold email = %q; want ada@example.org", email)
		}
		refused(t, s, e, "ADA@example.org", 1)
		// Another address, or the same one without a limit, proceeds.
		if _, err := s.StartAttempt(t.Context(), limitAttempt(t, "", "grace@example.org", 1), soldOut); err != nil {
			t.Errorf("another address: %v", err)
		}
		unlimited := limitAttempt(t, "", "ada@example.org", 0)
		if _, err := s.StartAttempt(t.Context(), unlimited, soldOut); err != nil {
			t.Errorf("no limit: %v", err)
		}
		// Once the held attempts fail, the address may try again.
		for _, a := range []registration.Attempt{first, unlimited} {
			if err := s.FailAttempt(t.Context(), a, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.StartAttempt(t.Context(), limitAttempt(t, "key-again", "ada@example.org", 1), soldOut); err != nil {
			t.Errorf("after the held attempt failed: %v", err)
		}
	})

	t.Run("a registration blocks, compared lower-cased; a cancelled one does not", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, e := newStore(t, h, 10)
		r := registerEmail(t, s, "Ada.Lovelace@Example.ORG", 1)
		refused(t, s, e, "ada.lovelace@example.org", 1)
		refused(t, s, e, "ADA.LOVELACE@EXAMPLE.ORG", 1)
		// The community ticket counts apart.
		a := limitAttempt(t, "", "ada.lovelace@example.org", 1)
		a.TicketID = "community"
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Errorf("another ticket: %v", err)
		}
		if err := s.CancelRegistration(ctx, r.ID, nil, auditEntry("cancel", r.ID), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StartAttempt(ctx, limitAttempt(t, "key-after", "ada.lovelace@example.org", 1), soldOut); err != nil {
			t.Errorf("after the cancellation: %v", err)
		}
	})

	// Addresses are compared lower-cased as Go lower-cases them, letters
	// beyond ASCII too, whatever the database's own lower() does with them.
	t.Run("letters beyond ASCII", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, e := newStore(t, h, 10)
		registerEmail(t, s, "MÜLLER@Example.org", 1)
		registerEmail(t, s, "JÜRGEN.ÖZ@Example.ORG", 1)
		for _, email := range []string{"JÜRGEN.ÖZ@Example.ORG", "jürgen.öz@example.org", "Jürgen.Öz@EXAMPLE.org"} {
			refused(t, s, e, email, 1)
		}
		// A held seat's address is compared so too.
		held := limitAttempt(t, "", "ÉLODIE@example.org", 1)
		if _, err := s.StartAttempt(ctx, held, soldOut); err != nil {
			t.Fatal(err)
		}
		refused(t, s, e, "élodie@EXAMPLE.org", 1)
		for _, email := range []string{"jurgen.oz@example.org", "jürgen.ö@example.org", "müller2@example.org"} {
			if _, err := s.StartAttempt(ctx, limitAttempt(t, "", email, 1), soldOut); err != nil {
				t.Errorf("%s, another address: %v", email, err)
			}
		}
	})

	t.Run("limit 3 allows 3", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, e := newStore(t, h, 10)
		registerEmail(t, s, "ada@example.org", 3)
		for i := range 2 {
			if _, err := s.StartAttempt(ctx, limitAttempt(t, fmt.Sprintf("key-%d", i), "ada@example.org", 3), soldOut); err != nil {
				t.Fatalf("registration %d of 3: %v", i+2, err)
			}
		}
		refused(t, s, e, "ada@example.org", 3)
		if got := e.taken(t, "standard"); got != 3 {
			t.Errorf("taken = %d; want 3", got)
		}
	})

	// A replayed key answers its stored outcome, even when the address is
	// at its limit because of that very registration.
	t.Run("a replay is not refused", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, _ := newStore(t, h, 10)
		a := limitAttempt(t, "key-1", "ada@example.org", 1)
		if _, err := s.StartAttempt(ctx, a, soldOut); err != nil {
			t.Fatal(err)
		}
		if err := s.CompleteAttempt(ctx, a, newRegistration(a, false), noEnqueue); err != nil {
			t.Fatal(err)
		}
		replay, err := s.StartAttempt(ctx, limitAttempt(t, "key-1", "ada@example.org", 1), soldOut)
		if err != nil || replay == nil || replay.RegistrationID != a.ID {
			t.Errorf("replay = %+v, %v; want the registration %s", replay, err, a.ID)
		}
	})
}

// testEmailLimitRace: 20 attempts for one address with limit 1 at once,
// each with a key of its own: exactly one holds a seat, the others are
// refused and keep nothing.
func testEmailLimitRace(t *testing.T, h Harness) {
	const copies = 20
	ctx := t.Context()
	s, e := newStore(t, h, 100)
	var won, refusedN atomic.Int64
	errs := make(chan error, copies)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range copies {
		a := limitAttempt(t, fmt.Sprintf("key-%d", i), "ada@example.org", 1)
		wg.Go(func() {
			<-start
			replay, err := s.StartAttempt(ctx, a, registration.Outcome{Code: registration.CodeSoldOut})
			switch {
			case err == nil && replay == nil:
				won.Add(1)
			case errors.Is(err, registration.ErrEmailLimit):
				refusedN.Add(1)
			default:
				errs <- fmt.Errorf("StartAttempt = %+v, %v", replay, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if won.Load() != 1 || refusedN.Load() != copies-1 {
		t.Errorf("%d attempts held a seat, %d were refused; want 1 and %d", won.Load(), refusedN.Load(), copies-1)
	}
	if got := e.taken(t, "standard"); got != 1 {
		t.Errorf("taken = %d; want 1", got)
	}
	if got := e.holdCount(t); got != 1 {
		t.Errorf("%d holds; want 1", got)
	}
	if got := e.queryInt(t, `SELECT count(*) FROM idempotency_keys`); got != 1 {
		t.Errorf("%d idempotency keys; want 1, the winner's", got)
	}
}

// testAvailability: every ticket's capacity, seats taken (paid and held)
// and held.
func testAvailability(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := newStore(t, h, 5)
	register(t, s, false)
	r := register(t, s, false)
	register(t, s, false)
	if _, err := s.StartAttempt(ctx, newAttempt(t, "key-held", "h"), registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelRegistration(ctx, r.ID, nil, auditEntry("cancel", r.ID), nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Availability(ctx, testEventID)
	if err != nil {
		t.Fatalf("Availability: %v", err)
	}
	want := map[string]registration.Availability{
		"standard":  {Capacity: 5, Taken: 3, Held: 1},
		"community": {Capacity: 50},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Availability = %v; want %v", got, want)
	}
	if st := got["standard"]; st.Left() != 2 || st.SoldOut() {
		t.Errorf("standard: left %d, sold out %v; want 2, false", st.Left(), st.SoldOut())
	}
	if other, err := s.Availability(ctx, "another-event"); err != nil || len(other) != 0 {
		t.Errorf("Availability of another event = %v, %v; want none", other, err)
	}
}

// testRecentRegistrations: the ticket's registrations by one address since
// a moment, compared lower-cased, cancelled ones left out, newest first.
func testRecentRegistrations(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := newStore(t, h, 40)
	now := time.Now().UTC().Truncate(time.Microsecond)
	at := func(email, ticket string, age time.Duration) registration.Registration {
		t.Helper()
		a := newAttempt(t, "", "h")
		a.TicketID, a.CreatedAt = ticket, now.Add(-age)
		if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
			t.Fatal(err)
		}
		r := newRegistration(a, false)
		r.Email = email
		if err := s.CompleteAttempt(ctx, a, r, noEnqueue); err != nil {
			t.Fatal(err)
		}
		return r
	}
	old := at("ada@example.org", "standard", 30*time.Hour)
	mid := at("Ada@Example.org", "standard", 2*time.Hour)
	cancelled := at("ada@example.org", "standard", time.Hour)
	newest := at("ADA@EXAMPLE.ORG", "standard", time.Minute)
	at("grace@example.org", "standard", time.Minute)
	at("ada@example.org", "community", time.Minute)
	if err := s.CancelRegistration(ctx, cancelled.ID, nil, auditEntry("cancel", cancelled.ID), nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.RecentRegistrations(ctx, testEventID, "standard", "ada@EXAMPLE.org", now.Add(-24*time.Hour))
	if err != nil {
		t.Fatalf("RecentRegistrations: %v", err)
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if want := []string{newest.ID, mid.ID}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("RecentRegistrations = %v; want %v (newest first, not cancelled, within the window)", ids, want)
	}
	if len(got) == 2 && (got[0].Email != "ADA@EXAMPLE.ORG" || !got[0].CreatedAt.Equal(newest.CreatedAt) || got[0].Amount != 14900) {
		t.Errorf("newest = %+v; want its fields as stored", got[0])
	}
	all, err := s.RecentRegistrations(ctx, testEventID, "standard", "ada@example.org", now.Add(-48*time.Hour))
	if err != nil || len(all) != 3 || all[2].ID != old.ID {
		t.Errorf("RecentRegistrations over 48 h = %d, %v; want 3, the oldest last", len(all), err)
	}
	// Letters beyond ASCII are compared lower-cased too, and other such
	// addresses are left out.
	umlaut := at("JÜRGEN@Example.org", "standard", 3*time.Minute)
	at("MÜLLER@example.org", "standard", 2*time.Minute)
	got, err = s.RecentRegistrations(ctx, testEventID, "standard", "jürgen@EXAMPLE.org", now.Add(-24*time.Hour))
	if err != nil || len(got) != 1 || got[0].ID != umlaut.ID {
		t.Errorf("RecentRegistrations of jürgen@EXAMPLE.org = %d, %v; want the one of JÜRGEN@Example.org", len(got), err)
	}
	// At most 10, the newest, found in the database or compared in Go.
	for _, email := range []string{"Many@example.org", "MÄNY@example.org"} {
		var want []string
		for i := range 11 {
			r := at(email, "standard", time.Duration(11-i)*time.Second)
			want = append([]string{r.ID}, want...)
		}
		got, err := s.RecentRegistrations(ctx, testEventID, "standard", strings.ToLower(email), now.Add(-24*time.Hour))
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if err != nil || fmt.Sprint(ids) != fmt.Sprint(want[:10]) {
			t.Errorf("RecentRegistrations of %s = %v, %v; want the 10 newest of 11", email, ids, err)
		}
	}
	if none, err := s.RecentRegistrations(ctx, testEventID, "standard", "nobody@example.org", now.Add(-48*time.Hour)); err != nil || len(none) != 0 {
		t.Errorf("RecentRegistrations of an unknown address = %v, %v; want none", none, err)
	}
}
