package registration

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// StatusCancelled is a registration an organiser cancelled: its seat is on
// sale again. It is terminal.
const StatusCancelled Status = "cancelled"

// AttendeeEdit is an organiser's correction of an attendee's details.
type AttendeeEdit struct {
	FirstName, LastName, Email, Company string
}

// RefundState is where a refund stands. A refund is recorded as requested
// before the provider is called, and its outcome after.
type RefundState string

// Refund states.
const (
	RefundRequested RefundState = "requested" // recorded; the provider has not answered yet
	RefundPending   RefundState = "pending"   // the provider accepted it and will settle it later
	RefundSucceeded RefundState = "succeeded"
	RefundFailed    RefundState = "failed"
)

// Refund gives some or all of a registration's charge back.
type Refund struct {
	ID             string // also the provider's idempotency key (PayPal-Request-Id)
	RegistrationID string
	Amount         int64 // minor units, > 0
	Currency       string
	State          RefundState
	Reference      string // the provider's refund id, once known
	Error          string // why it failed, for the back office
	Reason         string // the organiser's note
	RequestedBy    string // the organiser's email, or "system"
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// MessageKind is what an email to an attendee is about.
type MessageKind string

// Message kinds.
const (
	MessageConfirmation MessageKind = "confirmation"
	MessageCancellation MessageKind = "cancellation"
)

// MessageState is where an email to an attendee stands.
type MessageState string

// Message states.
const (
	MessageQueued  MessageState = "queued"
	MessageSending MessageState = "sending"
	MessageSent    MessageState = "sent"
	MessageFailed  MessageState = "failed"
)

// Message is one email to an attendee: the pipeline's first confirmation
// (ID ""), or one an organiser asked for (a resent confirmation, a
// cancellation notice).
type Message struct {
	ID             string
	RegistrationID string
	Kind           MessageKind
	To             string
	State          MessageState
	Reference      string // the mailer's reference
	Error          string
	RequestedBy    string // "" for the pipeline's confirmation
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// NoticeKind is what organisers are told about.
type NoticeKind string

// Notice kinds.
const (
	NoticeNeedsAttention    NoticeKind = "needs_attention"    // a step exhausted its retries
	NoticeRefundFailed      NoticeKind = "refund_failed"      // a refund (ours or an automatic one) failed
	NoticePaymentUnresolved NoticeKind = "payment_unresolved" // a charge's outcome stayed unknown
)

// Notice is one thing organisers must be told, sent in batches.
type Notice struct {
	ID             int64
	Kind           NoticeKind
	RegistrationID string // the registration or payment attempt; may be ""
	Detail         string
	CreatedAt      time.Time
}

// AuditEntry is one back-office action or login: who, when, what, from where.
type AuditEntry struct {
	ID             int64
	At             time.Time
	Actor          string // the organiser's email, or "system"
	Action         string // e.g. "login", "login_failed", "refund", "cancel"
	RegistrationID string // "" when the action concerns no registration
	Detail         string // what changed, for people (old and new values)
	Address        string // the client address the action came from
}

// TxFunc runs inside a store's transaction, for example to insert the jobs
// that carry out what the transaction records.
type TxFunc func(ctx context.Context, tx *sql.Tx) error

// Errors of the back-office writes.
var (
	ErrAlreadyCancelled    = errors.New("registration is already cancelled")
	ErrRefundExceedsCharge = errors.New("refunds would add up to more than the charge")
	ErrNothingToRefund     = errors.New("registration was not charged")
	ErrDuplicate           = errors.New("already recorded")
)
