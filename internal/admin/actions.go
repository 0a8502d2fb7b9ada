package admin

import (
	"context"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/registration"
)

// Actor is who asks for an action, and from where, for the audit log.
type Actor struct {
	AccountID int64
	Email     string
	Role      Role
	Address   string
}

// Cancellation is how an organiser cancels a registration.
type Cancellation struct {
	// Refund is how much to give back in minor units: 0 for nothing; at
	// most what is left to refund.
	Refund int64
	// Notify emails the attendee that the registration was cancelled.
	Notify bool
	// Key makes the cancellation's refund and email idempotent (the form's
	// one-time key).
	Key    string
	Reason string
}

// Actions are the back office's writes. Each is idempotent (a repeated
// key, or an action already done, changes nothing more), records an audit
// entry with the actor, and carries out provider calls in jobs, never
// inside a database transaction. Errors the organiser can act on are
// *registration.Error with CodeValidationFailed or CodeNotFound.
type Actions interface {
	// Retry re-runs every failed step of a registration.
	Retry(ctx context.Context, by Actor, id string) error
	// Resend emails the confirmation again, to to ("" for the attendee's
	// address); key is the form's one-time key.
	Resend(ctx context.Context, by Actor, id, to, key string) error
	// Edit corrects the attendee's name, email and company.
	Edit(ctx context.Context, by Actor, id string, e registration.AttendeeEdit) error
	// Cancel cancels a registration: its seat goes back on sale.
	Cancel(ctx context.Context, by Actor, id string, c Cancellation) error
	// Refund gives amount (minor units) back without cancelling; key is
	// the form's one-time key and becomes the refund's id.
	Refund(ctx context.Context, by Actor, id string, amount int64, reason, key string) error
	// Erase erases the attendee's personal data for good (amount, payment
	// reference, ticket and dates stay for the accounts);
	// registration.ErrAlreadyAnonymised when it was erased before.
	Erase(ctx context.Context, by Actor, id string) error
}

// Previewer renders the email a message was sent as (or would be sent as
// now), for the back office's preview.
type Previewer interface {
	Preview(ctx context.Context, r registration.Registration, m registration.Message) (email.Message, error)
}
