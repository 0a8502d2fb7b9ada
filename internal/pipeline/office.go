package pipeline

import (
	"context"
	"database/sql"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// OfficeStore is what the back office's actions and their jobs need from
// storage. Every method owns its transaction; then, when given, runs inside
// it (to insert the jobs that carry the action out), so an action, its
// audit entry and its jobs commit together or not at all.
type OfficeStore interface {
	// EditAttendee corrects an attendee's details and returns the
	// registration as it was before.
	EditAttendee(ctx context.Context, id string, e registration.AttendeeEdit, audit registration.AuditEntry) (registration.Registration, error)
	// CancelRegistration marks a registration cancelled and puts its seat
	// back on sale; with refund non-nil it records that refund as
	// requested (see RequestRefund). ErrAlreadyCancelled when it was.
	CancelRegistration(ctx context.Context, id string, refund *registration.Refund, audit registration.AuditEntry, then registration.TxFunc) error
	// RequestRefund records a refund as requested, reserving its amount:
	// ErrRefundExceedsCharge when the refunds not failed would exceed the
	// charge (checked under a lock on the registration, so concurrent
	// requests cannot both pass); ErrNothingToRefund for a free
	// registration; ErrDuplicate (nothing written) when a refund with
	// that id exists.
	RequestRefund(ctx context.Context, r registration.Refund, audit registration.AuditEntry, then registration.TxFunc) error
	Refund(ctx context.Context, id string) (registration.Refund, error)
	// FinishRefund records a refund's outcome, from requested or pending:
	// succeeded adds it to the registration's refunded amount; failed
	// frees its reservation and adds a refund_failed notice; pending
	// keeps the reservation.
	FinishRefund(ctx context.Context, id string, state registration.RefundState, reference, errMsg string, at time.Time) error
	// RetrySteps turns a registration's failed steps back to retrying
	// and the registration from needs_attention to processing; then gets
	// the steps it changed. None failed: nothing changes, and then is not
	// called.
	RetrySteps(ctx context.Context, id string, audit registration.AuditEntry,
		then func(ctx context.Context, tx *sql.Tx, steps []registration.StepName) error) ([]registration.StepName, error)
	// QueueMessage records an email to an attendee as queued;
	// ErrDuplicate (nothing written) when one with its id exists.
	QueueMessage(ctx context.Context, m registration.Message, audit registration.AuditEntry, then registration.TxFunc) error
	// QueueMessageTx records an email as queued inside tx (another
	// action's transaction); ErrDuplicate when one with its id exists.
	QueueMessageTx(ctx context.Context, tx *sql.Tx, m registration.Message) error
	Message(ctx context.Context, id string) (registration.Message, error)
	// MessageSending records that the email is being handed to the mailer.
	MessageSending(ctx context.Context, id string) error
	MessageSentTx(ctx context.Context, tx *sql.Tx, id, reference string) error
	MessageFailed(ctx context.Context, id, errMsg string) error
	// PendingNotices returns up to limit notices not yet sent, oldest first.
	PendingNotices(ctx context.Context, limit int) ([]registration.Notice, error)
	NoticesSent(ctx context.Context, ids []int64, at time.Time) error
	// Audit records an entry on its own (an action of the system).
	Audit(ctx context.Context, e registration.AuditEntry) error
	// AnonymiseRegistration erases the attendee's personal data from every
	// row that holds it: the registration (names, email, address lines and
	// company replaced; anonymised_at set), its order, its mailing-list
	// entry (deleted), its emails' addresses (those not sent yet fail), its
	// steps' errors (an email or mailing-list step not done is skipped with
	// registration.ErasedStepNotice), and the free text of its audit
	// entries, refunds, payment incidents and notices. It records audit
	// (none when its Action is "") and runs then in the same transaction,
	// and returns the registration as it was and the ids of its emails.
	// ErrAlreadyAnonymised (nothing written) when it was erased before.
	AnonymiseRegistration(ctx context.Context, id string, audit registration.AuditEntry, then registration.TxFunc) (registration.Registration, []string, error)
	// RegistrationsToAnonymise lists up to limit registrations of the
	// event whose personal data is still kept.
	RegistrationsToAnonymise(ctx context.Context, eventID string, limit int) ([]string, error)
}
