package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

// The local mailing list's double opt-in: an attendee who consents is
// pending, with the SHA-256 of one confirmation token, until the owner of
// the address follows the link; only then are they subscribed (and
// exported). The token itself is never stored.

var _ pipeline.OptInList = (*Store)(nil)

// SubscribePending implements pipeline.OptInList: sub's address is pending
// with tokenHash as its one working link (replacing any earlier one), its
// consent time kept from the first consent (the registration's own
// consent time when it has one). An address already subscribed stays so,
// with no link; its names follow sub, and sub's registration is marked
// confirmed as of the address's confirmation.
func (s *Store) SubscribePending(ctx context.Context, sub registration.Subscriber, tokenHash string) (bool, error) {
	if tokenHash == "" {
		return false, errors.New("subscribe pending: a confirmation token hash is required")
	}
	now := formatTime(s.now())
	var ask bool
	err := s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		ask = false // a batch may run a write twice
		var erased bool
		err := tx.QueryRowContext(ctx, `SELECT anonymised_at IS NOT NULL FROM registrations WHERE id = ?`,
			sub.RegistrationID).Scan(&erased)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("subscribe pending: %w", err)
		}
		if erased {
			return nil // erased meanwhile (a step in flight): never listed again
		}
		var status string
		var confirmed sql.NullString
		if err := tx.QueryRowContext(ctx, `INSERT INTO mailing_list (email, first_name, last_name, event_id,
			registration_id, consented_at, updated_at, status, confirm_token_hash)
			VALUES (?1, ?2, ?3, ?4, ?5, COALESCE((SELECT newsletter_consented_at FROM registrations WHERE id = ?5), ?6), ?6, 'pending', ?7)
			ON CONFLICT (email) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name,
				event_id = excluded.event_id, registration_id = excluded.registration_id, updated_at = excluded.updated_at,
				confirm_token_hash = CASE WHEN mailing_list.status = 'pending' THEN excluded.confirm_token_hash END
			RETURNING status, confirmed_at`,
			registration.EmailKey(sub.Email), sub.FirstName, sub.LastName, sub.EventID, sub.RegistrationID, now, tokenHash).
			Scan(&status, &confirmed); err != nil {
			return fmt.Errorf("subscribe pending: %w", err)
		}
		if status == "pending" {
			ask = true
			return nil
		}
		at := now
		if confirmed.Valid {
			at = confirmed.String
		}
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET newsletter_confirmed_at = ?
			WHERE id = ? AND newsletter = 1 AND newsletter_confirmed_at IS NULL`, at, sub.RegistrationID); err != nil {
			return fmt.Errorf("mark newsletter confirmed: %w", err)
		}
		return nil
	})
	return ask, err
}

// PendingSubscription returns the pending subscriber whose confirmation
// link has tokenHash; registration.ErrNotFound when no link has it (never
// sent, replaced by a newer one, or used).
func (s *Store) PendingSubscription(ctx context.Context, tokenHash string) (registration.Subscriber, error) {
	var sub registration.Subscriber
	err := s.db.Read.QueryRowContext(ctx, `SELECT email, first_name, last_name, event_id, registration_id
		FROM mailing_list WHERE confirm_token_hash = ? AND status = 'pending'`, tokenHash).
		Scan(&sub.Email, &sub.FirstName, &sub.LastName, &sub.EventID, &sub.RegistrationID)
	if errors.Is(err, sql.ErrNoRows) {
		return sub, registration.ErrNotFound
	}
	if err != nil {
		return sub, fmt.Errorf("read pending subscription: %w", err)
	}
	return sub, nil
}

// ConfirmSubscription subscribes the pending address whose link has
// tokenHash, now, and clears the link so it works once. The address's
// consenting registrations are marked confirmed. registration.ErrNotFound
// when no pending link has tokenHash.
func (s *Store) ConfirmSubscription(ctx context.Context, tokenHash string) (registration.Subscriber, error) {
	now := formatTime(s.now())
	var sub registration.Subscriber
	var found bool
	err := s.batch.Do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		sub, found = registration.Subscriber{}, false // a batch may run a write twice
		err := tx.QueryRowContext(ctx, `UPDATE mailing_list SET status = 'subscribed', confirmed_at = ?1,
			confirm_token_hash = NULL, updated_at = ?1
			WHERE confirm_token_hash = ?2 AND status = 'pending'
			RETURNING email, first_name, last_name, event_id, registration_id`, now, tokenHash).
			Scan(&sub.Email, &sub.FirstName, &sub.LastName, &sub.EventID, &sub.RegistrationID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // not an error of the batch: its other writes stand
		}
		if err != nil {
			return fmt.Errorf("confirm subscription: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET newsletter_confirmed_at = ?1
			WHERE (id = ?2 OR (event_id = ?3 AND email_key = ?4)) AND newsletter = 1 AND newsletter_confirmed_at IS NULL`,
			now, sub.RegistrationID, sub.EventID, sub.Email); err != nil {
			return fmt.Errorf("mark newsletter confirmed: %w", err)
		}
		found = true
		return nil
	})
	if err == nil && !found {
		err = registration.ErrNotFound
	}
	return sub, err
}

// NewsletterState implements admin.Store: when the registration's address
// was confirmed, or whether it awaits confirmation on the local list.
func (s *Store) NewsletterState(ctx context.Context, registrationID string) (admin.NewsletterState, error) {
	var st admin.NewsletterState
	var confirmed, listed sql.NullString
	err := s.db.Read.QueryRowContext(ctx, `SELECT r.newsletter_confirmed_at, ml.status
		FROM registrations r LEFT JOIN mailing_list ml ON ml.email = r.email_key
		WHERE r.id = ?`, registrationID).Scan(&confirmed, &listed)
	if errors.Is(err, sql.ErrNoRows) {
		return st, registration.ErrNotFound
	}
	if err != nil {
		return st, fmt.Errorf("read newsletter state: %w", err)
	}
	if st.ConfirmedAt, err = parseNullTime(confirmed); err != nil {
		return st, err
	}
	st.Pending = st.ConfirmedAt.IsZero() && listed.String == "pending"
	return st, nil
}
