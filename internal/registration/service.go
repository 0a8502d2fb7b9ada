package registration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
)

// EnqueueFunc enqueues the pipeline of a registration inside the transaction
// that stores it, so a paid registration and its job commit together.
type EnqueueFunc func(ctx context.Context, tx *sql.Tx, registrationID string) error

// Store keeps registrations, held seats and idempotency keys.
type Store interface {
	// StartAttempt reserves the attempt's idempotency key (if any) and holds a
	// seat. It returns the stored outcome when the key was already settled;
	// ErrKeyInProgress or ErrKeyReused for a conflicting key; ErrSoldOut
	// (with soldOut stored under the key) when no seat is left.
	StartAttempt(ctx context.Context, a Attempt, soldOut Outcome) (*Outcome, error)
	// FailAttempt releases the held seat. A non-nil outcome is stored under
	// the key for replay; nil forgets the key so the client may retry.
	FailAttempt(ctx context.Context, a Attempt, o *Outcome) error
	// CompleteAttempt turns the held seat into a registration, stores its
	// steps, settles the key and enqueues the pipeline, in one transaction.
	CompleteAttempt(ctx context.Context, a Attempt, r Registration, enqueue EnqueueFunc) error
	// Registration returns one registration with its steps, or ErrNotFound.
	Registration(ctx context.Context, id string) (Registration, error)
}

// Service takes registrations: the PaymentAPI of the original design.
type Service struct {
	store         Store
	processor     payment.Processor
	enqueue       EnqueueFunc
	event         *event.Event
	log           *slog.Logger
	now           func() time.Time
	chargeTimeout time.Duration
	holdTTL       time.Duration
}

// NewService returns a Service for one event.
func NewService(store Store, processor payment.Processor, enqueue EnqueueFunc, ev *event.Event, log *slog.Logger) *Service {
	return &Service{
		store:         store,
		processor:     processor,
		enqueue:       enqueue,
		event:         ev,
		log:           log,
		now:           time.Now,
		chargeTimeout: 30 * time.Second,
		holdTTL:       10 * time.Minute,
	}
}

// Event returns the event the service registers for.
func (s *Service) Event() *event.Event { return s.event }

// Register validates a request, holds a seat, charges the card and stores the
// paid registration with its queued pipeline. key is the client's
// idempotency key ("" for none). It returns the registration id, or an
// *Error whose code is one of the API's.
func (s *Service) Register(ctx context.Context, req Request, key string) (string, error) {
	req.Normalize()
	now := s.now().UTC()
	if fields := req.Validate(s.event, now); len(fields) > 0 {
		return "", &Error{Code: CodeValidationFailed, Message: "Some fields need attention.", Fields: fields}
	}
	ticket, _ := s.event.Ticket(req.Ticket)
	id, err := NewID()
	if err != nil {
		return "", &Error{Code: CodeInternal, Message: "Something went wrong on our side. Please try again.", Err: err}
	}
	a := Attempt{
		ID:             id,
		EventID:        s.event.ID,
		TicketID:       ticket.ID,
		IdempotencyKey: key,
		RequestHash:    req.Hash(),
		CreatedAt:      now,
		ExpiresAt:      now.Add(s.holdTTL),
	}
	// From here on the attempt runs to its end even if the client hangs up:
	// abandoning it half-way could leave a charge without a registration.
	ctx = context.WithoutCancel(ctx)
	soldOut := Outcome{Code: CodeSoldOut, Message: fmt.Sprintf("The %s ticket is sold out.", ticket.Name)}
	replay, err := s.store.StartAttempt(ctx, a, soldOut)
	switch {
	case replay != nil:
		return replayOutcome(*replay)
	case errors.Is(err, ErrSoldOut):
		return "", &Error{Code: soldOut.Code, Message: soldOut.Message}
	case errors.Is(err, ErrKeyInProgress):
		return "", &Error{Code: CodeIdempotencyInProgress, Message: "A request with this Idempotency-Key is being processed; retry shortly."}
	case errors.Is(err, ErrKeyReused):
		return "", &Error{Code: CodeIdempotencyKeyReused, Message: "This Idempotency-Key was used with a different request."}
	case err != nil:
		return "", &Error{Code: CodeInternal, Message: "Something went wrong on our side. Please try again.", Err: err}
	}

	var charge payment.Charge
	if ticket.Price > 0 {
		cctx, cancel := context.WithTimeout(ctx, s.chargeTimeout)
		charge, err = s.processor.Charge(cctx, payment.ChargeRequest{
			RequestID:   a.ID,
			Amount:      ticket.Price,
			Currency:    s.event.Currency,
			Description: s.event.Name + " — " + ticket.Name,
			Card:        req.Card(),
			Address:     billingAddress(req.Billing.Address),
			Email:       req.Attendee.Email,
		})
		cancel()
		if err != nil {
			return "", s.chargeFailed(ctx, a, err)
		}
	}

	reg := Registration{
		ID:         a.ID,
		EventID:    s.event.ID,
		TicketID:   ticket.ID,
		Status:     StatusPaid,
		Amount:     ticket.Price,
		Currency:   s.event.Currency,
		FirstName:  req.Attendee.FirstName,
		LastName:   req.Attendee.LastName,
		Email:      req.Attendee.Email,
		Company:    req.Attendee.Company,
		Newsletter: req.Newsletter,
		Payment:    charge,
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	for _, name := range Steps {
		st := StepPending
		if name == StepAddToMailingList && !req.Newsletter {
			st = StepSkipped
		}
		reg.Steps = append(reg.Steps, Step{Name: name, Status: st})
	}
	if err := s.store.CompleteAttempt(ctx, a, reg, s.enqueue); err != nil {
		return "", s.settleFailed(ctx, a, reg, soldOut, err)
	}
	s.log.Info("registration paid", "registration", reg.ID, "ticket", reg.TicketID,
		"amount", reg.Amount, "provider", charge.Provider, "reference", charge.Reference)
	return reg.ID, nil
}

func (s *Service) chargeFailed(ctx context.Context, a Attempt, err error) error {
	var declined *payment.DeclinedError
	if errors.As(err, &declined) {
		o := Outcome{Code: CodePaymentDeclined, Message: declined.Reason}
		if ferr := s.store.FailAttempt(ctx, a, &o); ferr != nil {
			s.log.Error("releasing seat after decline", "attempt", a.ID, "err", ferr)
		}
		return &Error{Code: o.Code, Message: o.Message, Err: err}
	}
	// Nothing was charged: forget the key so the client may try again.
	if ferr := s.store.FailAttempt(ctx, a, nil); ferr != nil {
		s.log.Error("releasing seat after payment failure", "attempt", a.ID, "err", ferr)
	}
	return &Error{Code: CodePaymentUnavailable, Message: "The payment service is not answering right now. Nothing was charged; please try again in a minute.", Err: err}
}

// settleFailed handles a charge that cannot become a registration: the
// money goes back (invariant 7).
func (s *Service) settleFailed(ctx context.Context, a Attempt, reg Registration, soldOut Outcome, cause error) error {
	if reg.Amount > 0 {
		if err := s.processor.Refund(ctx, reg.Payment, reg.Amount, reg.Currency, "refund-"+a.ID); err != nil {
			s.log.Error("REFUND NEEDED: charge taken but registration not stored and refund failed",
				"attempt", a.ID, "provider", reg.Payment.Provider, "reference", reg.Payment.Reference,
				"amount", reg.Amount, "currency", reg.Currency, "cause", cause, "err", err)
			return &Error{Code: CodeInternal, Message: "Something went wrong on our side and your payment is being reviewed; you will not be charged twice.", Err: errors.Join(cause, err)}
		}
		s.log.Warn("charge refunded: registration could not be stored", "attempt", a.ID,
			"reference", reg.Payment.Reference, "cause", cause)
	}
	if errors.Is(cause, ErrAttemptUnavailable) {
		if err := s.store.FailAttempt(ctx, a, &soldOut); err != nil {
			s.log.Error("settling key after lost hold", "attempt", a.ID, "err", err)
		}
		return &Error{Code: soldOut.Code, Message: soldOut.Message + " Your payment was refunded.", Err: cause}
	}
	if err := s.store.FailAttempt(ctx, a, nil); err != nil {
		s.log.Error("releasing seat after failed commit", "attempt", a.ID, "err", err)
	}
	return &Error{Code: CodePaymentUnavailable, Message: "We could not complete your registration and your payment was reversed. Please try again.", Err: cause}
}

func replayOutcome(o Outcome) (string, error) {
	if o.Code == "" {
		return o.RegistrationID, nil
	}
	return "", &Error{Code: o.Code, Message: o.Message}
}

// Registration returns a registration by id.
func (s *Service) Registration(ctx context.Context, id string) (Registration, error) {
	if !ValidID(id) {
		return Registration{}, ErrNotFound
	}
	return s.store.Registration(ctx, id)
}

func billingAddress(a Address) payment.BillingAddress {
	return payment.BillingAddress{Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Region: a.Region, Country: a.Country}
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns an unguessable id: 160 random bits, base32, lower case.
func NewID() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return strings.ToLower(idEncoding.EncodeToString(b[:])), nil
}

// ValidID reports whether s has the shape of an id made by NewID.
func ValidID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
