package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

// officeTests are the back office's conformance tests.
var officeTests = []struct {
	name string
	run  func(*testing.T, Harness)
}{
	{"BackOfficeColumns", testBackOfficeColumns},
	{"CancelRegistration", testCancelRegistration},
	{"RequestRefund", testRequestRefund},
	{"ConcurrentRefunds", testConcurrentRefunds},
	{"FinishRefund", testFinishRefund},
	{"RetrySteps", testRetrySteps},
	{"CancelledStaysCancelled", testCancelledStaysCancelled},
	{"EditAttendee", testEditAttendee},
	{"MessageLifecycle", testMessageLifecycle},
	{"Notices", testNotices},
	{"Accounts", testAccounts},
	{"Sessions", testSessions},
	{"LoginThrottle", testLoginThrottle},
	{"AuditLog", testAuditLog},
	{"SearchRegistrations", testSearchRegistrations},
	{"EachRegistration", testEachRegistration},
	{"EachSubscriber", testEachSubscriber},
	{"Dashboard", testDashboard},
	{"PaymentIncidents", testPaymentIncidents},
}

// registerAs stores a registration for a fresh attempt on ticket, after
// edit has adjusted it.
func registerAs(t *testing.T, s Store, ticket string, edit func(*registration.Registration)) registration.Registration {
	t.Helper()
	a := newAttempt(t, "", "h")
	a.TicketID = ticket
	if _, err := s.StartAttempt(t.Context(), a, registration.Outcome{}); err != nil {
		t.Fatalf("StartAttempt: %v", err)
	}
	r := newRegistration(a, false)
	if ticket == "community" {
		r.Amount, r.Payment = 0, payment.Charge{}
	}
	if edit != nil {
		edit(&r)
	}
	if err := s.CompleteAttempt(t.Context(), a, r, noEnqueue); err != nil {
		t.Fatalf("CompleteAttempt: %v", err)
	}
	return r
}

func auditEntry(action, regID string) registration.AuditEntry {
	return registration.AuditEntry{Actor: "org@example.org", Action: action, RegistrationID: regID,
		Detail: action + " detail", Address: "192.0.2.7"}
}

// thenMark returns a TxFunc that writes a marker row through the
// transaction it is given, and counts its calls.
func (e Env) thenMark(key string, calls *int) registration.TxFunc {
	return func(ctx context.Context, tx *sql.Tx) error {
		*calls++
		_, err := tx.ExecContext(ctx, e.Bind(`INSERT INTO login_throttle (key, failures, last_failure_at, blocked_until)
			VALUES (?, 1, ?, ?)`), key, markerTime, markerTime)
		return err
	}
}

// markerTime is a time both engines accept: stored text, or timestamptz.
const markerTime = "2027-01-05T10:00:00.000000Z"

func (e Env) auditCount(t *testing.T, action string) int {
	t.Helper()
	return e.queryInt(t, `SELECT count(*) FROM audit_log WHERE action = ?`, action)
}

func (e Env) markers(t *testing.T, key string) int {
	t.Helper()
	return e.queryInt(t, `SELECT count(*) FROM login_throttle WHERE key = ?`, key)
}

func officeStore(t *testing.T, h Harness, capacity int) (Store, Env) {
	t.Helper()
	return newStore(t, h, capacity)
}

func testBackOfficeColumns(t *testing.T, h Harness) {
	s, _ := officeStore(t, h, 5)
	consented := time.Date(2027, 1, 5, 10, 0, 0, 123456000, time.UTC)
	billing := payment.BillingAddress{Line1: "12 Rue de la Paix", Line2: "Bât. B", City: "Paris", PostalCode: "75002",
		Region: "Île-de-France", Country: "FR"}
	tests := []struct {
		name     string
		edit     func(*registration.Registration)
		wantAt   time.Time
		wantB    payment.BillingAddress
		wantText string
	}{
		{"with consent and billing", func(r *registration.Registration) {
			r.Newsletter, r.NewsletterConsentedAt, r.Billing = true, consented, billing
			r.NewsletterConsentText = registration.NewsletterConsentText
		}, consented, billing, registration.NewsletterConsentText},
		{"without", nil, time.Time{}, payment.BillingAddress{}, ""},
	}
	for _, tt := range tests {
		r := registerAs(t, s, "standard", tt.edit)
		got, err := s.Registration(t.Context(), r.ID)
		if err != nil {
			t.Fatalf("%s: Registration: %v", tt.name, err)
		}
		if !got.NewsletterConsentedAt.Equal(tt.wantAt) || got.Billing != tt.wantB || got.Refunded != 0 || !got.CancelledAt.IsZero() {
			t.Errorf("%s: consent %v billing %+v refunded %d cancelled %v; want %v %+v 0 zero", tt.name,
				got.NewsletterConsentedAt, got.Billing, got.Refunded, got.CancelledAt, tt.wantAt, tt.wantB)
		}
		if got.NewsletterConsentText != tt.wantText || got.Anonymised() {
			t.Errorf("%s: consent text %q anonymised %v; want %q, not anonymised", tt.name,
				got.NewsletterConsentText, got.AnonymisedAt, tt.wantText)
		}
		page, err := s.SearchRegistrations(t.Context(), admin.Filter{Query: r.ID, Limit: 10})
		if err != nil || len(page) != 1 {
			t.Fatalf("%s: SearchRegistrations by id = %d rows, %v; want 1", tt.name, len(page), err)
		}
		if page[0].Billing != tt.wantB || !page[0].NewsletterConsentedAt.Equal(tt.wantAt) || len(page[0].Steps) != 0 {
			t.Errorf("%s: search row billing %+v consent %v steps %d; want %+v %v 0", tt.name,
				page[0].Billing, page[0].NewsletterConsentedAt, len(page[0].Steps), tt.wantB, tt.wantAt)
		}
	}
}

func testCancelRegistration(t *testing.T, h Harness) {
	t.Run("seat back on sale, refund, audit, jobs", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, e := officeStore(t, h, 1)
		r := registerAs(t, s, "standard", nil)
		if _, err := s.StartAttempt(ctx, newAttempt(t, "", "h"), registration.Outcome{}); !errors.Is(err, registration.ErrSoldOut) {
			t.Fatalf("StartAttempt before cancelling = %v; want sold out", err)
		}
		var calls int
		refund := &registration.Refund{ID: "cancel-key", Amount: 5000, Reason: "illness", RequestedBy: "org@example.org"}
		if err := s.CancelRegistration(ctx, r.ID, refund, auditEntry("cancel", r.ID), e.thenMark("cancel-job", &calls)); err != nil {
			t.Fatalf("CancelRegistration: %v", err)
		}
		got, err := s.Registration(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != registration.StatusCancelled || got.CancelledAt.IsZero() {
			t.Errorf("after cancel: status %s cancelled at %v; want cancelled with a time", got.Status, got.CancelledAt)
		}
		if n := e.taken(t, "standard"); n != 0 {
			t.Errorf("taken = %d; want 0", n)
		}
		if calls != 1 || e.markers(t, "cancel-job") != 1 {
			t.Errorf("then called %d times, marker rows %d; want 1 and 1", calls, e.markers(t, "cancel-job"))
		}
		if n := e.auditCount(t, "cancel"); n != 1 {
			t.Errorf("audit entries = %d; want 1", n)
		}
		rf, err := s.Refund(ctx, "cancel-key")
		if err != nil {
			t.Fatalf("Refund: %v", err)
		}
		if rf.State != registration.RefundRequested || rf.Amount != 5000 || rf.Currency != "EUR" || rf.RegistrationID != r.ID || rf.Reason != "illness" {
			t.Errorf("refund = %+v; want requested 5000 EUR of %s", rf, r.ID)
		}
		if n := e.queryInt(t, `SELECT refund_reserved FROM registrations WHERE id = ?`, r.ID); n != 5000 {
			t.Errorf("refund_reserved = %d; want 5000", n)
		}
		// The seat is on sale again.
		if _, err := s.StartAttempt(ctx, newAttempt(t, "", "h"), registration.Outcome{}); err != nil {
			t.Errorf("StartAttempt after cancelling: %v", err)
		}
		// A second cancel changes nothing.
		calls = 0
		err = s.CancelRegistration(ctx, r.ID, &registration.Refund{ID: "other", Amount: 100, RequestedBy: "x"},
			auditEntry("cancel", r.ID), e.thenMark("cancel-job-2", &calls))
		if !errors.Is(err, registration.ErrAlreadyCancelled) {
			t.Errorf("second CancelRegistration = %v; want ErrAlreadyCancelled", err)
		}
		if calls != 0 || e.auditCount(t, "cancel") != 1 || e.taken(t, "standard") != 1 {
			t.Errorf("second cancel: then calls %d, audits %d, taken %d; want 0, 1, 1 (the new hold)",
				calls, e.auditCount(t, "cancel"), e.taken(t, "standard"))
		}
		if _, err := s.Refund(ctx, "other"); !errors.Is(err, registration.ErrNotFound) {
			t.Errorf("refund of the second cancel: %v; want ErrNotFound", err)
		}
	})
	t.Run("errors change nothing", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s, e := officeStore(t, h, 5)
		r := registerAs(t, s, "standard", nil)
		free := registerAs(t, s, "community", nil)
		failing := func(context.Context, *sql.Tx) error { return errors.New("job insert failed") }
		tests := []struct {
			name   string
			id     string
			refund *registration.Refund
			then   registration.TxFunc
			want   error
		}{
			{"unknown id", "nope", nil, nil, registration.ErrNotFound},
			{"then fails", r.ID, nil, failing, nil},
			{"refund exceeds", r.ID, &registration.Refund{ID: "k1", Amount: 14901, RequestedBy: "x"}, nil, registration.ErrRefundExceedsCharge},
			{"free ticket refund", free.ID, &registration.Refund{ID: "k2", Amount: 1, RequestedBy: "x"}, nil, registration.ErrNothingToRefund},
		}
		for _, tt := range tests {
			err := s.CancelRegistration(ctx, tt.id, tt.refund, auditEntry("cancel", tt.id), tt.then)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("%s: CancelRegistration = %v; want %v", tt.name, err, tt.want)
			}
		}
		for _, id := range []string{r.ID, free.ID} {
			got, err := s.Registration(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status == registration.StatusCancelled {
				t.Errorf("%s was cancelled by a failed cancel", id)
			}
		}
		if e.taken(t, "standard") != 1 || e.taken(t, "community") != 1 || e.auditCount(t, "cancel") != 0 ||
			e.queryInt(t, `SELECT count(*) FROM refunds`) != 0 {
			t.Errorf("failed cancels wrote: taken %d/%d audits %d refunds %d", e.taken(t, "standard"),
				e.taken(t, "community"), e.auditCount(t, "cancel"), e.queryInt(t, `SELECT count(*) FROM refunds`))
		}
	})
}

func testRequestRefund(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := officeStore(t, h, 5)
	r := registerAs(t, s, "standard", nil)
	free := registerAs(t, s, "community", nil)
	tests := []struct {
		name     string
		refund   registration.Refund
		want     error
		reserved int
	}{
		{"first", registration.Refund{ID: "r1", RegistrationID: r.ID, Amount: 10000}, nil, 10000},
		{"repeated id", registration.Refund{ID: "r1", RegistrationID: r.ID, Amount: 10000}, registration.ErrDuplicate, 10000},
		{"repeated id, other amount", registration.Refund{ID: "r1", RegistrationID: r.ID, Amount: 1}, registration.ErrDuplicate, 10000},
		{"over the rest", registration.Refund{ID: "r2", RegistrationID: r.ID, Amount: 4901}, registration.ErrRefundExceedsCharge, 10000},
		{"the rest", registration.Refund{ID: "r3", RegistrationID: r.ID, Amount: 4900}, nil, 14900},
		{"beyond", registration.Refund{ID: "r4", RegistrationID: r.ID, Amount: 1}, registration.ErrRefundExceedsCharge, 14900},
		{"free ticket", registration.Refund{ID: "r5", RegistrationID: free.ID, Amount: 1}, registration.ErrNothingToRefund, 14900},
		{"unknown registration", registration.Refund{ID: "r6", RegistrationID: "nope", Amount: 1}, registration.ErrNotFound, 14900},
	}
	wantRefunds := 0
	for _, tt := range tests {
		var calls int
		tt.refund.RequestedBy, tt.refund.Reason = "org@example.org", tt.name
		before := e.auditCount(t, "refund")
		err := s.RequestRefund(ctx, tt.refund, auditEntry("refund", tt.refund.RegistrationID), e.thenMark("job-"+tt.name, &calls))
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: RequestRefund = %v; want %v", tt.name, err, tt.want)
		}
		wantCalls, wantAudits := 0, before
		if tt.want == nil {
			wantCalls, wantAudits = 1, before+1
			wantRefunds++
		}
		if calls != wantCalls || e.markers(t, "job-"+tt.name) != wantCalls || e.auditCount(t, "refund") != wantAudits {
			t.Errorf("%s: then calls %d (rows %d), audits %d; want %d, %d", tt.name, calls,
				e.markers(t, "job-"+tt.name), e.auditCount(t, "refund"), wantCalls, wantAudits)
		}
		if n := e.queryInt(t, `SELECT refund_reserved FROM registrations WHERE id = ?`, r.ID); n != tt.reserved {
			t.Errorf("%s: refund_reserved = %d; want %d", tt.name, n, tt.reserved)
		}
		if n := e.queryInt(t, `SELECT count(*) FROM refunds`); n != wantRefunds {
			t.Errorf("%s: %d refunds stored; want %d", tt.name, n, wantRefunds)
		}
	}
	rf, err := s.Refund(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if rf.Amount != 10000 || rf.State != registration.RefundRequested || rf.RequestedBy != "org@example.org" || rf.Reason != "first" {
		t.Errorf("stored refund = %+v", rf)
	}
	list, err := s.Refunds(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, rf := range list {
		ids = append(ids, rf.ID)
	}
	if strings.Join(ids, ",") != "r1,r3" {
		t.Errorf("Refunds = %v; want r1,r3 oldest first", ids)
	}
	if _, err := s.Refund(ctx, "nope"); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("Refund(nope) = %v; want ErrNotFound", err)
	}
}

// testConcurrentRefunds asks for more than the charge from many goroutines
// at once: the accepted refunds never add up to more than the charge.
func testConcurrentRefunds(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := officeStore(t, h, 5)
	r := registerAs(t, s, "standard", nil) // 14900
	const n, amount = 24, 1000
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.RequestRefund(ctx, registration.Refund{ID: fmt.Sprintf("c%d", i), RegistrationID: r.ID,
				Amount: amount, RequestedBy: "org@example.org"}, auditEntry("refund", r.ID), nil)
		})
	}
	wg.Wait()
	accepted := 0
	for i, err := range errs {
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, registration.ErrRefundExceedsCharge):
			t.Errorf("refund %d: %v", i, err)
		}
	}
	if accepted != 14 {
		t.Errorf("%d refunds of %d accepted on a charge of 14900; want 14", accepted, amount)
	}
	var sum int
	sum = e.queryInt(t, `SELECT coalesce(sum(amount), 0) FROM refunds WHERE registration_id = ?`, r.ID)
	if sum > 14900 || sum != accepted*amount {
		t.Errorf("refunds stored add up to %d; want %d, at most 14900", sum, accepted*amount)
	}
	if got := e.queryInt(t, `SELECT refund_reserved FROM registrations WHERE id = ?`, r.ID); got != sum {
		t.Errorf("refund_reserved = %d; want %d", got, sum)
	}
}

func testFinishRefund(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := officeStore(t, h, 20)
	at := time.Date(2027, 2, 1, 9, 0, 0, 0, time.UTC)
	type step struct {
		state registration.RefundState
		ref   string
	}
	tests := []struct {
		name         string
		steps        []step
		wantState    registration.RefundState
		wantRef      string
		wantRefunded int
		wantReserved int
		wantNotices  int
	}{
		{"succeeded", []step{{registration.RefundSucceeded, "RF-1"}}, registration.RefundSucceeded, "RF-1", 3000, 3000, 0},
		{"failed", []step{{registration.RefundFailed, ""}}, registration.RefundFailed, "", 0, 0, 1},
		{"pending", []step{{registration.RefundPending, "RF-2"}}, registration.RefundPending, "RF-2", 0, 3000, 0},
		{"pending then succeeded", []step{{registration.RefundPending, "RF-3"}, {registration.RefundSucceeded, "RF-3"}},
			registration.RefundSucceeded, "RF-3", 3000, 3000, 0},
		{"pending then failed", []step{{registration.RefundPending, "RF-4"}, {registration.RefundFailed, "RF-4"}},
			registration.RefundFailed, "RF-4", 0, 0, 1},
		{"succeeded twice", []step{{registration.RefundSucceeded, "RF-5"}, {registration.RefundSucceeded, "RF-5"}},
			registration.RefundSucceeded, "RF-5", 3000, 3000, 0},
		{"succeeded then failed", []step{{registration.RefundSucceeded, "RF-6"}, {registration.RefundFailed, ""}},
			registration.RefundSucceeded, "RF-6", 3000, 3000, 0},
		{"failed then succeeded", []step{{registration.RefundFailed, ""}, {registration.RefundSucceeded, "RF-7"}},
			registration.RefundFailed, "", 0, 0, 1},
	}
	for i, tt := range tests {
		r := registerAs(t, s, "standard", nil)
		id := fmt.Sprintf("f%d", i)
		if err := s.RequestRefund(ctx, registration.Refund{ID: id, RegistrationID: r.ID, Amount: 3000, RequestedBy: "x"},
			auditEntry("refund", r.ID), nil); err != nil {
			t.Fatal(err)
		}
		for _, st := range tt.steps {
			msg := ""
			if st.state == registration.RefundFailed {
				msg = "REFUND_TIME_LIMIT_EXCEEDED"
			}
			if err := s.FinishRefund(ctx, id, st.state, st.ref, msg, at); err != nil {
				t.Fatalf("%s: FinishRefund(%s): %v", tt.name, st.state, err)
			}
		}
		rf, err := s.Refund(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rf.State != tt.wantState || rf.Reference != tt.wantRef || !rf.UpdatedAt.Equal(at) {
			t.Errorf("%s: refund %s ref %q updated %v; want %s %q %v", tt.name, rf.State, rf.Reference, rf.UpdatedAt,
				tt.wantState, tt.wantRef, at)
		}
		if tt.wantState == registration.RefundFailed && !strings.Contains(rf.Error, "REFUND_TIME_LIMIT_EXCEEDED") {
			t.Errorf("%s: error = %q", tt.name, rf.Error)
		}
		got, err := s.Registration(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		reserved := e.queryInt(t, `SELECT refund_reserved FROM registrations WHERE id = ?`, r.ID)
		if got.Refunded != int64(tt.wantRefunded) || reserved != tt.wantReserved {
			t.Errorf("%s: refunded %d reserved %d; want %d %d", tt.name, got.Refunded, reserved, tt.wantRefunded, tt.wantReserved)
		}
		notices := e.queryInt(t, `SELECT count(*) FROM organiser_notices WHERE kind = 'refund_failed' AND registration_id = ?`, r.ID)
		if notices != tt.wantNotices {
			t.Errorf("%s: %d refund_failed notices; want %d", tt.name, notices, tt.wantNotices)
		}
	}
	if err := s.FinishRefund(ctx, "nope", registration.RefundSucceeded, "", "", at); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("FinishRefund(nope) = %v; want ErrNotFound", err)
	}
	// A failed refund's amount can be asked for again.
	r := registerAs(t, s, "standard", nil)
	for _, id := range []string{"again-1", "again-2"} {
		if err := s.RequestRefund(ctx, registration.Refund{ID: id, RegistrationID: r.ID, Amount: 14900, RequestedBy: "x"},
			auditEntry("refund", r.ID), nil); err != nil {
			t.Fatalf("RequestRefund(%s): %v", id, err)
		}
		if id == "again-1" {
			if err := s.FinishRefund(ctx, id, registration.RefundFailed, "", "declined", at); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func testRetrySteps(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := officeStore(t, h, 10)
	failBoth := func(t *testing.T, id string) {
		t.Helper()
		for _, st := range []registration.StepName{registration.StepSendConfirmation, registration.StepSaveOrder} {
			if err := s.StepStarted(ctx, id, st); err != nil {
				t.Fatal(err)
			}
			if err := s.StepFailed(ctx, id, st, "boom "+string(st), true); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := registerAs(t, s, "standard", nil)
	failBoth(t, r.ID)
	var gotSteps []registration.StepName
	var calls int
	steps, err := s.RetrySteps(ctx, r.ID, auditEntry("retry", r.ID), func(ctx context.Context, tx *sql.Tx, st []registration.StepName) error {
		gotSteps = st
		return e.thenMark("retry-job", &calls)(ctx, tx)
	})
	if err != nil {
		t.Fatalf("RetrySteps: %v", err)
	}
	want := []registration.StepName{registration.StepSaveOrder, registration.StepSendConfirmation}
	if !slices.Equal(steps, want) || !slices.Equal(gotSteps, want) || calls != 1 || e.markers(t, "retry-job") != 1 {
		t.Errorf("RetrySteps = %v, then got %v (%d calls); want %v once", steps, gotSteps, calls, want)
	}
	got, err := s.Registration(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != registration.StatusProcessing {
		t.Errorf("status = %s; want processing", got.Status)
	}
	for _, st := range got.Steps {
		if st.Name == registration.StepAddToMailingList {
			continue
		}
		if st.Status != registration.StepRetrying || st.Attempts != 1 || st.LastError != "boom "+string(st.Name) {
			t.Errorf("step %s = %+v; want retrying, 1 attempt, its last error kept", st.Name, st)
		}
	}
	if n := e.auditCount(t, "retry"); n != 1 {
		t.Errorf("audit entries = %d; want 1", n)
	}
	// Nothing failed any more: nothing happens.
	calls = 0
	steps, err = s.RetrySteps(ctx, r.ID, auditEntry("retry", r.ID), func(context.Context, *sql.Tx, []registration.StepName) error {
		calls++
		return nil
	})
	if err != nil || steps != nil || calls != 0 || e.auditCount(t, "retry") != 1 {
		t.Errorf("RetrySteps with nothing failed = %v, %v, then calls %d, audits %d; want nil, nil, 0, 1",
			steps, err, calls, e.auditCount(t, "retry"))
	}
	// A cancelled registration is not retried.
	c := registerAs(t, s, "standard", nil)
	failBoth(t, c.ID)
	if err := s.CancelRegistration(ctx, c.ID, nil, auditEntry("cancel", c.ID), nil); err != nil {
		t.Fatal(err)
	}
	steps, err = s.RetrySteps(ctx, c.ID, auditEntry("retry", c.ID), func(context.Context, *sql.Tx, []registration.StepName) error {
		calls++
		return nil
	})
	if err != nil || steps != nil || calls != 0 {
		t.Errorf("RetrySteps of a cancelled registration = %v, %v, %d calls; want nil, nil, 0", steps, err, calls)
	}
	if got, _ := s.Registration(ctx, c.ID); got.Status != registration.StatusCancelled || got.Steps[0].Status != registration.StepFailed {
		t.Errorf("cancelled registration after retry: %s, %v", got.Status, got.Steps)
	}
	if _, err := s.RetrySteps(ctx, "nope", auditEntry("retry", "nope"), nil); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("RetrySteps(nope) = %v; want ErrNotFound", err)
	}
	// A then that fails rolls the retry back.
	f := registerAs(t, s, "standard", nil)
	failBoth(t, f.ID)
	if _, err := s.RetrySteps(ctx, f.ID, auditEntry("retry", f.ID), func(context.Context, *sql.Tx, []registration.StepName) error {
		return errors.New("insert failed")
	}); err == nil {
		t.Error("RetrySteps with a failing then succeeded")
	}
	if got, _ := s.Registration(ctx, f.ID); got.Status != registration.StatusNeedsAttention {
		t.Errorf("after a failed retry: status %s; want needs_attention", got.Status)
	}
}

// testCancelledStaysCancelled runs the pipeline's bookkeeping on a
// cancelled registration: it neither completes nor needs attention.
func testCancelledStaysCancelled(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := officeStore(t, h, 10)
	r := registerAs(t, s, "standard", nil)
	if err := s.CancelRegistration(ctx, r.ID, nil, auditEntry("cancel", r.ID), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.StepStarted(ctx, r.ID, registration.StepSaveOrder); err != nil {
		t.Fatal(err)
	}
	if err := s.StepFailed(ctx, r.ID, registration.StepSaveOrder, "boom", true); err != nil {
		t.Fatal(err)
	}
	for _, st := range []registration.StepName{registration.StepSaveOrder, registration.StepSendConfirmation} {
		if err := inTx(ctx, s, func(tx *sql.Tx) error { return s.FinishStepTx(ctx, tx, r.ID, st) }); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Registration(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != registration.StatusCancelled {
		t.Errorf("status = %s; want cancelled", got.Status)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM organiser_notices`); n != 0 {
		t.Errorf("%d notices for a cancelled registration; want 0", n)
	}
}

func testEditAttendee(t *testing.T, h Harness) {
	ctx := t.Context()
	var clock time.Time
	e := h(t, func() time.Time { return clock })
	s := e.Store
	if err := s.SyncTickets(ctx, testEvent(5)); err != nil {
		t.Fatal(err)
	}
	clock = time.Now().UTC()
	r := registerAs(t, s, "standard", nil)
	clock = clock.Add(time.Hour).Truncate(time.Microsecond)
	edit := registration.AttendeeEdit{FirstName: "Augusta", LastName: "King", Email: "augusta@example.org", Company: ""}
	old, err := s.EditAttendee(ctx, r.ID, edit, auditEntry("edit", r.ID))
	if err != nil {
		t.Fatalf("EditAttendee: %v", err)
	}
	if old.FirstName != "Ada" || old.Email != "ada@example.org" || old.Company != "Analytical Engines" {
		t.Errorf("previous = %s %s %s %s; want Ada's", old.FirstName, old.LastName, old.Email, old.Company)
	}
	got, err := s.Registration(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.FirstName != "Augusta" || got.LastName != "King" || got.Email != "augusta@example.org" || got.Company != "" ||
		!got.UpdatedAt.Equal(clock) || got.Amount != r.Amount || got.Payment != r.Payment {
		t.Errorf("after edit: %+v", got)
	}
	if n := e.auditCount(t, "edit"); n != 1 {
		t.Errorf("audit entries = %d; want 1", n)
	}
	// The search finds the new details, not the old.
	for q, want := range map[string]int{"augusta king": 1, "AUGUSTA@": 1, "lovelace": 0, "analytical": 0} {
		if page, err := s.SearchRegistrations(ctx, admin.Filter{Query: q, Limit: 10}); err != nil || len(page) != want {
			t.Errorf("search %q after the edit: %d rows, %v; want %d", q, len(page), err, want)
		}
	}
	// Limits per address follow the corrected address, not the old one.
	for email, want := range map[string]int{"AUGUSTA@example.org": 1, "ada@example.org": 0} {
		if regs, err := s.RecentRegistrations(ctx, r.EventID, r.TicketID, email, r.CreatedAt); err != nil || len(regs) != want {
			t.Errorf("RecentRegistrations(%s) after the edit: %d, %v; want %d", email, len(regs), err, want)
		}
	}
	if _, err := s.EditAttendee(ctx, "nope", edit, auditEntry("edit", "nope")); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("EditAttendee(nope) = %v; want ErrNotFound", err)
	}
	if n := e.auditCount(t, "edit"); n != 1 {
		t.Errorf("audit entries after a failed edit = %d; want 1", n)
	}
}

func testMessageLifecycle(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := officeStore(t, h, 5)
	r := registerAs(t, s, "standard", nil)
	if err := s.EmailSending(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := inTx(ctx, s, func(tx *sql.Tx) error { return s.EmailSentTx(ctx, tx, r.ID, "sg-1") }); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	queue := func(id, to string, calls *int) error {
		return s.QueueMessage(ctx, registration.Message{ID: id, RegistrationID: r.ID, Kind: registration.MessageConfirmation,
			To: to, RequestedBy: "org@example.org", CreatedAt: created}, auditEntry("resend", r.ID), e.thenMark("send-"+id, calls))
	}
	var calls int
	if err := queue("m1", "ada@example.net", &calls); err != nil {
		t.Fatalf("QueueMessage: %v", err)
	}
	calls = 0
	if err := queue("m1", "other@example.net", &calls); !errors.Is(err, registration.ErrDuplicate) {
		t.Errorf("QueueMessage again = %v; want ErrDuplicate", err)
	}
	if calls != 0 || e.auditCount(t, "resend") != 1 || e.queryInt(t, `SELECT count(*) FROM messages`) != 1 {
		t.Errorf("a duplicate wrote: then calls %d, audits %d", calls, e.auditCount(t, "resend"))
	}
	if err := s.QueueMessage(ctx, registration.Message{ID: "m9", RegistrationID: "nope", Kind: registration.MessageConfirmation,
		To: "x@example.org", RequestedBy: "x"}, auditEntry("resend", "nope"), nil); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("QueueMessage for an unknown registration = %v; want ErrNotFound", err)
	}
	m, err := s.Message(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if m.State != registration.MessageQueued || m.To != "ada@example.net" || m.Kind != registration.MessageConfirmation ||
		m.RequestedBy != "org@example.org" || !m.CreatedAt.Equal(created) {
		t.Errorf("queued message = %+v", m)
	}
	if err := s.MessageSending(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(ctx, "m1"); m.State != registration.MessageSending {
		t.Errorf("state after MessageSending = %s", m.State)
	}
	if err := inTx(ctx, s, func(tx *sql.Tx) error { return s.MessageSentTx(ctx, tx, "m1", "sg-2") }); err != nil {
		t.Fatal(err)
	}
	// A late failure does not undo a sent message.
	if err := s.MessageFailed(ctx, "m1", "timeout"); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(ctx, "m1"); m.State != registration.MessageSent || m.Reference != "sg-2" {
		t.Errorf("after sent and a late failure: %s %q; want sent sg-2", m.State, m.Reference)
	}
	var none int
	if err := s.QueueMessage(ctx, registration.Message{ID: "m2", RegistrationID: r.ID, Kind: registration.MessageCancellation,
		To: "ada@example.org", RequestedBy: "org@example.org", CreatedAt: created.Add(time.Minute)},
		auditEntry("cancel", r.ID), e.thenMark("m2", &none)); err != nil {
		t.Fatal(err)
	}
	if err := s.MessageFailed(ctx, "m2", "mailbox full"); err != nil {
		t.Fatal(err)
	}
	list, err := s.Messages(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list {
		got = append(got, fmt.Sprintf("%q %s %s %s %s %s", m.ID, m.Kind, m.State, m.To, m.Reference, m.Error))
	}
	want := []string{
		`"" confirmation sent ada@example.org sg-1 `,
		`"m1" confirmation sent ada@example.net sg-2 `,
		`"m2" cancellation failed ada@example.org  mailbox full`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Messages =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := s.Message(ctx, "nope"); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("Message(nope) = %v; want ErrNotFound", err)
	}
}

func testNotices(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := officeStore(t, h, 5)
	r := registerAs(t, s, "standard", nil)
	if err := s.StepFailed(ctx, r.ID, registration.StepSaveOrder, "try again", false); err != nil {
		t.Fatal(err)
	}
	if err := s.StepFailed(ctx, r.ID, registration.StepSaveOrder, "disk full", true); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	for _, kind := range []registration.IncidentKind{registration.IncidentRefunded, registration.IncidentRefundFailed,
		registration.IncidentResolvedCharged, registration.IncidentResolvedNotCharged, registration.IncidentUnresolved} {
		if err := s.RecordIncident(ctx, registration.Incident{AttemptID: "att-" + string(kind), Kind: kind,
			Detail: "detail " + string(kind), CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	notices, err := s.PendingNotices(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range notices {
		got = append(got, fmt.Sprintf("%s %s %v", n.Kind, n.RegistrationID, strings.Contains(n.Detail, "disk full") ||
			strings.HasPrefix(n.Detail, "detail ")))
	}
	want := []string{
		"needs_attention " + r.ID + " true",
		"refund_failed att-refund_failed true",
		"payment_unresolved att-unresolved true",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("PendingNotices =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if limited, _ := s.PendingNotices(ctx, 2); len(limited) != 2 || limited[0].ID != notices[0].ID {
		t.Errorf("PendingNotices(2) = %d notices", len(limited))
	}
	if err := s.NoticesSent(ctx, []int64{notices[0].ID, notices[2].ID}, at); err != nil {
		t.Fatal(err)
	}
	left, err := s.PendingNotices(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].ID != notices[1].ID {
		t.Errorf("after NoticesSent: %+v; want only the refund_failed notice", left)
	}
	if err := s.NoticesSent(ctx, nil, at); err != nil {
		t.Errorf("NoticesSent(nil) = %v", err)
	}
}

func testAccounts(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := officeStore(t, h, 5)
	created := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	owner, err := s.CreateAccount(ctx, admin.Account{Email: "owner@example.org", PasswordHash: "h1", Role: admin.RoleOwner, CreatedAt: created})
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	staff, err := s.CreateAccount(ctx, admin.Account{Email: "abc@example.org", PasswordHash: "h2", Role: admin.RoleStaff, CreatedAt: created})
	if err != nil {
		t.Fatal(err)
	}
	if owner.ID == 0 || staff.ID == 0 || owner.ID == staff.ID {
		t.Errorf("ids %d %d; want distinct, non-zero", owner.ID, staff.ID)
	}
	if _, err := s.CreateAccount(ctx, admin.Account{Email: "owner@example.org", PasswordHash: "h3", Role: admin.RoleStaff}); !errors.Is(err, admin.ErrAccountExists) {
		t.Errorf("CreateAccount of a taken email = %v; want ErrAccountExists", err)
	}
	if _, err := s.CreateAccount(ctx, admin.Account{Email: "bad@example.org", PasswordHash: "h", Role: "root"}); err == nil {
		t.Error("an account of an unknown role was stored")
	}
	if n, err := s.CountAccounts(ctx); err != nil || n != 2 {
		t.Errorf("CountAccounts = %d, %v; want 2", n, err)
	}
	list, err := s.Accounts(ctx)
	if err != nil || len(list) != 2 || list[0].Email != "abc@example.org" || list[1].Role != admin.RoleOwner {
		t.Errorf("Accounts = %+v, %v; want abc then owner", list, err)
	}
	got, err := s.AccountByEmail(ctx, "owner@example.org")
	if err != nil || got.ID != owner.ID || got.PasswordHash != "h1" || !got.CreatedAt.Equal(created) || !got.LastLoginAt.IsZero() {
		t.Errorf("AccountByEmail = %+v, %v", got, err)
	}
	if _, err := s.AccountByEmail(ctx, "nobody@example.org"); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("AccountByEmail(nobody) = %v; want ErrNotFound", err)
	}
	login := created.Add(time.Hour)
	if err := s.RecordLogin(ctx, owner.ID, login); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"t1", "t2"} {
		if err := s.CreateSession(ctx, admin.Session{TokenHash: tok, AccountID: owner.ID, CreatedAt: login, LastSeenAt: login,
			ExpiresAt: login.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx, admin.Session{TokenHash: "t3", AccountID: staff.ID, CreatedAt: login, LastSeenAt: login,
		ExpiresAt: login.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, owner.ID, "h-new"); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	got, _ = s.AccountByEmail(ctx, "owner@example.org")
	if got.PasswordHash != "h-new" || !got.LastLoginAt.Equal(login) {
		t.Errorf("after SetPassword and RecordLogin: %+v", got)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM admin_sessions WHERE account_id = ?`, owner.ID); n != 0 {
		t.Errorf("%d sessions of the owner left after SetPassword; want 0", n)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM admin_sessions`); n != 1 {
		t.Errorf("%d sessions left; want the staff's one", n)
	}
	if err := s.SetPassword(ctx, 99999, "x"); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("SetPassword(unknown) = %v; want ErrNotFound", err)
	}
}

func testSessions(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := officeStore(t, h, 5)
	a, err := s.CreateAccount(ctx, admin.Account{Email: "fin@example.org", PasswordHash: "h", Role: admin.RoleFinance})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateAccount(ctx, admin.Account{Email: "other@example.org", PasswordHash: "h", Role: admin.RoleStaff})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	sessions := []admin.Session{
		{TokenHash: "live", AccountID: a.ID, CreatedAt: now.Add(-time.Hour), LastSeenAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour),
			Address: "192.0.2.1", UserAgent: "Firefox"},
		{TokenHash: "expired", AccountID: a.ID, CreatedAt: now.Add(-13 * time.Hour), LastSeenAt: now.Add(-time.Minute), ExpiresAt: now.Add(-time.Second)},
		{TokenHash: "idle", AccountID: a.ID, CreatedAt: now.Add(-2 * time.Hour), LastSeenAt: now.Add(-31 * time.Minute), ExpiresAt: now.Add(time.Hour)},
		{TokenHash: "b1", AccountID: b.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)},
		{TokenHash: "b2", AccountID: b.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)},
	}
	for _, se := range sessions {
		if err := s.CreateSession(ctx, se); err != nil {
			t.Fatalf("CreateSession(%s): %v", se.TokenHash, err)
		}
	}
	se, acc, err := s.Session(ctx, "live")
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	if se != sessions[0] || acc.ID != a.ID || acc.Email != "fin@example.org" || acc.Role != admin.RoleFinance {
		t.Errorf("Session = %+v %+v; want %+v of fin@", se, acc, sessions[0])
	}
	if _, _, err := s.Session(ctx, "nope"); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("Session(nope) = %v; want ErrNotFound", err)
	}
	if err := s.TouchSession(ctx, "live", now); err != nil {
		t.Fatal(err)
	}
	if se, _, _ := s.Session(ctx, "live"); !se.LastSeenAt.Equal(now) {
		t.Errorf("LastSeenAt after touch = %v; want %v", se.LastSeenAt, now)
	}
	n, err := s.DeleteExpiredSessions(ctx, now, now.Add(-30*time.Minute))
	if err != nil || n != 2 {
		t.Errorf("DeleteExpiredSessions = %d, %v; want 2", n, err)
	}
	for _, tok := range []string{"expired", "idle"} {
		if _, _, err := s.Session(ctx, tok); !errors.Is(err, registration.ErrNotFound) {
			t.Errorf("session %s after expiry: %v; want ErrNotFound", tok, err)
		}
	}
	if err := s.DeleteSessions(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM admin_sessions`); n != 0 {
		t.Errorf("%d sessions left; want 0", n)
	}
}

func testLoginThrottle(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := officeStore(t, h, 5)
	at := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	if err := s.SaveLoginThrottle(ctx, "addr:192.0.2.1", admin.Throttle{Failures: 1, LastFailureAt: at, BlockedUntil: at.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	want := admin.Throttle{Failures: 4, LastFailureAt: at.Add(time.Minute), BlockedUntil: at.Add(2 * time.Minute)}
	if err := s.SaveLoginThrottle(ctx, "addr:192.0.2.1", want); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLoginThrottle(ctx, "account:7", admin.Throttle{Failures: 1, LastFailureAt: at, BlockedUntil: at}); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoginThrottle(ctx, []string{"addr:192.0.2.1", "account:7", "account:8"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["addr:192.0.2.1"] != want || got["account:7"].Failures != 1 {
		t.Errorf("LoginThrottle = %+v", got)
	}
	if err := s.ClearLoginThrottle(ctx, "account:7"); err != nil {
		t.Fatal(err)
	}
	got, err = s.LoginThrottle(ctx, []string{"account:7"})
	if err != nil || len(got) != 0 {
		t.Errorf("after clearing: %+v, %v", got, err)
	}
	if got, err := s.LoginThrottle(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("LoginThrottle(nil) = %+v, %v", got, err)
	}
}

func testAuditLog(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := officeStore(t, h, 5)
	at := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	entries := []registration.AuditEntry{
		{At: at, Actor: "a@example.org", Action: "login", Address: "192.0.2.1"},
		{At: at.Add(time.Second), Actor: "a@example.org", Action: "refund", RegistrationID: "r1", Detail: "5000 EUR"},
		{At: at.Add(2 * time.Second), Actor: "b@example.org", Action: "refund", RegistrationID: "r2"},
		{At: at.Add(3 * time.Second), Actor: "b@example.org", Action: "edit", RegistrationID: "r1", Detail: "email: x -> y"},
		{At: at.Add(4 * time.Second), Actor: "system", Action: "login_failed", Address: "192.0.2.9"},
	}
	for _, e := range entries {
		if err := s.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.AuditLog(ctx, admin.AuditFilter{Limit: 10})
	if err != nil || len(all) != 5 {
		t.Fatalf("AuditLog = %d entries, %v; want 5", len(all), err)
	}
	for i, e := range all {
		w := entries[len(entries)-1-i]
		if e.ID == 0 || e.Actor != w.Actor || e.Action != w.Action || e.RegistrationID != w.RegistrationID ||
			e.Detail != w.Detail || e.Address != w.Address || !e.At.Equal(w.At) {
			t.Errorf("entry %d = %+v; want %+v", i, e, w)
		}
	}
	actions := func(es []registration.AuditEntry) string {
		var out []string
		for _, e := range es {
			out = append(out, e.Actor+":"+e.Action+":"+e.RegistrationID)
		}
		return strings.Join(out, " ")
	}
	tests := []struct {
		name string
		f    admin.AuditFilter
		want string
	}{
		{"actor", admin.AuditFilter{Actor: "a@example.org"}, "a@example.org:refund:r1 a@example.org:login:"},
		{"action", admin.AuditFilter{Action: "refund"}, "b@example.org:refund:r2 a@example.org:refund:r1"},
		{"registration", admin.AuditFilter{RegistrationID: "r1"}, "b@example.org:edit:r1 a@example.org:refund:r1"},
		{"actor and action", admin.AuditFilter{Actor: "b@example.org", Action: "edit"}, "b@example.org:edit:r1"},
		{"exact, not a prefix", admin.AuditFilter{Action: "login"}, "a@example.org:login:"},
		{"page 1", admin.AuditFilter{Limit: 2}, "system:login_failed: b@example.org:edit:r1"},
		{"page 2", admin.AuditFilter{Limit: 2, Before: all[1].ID}, "b@example.org:refund:r2 a@example.org:refund:r1"},
		{"page 3", admin.AuditFilter{Limit: 2, Before: all[3].ID}, "a@example.org:login:"},
	}
	for _, tt := range tests {
		got, err := s.AuditLog(ctx, tt.f)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if actions(got) != tt.want {
			t.Errorf("%s: AuditLog = %q; want %q", tt.name, actions(got), tt.want)
		}
	}
}

// searchFixture stores registrations whose names, times and states the
// search tests know, and returns them newest first.
func searchFixture(t *testing.T, s Store) []registration.Registration {
	t.Helper()
	ctx := t.Context()
	base := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	people := []struct {
		first, last, email, company, ticket string
	}{
		{"Ada", "Lovelace", "ada@example.org", "Analytical Engines", "standard"},
		{"Grace", "Hopper", "grace@navy.example", "US Navy", "standard"},
		{"Alan", "Turing", "alan@bletchley.example", "GC&CS", "community"},
		{"Émilie", "du Châtelet", "emilie@example.fr", "Académie", "standard"},
		{"Katherine", "Johnson", "kj@nasa.example", "NASA", "community"},
		{"Edsger", "Dijkstra", "ewd@example.nl", "100%_Pure", "standard"},
	}
	var out []registration.Registration
	for i, p := range people {
		r := registerAs(t, s, p.ticket, func(r *registration.Registration) {
			r.FirstName, r.LastName, r.Email, r.Company = p.first, p.last, p.email, p.company
			r.CreatedAt = base.Add(time.Duration(i) * time.Hour)
			r.UpdatedAt = r.CreatedAt
			if r.Payment.Provider != "" {
				r.Payment.Reference = fmt.Sprintf("CAPTURE-%d", i)
			}
		})
		out = append(out, r)
	}
	// Grace needs attention; Alan is cancelled.
	if err := s.StepFailed(ctx, out[1].ID, registration.StepSaveOrder, "boom", true); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelRegistration(ctx, out[2].ID, nil, auditEntry("cancel", out[2].ID), nil); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(out)
	return out
}

func testSearchRegistrations(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := officeStore(t, h, 20)
	regs := searchFixture(t, s)
	name := map[string]string{}
	for _, r := range regs {
		name[r.ID] = r.FirstName
	}
	names := func(rs []registration.Registration) string {
		var out []string
		for _, r := range rs {
			out = append(out, name[r.ID])
		}
		return strings.Join(out, " ")
	}
	base := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	grace := regs[4]
	tests := []struct {
		name string
		f    admin.Filter
		want string
	}{
		{"everything, newest first", admin.Filter{}, "Edsger Katherine Émilie Alan Grace Ada"},
		{"first name, any case", admin.Filter{Query: "GRACE"}, "Grace"},
		{"part of a last name", admin.Filter{Query: "ovel"}, "Ada"},
		{"first and last", admin.Filter{Query: "ada lovelace"}, "Ada"},
		{"part of an email", admin.Filter{Query: "@example.org"}, "Ada"},
		{"company", admin.Filter{Query: "navy"}, "Grace"},
		{"several matches", admin.Filter{Query: "a"}, "Edsger Katherine Émilie Alan Grace Ada"},
		{"non-ASCII", admin.Filter{Query: "Châtelet"}, "Émilie"},
		{"non-ASCII, any case", admin.Filter{Query: "émilie DU CHÂ"}, "Émilie"},
		{"no match across fields", admin.Filter{Query: "lovelace ada"}, ""},
		{"no match across fields, with the separator", admin.Filter{Query: "lovelace\x1fada"}, ""},
		{"LIKE wildcards are literal", admin.Filter{Query: "100%_"}, "Edsger"},
		{"a percent alone matches only a percent", admin.Filter{Query: "%"}, "Edsger"},
		{"an underscore alone", admin.Filter{Query: "_"}, "Edsger"},
		{"registration id", admin.Filter{Query: grace.ID}, "Grace"},
		{"part of an id does not match", admin.Filter{Query: grace.ID[:10]}, ""},
		{"payment reference", admin.Filter{Query: "CAPTURE-3"}, "Émilie"},
		{"part of a reference does not match", admin.Filter{Query: "CAPTURE-"}, ""},
		{"no match", admin.Filter{Query: "zebra"}, ""},
		{"ticket", admin.Filter{Ticket: "community"}, "Katherine Alan"},
		{"status", admin.Filter{Status: registration.StatusNeedsAttention}, "Grace"},
		{"cancelled", admin.Filter{Status: registration.StatusCancelled}, "Alan"},
		{"status and ticket", admin.Filter{Status: registration.StatusPaid, Ticket: "community"}, "Katherine"},
		{"from", admin.Filter{From: base.Add(3 * time.Hour)}, "Edsger Katherine Émilie"},
		{"to excludes its bound", admin.Filter{To: base.Add(2 * time.Hour)}, "Grace Ada"},
		{"from and to", admin.Filter{From: base.Add(time.Hour), To: base.Add(3 * time.Hour)}, "Alan Grace"},
		{"query and ticket", admin.Filter{Query: "a", Ticket: "standard"}, "Edsger Émilie Grace Ada"},
		{"limit", admin.Filter{Limit: 2}, "Edsger Katherine"},
		{"after a cursor", admin.Filter{Limit: 2, After: admin.Cursor{CreatedAt: regs[1].CreatedAt, ID: regs[1].ID}}, "Émilie Alan"},
		{"after the last", admin.Filter{After: admin.Cursor{CreatedAt: regs[5].CreatedAt, ID: regs[5].ID}}, ""},
		{"cursor and query", admin.Filter{Query: "a", After: admin.Cursor{CreatedAt: regs[2].CreatedAt, ID: regs[2].ID}}, "Alan Grace Ada"},
	}
	for _, tt := range tests {
		if tt.f.Limit == 0 {
			tt.f.Limit = 50
		}
		got, err := s.SearchRegistrations(ctx, tt.f)
		if err != nil {
			t.Fatalf("%s: SearchRegistrations: %v", tt.name, err)
		}
		if names(got) != tt.want {
			t.Errorf("%s: got %q; want %q", tt.name, names(got), tt.want)
		}
		for _, r := range got {
			if len(r.Steps) != 0 {
				t.Errorf("%s: %s has steps; the list reads none", tt.name, r.ID)
			}
		}
	}
	// Rows created in the same instant are ordered by id and paged without
	// loss or repetition.
	same := base.Add(100 * time.Hour)
	var ids []string
	for range 5 {
		r := registerAs(t, s, "standard", func(r *registration.Registration) { r.CreatedAt, r.UpdatedAt = same, same })
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	var paged []string
	f := admin.Filter{From: same, Limit: 2}
	for {
		page, err := s.SearchRegistrations(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			paged = append(paged, r.ID)
		}
		if len(page) < f.Limit {
			break
		}
		f.After = admin.Cursor{CreatedAt: page[len(page)-1].CreatedAt, ID: page[len(page)-1].ID}
	}
	if !slices.Equal(paged, ids) {
		t.Errorf("paging rows of one instant = %v; want %v", paged, ids)
	}
}

func testEachRegistration(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := officeStore(t, h, 2000)
	// More than two pages of the stream, stored by many writers at once.
	const n = 1234
	base := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				a := newAttempt(t, "", "h")
				if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
					errs <- err
					continue
				}
				r := newRegistration(a, false)
				// Every third pair shares an instant.
				r.CreatedAt = base.Add(time.Duration(i/2) * time.Second)
				r.UpdatedAt = r.CreatedAt
				if i%7 == 0 {
					r.Company = "Seven Inc"
				}
				errs <- s.CompleteAttempt(ctx, a, r, noEnqueue)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    admin.Filter
		want int
	}{
		{"all", admin.Filter{Limit: 10}, n},
		{"query", admin.Filter{Query: "seven"}, (n + 6) / 7},
		{"from", admin.Filter{From: base.Add(100 * time.Second)}, n - 200},
	}
	for _, tt := range tests {
		var got []registration.Registration
		err := s.EachRegistration(ctx, tt.f, func(r registration.Registration) error {
			got = append(got, r)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: EachRegistration: %v", tt.name, err)
		}
		if len(got) != tt.want {
			t.Errorf("%s: %d registrations; want %d", tt.name, len(got), tt.want)
		}
		seen := map[string]bool{}
		for i, r := range got {
			if seen[r.ID] {
				t.Fatalf("%s: %s twice", tt.name, r.ID)
			}
			seen[r.ID] = true
			if i > 0 {
				prev := got[i-1]
				if r.CreatedAt.After(prev.CreatedAt) || (r.CreatedAt.Equal(prev.CreatedAt) && r.ID > prev.ID) {
					t.Fatalf("%s: row %d out of order", tt.name, i)
				}
			}
		}
		// The stream is the list, page after page.
		var listed int
		f := tt.f
		f.Limit = 300
		for {
			page, err := s.SearchRegistrations(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page {
				if r.ID != got[listed].ID {
					t.Fatalf("%s: list row %d is %s; the stream's is %s", tt.name, listed, r.ID, got[listed].ID)
				}
				listed++
			}
			if len(page) < f.Limit {
				break
			}
			f.After = admin.Cursor{CreatedAt: page[len(page)-1].CreatedAt, ID: page[len(page)-1].ID}
		}
		if listed != len(got) {
			t.Errorf("%s: the list has %d rows, the stream %d", tt.name, listed, len(got))
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.EachRegistration(ctx, admin.Filter{}, func(registration.Registration) error {
		calls++
		return stop
	}); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("EachRegistration with fn failing = %v after %d calls; want its error after 1", err, calls)
	}
}

func testEachSubscriber(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := officeStore(t, h, 5)
	// More than two pages of the stream, stored by many writers at once.
	const n = 1100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				errs <- s.Subscribe(ctx, registration.Subscriber{Email: fmt.Sprintf("P%04d@example.org", i), FirstName: "F",
					LastName: fmt.Sprint(i), EventID: testEventID, RegistrationID: fmt.Sprint(i)})
			}
		})
	}
	var want []string
	for i := range n {
		j := (i * 7919) % n // a permutation: stored out of order
		work <- j
		want = append(want, fmt.Sprintf("p%04d@example.org F %d", j, j))
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	var got []string
	if err := s.EachSubscriber(ctx, func(sub admin.Subscriber) error {
		if sub.ConsentedAt.IsZero() {
			t.Errorf("%s: no consent time", sub.Email)
		}
		got = append(got, sub.Email+" "+sub.FirstName+" "+sub.LastName)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("EachSubscriber: %d subscribers; want %d in order of email", len(got), len(want))
	}
}

func testDashboard(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := officeStore(t, h, 10)
	day := time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC)
	at := func(d int, hour int) func(*registration.Registration) {
		return func(r *registration.Registration) {
			r.CreatedAt = day.AddDate(0, 0, d).Add(time.Duration(hour) * time.Hour)
			r.UpdatedAt = r.CreatedAt
		}
	}
	registerAs(t, s, "standard", at(-3, 12))             // before since
	a := registerAs(t, s, "standard", at(0, 0))          // midnight: day 0
	b := registerAs(t, s, "standard", at(0, 23))         // day 0
	c := registerAs(t, s, "standard", at(2, 8))          // day 2, cancelled
	registerAs(t, s, "community", at(2, 9))              // day 2
	attention := registerAs(t, s, "standard", at(2, 10)) // day 2, needs attention
	// A seat held by an attempt being charged.
	if _, err := s.StartAttempt(ctx, newAttempt(t, "", "h"), registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	if err := s.StepStarted(ctx, b.ID, registration.StepSaveOrder); err != nil {
		t.Fatal(err)
	}
	if err := s.StepFailed(ctx, b.ID, registration.StepSaveOrder, "slow", false); err != nil {
		t.Fatal(err)
	}
	if err := s.StepFailed(ctx, attention.ID, registration.StepSendConfirmation, "rejected", true); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelRegistration(ctx, c.ID, &registration.Refund{ID: "dash-1", Amount: 14900, RequestedBy: "x"},
		auditEntry("cancel", c.ID), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRefund(ctx, "dash-1", registration.RefundSucceeded, "RF", "", day); err != nil {
		t.Fatal(err)
	}
	for i, state := range []registration.RefundState{registration.RefundFailed, registration.RefundPending, ""} {
		id := fmt.Sprintf("dash-r%d", i)
		if err := s.RequestRefund(ctx, registration.Refund{ID: id, RegistrationID: a.ID, Amount: 100, RequestedBy: "x"},
			auditEntry("refund", a.ID), nil); err != nil {
			t.Fatal(err)
		}
		if state != "" {
			if err := s.FinishRefund(ctx, id, state, "", "no", day); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, kind := range []registration.IncidentKind{registration.IncidentRefunded, registration.IncidentRefunded, registration.IncidentUnresolved} {
		if err := s.RecordIncident(ctx, registration.Incident{AttemptID: "x", Kind: kind, CreatedAt: day}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.Dashboard(ctx, testEventID, day)
	if err != nil {
		t.Fatalf("Dashboard: %v", err)
	}
	wantTickets := []admin.TicketStats{
		{TicketID: "community", Capacity: 50, Sold: 1},
		{TicketID: "standard", Capacity: 10, Sold: 4, Held: 1},
	}
	if !slices.Equal(d.Tickets, wantTickets) {
		t.Errorf("Tickets = %+v; want %+v", d.Tickets, wantTickets)
	}
	if d.Gross != 5*14900 || d.Refunded != 14900 {
		t.Errorf("Gross %d Refunded %d; want %d %d", d.Gross, d.Refunded, 5*14900, 14900)
	}
	wantDays := []admin.DayCount{{Day: day, Count: 2}, {Day: day.AddDate(0, 0, 2), Count: 3}}
	if len(d.PerDay) != len(wantDays) {
		t.Fatalf("PerDay = %+v; want %+v", d.PerDay, wantDays)
	}
	for i := range wantDays {
		if !d.PerDay[i].Day.Equal(wantDays[i].Day) || d.PerDay[i].Count != wantDays[i].Count {
			t.Errorf("PerDay[%d] = %+v; want %+v", i, d.PerDay[i], wantDays[i])
		}
	}
	// The steps of the five registrations not cancelled: save and send of
	// each (their mailing list skipped), less b's save (retrying) and
	// attention's send (failed).
	wantSteps := map[registration.StepStatus]int64{
		registration.StepPending:  8,
		registration.StepRetrying: 1,
		registration.StepFailed:   1,
	}
	if !mapsEqual(d.Steps, wantSteps) {
		t.Errorf("Steps = %v; want %v", d.Steps, wantSteps)
	}
	if d.NeedsAttention != 1 || d.Cancelled != 1 {
		t.Errorf("NeedsAttention %d Cancelled %d; want 1 1", d.NeedsAttention, d.Cancelled)
	}
	wantIncidents := map[registration.IncidentKind]int64{registration.IncidentRefunded: 2, registration.IncidentUnresolved: 1}
	if !mapsEqual(d.Incidents, wantIncidents) {
		t.Errorf("Incidents = %v; want %v", d.Incidents, wantIncidents)
	}
	if d.RefundsFailed != 1 || d.RefundsOpen != 2 {
		t.Errorf("RefundsFailed %d RefundsOpen %d; want 1 2", d.RefundsFailed, d.RefundsOpen)
	}
	empty, err := s.Dashboard(ctx, "no-such-event", day)
	if err != nil || len(empty.Tickets) != 0 || empty.Gross != 0 || len(empty.PerDay) != 0 {
		t.Errorf("Dashboard of an unknown event = %+v, %v", empty, err)
	}
}

func mapsEqual[K comparable](a, b map[K]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func testPaymentIncidents(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := officeStore(t, h, 5)
	at := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	incidents := []registration.Incident{
		{AttemptID: "a1", Kind: registration.IncidentRefunded, Provider: "paypal", Reference: "C1", Amount: 14900, Currency: "EUR", Detail: "d1", CreatedAt: at},
		{AttemptID: "a2", Kind: registration.IncidentUnresolved, CreatedAt: at.Add(time.Second)},
		{AttemptID: "a1", Kind: registration.IncidentRefundFailed, CreatedAt: at.Add(2 * time.Second)},
		{AttemptID: "a3", Kind: registration.IncidentResolvedCharged, CreatedAt: at.Add(3 * time.Second)},
	}
	for _, in := range incidents {
		if err := s.RecordIncident(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	of, err := s.Incidents(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if len(of) != 2 || of[0].Kind != registration.IncidentRefunded || of[1].Kind != registration.IncidentRefundFailed || of[0].ID == 0 {
		t.Fatalf("Incidents(a1) = %+v", of)
	}
	want0 := incidents[0]
	want0.ID = of[0].ID
	if of[0] != want0 {
		t.Errorf("Incidents(a1)[0] = %+v; want %+v", of[0], want0)
	}
	kinds := func(ins []registration.Incident) string {
		var out []string
		for _, in := range ins {
			out = append(out, in.AttemptID+":"+string(in.Kind))
		}
		return strings.Join(out, " ")
	}
	all, err := s.PaymentIncidents(ctx, admin.IncidentFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    admin.IncidentFilter
		want string
	}{
		{"all, newest first", admin.IncidentFilter{Limit: 10}, "a3:resolved_charged a1:refund_failed a2:unresolved a1:refunded"},
		{"kinds", admin.IncidentFilter{Kinds: []registration.IncidentKind{registration.IncidentUnresolved, registration.IncidentRefundFailed}, Limit: 10},
			"a1:refund_failed a2:unresolved"},
		{"page", admin.IncidentFilter{Limit: 2}, "a3:resolved_charged a1:refund_failed"},
		{"next page", admin.IncidentFilter{Limit: 2, Before: all[1].ID}, "a2:unresolved a1:refunded"},
	}
	for _, tt := range tests {
		got, err := s.PaymentIncidents(ctx, tt.f)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if kinds(got) != tt.want {
			t.Errorf("%s: PaymentIncidents = %q; want %q", tt.name, kinds(got), tt.want)
		}
	}
}
