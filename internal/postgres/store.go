package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/groupcommit"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

// Store implements registrar's storage on PostgreSQL: the same methods and
// semantics as sqlite.Store, safe under concurrent transactions at READ
// COMMITTED.
//
// Every method that touches several of an attempt's rows takes their locks
// in one order — idempotency key, seat hold, ticket stock — so that two
// transactions never wait for each other in a circle.
//
// The writes of the registration hot path (StartAttempt, FailAttempt,
// CompleteAttempt) are group-committed: those of one kind that arrive
// together share one transaction and are written set-wise (hotpath.go), so
// a launch pays one commit and a few statements per batch, and the hot
// ticket_stock row is updated once per batch rather than once per request.
// Several batches run at once (lanes of each kind, in every process), each
// holding the locks it took until it commits, so a batch may wait for
// another's rows. What keeps them from waiting in a circle:
//
//   - Every batch takes its locks in one global order: registrations (the
//     insert of a new one waits for a concurrent insert of the same id),
//     then idempotency keys, then seat holds, then ticket stock; within a
//     table in key order, each table's locks in one statement (ORDER BY,
//     or a locking subquery ordered so), stock rows by ticket. The stock row
//     is the seat lock: a conditional UPDATE taking all of a ticket's seats
//     for the batch at once. Rows a batch inserted itself, or a fresh hold,
//     are written later without waiting for anyone. A write that runs alone
//     (per-write functions, after its batch failed) follows the same order.
//   - SyncTickets, the only other transaction that locks several stock
//     rows, locks them in ticket order and nothing after them.
//   - Every other statement on these rows holds nothing while it waits, or
//     does not wait: AbandonedAttempts skips locked holds (SKIP LOCKED),
//     PostponeAttempt is one statement on one row.
//   - A batch's writes never lock the rows that transactions outside the
//     batcher lock (the pipeline's StepStarted, StepFailed, FinishStepTx
//     and River's job rows): a registration that already exists is
//     detected by INSERT ... ON CONFLICT DO NOTHING, which reads the
//     committed row without locking it.
type Store struct {
	db  *DB
	now func() time.Time
	// Group commit for the writes of the registration hot path.
	starts    *groupcommit.Set[*startItem]
	completes *groupcommit.Set[*completeItem]
	fails     *groupcommit.Set[*failItem]
	// Group commit for the pipeline's bookkeeping (WriteSteps): lanes by
	// registration, each batch's writes in registration order.
	steps [stepLanes]*groupcommit.Batcher
}

var (
	_ registration.Store   = (*Store)(nil)
	_ pipeline.Store       = (*Store)(nil)
	_ pipeline.MailingList = (*Store)(nil)
)

// maxBatch bounds how many writes share one transaction.
const maxBatch = 256

// Lanes: how many batches of each kind run at a time in one process. A
// StartAttempt batch holds the ticket's stock row from its UPDATE to its
// commit, so starts of one ticket queue there; the lanes let the next
// batches reserve their keys meanwhile, and completions (which rarely touch
// the stock) commit alongside.
const (
	startLanes    = 4
	completeLanes = 4
	failLanes     = 2
	// stepLanes: how many batches of the pipeline's step bookkeeping run at
	// a time in one process; a registration's writes always take the same
	// lane, so two batches of one process never want one registration.
	stepLanes = 4
)

// NewStore returns a Store on an open, migrated database.
func NewStore(db *DB) *Store {
	s := &Store{db: db, now: time.Now}
	pool := db.Batch
	if pool == nil {
		pool = db.SQL
	}
	for i := range s.steps {
		s.steps[i] = groupcommit.New(pool, maxBatch)
	}
	s.starts = groupcommit.NewSet(pool, maxBatch, startLanes, runStarts,
		func(ctx context.Context, tx *sql.Tx, v *startItem) error {
			v.replay, v.refused = nil, nil
			return beginAttempt(ctx, tx, v.a, v.soldOut, &v.replay, &v.refused)
		})
	s.completes = groupcommit.NewSet(pool, maxBatch, completeLanes, runCompletes,
		func(ctx context.Context, tx *sql.Tx, v *completeItem) error {
			return completeAttempt(ctx, tx, v.a, v.r, v.enqueue)
		})
	s.fails = groupcommit.NewSet(pool, maxBatch, failLanes, runFails,
		func(ctx context.Context, tx *sql.Tx, v *failItem) error {
			return failAttempt(ctx, tx, v.a, v.o, v.now)
		})
	return s
}

// writersLock is the first half of the advisory lock key that SyncTickets
// and CancelRegistration hold; the second half is a hash of the schema, as
// for migrateLock. Batches do not take it.
const writersLock = 0x62617463 // "batc"

// lockWriters waits until no other transaction writing several seats holds
// the writers' lock, and holds it until tx ends.
func lockWriters(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))`, writersLock); err != nil {
		return fmt.Errorf("take the writers' lock: %w", err)
	}
	return nil
}

// Batches reports how many group-commit transactions the store has run.
func (s *Store) Batches() int { return s.starts.Batches() + s.completes.Batches() + s.fails.Batches() }

// BatchStats reports the batches of each kind and how many writes ran alone
// after their batch failed, for diagnostics.
func (s *Store) BatchStats() (starts, completes, fails, alone int) {
	return s.starts.Batches(), s.completes.Batches(), s.fails.Batches(),
		s.starts.Alones() + s.completes.Alones() + s.fails.Alones()
}

// Write implements pipeline.Store with a transaction of its own: the
// pipeline's writes lock registration rows, which batches across processes
// must not hold.
func (s *Store) Write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	tx, err := s.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// WriteSteps implements pipeline.Store: the writes of a registration's
// pipeline share transactions with those of other registrations arriving
// at the same time (group commit), in one of a few lanes chosen by id. Each
// such write locks its registration's row first (lockRegistration) and
// then only rows of that registration, and a batch runs its writes in id
// order: the batches of several processes take registration locks in one
// order and never wait for each other in a circle.
func (s *Store) WriteSteps(ctx context.Context, id string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	h := fnv.New32a()
	h.Write([]byte(id))
	return s.steps[h.Sum32()%stepLanes].DoOrdered(ctx, id, fn)
}

// BeginTx starts a write transaction.
func (s *Store) BeginTx(ctx context.Context) (*sql.Tx, error) {
	tx, err := s.db.SQL.BeginTx(ctx, nil)
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
	// Several stock rows, locked in ticket order as batches lock them, and
	// nothing after them.
	if err := lockWriters(ctx, tx); err != nil {
		return err
	}
	tickets := slices.Clone(ev.Tickets)
	slices.SortFunc(tickets, func(a, b event.Ticket) int { return cmp.Compare(a.ID, b.ID) })
	for _, t := range tickets {
		if _, err := tx.ExecContext(ctx, `INSERT INTO ticket_stock (event_id, ticket_id, capacity, taken) VALUES ($1, $2, $3, 0)
			ON CONFLICT (event_id, ticket_id) DO UPDATE SET capacity = excluded.capacity`, ev.ID, t.ID, t.Capacity); err != nil {
			return fmt.Errorf("sync ticket %s: %w", t.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sync tickets: %w", err)
	}
	return nil
}

// StartAttempt implements registration.Store. It runs in a shared
// transaction (group commit).
func (s *Store) StartAttempt(ctx context.Context, a registration.Attempt, soldOut registration.Outcome) (*registration.Outcome, error) {
	v := &startItem{a: a, soldOut: soldOut}
	switch err := s.starts.Do(ctx, v); {
	case err != nil:
		return nil, err
	case v.replay != nil:
		return v.replay, nil
	}
	return nil, v.refused
}

// beginAttempt is StartAttempt's write. Conflicts return errors (nothing was
// written); a replay or a refusal (ErrSoldOut, ErrSeatsHeld, ErrEmailLimit)
// are results, kept via replay and refused: a refusal undoes what the write
// did, but for a sell-out stored under the key, without failing the batch.
//
// The key is reserved with an insert that does nothing on conflict (waiting
// for a concurrent reservation of the same key to commit or roll back) and
// only then read; the seat is taken by one conditional UPDATE, which
// PostgreSQL re-checks against the latest row after waiting for a
// concurrent taker, so no interleaving of attempts oversells. That UPDATE
// also locks the ticket's stock row until commit, so the email address is
// counted after it: any other attempt for the ticket either committed
// before (and at READ COMMITTED the next statement sees its rows) or waits
// for this one.
func beginAttempt(ctx context.Context, tx *sql.Tx, a registration.Attempt, soldOut registration.Outcome,
	replay **registration.Outcome, refused *error) error {
	now := a.CreatedAt.UTC()
	if a.IdempotencyKey != "" {
		o, err := reserveKey(ctx, tx, a, now)
		if o != nil || err != nil {
			*replay = o
			return err
		}
	}
	took, final, err := takeSeat(ctx, tx, a)
	if err != nil {
		return err
	}
	if !took {
		// No seat free. Final only when every seat is paid: then the
		// sell-out is stored under the key. While some are only held by
		// attempts that may still fail and give theirs back, the key is
		// forgotten, so that the same request may succeed once one comes
		// back.
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
		n, err := emailHolds(ctx, tx, a)
		if err != nil {
			return err
		}
		if n >= a.MaxPerEmail {
			*refused = registration.ErrEmailLimit
			if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken - 1 WHERE event_id = $1 AND ticket_id = $2`,
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
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, a.ID, a.EventID, a.TicketID, nullable(a.IdempotencyKey), a.Email, now,
		a.ResolveAfter.UTC(), string(draft)); err != nil {
		return fmt.Errorf("hold seat: %w", err)
	}
	return nil
}

// takeSeat takes a seat of a's ticket if one is free. When none is, final
// reports whether every seat is paid: the seats taken less those held by
// attempts in progress fill the capacity (which may have been lowered below
// them), read in one snapshot with the stock row. Should that snapshot show
// a seat free after all (one came back between the two statements), it
// tries again. A ticket without stock has no seat.
func takeSeat(ctx context.Context, tx *sql.Tx, a registration.Attempt) (took, final bool, err error) {
	for range 3 {
		res, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken + 1
			WHERE event_id = $1 AND ticket_id = $2 AND taken < capacity`, a.EventID, a.TicketID)
		if err != nil {
			return false, false, fmt.Errorf("hold seat: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return true, false, nil
		}
		var free bool
		err = tx.QueryRowContext(ctx, `SELECT t.taken < t.capacity,
			t.taken - (SELECT count(*) FROM seat_holds h WHERE h.event_id = t.event_id AND h.ticket_id = t.ticket_id) >= t.capacity
			FROM ticket_stock t WHERE t.event_id = $1 AND t.ticket_id = $2`, a.EventID, a.TicketID).Scan(&free, &final)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return false, true, nil
		case err != nil:
			return false, false, fmt.Errorf("count paid seats: %w", err)
		case !free:
			return false, final, nil
		}
	}
	// Seats keep coming and going: say so without storing a final answer.
	return false, false, nil
}

// emailHolds counts what a's email address already holds of its ticket:
// registrations not cancelled and seats held by attempts in progress (both
// compared by EmailKey), in one statement, so one snapshot: a registration
// completing meanwhile is counted as a hold or as a registration, never
// neither. It runs after the seat was taken: that UPDATE holds the ticket's
// stock row until commit, so any other attempt for the ticket either
// committed before (and at READ COMMITTED this statement sees its rows) or
// waits for this one.
func emailHolds(ctx context.Context, tx *sql.Tx, a registration.Attempt) (int, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM registrations WHERE event_id = $1 AND ticket_id = $2 AND email_key = $3 AND status <> 'cancelled')
		+ (SELECT count(*) FROM seat_holds WHERE event_id = $1 AND ticket_id = $2 AND email = $3)`,
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
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key = $1 AND attempt_id = $2`,
		a.IdempotencyKey, a.ID); err != nil {
		return fmt.Errorf("forget idempotency key: %w", err)
	}
	return nil
}

// reserveKey reserves a's idempotency key in tx, or returns the outcome
// stored under it, or the error for a key in use.
func reserveKey(ctx context.Context, tx *sql.Tx, a registration.Attempt, now time.Time) (*registration.Outcome, error) {
	// A key seen taken can be forgotten (its attempt failed) before it is
	// read; then reserving it again succeeds. Three rounds need two such
	// races in a row.
	for range 3 {
		res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, request_hash, attempt_id, state, created_at, updated_at)
			VALUES ($1, $2, $3, 'in_progress', $4, $4) ON CONFLICT (key) DO NOTHING`, a.IdempotencyKey, a.RequestHash, a.ID, now)
		if err != nil {
			return nil, fmt.Errorf("reserve idempotency key: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil, nil
		}
		var hash, state string
		var regID, code, msg sql.NullString
		err = tx.QueryRowContext(ctx, `SELECT request_hash, state, registration_id, error_code, error_message
			FROM idempotency_keys WHERE key = $1`, a.IdempotencyKey).Scan(&hash, &state, &regID, &code, &msg)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return nil, fmt.Errorf("read idempotency key: %w", err)
		case hash != a.RequestHash:
			return nil, registration.ErrKeyReused
		case state == "in_progress":
			return nil, registration.ErrKeyInProgress
		}
		return &registration.Outcome{RegistrationID: regID.String, Code: code.String, Message: msg.String}, nil
	}
	return nil, fmt.Errorf("reserve idempotency key: it keeps changing under us")
}

// settleKey stores the outcome of attempt a under its idempotency key. A key
// that was forgotten meanwhile is stored afresh, so a later retry replays the
// outcome instead of charging again; a key that another attempt has since
// reserved is left to that attempt.
func settleKey(ctx context.Context, tx *sql.Tx, a registration.Attempt, o registration.Outcome, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, request_hash, attempt_id, state,
		registration_id, error_code, error_message, created_at, updated_at) VALUES ($1, $2, $3, 'done', $4, $5, $6, $7, $7)
		ON CONFLICT (key) DO UPDATE SET state = 'done', registration_id = excluded.registration_id,
			error_code = excluded.error_code, error_message = excluded.error_message, updated_at = excluded.updated_at
		WHERE idempotency_keys.attempt_id = excluded.attempt_id`,
		a.IdempotencyKey, a.RequestHash, a.ID, nullable(o.RegistrationID), nullable(o.Code), nullable(o.Message), now.UTC()); err != nil {
		return fmt.Errorf("settle idempotency key: %w", err)
	}
	return nil
}

// KeyOutcome implements registration.Store: the outcome stored under a
// settled key, read without reserving anything.
func (s *Store) KeyOutcome(ctx context.Context, key, requestHash string) (*registration.Outcome, error) {
	var hash, state string
	var regID, code, msg sql.NullString
	err := s.db.SQL.QueryRowContext(ctx, `SELECT request_hash, state, registration_id, error_code, error_message
		FROM idempotency_keys WHERE key = $1`, key).Scan(&hash, &state, &regID, &code, &msg)
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
	err := tx.QueryRowContext(ctx, `DELETE FROM seat_holds WHERE id = $1 RETURNING event_id, ticket_id`, id).Scan(&eventID, &ticketID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("release hold: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken - 1 WHERE event_id = $1 AND ticket_id = $2`,
		eventID, ticketID); err != nil {
		return false, fmt.Errorf("release seat: %w", err)
	}
	return true, nil
}

// FailAttempt implements registration.Store. It runs in a shared
// transaction (group commit).
func (s *Store) FailAttempt(ctx context.Context, a registration.Attempt, o *registration.Outcome) error {
	return s.fails.Do(ctx, &failItem{a: a, o: o, now: s.now()})
}

// failAttempt is FailAttempt's write for one attempt.
func failAttempt(ctx context.Context, tx *sql.Tx, a registration.Attempt, o *registration.Outcome, now time.Time) error {
	// The key before the seat: the lock order of StartAttempt.
	if a.IdempotencyKey != "" {
		var err error
		if o != nil {
			err = settleKey(ctx, tx, a, *o, now)
		} else {
			// Only a key still in progress: one this attempt already settled
			// (a late resolver after the attempt completed) keeps its outcome.
			_, err = tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key = $1 AND attempt_id = $2 AND state = 'in_progress'`,
				a.IdempotencyKey, a.ID)
		}
		if err != nil {
			return fmt.Errorf("settle idempotency key: %w", err)
		}
	}
	if _, err := releaseHold(ctx, tx, a.ID); err != nil {
		return err
	}
	return nil
}

// CompleteAttempt implements registration.Store. The registration row is
// inserted first, doing nothing on conflict: of two completions of one
// attempt running at once (a slow Register and the resolver) the second
// waits for the first and then reports ErrAlreadyRegistered, as on SQLite.
// It runs in a shared transaction (group commit); its errors roll back its
// own writes only.
func (s *Store) CompleteAttempt(ctx context.Context, a registration.Attempt, r registration.Registration, enqueue registration.EnqueueFunc) error {
	return s.completes.Do(ctx, &completeItem{a: a, r: r, enqueue: enqueue})
}

func completeAttempt(ctx context.Context, tx *sql.Tx, a registration.Attempt, r registration.Registration, enqueue registration.EnqueueFunc) error {
	created := r.CreatedAt.UTC()
	b := r.Billing
	res, err := tx.ExecContext(ctx, `INSERT INTO registrations (id, event_id, ticket_id, status, amount, currency,
		first_name, last_name, email, company, newsletter, newsletter_consented_at, payment_provider, payment_reference,
		card_brand, card_last4, billing_line1, billing_line2, billing_city, billing_postal_code, billing_region,
		billing_country, search, email_key, newsletter_consent_text, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $26, $25, $25)
		ON CONFLICT (id) DO NOTHING`,
		r.ID, r.EventID, r.TicketID, r.Status, r.Amount, r.Currency, r.FirstName, r.LastName, r.Email, r.Company,
		r.Newsletter, nullTime(r.NewsletterConsentedAt), r.Payment.Provider, r.Payment.Reference, r.Payment.Brand,
		r.Payment.Last4, b.Line1, b.Line2, b.City, b.PostalCode, b.Region, b.Country,
		searchText(r.FirstName, r.LastName, r.Email, r.Company), registration.EmailKey(r.Email), created,
		r.NewsletterConsentText)
	if err != nil {
		return fmt.Errorf("insert registration: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return registration.ErrAlreadyRegistered
	}
	if a.IdempotencyKey != "" {
		if err := settleKey(ctx, tx, a, registration.Outcome{RegistrationID: r.ID}, created); err != nil {
			return err
		}
	}
	res, err = tx.ExecContext(ctx, `DELETE FROM seat_holds WHERE id = $1`, a.ID)
	if err != nil {
		return fmt.Errorf("settle hold: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// The hold expired and was swept: take a seat afresh if one is left.
		res, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken + 1
			WHERE event_id = $1 AND ticket_id = $2 AND taken < capacity`, a.EventID, a.TicketID)
		if err != nil {
			return fmt.Errorf("retake seat: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return registration.ErrAttemptUnavailable
		}
	}
	if err := insertSteps(ctx, tx, r.ID, r.Steps, created); err != nil {
		return err
	}
	if err := enqueue(ctx, tx, r.ID); err != nil {
		return fmt.Errorf("enqueue registration: %w", err)
	}
	return nil
}

// AbandonedAttempts returns up to limit attempts still holding a seat whose
// ResolveAfter is before now: their process died mid-charge, or their
// charge's outcome is unknown.
//
// Holds whose rows are locked right now — an attempt being completed,
// failed or postponed at this moment — are skipped (SKIP LOCKED) rather
// than waited for: the resolver looks at them next round if they are still
// there. Nothing is leased beyond the query: one resolver runs at a time
// (River keeps one resolve job), and the methods it calls next are safe
// against a racing settle of the same attempt.
func (s *Store) AbandonedAttempts(ctx context.Context, now time.Time, limit int) ([]registration.Attempt, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT h.id, h.event_id, h.ticket_id, coalesce(h.idempotency_key, ''),
		coalesce(k.request_hash, ''), h.email, h.created_at, h.expires_at, h.draft
		FROM seat_holds h LEFT JOIN idempotency_keys k ON k.key = h.idempotency_key AND k.attempt_id = h.id
		WHERE h.expires_at < $1 ORDER BY h.expires_at LIMIT $2
		FOR UPDATE OF h SKIP LOCKED`, now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("find abandoned attempts: %w", err)
	}
	defer rows.Close()
	var out []registration.Attempt
	for rows.Next() {
		var a registration.Attempt
		var draft []byte
		if err := rows.Scan(&a.ID, &a.EventID, &a.TicketID, &a.IdempotencyKey, &a.RequestHash, &a.Email, &a.CreatedAt, &a.ResolveAfter, &draft); err != nil {
			return nil, fmt.Errorf("scan attempt: %w", err)
		}
		a.CreatedAt, a.ResolveAfter = a.CreatedAt.UTC(), a.ResolveAfter.UTC()
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
	if _, err := s.db.SQL.ExecContext(ctx, `UPDATE seat_holds SET expires_at = $1 WHERE id = $2`, after.UTC(), id); err != nil {
		return fmt.Errorf("postpone attempt: %w", err)
	}
	return nil
}

// RecordIncident keeps a payment event for operators. An incident a person
// must act on (a failed refund, a charge whose outcome stayed unknown) also
// becomes a notice to the organisers, in the same transaction.
func (s *Store) RecordIncident(ctx context.Context, in registration.Incident) error {
	return s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		detail := truncate(in.Detail, 1000)
		if _, err := tx.ExecContext(ctx, `INSERT INTO payment_incidents (attempt_id, kind, provider, reference,
			amount, currency, detail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			in.AttemptID, in.Kind, in.Provider, in.Reference, in.Amount, in.Currency, detail,
			in.CreatedAt.UTC()); err != nil {
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
		return nil
	})
}

// Registration implements registration.Store and admin.Store: the
// registration with its steps.
func (s *Store) Registration(ctx context.Context, id string) (registration.Registration, error) {
	r, err := scanRegistration(s.db.SQL.QueryRowContext(ctx, `SELECT `+registrationColumns+`
		FROM registrations WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, registration.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read registration: %w", err)
	}
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT step, status, attempts, last_error FROM registration_steps
		WHERE registration_id = $1`, id)
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

func nullable(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// searchSep separates the fields of a registration's search column.
const searchSep = "\x1f"

// searchText is a registration's search column: what the back office's
// search finds a part of, lower-cased here so that any letter folds, not
// only ASCII ones.
func searchText(first, last, email, company string) string {
	return strings.ToLower(first + " " + last + searchSep + email + searchSep + company)
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
	var consented, cancelled, anonymised sql.NullTime
	b := &r.Billing
	if err := sc.Scan(&r.ID, &r.EventID, &r.TicketID, &r.Status, &r.Amount, &r.Currency, &r.FirstName, &r.LastName,
		&r.Email, &r.Company, &r.Newsletter, &consented, &r.Payment.Provider, &r.Payment.Reference, &r.Payment.Brand,
		&r.Payment.Last4, &b.Line1, &b.Line2, &b.City, &b.PostalCode, &b.Region, &b.Country, &r.Refunded, &cancelled,
		&r.NewsletterConsentText, &anonymised, &r.CreatedAt, &r.UpdatedAt); err != nil {
		return r, err
	}
	r.NewsletterConsentedAt, r.CancelledAt = fromNull(consented), fromNull(cancelled)
	r.AnonymisedAt = fromNull(anonymised)
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, nil
}

// nullTime is t, or NULL for the zero time.
func nullTime(t time.Time) sql.NullTime { return sql.NullTime{Time: t.UTC(), Valid: !t.IsZero()} }

func fromNull(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// insertSteps inserts a registration's steps with one statement.
func insertSteps(ctx context.Context, tx *sql.Tx, id string, steps []registration.Step, created time.Time) error {
	if len(steps) == 0 {
		return nil
	}
	names := make([]string, len(steps))
	statuses := make([]string, len(steps))
	for i, st := range steps {
		names[i], statuses[i] = string(st.Name), string(st.Status)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO registration_steps (registration_id, step, status, attempts, last_error, updated_at)
		SELECT $1, s.step, s.status, 0, '', $4 FROM unnest($2::text[], $3::text[]) AS s(step, status)`,
		id, names, statuses, created); err != nil {
		return fmt.Errorf("insert steps: %w", err)
	}
	return nil
}
