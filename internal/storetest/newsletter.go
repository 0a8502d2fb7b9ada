package storetest

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
)

// newsletterTests are the local mailing list's double opt-in: pending on
// subscribe, confirmed once by the link's token, exported only once
// confirmed.
var newsletterTests = []struct {
	name string
	run  func(*testing.T, Harness)
}{
	{"SubscribePending", testSubscribePending},
	{"ConfirmSubscription", testConfirmSubscription},
	{"SubscribedNotAskedAgain", testSubscribedNotAskedAgain},
	{"ExportOnlySubscribed", testExportOnlySubscribed},
	{"ConfirmSubscriptionRace", testConfirmSubscriptionRace},
	{"SubscribePendingBadInput", testSubscribePendingBadInput},
}

// optInClock is a test's settable clock for the store.
type optInClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *optInClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *optInClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// optInStore is a store on a fresh database, reading the time from the
// returned clock (set to day 0, 10:00 UTC).
func optInStore(t *testing.T, h Harness) (Store, Env, *optInClock) {
	t.Helper()
	c := &optInClock{now: optInDay}
	e := h(t, c.Now)
	if err := e.Store.SyncTickets(t.Context(), testEvent(20)); err != nil {
		t.Fatalf("SyncTickets: %v", err)
	}
	return e.Store, e, c
}

var optInDay = time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)

// consenting stores a registration by addr, with the newsletter consent
// given at consentedAt (no consent when it is zero).
func consenting(t *testing.T, s Store, addr string, consentedAt time.Time) registration.Registration {
	t.Helper()
	return registerAs(t, s, "standard", func(r *registration.Registration) {
		r.Email = addr
		r.Newsletter, r.NewsletterConsentedAt = !consentedAt.IsZero(), consentedAt
	})
}

func subscriberOf(r registration.Registration) registration.Subscriber {
	return registration.Subscriber{Email: r.Email, FirstName: r.FirstName, LastName: r.LastName,
		EventID: r.EventID, RegistrationID: r.ID}
}

// hashOf stands for the SHA-256 of a token: the store only keeps what it
// is given.
func hashOf(name string) string { return fmt.Sprintf("%064x", name) }

// listRow is an address's row on the local mailing list.
type listRow struct {
	exists               bool
	status, regID, first string
	tokenHash            sql.NullString
	consentedAt          storedTime
	confirmedAt          sql.Null[storedTime]
}

func (e Env) listRow(t *testing.T, addr string) listRow {
	t.Helper()
	var r listRow
	err := e.DB.QueryRowContext(t.Context(), e.Bind(`SELECT status, registration_id, first_name, confirm_token_hash,
		consented_at, confirmed_at FROM mailing_list WHERE email = ?`), addr).
		Scan(&r.status, &r.regID, &r.first, &r.tokenHash, &r.consentedAt, &r.confirmedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return r
	}
	if err != nil {
		t.Fatalf("read mailing list row %s: %v", addr, err)
	}
	r.exists = true
	return r
}

// confirmedAt is a registration's newsletter_confirmed_at (zero for NULL).
func (e Env) confirmedAt(t *testing.T, id string) time.Time {
	t.Helper()
	var at sql.Null[storedTime]
	if err := e.DB.QueryRowContext(t.Context(), e.Bind(`SELECT newsletter_confirmed_at FROM registrations WHERE id = ?`), id).
		Scan(&at); err != nil {
		t.Fatalf("read newsletter_confirmed_at of %s: %v", id, err)
	}
	return at.V.Time
}

func subscribers(t *testing.T, s Store) []admin.Subscriber {
	t.Helper()
	var got []admin.Subscriber
	if err := s.EachSubscriber(t.Context(), func(sub admin.Subscriber) error {
		got = append(got, sub)
		return nil
	}); err != nil {
		t.Fatalf("EachSubscriber: %v", err)
	}
	return got
}

func subscribePending(t *testing.T, s Store, sub registration.Subscriber, hash string) bool {
	t.Helper()
	ask, err := s.SubscribePending(t.Context(), sub, hash)
	if err != nil {
		t.Fatalf("SubscribePending(%s): %v", sub.Email, err)
	}
	return ask
}

// testSubscribePending: an attendee who consents is pending under one
// link, with the consent time of their first consent; a retry's new link
// replaces the old one; nothing is exported yet.
func testSubscribePending(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e, clock := optInStore(t, h)
	consent := optInDay.Add(-time.Hour)
	r1 := consenting(t, s, "Ada@Example.org", consent)

	if !subscribePending(t, s, subscriberOf(r1), hashOf("first")) {
		t.Fatal("SubscribePending of a new address = no need to ask; want ask")
	}
	row := e.listRow(t, "ada@example.org")
	if !row.exists || row.status != "pending" || row.tokenHash.String != hashOf("first") || row.regID != r1.ID ||
		!row.consentedAt.Equal(consent) || row.confirmedAt.Valid {
		t.Errorf("row after SubscribePending = %+v; want pending, the link's hash, registration %s, consented at %s, not confirmed",
			row, r1.ID, consent)
	}
	sub, err := s.PendingSubscription(ctx, hashOf("first"))
	if err != nil || sub.Email != "ada@example.org" || sub.RegistrationID != r1.ID || sub.EventID != testEventID {
		t.Errorf("PendingSubscription = %+v, %v; want ada@example.org of %s", sub, err, r1.ID)
	}
	if st, err := s.NewsletterState(ctx, r1.ID); err != nil || !st.Pending || !st.ConfirmedAt.IsZero() {
		t.Errorf("NewsletterState = %+v, %v; want pending, not confirmed", st, err)
	}
	if got := subscribers(t, s); len(got) != 0 {
		t.Errorf("EachSubscriber lists %v while the address awaits confirmation; want nobody", got)
	}

	// The step retried: a new link, and the old one stops working.
	clock.Set(optInDay.Add(time.Minute))
	if !subscribePending(t, s, subscriberOf(r1), hashOf("retry")) {
		t.Fatal("SubscribePending retried = no need to ask; want ask (still pending)")
	}
	if _, err := s.PendingSubscription(ctx, hashOf("first")); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("PendingSubscription(first link) after a retry = %v; want ErrNotFound: two links must not both work", err)
	}
	if _, err := s.PendingSubscription(ctx, hashOf("retry")); err != nil {
		t.Errorf("PendingSubscription(new link) = %v", err)
	}

	// Another registration by the same address, consenting later: its
	// names and registration are kept, the first consent's time too.
	later := optInDay.Add(2 * time.Hour)
	clock.Set(later)
	r2 := registerAs(t, s, "standard", func(r *registration.Registration) {
		r.Email, r.FirstName = "ADA@example.org", "Augusta"
		r.Newsletter, r.NewsletterConsentedAt = true, later
	})
	subscribePending(t, s, subscriberOf(r2), hashOf("second"))
	row = e.listRow(t, "ada@example.org")
	if row.regID != r2.ID || row.first != "Augusta" || !row.consentedAt.Equal(consent) || row.status != "pending" ||
		row.tokenHash.String != hashOf("second") {
		t.Errorf("row after a second registration = %+v; want registration %s, Augusta, consent kept at %s, pending under the newest link",
			row, r2.ID, consent)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM mailing_list`); n != 1 {
		t.Errorf("mailing_list has %d rows; want 1 (one per address)", n)
	}
}

// testConfirmSubscription: the link confirms once; the address is then
// subscribed, its consenting registrations confirmed, and the link dead.
func testConfirmSubscription(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e, clock := optInStore(t, h)
	consent := optInDay.Add(-time.Hour)
	r1 := consenting(t, s, "grace@example.org", consent)
	r2 := consenting(t, s, "Grace@Example.org", consent.Add(time.Minute))
	noConsent := consenting(t, s, "grace@example.org", time.Time{})
	other := consenting(t, s, "ada@example.org", consent)
	subscribePending(t, s, subscriberOf(r1), hashOf("grace-1"))
	subscribePending(t, s, subscriberOf(r2), hashOf("grace-2"))
	subscribePending(t, s, subscriberOf(other), hashOf("ada"))

	if _, err := s.ConfirmSubscription(ctx, hashOf("grace-1")); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("ConfirmSubscription(replaced link) = %v; want ErrNotFound", err)
	}
	if _, err := s.ConfirmSubscription(ctx, hashOf("never sent")); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("ConfirmSubscription(unknown link) = %v; want ErrNotFound", err)
	}
	if row := e.listRow(t, "grace@example.org"); row.status != "pending" {
		t.Fatalf("a dead link changed the row: %+v", row)
	}

	at := optInDay.Add(3 * time.Hour)
	clock.Set(at)
	sub, err := s.ConfirmSubscription(ctx, hashOf("grace-2"))
	if err != nil {
		t.Fatalf("ConfirmSubscription: %v", err)
	}
	if sub.Email != "grace@example.org" || sub.RegistrationID != r2.ID {
		t.Errorf("ConfirmSubscription = %+v; want grace@example.org of %s", sub, r2.ID)
	}
	row := e.listRow(t, "grace@example.org")
	if row.status != "subscribed" || row.tokenHash.Valid || !row.confirmedAt.Valid || !row.confirmedAt.V.Equal(at) ||
		!row.consentedAt.Equal(consent) {
		t.Errorf("row after confirming = %+v; want subscribed, no link, confirmed at %s, consent kept at %s", row, at, consent)
	}
	for _, c := range []struct {
		name string
		id   string
		want time.Time
	}{
		{"the confirming registration", r2.ID, at},
		{"an earlier consenting registration of the address", r1.ID, at},
		{"a registration of the address without consent", noConsent.ID, time.Time{}},
		{"another address's registration", other.ID, time.Time{}},
	} {
		if got := e.confirmedAt(t, c.id); !got.Equal(c.want) {
			t.Errorf("%s: newsletter_confirmed_at = %s; want %s", c.name, got, c.want)
		}
	}
	if st, err := s.NewsletterState(ctx, r2.ID); err != nil || st.Pending || !st.ConfirmedAt.Equal(at) {
		t.Errorf("NewsletterState after confirming = %+v, %v; want confirmed at %s", st, err, at)
	}
	if st, err := s.NewsletterState(ctx, other.ID); err != nil || !st.Pending {
		t.Errorf("NewsletterState of another, pending address = %+v, %v; want pending", st, err)
	}
	if _, err := s.NewsletterState(ctx, "no-such-registration"); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("NewsletterState(unknown) = %v; want ErrNotFound", err)
	}

	// The link works once.
	clock.Set(at.Add(time.Hour))
	if _, err := s.ConfirmSubscription(ctx, hashOf("grace-2")); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("second ConfirmSubscription = %v; want ErrNotFound", err)
	}
	if _, err := s.PendingSubscription(ctx, hashOf("grace-2")); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("PendingSubscription of a used link = %v; want ErrNotFound", err)
	}
	if row := e.listRow(t, "grace@example.org"); !row.confirmedAt.V.Equal(at) {
		t.Errorf("a second confirmation moved confirmed_at to %s; want %s", row.confirmedAt.V.Time, at)
	}
	got := subscribers(t, s)
	if len(got) != 1 || got[0].Email != "grace@example.org" || !got[0].ConsentedAt.Equal(consent) || !got[0].ConfirmedAt.Equal(at) {
		t.Errorf("EachSubscriber = %+v; want only grace@example.org, consented %s, confirmed %s", got, consent, at)
	}
}

// testSubscribedNotAskedAgain: an address already subscribed is not sent
// another link, stays subscribed, and its new registration counts as
// confirmed.
func testSubscribedNotAskedAgain(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e, clock := optInStore(t, h)
	r1 := consenting(t, s, "ada@example.org", optInDay)
	subscribePending(t, s, subscriberOf(r1), hashOf("first"))
	confirmed := optInDay.Add(time.Hour)
	clock.Set(confirmed)
	if _, err := s.ConfirmSubscription(ctx, hashOf("first")); err != nil {
		t.Fatal(err)
	}

	clock.Set(optInDay.AddDate(0, 0, 1))
	r2 := consenting(t, s, "Ada@example.org", optInDay.AddDate(0, 0, 1))
	if subscribePending(t, s, subscriberOf(r2), hashOf("again")) {
		t.Error("SubscribePending of a subscribed address = ask; want no need to ask")
	}
	if _, err := s.PendingSubscription(ctx, hashOf("again")); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("PendingSubscription(link of a subscribed address) = %v; want ErrNotFound: no link was issued", err)
	}
	row := e.listRow(t, "ada@example.org")
	if row.status != "subscribed" || row.tokenHash.Valid || !row.confirmedAt.V.Equal(confirmed) || row.regID != r2.ID {
		t.Errorf("row = %+v; want still subscribed, no link, confirmed at %s, registration %s", row, confirmed, r2.ID)
	}
	if got := e.confirmedAt(t, r2.ID); !got.Equal(confirmed) {
		t.Errorf("the new registration's newsletter_confirmed_at = %s; want the address's confirmation, %s", got, confirmed)
	}
	if st, err := s.NewsletterState(ctx, r2.ID); err != nil || st.Pending || !st.ConfirmedAt.Equal(confirmed) {
		t.Errorf("NewsletterState = %+v, %v; want confirmed at %s", st, err, confirmed)
	}
}

// testExportOnlySubscribed: the export lists confirmed addresses and those
// subscribed before confirmation was asked, never pending ones.
func testExportOnlySubscribed(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _, clock := optInStore(t, h)
	for i, addr := range []string{"c@example.org", "a@example.org", "d@example.org", "b@example.org"} {
		r := consenting(t, s, addr, optInDay)
		subscribePending(t, s, subscriberOf(r), hashOf(addr))
		if i%2 == 0 {
			clock.Set(optInDay.Add(time.Duration(i+1) * time.Minute))
			if _, err := s.ConfirmSubscription(ctx, hashOf(addr)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// An address that was on the list before confirmation was asked.
	if err := s.Subscribe(ctx, registration.Subscriber{Email: "e@example.org", FirstName: "E", EventID: testEventID,
		RegistrationID: "legacy"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sub := range subscribers(t, s) {
		line := sub.Email
		if !sub.ConfirmedAt.IsZero() {
			line += " confirmed"
		}
		got = append(got, line)
	}
	want := []string{"c@example.org confirmed", "d@example.org confirmed", "e@example.org"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("EachSubscriber = %q; want %q (by email, pending a@ and b@ left out)", got, want)
	}
}

// testConfirmSubscriptionRace: of many requests confirming the same link
// at once, exactly one confirms.
func testConfirmSubscriptionRace(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e, _ := optInStore(t, h)
	r := consenting(t, s, "ada@example.org", optInDay)
	subscribePending(t, s, subscriberOf(r), hashOf("link"))
	const n = 8
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			_, err := s.ConfirmSubscription(ctx, hashOf("link"))
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	confirmed := 0
	for err := range errs {
		switch {
		case err == nil:
			confirmed++
		case !errors.Is(err, registration.ErrNotFound):
			t.Errorf("ConfirmSubscription: %v", err)
		}
	}
	if confirmed != 1 {
		t.Errorf("%d of %d concurrent confirmations succeeded; want exactly 1", confirmed, n)
	}
	if row := e.listRow(t, "ada@example.org"); row.status != "subscribed" || row.tokenHash.Valid {
		t.Errorf("row = %+v; want subscribed without a link", row)
	}
}

// testSubscribePendingBadInput: without a link's hash nothing is stored.
func testSubscribePendingBadInput(t *testing.T, h Harness) {
	s, e, _ := optInStore(t, h)
	r := consenting(t, s, "ada@example.org", optInDay)
	if _, err := s.SubscribePending(t.Context(), subscriberOf(r), ""); err == nil {
		t.Error("SubscribePending without a token hash succeeded; want an error")
	}
	if n := e.queryInt(t, `SELECT count(*) FROM mailing_list`); n != 0 {
		t.Errorf("mailing_list has %d rows after a refused SubscribePending; want 0", n)
	}
}
