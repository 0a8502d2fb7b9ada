package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/registrar/registrar/internal/registration"
)

// AnonymiseRegistration implements pipeline.OfficeStore.
func (s *Store) AnonymiseRegistration(ctx context.Context, id string, audit registration.AuditEntry, then registration.TxFunc) (registration.Registration, []string, error) {
	var old registration.Registration
	var messages []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if old, err = registrationTx(ctx, tx, id); err != nil {
			return err
		}
		if old.Anonymised() {
			return registration.ErrAlreadyAnonymised
		}
		now := formatTime(s.now())
		email := registration.ErasedEmail(id)
		name := registration.ErasedName
		terms := registration.PersonalTerms(old)
		stmts := []struct {
			what  string
			query string
			args  []any
		}{
			{"erase registration", `UPDATE registrations SET first_name = ?, last_name = ?, email = ?, company = '',
				billing_line1 = '', billing_line2 = '', billing_city = '', billing_postal_code = '', billing_region = '',
				search = ?, email_key = ?, anonymised_at = ?, updated_at = ? WHERE id = ?`,
				[]any{name, name, email, searchText(name, name, email, ""), registration.EmailKey(email), now, now, id}},
			{"erase order", `UPDATE orders SET first_name = ?, last_name = ?, email = ?, company = '' WHERE registration_id = ?`,
				[]any{name, name, email, id}},
			{"erase mailing list entry", `DELETE FROM mailing_list WHERE registration_id = ? OR email = ?`,
				[]any{id, registration.EmailKey(old.Email)}},
			{"erase messages", `UPDATE messages SET to_address = ?,
				error = CASE WHEN state IN ('queued', 'sending') THEN ? ELSE '' END,
				state = CASE WHEN state IN ('queued', 'sending') THEN 'failed' ELSE state END,
				updated_at = ? WHERE registration_id = ?`, []any{email, registration.ErasedMessageError, now, id}},
			{"skip steps", `UPDATE registration_steps SET status = 'skipped', last_error = ?, updated_at = ?
				WHERE registration_id = ? AND step IN ('send_confirmation', 'add_to_mailing_list')
				AND status NOT IN ('succeeded', 'skipped')`, []any{registration.ErasedStepNotice, now, id}},
			{"erase step errors", `UPDATE registration_steps SET last_error = '' WHERE registration_id = ? AND last_error <> ?`,
				[]any{id, registration.ErasedStepNotice}},
			{"complete registration", `UPDATE registrations SET status = 'completed'
				WHERE id = ? AND status NOT IN ('cancelled', 'completed', 'paid') AND NOT EXISTS (SELECT 1 FROM registration_steps
				WHERE registration_id = ? AND status NOT IN ('succeeded', 'skipped'))`, []any{id, id}},
			{"erase audit details", `UPDATE audit_log SET detail = ? WHERE registration_id = ? AND action IN ('edit', 'resend')`,
				[]any{registration.ErasedDetail, id}},
			{"forget seat hold", `DELETE FROM seat_holds WHERE id = ?`, []any{id}},
		}
		for _, st := range stmts {
			if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
				return fmt.Errorf("%s: %w", st.what, err)
			}
		}
		// Free text that may quote the attendee: the other audit entries,
		// refund reasons and errors, payment incidents and notices.
		for _, c := range []struct{ table, key, column, where string }{
			{"audit_log", "id", "detail", "registration_id = ?"},
			{"refunds", "id", "reason", "registration_id = ?"},
			{"refunds", "id", "error", "registration_id = ?"},
			{"payment_incidents", "id", "detail", "attempt_id = ?"},
			{"organiser_notices", "id", "detail", "registration_id = ?"},
		} {
			if err := scrubColumn(ctx, tx, c.table, c.key, c.column, c.where, id, terms); err != nil {
				return err
			}
		}
		if err := scrubJobErrors(ctx, tx, id, terms); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM messages WHERE registration_id = ? ORDER BY id`, id)
		if err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var mid string
			if err := rows.Scan(&mid); err != nil {
				return fmt.Errorf("read messages: %w", err)
			}
			messages = append(messages, mid)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		if audit.Action != "" {
			if err := s.auditTx(ctx, tx, audit); err != nil {
				return err
			}
		}
		return runThen(ctx, tx, then)
	})
	return old, messages, err
}

// scrubColumn replaces terms in column of the rows of table matching where
// (with the one argument arg). The names are the store's own constants.
func scrubColumn(ctx context.Context, tx *sql.Tx, table, key, column, where, arg string, terms []string) error {
	return registration.ScrubRows(ctx, tx, table+"."+column,
		`SELECT `+key+`, `+column+` FROM `+table+` WHERE `+where+` AND `+column+` <> ''`, []any{arg},
		`UPDATE `+table+` SET `+column+` = ? WHERE `+key+` = ?`, terms)
}

// scrubJobErrors replaces terms in the errors River recorded for the jobs of
// the registration (a provider's message may quote the address).
func scrubJobErrors(ctx context.Context, tx *sql.Tx, id string, terms []string) error {
	return registration.ScrubRows(ctx, tx, "job errors",
		`SELECT id, json(errors) FROM river_job WHERE json_extract(args, '$.registration_id') = ? AND errors IS NOT NULL`,
		[]any{id}, `UPDATE river_job SET errors = jsonb(?) WHERE id = ?`, terms)
}

// RegistrationsToAnonymise implements pipeline.OfficeStore.
func (s *Store) RegistrationsToAnonymise(ctx context.Context, eventID string, limit int) ([]string, error) {
	rows, err := s.db.Read.QueryContext(ctx, `SELECT id FROM registrations WHERE event_id = ? AND anonymised_at IS NULL
		ORDER BY id LIMIT ?`, eventID, limit)
	if err != nil {
		return nil, fmt.Errorf("list registrations to anonymise: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list registrations to anonymise: %w", err)
		}
		ids = append(ids, id)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list registrations to anonymise: %w", err)
	}
	return ids, nil
}
