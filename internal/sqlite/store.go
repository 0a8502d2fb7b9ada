package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/groupcommit"
	"github.com/registrar/registrar/internal/registration"
)

// Store implements registrar's storage on SQLite.
type Store struct {
	db    *DB
	now   func() time.Time
	batch *groupcommit.Batcher // group commit for the writes of the registration hot path
	// fullSeen holds the tickets (event id + "/" + ticket id) whose
	// attempts were once refused for want of a free seat: their attempts
	// look at the committed stock first, on a read connection (see
	// StartAttempt).
	fullSeen sync.Map
}

// maxBatch bounds how many writes share one transaction.
const maxBatch = 256

// NewStore returns a Store on an open, migrated database.
func NewStore(db *DB) *Store {
	return &Store{db: db, now: time.Now, batch: groupcommit.New(db.Write, maxBatch)}
}

// BeginTx starts a write transaction.
func (s *Store) BeginTx(ctx context.Context) (*sql.Tx, error) {
	tx, err := s.db.Write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return tx, nil
}

// SyncTickets makes the stock table follow the event file: new tickets get a
// row and capacities are updated; seats already taken stay taken.
func (s *Store) SyncTickets(ctx context.Context, ev *event.Event) error {
	tx, err := s.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, t := range ev.Tickets {
		if _, err := tx.ExecContext(ctx, `INSERT INTO ticket_stock (event_id, ticket_id, capacity, taken) VALUES (?, ?, ?, 0)
			ON CONFLICT (event_id, ticket_id) DO UPDATE SET capacity = excluded.capacity`, ev.ID, t.ID, t.Capacity); err != nil {
			return fmt.Errorf("sync ticket %s: %w", t.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sync tickets: %w", err)
	}
	return nil
}

// StartAttempt implements registration.Store.
// It runs in a shared transaction (group commit).
//
// Once a ticket has refused an attempt for want of a free seat, a launch's
// later attempts would queue for the one writer only to be refused again;
// they are answered from the committed stock on a read connection instead,
// with nothing written, when their key (if any) is unknown: no seat free
// and every seat paid is ErrSoldOut (final), no seat free but some held is
// ErrSeatsHeld (retryable, as the writer would say). A seat freed since (a
// payment that failed, a cancellation, a raised capacity) is seen there,
// and the attempt goes to the writer as any other.
func (s *Store) StartAttempt(ctx context.Context, a registration.Attempt, soldOut registration.Outcome) (*registration.Outcome, error) {
	ticket := a.EventID + "/" + a.TicketID
	if _, seen := s.fullSeen.Load(ticket); seen {
		if err := s.refuseFromStock(ctx, a); err != nil {
			return nil, err
		}
	}
	var replay *registration.Outcome
	var refused error
	err := s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		replay, refused = nil, nil
		return startAttempt(ctx, tx, a, soldOut, &replay, &refused)
	})
	switch {
	case err != nil:
		return nil, err
	case replay != nil:
		return replay, nil
	}
	if errors.Is(refused, registration.ErrSoldOut) {
		s.fullSeen.Store(ticket, true)
	}
	return nil, refused
}

// refuseFromStock reads the committed stock of a's ticket on a read
// connection and returns ErrSoldOut or ErrSeatsHeld when no seat is free
// and a's idempotency key (if any) was never seen; nil sends a to the
// writer, which also replays or refuses a known key as usual.
func (s *Store) refuseFromStock(ctx context.Context, a registration.Attempt) error {
	var full, final, known bool
	err := s.db.Read.QueryRowContext(ctx, `SELECT taken >= capacity, taken - held >= capacity,
			EXISTS (SELECT 1 FROM idempotency_keys WHERE key = ?)
		FROM ticket_stock WHERE event_id = ? AND ticket_id = ?`, a.IdempotencyKey, a.EventID, a.TicketID).Scan(&full, &final, &known)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil // no stock: the writer says what that means
	case err != nil:
		return fmt.Errorf("read stock: %w", err)
	case !full || a.IdempotencyKey != "" && known:
		return nil
	case final:
		return registration.ErrSoldOut
	}
	return registration.ErrSeatsHeld
}

// startAttempt is StartAttempt's write. Conflicts return errors (nothing was
// written); a replay or a refusal (ErrSoldOut, ErrSeatsHeld, ErrEmailLimit)
// are results, kept via replay and refused: a refusal undoes what the write
// did, but for a sell-out stored under the key, without failing the batch.
func startAttempt(ctx context.Context, tx *sql.Tx, a registration.Attempt, soldOut registration.Outcome,
	replay **registration.Outcome, refused *error) error {
	now := formatTime(a.CreatedAt)
	if a.IdempotencyKey != "" {
		var hash, state string
		var o registration.Outcome
		var regID, code, msg sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT request_hash, state, registration_id, error_code, error_message
			FROM idempotency_keys WHERE key = ?`, a.IdempotencyKey).Scan(&hash, &state, &regID, &code, &msg)
		switch {
		case err == nil && hash != a.RequestHash:
			return registration.ErrKeyReused
		case err == nil && state == "in_progress":
			return registration.ErrKeyInProgress
		case err == nil:
			o.RegistrationID, o.Code, o.Message = regID.String, code.String, msg.String
			*replay = &o
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read idempotency key: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, request_hash, attempt_id, state, created_at, updated_at)
			VALUES (?, ?, ?, 'in_progress', ?, ?)`, a.IdempotencyKey, a.RequestHash, a.ID, now, now); err != nil {
			return fmt.Errorf("reserve idempotency key: %w", err)
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken + 1
		WHERE event_id = ? AND ticket_id = ? AND taken < capacity`, a.EventID, a.TicketID)
	if err != nil {
		return fmt.Errorf("hold seat: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// No seat free. Final only when every seat is paid: then the
		// sell-out is stored under the key. While some are only held by
		// attempts that may still fail and give theirs back, the key is
		// forgotten, so that the same request may succeed once one comes
		// back.
		final, err := paidOut(ctx, tx, a)
		if err != nil {
			return err
		}
		if !final {
			*refused = registration.ErrSeatsHeld
			return forgetReservedKey(ctx, tx, a)
		}
		*refused = registration.ErrSoldOut
		if a.IdempotencyKey != "" {
			return settleKey(ctx, tx, a, soldOut, now)
		}
		return nil
	}
	if a.MaxPerEmail > 0 && a.Email != "" {
		// The seat taken first, then the email counted: on SQLite one
		// writer at a time, so no other attempt for the address can be
		// counted in between.
		n, err := emailHolds(ctx, tx, a)
		if err != nil {
			return err
		}
		if n >= a.MaxPerEmail {
			*refused = registration.ErrEmailLimit
			if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken - 1 WHERE event_id = ? AND ticket_id = ?`,
				a.EventID, a.TicketID); err != nil {
				return fmt.Errorf("give the seat back: %w", err)
			}
			return forgetReservedKey(ctx, tx, a)
		}
	}
	draft, err := json.Marshal(a.Draft)
	if err != nil {
		return fmt.Errorf("encode attempt draft: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO seat_holds (id, event_id, ticket_id, idempotency_key, email, created_at, expires_at, draft)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, a.ID, a.EventID, a.TicketID, nullable(a.IdempotencyKey), a.Email, now,
		formatTime(a.ResolveAfter), string(draft)); err != nil {
		return fmt.Errorf("hold seat: %w", err)
	}
	return nil
}

// paidOut reports whether every seat of a's ticket is paid: the seats
// taken less those held by attempts in progress fill its capacity (which
// may have been lowered below them). A ticket without stock has no seat.
func paidOut(ctx context.Context, tx *sql.Tx, a registration.Attempt) (bool, error) {
	var paid, capacity int
	err := tx.QueryRowContext(ctx, `SELECT taken - held, capacity FROM ticket_stock WHERE event_id = ? AND ticket_id = ?`,
		a.EventID, a.TicketID).Scan(&paid, &capacity)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("count paid seats: %w", err)
	}
	return paid >= capacity, nil
}

// emailHolds counts what a's email address already holds of its ticket:
// registrations not cancelled and seats held by attempts in progress, both
// compared by EmailKey.
func emailHolds(ctx context.Context, tx *sql.Tx, a registration.Attempt) (int, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM registrations WHERE event_id = ?1 AND ticket_id = ?2 AND email_key = ?3 AND status <> 'cancelled')
		+ (SELECT count(*) FROM seat_holds WHERE event_id = ?1 AND ticket_id = ?2 AND email = ?3)`,
		a.EventID, a.TicketID, a.Email).Scan(&n); err != nil {
		return 0, fmt.Errorf("count registrations by email: %w", err)
	}
	return n, nil
}

// forgetReservedKey deletes the key that a's write has just reserved, as if
// the attempt had never come: the client may send it again.
func forgetReservedKey(ctx context.Context, tx *sql.Tx, a registration.Attempt) error {
	if a.IdempotencyKey == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key = ? AND attempt_id = ?`,
		a.IdempotencyKey, a.ID); err != nil {
		return fmt.Errorf("forget idempotency key: %w", err)
	}
	return nil
}

// settleKey stores the outcome of attempt a under its idempotency key. A key
// that was forgotten meanwhile is stored afresh, so a later retry replays the
// outcome instead of charging again; a key that another attempt has since
// reserved is left to that attempt.
func settleKey(ctx context.Context, tx *sql.Tx, a registration.Attempt, o registration.Outcome, now string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, request_hash, attempt_id, state,
		registration_id, error_code, error_message, created_at, updated_at) VALUES (?, ?, ?, 'done', ?, ?, ?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET state = 'done', registration_id = excluded.registration_id,
			error_code = excluded.error_code, error_message = excluded.error_message, updated_at = excluded.updated_at
		WHERE idempotency_keys.attempt_id = excluded.attempt_id`,
		a.IdempotencyKey, a.RequestHash, a.ID, nullable(o.RegistrationID), nullable(o.Code), nullable(o.Message), now, now); err != nil {
		return fmt.Errorf("settle idempotency key: %w", err)
	}
	return nil
}

// KeyOutcome implements registration.Store: the outcome stored under a
// settled key, read without reserving anything.
func (s *Store) KeyOutcome(ctx context.Context, key, requestHash string) (*registration.Outcome, error) {
	var hash, state string
	var regID, code, msg sql.NullString
	err := s.db.Read.QueryRowContext(ctx, `SELECT request_hash, state, registration_id, error_code, error_message
		FROM idempotency_keys WHERE key = ?`, key).Scan(&hash, &state, &regID, &code, &msg)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read idempotency key: %w", err)
	case hash != requestHash:
		return nil, registration.ErrKeyReused
	case state == "in_progress":
		return nil, registration.ErrKeyInProgress
	}
	return &registration.Outcome{RegistrationID: regID.String, Code: code.String, Message: msg.String}, nil
}

// releaseHold deletes a hold and gives its seat back. It reports whether
// the hold still existed.
func releaseHold(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	var eventID, ticketID string
	err := tx.QueryRowContext(ctx, `DELETE FROM seat_holds WHERE id = ? RETURNING event_id, ticket_id`, id).Scan(&eventID, &ticketID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("release hold: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken - 1 WHERE event_id = ? AND ticket_id = ?`,
		eventID, ticketID); err != nil {
		return false, fmt.Errorf("release seat: %w", err)
	}
	return true, nil
}

// FailAttempt implements registration.Store.
func (s *Store) FailAttempt(ctx context.Context, a registration.Attempt, o *registration.Outcome) error {
	return s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return s.failAttempt(ctx, tx, a, o)
	})
}

func (s *Store) failAttempt(ctx context.Context, tx *sql.Tx, a registration.Attempt, o *registration.Outcome) error {
	var err error
	if _, err := releaseHold(ctx, tx, a.ID); err != nil {
		return err
	}
	if a.IdempotencyKey != "" {
		if o != nil {
			err = settleKey(ctx, tx, a, *o, formatTime(s.now()))
		} else {
			// Only a key still in progress: one this attempt already settled
			// (a late resolver after the attempt completed) keeps its outcome.
			_, err = tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key = ? AND attempt_id = ? AND state = 'in_progress'`,
				a.IdempotencyKey, a.ID)
		}
		if err != nil {
			return fmt.Errorf("settle idempotency key: %w", err)
		}
	}
	return nil
}

// CompleteAttempt implements registration.Store.
func (s *Store) CompleteAttempt(ctx context.Context, a registration.Attempt, r registration.Registration, enqueue registration.EnqueueFunc) error {
	return s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return completeAttempt(ctx, tx, a, r, enqueue)
	})
}

func completeAttempt(ctx context.Context, tx *sql.Tx, a registration.Attempt, r registration.Registration, enqueue registration.EnqueueFunc) error {
	var exists int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM registrations WHERE id = ?`, a.ID).Scan(&exists)
	if err != nil {
		return fmt.Errorf("check registration: %w", err)
	}
	if exists > 0 {
		return registration.ErrAlreadyRegistered
	}
	held, err := deleteHold(ctx, tx, a.ID)
	if err != nil {
		return err
	}
	if !held {
		// The hold expired and was swept: take a seat afresh if one is left.
		res, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken + 1
			WHERE event_id = ? AND ticket_id = ? AND taken < capacity`, a.EventID, a.TicketID)
		if err != nil {
			return fmt.Errorf("retake seat: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return registration.ErrAttemptUnavailable
		}
	}
	created := formatTime(r.CreatedAt)
	b := r.Billing
	if _, err := tx.ExecContext(ctx, `INSERT INTO registrations (id, event_id, ticket_id, status, amount, currency,
		first_name, last_name, email, company, newsletter, newsletter_consented_at, newsletter_consent_text,
		payment_provider, payment_reference,
		card_brand, card_last4, billing_line1, billing_line2, billing_city, billing_postal_code, billing_region,
		billing_country, search, email_key, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.EventID, r.TicketID, r.Status, r.Amount, r.Currency, r.FirstName, r.LastName, r.Email, r.Company,
		r.Newsletter, nullTime(r.NewsletterConsentedAt), r.NewsletterConsentText, r.Payment.Provider, r.Payment.Reference, r.Payment.Brand,
		r.Payment.Last4, b.Line1, b.Line2, b.City, b.PostalCode, b.Region, b.Country,
		searchText(r.FirstName, r.LastName, r.Email, r.Company), registration.EmailKey(r.Email), created, created); err != nil {
		return fmt.Errorf("insert registration: %w", err)
	}
	if err := insertSteps(ctx, tx, r.ID, r.Steps, created); err != nil {
		return err
	}
	if a.IdempotencyKey != "" {
		if err := settleKey(ctx, tx, a, registration.Outcome{RegistrationID: r.ID}, created); err != nil {
			return err
		}
	}
	if err := enqueue(ctx, tx, r.ID); err != nil {
		return fmt.Errorf("enqueue registration: %w", err)
	}
	return nil
}

func deleteHold(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM seat_holds WHERE id = ?`, id)
	if err != nil {
		return false, fmt.Errorf("settle hold: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// AbandonedAttempts returns up to limit attempts still holding a seat whose
// ResolveAfter is before now: their process died mid-charge, or their
// charge's outcome is unknown.
func (s *Store) AbandonedAttempts(ctx context.Context, now time.Time, limit int) ([]registration.Attempt, error) {
	rows, err := s.db.Write.QueryContext(ctx, `SELECT h.id, h.event_id, h.ticket_id, coalesce(h.idempotency_key, ''),
		coalesce(k.request_hash, ''), h.email, h.created_at, h.expires_at, h.draft
		FROM seat_holds h LEFT JOIN idempotency_keys k ON k.key = h.idempotency_key AND k.attempt_id = h.id
		WHERE h.expires_at < ? ORDER BY h.expires_at LIMIT ?`, formatTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("find abandoned attempts: %w", err)
	}
	defer rows.Close()
	var out []registration.Attempt
	for rows.Next() {
		var a registration.Attempt
		var created, resolveAfter string
		var draft []byte
		if err := rows.Scan(&a.ID, &a.EventID, &a.TicketID, &a.IdempotencyKey, &a.RequestHash, &a.Email, &created, &resolveAfter, &draft); err != nil {
			return nil, fmt.Errorf("scan attempt: %w", err)
		}
		if a.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
		if a.ResolveAfter, err = parseTime(resolveAfter); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(draft, &a.Draft); err != nil {
			return nil, fmt.Errorf("decode draft of attempt %s: %w", a.ID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find abandoned attempts: %w", err)
	}
	return out, nil
}

// PostponeAttempt moves an attempt's next resolution to after.
func (s *Store) PostponeAttempt(ctx context.Context, id string, after time.Time) error {
	if _, err := s.db.Write.ExecContext(ctx, `UPDATE seat_holds SET expires_at = ? WHERE id = ?`, formatTime(after), id); err != nil {
		return fmt.Errorf("postpone attempt: %w", err)
	}
	return nil
}

// RecordIncident keeps a payment event for operators. An incident a person
// must act on (a failed refund, a charge whose outcome stayed unknown) also
// becomes a notice to the organisers, in the same transaction.
func (s *Store) RecordIncident(ctx context.Context, in registration.Incident) error {
	tx, err := s.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	detail := truncate(in.Detail, 1000)
	if _, err := tx.ExecContext(ctx, `INSERT INTO payment_incidents (attempt_id, kind, provider, reference,
		amount, currency, detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		in.AttemptID, in.Kind, in.Provider, in.Reference, in.Amount, in.Currency, detail,
		formatTime(in.CreatedAt)); err != nil {
		return fmt.Errorf("record payment incident: %w", err)
	}
	if kind, ok := incidentNotice(in.Kind); ok {
		at := in.CreatedAt
		if at.IsZero() {
			at = s.now()
		}
		if err := insertNotice(ctx, tx, kind, in.AttemptID, detail, at); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record payment incident: %w", err)
	}
	return nil
}

// Registration implements registration.Store and admin.Store: the
// registration with its steps.
func (s *Store) Registration(ctx context.Context, id string) (registration.Registration, error) {
	r, err := scanRegistration(s.db.Read.QueryRowContext(ctx, `SELECT `+registrationColumns+`
		FROM registrations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, registration.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read registration: %w", err)
	}
	rows, err := s.db.Read.QueryContext(ctx, `SELECT step, status, attempts, last_error FROM registration_steps
		WHERE registration_id = ?`, id)
	if err != nil {
		return r, fmt.Errorf("read steps: %w", err)
	}
	defer rows.Close()
	byName := map[registration.StepName]registration.Step{}
	for rows.Next() {
		var st registration.Step
		if err := rows.Scan(&st.Name, &st.Status, &st.Attempts, &st.LastError); err != nil {
			return r, fmt.Errorf("scan step: %w", err)
		}
		byName[st.Name] = st
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("read steps: %w", err)
	}
	for _, name := range registration.Steps {
		if st, ok := byName[name]; ok {
			r.Steps = append(r.Steps, st)
		}
	}
	return r, nil
}

// registrationColumns are the columns scanRegistration reads, in order.
const registrationColumns = `id, event_id, ticket_id, status, amount, currency, first_name, last_name, email, company,
	newsletter, newsletter_consented_at, payment_provider, payment_reference, card_brand, card_last4,
	billing_line1, billing_line2, billing_city, billing_postal_code, billing_region, billing_country,
	refunded, cancelled_at, newsletter_consent_text, anonymised_at, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

// scanRegistration reads a row of registrationColumns (without steps).
func scanRegistration(sc scanner) (registration.Registration, error) {
	var r registration.Registration
	var consented, cancelled, anonymised sql.NullString
	var created, updated string
	b := &r.Billing
	if err := sc.Scan(&r.ID, &r.EventID, &r.TicketID, &r.Status, &r.Amount, &r.Currency, &r.FirstName, &r.LastName,
		&r.Email, &r.Company, &r.Newsletter, &consented, &r.Payment.Provider, &r.Payment.Reference, &r.Payment.Brand,
		&r.Payment.Last4, &b.Line1, &b.Line2, &b.City, &b.PostalCode, &b.Region, &b.Country, &r.Refunded, &cancelled,
		&r.NewsletterConsentText, &anonymised, &created, &updated); err != nil {
		return r, err
	}
	var err error
	if r.AnonymisedAt, err = parseNullTime(anonymised); err != nil {
		return r, err
	}
	if r.NewsletterConsentedAt, err = parseNullTime(consented); err != nil {
		return r, err
	}
	if r.CancelledAt, err = parseNullTime(cancelled); err != nil {
		return r, err
	}
	if r.CreatedAt, err = parseTime(created); err != nil {
		return r, err
	}
	if r.UpdatedAt, err = parseTime(updated); err != nil {
		return r, err
	}
	return r, nil
}

// nullTime is t as stored, or NULL for the zero time.
func nullTime(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: formatTime(t), Valid: true}
}

func parseNullTime(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	return parseTime(s.String)
}

func nullable(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// searchSep separates the fields of a registration's search column.
const searchSep = "\x1f"

// searchText is a registration's search column: what the back office's
// search finds a part of, lower-cased here so that any letter folds, not
// only ASCII ones.
func searchText(first, last, email, company string) string {
	return strings.ToLower(first + " " + last + searchSep + email + searchSep + company)
}

// insertSteps inserts a registration's steps with one statement.
func insertSteps(ctx context.Context, tx *sql.Tx, id string, steps []registration.Step, created string) error {
	if len(steps) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO registration_steps (registration_id, step, status, attempts, last_error, updated_at) VALUES `)
	args := make([]any, 0, 4*len(steps))
	for i, st := range steps {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(`(?, ?, ?, 0, '', ?)`)
		args = append(args, id, st.Name, st.Status, created)
	}
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("insert steps: %w", err)
	}
	return nil
}
