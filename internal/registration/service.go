package registration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
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
	// seat, recording the attempt (with its draft and email) before any
	// charge. It returns the stored outcome when the key was already
	// settled; ErrKeyInProgress or ErrKeyReused for a conflicting key;
	// ErrSoldOut (with soldOut stored under the key) when every seat is
	// paid; ErrSeatsHeld when no seat is free but some are only held by
	// attempts in progress, and ErrEmailLimit when a.Email already holds
	// a.MaxPerEmail registrations and seats of the ticket: then nothing is
	// written, the key is not kept.
	StartAttempt(ctx context.Context, a Attempt, soldOut Outcome) (*Outcome, error)
	// KeyOutcome returns the outcome stored under a settled idempotency key
	// for the request with requestHash; ErrKeyInProgress while an attempt
	// holds the key, ErrKeyReused when it was used with another request;
	// nil, nil when the key is unknown. It writes nothing.
	KeyOutcome(ctx context.Context, key, requestHash string) (*Outcome, error)
	// FailAttempt releases the held seat. A non-nil outcome is stored under
	// the key for replay; nil forgets the key so the client may retry.
	FailAttempt(ctx context.Context, a Attempt, o *Outcome) error
	// CompleteAttempt turns the held seat into a registration, stores its
	// steps, settles the key and enqueues the pipeline, in one transaction.
	// It returns ErrAlreadyRegistered when the attempt was completed before
	// and ErrAttemptUnavailable when its seat is gone.
	CompleteAttempt(ctx context.Context, a Attempt, r Registration, enqueue EnqueueFunc) error
	// AbandonedAttempts lists attempts still holding a seat past their
	// ResolveAfter.
	AbandonedAttempts(ctx context.Context, now time.Time, limit int) ([]Attempt, error)
	// PostponeAttempt sets when an unresolved attempt is looked at again.
	PostponeAttempt(ctx context.Context, id string, after time.Time) error
	// RecordIncident keeps a payment event for operators.
	RecordIncident(ctx context.Context, in Incident) error
	// Registration returns one registration with its steps, or ErrNotFound.
	Registration(ctx context.Context, id string) (Registration, error)
	// Availability reports the seats of every ticket of the event, by id.
	Availability(ctx context.Context, eventID string) (map[string]Availability, error)
	// RecentRegistrations lists the ticket's registrations (without steps)
	// by one email address, compared lower-cased, created at or after since
	// and not cancelled, newest first (at most 10).
	RecentRegistrations(ctx context.Context, eventID, ticketID, email string, since time.Time) ([]Registration, error)
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
	// resolveAfter is how long after its start an attempt still holding a
	// seat counts as abandoned; well past chargeTimeout.
	resolveAfter time.Duration
	// giveUpAfter is when an attempt whose outcome is still unknown is
	// released and handed to an operator (PayPal keeps request ids 6 hours).
	giveUpAfter time.Duration
	// resolving is held while ResolveAbandoned runs.
	resolving sync.Mutex
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
		resolveAfter:  90 * time.Second,
		giveUpAfter:   5 * time.Hour,
	}
}

// Event returns the event the service registers for.
func (s *Service) Event() *event.Event { return s.event }

// msgInternal is what an attendee reads when something failed on our side.
const msgInternal = "Something went wrong on our side. Please try again."

// Register validates a request, holds a seat, charges the card and stores the
// paid registration with its queued pipeline. key is the client's
// idempotency key ("" for none). It returns the registration id, or an
// *Error whose code is one of the API's.
func (s *Service) Register(ctx context.Context, req Request, key string) (string, error) {
	req.Normalize()
	now := s.now().UTC()
	if serr := s.salesError(now); serr != nil {
		// A retry of a request answered before sales closed gets its answer
		// again (invariant 3); nothing new is started.
		if id, answered, err := s.replayKey(ctx, req, key); answered {
			return id, err
		}
		return "", serr
	}
	if fields := req.Validate(s.event, now); len(fields) > 0 {
		return "", &Error{Code: CodeValidationFailed, Message: "Some fields need attention.", Fields: fields}
	}
	ticket, _ := s.event.Ticket(req.Ticket)
	id, err := NewID()
	if err != nil {
		return "", &Error{Code: CodeInternal, Message: msgInternal, Err: err}
	}
	a := Attempt{
		ID:             id,
		EventID:        s.event.ID,
		TicketID:       ticket.ID,
		IdempotencyKey: key,
		RequestHash:    req.Hash(),
		Email:          EmailKey(req.Attendee.Email),
		MaxPerEmail:    ticket.MaxPerEmail,
		CreatedAt:      now,
		ResolveAfter:   now.Add(s.resolveAfter),
		Draft:          s.draft(id, ticket, req, now),
	}
	// From here on the attempt runs to its end even if the client hangs up:
	// abandoning it half-way could leave a charge without a registration.
	ctx = context.WithoutCancel(ctx)
	soldOut := s.soldOut(ticket.ID)
	replay, err := s.store.StartAttempt(ctx, a, soldOut)
	switch {
	case replay != nil:
		return replayOutcome(*replay)
	case errors.Is(err, ErrSeatsHeld):
		return "", s.seatsHeld(ticket, "")
	case errors.Is(err, ErrSoldOut):
		return "", &Error{Code: soldOut.Code, Message: soldOut.Message}
	case errors.Is(err, ErrEmailLimit):
		return "", &Error{Code: CodeValidationFailed, Message: "Some fields need attention.",
			Fields: map[string]string{"attendee.email": emailLimitMessage(ticket)}}
	case errors.Is(err, ErrKeyInProgress):
		return "", keyInProgress()
	case errors.Is(err, ErrKeyReused):
		return "", &Error{Code: CodeIdempotencyKeyReused, Message: "This Idempotency-Key was used with a different request."}
	case err != nil:
		return "", &Error{Code: CodeInternal, Message: msgInternal, Err: err}
	}

	reg := a.Draft
	if ticket.Price > 0 {
		charge := payment.ChargeRequest{
			RequestID:   a.ID,
			Amount:      ticket.Price,
			Currency:    s.event.Currency,
			Description: s.event.Name + " — " + ticket.Name,
			Card:        req.Card(),
			Address:     billingAddress(req.Billing.Address),
			Email:       req.Attendee.Email,
		}
		cctx, cancel := context.WithTimeout(ctx, s.chargeTimeout)
		reg.Payment, err = s.processor.Charge(cctx, charge)
		cancel()
		if err != nil {
			if reg.Payment, err = s.chargeFailed(ctx, a, charge, err); err != nil {
				return "", err
			}
		}
	}
	if err := s.complete(ctx, a, reg); err != nil {
		return "", err
	}
	s.log.InfoContext(ctx, "registration paid", "registration", reg.ID, "ticket", reg.TicketID,
		"amount", reg.Amount, "provider", reg.Payment.Provider, "reference", reg.Payment.Reference)
	return reg.ID, nil
}

// draft is the registration an attempt becomes once paid.
func (s *Service) draft(id string, ticket event.Ticket, req Request, now time.Time) Registration {
	reg := Registration{
		ID:         id,
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
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	if req.Billing != nil {
		reg.Billing = billingAddress(req.Billing.Address)
	}
	if req.Newsletter {
		reg.NewsletterConsentedAt = now
		reg.NewsletterConsentText = NewsletterConsentText
	}
	for _, name := range Steps {
		st := StepPending
		if name == StepAddToMailingList && !req.Newsletter {
			st = StepSkipped
		}
		reg.Steps = append(reg.Steps, Step{Name: name, Status: st})
	}
	return reg
}

// SeatsHeldRetryAfter is when an attendee told that every seat is taken,
// some only by payments in progress, is asked to try again.
const SeatsHeldRetryAfter = 5 * time.Second

// seatsHeld is the answer when no seat is free but some are only held by
// attempts in progress: sold out for now, retryable, never stored under a
// key. note, when not empty, is added to the message.
func (s *Service) seatsHeld(ticket event.Ticket, note string) *Error {
	msg := fmt.Sprintf("Every %s ticket is taken right now, but some are held by payments still in progress and may come back in a few seconds. Please try again shortly.", ticket.Name)
	if note != "" {
		msg += " " + note
	}
	return &Error{Code: CodeSoldOut, Message: msg, Retryable: true, RetryAfter: SeatsHeldRetryAfter}
}

// emailLimitMessage tells an attendee that their email address holds the
// most registrations the ticket allows.
func emailLimitMessage(t event.Ticket) string {
	if t.MaxPerEmail == 1 {
		return fmt.Sprintf("This email address already has a %s ticket (one per person).", t.Name)
	}
	return fmt.Sprintf("This email address already has %d %s tickets, the most allowed per person.", t.MaxPerEmail, t.Name)
}

// replayKey answers from the outcome stored under key for req, without
// starting anything; answered is false when there is none to give.
func (s *Service) replayKey(ctx context.Context, req Request, key string) (id string, answered bool, err error) {
	if key == "" {
		return "", false, nil
	}
	o, kerr := s.store.KeyOutcome(ctx, key, req.Hash())
	switch {
	case o != nil:
		id, err = replayOutcome(*o)
		return id, true, err
	case errors.Is(kerr, ErrKeyInProgress):
		return "", true, keyInProgress()
	case errors.Is(kerr, ErrKeyReused):
		return "", true, &Error{Code: CodeIdempotencyKeyReused, Message: "This Idempotency-Key was used with a different request."}
	case kerr != nil:
		s.log.WarnContext(ctx, "reading an idempotency key outside the sales window", "err", kerr)
	}
	return "", false, nil
}

// salesError is the answer when tickets are not on sale at now, or nil.
func (s *Service) salesError(now time.Time) *Error {
	switch s.event.SalesAt(now) {
	case event.SalesNotOpen:
		return &Error{Code: CodeSalesNotOpen, Message: SalesOpenMessage(s.event)}
	case event.SalesClosed:
		return &Error{Code: CodeSalesClosed, Message: fmt.Sprintf("Ticket sales for %s have closed.", s.event.Name)}
	}
	return nil
}

// SalesOpenMessage says when ticket sales open, in the time zone of the
// event's start, e.g. "Ticket sales open on 1 March 2027 at 10:00 UTC+01:00."
func SalesOpenMessage(ev *event.Event) string {
	at := ev.SalesStart
	if !ev.StartsAt.IsZero() {
		at = at.In(ev.StartsAt.Location())
	}
	return fmt.Sprintf("Ticket sales open on %s at %s %s.", at.Format("2 January 2006"), at.Format("15:04"), event.ZoneName(at))
}

func (s *Service) soldOut(ticketID string) Outcome {
	name := ticketID
	if t, ok := s.event.Ticket(ticketID); ok {
		name = t.Name
	}
	return Outcome{Code: CodeSoldOut, Message: fmt.Sprintf("The %s ticket is sold out.", name)}
}

// chargeFailed settles a failed charge. A decline is final. When the
// provider failed, the outcome may be unknown (a timeout after the charge
// went through): ask the provider once; if it still cannot tell, the attempt
// keeps its seat and key for the resolver. It returns the charge when the
// payment did go through after all.
func (s *Service) chargeFailed(ctx context.Context, a Attempt, req payment.ChargeRequest, err error) (payment.Charge, error) {
	var declined *payment.DeclinedError
	if errors.As(err, &declined) {
		o := Outcome{Code: CodePaymentDeclined, Message: declined.Reason}
		if ferr := s.store.FailAttempt(ctx, a, &o); ferr != nil {
			s.log.ErrorContext(ctx, "releasing seat after decline", "attempt", a.ID, "err", ferr)
		}
		return payment.Charge{}, &Error{Code: o.Code, Message: o.Message, Err: err}
	}
	if errors.Is(err, payment.ErrNotCharged) {
		// The provider certainly took nothing (the order was never sent, or
		// was refused before any charge): the seat and key go back at once.
		if ferr := s.store.FailAttempt(ctx, a, nil); ferr != nil {
			s.log.ErrorContext(ctx, "releasing seat after payment failure", "attempt", a.ID, "err", ferr)
		}
		return payment.Charge{}, notCharged(err)
	}
	req.Card = payment.Card{}
	rctx, cancel := context.WithTimeout(ctx, s.chargeTimeout)
	charge, rerr := s.processor.Resolve(rctx, req)
	cancel()
	switch {
	case rerr == nil:
		s.log.WarnContext(ctx, "charge reported failure but was taken; proceeding", "attempt", a.ID, "err", err)
		return charge, nil
	case errors.Is(rerr, payment.ErrNotCharged):
		// Nothing was charged: forget the key so the client may try again.
		if ferr := s.store.FailAttempt(ctx, a, nil); ferr != nil {
			s.log.ErrorContext(ctx, "releasing seat after payment failure", "attempt", a.ID, "err", ferr)
		}
		return payment.Charge{}, notCharged(err)
	default:
		s.log.WarnContext(ctx, "payment outcome unknown; left to the resolver", "attempt", a.ID, "err", err, "resolve_err", rerr)
		return payment.Charge{}, &Error{Code: CodePaymentUnavailable, Message: "We could not confirm your payment with the payment service. If it went through, your registration completes by itself and you receive a confirmation email; you will not be charged twice.", Err: errors.Join(err, rerr)}
	}
}

// complete stores a paid registration; if it cannot be stored, the money
// goes back (invariant 7). A stored registration is never refunded: when the
// store's error leaves the outcome open (a timeout or a broken connection
// during the commit, which may have gone through), complete looks; if it
// still cannot tell, the attempt keeps its seat and key for the resolver,
// which completes it (the money was taken) rather than refunding.
func (s *Service) complete(ctx context.Context, a Attempt, reg Registration) error {
	err := s.store.CompleteAttempt(ctx, a, reg, s.enqueue)
	if err == nil || errors.Is(err, ErrAlreadyRegistered) {
		return nil
	}
	if !errors.Is(err, ErrAttemptUnavailable) {
		switch stored, lerr := s.stored(ctx, a.ID); {
		case lerr == nil && stored:
			s.log.WarnContext(ctx, "registration stored although its commit reported an error", "attempt", a.ID, "err", err)
			return nil
		case lerr != nil || outcomeUnknown(err):
			s.log.ErrorContext(ctx, "registration may not be stored; the resolver settles it (completes it: the money was taken)",
				"attempt", a.ID, "reference", reg.Payment.Reference, "err", err, "lookup_err", lerr)
			return &Error{Code: CodeInternal, Message: msgPaymentSafe, Err: errors.Join(err, lerr)}
		}
	}
	if reg.Amount > 0 {
		_, rerr := s.processor.Refund(ctx, reg.Payment, reg.Amount, reg.Currency, "refund-"+a.ID)
		if errors.Is(rerr, payment.ErrAlreadyRefunded) {
			rerr = nil // refunded in full already: nothing was kept
		}
		if rerr != nil {
			s.log.ErrorContext(ctx, "REFUND NEEDED: charge taken, registration not stored, refund failed; the resolver retries",
				"attempt", a.ID, "provider", reg.Payment.Provider, "reference", reg.Payment.Reference,
				"amount", reg.Amount, "currency", reg.Currency, "cause", err, "err", rerr)
			s.incident(ctx, a, reg, IncidentRefundFailed, errors.Join(err, rerr).Error())
			// The attempt keeps its seat and key: the resolver finds the charge
			// again and completes or refunds it, and a retry cannot charge twice.
			return &Error{Code: CodeInternal, Message: msgPaymentSafe, Err: errors.Join(err, rerr)}
		}
		s.log.WarnContext(ctx, "charge refunded: registration could not be stored", "attempt", a.ID,
			"reference", reg.Payment.Reference, "cause", err)
		s.incident(ctx, a, reg, IncidentRefunded, err.Error())
	}
	if errors.Is(err, ErrAttemptUnavailable) {
		// The hold was lost (released by the resolver) and no seat is free.
		// A sell-out is stored under the key only once every seat is paid;
		// while some are only held, the key is forgotten, so that the same
		// request may succeed once a seat comes back.
		note := ""
		if reg.Amount > 0 {
			note = "Your payment was refunded."
		}
		if s.finalSoldOut(ctx, a.TicketID) {
			soldOut := s.soldOut(a.TicketID)
			if ferr := s.store.FailAttempt(ctx, a, &soldOut); ferr != nil {
				s.log.ErrorContext(ctx, "settling key after lost hold", "attempt", a.ID, "err", ferr)
			}
			return &Error{Code: soldOut.Code, Message: strings.TrimSpace(soldOut.Message + " " + note), Err: err}
		}
		if ferr := s.store.FailAttempt(ctx, a, nil); ferr != nil {
			s.log.ErrorContext(ctx, "forgetting key after lost hold", "attempt", a.ID, "err", ferr)
		}
		ticket, ok := s.event.Ticket(a.TicketID)
		if !ok {
			ticket = event.Ticket{ID: a.TicketID, Name: a.TicketID}
		}
		e := s.seatsHeld(ticket, note)
		e.Err = err
		return e
	}
	if ferr := s.store.FailAttempt(ctx, a, nil); ferr != nil {
		s.log.ErrorContext(ctx, "releasing seat after failed commit", "attempt", a.ID, "err", ferr)
	}
	return &Error{Code: CodePaymentUnavailable, Message: "We could not complete your registration and your payment was reversed. Please try again.", Err: err}
}

// finalSoldOut reports whether every seat of the ticket is paid, so that a
// sell-out may be stored as final. When it cannot tell, it says no: an
// answer not stored can be asked again, a stored one cannot be taken back.
func (s *Service) finalSoldOut(ctx context.Context, ticketID string) bool {
	av, err := s.store.Availability(ctx, s.event.ID)
	if err != nil {
		s.log.WarnContext(ctx, "reading seats to settle a lost hold", "ticket", ticketID, "err", err)
		return false
	}
	return av[ticketID].SoldOut()
}

// msgNotCharged is what an attendee reads when the payment service failed
// and certainly took nothing.
const msgNotCharged = "The payment service is not answering right now. Nothing was charged; please try again in a minute."

// notCharged is the answer to a payment that certainly took nothing. When
// the provider refused it for its rate limit and said how long to wait, the
// answer says so (and the API's Retry-After).
func notCharged(err error) *Error {
	e := &Error{Code: CodePaymentUnavailable, Message: msgNotCharged, Err: err}
	if wait := payment.RetryAfter(err); wait > 0 {
		e.Retryable, e.RetryAfter = true, wait
		e.Message = fmt.Sprintf("The payment service is busy. Nothing was charged; please try again in %s.", humanWait(wait))
	}
	return e
}

// humanWait is a wait as an attendee reads it: "30 seconds", "2 minutes".
func humanWait(d time.Duration) string {
	switch secs := int((d + time.Second - 1) / time.Second); {
	case secs <= 1:
		return "a second"
	case secs < 90:
		return fmt.Sprintf("%d seconds", secs)
	default:
		return fmt.Sprintf("%d minutes", (secs+59)/60)
	}
}

// msgPaymentSafe is what an attendee reads when their registration's fate
// is left to the resolver.
const msgPaymentSafe = "Something went wrong on our side while storing your registration. Your payment is safe: it will either complete your registration or be refunded, and you will not be charged twice."

// stored reports whether the registration exists, asking with a context of
// its own (the request's may be what ran out).
func (s *Service) stored(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := s.store.Registration(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// outcomeUnknown reports whether a failed write may have been committed
// all the same: it was cut off rather than refused.
func outcomeUnknown(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

func (s *Service) incident(ctx context.Context, a Attempt, reg Registration, kind IncidentKind, detail string) {
	in := Incident{AttemptID: a.ID, Kind: kind, Provider: reg.Payment.Provider, Reference: reg.Payment.Reference,
		Amount: reg.Amount, Currency: reg.Currency, Detail: detail, CreatedAt: s.now().UTC()}
	if err := s.store.RecordIncident(ctx, in); err != nil {
		s.log.ErrorContext(ctx, "recording payment incident", "attempt", a.ID, "kind", kind, "err", err)
	}
}

// Resolving abandoned attempts: how many are read at a time, and how many
// are asked about at the provider at once.
const (
	resolveBatch    = 100
	resolveParallel = 16
)

// ResolveAbandoned settles every attempt still holding a seat past its
// ResolveAfter: a process died mid-charge, or the charge's outcome was
// unknown. Each is asked about at the provider: charged attempts become
// registrations, the others release their seat. It works through all of
// them (a crash during a launch can leave thousands), several at once, and
// returns how many it settled. One run at a time: a call while another runs
// returns at once.
func (s *Service) ResolveAbandoned(ctx context.Context, now time.Time) (int, error) {
	if !s.resolving.TryLock() {
		return 0, nil
	}
	defer s.resolving.Unlock()
	n, _, err := s.resolveAbandoned(ctx, ctx, now)
	return n, err
}

// SettleAll settles, as ResolveAbandoned does, the attempts holding a seat
// that are due, spending at most about within: a single process calls it
// before it serves, once it has made every attempt left by a dead process
// due, so that their seats are back on sale (or their charges registered)
// before the first attendee asks. An attempt whose outcome the provider
// cannot tell in time stays, postponed as the resolver postpones it.
// Attempts not reached in time, or once ctx is done, stay due for
// ResolveAbandoned; complete is false then. An attempt already asked about
// is settled to its end whatever happens to ctx: a charge found must become
// a registration. It waits for a ResolveAbandoned running meanwhile.
func (s *Service) SettleAll(ctx context.Context, within time.Duration) (settled int, complete bool, err error) {
	s.resolving.Lock()
	defer s.resolving.Unlock()
	ask, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return s.resolveAbandoned(context.WithoutCancel(ctx), ask, s.now())
}

// resolveAbandoned is ResolveAbandoned's work: attempts are settled with
// ctx, and the provider is asked with ask; once ask is done no further
// attempt is started (complete is false if some were left).
func (s *Service) resolveAbandoned(ctx, ask context.Context, now time.Time) (settled int, complete bool, err error) {
	tried := make(map[string]bool)
	for {
		if ask.Err() != nil {
			return settled, false, nil
		}
		attempts, err := s.store.AbandonedAttempts(ctx, now, resolveBatch)
		if err != nil {
			return settled, false, err
		}
		var todo []Attempt
		for _, a := range attempts {
			if !tried[a.ID] {
				tried[a.ID] = true
				todo = append(todo, a)
			}
		}
		// Attempts tried in this run and still due (their completion failed)
		// wait for the next run.
		if len(todo) == 0 {
			return settled, true, nil
		}
		n, all, err := s.resolveAll(ctx, ask, todo, now)
		settled += n
		if err != nil || !all {
			return settled, false, err
		}
		if len(attempts) < resolveBatch {
			return settled, true, nil
		}
	}
}

// resolveAll resolves attempts, resolveParallel at a time. An error of one
// does not stop the others: each is settled or left for the next run. Once
// ask is done it starts no more (all is false if some were left).
func (s *Service) resolveAll(ctx, ask context.Context, attempts []Attempt, now time.Time) (settled int, all bool, err error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	all = true
	sem := make(chan struct{}, resolveParallel)
	for _, a := range attempts {
		sem <- struct{}{}
		if ask.Err() != nil {
			<-sem
			all = false
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			ok, err := s.resolve(ctx, ask, a, now)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				settled++
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("resolve attempt %s: %w", a.ID, err))
			}
		})
	}
	wg.Wait()
	return settled, all, errors.Join(errs...)
}

// resolve settles one attempt, asking the provider with ask and writing
// with ctx.
func (s *Service) resolve(ctx, ask context.Context, a Attempt, now time.Time) (bool, error) {
	reg := a.Draft
	if reg.ID != a.ID || reg.Amount == 0 {
		// A free ticket (or a draft from before drafts were kept) took no
		// money: its attendee never got an answer and may retry.
		return true, s.store.FailAttempt(ctx, a, nil)
	}
	rctx, cancel := context.WithTimeout(ask, s.chargeTimeout)
	charge, err := s.processor.Resolve(rctx, payment.ChargeRequest{
		RequestID: a.ID, Amount: reg.Amount, Currency: reg.Currency, Email: reg.Email,
		Description: s.event.Name,
	})
	cancel()
	switch {
	case errors.Is(err, payment.ErrNotCharged):
		s.log.InfoContext(ctx, "abandoned attempt took no money; seat released", "attempt", a.ID)
		if err := s.store.FailAttempt(ctx, a, nil); err != nil {
			return false, err
		}
		s.incident(ctx, a, reg, IncidentResolvedNotCharged, "no charge found at the provider; seat released")
		return true, nil
	case err != nil && ask.Err() != nil:
		// Out of time to ask (SettleAll's bound, or a shutdown): not an
		// answer from the provider, so never a reason to give up.
		s.log.WarnContext(ctx, "payment outcome not asked in time; will ask again", "attempt", a.ID, "err", err)
		return false, s.store.PostponeAttempt(ctx, a.ID, now.Add(time.Minute))
	case err != nil:
		if now.Sub(a.CreatedAt) > s.giveUpAfter {
			s.log.ErrorContext(ctx, "PAYMENT UNRESOLVED: outcome still unknown; seat released, check the provider",
				"attempt", a.ID, "amount", reg.Amount, "currency", reg.Currency, "err", err)
			s.incident(ctx, a, reg, IncidentUnresolved, err.Error())
			return true, s.store.FailAttempt(ctx, a, nil)
		}
		s.log.WarnContext(ctx, "payment outcome still unknown; will ask again", "attempt", a.ID, "err", err)
		return false, s.store.PostponeAttempt(ctx, a.ID, now.Add(time.Minute))
	}
	reg.Payment = charge
	s.log.WarnContext(ctx, "abandoned attempt was paid; completing the registration", "attempt", a.ID,
		"provider", charge.Provider, "reference", charge.Reference)
	if err := s.complete(ctx, a, reg); err != nil {
		s.log.ErrorContext(ctx, "completing resolved attempt", "attempt", a.ID, "err", err)
		return false, nil
	}
	s.incident(ctx, a, reg, IncidentResolvedCharged, "payment confirmed after the fact; registration completed")
	return true, nil
}

func replayOutcome(o Outcome) (string, error) {
	if o.Code == "" {
		return o.RegistrationID, nil
	}
	return "", &Error{Code: o.Code, Message: o.Message}
}

// Availability reports the seats of every ticket, by ticket id.
func (s *Service) Availability(ctx context.Context) (map[string]Availability, error) {
	return s.store.Availability(ctx, s.event.ID)
}

// DuplicateWindow is how far back a second paid registration with the same
// email for the same ticket counts as a likely accident (a Back button, a
// second tab): the form asks before charging again.
const DuplicateWindow = 24 * time.Hour

// keyInProgress answers a request whose key another request is still
// processing: retryable, a second later (a charge ends within its timeout;
// one a dead process left is settled by the resolver).
func keyInProgress() *Error {
	return &Error{Code: CodeIdempotencyInProgress, Message: "A request with this Idempotency-Key is being processed; retry shortly.",
		Retryable: true, RetryAfter: time.Second}
}

// RecentDuplicate returns the newest registration of the ticket by the same
// email address within DuplicateWindow, if any.
func (s *Service) RecentDuplicate(ctx context.Context, ticketID, email string) (Registration, bool, error) {
	regs, err := s.store.RecentRegistrations(ctx, s.event.ID, ticketID, email, s.now().Add(-DuplicateWindow))
	if err != nil || len(regs) == 0 {
		return Registration{}, false, err
	}
	return regs[0], true, nil
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
