// Package registration is the heart of registrar: what a registration is, how
// an attempt becomes a paid registration, and the errors attendees can see.
package registration

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/payment"
)

// Status of a registration.
type Status string

// Registration statuses, as the API reports them.
const (
	StatusPaid           Status = "paid"
	StatusProcessing     Status = "processing"
	StatusCompleted      Status = "completed"
	StatusNeedsAttention Status = "needs_attention"
)

// Terminal reports whether nothing more will happen without an operator.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusNeedsAttention || s == StatusCancelled
}

// StepName names one of the three activities of the pipeline.
type StepName string

// The three activities, in display order.
const (
	StepSaveOrder        StepName = "save_order"
	StepSendConfirmation StepName = "send_confirmation"
	StepAddToMailingList StepName = "add_to_mailing_list"
)

// Steps lists every activity in display order.
var Steps = [...]StepName{StepSaveOrder, StepSendConfirmation, StepAddToMailingList}

// StepStatus is the state of one activity.
type StepStatus string

// Step statuses, as the API reports them.
const (
	StepPending   StepStatus = "pending"
	StepRunning   StepStatus = "running"
	StepRetrying  StepStatus = "retrying"
	StepSucceeded StepStatus = "succeeded"
	StepFailed    StepStatus = "failed"
	StepSkipped   StepStatus = "skipped"
)

// Done reports whether the step counts as finished for fan-in.
func (s StepStatus) Done() bool { return s == StepSucceeded || s == StepSkipped }

// Step is one activity's progress.
type Step struct {
	Name      StepName
	Status    StepStatus
	Attempts  int
	LastError string
}

// Registration is a paid (or free) registration. It never holds card data
// beyond brand and last four digits.
type Registration struct {
	ID         string
	EventID    string
	TicketID   string
	Status     Status
	Amount     int64 // minor units
	Currency   string
	FirstName  string
	LastName   string
	Email      string
	Company    string
	Newsletter bool
	// NewsletterConsentedAt is when the attendee consented (zero without).
	NewsletterConsentedAt time.Time
	// NewsletterConsentText is the consent text the attendee agreed to:
	// NewsletterConsentText at the time ("" without consent).
	NewsletterConsentText string
	Payment               payment.Charge // Provider "" for a free ticket
	// Billing is the cardholder's address (empty for a free ticket).
	Billing payment.BillingAddress
	// Refunded is the sum of successful refunds, in minor units.
	Refunded int64
	// CancelledAt is when an organiser cancelled it (zero otherwise).
	CancelledAt time.Time
	// AnonymisedAt is when the attendee's personal data was erased (zero
	// while it is kept).
	AnonymisedAt time.Time
	Steps        []Step
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Anonymised reports whether the attendee's personal data was erased.
func (r Registration) Anonymised() bool { return !r.AnonymisedAt.IsZero() }

// NewsletterConsentText is the newsletter box's label on the form, and the
// text recorded with every consent given on the form or through the API's
// "newsletter": true. Changing it changes what later consents record;
// earlier ones keep the text they were given under.
const NewsletterConsentText = "Email me news about this conference"

// Step returns the named step.
func (r Registration) Step(name StepName) (Step, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// Attempt is one registration attempt: a seat held for the duration of the
// charge, and the idempotency key reserved for it.
type Attempt struct {
	ID             string // becomes the registration id; also the payment request id
	EventID        string
	TicketID       string
	IdempotencyKey string // "" when the client sent none
	RequestHash    string
	// Email is the attendee's address as compared for MaxPerEmail: its
	// EmailKey.
	Email string
	// MaxPerEmail is how many registrations (and attempts holding a seat)
	// one email address may hold for the ticket; 0 for no limit. StartAttempt
	// refuses with ErrEmailLimit beyond it.
	MaxPerEmail int
	CreatedAt   time.Time
	// ResolveAfter is when an attempt still holding its seat counts as
	// abandoned (its process died, or its charge's outcome is unknown) and
	// is resolved by asking the payment provider.
	ResolveAfter time.Time
	// Draft is the registration the attempt becomes once paid: everything
	// but the payment. It never holds card data.
	Draft Registration
}

// EmailKey is an email address as limits per address compare it: trimmed
// and lower-cased (in every script, not only ASCII). Stores keep it beside
// the address and look registrations up by it.
func EmailKey(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// Availability is one ticket's seats at a moment.
type Availability struct {
	Capacity int
	Taken    int // paid registrations and seats held by attempts in progress
	Held     int // seats held by attempts in progress (or left by a dead process)
}

// Left is how many seats are free now.
func (a Availability) Left() int { return max(a.Capacity-a.Taken, 0) }

// SoldOut reports whether every seat is paid (the paid ones fill the
// capacity, which may have been lowered below them): a final answer. With
// no seat free but some only held, the ticket may come back on sale.
func (a Availability) SoldOut() bool { return a.Taken-a.Held >= a.Capacity }

// IncidentKind names a payment event an operator must be able to see.
type IncidentKind string

// Incident kinds (invariant 7).
const (
	IncidentRefunded           IncidentKind = "refunded"             // charged, could not register, money returned
	IncidentRefundFailed       IncidentKind = "refund_failed"        // charged, could not register, refund failed: act
	IncidentResolvedCharged    IncidentKind = "resolved_charged"     // outcome was unknown; it was paid and proceeds
	IncidentResolvedNotCharged IncidentKind = "resolved_not_charged" // outcome was unknown; nothing was taken
	IncidentUnresolved         IncidentKind = "unresolved"           // outcome still unknown after a long time: act
)

// Incident is one payment event recorded for operators.
type Incident struct {
	ID        int64 // set when read back
	AttemptID string
	Kind      IncidentKind
	Provider  string
	Reference string
	Amount    int64
	Currency  string
	Detail    string
	CreatedAt time.Time
}

// Outcome is the stored result of an attempt, replayed for a repeated
// idempotency key: a registration id, or an error code and message.
type Outcome struct {
	RegistrationID string
	Code           string
	Message        string
}

// Errors the store reports.
var (
	ErrNotFound = errors.New("not found")
	// ErrSoldOut: every seat of the ticket is paid; final.
	ErrSoldOut = errors.New("sold out")
	// ErrSeatsHeld: no seat is free, but some are only held by attempts in
	// progress; nothing is stored under the key. The attendee is told
	// sold_out either way, so it matches ErrSoldOut too (errors.Is): test for
	// ErrSeatsHeld first to tell an answer that may change soon.
	ErrSeatsHeld = fmt.Errorf("no seat free; some are held by attempts in progress: %w", ErrSoldOut)
	// ErrEmailLimit: the email address already holds the ticket's
	// MaxPerEmail registrations; nothing is stored under the key.
	ErrEmailLimit         = errors.New("email address holds the most registrations allowed for this ticket")
	ErrKeyInProgress      = errors.New("idempotency key in progress")
	ErrKeyReused          = errors.New("idempotency key reused with another request")
	ErrAttemptUnavailable = errors.New("attempt no longer holds a seat")
	ErrAlreadyRegistered  = errors.New("attempt already became a registration")
)
