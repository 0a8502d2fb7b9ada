package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// Availability implements registration.Store: every ticket's seats, taken
// and held.
func (s *Store) Availability(ctx context.Context, eventID string) (map[string]registration.Availability, error) {
	rows, err := s.db.Read.QueryContext(ctx, `SELECT ticket_id, capacity, taken, held FROM ticket_stock WHERE event_id = ?`, eventID)
	if err != nil {
		return nil, fmt.Errorf("read availability: %w", err)
	}
	defer rows.Close()
	out := map[string]registration.Availability{}
	for rows.Next() {
		var id string
		var a registration.Availability
		if err := rows.Scan(&id, &a.Capacity, &a.Taken, &a.Held); err != nil {
			return nil, fmt.Errorf("scan availability: %w", err)
		}
		out[id] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read availability: %w", err)
	}
	return out, nil
}

// RecentRegistrations implements registration.Store: the ticket's
// registrations by one email address (compared by EmailKey) since a moment,
// not cancelled, newest first, at most 10, without steps.
func (s *Store) RecentRegistrations(ctx context.Context, eventID, ticketID, email string, since time.Time) ([]registration.Registration, error) {
	rows, err := s.db.Read.QueryContext(ctx, `SELECT `+registrationColumns+` FROM registrations
		WHERE event_id = ? AND ticket_id = ? AND email_key = ? AND created_at >= ? AND status <> 'cancelled'
		ORDER BY created_at DESC LIMIT 10`, eventID, ticketID, registration.EmailKey(email), formatTime(since))
	if err != nil {
		return nil, fmt.Errorf("read recent registrations: %w", err)
	}
	defer rows.Close()
	var out []registration.Registration
	for rows.Next() {
		r, err := scanRegistration(rows)
		if err != nil {
			return nil, fmt.Errorf("scan registration: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read recent registrations: %w", err)
	}
	return out, nil
}
