package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

// personalValues are what the erasure fixture holds of Ada Lovelace, in
// any row: none may be left anywhere once she is erased.
var personalValues = []string{"ada@example.org", "ada.billing@example.org", "Lovelace", "Analytical Engines",
	"St James", "SW1Y 4JH", "London"}

// erasureFixture stores a registration of Ada's with every copy of her
// data the product makes: billing address, newsletter consent, an order,
// a mailing-list row, a failed email step whose error quotes her address,
// a final failure's organiser notice, an edit and a resend in the audit
// log, a queued email to another address of hers and a refund whose reason
// names her.
func erasureFixture(t *testing.T, e Env) registration.Registration {
	t.Helper()
	ctx := t.Context()
	s := e.Store
	r := registerAs(t, s, "standard", func(r *registration.Registration) {
		r.Newsletter, r.NewsletterConsentedAt = true, r.CreatedAt
		r.NewsletterConsentText = registration.NewsletterConsentText
		r.Billing = payment.BillingAddress{Line1: "12 St James's Square", Line2: "Flat 3", City: "London",
			PostalCode: "SW1Y 4JH", Region: "", Country: "GB"}
		for i := range r.Steps {
			r.Steps[i].Status = registration.StepPending
		}
	})
	if err := s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error { return s.SaveOrderTx(ctx, tx, r) }); err != nil {
		t.Fatalf("SaveOrderTx: %v", err)
	}
	if err := s.Subscribe(ctx, subscriberOf(r)); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := s.StepFailed(ctx, r.ID, registration.StepSendConfirmation, "550 mailbox ada@example.org (Ada Lovelace) unavailable", false); err != nil {
		t.Fatal(err)
	}
	if err := s.StepFailed(ctx, r.ID, registration.StepAddToMailingList, "Member ada@example.org is in compliance state", true); err != nil {
		t.Fatal(err)
	}
	for _, a := range []registration.AuditEntry{
		{Actor: "org@example.org", Action: "edit", RegistrationID: r.ID, Detail: `email "ada@exampel.org" → "ada@example.org"`},
		{Actor: "org@example.org", Action: "resend", RegistrationID: r.ID, Detail: "confirmation resent to ada.billing@example.org"},
	} {
		if err := s.Audit(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	if err := s.QueueMessage(ctx, registration.Message{ID: "resend-erasure", RegistrationID: r.ID, Kind: registration.MessageConfirmation,
		To: "ada.billing@example.org", State: registration.MessageQueued, RequestedBy: "org@example.org", CreatedAt: now, UpdatedAt: now},
		auditEntry("resend", r.ID), nil); err != nil {
		t.Fatalf("QueueMessage: %v", err)
	}
	if err := s.RequestRefund(ctx, registration.Refund{ID: "refund-erasure", RegistrationID: r.ID, Amount: 100, Currency: "EUR",
		State: registration.RefundRequested, Reason: "Ada Lovelace asked for the early-bird difference", RequestedBy: "org@example.org",
		CreatedAt: now, UpdatedAt: now}, auditEntry("refund", r.ID), nil); err != nil {
		t.Fatalf("RequestRefund: %v", err)
	}
	return r
}

// textCells returns every text cell of every table as "table.column: value".
func textCells(t *testing.T, e Env) []string {
	t.Helper()
	return TextCells(t, e.DB)
}

// TextCells returns every text cell of every table of db (SQLite, or the
// current schema of PostgreSQL) as "table.column: value": a test finds an
// erased value anywhere in the database with Holding.
func TextCells(t *testing.T, db *sql.DB) []string {
	t.Helper()
	ctx := t.Context()
	var tables []string
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		rows, err = db.QueryContext(ctx, `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	}
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("found %d tables (%v); the dump would prove nothing", len(tables), tables)
	}
	var cells []string
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("dump %s: %v", table, err)
			}
			for i, v := range vals {
				switch v := v.(type) {
				case string:
					cells = append(cells, table+"."+cols[i]+": "+v)
				case []byte:
					cells = append(cells, table+"."+cols[i]+": "+string(v))
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		rows.Close()
	}
	return cells
}

func leaks(cells, values []string) []string { return Holding(cells, values...) }

// Holding returns the cells holding any of values, in any letter case.
func Holding(cells []string, values ...string) []string {
	var found []string
	for _, c := range cells {
		for _, v := range values {
			if strings.Contains(strings.ToLower(c), strings.ToLower(v)) {
				found = append(found, c)
				break
			}
		}
	}
	return found
}

func testAnonymiseRegistration(t *testing.T, h Harness) {
	ctx := t.Context()
	clock := time.Date(2027, 7, 1, 9, 0, 0, 0, time.UTC)
	e := h(t, func() time.Time { return clock })
	s := e.Store
	if err := s.SyncTickets(ctx, testEvent(5)); err != nil {
		t.Fatal(err)
	}
	r := erasureFixture(t, e)
	other := registerAs(t, s, "standard", func(o *registration.Registration) {
		o.FirstName, o.LastName, o.Email, o.Company = "Grace", "Hopper", "grace@example.org", "Navy"
	})
	// The fixture holds what the erasure must remove: the dump finds it first.
	before := leaks(textCells(t, e), personalValues)
	for _, table := range []string{"registrations.", "orders.", "mailing_list.", "registration_steps.", "audit_log.",
		"messages.", "refunds.", "organiser_notices."} {
		if len(leaks(before, []string{table})) == 0 {
			t.Errorf("before the erasure no %s cell holds the attendee's data: the fixture misses a copy", table)
		}
	}

	var calls int
	audit := registration.AuditEntry{Actor: "owner@example.org", Action: "erase", RegistrationID: r.ID,
		Detail: "personal data erased", Address: "192.0.2.7"}
	old, msgs, err := s.AnonymiseRegistration(ctx, r.ID, audit, e.thenMark("erase", &calls))
	if err != nil {
		t.Fatalf("AnonymiseRegistration: %v", err)
	}
	if old.Email != "ada@example.org" || old.LastName != "Lovelace" || fmt.Sprint(msgs) != "[resend-erasure]" || calls != 1 {
		t.Errorf("AnonymiseRegistration returned %s %s, messages %v, then called %d times; want Ada's details, [resend-erasure], 1",
			old.Email, old.LastName, msgs, calls)
	}
	if l := leaks(textCells(t, e), personalValues); len(l) > 0 {
		t.Errorf("after the erasure the database still holds the attendee's data:\n%s", strings.Join(l, "\n"))
	}
	got, err := s.Registration(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := registration.ErasedEmail(r.ID)
	if got.FirstName != "erased" || got.LastName != "erased" || got.Email != want || got.Company != "" ||
		got.Billing != (payment.BillingAddress{Country: "GB"}) || !got.AnonymisedAt.Equal(clock) {
		t.Errorf("erased registration: %s %s <%s> %q %+v at %v; want erased erased <%s>, no company, only the country, at %v",
			got.FirstName, got.LastName, got.Email, got.Company, got.Billing, got.AnonymisedAt, want, clock)
	}
	if got.Amount != r.Amount || got.Currency != r.Currency || got.Payment != r.Payment || got.TicketID != r.TicketID ||
		!got.CreatedAt.Equal(r.CreatedAt) || !got.NewsletterConsentedAt.Equal(r.NewsletterConsentedAt) ||
		got.NewsletterConsentText != registration.NewsletterConsentText {
		t.Errorf("the accounts' data changed: %+v", got)
	}
	for _, st := range got.Steps {
		switch st.Name {
		case registration.StepSendConfirmation, registration.StepAddToMailingList:
			if st.Status != registration.StepSkipped || st.LastError != registration.ErasedStepNotice {
				t.Errorf("step %s = %s %q; want skipped with the erasure notice", st.Name, st.Status, st.LastError)
			}
		default:
			if st.Status != registration.StepPending {
				t.Errorf("step %s = %s; want it left pending (the order is saved with the erased details)", st.Name, st.Status)
			}
		}
	}
	m, err := s.Message(ctx, "resend-erasure")
	if err != nil || m.State != registration.MessageFailed || m.To != want {
		t.Errorf("queued email after the erasure: %+v, %v; want failed, to %s", m, err, want)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM mailing_list`); n != 0 {
		t.Errorf("mailing list rows = %d; want 0", n)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM audit_log WHERE action = 'erase' AND detail = 'personal data erased'`); n != 1 {
		t.Errorf("erase audit entries = %d; want 1", n)
	}
	// The other attendee is untouched.
	if g, err := s.Registration(ctx, other.ID); err != nil || g.Email != "grace@example.org" || g.Anonymised() {
		t.Errorf("the other registration after the erasure: %+v, %v", g, err)
	}
	ids, err := s.RegistrationsToAnonymise(ctx, testEventID, 10)
	if err != nil || fmt.Sprint(ids) != fmt.Sprint([]string{other.ID}) {
		t.Errorf("RegistrationsToAnonymise = %v, %v; want only %s", ids, err, other.ID)
	}

	// A mailing-list step in flight during the erasure lists nobody.
	if ask, err := s.SubscribePending(ctx, subscriberOf(r), hashOf("late")); err != nil || ask {
		t.Errorf("SubscribePending of the erased registration = %v, %v; want false, nil", ask, err)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM mailing_list`); n != 0 {
		t.Errorf("mailing list rows after a late subscription = %d; want 0", n)
	}

	// Twice: nothing changes, then is not called.
	clock = clock.Add(time.Hour)
	if _, _, err := s.AnonymiseRegistration(ctx, r.ID, audit, e.thenMark("erase2", &calls)); !errors.Is(err, registration.ErrAlreadyAnonymised) {
		t.Errorf("second AnonymiseRegistration = %v; want ErrAlreadyAnonymised", err)
	}
	if again, _ := s.Registration(ctx, r.ID); !again.AnonymisedAt.Equal(got.AnonymisedAt) || calls != 1 || e.auditCount(t, "erase") != 1 {
		t.Errorf("second erasure changed something: at %v, then called %d times, %d audit entries", again.AnonymisedAt, calls, e.auditCount(t, "erase"))
	}
	if _, _, err := s.AnonymiseRegistration(ctx, "nope", audit, nil); !errors.Is(err, registration.ErrNotFound) {
		t.Errorf("AnonymiseRegistration(nope) = %v; want ErrNotFound", err)
	}
	// Without an action, no audit entry (the retention job records one for its run).
	if _, _, err := s.AnonymiseRegistration(ctx, other.ID, registration.AuditEntry{}, nil); err != nil {
		t.Fatal(err)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM audit_log WHERE action = ''`); n != 0 {
		t.Errorf("an erasure without an action recorded %d empty audit entries", n)
	}
	if ids, err := s.RegistrationsToAnonymise(ctx, testEventID, 10); err != nil || len(ids) != 0 {
		t.Errorf("RegistrationsToAnonymise after erasing both = %v, %v; want none", ids, err)
	}
}
