package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

// Job kinds of the back office.
const (
	KindSendMessage      = "send_message"
	KindRefund           = "refund"
	KindNotifyOrganisers = "notify_organisers"
)

// SendMessageArgs sends one email to an attendee that an organiser asked
// for (a resent confirmation, a cancellation notice).
type SendMessageArgs struct {
	MessageID string `json:"message_id"`
}

// Kind implements river.JobArgs.
func (SendMessageArgs) Kind() string { return KindSendMessage }

// InsertOpts keeps one job per message.
func (SendMessageArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// RefundArgs carries out one refund at the payment provider.
type RefundArgs struct {
	RefundID string `json:"refund_id"`
}

// Kind implements river.JobArgs.
func (RefundArgs) Kind() string { return KindRefund }

// InsertOpts puts refunds with the other payment work, one job per refund.
func (RefundArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueuePayments, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// NotifyOrganisersArgs sends organisers what needs them, in one email.
type NotifyOrganisersArgs struct{}

// Kind implements river.JobArgs.
func (NotifyOrganisersArgs) Kind() string { return KindNotifyOrganisers }

// InsertOpts keeps one notifier job waiting at a time.
func (NotifyOrganisersArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

func addOfficeWorkers(ws *river.Workers, d Deps) error {
	if err := river.AddWorkerSafely(ws, &sendMessageWorker{d: d}); err != nil {
		return err
	}
	if err := river.AddWorkerSafely(ws, &refundWorker{d: d}); err != nil {
		return err
	}
	return river.AddWorkerSafely(ws, &notifyWorker{d: d})
}

// detached is a context for recording an outcome that already happened at
// a provider, even if the job's own time has just run out.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

type sendMessageWorker struct {
	river.WorkerDefaults[SendMessageArgs]
	d Deps
}

// Work renders and sends the email, and records it sent. A crash between
// the send and the record sends it again on the retry, under the same
// Message-ID (the outbox overwrites the same file).
func (w *sendMessageWorker) Work(ctx context.Context, job *river.Job[SendMessageArgs]) error {
	id := job.Args.MessageID
	m, err := w.d.Office.Message(ctx, id)
	if errors.Is(err, registration.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("message %s does not exist", id))
	}
	if err != nil {
		return err
	}
	if m.State == registration.MessageSent || m.State == registration.MessageFailed {
		return nil
	}
	fail := func(err error) error {
		rctx, cancel := detached(ctx)
		defer cancel()
		if ferr := w.d.Office.MessageFailed(rctx, id, err.Error()); ferr != nil {
			w.d.Log.ErrorContext(ctx, "recording failed email", "message", id, "err", ferr)
		}
		w.d.Log.WarnContext(ctx, "email to attendee failed", "message", id, "registration", m.RegistrationID, "kind", m.Kind, "err", err)
		return river.JobCancel(err)
	}
	reg, err := w.d.Store.Registration(ctx, m.RegistrationID)
	if err != nil {
		return err
	}
	if m.Kind == registration.MessageConfirmation && reg.Status == registration.StatusCancelled {
		return fail(errors.New("not sent: the registration was cancelled"))
	}
	if reg.Anonymised() {
		return fail(errors.New(registration.ErasedMessageError))
	}
	msg, err := w.d.render(ctx, reg, m, time.Now())
	if err != nil {
		if permanent(err) || errors.Is(err, email.ErrInvalidMessage) {
			return fail(fmt.Errorf("render %s email: %w", m.Kind, err))
		}
		return err
	}
	if err := w.d.Office.MessageSending(ctx, id); err != nil {
		return err
	}
	ref, err := w.d.Mailer.Send(ctx, msg)
	if err != nil {
		err = fmt.Errorf("send %s email: %w", m.Kind, err)
		if permanent(err) || job.Attempt >= job.MaxAttempts {
			return fail(err)
		}
		w.d.Log.WarnContext(ctx, "email to attendee will be retried", "message", id, "attempt", job.Attempt, "err", err)
		return err
	}
	w.d.eraseLateCopy(ctx, m.RegistrationID, id)
	rctx, cancel := detached(ctx)
	defer cancel()
	if err := w.d.Store.Write(rctx, func(ctx context.Context, tx *sql.Tx) error {
		return w.d.Office.MessageSentTx(ctx, tx, id, ref)
	}); err != nil {
		return fmt.Errorf("record email %s sent: %w", id, err)
	}
	return nil
}

type refundWorker struct {
	river.WorkerDefaults[RefundArgs]
	d Deps
}

// pendingChecks bounds how often a pending refund is asked about again
// (hourly, through a repeat of its request id, which the provider answers
// with the refund as it is now).
const pendingChecks = 72

// Work asks the provider for the refund, outside any transaction, and
// records the outcome. The refund's id is the provider's idempotency key:
// a retry after a crash or a timeout never refunds twice.
func (w *refundWorker) Work(ctx context.Context, job *river.Job[RefundArgs]) error {
	id := job.Args.RefundID
	rf, err := w.d.Office.Refund(ctx, id)
	if errors.Is(err, registration.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("refund %s does not exist", id))
	}
	if err != nil {
		return err
	}
	if rf.State != registration.RefundRequested && rf.State != registration.RefundPending {
		return nil
	}
	reg, err := w.d.Store.Registration(ctx, rf.RegistrationID)
	if err != nil {
		return err
	}
	finish := func(state registration.RefundState, ref, msg string) error {
		rctx, cancel := detached(ctx)
		defer cancel()
		if err := w.d.Office.FinishRefund(rctx, id, state, ref, msg, time.Now().UTC()); err != nil {
			return fmt.Errorf("record refund %s %s: %w", id, state, err)
		}
		return nil
	}
	if w.d.Refunds == nil {
		return finish(registration.RefundFailed, "", "no payment processor is configured to refund with")
	}
	out, err := w.d.Refunds.Refund(ctx, reg.Payment, rf.Amount, rf.Currency, rf.ID)
	var refused *payment.RefundRefusedError
	switch {
	case err == nil && out.Pending:
		if err := finish(registration.RefundPending, out.Reference, ""); err != nil {
			return err
		}
		if snoozes(job.Metadata) < pendingChecks {
			return river.JobSnooze(time.Hour)
		}
		w.d.Log.WarnContext(ctx, "refund still pending at the provider; no longer checked", "refund", id, "reference", out.Reference)
		return nil
	case err == nil:
		w.d.Log.InfoContext(ctx, "refund succeeded", "refund", id, "registration", rf.RegistrationID, "amount", rf.Amount, "reference", out.Reference)
		return finish(registration.RefundSucceeded, out.Reference, "")
	case errors.As(err, &refused):
		w.d.Log.WarnContext(ctx, "refund refused by the provider", "refund", id, "registration", rf.RegistrationID, "err", err)
		return finish(registration.RefundFailed, "", refused.Reason)
	case job.Attempt >= job.MaxAttempts:
		w.d.Log.ErrorContext(ctx, "refund failed: provider unavailable on every attempt", "refund", id, "registration", rf.RegistrationID, "err", err)
		return finish(registration.RefundFailed, "", "the payment provider could not be reached after "+
			strconv.Itoa(job.Attempt)+" attempts; check the payment at the provider before refunding again: "+err.Error())
	}
	w.d.Log.WarnContext(ctx, "refund will be retried", "refund", id, "attempt", job.Attempt, "err", err)
	return err
}

type notifyWorker struct {
	river.WorkerDefaults[NotifyOrganisersArgs]
	d Deps
}

// maxNotices bounds one email's list; the rest wait for the next run.
const maxNotices = 100

// Work sends organisers one email listing every notice not yet sent (each
// recipient gets one email per run), then marks the notices sent.
func (w *notifyWorker) Work(ctx context.Context, job *river.Job[NotifyOrganisersArgs]) error {
	notices, err := w.d.Office.PendingNotices(ctx, maxNotices)
	if err != nil || len(notices) == 0 {
		return err
	}
	to := w.d.NotifyTo
	if len(to) == 0 && w.d.Owners != nil {
		if to, err = w.d.Owners(ctx); err != nil {
			return fmt.Errorf("owners to notify: %w", err)
		}
	}
	if len(to) == 0 {
		w.d.Log.WarnContext(ctx, "organiser notices waiting, but there is nobody to send them to: create an owner account or set REGISTRAR_NOTIFY_EMAIL",
			"notices", len(notices))
		return nil
	}
	n := email.Notices{
		MessageID: fmt.Sprintf("notices-%d-%d", notices[0].ID, notices[len(notices)-1].ID),
		EventName: w.d.Event.Name,
		OfficeURL: w.d.BaseURL + "/admin",
	}
	ids := make([]int64, len(notices))
	for i, nt := range notices {
		ids[i] = nt.ID
		n.Items = append(n.Items, w.item(ctx, nt))
	}
	now := time.Now()
	for i, addr := range to {
		rn := n
		rn.MessageID = n.MessageID + "-" + strconv.Itoa(i+1)
		msg, err := w.d.Renderer.RenderNotices(rn, w.d.from(), email.Address{Email: addr}, now)
		if err != nil {
			return river.JobCancel(fmt.Errorf("render organiser notices: %w", err))
		}
		if _, err := w.d.Mailer.Send(ctx, msg); err != nil {
			return fmt.Errorf("send organiser notices to %s: %w", addr, err)
		}
	}
	rctx, cancel := detached(ctx)
	defer cancel()
	if err := w.d.Office.NoticesSent(rctx, ids, now.UTC()); err != nil {
		return fmt.Errorf("record organiser notices sent: %w", err)
	}
	w.d.Log.InfoContext(ctx, "organisers notified", "notices", len(ids), "recipients", len(to))
	return nil
}

// item describes a notice, linked to where the back office shows it.
func (w *notifyWorker) item(ctx context.Context, nt registration.Notice) email.NoticeItem {
	office := w.d.BaseURL + "/admin"
	it := email.NoticeItem{Detail: nt.Detail, At: nt.CreatedAt, URL: office + "/incidents"}
	var reg registration.Registration
	found := false
	if registration.ValidID(nt.RegistrationID) {
		r, err := w.d.Store.Registration(ctx, nt.RegistrationID)
		if err == nil {
			reg, found = r, true
			it.URL = office + "/registrations/" + nt.RegistrationID
		}
	}
	who := ""
	if found {
		who = ": " + strings.TrimSpace(reg.FirstName+" "+reg.LastName)
	}
	switch nt.Kind {
	case registration.NoticeNeedsAttention:
		it.Title = "A registration needs attention" + who
		if it.Detail == "" {
			it.Detail = "A step of its pipeline failed after every retry; retry it once the cause is fixed."
		}
	case registration.NoticeRefundFailed:
		it.Title = "A refund failed" + who
	case registration.NoticePaymentUnresolved:
		it.Title = "A payment's outcome stayed unknown"
		if !found {
			it.URL = office + "/incidents"
		}
	default:
		it.Title = string(nt.Kind) + who
	}
	return it
}
