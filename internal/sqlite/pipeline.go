package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/registrar/registrar/internal/registration"
)

// StartPipelineTx marks a paid registration as processing.
func (s *Store) StartPipelineTx(ctx context.Context, tx *sql.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE registrations SET status = 'processing', updated_at = ?
		WHERE id = ? AND status = 'paid'`, formatTime(s.now()), id); err != nil {
		return fmt.Errorf("start pipeline: %w", err)
	}
	return nil
}

// StepStarted records that an attempt of a step began, in a write of its own.
func (s *Store) StepStarted(ctx context.Context, id string, step registration.StepName) error {
	return s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error { return s.StepsStartedTx(ctx, tx, id, step) })
}

// StepsStartedTx records in tx that an attempt of each of steps began. A
// paid registration, or one an operator is retrying, goes to processing
// unless a step not among them is still failed and so still needs
// attention.
func (s *Store) StepsStartedTx(ctx context.Context, tx *sql.Tx, id string, steps ...registration.StepName) error {
	now := formatTime(s.now())
	names, err := stepNames(steps)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE registration_steps SET status = 'running', attempts = attempts + 1, updated_at = ?
		WHERE registration_id = ? AND step IN (SELECT value FROM json_each(?)) AND status NOT IN ('succeeded', 'skipped')`,
		now, id, names); err != nil {
		return fmt.Errorf("mark steps running: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE registrations SET status = 'processing', updated_at = ?
		WHERE id = ? AND status IN ('paid', 'needs_attention') AND NOT EXISTS (SELECT 1 FROM registration_steps
			WHERE registration_id = ? AND step NOT IN (SELECT value FROM json_each(?)) AND status = 'failed')`,
		now, id, id, names); err != nil {
		return fmt.Errorf("mark registration processing: %w", err)
	}
	return nil
}

// stepNames is steps as a JSON array, for json_each.
func stepNames(steps []registration.StepName) (string, error) {
	b, err := json.Marshal(steps)
	if err != nil {
		return "", fmt.Errorf("step names: %w", err)
	}
	return string(b), nil
}

// StepFailed records a failed attempt. A final failure marks the
// registration as needing attention and tells the organisers (a notice, in
// the same transaction); a cancelled registration stays cancelled.
func (s *Store) StepFailed(ctx context.Context, id string, step registration.StepName, msg string, final bool) error {
	return s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error { return s.StepFailedTx(ctx, tx, id, step, msg, final) })
}

// StepFailedTx records a failed attempt in tx, as StepFailed does.
func (s *Store) StepFailedTx(ctx context.Context, tx *sql.Tx, id string, step registration.StepName, msg string, final bool) error {
	at := s.now()
	now := formatTime(at)
	status := registration.StepRetrying
	if final {
		status = registration.StepFailed
	}
	msg = truncate(msg, 1000)
	if _, err := tx.ExecContext(ctx, `UPDATE registration_steps SET status = ?, last_error = ?, updated_at = ?
	WHERE registration_id = ? AND step = ? AND status NOT IN ('succeeded', 'skipped')`,
		status, msg, now, id, step); err != nil {
		return fmt.Errorf("mark step failed: %w", err)
	}
	if final {
		res, err := tx.ExecContext(ctx, `UPDATE registrations SET status = 'needs_attention', updated_at = ?
		WHERE id = ? AND status NOT IN ('completed', 'cancelled')`, now, id)
		if err != nil {
			return fmt.Errorf("mark registration needs attention: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			if err := insertNotice(ctx, tx, registration.NoticeNeedsAttention, id, string(step)+": "+msg, at); err != nil {
				return err
			}
		}
	}
	return nil
}

// FinishStepTx marks a step succeeded and, when it was the last one
// outstanding, the registration completed (the fan-in). A step already done
// (a re-run of its job) keeps its recorded attempts, and a skipped step stays
// skipped. A cancelled registration stays cancelled.
func (s *Store) FinishStepTx(ctx context.Context, tx *sql.Tx, id string, step registration.StepName) error {
	return s.FinishStepsTx(ctx, tx, id, step)
}

// FinishStepsTx is FinishStepTx for several steps at once.
func (s *Store) FinishStepsTx(ctx context.Context, tx *sql.Tx, id string, steps ...registration.StepName) error {
	now := formatTime(s.now())
	names, err := stepNames(steps)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE registration_steps SET status = 'succeeded', updated_at = ?
		WHERE registration_id = ? AND step IN (SELECT value FROM json_each(?)) AND status NOT IN ('succeeded', 'skipped')`,
		now, id, names); err != nil {
		return fmt.Errorf("mark steps succeeded: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE registrations SET status = 'completed', updated_at = ?
		WHERE id = ? AND status <> 'cancelled' AND NOT EXISTS (SELECT 1 FROM registration_steps
			WHERE registration_id = ? AND status NOT IN ('succeeded', 'skipped'))`, now, id, id); err != nil {
		return fmt.Errorf("complete registration: %w", err)
	}
	return nil
}

// SaveOrderTx upserts the order of a registration (SaveOrder).
func (s *Store) SaveOrderTx(ctx context.Context, tx *sql.Tx, r registration.Registration) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (registration_id, event_id, ticket_id, amount, currency,
		first_name, last_name, email, company, payment_provider, payment_reference, saved_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (registration_id) DO UPDATE SET event_id = excluded.event_id, ticket_id = excluded.ticket_id,
			amount = excluded.amount, currency = excluded.currency, first_name = excluded.first_name,
			last_name = excluded.last_name, email = excluded.email, company = excluded.company,
			payment_provider = excluded.payment_provider, payment_reference = excluded.payment_reference,
			saved_at = excluded.saved_at`,
		r.ID, r.EventID, r.TicketID, r.Amount, r.Currency, r.FirstName, r.LastName, r.Email, r.Company,
		r.Payment.Provider, r.Payment.Reference, formatTime(s.now())); err != nil {
		return fmt.Errorf("save order: %w", err)
	}
	return nil
}

// EmailSent reports whether the confirmation of a registration was sent.
func (s *Store) EmailSent(ctx context.Context, id string) (bool, error) {
	var state string
	err := s.db.Write.QueryRowContext(ctx, `SELECT state FROM email_deliveries WHERE registration_id = ?`, id).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read email delivery: %w", err)
	}
	return state == "sent", nil
}

// EmailSending records that a confirmation is about to be handed to the
// mailer, so a crash before EmailSentTx is known to have been in doubt.
func (s *Store) EmailSending(ctx context.Context, id string) error {
	return s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return emailSending(ctx, tx, id, formatTime(s.now()))
	})
}

// EmailSendingTx records in tx what EmailSending records.
func (s *Store) EmailSendingTx(ctx context.Context, tx *sql.Tx, id string) error {
	return emailSending(ctx, tx, id, formatTime(s.now()))
}

func emailSending(ctx context.Context, tx *sql.Tx, id, now string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO email_deliveries (registration_id, state, updated_at)
		VALUES (?, 'sending', ?) ON CONFLICT (registration_id) DO UPDATE SET updated_at = excluded.updated_at
		WHERE email_deliveries.state = 'sending'`, id, now); err != nil {
		return fmt.Errorf("record email sending: %w", err)
	}
	return nil
}

// EmailSentTx records that the mailer accepted the confirmation.
func (s *Store) EmailSentTx(ctx context.Context, tx *sql.Tx, id, reference string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE email_deliveries SET state = 'sent', reference = ?, updated_at = ?
		WHERE registration_id = ?`, reference, formatTime(s.now()), id); err != nil {
		return fmt.Errorf("record email sent: %w", err)
	}
	return nil
}

// Subscribe adds or updates an address on the local mailing list, keyed by
// the lower-cased address; the consent time is kept from the first consent.
// A new address is subscribed at once, without being asked to confirm: it
// is for addresses whose owner confirmed already. Attendees go through
// SubscribePending (the pipeline's double opt-in) instead; an address
// pending there stays pending.
func (s *Store) Subscribe(ctx context.Context, sub registration.Subscriber) error {
	now := formatTime(s.now())
	return s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return subscribe(ctx, tx, sub, now)
	})
}

func subscribe(ctx context.Context, tx *sql.Tx, sub registration.Subscriber, now string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO mailing_list (email, first_name, last_name, event_id,
		registration_id, consented_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (email) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name,
			event_id = excluded.event_id, registration_id = excluded.registration_id, updated_at = excluded.updated_at`,
		strings.ToLower(sub.Email), sub.FirstName, sub.LastName, sub.EventID, sub.RegistrationID, now, now); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// WriteSteps implements pipeline.Store: on SQLite every write is
// group-committed already, so it is Write.
func (s *Store) WriteSteps(ctx context.Context, _ string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.batch.Do(ctx, fn)
}

// Write implements pipeline.Store: writes share transactions with others
// arriving at the same time (group commit).
func (s *Store) Write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.batch.Do(ctx, fn)
}
