// Package pipeline is the durable orchestration of the original design's
// RegistrationAPI: a River job "register" fans out three activity jobs —
// save the order, send the confirmation, add to the mailing list — and the
// registration completes when all three are done (the fan-in).
package pipeline

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/groupcommit"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/telemetry"
)

// Store is what the pipeline needs from storage.
type Store interface {
	// Write runs fn in a write transaction, which may be shared with other
	// writes (group commit); fn's writes are kept only if it returns nil.
	Write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error
	// WriteSteps runs fn, a write of registration id's pipeline that locks
	// only that registration's rows, in a write transaction that may be
	// shared with the pipeline writes of other registrations (group commit).
	WriteSteps(ctx context.Context, id string, fn func(ctx context.Context, tx *sql.Tx) error) error
	Registration(ctx context.Context, id string) (registration.Registration, error)
	StartPipelineTx(ctx context.Context, tx *sql.Tx, id string) error
	// StepsStartedTx counts an attempt of each of steps and marks them
	// running.
	StepsStartedTx(ctx context.Context, tx *sql.Tx, id string, steps ...registration.StepName) error
	StepFailedTx(ctx context.Context, tx *sql.Tx, id string, step registration.StepName, msg string, final bool) error
	// FinishStepsTx marks steps succeeded and, when no other is left, the
	// registration completed (the fan-in).
	FinishStepsTx(ctx context.Context, tx *sql.Tx, id string, steps ...registration.StepName) error
	SaveOrderTx(ctx context.Context, tx *sql.Tx, r registration.Registration) error
	EmailSent(ctx context.Context, id string) (bool, error)
	// EmailSendingTx records that the confirmation is about to be handed
	// to the mailer, so a crash before EmailSentTx is known to be in doubt.
	EmailSendingTx(ctx context.Context, tx *sql.Tx, id string) error
	EmailSentTx(ctx context.Context, tx *sql.Tx, id, reference string) error
}

// Resolver settles payment attempts abandoned mid-charge.
type Resolver interface {
	ResolveAbandoned(ctx context.Context, now time.Time) (int, error)
}

// Mailer delivers an email and returns the provider's reference for it.
type Mailer interface {
	Send(ctx context.Context, m email.Message) (string, error)
}

// MailingList adds an attendee who consented. It must be idempotent. A
// provider's own double opt-in (Mailchimp's "pending") is its business.
type MailingList interface {
	Subscribe(ctx context.Context, s registration.Subscriber) error
}

// OptInList is a mailing list whose double opt-in the pipeline runs itself
// (the local list): a MailingList that implements it is used through it.
// The attendee is kept pending and emailed a link; only following it
// subscribes them.
//
// Every attempt of the step issues a new link: its token's hash replaces
// the address's earlier one, so at most one link per address works at any
// time, the most recent. An attempt retried after its email went out (a
// crash before the step was recorded, a send whose outcome was unknown)
// sends one more email, and the link of the earlier one stops working.
type OptInList interface {
	// SubscribePending records s as pending (the consent time kept from the
	// first consent) with tokenHash as its one working confirmation link,
	// and reports whether to ask. An address already subscribed is not
	// asked again: only its names are updated, and s's registration counts
	// as confirmed.
	SubscribePending(ctx context.Context, s registration.Subscriber, tokenHash string) (ask bool, err error)
}

// PermanentError marks a failure that retrying cannot fix: the step fails at
// once instead of exhausting its retries. Provider adapters mark their own
// errors the same way, with a Permanent() bool method.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string   { return e.Err.Error() }
func (e *PermanentError) Unwrap() error   { return e.Err }
func (e *PermanentError) Permanent() bool { return true }

// permanent reports whether err says retrying cannot help.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// retryAfter is how long the provider asked us to wait, or 0.
func retryAfter(err error) time.Duration {
	var r interface{ RetryAfter() time.Duration }
	if errors.As(err, &r) {
		return r.RetryAfter()
	}
	return 0
}

// Job kinds.
const (
	KindRegister         = "register"
	KindSaveOrder        = string(registration.StepSaveOrder)
	KindSendConfirmation = string(registration.StepSendConfirmation)
	KindAddToMailingList = string(registration.StepAddToMailingList)
	KindResolvePayments  = "resolve_payments"
)

// RegisterArgs starts the pipeline of one registration. It carries only the
// registration id: never card data.
type RegisterArgs struct {
	RegistrationID string `json:"registration_id"`
}

// Kind implements river.JobArgs.
func (RegisterArgs) Kind() string { return KindRegister }

// InsertOpts keeps one register job per registration.
func (RegisterArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// SaveOrderArgs is the SaveOrder activity.
type SaveOrderArgs struct {
	RegistrationID string `json:"registration_id"`
}

// SendConfirmationArgs is the SendEmailConfirmation activity.
type SendConfirmationArgs struct {
	RegistrationID string `json:"registration_id"`
}

// AddToMailingListArgs is the AddEmailToMailingList activity.
type AddToMailingListArgs struct {
	RegistrationID string `json:"registration_id"`
}

// Kind implements river.JobArgs.
func (SaveOrderArgs) Kind() string { return KindSaveOrder }

// Kind implements river.JobArgs.
func (SendConfirmationArgs) Kind() string { return KindSendConfirmation }

// Kind implements river.JobArgs.
func (AddToMailingListArgs) Kind() string { return KindAddToMailingList }

// QueueMailingList is the queue of the mailing-list activity. Mailchimp
// allows 10 simultaneous connections per account, so its client waits for
// one of a few connections; on a queue with workers of its own, that wait
// never holds up the other activities (and other registrations) in the
// default queue.
const QueueMailingList = "mailing_list"

// InsertOpts puts the activity on its own queue.
func (AddToMailingListArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMailingList}
}

func (a SaveOrderArgs) registrationID() string        { return a.RegistrationID }
func (a SendConfirmationArgs) registrationID() string { return a.RegistrationID }
func (a AddToMailingListArgs) registrationID() string { return a.RegistrationID }

// ResolvePaymentsArgs settles attempts that hold a seat but never finished:
// their process died mid-charge or their charge's outcome was unknown.
type ResolvePaymentsArgs struct{}

// Kind implements river.JobArgs.
func (ResolvePaymentsArgs) Kind() string { return KindResolvePayments }

// QueuePayments is the payment resolver's queue, with a worker of its own:
// settling charges must not wait behind activities stuck on a stalled
// email or mailing-list provider.
const QueuePayments = "payments"

// InsertOpts keeps one resolver job waiting at a time, on its own queue.
func (ResolvePaymentsArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueuePayments, MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

// Options tune the pipeline.
type Options struct {
	// MaxAttempts per activity before its step fails and the registration
	// needs attention.
	MaxAttempts int
	// RetryBase is the first retry delay; each later one doubles, up to
	// RetryCap, with ±10% jitter.
	RetryBase, RetryCap time.Duration
	// Workers is how many jobs of the default queue (every job but the
	// mailing-list activity) run at once in this process. A register job
	// spends most of its time waiting for the email provider, so many run
	// at once: 200 kept pace with 800 registrations/s where 50 completed
	// ~580/s.
	Workers int
	// ListWorkers is how many mailing-list activities run at once in this
	// process. The provider client caps its own connections; a few times as
	// many workers keep those connections busy while other activities
	// record their results.
	ListWorkers int
	// RescueAfter is when a job left running by a dead process is retried.
	RescueAfter time.Duration
	// JobTimeout bounds one attempt of one job; below RescueAfter.
	JobTimeout time.Duration
	// FetchPollInterval is how often idle workers look for jobs.
	FetchPollInterval time.Duration
	// NoticeInterval is how often organisers are sent what needs them, in
	// one email per run; 0 means every 2 minutes.
	NoticeInterval time.Duration
	// ClientID names this process's River client (jobs record it in
	// attempted_by); "" lets River choose.
	ClientID string
	// RetentionDays, when positive, erases the personal data of the
	// event's registrations that many days after the event ended (a
	// periodic job, hourly); 0 keeps them.
	RetentionDays int
}

// DefaultOptions are the production settings: an activity is retried for
// about five hours before it needs an operator.
func DefaultOptions() Options {
	return Options{
		MaxAttempts:       15,
		RetryBase:         2 * time.Second,
		RetryCap:          time.Hour,
		Workers:           200,
		ListWorkers:       20,
		RescueAfter:       5 * time.Minute,
		JobTimeout:        time.Minute,
		FetchPollInterval: time.Second,
	}
}

// Deps are the pipeline's collaborators.
type Deps struct {
	Store    Store
	Mailer   Mailer
	List     MailingList
	Renderer *email.Renderer
	Payments Resolver
	Event    *event.Event
	BaseURL  string
	Log      *slog.Logger
	// Observe, when set, is told the result of every activity run:
	// "succeeded", "retrying" or "failed".
	Observe func(step, result string)
	// Tracing traces each job and step; nil for none.
	Tracing *telemetry.Tracing

	// The back office's jobs: emails to attendees, refunds and the
	// organisers' notices. With Office nil they are not registered.
	Office  OfficeStore
	Refunds Refunder
	// NotifyTo are where organiser notices go; empty means Owners.
	NotifyTo []string
	// Owners returns the email addresses of the back office's owners.
	Owners func(ctx context.Context) ([]string, error)

	// newsletter renders the local list's confirmation requests; Config
	// sets it when List is an OptInList.
	newsletter *email.NewsletterRenderer
}

// Refunder gives a charge's money back (payment.Processor's Refund).
type Refunder interface {
	Refund(ctx context.Context, charge payment.Charge, amount int64, currency, requestID string) (payment.RefundOutcome, error)
}

func (d Deps) observe(step registration.StepName, result string) {
	if d.Observe != nil {
		d.Observe(string(step), result)
	}
}

// retryPolicy is exponential backoff with jitter and a cap.
type retryPolicy struct{ base, cap time.Duration }

// NextRetry counts the step's attempts made before the job, so a step's
// back-off doubles from attempt to attempt wherever they ran.
func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	return time.Now().Add(p.delay(job.Attempt + priorAttempts(job.Metadata)))
}

// delay is the wait after a step's attempt-th failed attempt.
func (p retryPolicy) delay(attempt int) time.Duration {
	d := p.base
	for i := 1; i < attempt && d < p.cap; i++ {
		d *= 2
	}
	d = min(d, p.cap)
	jitter := time.Duration(float64(d) * (rand.Float64()*0.2 - 0.1))
	return d + jitter
}

// Config returns the River configuration for a process. With workers false
// the client only inserts jobs (a web-only process).
func Config(d Deps, o Options, workers bool, log *slog.Logger) (*river.Config, error) {
	cfg := &river.Config{
		Logger:                      log,
		MaxAttempts:                 o.MaxAttempts,
		RetryPolicy:                 retryPolicy{base: o.RetryBase, cap: o.RetryCap},
		RescueStuckJobsAfter:        o.RescueAfter,
		JobTimeout:                  o.JobTimeout,
		DiscardedJobRetentionPeriod: -1, // discarded jobs are the dead letter: keep them
		FetchPollInterval:           o.FetchPollInterval,
		FetchCooldown:               10 * time.Millisecond,
		Middleware:                  []rivertype.Middleware{&jobMiddleware{tracer: d.Tracing.Tracer()}},
	}
	if !workers {
		return cfg, nil
	}
	if _, ok := d.List.(OptInList); ok && d.newsletter == nil {
		r, err := email.NewNewsletterRenderer()
		if err != nil {
			return nil, err
		}
		d.newsletter = r
	}
	ws := river.NewWorkers()
	acts := activityTable()
	if err := river.AddWorkerSafely(ws, &registerWorker{d: d, o: o, acts: acts}); err != nil {
		return nil, err
	}
	for _, a := range acts {
		if err := a.addWorker(ws, d, a); err != nil {
			return nil, fmt.Errorf("activity %s: %w", a.step, err)
		}
	}
	if err := river.AddWorkerSafely(ws, &resolveWorker{d: d}); err != nil {
		return nil, err
	}
	if d.Office != nil {
		if err := addOfficeWorkers(ws, d); err != nil {
			return nil, err
		}
		if err := river.AddWorkerSafely(ws, &retentionWorker{d: d, days: o.RetentionDays, now: time.Now}); err != nil {
			return nil, err
		}
	}
	if forget, ok := d.List.(MemberForgetter); ok {
		if err := river.AddWorkerSafely(ws, &forgetMemberWorker{forget: forget}); err != nil {
			return nil, err
		}
	}
	cfg.Workers = ws
	cfg.Queues = map[string]river.QueueConfig{
		river.QueueDefault: {MaxWorkers: o.Workers},
		QueueMailingList:   {MaxWorkers: max(o.ListWorkers, 1)},
		QueuePayments:      {MaxWorkers: 1},
	}
	cfg.PeriodicJobs = []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(30*time.Second),
			func() (river.JobArgs, *river.InsertOpts) { return ResolvePaymentsArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true}),
	}
	if d.Office != nil {
		every := o.NoticeInterval
		if every <= 0 {
			every = 2 * time.Minute
		}
		cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(every),
			func() (river.JobArgs, *river.InsertOpts) { return NotifyOrganisersArgs{}, nil }, nil))
		if o.RetentionDays > 0 {
			cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
				func() (river.JobArgs, *river.InsertOpts) { return RetentionArgs{}, nil },
				&river.PeriodicJobOpts{RunOnStart: true}))
		}
	}
	return cfg, nil
}

// Enqueue returns the function that inserts a registration's pipeline in
// the transaction that stores it.
func Enqueue(client *river.Client[*sql.Tx]) registration.EnqueueFunc {
	return func(ctx context.Context, tx *sql.Tx, id string) error {
		return insertJobs(ctx, client, tx, river.InsertManyParams{Args: RegisterArgs{RegistrationID: id}})
	}
}

// insertJobs inserts jobs in tx. Inside a group-commit batch they join the
// jobs of the batch's other writes, inserted together at the batch's end: a
// job insert is one of the costliest statements on SQLite's single writer,
// and one statement for a batch's jobs costs little more than one job's.
func insertJobs(ctx context.Context, client *river.Client[*sql.Tx], tx *sql.Tx, jobs ...river.InsertManyParams) error {
	flush := func(ctx context.Context, tx *sql.Tx, items []any) error {
		params := make([]river.InsertManyParams, len(items))
		for i, it := range items {
			params[i] = it.(river.InsertManyParams)
		}
		if _, err := client.InsertManyTx(ctx, tx, params); err != nil {
			return fmt.Errorf("insert %d jobs: %w", len(params), err)
		}
		return nil
	}
	items := make([]any, len(jobs))
	for i, j := range jobs {
		items[i] = stamp(ctx, j)
	}
	for i, it := range items {
		if !groupcommit.Defer(ctx, client, it, flush) {
			return flush(ctx, tx, items[i:]) // not in a batch: insert now
		}
	}
	return nil
}

// A job's effect and its completion are not committed together: River's
// completer marks jobs completed in batches after Work returns, which costs
// far less than completing each job inside its own transaction (River's
// completer updates the row again anyway). A crash in between runs the job
// once more, and every job is idempotent: a step already done is not done
// again, and the jobs inserted along the way are unique.

// activity is one step of a registration's pipeline. The activities of a
// registration are the table activityTable returns: a new step is one entry
// there, its arguments type and its registration's step row.
type activity struct {
	step registration.StepName
	// queue is where the step's own job runs. A step on the default queue
	// is first attempted inside the register job, beside the others, and
	// its job only carries its retries; a step on another queue always runs
	// as a job of its own there (the mailing list: its provider allows few
	// connections, and waiting for one must not hold up the rest).
	queue string
	// args are the arguments of the step's job.
	args func(id string) river.JobArgs
	// addWorker registers the step's job worker.
	addWorker func(ws *river.Workers, d Deps, a activity) error
	// begin, when set, is written in the transaction that records an
	// attempt's start, before run.
	begin func(ctx context.Context, d Deps, tx *sql.Tx, reg registration.Registration) error
	// run does the step's effect. What it returns, when not nil, is written
	// with the step's success, in one transaction.
	run func(ctx context.Context, d Deps, reg registration.Registration) (record, error)
}

// record writes the outcome of an activity's effect.
type record func(ctx context.Context, tx *sql.Tx) error

// activityTable is every step of a registration's pipeline, in the order
// their rows are created.
func activityTable() []activity {
	return []activity{
		{
			step:      registration.StepSaveOrder,
			queue:     river.QueueDefault,
			args:      func(id string) river.JobArgs { return SaveOrderArgs{RegistrationID: id} },
			addWorker: addActivity[SaveOrderArgs],
			run:       saveOrder,
		},
		{
			step:      registration.StepSendConfirmation,
			queue:     river.QueueDefault,
			args:      func(id string) river.JobArgs { return SendConfirmationArgs{RegistrationID: id} },
			addWorker: addActivity[SendConfirmationArgs],
			begin: func(ctx context.Context, d Deps, tx *sql.Tx, reg registration.Registration) error {
				return d.Store.EmailSendingTx(ctx, tx, reg.ID)
			},
			run: sendConfirmation,
		},
		{
			step:      registration.StepAddToMailingList,
			queue:     QueueMailingList,
			args:      func(id string) river.JobArgs { return AddToMailingListArgs{RegistrationID: id} },
			addWorker: addActivity[AddToMailingListArgs],
			run:       addToMailingList,
		},
	}
}

// findActivity returns the activity of step.
func findActivity(acts []activity, step registration.StepName) (activity, bool) {
	for _, a := range acts {
		if a.step == step {
			return a, true
		}
	}
	return activity{}, false
}

// job is the insert of the step's job for registration id, unique by its
// arguments when unique is set (a job that may be inserted again by a
// re-run of the job inserting it).
func (a activity) job(id string, unique bool) river.InsertManyParams {
	opts := &river.InsertOpts{Queue: a.queue}
	if unique {
		opts.UniqueOpts = river.UniqueOpts{ByArgs: true}
	}
	return river.InsertManyParams{Args: a.args(id), InsertOpts: opts}
}

type registerWorker struct {
	river.WorkerDefaults[RegisterArgs]
	d    Deps
	o    Options
	acts []activity
}

// Work is a registration's pipeline in one job: it marks the registration
// processing and the attempts of its default-queue steps started, and
// inserts the jobs of the steps that run elsewhere, in one transaction;
// then it runs those steps at once (the fan-out) and writes every outcome
// in one more transaction. A step that failed and may be retried gets a
// job of its own in that transaction, scheduled after the step's back-off:
// only unfinished steps run again, each with its own attempts. The last
// step to succeed, here or in its job, completes the registration (the
// fan-in).
//
// A step found already attempted (this job's earlier run died, or its
// retry job exists) is not run here: its own job is inserted instead,
// unique, so it has exactly one.
func (w *registerWorker) Work(ctx context.Context, job *river.Job[RegisterArgs]) error {
	id := job.Args.RegistrationID
	reg, err := w.d.Store.Registration(ctx, id)
	if errors.Is(err, registration.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("registration %s does not exist", id))
	}
	if err != nil {
		return err
	}
	if reg.Status == registration.StatusCancelled {
		return nil // cancelled before its pipeline started: nothing to do
	}
	client := river.ClientFromContext[*sql.Tx](ctx)
	var here []activity
	var jobs []river.InsertManyParams
	for _, a := range w.acts {
		st, ok := reg.Step(a.step)
		if !ok || st.Status.Done() || st.Status == registration.StepFailed {
			continue // done, or waiting for an operator
		}
		if a.queue == river.QueueDefault && st.Status == registration.StepPending {
			here = append(here, a)
			continue
		}
		jobs = append(jobs, a.job(id, true))
	}
	err = w.d.Store.WriteSteps(ctx, id, func(ctx context.Context, tx *sql.Tx) error {
		if len(here) == 0 {
			if err := w.d.Store.StartPipelineTx(ctx, tx, id); err != nil {
				return err
			}
		} else if err := w.d.startAttempts(ctx, tx, reg, here...); err != nil {
			return err // it starts the pipeline too
		}
		if err := insertJobs(ctx, client, tx, jobs...); err != nil {
			return fmt.Errorf("fan out %s: %w", id, err)
		}
		return nil
	})
	if err != nil || len(here) == 0 {
		return err
	}

	outcomes := make([]outcome, len(here))
	var wg sync.WaitGroup
	for i, a := range here {
		wg.Go(func() {
			rec, err := w.d.runStep(ctx, a, reg)
			outcomes[i] = outcome{a: a, rec: rec, err: err}
		})
	}
	wg.Wait()

	var failed bool
	for i, oc := range outcomes {
		if oc.err == nil {
			continue
		}
		failed = true
		outcomes[i].final = permanent(oc.err) || w.o.MaxAttempts <= 1
		w.d.Log.WarnContext(ctx, "activity failed", "registration", id, "step", oc.a.step, "attempt", 1,
			"final", outcomes[i].final, "err", oc.err)
	}
	if failed && cancelled(ctx, w.d.Store, id) {
		w.d.Log.InfoContext(ctx, "activity failed after its registration was cancelled; not retried", "registration", id)
		kept := outcomes[:0]
		for _, oc := range outcomes {
			if oc.err == nil {
				kept = append(kept, oc)
			}
		}
		outcomes = kept
	}
	// The effects may already have happened at the providers: record them
	// even if the job's time has just run out, or a retry repeats them.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err = w.d.Store.WriteSteps(wctx, id, func(ctx context.Context, tx *sql.Tx) error {
		var retries []river.InsertManyParams
		var done []registration.StepName
		for _, oc := range outcomes {
			if oc.err == nil {
				if oc.rec != nil {
					if err := oc.rec(ctx, tx); err != nil {
						return err
					}
				}
				done = append(done, oc.a.step)
				continue
			}
			if err := w.d.Store.StepFailedTx(ctx, tx, id, oc.a.step, oc.err.Error(), oc.final); err != nil {
				return err
			}
			if !oc.final {
				retries = append(retries, w.retryJob(id, oc.a, oc.err))
			}
		}
		if len(done) > 0 {
			if err := w.d.Store.FinishStepsTx(ctx, tx, id, done...); err != nil {
				return err
			}
		}
		if err := insertJobs(ctx, client, tx, retries...); err != nil {
			return fmt.Errorf("retry steps of %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record steps of %s: %w", id, err)
	}
	// The job itself succeeded: its failed steps carry on in their own jobs.
	for _, oc := range outcomes {
		switch {
		case oc.err == nil:
			w.d.observe(oc.a.step, "succeeded")
		case oc.final:
			w.d.observe(oc.a.step, "failed")
		default:
			w.d.observe(oc.a.step, "retrying")
		}
	}
	return nil
}

// outcome is what one step's attempt inside the register job came to.
type outcome struct {
	a     activity
	rec   record
	err   error
	final bool
}

// retryJob is the job that retries step a of registration id after its
// first attempt (made in the register job) failed with err: it starts
// after the first back-off, or when the provider asked us to come back,
// with one attempt fewer, and its metadata tells the retry policy that one
// attempt came before it.
func (w *registerWorker) retryJob(id string, a activity, err error) river.InsertManyParams {
	p := a.job(id, true)
	wait := retryPolicy{base: w.o.RetryBase, cap: w.o.RetryCap}.delay(1)
	if ra := retryAfter(err); ra > 0 {
		wait = min(ra, time.Hour)
	}
	p.InsertOpts.ScheduledAt = time.Now().Add(wait)
	p.InsertOpts.MaxAttempts = w.o.MaxAttempts - 1
	p.InsertOpts.Metadata = []byte(`{"prior_attempts":1}`)
	return p
}

// startAttempts records in tx that an attempt of each of acts begins (and
// writes what their begin writes with it).
func (d Deps) startAttempts(ctx context.Context, tx *sql.Tx, reg registration.Registration, acts ...activity) error {
	steps := make([]registration.StepName, len(acts))
	for i, a := range acts {
		steps[i] = a.step
	}
	if err := d.Store.StepsStartedTx(ctx, tx, reg.ID, steps...); err != nil {
		return err
	}
	for _, a := range acts {
		if a.begin != nil {
			if err := a.begin(ctx, d, tx, reg); err != nil {
				return err
			}
		}
	}
	return nil
}

// finishStep writes rec, when set, and the step's success in tx.
func finishStep(ctx context.Context, store Store, tx *sql.Tx, id string, step registration.StepName, rec record) error {
	if rec != nil {
		if err := rec(ctx, tx); err != nil {
			return err
		}
	}
	return store.FinishStepsTx(ctx, tx, id, step)
}

// addActivity registers the job worker of activity a, whose arguments are T.
func addActivity[T activityArgs](ws *river.Workers, d Deps, a activity) error {
	return river.AddWorkerSafely(ws, &activityWorker[T]{d: d, a: a})
}

type activityArgs interface {
	river.JobArgs
	registrationID() string
}

// activityWorker works the jobs of one activity: the retries of a
// default-queue step, every attempt of a step on a queue of its own, and
// the steps an operator retries.
type activityWorker[T activityArgs] struct {
	river.WorkerDefaults[T]
	d Deps
	a activity
}

// Work runs one attempt of an activity and records it on the step.
func (w *activityWorker[T]) Work(ctx context.Context, job *river.Job[T]) error {
	id := job.Args.registrationID()
	step := w.a.step
	reg, err := w.d.Store.Registration(ctx, id)
	if errors.Is(err, registration.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("registration %s does not exist", id))
	}
	if err != nil {
		return err
	}
	finish := func(rec record) error {
		// The effect may already have happened at the provider: record it
		// even if the job's time has just run out, or a retry repeats it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := w.d.Store.WriteSteps(ctx, id, func(ctx context.Context, tx *sql.Tx) error {
			return finishStep(ctx, w.d.Store, tx, id, step, rec)
		})
		if err != nil {
			return fmt.Errorf("finish %s: %w", step, err)
		}
		return nil
	}
	if reg.Status == registration.StatusCancelled {
		// An organiser cancelled it: the rest of its work is not wanted,
		// and it must not come back as needing attention.
		w.d.Log.InfoContext(ctx, "activity skipped: registration cancelled", "registration", id, "step", step)
		return nil
	}
	if reg.Anonymised() && step != registration.StepSaveOrder {
		// Its personal data was erased: nothing may be sent to it or
		// subscribed (the erasure skipped the step).
		w.d.Log.InfoContext(ctx, "activity skipped: personal data erased", "registration", id, "step", step)
		return nil
	}
	if st, ok := reg.Step(step); ok && st.Status.Done() {
		return finish(nil) // already done by an earlier run that died before its job was completed
	}
	err = w.d.Store.WriteSteps(ctx, id, func(ctx context.Context, tx *sql.Tx) error {
		return w.d.startAttempts(ctx, tx, reg, w.a)
	})
	if err != nil {
		return err
	}
	rec, err := w.d.runStep(ctx, w.a, reg)
	if err == nil {
		if err := finish(rec); err != nil {
			return err
		}
		w.d.observe(step, "succeeded")
		return nil
	}
	if cancelled(ctx, w.d.Store, id) {
		w.d.Log.InfoContext(ctx, "activity failed after its registration was cancelled; not retried", "registration", id, "step", step, "err", err)
		return nil
	}
	isPermanent := permanent(err)
	final := job.Attempt >= job.MaxAttempts || isPermanent
	if final {
		w.d.observe(step, "failed")
	} else {
		w.d.observe(step, "retrying")
	}
	// Record the failure even if the job's context has run out.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := w.d.Store.WriteSteps(rctx, id, func(ctx context.Context, tx *sql.Tx) error {
		return w.d.Store.StepFailedTx(ctx, tx, id, step, err.Error(), final)
	}); ferr != nil {
		w.d.Log.ErrorContext(ctx, "recording step failure", "registration", id, "step", step, "err", ferr)
	}
	w.d.Log.WarnContext(ctx, "activity failed", "registration", id, "step", step, "attempt", job.Attempt+priorAttempts(job.Metadata),
		"final", final, "err", err)
	if isPermanent {
		return river.JobCancel(err)
	}
	if wait := retryAfter(err); wait > 0 && !final && job.Attempt+snoozes(job.Metadata) < job.MaxAttempts {
		// The provider said when to come back: wait that long instead of the
		// backoff. River does not count a snooze as an attempt, so snoozes
		// are bounded here: past MaxAttempts runs the backoff takes over and
		// the job still ends in failure instead of snoozing forever.
		return river.JobSnooze(min(wait, time.Hour))
	}
	return err
}

// cancelled reports whether registration id was cancelled meanwhile,
// asking with a context of its own (the job's may have run out).
func cancelled(ctx context.Context, store Store, id string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	reg, err := store.Registration(ctx, id)
	return err == nil && reg.Status == registration.StatusCancelled
}

// jobMetadata is what the pipeline reads in a job's metadata: how often
// River snoozed it ("snoozes"), and how many attempts of its step came
// before the job ("prior_attempts": the register job makes the first
// attempt of most steps).
type jobMetadata struct {
	Snoozes int `json:"snoozes"`
	Prior   int `json:"prior_attempts"`
}

func readMetadata(metadata []byte) jobMetadata {
	var m jobMetadata
	if err := json.Unmarshal(metadata, &m); err != nil {
		return jobMetadata{}
	}
	return m
}

func snoozes(metadata []byte) int       { return readMetadata(metadata).Snoozes }
func priorAttempts(metadata []byte) int { return readMetadata(metadata).Prior }

func saveOrder(ctx context.Context, d Deps, reg registration.Registration) (record, error) {
	return func(ctx context.Context, tx *sql.Tx) error { return d.Store.SaveOrderTx(ctx, tx, reg) }, nil
}

// sendConfirmation sends the confirmation. Its attempt's start recorded
// the delivery as sending; an earlier attempt (reg is read before this
// one's start) may have sent it already.
func sendConfirmation(ctx context.Context, d Deps, reg registration.Registration) (record, error) {
	if st, _ := reg.Step(registration.StepSendConfirmation); st.Attempts > 0 {
		sent, err := d.Store.EmailSent(ctx, reg.ID)
		if err != nil {
			return nil, err
		}
		if sent {
			return nil, nil
		}
	}
	msg, err := d.renderConfirmation(reg, "", reg.Email, time.Now())
	if err != nil {
		return nil, &PermanentError{Err: fmt.Errorf("render confirmation: %w", err)}
	}
	ref, err := d.Mailer.Send(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("send confirmation: %w", err)
	}
	d.eraseLateCopy(ctx, reg.ID)
	return func(ctx context.Context, tx *sql.Tx) error { return d.Store.EmailSentTx(ctx, tx, reg.ID, ref) }, nil
}

// renderConfirmation renders a registration's confirmation, its receipt and
// calendar invitation: the first one (messageID "", to the attendee), or one
// sent again to to. The payment date is the registration's, shown in the
// event's zone; the organiser's email is the Reply-To.
func (d Deps) renderConfirmation(reg registration.Registration, messageID, to string, now time.Time) (email.Message, error) {
	ticket, _ := d.Event.Ticket(reg.TicketID)
	return d.Renderer.Render(email.Confirmation{
		RegistrationID:    reg.ID,
		MessageID:         messageID,
		AttendeeFirstName: reg.FirstName,
		AttendeeLastName:  reg.LastName,
		AttendeeEmail:     to,
		TicketName:        ticketName(ticket, reg.TicketID),
		Amount:            event.FormatAmount(reg.Amount, reg.Currency),
		Currency:          reg.Currency,
		Free:              reg.Amount == 0,
		EventName:         d.Event.Name,
		EventStart:        d.Event.StartsAt,
		EventEnd:          d.Event.EndsAt,
		EventDescription:  d.Event.Description,
		Venue:             d.Event.Venue,
		StatusURL:         d.BaseURL + "/registrations/" + reg.ID,
		CardBrand:         reg.Payment.Brand,
		CardLast4:         reg.Payment.Last4,
		PaymentReference:  reg.Payment.Reference,
		PaidAt:            reg.CreatedAt,
		Billing: email.PostalAddress{
			Line1: reg.Billing.Line1, Line2: reg.Billing.Line2, City: reg.Billing.City,
			PostalCode: reg.Billing.PostalCode, Region: reg.Billing.Region, Country: reg.Billing.Country,
		},
		RefundPolicy: d.Event.RefundPolicy,
		Organiser: email.Organiser{
			Name: d.Event.Organiser.Name, Email: d.Event.Organiser.Email, URL: d.Event.Organiser.URL,
		},
	}, d.from(), now)
}

// from is the address the event's emails come from.
func (d Deps) from() email.Address {
	return email.Address{Name: d.Event.EmailFrom.Name, Email: d.Event.EmailFrom.Address}
}

func ticketName(t event.Ticket, id string) string {
	if t.Name != "" {
		return t.Name
	}
	return id
}

func addToMailingList(ctx context.Context, d Deps, reg registration.Registration) (record, error) {
	if !reg.Newsletter {
		return nil, nil
	}
	sub := registration.Subscriber{
		Email:          reg.Email,
		FirstName:      reg.FirstName,
		LastName:       reg.LastName,
		EventID:        reg.EventID,
		RegistrationID: reg.ID,
	}
	if list, ok := d.List.(OptInList); ok {
		return nil, askToConfirm(ctx, d, list, reg, sub)
	}
	if err := d.List.Subscribe(ctx, sub); err != nil {
		return nil, fmt.Errorf("add to mailing list: %w", err)
	}
	return nil, nil
}

// askToConfirm adds sub to list as pending under a new link and emails
// them that link, unless they are subscribed already (see OptInList).
func askToConfirm(ctx context.Context, d Deps, list OptInList, reg registration.Registration, sub registration.Subscriber) error {
	token, hash, err := email.NewConfirmToken()
	if err != nil {
		return err
	}
	msg, err := d.newsletter.Render(email.NewsletterConfirmation{
		// One id per link: a link sent again is another message.
		MessageID:      "newsletter-" + reg.ID + "-" + hash[:12],
		RegistrationID: reg.ID,
		FirstName:      reg.FirstName,
		LastName:       reg.LastName,
		Email:          reg.Email,
		EventName:      d.Event.Name,
		ConfirmURL:     d.BaseURL + "/newsletter/confirm/" + token,
	}, d.from(), time.Now())
	if err != nil {
		return &PermanentError{Err: fmt.Errorf("render newsletter confirmation: %w", err)}
	}
	ask, err := list.SubscribePending(ctx, sub, hash)
	if err != nil {
		return fmt.Errorf("add to mailing list: %w", err)
	}
	if !ask {
		return nil
	}
	if _, err := d.Mailer.Send(ctx, msg); err != nil {
		return fmt.Errorf("send newsletter confirmation: %w", err)
	}
	d.eraseLateCopy(ctx, reg.ID)
	return nil
}

type resolveWorker struct {
	river.WorkerDefaults[ResolvePaymentsArgs]
	d Deps
}

// Work settles abandoned payment attempts.
func (w *resolveWorker) Work(ctx context.Context, job *river.Job[ResolvePaymentsArgs]) error {
	n, err := w.d.Payments.ResolveAbandoned(ctx, time.Now())
	if n > 0 {
		w.d.Log.WarnContext(ctx, "settled abandoned payment attempts", "count", n)
	}
	return err
}
