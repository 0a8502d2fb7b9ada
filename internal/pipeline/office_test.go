package pipeline_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/paypal"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/postgres"
	"github.com/registrar/registrar/internal/providertest"
	"github.com/registrar/registrar/internal/registration"
)

// officeStore is what both engines' stores provide.
type officeStore interface {
	pipeline.Store
	pipeline.OfficeStore
	pipeline.MailingList
	registration.Store
	admin.Store
	SyncTickets(ctx context.Context, ev *event.Event) error
	StepFailed(ctx context.Context, id string, step registration.StepName, msg string, final bool) error
}

// engines are the databases every back-office test runs on.
var engines = []string{"sqlite", "postgres"}

// officeEvent has a ticket with one seat, to see a cancelled seat go back
// on sale.
const officeEvent = `{
  "id": "officeconf-2027", "name": "OfficeConf 2027", "starts_at": "2027-06-10T09:00:00+02:00",
  "venue": "Hall 1, Berlin", "currency": "EUR",
  "email_from": {"address": "tickets@officeconf.example", "name": "OfficeConf"},
  "tickets": [
    {"id": "standard", "name": "Standard", "price": "149.00", "capacity": 400},
    {"id": "last", "name": "Last seat", "price": "99.00", "capacity": 1},
    {"id": "free", "name": "Community", "price": "0.00", "capacity": 50}
  ]
}`

type officeHarness struct {
	engine    string
	store     officeStore
	pipe      *pipeline.Pipeline
	office    *pipeline.Office
	svc       *registration.Service
	proc      *payment.TestProcessor
	mailer    *testMailer
	outboxDir string
	ev        *event.Event
}

type officeOptions struct {
	mailer    func(m *testMailer)
	processor payment.Processor // nil: the test processor
	notifyTo  []string
	// notices is how often organisers are told; 0: once an hour (never in
	// a test).
	notices time.Duration
	// stopped leaves the pipeline's workers stopped.
	stopped bool
	// retentionDays is Options.RetentionDays.
	retentionDays int
	// list is the mailing list; nil: the store's local list.
	list pipeline.MailingList
}

// openEngine opens a migrated, empty database of the engine, or skips the
// test when PostgreSQL is not configured.
func openEngine(t *testing.T, engine string, ev *event.Event) (officeStore, riverdriver.Driver[*sql.Tx]) {
	t.Helper()
	if engine == "sqlite" {
		db, store := template.Open(t, ev)
		return store, riversqlite.New(db.Write)
	}
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		t.Skip("TEST_DATABASE_URL is not set: skipping the PostgreSQL tests")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "pipeline_test_" + hex.EncodeToString(b[:])
	adminDB, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer adminDB.Close()
	if _, err := adminDB.ExecContext(t.Context(), `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	ctx := context.Background()
	db, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(db)
	if err := store.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	return store, db.RiverDriver()
}

// newOfficeHarness wires the pipeline as cmd/registrar does, back office
// included, through pipeline.New.
func newOfficeHarness(t *testing.T, engine string, o officeOptions) *officeHarness {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ev, err := event.Parse([]byte(officeEvent))
	if err != nil {
		t.Fatal(err)
	}
	store, driver := openEngine(t, engine, ev)
	h := &officeHarness{engine: engine, store: store, ev: ev, proc: payment.NewTestProcessor(),
		outboxDir: filepath.Join(t.TempDir(), "outbox")}
	outbox, err := email.NewOutbox(h.outboxDir)
	if err != nil {
		t.Fatal(err)
	}
	h.mailer = &testMailer{outbox: outbox}
	if o.mailer != nil {
		o.mailer(h.mailer)
	}
	renderer, err := email.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	var processor payment.Processor = h.proc
	if o.processor != nil {
		processor = o.processor
	}
	h.svc = registration.NewService(store, processor, func(ctx context.Context, tx *sql.Tx, id string) error {
		return h.pipe.Enqueue(ctx, tx, id)
	}, ev, log)
	opts := testOptions()
	opts.NoticeInterval = time.Hour
	if o.notices > 0 {
		opts.NoticeInterval = o.notices
	}
	opts.ClientID = "office-test-" + engine
	opts.RetentionDays = o.retentionDays
	var list pipeline.MailingList = store
	if o.list != nil {
		list = o.list
	}
	h.pipe, err = pipeline.New(driver, pipeline.Deps{
		Store: store, Mailer: h.mailer, List: list, Renderer: renderer, Event: ev, Log: log,
		BaseURL:  "http://registrar.test",
		Payments: resolverFunc(func(ctx context.Context, now time.Time) (int, error) { return 0, nil }),
		Office:   store, Refunds: processor, NotifyTo: o.notifyTo,
		Owners: func(ctx context.Context) ([]string, error) { return []string{"owner@officeconf.example"}, nil },
	}, opts, true, log)
	if err != nil {
		t.Fatalf("pipeline.New: %v", err)
	}
	if h.pipe.ID() != opts.ClientID {
		t.Errorf("client id %q, want %q", h.pipe.ID(), opts.ClientID)
	}
	h.office = h.pipe.Office()
	if !o.stopped {
		h.start(t)
	}
	return h
}

func (h *officeHarness) start(t *testing.T) {
	t.Helper()
	if err := h.pipe.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.pipe.Stop(ctx); err != nil {
			t.Errorf("stop pipeline: %v", err)
		}
	})
}

func (h *officeHarness) register(t *testing.T, ticket string, n int) string {
	t.Helper()
	req := request(n, false)
	req.Ticket = ticket
	id, err := h.svc.Register(t.Context(), req, "")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return id
}

// wait polls the registration until ok.
func (h *officeHarness) wait(t *testing.T, id, what string, ok func(r registration.Registration) bool) registration.Registration {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		r, err := h.store.Registration(t.Context(), id)
		if err != nil {
			t.Fatalf("Registration(%s): %v", id, err)
		}
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration %s is %s (refunded %d, steps %+v) after %s; want %s", id, r.Status, r.Refunded, r.Steps, waitFor, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *officeHarness) waitStatus(t *testing.T, id string, want registration.Status) registration.Registration {
	t.Helper()
	return h.wait(t, id, string(want), func(r registration.Registration) bool { return r.Status == want })
}

// waitRefund polls a refund until it leaves requested (and, for pending,
// until it is pending).
func (h *officeHarness) waitRefund(t *testing.T, id string, want registration.RefundState) registration.Refund {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		rf, err := h.store.Refund(t.Context(), id)
		if err != nil {
			t.Fatalf("Refund(%s): %v", id, err)
		}
		if rf.State == want {
			return rf
		}
		if rf.State != registration.RefundRequested || time.Now().After(deadline) {
			t.Fatalf("refund %s is %s (%q), want %s", id, rf.State, rf.Error, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *officeHarness) waitMessage(t *testing.T, id string, want registration.MessageState) registration.Message {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		m, err := h.store.Message(t.Context(), id)
		if err != nil {
			t.Fatalf("Message(%s): %v", id, err)
		}
		if m.State == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s is %s (%q), want %s", id, m.State, m.Error, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// email reads an outbox file.
func (h *officeHarness) email(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.outboxDir, name))
	if err != nil {
		t.Fatalf("email %s: %v", name, err)
	}
	return string(data)
}

func (h *officeHarness) audit(t *testing.T, id string) []registration.AuditEntry {
	t.Helper()
	entries, err := h.store.AuditLog(t.Context(), admin.AuditFilter{RegistrationID: id, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// auditHas reports the entry of an action on a registration.
func (h *officeHarness) auditHas(t *testing.T, id, action string, detail ...string) {
	t.Helper()
	for _, e := range h.audit(t, id) {
		if e.Action != action {
			continue
		}
		ok := e.Actor == organiser.Email && e.Address == organiser.Address && !e.At.IsZero()
		for _, d := range detail {
			ok = ok && strings.Contains(e.Detail, d)
		}
		if ok {
			return
		}
	}
	t.Errorf("no audit entry %s by %s from %s with %q: %+v", action, organiser.Email, organiser.Address, detail, h.audit(t, id))
}

var organiser = admin.Actor{AccountID: 1, Email: "finance@officeconf.example", Role: admin.RoleFinance, Address: "192.0.2.7"}

// fieldError checks a validation error naming field.
func fieldError(t *testing.T, err error, field string) {
	t.Helper()
	var e *registration.Error
	if !errors.As(err, &e) || e.Code != registration.CodeValidationFailed || e.Fields[field] == "" {
		t.Errorf("error %v, want validation_failed on %s", err, field)
	}
}

func notFoundError(t *testing.T, err error) {
	t.Helper()
	var e *registration.Error
	if !errors.As(err, &e) || e.Code != registration.CodeNotFound {
		t.Errorf("error %v, want not_found", err)
	}
}

func eachEngine(t *testing.T, test func(t *testing.T, engine string)) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			test(t, engine)
		})
	}
}

// TestOfficeRetry: a step made to fail leaves the registration needing
// attention; once the cause is fixed, Retry takes it back to processing and
// to completed.
func TestOfficeRetry(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{mailer: func(m *testMailer) { m.permanent = true }})
		ctx := t.Context()
		id := h.register(t, "standard", 1)
		h.waitStatus(t, id, registration.StatusNeedsAttention)
		notFoundError(t, h.office.Retry(ctx, organiser, "nosuchregistrationnosuchregistra"))

		h.mailer.set(func(m *testMailer) { m.permanent = false })
		if err := h.office.Retry(ctx, organiser, id); err != nil {
			t.Fatalf("Retry: %v", err)
		}
		r, err := h.store.Registration(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != registration.StatusProcessing && r.Status != registration.StatusCompleted {
			t.Errorf("after Retry the registration is %s, want processing", r.Status)
		}
		r = h.waitStatus(t, id, registration.StatusCompleted)
		if st, _ := r.Step(registration.StepSendConfirmation); st.Status != registration.StepSucceeded {
			t.Errorf("send_confirmation is %s", st.Status)
		}
		h.auditHas(t, id, pipeline.ActionRetry, "send_confirmation")
		// Nothing failed any more: a second retry changes nothing.
		before := len(h.audit(t, id))
		if err := h.office.Retry(ctx, organiser, id); err != nil {
			t.Fatalf("second Retry: %v", err)
		}
		if after := len(h.audit(t, id)); after != before {
			t.Errorf("a retry with nothing failed was audited (%d → %d entries)", before, after)
		}
	})
}

// TestOfficeResend: the confirmation goes again, to a corrected address, as
// a message of its own; the same form key sends it once.
func TestOfficeResend(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{})
		ctx := t.Context()
		id := h.register(t, "standard", 2)
		h.waitStatus(t, id, registration.StatusCompleted)
		sends := h.mailer.Calls()

		fieldError(t, h.office.Resend(ctx, organiser, id, "ada@", "k-bad"), "to")
		notFoundError(t, h.office.Resend(ctx, organiser, "nosuchregistrationnosuchregistra", "", "k-x"))
		for range 2 { // a double submission
			if err := h.office.Resend(ctx, organiser, id, " ada@example.net ", "k-resend-1"); err != nil {
				t.Fatalf("Resend: %v", err)
			}
		}
		m := h.waitMessage(t, "resend-k-resend-1", registration.MessageSent)
		if m.To != "ada@example.net" || m.Kind != registration.MessageConfirmation || m.RequestedBy != organiser.Email || m.Reference == "" {
			t.Errorf("message %+v", m)
		}
		raw := h.email(t, "resend-k-resend-1.eml")
		for _, want := range []string{"<ada@example.net>", "Message-ID: <resend-k-resend-1@officeconf.example>", "Your ticket for OfficeConf 2027", "X-Registration-ID: " + id} {
			if !strings.Contains(raw, want) {
				t.Errorf("resent email lacks %q:\n%s", want, raw)
			}
		}
		if err := h.office.Resend(ctx, organiser, id, "", "k-resend-2"); err != nil {
			t.Fatal(err)
		}
		if m := h.waitMessage(t, "resend-k-resend-2", registration.MessageSent); m.To != "Ada.2@Example.org" {
			t.Errorf("resend to the attendee's own address went to %q", m.To)
		}
		if got := h.mailer.Calls() - sends; got != 2 {
			t.Errorf("%d emails sent by three resends of two keys, want 2", got)
		}
		h.auditHas(t, id, pipeline.ActionResend, "ada@example.net")
		preview, err := h.office.Preview(ctx, registration.Registration{}, registration.Message{})
		if err == nil {
			t.Errorf("preview of nothing rendered %q", preview.Subject)
		}
		r, _ := h.store.Registration(ctx, id)
		if preview, err := h.office.Preview(ctx, r, m); err != nil || preview.To.Email != m.To || preview.ID != m.ID {
			t.Errorf("preview = %+v, %v", preview, err)
		}
	})
}

// TestOfficeEdit: corrections follow the form's rules and are audited with
// old and new values.
func TestOfficeEdit(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{stopped: true})
		ctx := t.Context()
		id := h.register(t, "standard", 3)
		for field, e := range map[string]registration.AttendeeEdit{
			"first_name": {FirstName: " ", LastName: "Lovelace", Email: "ada@example.org"},
			"last_name":  {FirstName: "Ada", LastName: strings.Repeat("x", 101), Email: "ada@example.org"},
			"email":      {FirstName: "Ada", LastName: "Lovelace", Email: "ada@"},
			"company":    {FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.org", Company: "A\x00B"},
		} {
			fieldError(t, h.office.Edit(ctx, organiser, id, e), field)
		}
		before, _ := h.store.Registration(ctx, id)
		if before.LastName != "Lovelace 3" {
			t.Fatalf("a refused edit changed the registration: %+v", before)
		}
		edit := registration.AttendeeEdit{FirstName: "Ada", LastName: "King", Email: " ada.king@example.org ", Company: "Analytical Engines"}
		if err := h.office.Edit(ctx, organiser, id, edit); err != nil {
			t.Fatalf("Edit: %v", err)
		}
		r, _ := h.store.Registration(ctx, id)
		if r.LastName != "King" || r.Email != "ada.king@example.org" || r.FirstName != "Ada" {
			t.Errorf("after the edit: %s %s <%s>", r.FirstName, r.LastName, r.Email)
		}
		h.auditHas(t, id, pipeline.ActionEdit, `last name "Lovelace 3" → "King"`, `email "Ada.3@Example.org" → "ada.king@example.org"`)
		n := len(h.audit(t, id))
		if err := h.office.Edit(ctx, organiser, id, edit); err != nil {
			t.Fatal(err)
		}
		if len(h.audit(t, id)) != n {
			t.Error("an edit that changes nothing was audited")
		}
		notFoundError(t, h.office.Edit(ctx, organiser, "nosuchregistrationnosuchregistra", edit))
	})
}

// TestOfficeCancel: the seat goes back on sale, the refund goes through the
// test processor and the attendee is told; a second cancel changes nothing.
func TestOfficeCancel(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{})
		ctx := t.Context()
		id := h.register(t, "last", 4)
		h.waitStatus(t, id, registration.StatusCompleted)
		req := request(5, false)
		req.Ticket = "last"
		if _, err := h.svc.Register(ctx, req, ""); err == nil {
			t.Fatal("the last seat was sold twice")
		}
		fieldError(t, h.office.Cancel(ctx, organiser, id, admin.Cancellation{Refund: 9901, Key: "c-too-much"}), "amount")
		fieldError(t, h.office.Cancel(ctx, organiser, id, admin.Cancellation{Refund: -1, Key: "c-negative"}), "amount")
		if r, _ := h.store.Registration(ctx, id); r.Status != registration.StatusCompleted {
			t.Fatalf("a refused cancel changed the registration to %s", r.Status)
		}
		c := admin.Cancellation{Refund: 9900, Notify: true, Key: "c-1", Reason: "asked by phone"}
		if err := h.office.Cancel(ctx, organiser, id, c); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		r := h.wait(t, id, "cancelled and refunded", func(r registration.Registration) bool {
			return r.Status == registration.StatusCancelled && r.Refunded == 9900
		})
		if r.CancelledAt.IsZero() {
			t.Error("cancelled_at not set")
		}
		if got := h.proc.Refunded(r.Payment.Reference); got != 9900 {
			t.Errorf("processor refunded %d, want 9900", got)
		}
		rf := h.waitRefund(t, "c-1", registration.RefundSucceeded)
		if rf.Reference == "" || rf.RequestedBy != organiser.Email || rf.Reason != "asked by phone" {
			t.Errorf("refund %+v", rf)
		}
		h.waitMessage(t, "cancel-c-1", registration.MessageSent)
		raw := h.email(t, "cancel-c-1.eml")
		for _, want := range []string{"is cancelled", "99.00 EUR", "To: \"Ada Lovelace 4\" <Ada.4@Example.org>"} {
			if !strings.Contains(raw, want) {
				t.Errorf("cancellation email lacks %q:\n%s", want, raw)
			}
		}
		// The seat is on sale again.
		if _, err := h.svc.Register(ctx, req, ""); err != nil {
			t.Errorf("the cancelled seat is not on sale again: %v", err)
		}
		h.auditHas(t, id, pipeline.ActionCancel, "99.00 EUR", "asked by phone")
		auditBefore := len(h.audit(t, id))
		if err := h.office.Cancel(ctx, organiser, id, admin.Cancellation{Refund: 0, Notify: true, Key: "c-2"}); err != nil {
			t.Fatalf("second Cancel: %v", err)
		}
		if _, err := h.store.Message(ctx, "cancel-c-2"); !errors.Is(err, registration.ErrNotFound) {
			t.Errorf("a second cancel queued an email: %v", err)
		}
		if n := len(h.audit(t, id)); n != auditBefore {
			t.Errorf("a second cancel was audited as a change (%d → %d entries)", auditBefore, n)
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := os.Stat(filepath.Join(h.outboxDir, "cancel-c-2.eml")); err == nil {
			t.Error("a second cancel sent an email")
		}
		// A free registration cancels without a refund.
		free := h.register(t, "free", 6)
		fieldError(t, h.office.Cancel(ctx, organiser, free, admin.Cancellation{Refund: 1, Key: "c-free"}), "amount")
		if err := h.office.Cancel(ctx, organiser, free, admin.Cancellation{Key: "c-free-2"}); err != nil {
			t.Fatal(err)
		}
		h.waitStatus(t, free, registration.StatusCancelled)
	})
}

// TestOfficeRefundHalf refunds half through the test processor, then
// refuses more than the rest.
func TestOfficeRefundHalf(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{})
		ctx := t.Context()
		id := h.register(t, "standard", 7)
		h.waitStatus(t, id, registration.StatusCompleted)
		fieldError(t, h.office.Refund(ctx, organiser, id, 0, "", "r-zero"), "amount")
		fieldError(t, h.office.Refund(ctx, organiser, id, 14901, "", "r-big"), "amount")
		for range 2 {
			if err := h.office.Refund(ctx, organiser, id, 7450, "goodwill", "r-half"); err != nil {
				t.Fatalf("Refund: %v", err)
			}
		}
		rf := h.waitRefund(t, "r-half", registration.RefundSucceeded)
		if rf.Amount != 7450 || rf.Currency != "EUR" {
			t.Errorf("refund %+v", rf)
		}
		r := h.wait(t, id, "refunded half", func(r registration.Registration) bool { return r.Refunded == 7450 })
		if r.Status != registration.StatusCompleted {
			t.Errorf("a refund changed the status to %s", r.Status)
		}
		if got := h.proc.Refunded(r.Payment.Reference); got != 7450 {
			t.Errorf("processor refunded %d after a double submission, want 7450", got)
		}
		fieldError(t, h.office.Refund(ctx, organiser, id, 7451, "", "r-more"), "amount")
		h.auditHas(t, id, pipeline.ActionRefund, "74.50 EUR", "goodwill")
		notFoundError(t, h.office.Refund(ctx, organiser, "nosuchregistrationnosuchregistra", 1, "", "r-none"))
	})
}

// TestOfficeConcurrentRefunds: organisers clicking at once never refund
// more than the charge.
func TestOfficeConcurrentRefunds(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{})
		ctx := t.Context()
		id := h.register(t, "standard", 8)
		h.waitStatus(t, id, registration.StatusCompleted)
		const n, each = 8, 4000 // 8 × 40.00 of a 149.00 charge: at most 3 fit
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = h.office.Refund(ctx, organiser, id, each, "", fmt.Sprintf("r-race-%d", i)) })
		}
		wg.Wait()
		accepted := 0
		for _, err := range errs {
			var e *registration.Error
			switch {
			case err == nil:
				accepted++
			case errors.As(err, &e) && e.Code == registration.CodeValidationFailed:
			default:
				t.Errorf("Refund: %v", err)
			}
		}
		if accepted != 3 {
			t.Errorf("%d of %d concurrent refunds accepted, want exactly 3", accepted, n)
		}
		r := h.wait(t, id, "refunds done", func(r registration.Registration) bool { return r.Refunded == int64(accepted)*each })
		if r.Refunded > r.Amount || h.proc.Refunded(r.Payment.Reference) > r.Amount {
			t.Errorf("refunded %d (processor %d) of a %d charge", r.Refunded, h.proc.Refunded(r.Payment.Reference), r.Amount)
		}
	})
}

// TestOfficeRefundPayPal refunds through PayPal (the fake checks every
// request against PayPal's spec): the refund's id is the PayPal-Request-Id,
// and PayPal's outcomes become the refund's.
func TestOfficeRefundPayPal(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		fake := providertest.NewPayPal(t, "client", "secret")
		client := paypal.New(fake.URL(), "client", "secret", nil, slog.New(slog.DiscardHandler))
		h := newOfficeHarness(t, engine, officeOptions{processor: client})
		ctx := t.Context()
		id := h.register(t, "standard", 9)
		r := h.waitStatus(t, id, registration.StatusCompleted)
		if r.Payment.Provider != "paypal" {
			t.Fatalf("charged by %q", r.Payment.Provider)
		}
		if err := h.office.Refund(ctx, organiser, id, 7450, "", "pp-half"); err != nil {
			t.Fatal(err)
		}
		rf := h.waitRefund(t, "pp-half", registration.RefundSucceeded)
		if got := fake.RefundRequestID(rf.Reference); got != "pp-half" {
			t.Errorf("PayPal-Request-Id %q, want the refund's id", got)
		}
		if got := fake.RefundsOf(r.Payment.Reference); len(got) != 1 || got[0] != "74.50 EUR COMPLETED" {
			t.Errorf("PayPal refunds %q", got)
		}
		h.wait(t, id, "refunded half", func(r registration.Registration) bool { return r.Refunded == 7450 })

		fake.RefuseRefunds("REFUND_TIME_LIMIT_EXCEEDED")
		if err := h.office.Refund(ctx, organiser, id, 1000, "", "pp-late"); err != nil {
			t.Fatal(err)
		}
		if rf := h.waitRefund(t, "pp-late", registration.RefundFailed); !strings.Contains(rf.Error, "too old") {
			t.Errorf("time limit: %q", rf.Error)
		}
		fake.RefuseRefunds("CAPTURE_FULLY_REFUNDED")
		if err := h.office.Refund(ctx, organiser, id, 1000, "", "pp-other"); err != nil {
			t.Fatal(err)
		}
		if rf := h.waitRefund(t, "pp-other", registration.RefundFailed); !strings.Contains(rf.Error, "other means") {
			t.Errorf("fully refunded: %q", rf.Error)
		}
		fake.PendRefunds(true)
		if err := h.office.Refund(ctx, organiser, id, 2000, "", "pp-pending"); err != nil {
			t.Fatal(err)
		}
		if rf := h.waitRefund(t, "pp-pending", registration.RefundPending); rf.Reference == "" {
			t.Errorf("pending refund without reference: %+v", rf)
		}
		// Failed refunds freed their reservation: the rest can still be refunded.
		fake.PendRefunds(false)
		if err := h.office.Refund(ctx, organiser, id, 14900-7450-2000, "", "pp-rest"); err != nil {
			t.Fatalf("refund of the rest: %v", err)
		}
		h.waitRefund(t, "pp-rest", registration.RefundSucceeded)
		r = h.wait(t, id, "refunded all but the pending", func(r registration.Registration) bool { return r.Refunded == 14900-2000 })
		notices, err := h.store.PendingNotices(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		failed := 0
		for _, n := range notices {
			if n.Kind == registration.NoticeRefundFailed && n.RegistrationID == id {
				failed++
			}
		}
		if failed != 2 {
			t.Errorf("%d refund_failed notices, want 2: %+v", failed, notices)
		}
	})
}

// TestCancelledRegistrationJobs: a registration cancelled while one of its
// steps runs is not failed back to needs_attention when the step fails: the
// job completes and the registration stays cancelled.
func TestCancelledRegistrationJobs(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		stall := make(chan struct{})
		h := newOfficeHarness(t, engine, officeOptions{mailer: func(m *testMailer) { m.stall = stall }})
		ctx := t.Context()
		id := h.register(t, "standard", 10)
		h.wait(t, id, "sending", func(r registration.Registration) bool {
			st, _ := r.Step(registration.StepSendConfirmation)
			return st.Status == registration.StepRunning
		})
		if err := h.office.Cancel(ctx, organiser, id, admin.Cancellation{Key: "c-running"}); err != nil {
			t.Fatal(err)
		}
		// The send fails, permanently: without the cancellation this would
		// fail the step and the registration at once.
		h.mailer.set(func(m *testMailer) { m.permanent = true })
		close(stall)
		deadline := time.Now().Add(waitFor)
		for {
			// The send ran in the register job, which completes without a
			// retry job for the step.
			res, err := h.pipe.Client().JobList(ctx, river.NewJobListParams().Kinds(pipeline.KindRegister, pipeline.KindSendConfirmation))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Jobs) == 1 && res.Jobs[0].Kind == pipeline.KindRegister && res.Jobs[0].State == rivertype.JobStateCompleted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("register and send_confirmation jobs %+v, want one register job completed", res.Jobs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		r, err := h.store.Registration(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != registration.StatusCancelled {
			t.Errorf("a cancelled registration became %s", r.Status)
		}
		if st, _ := r.Step(registration.StepSendConfirmation); st.Status == registration.StepFailed {
			t.Errorf("the step of a cancelled registration was failed: %+v", st)
		}
		notices, _ := h.store.PendingNotices(ctx, 10)
		for _, n := range notices {
			if n.RegistrationID == id && n.Kind == registration.NoticeNeedsAttention {
				t.Errorf("organisers were told a cancelled registration needs attention: %+v", n)
			}
		}
	})
}

// TestNotifierSendsOneBatch: whatever waits is sent in one email per run
// and recipient, with links into the back office, and only once.
func TestNotifierSendsOneBatch(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{stopped: true, notices: 300 * time.Millisecond,
			notifyTo: []string{"ops@officeconf.example"}})
		ctx := t.Context()
		a := h.register(t, "standard", 11)
		b := h.register(t, "standard", 12)
		for _, id := range []string{a, b} {
			if err := h.store.StepFailed(ctx, id, registration.StepSendConfirmation, "mailer: 550 rejected", true); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.store.RecordIncident(ctx, registration.Incident{AttemptID: "attemptattemptattemptattemptatte",
			Kind: registration.IncidentUnresolved, Provider: "paypal", Amount: 14900, Currency: "EUR",
			Detail: "outcome unknown after 5 hours", CreatedAt: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
		pending, err := h.store.PendingNotices(ctx, 10)
		if err != nil || len(pending) != 3 {
			t.Fatalf("%d notices pending (%v), want 3", len(pending), err)
		}
		h.start(t)
		deadline := time.Now().Add(waitFor)
		var batches []string
		for {
			batches = noticeEmails(t, h.outboxDir)
			if len(batches) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // several more runs
		batches = noticeEmails(t, h.outboxDir)
		if len(batches) != 1 {
			t.Fatalf("%d notice emails, want 1: %q", len(batches), batches)
		}
		raw := h.email(t, batches[0])
		for _, want := range []string{"To: <ops@officeconf.example>", "3 things need your attention",
			"http://registrar.test/admin/registrations/" + a, "http://registrar.test/admin/registrations/" + b,
			"http://registrar.test/admin/incidents", "Lovelace 11"} {
			if !strings.Contains(strings.ReplaceAll(raw, "=\r\n", ""), want) {
				t.Errorf("notice email lacks %q:\n%s", want, raw)
			}
		}
		if pending, _ := h.store.PendingNotices(ctx, 10); len(pending) != 0 {
			t.Errorf("%d notices still pending after the email", len(pending))
		}
		// A later notice goes in a later email.
		c := h.register(t, "standard", 13)
		if err := h.store.StepFailed(ctx, c, registration.StepSaveOrder, "disk full", true); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(waitFor)
		for len(noticeEmails(t, h.outboxDir)) < 2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := noticeEmails(t, h.outboxDir); len(got) != 2 {
			t.Fatalf("%d notice emails after a second notice, want 2: %q", len(got), got)
		}

	})
}

func noticeEmails(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "notices-") && strings.HasSuffix(e.Name(), ".eml") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPipelineLifecycle: a web-only pipeline inserts but never works jobs;
// Stop without Start, and a second Stop, do nothing.
func TestPipelineLifecycle(t *testing.T) {
	t.Parallel()
	ev := event.Demo()
	db, store := template.Open(t, ev)
	log := slog.New(slog.DiscardHandler)
	deps := pipeline.Deps{Store: store, Log: log, Event: ev, Office: store}
	web, err := pipeline.New(riversqlite.New(db.Write), deps, testOptions(), false, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := web.Stop(ctx); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
	if err := web.Start(ctx); err != nil {
		t.Fatalf("Start of a web-only pipeline: %v", err)
	}
	if web.Office() == nil {
		t.Error("a pipeline with an office store has no Office")
	}
	worker, err := pipeline.New(riversqlite.New(db.Write), pipeline.Deps{Store: store, Log: log, Event: ev}, testOptions(), true, log)
	if err != nil {
		t.Fatal(err)
	}
	if worker.Office() != nil {
		t.Error("a pipeline without an office store has an Office")
	}
	if err := worker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := worker.Stop(sctx); err != nil {
			t.Errorf("Stop %d: %v", i+1, err)
		}
		cancel()
	}
	select {
	case <-worker.Client().Stopped():
	default:
		t.Error("the River client still runs after Stop")
	}
}
