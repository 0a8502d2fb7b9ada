package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

var (
	_ admin.Store          = (*Store)(nil)
	_ pipeline.OfficeStore = (*Store)(nil)
)

// The back office's writes each run in a transaction of their own, outside
// group commit, and lock the registration's row first (FOR NO KEY UPDATE,
// as the pipeline's step bookkeeping does: it serialises every writer of
// the row without blocking the inserts of rows that reference it). Under
// that lock, at READ COMMITTED, what a write checks (a refund within the
// charge, a cancellation not already done) cannot change before it commits.
// Rows of one registration are then locked in one order everywhere:
// registration, its refunds, then (cancelling only) the writers' lock and
// the ticket's stock row.

// lockRegistrationRow locks a registration's row until tx ends and returns
// it (without steps); ErrNotFound when there is none.
func lockRegistrationRow(ctx context.Context, tx *sql.Tx, id string) (registration.Registration, error) {
	r, err := scanRegistration(tx.QueryRowContext(ctx, `SELECT `+registrationColumns+` FROM registrations
		WHERE id = $1 FOR NO KEY UPDATE`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, registration.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("lock registration: %w", err)
	}
	return r, nil
}

// EditAttendee implements pipeline.OfficeStore.
func (s *Store) EditAttendee(ctx context.Context, id string, e registration.AttendeeEdit, audit registration.AuditEntry) (registration.Registration, error) {
	var old registration.Registration
	err := s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if old, err = lockRegistrationRow(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET first_name = $1, last_name = $2, email = $3, company = $4,
			search = $5, email_key = $6, updated_at = $7 WHERE id = $8`, e.FirstName, e.LastName, e.Email, e.Company,
			searchText(e.FirstName, e.LastName, e.Email, e.Company), registration.EmailKey(e.Email), s.now().UTC(), id); err != nil {
			return fmt.Errorf("edit attendee: %w", err)
		}
		return s.auditTx(ctx, tx, audit)
	})
	return old, err
}

// CancelRegistration implements pipeline.OfficeStore. The seat goes back on
// sale in the same transaction; with refund non-nil, the refund is recorded
// as RequestRefund records it.
//
// Giving the seat back locks the ticket's stock row, which group-commit
// batches lock too while holding the writers' advisory lock until they
// commit. The cancellation takes that advisory lock before it touches the
// stock row, as SyncTickets does, so it waits for a running batch (holding
// only the registration's row, which no batch ever waits for: batches
// insert registrations, they never lock existing ones) and then updates
// the stock row without waiting for anyone. No circle can form.
func (s *Store) CancelRegistration(ctx context.Context, id string, refund *registration.Refund, audit registration.AuditEntry, then registration.TxFunc) error {
	return s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		r, err := lockRegistrationRow(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.Status == registration.StatusCancelled {
			return registration.ErrAlreadyCancelled
		}
		now := s.now().UTC()
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET status = 'cancelled', cancelled_at = $1, updated_at = $1
			WHERE id = $2`, now, id); err != nil {
			return fmt.Errorf("cancel registration: %w", err)
		}
		if refund != nil {
			rf := *refund
			rf.RegistrationID = id
			if err := s.requestRefund(ctx, tx, r, rf); err != nil {
				return err
			}
		}
		if err := lockWriters(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken - 1
			WHERE event_id = $1 AND ticket_id = $2 AND taken > 0`, r.EventID, r.TicketID); err != nil {
			return fmt.Errorf("release seat: %w", err)
		}
		if err := s.auditTx(ctx, tx, audit); err != nil {
			return err
		}
		return runThen(ctx, tx, then)
	})
}

// RequestRefund implements pipeline.OfficeStore.
func (s *Store) RequestRefund(ctx context.Context, rf registration.Refund, audit registration.AuditEntry, then registration.TxFunc) error {
	return s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		r, err := lockRegistrationRow(ctx, tx, rf.RegistrationID)
		if err != nil {
			return err
		}
		if err := s.requestRefund(ctx, tx, r, rf); err != nil {
			return err
		}
		if err := s.auditTx(ctx, tx, audit); err != nil {
			return err
		}
		return runThen(ctx, tx, then)
	})
}

// requestRefund records rf as requested against registration r, reserving
// its amount. r's row is locked by tx, so no other refund of r can commit
// between the check and the reservation.
func (s *Store) requestRefund(ctx context.Context, tx *sql.Tx, r registration.Registration, rf registration.Refund) error {
	if rf.ID == "" || rf.Amount <= 0 {
		return fmt.Errorf("refund %q of %d: an id and a positive amount are required", rf.ID, rf.Amount)
	}
	var dup int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM refunds WHERE id = $1`, rf.ID).Scan(&dup); err != nil {
		return fmt.Errorf("check refund: %w", err)
	}
	if dup > 0 {
		return registration.ErrDuplicate
	}
	if r.Amount == 0 {
		return registration.ErrNothingToRefund
	}
	res, err := tx.ExecContext(ctx, `UPDATE registrations SET refund_reserved = refund_reserved + $1
		WHERE id = $2 AND refund_reserved + $1 <= amount`, rf.Amount, r.ID)
	if err != nil {
		return fmt.Errorf("reserve refund: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return registration.ErrRefundExceedsCharge
	}
	created := rf.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	// A refund of the same id inserted concurrently (for another
	// registration: the same one is serialised by its lock) fails here on
	// the primary key, and the whole request with it.
	if _, err := tx.ExecContext(ctx, `INSERT INTO refunds (id, registration_id, amount, currency, state, reference, error,
		reason, requested_by, created_at, updated_at) VALUES ($1, $2, $3, $4, 'requested', '', '', $5, $6, $7, $7)`,
		rf.ID, r.ID, rf.Amount, r.Currency, rf.Reason, rf.RequestedBy, created.UTC()); err != nil {
		return fmt.Errorf("record refund: %w", err)
	}
	return nil
}

func runThen(ctx context.Context, tx *sql.Tx, then registration.TxFunc) error {
	if then == nil {
		return nil
	}
	return then(ctx, tx)
}

const refundColumns = `id, registration_id, amount, currency, state, reference, error, reason, requested_by, created_at, updated_at`

func scanRefund(sc scanner) (registration.Refund, error) {
	var rf registration.Refund
	err := sc.Scan(&rf.ID, &rf.RegistrationID, &rf.Amount, &rf.Currency, &rf.State, &rf.Reference, &rf.Error,
		&rf.Reason, &rf.RequestedBy, &rf.CreatedAt, &rf.UpdatedAt)
	rf.CreatedAt, rf.UpdatedAt = rf.CreatedAt.UTC(), rf.UpdatedAt.UTC()
	return rf, err
}

// Refund implements pipeline.OfficeStore.
func (s *Store) Refund(ctx context.Context, id string) (registration.Refund, error) {
	rf, err := scanRefund(s.db.SQL.QueryRowContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return rf, registration.ErrNotFound
	}
	if err != nil {
		return rf, fmt.Errorf("read refund: %w", err)
	}
	return rf, nil
}

// FinishRefund implements pipeline.OfficeStore. A refund already succeeded
// or failed keeps its outcome. The registration's row is locked before the
// refund's, the order RequestRefund and CancelRegistration follow.
func (s *Store) FinishRefund(ctx context.Context, id string, state registration.RefundState, reference, errMsg string, at time.Time) error {
	switch state {
	case registration.RefundPending, registration.RefundSucceeded, registration.RefundFailed:
	default:
		return fmt.Errorf("finish refund %s: %q is not an outcome", id, state)
	}
	return s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var regID string
		err := tx.QueryRowContext(ctx, `SELECT registration_id FROM refunds WHERE id = $1`, id).Scan(&regID)
		if errors.Is(err, sql.ErrNoRows) {
			return registration.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read refund: %w", err)
		}
		if _, err := lockRegistrationRow(ctx, tx, regID); err != nil {
			return err
		}
		rf, err := scanRefund(tx.QueryRowContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return fmt.Errorf("read refund: %w", err)
		}
		if rf.State != registration.RefundRequested && rf.State != registration.RefundPending {
			return nil
		}
		at = at.UTC()
		errMsg = truncate(errMsg, 1000)
		if _, err := tx.ExecContext(ctx, `UPDATE refunds SET state = $1, reference = $2, error = $3, updated_at = $4 WHERE id = $5`,
			state, reference, errMsg, at, id); err != nil {
			return fmt.Errorf("finish refund: %w", err)
		}
		switch state {
		case registration.RefundSucceeded:
			if _, err := tx.ExecContext(ctx, `UPDATE registrations SET refunded = refunded + $1, updated_at = $2 WHERE id = $3`,
				rf.Amount, at, rf.RegistrationID); err != nil {
				return fmt.Errorf("add refunded amount: %w", err)
			}
		case registration.RefundFailed:
			if _, err := tx.ExecContext(ctx, `UPDATE registrations SET refund_reserved = refund_reserved - $1, updated_at = $2 WHERE id = $3`,
				rf.Amount, at, rf.RegistrationID); err != nil {
				return fmt.Errorf("free refund reservation: %w", err)
			}
			if err := insertNotice(ctx, tx, registration.NoticeRefundFailed, rf.RegistrationID, refundFailedDetail(rf, errMsg), at); err != nil {
				return err
			}
		}
		return nil
	})
}

func refundFailedDetail(rf registration.Refund, errMsg string) string {
	return fmt.Sprintf("refund %s of %d %s (minor units) failed: %s", rf.ID, rf.Amount, rf.Currency, errMsg)
}

// RetrySteps implements pipeline.OfficeStore. It locks the registration's
// row first, as the pipeline's step bookkeeping does.
func (s *Store) RetrySteps(ctx context.Context, id string, audit registration.AuditEntry,
	then func(ctx context.Context, tx *sql.Tx, steps []registration.StepName) error) ([]registration.StepName, error) {
	var steps []registration.StepName
	err := s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		steps = nil
		r, err := lockRegistrationRow(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.Status == registration.StatusCancelled {
			return nil
		}
		now := s.now().UTC()
		rows, err := tx.QueryContext(ctx, `UPDATE registration_steps SET status = 'retrying', updated_at = $1
			WHERE registration_id = $2 AND status = 'failed' RETURNING step`, now, id)
		if err != nil {
			return fmt.Errorf("retry steps: %w", err)
		}
		changed := map[registration.StepName]bool{}
		for rows.Next() {
			var st registration.StepName
			if err := rows.Scan(&st); err != nil {
				rows.Close()
				return fmt.Errorf("retry steps: %w", err)
			}
			changed[st] = true
		}
		if err := closeRows(rows); err != nil {
			return fmt.Errorf("retry steps: %w", err)
		}
		if len(changed) == 0 {
			return nil
		}
		for _, name := range registration.Steps {
			if changed[name] {
				steps = append(steps, name)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET status = 'processing', updated_at = $1
			WHERE id = $2 AND status = 'needs_attention'`, now, id); err != nil {
			return fmt.Errorf("retry registration: %w", err)
		}
		if err := s.auditTx(ctx, tx, audit); err != nil {
			return err
		}
		if then != nil {
			return then(ctx, tx, steps)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return steps, nil
}

// QueueMessage implements pipeline.OfficeStore.
func (s *Store) QueueMessage(ctx context.Context, m registration.Message, audit registration.AuditEntry, then registration.TxFunc) error {
	return s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := s.QueueMessageTx(ctx, tx, m); err != nil {
			return err
		}
		if err := s.auditTx(ctx, tx, audit); err != nil {
			return err
		}
		return runThen(ctx, tx, then)
	})
}

// QueueMessageTx records an email to an attendee as queued, in tx.
func (s *Store) QueueMessageTx(ctx context.Context, tx *sql.Tx, m registration.Message) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM registrations WHERE id = $1`, m.RegistrationID).Scan(&n); err != nil {
		return fmt.Errorf("read registration: %w", err)
	}
	if n == 0 {
		return registration.ErrNotFound
	}
	created := m.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO messages (id, registration_id, kind, to_address, state, reference, error,
		requested_by, created_at, updated_at) VALUES ($1, $2, $3, $4, 'queued', '', '', $5, $6, $6) ON CONFLICT (id) DO NOTHING`,
		m.ID, m.RegistrationID, m.Kind, m.To, m.RequestedBy, created.UTC())
	if err != nil {
		return fmt.Errorf("queue message: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return registration.ErrDuplicate
	}
	return nil
}

const messageColumns = `id, registration_id, kind, to_address, state, reference, error, requested_by, created_at, updated_at`

func scanMessage(sc scanner) (registration.Message, error) {
	var m registration.Message
	err := sc.Scan(&m.ID, &m.RegistrationID, &m.Kind, &m.To, &m.State, &m.Reference, &m.Error, &m.RequestedBy,
		&m.CreatedAt, &m.UpdatedAt)
	m.CreatedAt, m.UpdatedAt = m.CreatedAt.UTC(), m.UpdatedAt.UTC()
	return m, err
}

// Message implements pipeline.OfficeStore.
func (s *Store) Message(ctx context.Context, id string) (registration.Message, error) {
	m, err := scanMessage(s.db.SQL.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, registration.ErrNotFound
	}
	if err != nil {
		return m, fmt.Errorf("read message: %w", err)
	}
	return m, nil
}

// MessageSending implements pipeline.OfficeStore. A message sent or failed
// keeps its state.
func (s *Store) MessageSending(ctx context.Context, id string) error {
	if _, err := s.db.SQL.ExecContext(ctx, `UPDATE messages SET state = 'sending', updated_at = $1
		WHERE id = $2 AND state IN ('queued', 'sending')`, s.now().UTC(), id); err != nil {
		return fmt.Errorf("record message sending: %w", err)
	}
	return nil
}

// MessageSentTx implements pipeline.OfficeStore.
func (s *Store) MessageSentTx(ctx context.Context, tx *sql.Tx, id, reference string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE messages SET state = 'sent', reference = $1, error = '', updated_at = $2
		WHERE id = $3`, reference, s.now().UTC(), id); err != nil {
		return fmt.Errorf("record message sent: %w", err)
	}
	return nil
}

// MessageFailed implements pipeline.OfficeStore. A message sent stays sent.
func (s *Store) MessageFailed(ctx context.Context, id, errMsg string) error {
	if _, err := s.db.SQL.ExecContext(ctx, `UPDATE messages SET state = 'failed', error = $1, updated_at = $2
		WHERE id = $3 AND state <> 'sent'`, truncate(errMsg, 1000), s.now().UTC(), id); err != nil {
		return fmt.Errorf("record message failed: %w", err)
	}
	return nil
}

// insertNotice records something organisers must be told, inside tx.
func insertNotice(ctx context.Context, tx *sql.Tx, kind registration.NoticeKind, regID, detail string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO organiser_notices (kind, registration_id, detail, created_at)
		VALUES ($1, $2, $3, $4)`, kind, nullable(regID), truncate(detail, 2000), at.UTC()); err != nil {
		return fmt.Errorf("record notice: %w", err)
	}
	return nil
}

// incidentNotice is the notice an incident of kind k raises, if any.
func incidentNotice(k registration.IncidentKind) (registration.NoticeKind, bool) {
	switch k {
	case registration.IncidentRefundFailed:
		return registration.NoticeRefundFailed, true
	case registration.IncidentUnresolved:
		return registration.NoticePaymentUnresolved, true
	}
	return "", false
}

// PendingNotices implements pipeline.OfficeStore.
func (s *Store) PendingNotices(ctx context.Context, limit int) ([]registration.Notice, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT id, kind, coalesce(registration_id, ''), detail, created_at
		FROM organiser_notices WHERE sent_at IS NULL ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("read notices: %w", err)
	}
	defer rows.Close()
	var out []registration.Notice
	for rows.Next() {
		var n registration.Notice
		if err := rows.Scan(&n.ID, &n.Kind, &n.RegistrationID, &n.Detail, &n.CreatedAt); err != nil {
			return nil, fmt.Errorf("scan notice: %w", err)
		}
		n.CreatedAt = n.CreatedAt.UTC()
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read notices: %w", err)
	}
	return out, nil
}

// NoticesSent implements pipeline.OfficeStore.
func (s *Store) NoticesSent(ctx context.Context, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.db.SQL.ExecContext(ctx, `UPDATE organiser_notices SET sent_at = $1
		WHERE sent_at IS NULL AND id = ANY($2)`, at.UTC(), ids); err != nil {
		return fmt.Errorf("record notices sent: %w", err)
	}
	return nil
}

// Audit implements admin.Store and pipeline.OfficeStore.
func (s *Store) Audit(ctx context.Context, e registration.AuditEntry) error {
	return s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error { return s.auditTx(ctx, tx, e) })
}

// auditTx records e inside tx; a zero At is now.
func (s *Store) auditTx(ctx context.Context, tx *sql.Tx, e registration.AuditEntry) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (at, actor, action, registration_id, detail, address)
		VALUES ($1, $2, $3, $4, $5, $6)`, e.At.UTC(), e.Actor, e.Action, nullable(e.RegistrationID),
		truncate(e.Detail, 4000), e.Address); err != nil {
		return fmt.Errorf("record audit entry: %w", err)
	}
	return nil
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}
