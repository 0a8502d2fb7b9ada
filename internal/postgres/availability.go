package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/registrar/registrar/internal/registration"
)

// Availability implements registration.Store: every ticket's seats, taken
// and held.
func (s *Store) Availability(ctx context.Context, eventID string) (map[string]registration.Availability, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT t.ticket_id, t.capacity, t.taken,
			(SELECT count(*) FROM seat_holds h WHERE h.event_id = t.event_id AND h.ticket_id = t.ticket_id)
		FROM ticket_stock t WHERE t.event_id = $1`, eventID)
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

// recentLimit is how many registrations RecentRegistrations returns at most.
const recentLimit = 10

// RecentRegistrations implements registration.Store: the ticket's
// registrations by one email address (compared lower-cased, see
// emailMatch) since a moment, not cancelled, newest first, without steps.
func (s *Store) RecentRegistrations(ctx context.Context, eventID, ticketID, email string, since time.Time) ([]registration.Registration, error) {
	email = strings.ToLower(email)
	cond, arg, inGo := emailMatch(email, 3)
	query := `SELECT ` + registrationColumns + ` FROM registrations
		WHERE event_id = $1 AND ticket_id = $2 AND ` + cond + ` AND created_at >= $4 AND status <> 'cancelled'
		ORDER BY created_at DESC`
	if !inGo {
		query += fmt.Sprintf(` LIMIT %d`, recentLimit)
	}
	rows, err := s.db.SQL.QueryContext(ctx, query, eventID, ticketID, arg, since.UTC())
	if err != nil {
		return nil, fmt.Errorf("read recent registrations: %w", err)
	}
	defer rows.Close()
	var out []registration.Registration
	for rows.Next() && len(out) < recentLimit {
		r, err := scanRegistration(rows)
		if err != nil {
			return nil, fmt.Errorf("scan registration: %w", err)
		}
		if !inGo || strings.ToLower(r.Email) == email {
			out = append(out, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read recent registrations: %w", err)
	}
	return out, nil
}

// emailMatch is the condition (with its one argument, placeholder $n) on
// registrations.email that finds the addresses equal to email, lower-cased,
// once lower-cased as the service lower-cases them (Go's strings.ToLower);
// inGo reports that the rows it finds must still be compared so. An ASCII
// address is found through the index on lower(email). How PostgreSQL
// lower-cases other letters depends on the database's LC_CTYPE (under C,
// not at all), so an address with other letters, which can only be the
// lower case of an address having some too, is compared in Go among those
// of the ticket.
// (Two letters lower-case to ASCII ones, the Kelvin sign and the capital I
// with a dot; an address spelled with them is not found from its ASCII
// spelling.)
func emailMatch(email string, n int) (cond string, arg any, inGo bool) {
	if isASCII(email) {
		return fmt.Sprintf("lower(email) = $%d", n), email, false
	}
	return fmt.Sprintf("email ~ $%d", n), "[^ -~]", true
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
