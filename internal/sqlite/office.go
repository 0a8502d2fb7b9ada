package sqlite

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

// The back office's writes run in transactions of their own on the single
// writer connection (River's too): each is a handful of statements on rows
// of one registration, so they hold the writer only briefly. SQLite runs one
// write transaction at a time, so the checks they make (a refund within the
// charge, a cancellation not already done) cannot race.

// tx runs fn in a write transaction and commits it.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// registrationTx reads a registration (without steps) inside tx.
func registrationTx(ctx context.Context, tx *sql.Tx, id string) (registration.Registration, error) {
	r, err := scanRegistration(tx.QueryRowContext(ctx, `SELECT `+registrationColumns+` FROM registrations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, registration.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read registration: %w", err)
	}
	return r, nil
}

// EditAttendee implements pipeline.OfficeStore.
func (s *Store) EditAttendee(ctx context.Context, id string, e registration.AttendeeEdit, audit registration.AuditEntry) (registration.Registration, error) {
	var old registration.Registration
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if old, err = registrationTx(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET first_name = ?, last_name = ?, email = ?, company = ?,
			search = ?, email_key = ?, updated_at = ? WHERE id = ?`, e.FirstName, e.LastName, e.Email, e.Company,
			searchText(e.FirstName, e.LastName, e.Email, e.Company), registration.EmailKey(e.Email), formatTime(s.now()), id); err != nil {
			return fmt.Errorf("edit attendee: %w", err)
		}
		return s.auditTx(ctx, tx, audit)
	})
	return old, err
}

// CancelRegistration implements pipeline.OfficeStore. The seat goes back on
// sale in the same transaction; with refund non-nil, the refund is recorded
// as RequestRefund records it.
func (s *Store) CancelRegistration(ctx context.Context, id string, refund *registration.Refund, audit registration.AuditEntry, then registration.TxFunc) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		r, err := registrationTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.Status == registration.StatusCancelled {
			return registration.ErrAlreadyCancelled
		}
		now := formatTime(s.now())
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET status = 'cancelled', cancelled_at = ?, updated_at = ?
			WHERE id = ?`, now, now, id); err != nil {
			return fmt.Errorf("cancel registration: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken - 1
			WHERE event_id = ? AND ticket_id = ? AND taken > 0`, r.EventID, r.TicketID); err != nil {
			return fmt.Errorf("release seat: %w", err)
		}
		if refund != nil {
			rf := *refund
			rf.RegistrationID = id
			if err := s.requestRefund(ctx, tx, r, rf); err != nil {
				return err
			}
		}
		if err := s.auditTx(ctx, tx, audit); err != nil {
			return err
		}
		return runThen(ctx, tx, then)
	})
}

// RequestRefund implements pipeline.OfficeStore.
func (s *Store) RequestRefund(ctx context.Context, rf registration.Refund, audit registration.AuditEntry, then registration.TxFunc) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		r, err := registrationTx(ctx, tx, rf.RegistrationID)
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
// its amount. r was read in tx: the single writer makes the check and the
// reservation one step.
func (s *Store) requestRefund(ctx context.Context, tx *sql.Tx, r registration.Registration, rf registration.Refund) error {
	if rf.ID == "" || rf.Amount <= 0 {
		return fmt.Errorf("refund %q of %d: an id and a positive amount are required", rf.ID, rf.Amount)
	}
	var dup int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM refunds WHERE id = ?`, rf.ID).Scan(&dup); err != nil {
		return fmt.Errorf("check refund: %w", err)
	}
	if dup > 0 {
		return registration.ErrDuplicate
	}
	if r.Amount == 0 {
		return registration.ErrNothingToRefund
	}
	res, err := tx.ExecContext(ctx, `UPDATE registrations SET refund_reserved = refund_reserved + ?
		WHERE id = ? AND refund_reserved + ? <= amount`, rf.Amount, r.ID, rf.Amount)
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
	at := formatTime(created)
	if _, err := tx.ExecContext(ctx, `INSERT INTO refunds (id, registration_id, amount, currency, state, reference, error,
		reason, requested_by, created_at, updated_at) VALUES (?, ?, ?, ?, 'requested', '', '', ?, ?, ?, ?)`,
		rf.ID, r.ID, rf.Amount, r.Currency, rf.Reason, rf.RequestedBy, at, at); err != nil {
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
	var created, updated string
	if err := sc.Scan(&rf.ID, &rf.RegistrationID, &rf.Amount, &rf.Currency, &rf.State, &rf.Reference, &rf.Error,
		&rf.Reason, &rf.RequestedBy, &created, &updated); err != nil {
		return rf, err
	}
	var err error
	if rf.CreatedAt, err = parseTime(created); err != nil {
		return rf, err
	}
	rf.UpdatedAt, err = parseTime(updated)
	return rf, err
}

// Refund implements pipeline.OfficeStore.
func (s *Store) Refund(ctx context.Context, id string) (registration.Refund, error) {
	rf, err := scanRefund(s.db.Read.QueryRowContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return rf, registration.ErrNotFound
	}
	if err != nil {
		return rf, fmt.Errorf("read refund: %w", err)
	}
	return rf, nil
}

// FinishRefund implements pipeline.OfficeStore. A refund already succeeded
// or failed keeps its outcome.
func (s *Store) FinishRefund(ctx context.Context, id string, state registration.RefundState, reference, errMsg string, at time.Time) error {
	switch state {
	case registration.RefundPending, registration.RefundSucceeded, registration.RefundFailed:
	default:
		return fmt.Errorf("finish refund %s: %q is not an outcome", id, state)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		rf, err := scanRefund(tx.QueryRowContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return registration.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read refund: %w", err)
		}
		if rf.State != registration.RefundRequested && rf.State != registration.RefundPending {
			return nil
		}
		errMsg = truncate(errMsg, 1000)
		if _, err := tx.ExecContext(ctx, `UPDATE refunds SET state = ?, reference = ?, error = ?, updated_at = ? WHERE id = ?`,
			state, reference, errMsg, formatTime(at), id); err != nil {
			return fmt.Errorf("finish refund: %w", err)
		}
		switch state {
		case registration.RefundSucceeded:
			if _, err := tx.ExecContext(ctx, `UPDATE registrations SET refunded = refunded + ?, updated_at = ? WHERE id = ?`,
				rf.Amount, formatTime(at), rf.RegistrationID); err != nil {
				return fmt.Errorf("add refunded amount: %w", err)
			}
		case registration.RefundFailed:
			if _, err := tx.ExecContext(ctx, `UPDATE registrations SET refund_reserved = refund_reserved - ?, updated_at = ? WHERE id = ?`,
				rf.Amount, formatTime(at), rf.RegistrationID); err != nil {
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

// RetrySteps implements pipeline.OfficeStore.
func (s *Store) RetrySteps(ctx context.Context, id string, audit registration.AuditEntry,
	then func(ctx context.Context, tx *sql.Tx, steps []registration.StepName) error) ([]registration.StepName, error) {
	var steps []registration.StepName
	err := s.tx(ctx, func(tx *sql.Tx) error {
		steps = nil
		var status registration.Status
		err := tx.QueryRowContext(ctx, `SELECT status FROM registrations WHERE id = ?`, id).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return registration.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read registration: %w", err)
		}
		if status == registration.StatusCancelled {
			return nil
		}
		now := formatTime(s.now())
		rows, err := tx.QueryContext(ctx, `UPDATE registration_steps SET status = 'retrying', updated_at = ?
			WHERE registration_id = ? AND status = 'failed' RETURNING step`, now, id)
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
		if err := rows.Close(); err != nil {
			return fmt.Errorf("retry steps: %w", err)
		}
		if err := rows.Err(); err != nil {
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
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET status = 'processing', updated_at = ?
			WHERE id = ? AND status = 'needs_attention'`, now, id); err != nil {
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
	return s.tx(ctx, func(tx *sql.Tx) error {
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
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM registrations WHERE id = ?`, m.RegistrationID).Scan(&n); err != nil {
		return fmt.Errorf("read registration: %w", err)
	}
	if n == 0 {
		return registration.ErrNotFound
	}
	created := m.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	at := formatTime(created)
	res, err := tx.ExecContext(ctx, `INSERT INTO messages (id, registration_id, kind, to_address, state, reference, error,
		requested_by, created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', '', '', ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		m.ID, m.RegistrationID, m.Kind, m.To, m.RequestedBy, at, at)
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
	var created, updated string
	if err := sc.Scan(&m.ID, &m.RegistrationID, &m.Kind, &m.To, &m.State, &m.Reference, &m.Error, &m.RequestedBy,
		&created, &updated); err != nil {
		return m, err
	}
	var err error
	if m.CreatedAt, err = parseTime(created); err != nil {
		return m, err
	}
	m.UpdatedAt, err = parseTime(updated)
	return m, err
}

// Message implements pipeline.OfficeStore.
func (s *Store) Message(ctx context.Context, id string) (registration.Message, error) {
	m, err := scanMessage(s.db.Read.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = ?`, id))
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
	if _, err := s.db.Write.ExecContext(ctx, `UPDATE messages SET state = 'sending', updated_at = ?
		WHERE id = ? AND state IN ('queued', 'sending')`, formatTime(s.now()), id); err != nil {
		return fmt.Errorf("record message sending: %w", err)
	}
	return nil
}

// MessageSentTx implements pipeline.OfficeStore.
func (s *Store) MessageSentTx(ctx context.Context, tx *sql.Tx, id, reference string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE messages SET state = 'sent', reference = ?, error = '', updated_at = ?
		WHERE id = ?`, reference, formatTime(s.now()), id); err != nil {
		return fmt.Errorf("record message sent: %w", err)
	}
	return nil
}

// MessageFailed implements pipeline.OfficeStore. A message sent stays sent.
func (s *Store) MessageFailed(ctx context.Context, id, errMsg string) error {
	if _, err := s.db.Write.ExecContext(ctx, `UPDATE messages SET state = 'failed', error = ?, updated_at = ?
		WHERE id = ? AND state <> 'sent'`, truncate(errMsg, 1000), formatTime(s.now()), id); err != nil {
		return fmt.Errorf("record message failed: %w", err)
	}
	return nil
}

// insertNotice records something organisers must be told, inside tx.
func insertNotice(ctx context.Context, tx *sql.Tx, kind registration.NoticeKind, regID, detail string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO organiser_notices (kind, registration_id, detail, created_at)
		VALUES (?, ?, ?, ?)`, kind, nullable(regID), truncate(detail, 2000), formatTime(at)); err != nil {
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
	rows, err := s.db.Read.QueryContext(ctx, `SELECT id, kind, coalesce(registration_id, ''), detail, created_at
		FROM organiser_notices WHERE sent_at IS NULL ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read notices: %w", err)
	}
	defer rows.Close()
	var out []registration.Notice
	for rows.Next() {
		var n registration.Notice
		var created string
		if err := rows.Scan(&n.ID, &n.Kind, &n.RegistrationID, &n.Detail, &created); err != nil {
			return nil, fmt.Errorf("scan notice: %w", err)
		}
		if n.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
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
	list, err := jsonInts(ids)
	if err != nil {
		return err
	}
	if _, err := s.db.Write.ExecContext(ctx, `UPDATE organiser_notices SET sent_at = ?
		WHERE sent_at IS NULL AND id IN (SELECT value FROM json_each(?))`, formatTime(at), list); err != nil {
		return fmt.Errorf("record notices sent: %w", err)
	}
	return nil
}

// Audit implements admin.Store and pipeline.OfficeStore.
func (s *Store) Audit(ctx context.Context, e registration.AuditEntry) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return s.auditTx(ctx, tx, e) })
}

// auditTx records e inside tx; a zero At is now.
func (s *Store) auditTx(ctx context.Context, tx *sql.Tx, e registration.AuditEntry) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (at, actor, action, registration_id, detail, address)
		VALUES (?, ?, ?, ?, ?, ?)`, formatTime(e.At), e.Actor, e.Action, nullable(e.RegistrationID),
		truncate(e.Detail, 4000), e.Address); err != nil {
		return fmt.Errorf("record audit entry: %w", err)
	}
	return nil
}
