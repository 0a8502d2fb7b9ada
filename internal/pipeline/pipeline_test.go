package pipeline_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/sqlite"
	"github.com/registrar/registrar/internal/sqlite/sqlitetest"
	"github.com/registrar/registrar/internal/telemetry"
)

const (
	testCard    = "4111 1111 1111 1111"
	testCardRaw = "4111111111111111"
	maxAttempts = 4
	// waitFor bounds every wait for the pipeline. It only matters when a
	// test fails; it is generous because the race detector slows the pure-Go
	// SQLite a lot, and other test binaries may share the machine.
	waitFor = 45 * time.Second
)

// testMailer wraps the real outbox. It can be told to fail the next N sends,
// to fail every send, or to reject sends permanently.
type testMailer struct {
	outbox *email.Outbox

	mu        sync.Mutex
	calls     int
	callTimes []time.Time
	failNext  int
	failAll   bool
	permanent bool
	// errs are returned by the next sends, in order.
	errs []error
	// failWith, when set, is returned by every send.
	failWith error
	// stall, when set, holds every send until it is closed.
	stall chan struct{}
	// newsletterErrs are returned by the next sends of the newsletter's
	// requests to confirm, in order, each after its message reached the
	// outbox: a send whose outcome the mailer could not tell.
	newsletterErrs []error
}

func (m *testMailer) Send(ctx context.Context, msg email.Message) (string, error) {
	if strings.HasPrefix(msg.ID, "newsletter-") {
		// The newsletter's requests to confirm an address are not counted,
		// and fail only as newsletterErrs says: these tests are about the
		// confirmation; newsletter_test.go tests them.
		ref, err := m.outbox.Send(ctx, msg)
		m.mu.Lock()
		defer m.mu.Unlock()
		if err == nil && len(m.newsletterErrs) > 0 {
			err, m.newsletterErrs = m.newsletterErrs[0], m.newsletterErrs[1:]
		}
		return ref, err
	}
	if m.stall != nil {
		select {
		case <-m.stall:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	m.mu.Lock()
	m.calls++
	m.callTimes = append(m.callTimes, time.Now())
	n := m.calls
	var err error
	switch {
	case m.failWith != nil:
		err = m.failWith
	case len(m.errs) > 0:
		err, m.errs = m.errs[0], m.errs[1:]
	case m.permanent:
		err = &pipeline.PermanentError{Err: errors.New("mailer: 550 recipient rejected")}
	case m.failAll:
		err = fmt.Errorf("mailer: 421 service unavailable (call %d)", n)
	case m.failNext > 0:
		m.failNext--
		err = fmt.Errorf("mailer: 451 try again later (call %d)", n)
	}
	m.mu.Unlock()
	if err != nil {
		return "", err
	}
	return m.outbox.Send(ctx, msg)
}

func (m *testMailer) set(f func(m *testMailer)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func (m *testMailer) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

func (m *testMailer) CallTimes() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.callTimes)
}

// providerRejection is a provider adapter's error that retrying cannot fix:
// the pipeline knows it only by its Permanent method.
type providerRejection struct{ msg string }

func (e *providerRejection) Error() string   { return e.msg }
func (e *providerRejection) Permanent() bool { return true }

// rateLimited is a provider adapter's error that says when to come back:
// the pipeline knows it only by its RetryAfter method.
type rateLimited struct{ wait time.Duration }

func (e *rateLimited) Error() string {
	return fmt.Sprintf("mailer: 429 too many requests; retry after %s", e.wait)
}
func (e *rateLimited) RetryAfter() time.Duration { return e.wait }

// template is the migrated database every test copies.
var template sqlitetest.Template

type harness struct {
	db        *sqlite.DB
	store     *sqlite.Store
	client    *river.Client[*sql.Tx]
	svc       *registration.Service
	proc      *payment.TestProcessor
	mailer    *testMailer
	outboxDir string
}

// resolverFunc adapts a function to pipeline.Resolver.
type resolverFunc func(ctx context.Context, now time.Time) (int, error)

func (f resolverFunc) ResolveAbandoned(ctx context.Context, now time.Time) (int, error) {
	return f(ctx, now)
}

func testOptions() pipeline.Options {
	return pipeline.Options{
		MaxAttempts:       maxAttempts,
		RetryBase:         10 * time.Millisecond,
		RetryCap:          50 * time.Millisecond,
		Workers:           10,
		ListWorkers:       2,
		RescueAfter:       time.Minute,
		JobTimeout:        30 * time.Second,
		FetchPollInterval: 20 * time.Millisecond,
	}
}

// newHarness wires the store, River and the service as cmd/registrar does,
// with the real outbox behind a test mailer and the local mailing list, and
// starts River.
func newHarness(t *testing.T, configure func(m *testMailer)) *harness {
	t.Helper()
	return newHarnessList(t, configure, nil)
}

// newHarnessList is newHarness with another mailing list (nil: the local
// one).
func newHarnessList(t *testing.T, configure func(m *testMailer), list pipeline.MailingList) *harness {
	t.Helper()
	return newHarnessWith(t, configure, list, slog.New(slog.DiscardHandler), nil)
}

// newHarnessWith is newHarnessList logging to log and tracing to tracing.
func newHarnessWith(t *testing.T, configure func(m *testMailer), list pipeline.MailingList, log *slog.Logger, tracing *telemetry.Tracing) *harness {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	ev := event.Demo()
	db, store := template.Open(t, ev)
	outboxDir := filepath.Join(dir, "outbox")
	outbox, err := email.NewOutbox(outboxDir)
	if err != nil {
		t.Fatal(err)
	}
	mailer := &testMailer{outbox: outbox}
	if configure != nil {
		configure(mailer)
	}
	if list == nil {
		list = store
	}
	renderer, err := email.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	// The service needs the client to enqueue and the client's resolver job
	// needs the service: the resolver reaches it once it exists, before the
	// client starts.
	var svc *registration.Service
	deps := pipeline.Deps{
		Store:    store,
		Mailer:   mailer,
		List:     list,
		Renderer: renderer,
		Payments: resolverFunc(func(ctx context.Context, now time.Time) (int, error) { return svc.ResolveAbandoned(ctx, now) }),
		Event:    ev,
		BaseURL:  "http://registrar.test",
		Log:      log,
		Tracing:  tracing,
	}
	cfg, err := pipeline.Config(deps, testOptions(), true, log)
	if err != nil {
		t.Fatalf("pipeline.Config: %v", err)
	}
	client, err := river.NewClient(riversqlite.New(db.Write), cfg)
	if err != nil {
		t.Fatalf("river.NewClient: %v", err)
	}
	proc := payment.NewTestProcessor()
	svc = registration.NewService(store, proc, pipeline.Enqueue(client), ev, log)
	if err := client.Start(ctx); err != nil {
		t.Fatalf("start River: %v", err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Stop(stopCtx); err != nil {
			t.Errorf("stop River: %v", err)
		}
	})
	return &harness{db: db, store: store, client: client, svc: svc, proc: proc, mailer: mailer, outboxDir: outboxDir}
}

func request(n int, newsletter bool) registration.Request {
	return registration.Request{
		Ticket: "standard",
		Attendee: registration.Attendee{
			FirstName: "Ada",
			LastName:  fmt.Sprintf("Lovelace %d", n),
			Email:     fmt.Sprintf("Ada.%d@Example.org", n),
			Company:   "Analytical Engines",
		},
		Billing: &registration.Billing{
			Card: registration.CardInput{
				Number: testCard,
				Expiry: time.Now().AddDate(2, 0, 0).Format("2006-01"),
				CVC:    "123",
				Name:   "Ada Lovelace",
			},
			Address: registration.Address{Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"},
		},
		Newsletter: newsletter,
	}
}

func (h *harness) register(t *testing.T, n int, newsletter bool) string {
	t.Helper()
	id, err := h.svc.Register(t.Context(), request(n, newsletter), "")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return id
}

// waitStatus polls the store until the registration has the wanted status.
func (h *harness) waitStatus(t *testing.T, id string, want registration.Status) registration.Registration {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		r, err := h.store.Registration(t.Context(), id)
		if err != nil {
			t.Fatalf("Registration(%s): %v", id, err)
		}
		// River marks a job completed shortly after the activity's own
		// commit: a completed registration waits for its jobs too.
		if r.Status == want && (want != registration.StatusCompleted || h.jobsFinished(t, id)) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration %s is %s after %s; want %s with its jobs finished (steps %+v, jobs %+v)", id, r.Status, waitFor, want, r.Steps, h.jobsOf(t, id))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// jobsFinished reports whether none of the registration's jobs is still to
// run or running.
func (h *harness) jobsFinished(t *testing.T, id string) bool {
	t.Helper()
	for _, j := range h.jobsOf(t, id) {
		switch j.state {
		case "completed", "cancelled", "discarded":
		default:
			return false
		}
	}
	return true
}

// waitJob polls River until the job satisfies ok.
func (h *harness) waitJob(t *testing.T, jobID int64, what string, ok func(*rivertype.JobRow) bool) *rivertype.JobRow {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		job, err := h.client.JobGet(t.Context(), jobID)
		if err != nil {
			t.Fatalf("JobGet(%d): %v", jobID, err)
		}
		if ok(job) {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d (%s) is %s at attempt %d after %s; want %s", jobID, job.Kind, job.State, job.Attempt, waitFor, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stateIs(s rivertype.JobState) func(*rivertype.JobRow) bool {
	return func(j *rivertype.JobRow) bool { return j.State == s }
}

type jobRow struct {
	id      int64
	kind    string
	state   string
	attempt int
	args    string
	errors  string
}

// jobs returns every River job, in id order.
func (h *harness) jobs(t *testing.T) []jobRow {
	t.Helper()
	rows, err := h.db.Read.QueryContext(t.Context(), `SELECT id, kind, state, attempt, json(args),
		coalesce(json(errors), '') FROM river_job ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var jobs []jobRow
	for rows.Next() {
		var j jobRow
		if err := rows.Scan(&j.id, &j.kind, &j.state, &j.attempt, &j.args, &j.errors); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return jobs
}

// jobsOf returns the jobs whose args name the registration.
func (h *harness) jobsOf(t *testing.T, id string) []jobRow {
	t.Helper()
	var mine []jobRow
	for _, j := range h.jobs(t) {
		var args struct {
			RegistrationID string `json:"registration_id"`
		}
		if err := json.Unmarshal([]byte(j.args), &args); err != nil {
			t.Fatalf("job %d args %q: %v", j.id, j.args, err)
		}
		if args.RegistrationID == id {
			mine = append(mine, j)
		}
	}
	return mine
}

func (h *harness) jobOf(t *testing.T, id, kind string) jobRow {
	t.Helper()
	var found []jobRow
	for _, j := range h.jobsOf(t, id) {
		if j.kind == kind {
			found = append(found, j)
		}
	}
	if len(found) != 1 {
		t.Fatalf("registration %s has %d %s jobs; want 1", id, len(found), kind)
	}
	return found[0]
}

// emails returns the .eml files in the outbox but the newsletter's
// requests to confirm an address.
func (h *harness) emails(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(h.outboxDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".eml") && !strings.HasPrefix(e.Name(), ".") && !strings.HasPrefix(e.Name(), "newsletter-") {
			names = append(names, e.Name())
		}
	}
	return names
}

func (h *harness) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := h.db.Read.QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func checkStep(t *testing.T, r registration.Registration, name registration.StepName, status registration.StepStatus, attempts int) registration.Step {
	t.Helper()
	st, ok := r.Step(name)
	if !ok {
		t.Fatalf("registration %s has no step %s", r.ID, name)
	}
	if st.Status != status || st.Attempts != attempts {
		t.Errorf("step %s = %s after %d attempts (last error %q); want %s after %d", name, st.Status, st.Attempts, st.LastError, status, attempts)
	}
	return st
}

func TestHappyPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		newsletter bool
	}{
		{"with newsletter", true},
		{"without newsletter", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			id := h.register(t, 1, tt.newsletter)
			r := h.waitStatus(t, id, registration.StatusCompleted)

			checkStep(t, r, registration.StepSaveOrder, registration.StepSucceeded, 1)
			checkStep(t, r, registration.StepSendConfirmation, registration.StepSucceeded, 1)
			// One job per registration; the mailing list has its own.
			wantKinds := []string{"register"}
			if tt.newsletter {
				checkStep(t, r, registration.StepAddToMailingList, registration.StepSucceeded, 1)
				wantKinds = append(wantKinds, "add_to_mailing_list")
			} else {
				checkStep(t, r, registration.StepAddToMailingList, registration.StepSkipped, 0)
			}

			// SaveOrder.
			var amount int64
			var currency, ticket, mail, reference string
			if err := h.db.Read.QueryRow(`SELECT amount, currency, ticket_id, email, payment_reference FROM orders WHERE registration_id = ?`, id).
				Scan(&amount, &currency, &ticket, &mail, &reference); err != nil {
				t.Fatalf("read order: %v", err)
			}
			if amount != 14900 || currency != "EUR" || ticket != "standard" || mail != "Ada.1@Example.org" || reference != r.Payment.Reference || reference == "" {
				t.Errorf("order = (%d, %s, %s, %s, %s); want (14900, EUR, standard, Ada.1@Example.org, %s)", amount, currency, ticket, mail, reference, r.Payment.Reference)
			}

			// SendEmailConfirmation: one email, to the attendee, without card data.
			emails := h.emails(t)
			if len(emails) != 1 || emails[0] != id+".eml" {
				t.Fatalf("outbox = %v; want exactly [%s.eml]", emails, id)
			}
			raw, err := os.ReadFile(filepath.Join(h.outboxDir, emails[0]))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(raw), "Ada.1@Example.org") || !strings.Contains(string(raw), id) {
				t.Errorf("the email is not addressed to the attendee or lacks the registration id:\n%s", raw)
			}
			if strings.Contains(string(raw), testCardRaw) || strings.Contains(string(raw), testCard) {
				t.Error("the email contains the card number")
			}
			if got := h.mailer.Calls(); got != 1 {
				t.Errorf("mailer called %d times; want 1", got)
			}
			if got := h.count(t, `SELECT count(*) FROM email_deliveries WHERE registration_id = ? AND state = 'sent' AND reference <> ''`, id); got != 1 {
				t.Errorf("email_deliveries does not record the confirmation as sent")
			}

			// AddEmailToMailingList, iff consented.
			wantListed := 0
			if tt.newsletter {
				wantListed = 1
			}
			if got := h.count(t, `SELECT count(*) FROM mailing_list WHERE email = 'ada.1@example.org' AND registration_id = ?`, id); got != wantListed {
				t.Errorf("mailing_list has %d rows for the attendee; want %d", got, wantListed)
			}
			if got := h.count(t, `SELECT count(*) FROM mailing_list`); got != wantListed {
				t.Errorf("mailing_list has %d rows; want %d", got, wantListed)
			}

			// River: one register job and one job per pending activity, all completed.
			var kinds []string
			for _, j := range h.jobsOf(t, id) {
				kinds = append(kinds, j.kind)
				if j.state != "completed" || j.attempt != 1 {
					t.Errorf("job %d (%s) is %s at attempt %d; want completed at attempt 1", j.id, j.kind, j.state, j.attempt)
				}
			}
			slices.Sort(kinds)
			slices.Sort(wantKinds)
			if !slices.Equal(kinds, wantKinds) {
				t.Errorf("jobs of the registration = %v; want %v", kinds, wantKinds)
			}

			// Invariant 1: no card number or CVC queued, nor stored anywhere.
			for _, j := range h.jobs(t) {
				lower := strings.ToLower(j.args)
				if strings.Contains(lower, testCardRaw) || strings.Contains(lower, "cvc") || strings.Contains(lower, "card") {
					t.Errorf("job %d (%s) args carry card data: %s", j.id, j.kind, j.args)
				}
			}
			checkNoCardStored(t, h.db)
		})
	}
}

// checkNoCardStored looks through every column of every table for the card
// number.
func checkNoCardStored(t *testing.T, db *sqlite.DB) {
	t.Helper()
	ctx := t.Context()
	rows, err := db.Read.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 5 {
		t.Fatalf("found only tables %v", tables)
	}
	for _, table := range tables {
		rows, err := db.Read.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				var s string
				switch v := v.(type) {
				case string:
					s = v
				case []byte:
					s = string(v)
				}
				if strings.Contains(s, testCardRaw) || strings.Contains(s, testCard) {
					t.Errorf("table %s column %s holds the card number", table, cols[i])
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
}

func TestRetriedEmailSucceeds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(m *testMailer) { m.failNext = 2 })
	id := h.register(t, 1, true)
	r := h.waitStatus(t, id, registration.StatusCompleted)
	st := checkStep(t, r, registration.StepSendConfirmation, registration.StepSucceeded, 3)
	if !strings.Contains(st.LastError, "451 try again later (call 2)") {
		t.Errorf("last_error = %q; want the error of the second attempt", st.LastError)
	}
	checkStep(t, r, registration.StepSaveOrder, registration.StepSucceeded, 1)
	checkStep(t, r, registration.StepAddToMailingList, registration.StepSucceeded, 1)
	if got := h.mailer.Calls(); got != 3 {
		t.Errorf("mailer called %d times; want 3", got)
	}
	if got := h.emails(t); len(got) != 1 {
		t.Errorf("outbox = %v; want exactly one email", got)
	}
	// The first attempt ran in the register job, the other two in the
	// step's own job.
	j := h.jobOf(t, id, pipeline.KindSendConfirmation)
	if j.state != "completed" || j.attempt != 2 {
		t.Errorf("send_confirmation job is %s at attempt %d; want completed at attempt 2", j.state, j.attempt)
	}
	if j := h.jobOf(t, id, pipeline.KindRegister); j.state != "completed" || j.attempt != 1 {
		t.Errorf("register job is %s at attempt %d; want completed at attempt 1", j.state, j.attempt)
	}
}

func TestExhaustedRetriesThenOperatorRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(m *testMailer) { m.failAll = true })
	id := h.register(t, 1, true)
	h.waitStatus(t, id, registration.StatusNeedsAttention)
	sendJob := h.jobOf(t, id, pipeline.KindSendConfirmation)
	row := h.waitJob(t, sendJob.id, "discarded", stateIs(rivertype.JobStateDiscarded))
	// The register job made the first attempt; the step's job the others.
	if row.Attempt != maxAttempts-1 || len(row.Errors) != maxAttempts-1 {
		t.Errorf("discarded job: attempt %d with %d errors; want %d and %d", row.Attempt, len(row.Errors), maxAttempts-1, maxAttempts-1)
	}
	r := h.waitStatus(t, id, registration.StatusNeedsAttention)
	st := checkStep(t, r, registration.StepSendConfirmation, registration.StepFailed, maxAttempts)
	if want := fmt.Sprintf("(call %d)", maxAttempts); !strings.Contains(st.LastError, "421 service unavailable") || !strings.Contains(st.LastError, want) {
		t.Errorf("last_error = %q; want the last attempt's error", st.LastError)
	}
	checkStep(t, r, registration.StepSaveOrder, registration.StepSucceeded, 1)
	checkStep(t, r, registration.StepAddToMailingList, registration.StepSucceeded, 1)
	if got := h.mailer.Calls(); got != maxAttempts {
		t.Errorf("mailer called %d times; want %d", got, maxAttempts)
	}
	if got := h.emails(t); len(got) != 0 {
		t.Errorf("outbox = %v; want empty", got)
	}

	// An operator fixes the mailer and retries the dead job.
	h.mailer.set(func(m *testMailer) { m.failAll = false })
	if _, err := h.client.JobRetry(t.Context(), sendJob.id); err != nil {
		t.Fatalf("JobRetry: %v", err)
	}
	r = h.waitStatus(t, id, registration.StatusCompleted)
	checkStep(t, r, registration.StepSendConfirmation, registration.StepSucceeded, maxAttempts+1)
	h.waitJob(t, sendJob.id, "completed", stateIs(rivertype.JobStateCompleted))
	if got := h.emails(t); len(got) != 1 {
		t.Errorf("outbox = %v; want exactly one email", got)
	}
	if got := h.mailer.Calls(); got != maxAttempts+1 {
		t.Errorf("mailer called %d times; want %d", got, maxAttempts+1)
	}
}

func TestPermanentErrorFailsAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(m *testMailer) { m.permanent = true })
	id := h.register(t, 1, false)
	h.waitStatus(t, id, registration.StatusNeedsAttention)
	checkNoRetryJob(t, h, id)
	r := h.waitStatus(t, id, registration.StatusNeedsAttention)
	st := checkStep(t, r, registration.StepSendConfirmation, registration.StepFailed, 1)
	if !strings.Contains(st.LastError, "550 recipient rejected") {
		t.Errorf("last_error = %q; want the rejection", st.LastError)
	}
	checkStep(t, r, registration.StepSaveOrder, registration.StepSucceeded, 1)
	if got := h.mailer.Calls(); got != 1 {
		t.Errorf("mailer called %d times; want 1", got)
	}
	if got := h.emails(t); len(got) != 0 {
		t.Errorf("outbox = %v; want empty", got)
	}
}

// TestEmailAtMostOnce re-runs the confirmation activity of a registration
// whose email is recorded as sent: nothing is sent again.
func TestEmailAtMostOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// rerun makes the activity run again and returns the job to wait for
		// and the attempt it must reach.
		rerun func(t *testing.T, h *harness, id string) (jobID int64, attempt int)
		// attempts is the step's count afterwards: a re-run of a step already
		// succeeded is not an attempt, one of a reopened step is.
		attempts int
	}{
		{
			name: "operator retries the completed register job",
			rerun: func(t *testing.T, h *harness, id string) (int64, int) {
				j := h.jobOf(t, id, pipeline.KindRegister)
				if _, err := h.client.JobRetry(t.Context(), j.id); err != nil {
					t.Fatalf("JobRetry: %v", err)
				}
				return j.id, 2
			},
			attempts: 1,
		},
		{
			name: "a fresh job for the same registration",
			rerun: func(t *testing.T, h *harness, id string) (int64, int) {
				res, err := h.client.Insert(t.Context(), pipeline.SendConfirmationArgs{RegistrationID: id}, nil)
				if err != nil {
					t.Fatalf("Insert: %v", err)
				}
				if res.UniqueSkippedAsDuplicate {
					t.Fatal("the fresh job was skipped as a duplicate")
				}
				return res.Job.ID, 1
			},
			attempts: 1,
		},
		{
			name: "a fresh job while the step is reopened",
			rerun: func(t *testing.T, h *harness, id string) (int64, int) {
				// The step no longer says succeeded (as after a crash between
				// the send and its bookkeeping); only email_deliveries knows.
				if _, err := h.db.Write.ExecContext(t.Context(), `UPDATE registration_steps SET status = 'retrying'
					WHERE registration_id = ? AND step = 'send_confirmation'`, id); err != nil {
					t.Fatal(err)
				}
				res, err := h.client.Insert(t.Context(), pipeline.SendConfirmationArgs{RegistrationID: id}, nil)
				if err != nil {
					t.Fatalf("Insert: %v", err)
				}
				return res.Job.ID, 1
			},
			attempts: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			id := h.register(t, 1, false)
			h.waitStatus(t, id, registration.StatusCompleted)
			if got := h.mailer.Calls(); got != 1 {
				t.Fatalf("mailer called %d times; want 1", got)
			}
			jobID, attempt := tt.rerun(t, h, id)
			h.waitJob(t, jobID, fmt.Sprintf("completed at attempt %d", attempt), func(j *rivertype.JobRow) bool {
				return j.State == rivertype.JobStateCompleted && j.Attempt == attempt
			})
			if got := h.mailer.Calls(); got != 1 {
				t.Errorf("mailer called %d times after the re-run; want 1", got)
			}
			if got := h.emails(t); len(got) != 1 {
				t.Errorf("outbox = %v; want exactly one email", got)
			}
			r := h.waitStatus(t, id, registration.StatusCompleted)
			// The re-run sent nothing; the step counts the runs of its activity.
			checkStep(t, r, registration.StepSendConfirmation, registration.StepSucceeded, tt.attempts)
		})
	}
}

// TestRegisterJobResumesAfterCrash: a register job that died after
// recording its attempts started (steps running, the email in doubt) runs
// again; it does not attempt those steps itself but gives each unfinished
// one its own job, once, and the registration completes. A step already
// done is not attempted again.
func TestRegisterJobResumesAfterCrash(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	id := h.register(t, 1, false)
	h.waitStatus(t, id, registration.StatusCompleted)
	// The state a crash between the job's two writes leaves behind.
	for _, q := range []string{
		`UPDATE registrations SET status = 'processing' WHERE id = ?`,
		`UPDATE registration_steps SET status = 'running' WHERE registration_id = ? AND step = 'send_confirmation'`,
		`UPDATE email_deliveries SET state = 'sending' WHERE registration_id = ?`,
	} {
		if _, err := h.db.Write.ExecContext(t.Context(), q, id); err != nil {
			t.Fatal(err)
		}
	}
	reg := h.jobOf(t, id, pipeline.KindRegister)
	for range 2 { // twice: the second run finds the step's job and adds none
		if _, err := h.client.JobRetry(t.Context(), reg.id); err != nil {
			t.Fatalf("JobRetry: %v", err)
		}
		h.waitJob(t, reg.id, "completed again", func(j *rivertype.JobRow) bool {
			return j.State == rivertype.JobStateCompleted && j.Attempt >= 2
		})
	}
	r := h.waitStatus(t, id, registration.StatusCompleted)
	checkStep(t, r, registration.StepSendConfirmation, registration.StepSucceeded, 2)
	checkStep(t, r, registration.StepSaveOrder, registration.StepSucceeded, 1)
	var sends int
	for _, j := range h.jobsOf(t, id) {
		if j.kind == pipeline.KindSendConfirmation {
			sends++
		}
		if j.kind == pipeline.KindSaveOrder {
			t.Errorf("a save_order job %d was inserted for a step already done", j.id)
		}
	}
	if sends != 1 {
		t.Errorf("%d send_confirmation jobs; want 1", sends)
	}
	// The email was in doubt: sent again, once.
	if got := h.mailer.Calls(); got != 2 {
		t.Errorf("mailer called %d times; want 2", got)
	}
}

func TestFanInUnderConcurrency(t *testing.T) {
	t.Parallel()
	const n = 50
	h := newHarness(t, nil)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ids[i], errs[i] = h.svc.Register(t.Context(), request(i, i%2 == 0), "")
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Register %d: %v", i, err)
		}
	}
	// One deadline for the whole batch: the registrations share the queue.
	deadline := time.Now().Add(2 * waitFor)
	for {
		done := h.count(t, `SELECT count(*) FROM registrations WHERE status = 'completed'`)
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d registrations completed after %s", done, n, 2*waitFor)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, id := range ids {
		r := h.waitStatus(t, id, registration.StatusCompleted)
		for _, st := range r.Steps {
			want := registration.StepSucceeded
			if st.Name == registration.StepAddToMailingList && i%2 != 0 {
				want = registration.StepSkipped
			}
			if st.Status != want {
				t.Errorf("registration %d step %s = %s; want %s", i, st.Name, st.Status, want)
			}
		}
	}
	emails := h.emails(t)
	if len(emails) != n {
		t.Errorf("outbox holds %d emails; want %d", len(emails), n)
	}
	for _, id := range ids {
		if !slices.Contains(emails, id+".eml") {
			t.Errorf("no email for registration %s", id)
		}
	}
	if got := h.mailer.Calls(); got != n {
		t.Errorf("mailer called %d times; want %d", got, n)
	}
	if got := h.count(t, `SELECT count(*) FROM orders`); got != n {
		t.Errorf("%d orders; want %d", got, n)
	}
	if got := h.count(t, `SELECT count(*) FROM mailing_list`); got != n/2 {
		t.Errorf("%d mailing list entries; want %d", got, n/2)
	}
	if got := h.count(t, `SELECT taken FROM ticket_stock WHERE ticket_id = 'standard'`); got != n {
		t.Errorf("taken = %d; want %d", got, n)
	}
	if got := h.count(t, `SELECT count(*) FROM seat_holds`); got != 0 {
		t.Errorf("%d seat holds left; want 0", got)
	}
}

// abandonedAttempt holds a student seat for an attempt whose process died
// mid-charge, as Register records it: with its draft and key.
func (h *harness) abandonedAttempt(t *testing.T, n int, key string, created, resolveAfter time.Time) registration.Attempt {
	t.Helper()
	id, err := registration.NewID()
	if err != nil {
		t.Fatal(err)
	}
	req := request(n, n%2 == 0)
	req.Ticket = "student"
	req.Normalize()
	draft := registration.Registration{ID: id, EventID: "gopherfest-2027", TicketID: "student", Status: registration.StatusPaid,
		Amount: 4900, Currency: "EUR", FirstName: req.Attendee.FirstName, LastName: req.Attendee.LastName,
		Email: req.Attendee.Email, Company: req.Attendee.Company, Newsletter: req.Newsletter, CreatedAt: created, UpdatedAt: created}
	for _, name := range registration.Steps {
		st := registration.StepPending
		if name == registration.StepAddToMailingList && !req.Newsletter {
			st = registration.StepSkipped
		}
		draft.Steps = append(draft.Steps, registration.Step{Name: name, Status: st})
	}
	a := registration.Attempt{ID: id, EventID: "gopherfest-2027", TicketID: "student", IdempotencyKey: key,
		RequestHash: req.Hash(), CreatedAt: created, ResolveAfter: resolveAfter, Draft: draft}
	if _, err := h.store.StartAttempt(t.Context(), a, registration.Outcome{Code: registration.CodeSoldOut, Message: "Sold out."}); err != nil {
		t.Fatalf("StartAttempt: %v", err)
	}
	return a
}

// runResolver runs the resolve_payments job once, after everything done so
// far: a job already queued (the periodic one) is waited for first, since it
// may have looked before the test's attempts existed.
func (h *harness) runResolver(t *testing.T) *rivertype.JobRow {
	t.Helper()
	finished := func(j *rivertype.JobRow) bool {
		return j.State == rivertype.JobStateCompleted || j.State == rivertype.JobStateDiscarded || j.State == rivertype.JobStateCancelled
	}
	for range 10 {
		res, err := h.client.Insert(t.Context(), pipeline.ResolvePaymentsArgs{}, nil)
		if err != nil {
			t.Fatalf("Insert resolve job: %v", err)
		}
		row := h.waitJob(t, res.Job.ID, "finished", finished)
		if !res.UniqueSkippedAsDuplicate {
			if row.State != rivertype.JobStateCompleted {
				t.Fatalf("resolve job is %s: %v", row.State, row.Errors)
			}
			return row
		}
	}
	t.Fatal("the resolve job was always a duplicate")
	return nil
}

func TestResolvePaymentsJob(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, nil)
	now := time.Now().UTC()
	created := now.Add(-time.Hour)

	// A process died after the charge went through.
	paid := h.abandonedAttempt(t, 1, "paid-key", created, now.Add(-time.Minute))
	charge, err := h.proc.Charge(ctx, payment.ChargeRequest{RequestID: paid.ID, Amount: 4900, Currency: "EUR",
		Card: payment.Card{Number: testCardRaw, ExpiryYear: 2030, ExpiryMonth: 12, SecurityCode: "123"}})
	if err != nil {
		t.Fatal(err)
	}
	// A process died before charging.
	h.abandonedAttempt(t, 2, "stale-key", created, now.Add(-time.Minute))
	// An attempt still within its time.
	live := h.abandonedAttempt(t, 3, "live-key", now, now.Add(time.Hour))
	taken := func() int { return h.count(t, `SELECT taken FROM ticket_stock WHERE ticket_id = 'student'`) }
	if got := taken(); got != 3 {
		t.Fatalf("taken = %d; want 3", got)
	}

	h.runResolver(t)

	r := h.waitStatus(t, paid.ID, registration.StatusCompleted)
	if r.Payment != charge || r.Amount != 4900 || r.Email != paid.Draft.Email {
		t.Errorf("registration = %+v; want the draft paid with %+v", r, charge)
	}
	if got := h.emails(t); len(got) != 1 || got[0] != paid.ID+".eml" {
		t.Errorf("outbox = %v; want the confirmation of the paid attempt", got)
	}
	if got := taken(); got != 2 {
		t.Errorf("taken = %d after resolving; want 2 (the registration and the live hold)", got)
	}
	if got := h.count(t, `SELECT count(*) FROM seat_holds`); got != 1 {
		t.Errorf("%d seat holds; want only the live one", got)
	}
	if got := h.count(t, `SELECT count(*) FROM seat_holds WHERE id = ?`, live.ID); got != 1 {
		t.Error("the live hold was released")
	}
	if got := h.count(t, `SELECT count(*) FROM idempotency_keys WHERE key = 'paid-key' AND state = 'done' AND registration_id = ?`, paid.ID); got != 1 {
		t.Error("the paid attempt's key was not settled to its registration")
	}
	if got := h.count(t, `SELECT count(*) FROM idempotency_keys WHERE key = 'stale-key'`); got != 0 {
		t.Error("the stale attempt's idempotency key was not forgotten")
	}
	if got := h.count(t, `SELECT count(*) FROM idempotency_keys WHERE key = 'live-key' AND state = 'in_progress'`); got != 1 {
		t.Error("the live attempt's idempotency key was touched")
	}
	if got := h.count(t, `SELECT count(*) FROM registrations`); got != 1 {
		t.Errorf("%d registrations; want 1", got)
	}
	if got := h.count(t, `SELECT count(*) FROM payment_incidents WHERE attempt_id = ? AND kind = 'resolved_charged' AND reference = ?`, paid.ID, charge.Reference); got != 1 {
		t.Error("no resolved_charged incident for the paid attempt")
	}
	if charged, refunded := h.proc.Charges(); charged != 1 || refunded != 0 {
		t.Errorf("charges %d, refunds %d; want 1, 0", charged, refunded)
	}
	checkNoCardStored(t, h.db)
}

// checkNoRetryJob fails unless the registration's only job is its register
// job, completed: its attempt of the steps failed for good, with nothing to
// retry.
func checkNoRetryJob(t *testing.T, h *harness, id string) {
	t.Helper()
	reg := h.jobOf(t, id, pipeline.KindRegister)
	row := h.waitJob(t, reg.id, "completed", stateIs(rivertype.JobStateCompleted))
	if row.Attempt != 1 {
		t.Errorf("register job ran %d attempts; want 1", row.Attempt)
	}
	for _, j := range h.jobsOf(t, id) {
		if j.kind == pipeline.KindSendConfirmation {
			t.Errorf("a %s job %d exists; want none after a permanent failure", j.kind, j.id)
		}
	}
}

// TestProviderPermanentError: a provider adapter's own error type that says
// Permanent() fails the step at once and cancels the job.
func TestProviderPermanentError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(m *testMailer) {
		m.failWith = fmt.Errorf("sendgrid: %w", &providerRejection{msg: "400 invalid from address"})
	})
	id := h.register(t, 1, false)
	h.waitStatus(t, id, registration.StatusNeedsAttention)
	checkNoRetryJob(t, h, id)
	r := h.waitStatus(t, id, registration.StatusNeedsAttention)
	st := checkStep(t, r, registration.StepSendConfirmation, registration.StepFailed, 1)
	if !strings.Contains(st.LastError, "400 invalid from address") {
		t.Errorf("last_error = %q; want the rejection", st.LastError)
	}
	if got := h.mailer.Calls(); got != 1 {
		t.Errorf("mailer called %d times; want 1", got)
	}
}

// TestProviderRetryAfter: a provider adapter's error that says RetryAfter()
// delays the next attempt that long instead of the backoff — the first
// retry's job is scheduled then, a later attempt snoozes its job; the step
// shows it retrying and then succeeds.
func TestProviderRetryAfter(t *testing.T) {
	t.Parallel()
	const wait = 300 * time.Millisecond // well above testOptions' backoff of 10–50 ms
	h := newHarness(t, func(m *testMailer) {
		m.errs = []error{fmt.Errorf("sendgrid: %w", &rateLimited{wait: wait}), fmt.Errorf("sendgrid: %w", &rateLimited{wait: wait})}
	})
	id := h.register(t, 1, false)
	sawRetrying := false
	deadline := time.Now().Add(waitFor)
	for {
		r, err := h.store.Registration(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := r.Step(registration.StepSendConfirmation)
		if st.Status == registration.StepRetrying && strings.Contains(st.LastError, "429 too many requests") {
			sawRetrying = true
		}
		if r.Status == registration.StatusCompleted || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawRetrying {
		t.Error("the step was never seen retrying with the provider's error")
	}
	r := h.waitStatus(t, id, registration.StatusCompleted)
	st, _ := r.Step(registration.StepSendConfirmation)
	if st.Status != registration.StepSucceeded || !strings.Contains(st.LastError, "429") {
		t.Errorf("step = %+v; want succeeded, keeping the 429 as last error", st)
	}
	times := h.mailer.CallTimes()
	if len(times) != 3 {
		t.Fatalf("mailer called %d times; want 3", len(times))
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < wait {
			t.Errorf("send %d came %s after the one before; want at least the provider's %s", i+1, gap, wait)
		}
	}
	sendJob := h.jobOf(t, id, pipeline.KindSendConfirmation)
	row := h.waitJob(t, sendJob.id, "completed", stateIs(rivertype.JobStateCompleted))
	var meta struct {
		Snoozes int `json:"snoozes"`
		Prior   int `json:"prior_attempts"`
	}
	if err := json.Unmarshal(row.Metadata, &meta); err != nil || meta.Snoozes != 1 || meta.Prior != 1 {
		t.Errorf("job metadata %s; want one snooze and one prior attempt", row.Metadata)
	}
	if len(row.Errors) != 0 {
		t.Errorf("job errors %+v; want none (snoozed, not retried)", row.Errors)
	}
	if got := h.emails(t); len(got) != 1 {
		t.Errorf("outbox = %v; want exactly one email", got)
	}
}

// TestProviderRetryAfterForever: a provider that always asks to come back
// later does not keep the step retrying forever: snoozes count toward
// MaxAttempts and the step ends failed, the job discarded.
func TestProviderRetryAfterForever(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(m *testMailer) { m.failWith = &rateLimited{wait: 10 * time.Millisecond} })
	id := h.register(t, 1, false)
	h.waitStatus(t, id, registration.StatusNeedsAttention)
	sendJob := h.jobOf(t, id, pipeline.KindSendConfirmation)
	row := h.waitJob(t, sendJob.id, "discarded", stateIs(rivertype.JobStateDiscarded))
	if row.Attempt != maxAttempts-1 {
		t.Errorf("discarded job at attempt %d; want %d (the first attempt was the register job's)", row.Attempt, maxAttempts-1)
	}
	r := h.waitStatus(t, id, registration.StatusNeedsAttention)
	st, _ := r.Step(registration.StepSendConfirmation)
	if st.Status != registration.StepFailed || !strings.Contains(st.LastError, "429") {
		t.Errorf("step = %+v; want failed with the 429", st)
	}
	// At most MaxAttempts-1 snoozes, then MaxAttempts attempts with backoff.
	if got := h.mailer.Calls(); got > 2*maxAttempts-1 {
		t.Errorf("mailer called %d times; want at most %d", got, 2*maxAttempts-1)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	opts := pipeline.DefaultOptions()
	if opts.JobTimeout >= opts.RescueAfter {
		t.Errorf("default JobTimeout %s is not below RescueAfter %s", opts.JobTimeout, opts.RescueAfter)
	}
	if opts.RescueAfter > 15*time.Minute {
		t.Errorf("default RescueAfter %s; want minutes, not River's hour", opts.RescueAfter)
	}
	tests := []struct {
		name    string
		workers bool
	}{
		{"worker", true},
		{"web only", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := pipeline.Config(pipeline.Deps{Log: log}, opts, tt.workers, log)
			if err != nil {
				t.Fatalf("Config: %v", err)
			}
			if cfg.DiscardedJobRetentionPeriod != -1 {
				t.Errorf("DiscardedJobRetentionPeriod = %s; want -1 (keep the dead letters)", cfg.DiscardedJobRetentionPeriod)
			}
			if cfg.MaxAttempts != opts.MaxAttempts || cfg.RescueStuckJobsAfter != opts.RescueAfter || cfg.JobTimeout != opts.JobTimeout {
				t.Errorf("MaxAttempts, RescueStuckJobsAfter, JobTimeout = %d, %s, %s; want %d, %s, %s",
					cfg.MaxAttempts, cfg.RescueStuckJobsAfter, cfg.JobTimeout, opts.MaxAttempts, opts.RescueAfter, opts.JobTimeout)
			}
			if got := cfg.Workers != nil; got != tt.workers {
				t.Errorf("workers registered: %v; want %v", got, tt.workers)
			}
			if tt.workers {
				want := map[string]river.QueueConfig{
					river.QueueDefault:        {MaxWorkers: opts.Workers},
					pipeline.QueueMailingList: {MaxWorkers: opts.ListWorkers},
					pipeline.QueuePayments:    {MaxWorkers: 1},
				}
				if !reflect.DeepEqual(cfg.Queues, want) {
					t.Errorf("Queues = %+v; want %+v", cfg.Queues, want)
				}
				if len(cfg.PeriodicJobs) != 1 {
					t.Errorf("%d periodic jobs; want the payment resolver", len(cfg.PeriodicJobs))
				}
			} else if len(cfg.Queues) != 0 || len(cfg.PeriodicJobs) != 0 {
				t.Errorf("a web-only client works queues %v or periodic jobs %d", cfg.Queues, len(cfg.PeriodicJobs))
			}
		})
	}
}

func TestRetryPolicy(t *testing.T) {
	t.Parallel()
	opts := testOptions()
	opts.RetryBase, opts.RetryCap = time.Second, 10*time.Second
	cfg, err := pipeline.Config(pipeline.Deps{}, opts, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{4, 8 * time.Second},
		{5, 10 * time.Second},
		{40, 10 * time.Second},
	}
	for _, tt := range tests {
		for range 20 {
			before := time.Now()
			next := cfg.RetryPolicy.NextRetry(&rivertype.JobRow{Attempt: tt.attempt})
			d := next.Sub(before)
			lo, hi := tt.want*9/10, tt.want*11/10+50*time.Millisecond
			if d < lo || d > hi {
				t.Errorf("attempt %d: next retry in %s; want %s ±10%%", tt.attempt, d, tt.want)
				break
			}
		}
	}
}

// stalledList is a mailing list whose calls wait until released, counting
// how many wait at once.
type stalledList struct {
	release  chan struct{}
	mu       sync.Mutex
	inFlight int
	maxSeen  int
	calls    int
}

func (l *stalledList) Subscribe(ctx context.Context, _ registration.Subscriber) error {
	l.mu.Lock()
	l.inFlight++
	l.calls++
	l.maxSeen = max(l.maxSeen, l.inFlight)
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.inFlight--
		l.mu.Unlock()
	}()
	select {
	case <-l.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A stalled mailing list holds only its own queue's workers: the other
// activities of every registration go on, and the list sees at most
// ListWorkers calls at once.
func TestStalledMailingListDoesNotHoldUpOtherActivities(t *testing.T) {
	t.Parallel()
	list := &stalledList{release: make(chan struct{})}
	h := newHarnessList(t, nil, list)
	opts := testOptions()
	n := 3 * opts.Workers // far more stalled list calls than default-queue workers
	ids := make([]string, n)
	for i := range ids {
		ids[i] = h.register(t, i, true)
	}
	deadline := time.Now().Add(waitFor)
	for _, id := range ids {
		for {
			r, err := h.store.Registration(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			save, _ := r.Step(registration.StepSaveOrder)
			send, _ := r.Step(registration.StepSendConfirmation)
			if save.Status == registration.StepSucceeded && send.Status == registration.StepSucceeded {
				if r.Status == registration.StatusCompleted {
					t.Fatalf("registration %s completed while its mailing-list call waits", id)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("registration %s: save_order %s, send_confirmation %s after %s while the list stalls; want both succeeded",
					id, save.Status, send.Status, waitFor)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, j := range h.jobs(t) {
		if j.kind != pipeline.KindAddToMailingList {
			continue
		}
		var queue string
		if err := h.db.Read.QueryRowContext(t.Context(), `SELECT queue FROM river_job WHERE id = ?`, j.id).Scan(&queue); err != nil {
			t.Fatal(err)
		}
		if queue != pipeline.QueueMailingList {
			t.Errorf("mailing-list job %d is on queue %q; want %q", j.id, queue, pipeline.QueueMailingList)
		}
	}
	close(list.release)
	for _, id := range ids {
		h.waitStatus(t, id, registration.StatusCompleted)
	}
	list.mu.Lock()
	defer list.mu.Unlock()
	if list.maxSeen > opts.ListWorkers {
		t.Errorf("%d mailing-list calls at once; want at most ListWorkers = %d", list.maxSeen, opts.ListWorkers)
	}
	if list.calls != n {
		t.Errorf("%d mailing-list calls; want %d", list.calls, n)
	}
}

// The payment resolver has a worker of its own: it settles charges while
// every activity worker waits for a stalled email provider.
func TestResolverRunsWhileActivitiesStall(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	h := newHarness(t, func(m *testMailer) { m.stall = stall })
	t.Cleanup(func() { close(stall) })
	for i := range 2 * testOptions().Workers {
		h.register(t, i, false)
	}
	deadline := time.Now().Add(waitFor)
	for h.count(t, `SELECT count(*) FROM river_job WHERE kind = ? AND state = 'running'`, pipeline.KindRegister) < testOptions().Workers {
		if time.Now().After(deadline) {
			t.Fatal("the email sends never filled the workers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	row := h.runResolver(t)
	if row.Queue != pipeline.QueuePayments {
		t.Errorf("resolver ran on queue %q; want %q", row.Queue, pipeline.QueuePayments)
	}
}
