package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

type stepState struct {
	status   registration.StepStatus
	attempts int
	lastErr  string
}

// testFanIn drives the step bookkeeping the pipeline uses and checks the
// registration status after every call.
func testFanIn(t *testing.T, h Harness) {
	const (
		save = registration.StepSaveOrder
		send = registration.StepSendConfirmation
		list = registration.StepAddToMailingList
	)
	type op struct {
		name string
		do   func(ctx context.Context, s Store, id string) error
		want registration.Status
		// steps, when set, is the wanted state of each step after the call.
		steps map[registration.StepName]stepState
	}
	// Attempts count how often a step started: the tables below start a step
	// before it fails or finishes, as the pipeline does, except where a test
	// is about a finish or failure arriving on its own.
	started := func(step registration.StepName) func(context.Context, Store, string) error {
		return func(ctx context.Context, s Store, id string) error { return s.StepStarted(ctx, id, step) }
	}
	failed := func(step registration.StepName, msg string, final bool) func(context.Context, Store, string) error {
		return func(ctx context.Context, s Store, id string) error {
			return s.StepFailed(ctx, id, step, msg, final)
		}
	}
	finished := func(step registration.StepName) func(context.Context, Store, string) error {
		return func(ctx context.Context, s Store, id string) error {
			tx, err := s.BeginTx(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if err := s.FinishStepTx(ctx, tx, id, step); err != nil {
				return err
			}
			return tx.Commit()
		}
	}
	// startedTogether and finishedTogether are the register job's writes:
	// several steps in one call.
	startedTogether := func(steps ...registration.StepName) func(context.Context, Store, string) error {
		return func(ctx context.Context, s Store, id string) error {
			return inTx(ctx, s, func(tx *sql.Tx) error { return s.StepsStartedTx(ctx, tx, id, steps...) })
		}
	}
	finishedTogether := func(steps ...registration.StepName) func(context.Context, Store, string) error {
		return func(ctx context.Context, s Store, id string) error {
			return inTx(ctx, s, func(tx *sql.Tx) error { return s.FinishStepsTx(ctx, tx, id, steps...) })
		}
	}
	pipelineStarted := func(ctx context.Context, s Store, id string) error {
		tx, err := s.BeginTx(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := s.StartPipelineTx(ctx, tx, id); err != nil {
			return err
		}
		return tx.Commit()
	}
	const (
		paid       = registration.StatusPaid
		processing = registration.StatusProcessing
		completed  = registration.StatusCompleted
		attention  = registration.StatusNeedsAttention
	)

	tests := []struct {
		name       string
		newsletter bool
		ops        []op
	}{
		{
			name:       "all three succeed",
			newsletter: true,
			ops: []op{
				{name: "pipeline started", do: pipelineStarted, want: processing},
				{name: "save started", do: started(save), want: processing,
					steps: map[registration.StepName]stepState{save: {"running", 1, ""}, send: {"pending", 0, ""}, list: {"pending", 0, ""}}},
				{name: "save done", do: finished(save), want: processing},
				{name: "list started", do: started(list), want: processing},
				{name: "list done", do: finished(list), want: processing},
				{name: "send started", do: started(send), want: processing},
				{name: "send done", do: finished(send), want: completed,
					steps: map[registration.StepName]stepState{save: {"succeeded", 1, ""}, send: {"succeeded", 1, ""}, list: {"succeeded", 1, ""}}},
				{name: "pipeline started again", do: pipelineStarted, want: completed},
				{name: "late start of a finished step", do: started(send), want: completed,
					steps: map[registration.StepName]stepState{send: {"succeeded", 1, ""}}},
				{name: "late final failure of a finished step", do: failed(send, "late", true), want: completed,
					steps: map[registration.StepName]stepState{send: {"succeeded", 1, ""}}},
				{name: "re-run of a finished step", do: finished(send), want: completed,
					steps: map[registration.StepName]stepState{send: {"succeeded", 1, ""}}},
			},
		},
		{
			name:       "two steps started and finished together",
			newsletter: true,
			ops: []op{
				{name: "both started (the pipeline with them)", do: startedTogether(save, send), want: processing,
					steps: map[registration.StepName]stepState{save: {"running", 1, ""}, send: {"running", 1, ""}, list: {"pending", 0, ""}}},
				{name: "both done, the list still pending", do: finishedTogether(save, send), want: processing,
					steps: map[registration.StepName]stepState{save: {"succeeded", 1, ""}, send: {"succeeded", 1, ""}, list: {"pending", 0, ""}}},
				{name: "list started", do: started(list), want: processing},
				{name: "list done", do: finished(list), want: completed},
				{name: "both again: a re-run", do: startedTogether(save, send), want: completed,
					steps: map[registration.StepName]stepState{save: {"succeeded", 1, ""}, send: {"succeeded", 1, ""}}},
			},
		},
		{
			name:       "steps started together after another failed for good",
			newsletter: true,
			ops: []op{
				{name: "pipeline started", do: pipelineStarted, want: processing},
				{name: "list started", do: started(list), want: processing},
				{name: "list fails for good", do: failed(list, "list broke", true), want: attention},
				{name: "save and send started", do: startedTogether(save, send), want: attention},
				{name: "save and send done", do: finishedTogether(save, send), want: attention},
				{name: "operator retries list with send", do: startedTogether(list, send), want: processing,
					steps: map[registration.StepName]stepState{list: {"running", 2, "list broke"}, send: {"succeeded", 1, ""}}},
				{name: "list done", do: finishedTogether(list), want: completed},
			},
		},
		{
			name:       "the last two together complete it, a skipped one stays skipped",
			newsletter: false,
			ops: []op{
				{name: "both started", do: startedTogether(save, send, list), want: processing,
					steps: map[registration.StepName]stepState{list: {"skipped", 0, ""}}},
				{name: "both done", do: finishedTogether(save, send, list), want: completed,
					steps: map[registration.StepName]stepState{save: {"succeeded", 1, ""}, send: {"succeeded", 1, ""}, list: {"skipped", 0, ""}}},
			},
		},
		{
			name:       "skipped counts as done",
			newsletter: false,
			ops: []op{
				{name: "save done before the pipeline started", do: finished(save), want: paid},
				{name: "pipeline started", do: pipelineStarted, want: processing},
				{name: "send started", do: started(send), want: processing},
				{name: "send done", do: finished(send), want: completed,
					steps: map[registration.StepName]stepState{save: {"succeeded", 0, ""}, send: {"succeeded", 1, ""}, list: {"skipped", 0, ""}}},
				{name: "a stray job for the skipped step", do: finished(list), want: completed,
					steps: map[registration.StepName]stepState{list: {"skipped", 0, ""}}},
			},
		},
		{
			name:       "final failure, then an operator retry succeeds",
			newsletter: true,
			ops: []op{
				{name: "pipeline started", do: pipelineStarted, want: processing},
				{name: "save started", do: started(save), want: processing},
				{name: "save done", do: finished(save), want: processing},
				{name: "send started", do: started(send), want: processing},
				{name: "send fails", do: failed(send, "smtp: 451 try later", false), want: processing,
					steps: map[registration.StepName]stepState{send: {"retrying", 1, "smtp: 451 try later"}}},
				{name: "send started again", do: started(send), want: processing,
					steps: map[registration.StepName]stepState{send: {"running", 2, "smtp: 451 try later"}}},
				{name: "send fails for good", do: failed(send, "smtp: 554 rejected", true), want: attention,
					steps: map[registration.StepName]stepState{send: {"failed", 2, "smtp: 554 rejected"}}},
				{name: "list started", do: started(list), want: attention},
				{name: "list done", do: finished(list), want: attention},
				{name: "operator retry starts send", do: started(send), want: processing,
					steps: map[registration.StepName]stepState{send: {"running", 3, "smtp: 554 rejected"}}},
				{name: "send done", do: finished(send), want: completed,
					steps: map[registration.StepName]stepState{save: {"succeeded", 1, ""}, send: {"succeeded", 3, "smtp: 554 rejected"}, list: {"succeeded", 1, ""}}},
			},
		},
		{
			name:       "a step retrying after another failed for good does not hide the failure",
			newsletter: true,
			ops: []op{
				{name: "pipeline started", do: pipelineStarted, want: processing},
				{name: "save done", do: finished(save), want: processing},
				{name: "list started", do: started(list), want: processing},
				{name: "list fails", do: failed(list, "list timeout", false), want: processing},
				{name: "send started", do: started(send), want: processing},
				{name: "send is rejected", do: failed(send, "rejected", true), want: attention},
				{name: "list retry starts", do: started(list), want: attention,
					steps: map[registration.StepName]stepState{list: {"running", 2, "list timeout"}, send: {"failed", 1, "rejected"}}},
				{name: "list done", do: finished(list), want: attention},
			},
		},
		{
			name:       "two failed steps, retried one at a time",
			newsletter: true,
			ops: []op{
				{name: "pipeline started", do: pipelineStarted, want: processing},
				{name: "save done", do: finished(save), want: processing},
				{name: "send started", do: started(send), want: processing},
				{name: "send fails for good", do: failed(send, "send broke", true), want: attention},
				{name: "list started", do: started(list), want: attention},
				{name: "list fails for good", do: failed(list, "list broke", true), want: attention},
				{name: "operator retries send", do: started(send), want: attention},
				{name: "send done", do: finished(send), want: attention,
					steps: map[registration.StepName]stepState{send: {"succeeded", 2, "send broke"}, list: {"failed", 1, "list broke"}}},
				{name: "operator retries list", do: started(list), want: processing},
				{name: "list done", do: finished(list), want: completed},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, _ := newStore(t, h, 5)
			a := newAttempt(t, "", "h")
			if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
				t.Fatal(err)
			}
			if err := s.CompleteAttempt(ctx, a, newRegistration(a, tt.newsletter), noEnqueue); err != nil {
				t.Fatal(err)
			}
			for _, o := range tt.ops {
				if err := o.do(ctx, s, a.ID); err != nil {
					t.Fatalf("%s: %v", o.name, err)
				}
				r, err := s.Registration(ctx, a.ID)
				if err != nil {
					t.Fatalf("%s: Registration: %v", o.name, err)
				}
				if r.Status != o.want {
					t.Errorf("after %q: status = %s; want %s", o.name, r.Status, o.want)
				}
				for name, want := range o.steps {
					st, _ := r.Step(name)
					if got := (stepState{st.Status, st.Attempts, st.LastError}); got != want {
						t.Errorf("after %q: step %s = %+v; want %+v", o.name, name, got, want)
					}
				}
			}
		})
	}
}

func testStepFailedTruncatesLongErrors(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := newStore(t, h, 5)
	a := newAttempt(t, "", "h")
	if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteAttempt(ctx, a, newRegistration(a, false), noEnqueue); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("é", 800) // 1600 bytes
	if err := s.StepFailed(ctx, a.ID, registration.StepSaveOrder, msg, false); err != nil {
		t.Fatal(err)
	}
	r, err := s.Registration(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := r.Step(registration.StepSaveOrder)
	if want := strings.Repeat("é", 500) + "…"; st.LastError != want {
		t.Errorf("last_error is %d bytes; want %d bytes cut on a rune boundary", len(st.LastError), len(want))
	}
}

func testSubscribe(t *testing.T, h Harness) {
	ctx := t.Context()
	var clock time.Time
	db := h(t, func() time.Time { return clock })
	s := db.Store
	first := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	second := first.Add(time.Hour)
	calls := []struct {
		at  time.Time
		sub registration.Subscriber
	}{
		{first, registration.Subscriber{Email: "Ada@Example.ORG", FirstName: "Ada", LastName: "Lovelace", EventID: testEventID, RegistrationID: "r1"}},
		{second, registration.Subscriber{Email: "ada@example.org", FirstName: "Augusta", LastName: "King", EventID: testEventID, RegistrationID: "r2"}},
	}
	for _, c := range calls {
		clock = c.at
		if err := s.Subscribe(ctx, c.sub); err != nil {
			t.Fatalf("Subscribe(%s): %v", c.sub.Email, err)
		}
	}
	if got := db.queryInt(t, `SELECT count(*) FROM mailing_list`); got != 1 {
		t.Fatalf("mailing_list has %d rows; want 1", got)
	}
	var email, firstName, regID string
	var consented, updated storedTime
	if err := db.DB.QueryRowContext(ctx, `SELECT email, first_name, registration_id, consented_at, updated_at FROM mailing_list`).
		Scan(&email, &firstName, &regID, &consented, &updated); err != nil {
		t.Fatal(err)
	}
	got := []string{email, firstName, regID, consented.Format(time.RFC3339Nano), updated.Format(time.RFC3339Nano)}
	want := []string{"ada@example.org", "Augusta", "r2", first.Format(time.RFC3339Nano), second.Format(time.RFC3339Nano)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mailing_list row = %q; want %q", got, want)
	}
}

// testConcurrentFanIn finishes the steps of several registrations all at
// once, each as the pipeline does (its effect, the step and the job in one
// transaction): every registration completes, whichever step commits last.
func testConcurrentFanIn(t *testing.T, h Harness) {
	ctx := t.Context()
	s, _ := newStore(t, h, 20)
	var regs []registration.Registration
	for i := range 10 {
		r := register(t, s, i%2 == 0)
		if err := inTx(ctx, s, func(tx *sql.Tx) error { return s.StartPipelineTx(ctx, tx, r.ID) }); err != nil {
			t.Fatal(err)
		}
		regs = append(regs, r)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(regs))
	for _, r := range regs {
		for _, st := range r.Steps {
			if st.Status.Done() {
				continue
			}
			wg.Go(func() {
				<-start
				if err := s.StepStarted(ctx, r.ID, st.Name); err != nil {
					errs <- err
					return
				}
				if err := perform(ctx, s, r, st.Name); err != nil {
					errs <- fmt.Errorf("%s %s: %w", r.ID, st.Name, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, r := range regs {
		got, err := s.Registration(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != registration.StatusCompleted {
			t.Errorf("registration %s (newsletter %v) is %s with steps %+v; want completed", r.ID, r.Newsletter, got.Status, got.Steps)
		}
	}
}

// perform does what the pipeline's activity does for step: its effect, then
// the step's success in the transaction of the effect's record.
func perform(ctx context.Context, s Store, r registration.Registration, step registration.StepName) error {
	var effect func(tx *sql.Tx) error
	switch step {
	case registration.StepSaveOrder:
		effect = func(tx *sql.Tx) error { return s.SaveOrderTx(ctx, tx, r) }
	case registration.StepSendConfirmation:
		if err := s.EmailSending(ctx, r.ID); err != nil {
			return err
		}
		effect = func(tx *sql.Tx) error { return s.EmailSentTx(ctx, tx, r.ID, "ref-"+r.ID) }
	case registration.StepAddToMailingList:
		if err := s.Subscribe(ctx, registration.Subscriber{Email: r.ID + "@example.org", FirstName: r.FirstName,
			LastName: r.LastName, EventID: r.EventID, RegistrationID: r.ID}); err != nil {
			return err
		}
	}
	return inTx(ctx, s, func(tx *sql.Tx) error {
		if effect != nil {
			if err := effect(tx); err != nil {
				return err
			}
		}
		return s.FinishStepTx(ctx, tx, r.ID, step)
	})
}

// testSaveOrder covers SaveOrder's upsert: one row per registration, written
// only when its transaction commits, updated by a re-run.
func testSaveOrder(t *testing.T, h Harness) {
	ctx := t.Context()
	clock := time.Date(2027, 1, 5, 10, 0, 0, 123456000, time.UTC)
	e := h(t, func() time.Time { return clock })
	s := e.Store
	if err := s.SyncTickets(ctx, testEvent(5)); err != nil {
		t.Fatal(err)
	}
	r := register(t, s, false)

	tx, err := s.BeginTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveOrderTx(ctx, tx, r); err != nil {
		t.Fatalf("SaveOrderTx: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := e.queryInt(t, `SELECT count(*) FROM orders`); got != 0 {
		t.Fatalf("%d orders after a rolled back SaveOrderTx; want 0", got)
	}

	read := func() string {
		t.Helper()
		var eventID, ticketID, currency, first, last, email, company, provider, ref string
		var amount int64
		var saved storedTime
		if err := e.DB.QueryRowContext(ctx, e.Bind(`SELECT event_id, ticket_id, amount, currency, first_name, last_name,
			email, company, payment_provider, payment_reference, saved_at FROM orders WHERE registration_id = ?`), r.ID).
			Scan(&eventID, &ticketID, &amount, &currency, &first, &last, &email, &company, &provider, &ref, &saved); err != nil {
			t.Fatalf("read order: %v", err)
		}
		return strings.Join([]string{eventID, ticketID, fmt.Sprint(amount), currency, first, last, email, company, provider, ref,
			saved.Format(time.RFC3339Nano)}, "|")
	}
	save := func() {
		t.Helper()
		if err := inTx(ctx, s, func(tx *sql.Tx) error { return s.SaveOrderTx(ctx, tx, r) }); err != nil {
			t.Fatalf("SaveOrderTx: %v", err)
		}
	}
	save()
	want := strings.Join([]string{testEventID, "standard", "14900", "EUR", "Ada", "Lovelace", "ada@example.org",
		"Analytical Engines", "test", r.Payment.Reference, clock.Format(time.RFC3339Nano)}, "|")
	if got := read(); got != want {
		t.Errorf("order = %s; want %s", got, want)
	}

	// A re-run (its job died before completing) writes the same row again.
	clock = clock.Add(time.Minute)
	r.Company = "Difference Engines"
	save()
	want = strings.Join([]string{testEventID, "standard", "14900", "EUR", "Ada", "Lovelace", "ada@example.org",
		"Difference Engines", "test", r.Payment.Reference, clock.Format(time.RFC3339Nano)}, "|")
	if got := read(); got != want {
		t.Errorf("order after the re-run = %s; want %s", got, want)
	}
	if got := e.queryInt(t, `SELECT count(*) FROM orders`); got != 1 {
		t.Errorf("%d orders; want 1", got)
	}
}

// testEmailDelivery covers the record that keeps a confirmation from being
// sent twice: sending, then sent in the transaction that finishes the step.
func testEmailDelivery(t *testing.T, h Harness) {
	ctx := t.Context()
	clock := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	e := h(t, func() time.Time { return clock })
	s := e.Store
	if err := s.SyncTickets(ctx, testEvent(5)); err != nil {
		t.Fatal(err)
	}
	r := register(t, s, false)

	type delivery struct {
		state, reference string
		updated          time.Time
	}
	read := func() delivery {
		t.Helper()
		var d delivery
		var updated storedTime
		if err := e.DB.QueryRowContext(ctx, e.Bind(`SELECT state, reference, updated_at FROM email_deliveries WHERE registration_id = ?`), r.ID).
			Scan(&d.state, &d.reference, &updated); err != nil {
			t.Fatalf("read delivery: %v", err)
		}
		d.updated = updated.Time
		return d
	}
	sent := func(want bool) {
		t.Helper()
		got, err := s.EmailSent(ctx, r.ID)
		if err != nil || got != want {
			t.Errorf("EmailSent = %v, %v; want %v, nil", got, err, want)
		}
	}

	sent(false)
	if err := s.EmailSending(ctx, r.ID); err != nil {
		t.Fatalf("EmailSending: %v", err)
	}
	sent(false)
	if got, want := read(), (delivery{"sending", "", clock}); got != want {
		t.Errorf("delivery = %+v; want %+v", got, want)
	}
	// The worker died before recording the send; the retry is about to send
	// again.
	clock = clock.Add(time.Minute)
	if err := s.EmailSending(ctx, r.ID); err != nil {
		t.Fatalf("second EmailSending: %v", err)
	}
	if got, want := read(), (delivery{"sending", "", clock}); got != want {
		t.Errorf("delivery = %+v; want %+v", got, want)
	}

	tx, err := s.BeginTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EmailSentTx(ctx, tx, r.ID, "msg-1"); err != nil {
		t.Fatalf("EmailSentTx: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	sent(false)

	clock = clock.Add(time.Minute)
	if err := inTx(ctx, s, func(tx *sql.Tx) error { return s.EmailSentTx(ctx, tx, r.ID, "msg-2") }); err != nil {
		t.Fatalf("EmailSentTx: %v", err)
	}
	sent(true)
	want := delivery{"sent", "msg-2", clock}
	if got := read(); got != want {
		t.Errorf("delivery = %+v; want %+v", got, want)
	}
	// A late EmailSending (a stray re-run) does not reopen a sent email.
	clock = clock.Add(time.Minute)
	if err := s.EmailSending(ctx, r.ID); err != nil {
		t.Fatalf("EmailSending after sent: %v", err)
	}
	sent(true)
	if got := read(); got != want {
		t.Errorf("delivery after a late EmailSending = %+v; want %+v", got, want)
	}

	if got, err := s.EmailSent(ctx, "unknown"); err != nil || got {
		t.Errorf("EmailSent of an unknown registration = %v, %v; want false, nil", got, err)
	}
}

// testForeignKeys: an activity's record needs its registration.
func testForeignKeys(t *testing.T, h Harness) {
	ctx := t.Context()
	s, e := newStore(t, h, 5)
	r := register(t, s, false)
	insert := func(id string) error {
		_, err := e.DB.ExecContext(ctx, e.Bind(`INSERT INTO orders (registration_id, event_id, ticket_id, amount, currency,
			first_name, last_name, email, company, payment_provider, payment_reference, saved_at)
			VALUES (?, 'e', 't', 1, 'EUR', 'a', 'b', 'c', '', '', '', ?)`), id, time.Now().UTC())
		return err
	}
	if err := insert("nope"); err == nil {
		t.Error("an order for a missing registration was inserted; foreign keys are not enforced")
	}
	if err := insert(r.ID); err != nil {
		t.Errorf("an order for an existing registration: %v", err)
	}
	if err := s.EmailSending(ctx, "nope"); err == nil {
		t.Error("an email delivery for a missing registration was recorded")
	}
}
