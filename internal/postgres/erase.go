package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/registrar/registrar/internal/registration"
)

// AnonymiseRegistration implements pipeline.OfficeStore, under the lock on
// the registration's row every back-office write takes first.
func (s *Store) AnonymiseRegistration(ctx context.Context, id string, audit registration.AuditEntry, then registration.TxFunc) (registration.Registration, []string, error) {
	var old registration.Registration
	var messages []string
	err := s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		messages = nil
		var err error
		if old, err = lockRegistrationRow(ctx, tx, id); err != nil {
			return err
		}
		if old.Anonymised() {
			return registration.ErrAlreadyAnonymised
		}
		now := s.now().UTC()
		email := registration.ErasedEmail(id)
		name := registration.ErasedName
		terms := registration.PersonalTerms(old)
		stmts := []struct {
			what  string
			query string
			args  []any
		}{
			{"erase registration", `UPDATE registrations SET first_name = $1, last_name = $1, email = $2, company = '',
				billing_line1 = '', billing_line2 = '', billing_city = '', billing_postal_code = '', billing_region = '',
				search = $3, email_key = $4, anonymised_at = $5, updated_at = $5 WHERE id = $6`,
				[]any{name, email, searchText(name, name, email, ""), registration.EmailKey(email), now, id}},
			{"erase order", `UPDATE orders SET first_name = $1, last_name = $1, email = $2, company = '' WHERE registration_id = $3`,
				[]any{name, email, id}},
			{"erase mailing list entry", `DELETE FROM mailing_list WHERE registration_id = $1 OR email = $2`,
				[]any{id, registration.EmailKey(old.Email)}},
			{"erase messages", `UPDATE messages SET to_address = $1,
				error = CASE WHEN state IN ('queued', 'sending') THEN $2 ELSE '' END,
				state = CASE WHEN state IN ('queued', 'sending') THEN 'failed' ELSE state END,
				updated_at = $3 WHERE registration_id = $4`, []any{email, registration.ErasedMessageError, now, id}},
			{"skip steps", `UPDATE registration_steps SET status = 'skipped', last_error = $1, updated_at = $2
				WHERE registration_id = $3 AND step IN ('send_confirmation', 'add_to_mailing_list')
				AND status NOT IN ('succeeded', 'skipped')`, []any{registration.ErasedStepNotice, now, id}},
			{"erase step errors", `UPDATE registration_steps SET last_error = '' WHERE registration_id = $1 AND last_error <> $2`,
				[]any{id, registration.ErasedStepNotice}},
			{"complete registration", `UPDATE registrations SET status = 'completed'
				WHERE id = $1 AND status NOT IN ('cancelled', 'completed', 'paid') AND NOT EXISTS (SELECT 1 FROM registration_steps
				WHERE registration_id = $1 AND status NOT IN ('succeeded', 'skipped'))`, []any{id}},
			{"erase audit details", `UPDATE audit_log SET detail = $1 WHERE registration_id = $2 AND action IN ('edit', 'resend')`,
				[]any{registration.ErasedDetail, id}},
			{"forget seat hold", `DELETE FROM seat_holds WHERE id = $1`, []any{id}},
		}
		for _, st := range stmts {
			if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
				return fmt.Errorf("%s: %w", st.what, err)
			}
		}
		// Free text that may quote the attendee: the other audit entries,
		// refund reasons and errors, payment incidents and notices.
		for _, c := range []struct{ table, key, column, where string }{
			{"audit_log", "id", "detail", "registration_id = $1"},
			{"refunds", "id", "reason", "registration_id = $1"},
			{"refunds", "id", "error", "registration_id = $1"},
			{"payment_incidents", "id", "detail", "attempt_id = $1"},
			{"organiser_notices", "id", "detail", "registration_id = $1"},
		} {
			if err := scrubColumn(ctx, tx, c.table, c.key, c.column, c.where, id, terms); err != nil {
				return err
			}
		}
		if err := scrubJobErrors(ctx, tx, id, terms); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM messages WHERE registration_id = $1 ORDER BY id`, id)
		if err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		for rows.Next() {
			var mid string
			if err := rows.Scan(&mid); err != nil {
				rows.Close()
				return fmt.Errorf("read messages: %w", err)
			}
			messages = append(messages, mid)
		}
		if err := closeRows(rows); err != nil {
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
// (with the one argument arg, $1). The names are the store's own constants.
func scrubColumn(ctx context.Context, tx *sql.Tx, table, key, column, where, arg string, terms []string) error {
	return registration.ScrubRows(ctx, tx, table+"."+column,
		`SELECT `+key+`::text, `+column+` FROM `+table+` WHERE `+where+` AND `+column+` <> ''`, []any{arg},
		`UPDATE `+table+` SET `+column+` = $1 WHERE `+key+`::text = $2`, terms)
}

// scrubJobErrors replaces terms in the errors River recorded for the jobs of
// the registration (a provider's message may quote the address).
func scrubJobErrors(ctx context.Context, tx *sql.Tx, id string, terms []string) error {
	return registration.ScrubRows(ctx, tx, "job errors",
		`SELECT id, errors::text FROM river_job WHERE args->>'registration_id' = $1 AND errors IS NOT NULL`,
		[]any{id}, `UPDATE river_job SET errors = $1::jsonb[] WHERE id = $2`, terms)
}

// RegistrationsToAnonymise implements pipeline.OfficeStore.
func (s *Store) RegistrationsToAnonymise(ctx context.Context, eventID string, limit int) ([]string, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT id FROM registrations WHERE event_id = $1 AND anonymised_at IS NULL
		ORDER BY id LIMIT $2`, eventID, limit)
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
