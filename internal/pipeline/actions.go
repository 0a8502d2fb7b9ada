package pipeline

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// Office carries out the back office's actions: each records what it does
// and its audit entry, and inserts the jobs that finish it (provider calls,
// emails) in the same transaction. Providers are called by those jobs, never
// inside a transaction.
type Office struct {
	p   *Pipeline
	now func() time.Time
}

var (
	_ admin.Actions   = (*Office)(nil)
	_ admin.Previewer = (*Office)(nil)
)

// Office returns the back office's actions over the pipeline's Deps.Office
// store; nil when the pipeline has none.
func (p *Pipeline) Office() *Office {
	if p.deps.Office == nil {
		return nil
	}
	return &Office{p: p, now: time.Now}
}

// Audit action names.
const (
	ActionRetry  = "retry"
	ActionResend = "resend"
	ActionEdit   = "edit"
	ActionCancel = "cancel"
	ActionRefund = "refund"
)

func notFound() error {
	return &registration.Error{Code: registration.CodeNotFound, Message: "There is no registration with this id."}
}

func invalid(field, msg string) error {
	return &registration.Error{Code: registration.CodeValidationFailed, Message: msg, Fields: map[string]string{field: msg}}
}

// registration reads a registration for an action: unknown ids are a
// CodeNotFound error.
func (o *Office) registration(ctx context.Context, id string) (registration.Registration, error) {
	if !registration.ValidID(id) {
		return registration.Registration{}, notFound()
	}
	reg, err := o.p.deps.Store.Registration(ctx, id)
	if errors.Is(err, registration.ErrNotFound) {
		return registration.Registration{}, notFound()
	}
	if err != nil {
		return registration.Registration{}, fmt.Errorf("read registration %s: %w", id, err)
	}
	return reg, nil
}

func (o *Office) audit(by admin.Actor, action, id, detail string) registration.AuditEntry {
	return registration.AuditEntry{At: o.now().UTC(), Actor: by.Email, Action: action, RegistrationID: id,
		Detail: detail, Address: by.Address}
}

// insert inserts jobs in tx.
func (o *Office) insert(ctx context.Context, tx *sql.Tx, jobs ...river.InsertManyParams) error {
	if len(jobs) == 0 {
		return nil
	}
	if _, err := o.p.client.InsertManyTx(ctx, tx, stampAll(ctx, jobs)); err != nil {
		return fmt.Errorf("insert %d jobs: %w", len(jobs), err)
	}
	return nil
}

var cleanKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// keyID turns a form's one-time key into an id: a refund's (and so its
// PayPal-Request-Id) and, with a prefix, an email's (its Message-ID). The
// same key always gives the same id, so a repeated submission is found
// again; a key that is not made of letters, digits, '-' and '_' is hashed.
// Without a key, a new id is made.
func keyID(key string) (string, error) {
	switch {
	case key == "":
		return registration.NewID()
	case cleanKey.MatchString(key):
		return key, nil
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16]), nil
}

// Message ids: a resent confirmation is "resend-" + the key's id; a
// cancellation notice "cancel-" + the key's id, which is also the id of the
// cancellation's refund, if any (its email tells the amount).
const (
	resendPrefix = "resend-"
	cancelPrefix = "cancel-"
)

// Retry re-runs every failed step of a registration: it goes from
// needs_attention back to processing and completes when the steps succeed.
// Nothing failed: nothing changes.
func (o *Office) Retry(ctx context.Context, by admin.Actor, id string) error {
	reg, err := o.registration(ctx, id)
	if err != nil {
		return err
	}
	var failed []string
	for _, st := range reg.Steps {
		if st.Status == registration.StepFailed {
			failed = append(failed, string(st.Name))
		}
	}
	if len(failed) == 0 || reg.Status == registration.StatusCancelled {
		return nil
	}
	audit := o.audit(by, ActionRetry, id, "retried "+strings.Join(failed, ", "))
	// The new jobs are not unique by their arguments: River's SQLite driver
	// keeps a job's unique key in every state, so the failed step's
	// discarded or cancelled job would swallow them. RetrySteps returns a
	// step once, under the store's lock, so a step never gets two.
	_, err = o.p.deps.Office.RetrySteps(ctx, id, audit, func(ctx context.Context, tx *sql.Tx, steps []registration.StepName) error {
		jobs := make([]river.InsertManyParams, len(steps))
		for i, st := range steps {
			a, ok := findActivity(activityTable(), st)
			if !ok {
				return fmt.Errorf("step %q has no activity to run it", st)
			}
			jobs[i] = a.job(id, false)
		}
		return o.insert(ctx, tx, jobs...)
	})
	if errors.Is(err, registration.ErrNotFound) {
		return notFound()
	}
	if err != nil {
		return fmt.Errorf("retry %s: %w", id, err)
	}
	return nil
}

// Resend emails the confirmation again, to to ("" for the attendee's
// address).
func (o *Office) Resend(ctx context.Context, by admin.Actor, id, to, key string) error {
	reg, err := o.registration(ctx, id)
	if err != nil {
		return err
	}
	if reg.Status == registration.StatusCancelled {
		return invalid("to", "This registration is cancelled: its confirmation is no longer valid.")
	}
	if reg.Anonymised() {
		return invalid("to", msgErased)
	}
	to = strings.TrimSpace(to)
	if to == "" {
		to = reg.Email
	} else if msg := registration.CheckEmail(to); msg != "" {
		return invalid("to", msg)
	}
	kid, err := keyID(key)
	if err != nil {
		return err
	}
	now := o.now().UTC()
	m := registration.Message{ID: resendPrefix + kid, RegistrationID: id, Kind: registration.MessageConfirmation,
		To: to, State: registration.MessageQueued, RequestedBy: by.Email, CreatedAt: now, UpdatedAt: now}
	return o.queueMessage(ctx, m, o.audit(by, ActionResend, id, "confirmation resent to "+to))
}

func (o *Office) queueMessage(ctx context.Context, m registration.Message, audit registration.AuditEntry) error {
	err := o.p.deps.Office.QueueMessage(ctx, m, audit, func(ctx context.Context, tx *sql.Tx) error {
		return o.insert(ctx, tx, river.InsertManyParams{Args: SendMessageArgs{MessageID: m.ID}})
	})
	switch {
	case errors.Is(err, registration.ErrDuplicate):
		return nil // the same submission again: queued already
	case errors.Is(err, registration.ErrNotFound):
		return notFound()
	case err != nil:
		return fmt.Errorf("queue %s email %s: %w", m.Kind, m.ID, err)
	}
	return nil
}

// Edit corrects the attendee's name, email and company, with the rules of
// the registration form.
func (o *Office) Edit(ctx context.Context, by admin.Actor, id string, e registration.AttendeeEdit) error {
	e.Normalize()
	if fields := e.Validate(); len(fields) > 0 {
		return &registration.Error{Code: registration.CodeValidationFailed, Message: "Some fields need attention.", Fields: fields}
	}
	reg, err := o.registration(ctx, id)
	if err != nil {
		return err
	}
	if reg.Anonymised() {
		return &registration.Error{Code: registration.CodeValidationFailed, Message: msgErased}
	}
	var changes []string
	for _, f := range []struct{ name, old, new string }{
		{"first name", reg.FirstName, e.FirstName},
		{"last name", reg.LastName, e.LastName},
		{"email", reg.Email, e.Email},
		{"company", reg.Company, e.Company},
	} {
		if f.old != f.new {
			changes = append(changes, fmt.Sprintf("%s %q → %q", f.name, f.old, f.new))
		}
	}
	if len(changes) == 0 {
		return nil
	}
	_, err = o.p.deps.Office.EditAttendee(ctx, id, e, o.audit(by, ActionEdit, id, strings.Join(changes, "; ")))
	if errors.Is(err, registration.ErrNotFound) {
		return notFound()
	}
	if err != nil {
		return fmt.Errorf("edit %s: %w", id, err)
	}
	return nil
}

// Cancel cancels a registration, putting its seat back on sale, with an
// optional refund and cancellation email. A cancelled registration stays as
// it is.
func (o *Office) Cancel(ctx context.Context, by admin.Actor, id string, c admin.Cancellation) error {
	if c.Refund < 0 {
		return invalid("amount", "The refund cannot be negative.")
	}
	reg, err := o.registration(ctx, id)
	if err != nil {
		return err
	}
	if reg.Status == registration.StatusCancelled {
		return nil
	}
	if c.Refund > 0 && reg.Amount == 0 {
		return invalid("amount", msgFree)
	}
	if c.Refund > reg.Amount-reg.Refunded {
		return invalid("amount", o.exceeds(reg))
	}
	kid, err := keyID(c.Key)
	if err != nil {
		return err
	}
	now := o.now().UTC()
	detail := "cancelled"
	var refund *registration.Refund
	if c.Refund > 0 {
		refund = &registration.Refund{ID: kid, RegistrationID: id, Amount: c.Refund, Currency: reg.Currency,
			State: registration.RefundRequested, Reason: c.Reason, RequestedBy: by.Email, CreatedAt: now, UpdatedAt: now}
		detail += fmt.Sprintf("; refund of %s %s of %s %s requested", event.FormatAmount(c.Refund, reg.Currency),
			reg.Currency, event.FormatAmount(reg.Amount, reg.Currency), reg.Currency)
	} else {
		detail += "; no refund"
	}
	if c.Notify {
		detail += "; attendee notified"
	}
	if c.Reason != "" {
		detail += "; reason: " + c.Reason
	}
	// The cancellation email is queued in the cancellation's transaction:
	// it is sent if and only if the cancellation happened.
	var notice *registration.Message
	if c.Notify {
		notice = &registration.Message{ID: cancelPrefix + kid, RegistrationID: id, Kind: registration.MessageCancellation,
			To: reg.Email, State: registration.MessageQueued, RequestedBy: by.Email, CreatedAt: now, UpdatedAt: now}
	}
	err = o.p.deps.Office.CancelRegistration(ctx, id, refund, o.audit(by, ActionCancel, id, detail),
		func(ctx context.Context, tx *sql.Tx) error {
			var jobs []river.InsertManyParams
			if refund != nil {
				jobs = append(jobs, river.InsertManyParams{Args: RefundArgs{RefundID: refund.ID}})
			}
			if notice != nil {
				if err := o.p.deps.Office.QueueMessageTx(ctx, tx, *notice); err != nil {
					return err
				}
				jobs = append(jobs, river.InsertManyParams{Args: SendMessageArgs{MessageID: notice.ID}})
			}
			if len(jobs) == 0 {
				return nil
			}
			return o.insert(ctx, tx, jobs...)
		})
	if errors.Is(err, registration.ErrAlreadyCancelled) {
		return nil // cancelled meanwhile: nothing more to do
	}
	return o.refundOutcome(err, reg, "cancel")
}

// Refund gives amount (minor units) back without cancelling. Refunds never
// add up to more than the charge, however many organisers ask at once: the
// store reserves each refund's amount under a lock on the registration.
func (o *Office) Refund(ctx context.Context, by admin.Actor, id string, amount int64, reason, key string) error {
	if amount <= 0 {
		return invalid("amount", "Enter an amount greater than zero.")
	}
	reg, err := o.registration(ctx, id)
	if err != nil {
		return err
	}
	if reg.Amount == 0 {
		return invalid("amount", msgFree)
	}
	if amount > reg.Amount-reg.Refunded {
		return invalid("amount", o.exceeds(reg))
	}
	kid, err := keyID(key)
	if err != nil {
		return err
	}
	now := o.now().UTC()
	r := registration.Refund{ID: kid, RegistrationID: id, Amount: amount, Currency: reg.Currency,
		State: registration.RefundRequested, Reason: reason, RequestedBy: by.Email, CreatedAt: now, UpdatedAt: now}
	detail := fmt.Sprintf("refund of %s %s of %s %s requested", event.FormatAmount(amount, reg.Currency), reg.Currency,
		event.FormatAmount(reg.Amount, reg.Currency), reg.Currency)
	if reason != "" {
		detail += "; reason: " + reason
	}
	err = o.p.deps.Office.RequestRefund(ctx, r, o.audit(by, ActionRefund, id, detail), func(ctx context.Context, tx *sql.Tx) error {
		return o.insert(ctx, tx, river.InsertManyParams{Args: RefundArgs{RefundID: r.ID}})
	})
	return o.refundOutcome(err, reg, "refund")
}

// refundOutcome maps the store's answer to an action that records a refund
// (a refund, a cancellation) to what the organiser is told.
func (o *Office) refundOutcome(err error, reg registration.Registration, action string) error {
	switch {
	case errors.Is(err, registration.ErrDuplicate):
		return nil // the same submission again: done already
	case errors.Is(err, registration.ErrNotFound):
		return notFound()
	case errors.Is(err, registration.ErrRefundExceedsCharge):
		return invalid("amount", o.exceeds(reg))
	case errors.Is(err, registration.ErrNothingToRefund):
		return invalid("amount", msgFree)
	case err != nil:
		return fmt.Errorf("%s %s: %w", action, reg.ID, err)
	}
	return nil
}

// msgErased answers an action that would put personal data back into, or
// send email for, an erased registration.
const msgErased = "This registration's personal data was erased: it can no longer be emailed or edited."

// msgFree answers a refund of a registration that took no money.
const msgFree = "This registration was free: there is nothing to refund."

func (o *Office) exceeds(reg registration.Registration) string {
	return fmt.Sprintf("Refunds would add up to more than the %s %s charged (refunds requested or done count too).",
		event.FormatAmount(reg.Amount, reg.Currency), reg.Currency)
}

// Preview renders the email a message was sent as, or would be sent as now.
func (o *Office) Preview(ctx context.Context, r registration.Registration, m registration.Message) (email.Message, error) {
	return o.p.deps.render(ctx, r, m, o.now())
}

// render renders an email to an attendee.
func (d Deps) render(ctx context.Context, reg registration.Registration, m registration.Message, now time.Time) (email.Message, error) {
	to := m.To
	if to == "" {
		to = reg.Email
	}
	switch m.Kind {
	case registration.MessageConfirmation, "":
		return d.renderConfirmation(reg, m.ID, to, now)
	case registration.MessageCancellation:
		ticket, _ := d.Event.Ticket(reg.TicketID)
		c := email.Cancellation{
			MessageID:         m.ID,
			RegistrationID:    reg.ID,
			AttendeeFirstName: reg.FirstName,
			AttendeeLastName:  reg.LastName,
			AttendeeEmail:     to,
			TicketName:        ticketName(ticket, reg.TicketID),
			EventName:         d.Event.Name,
			EventStart:        d.Event.StartsAt,
			CardBrand:         reg.Payment.Brand,
			CardLast4:         reg.Payment.Last4,
			StatusURL:         d.BaseURL + "/registrations/" + reg.ID,
		}
		if rid, ok := strings.CutPrefix(m.ID, cancelPrefix); ok && d.Office != nil {
			rf, err := d.Office.Refund(ctx, rid)
			switch {
			case err == nil && rf.RegistrationID == reg.ID && rf.State != registration.RefundFailed:
				c.Refund = event.FormatAmount(rf.Amount, rf.Currency) + " " + rf.Currency
			case err != nil && !errors.Is(err, registration.ErrNotFound):
				return email.Message{}, fmt.Errorf("read the cancellation's refund: %w", err)
			}
		}
		msg, err := d.Renderer.RenderCancellation(c, d.from(), now)
		if err == nil && d.Event.Organiser.Email != "" {
			// Questions about a cancellation go to the organiser.
			msg.ReplyTo = email.Address{Name: d.Event.Organiser.Name, Email: d.Event.Organiser.Email}
		}
		return msg, err
	}
	return email.Message{}, &PermanentError{Err: fmt.Errorf("unknown kind of email %q", m.Kind)}
}
