package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/registrar/registrar/internal/metrics"
)

// OperatorStats implements metrics.StatsSource: the event's seats,
// registrations by status and refunds by state, the job queue's jobs by
// queue and state and the age of each queue's oldest available job, and
// the payment incidents by kind, read in one snapshot so that the figures
// agree with each other.
func (s *Store) OperatorStats(ctx context.Context, eventID string) (metrics.OperatorStats, error) {
	st := metrics.OperatorStats{
		Registrations:   map[string]int64{},
		Jobs:            map[metrics.JobKey]int64{},
		OldestAvailable: map[string]time.Duration{},
		Incidents:       map[string]int64{},
		Refunds:         map[string]int64{},
	}
	tx, err := s.db.SQL.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return st, fmt.Errorf("operator stats: %w", err)
	}
	defer tx.Rollback()
	now := s.now()
	// taken counts the paid seats and the held ones.
	rows, err := tx.QueryContext(ctx, `SELECT t.ticket_id, t.capacity, t.taken - h.held, h.held, greatest(t.capacity - t.taken, 0)
		FROM ticket_stock t
		CROSS JOIN LATERAL (SELECT count(*) AS held FROM seat_holds s
			WHERE s.event_id = t.event_id AND s.ticket_id = t.ticket_id) h
		WHERE t.event_id = $1 ORDER BY t.ticket_id`, eventID)
	if err != nil {
		return st, fmt.Errorf("operator stats: tickets: %w", err)
	}
	for rows.Next() {
		var t metrics.TicketSeats
		if err := rows.Scan(&t.Ticket, &t.Capacity, &t.Sold, &t.Held, &t.Left); err != nil {
			rows.Close()
			return st, fmt.Errorf("operator stats: tickets: %w", err)
		}
		st.Tickets = append(st.Tickets, t)
	}
	if err := closeRows(rows); err != nil {
		return st, fmt.Errorf("operator stats: tickets: %w", err)
	}
	if err := countInto(ctx, tx, st.Registrations, `SELECT status, count(*) FROM registrations
		WHERE event_id = $1 GROUP BY status`, eventID); err != nil {
		return st, fmt.Errorf("operator stats: registrations: %w", err)
	}
	if err := countInto(ctx, tx, st.Incidents, `SELECT kind, count(*) FROM payment_incidents GROUP BY kind`); err != nil {
		return st, fmt.Errorf("operator stats: payment incidents: %w", err)
	}
	if err := countInto(ctx, tx, st.Refunds, `SELECT f.state, count(*) FROM refunds f
		JOIN registrations r ON r.id = f.registration_id WHERE r.event_id = $1 GROUP BY f.state`, eventID); err != nil {
		return st, fmt.Errorf("operator stats: refunds: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT queue, state::text, count(*), min(scheduled_at) FROM river_job
		WHERE state IN ('available', 'running', 'retryable', 'discarded', 'scheduled') GROUP BY queue, state`)
	if err != nil {
		return st, fmt.Errorf("operator stats: jobs: %w", err)
	}
	for rows.Next() {
		var k metrics.JobKey
		var n int64
		var oldest time.Time
		if err := rows.Scan(&k.Queue, &k.State, &n, &oldest); err != nil {
			rows.Close()
			return st, fmt.Errorf("operator stats: jobs: %w", err)
		}
		st.Jobs[k] = n
		if k.State == "available" {
			st.OldestAvailable[k.Queue] = max(now.Sub(oldest), 0)
		}
	}
	if err := closeRows(rows); err != nil {
		return st, fmt.Errorf("operator stats: jobs: %w", err)
	}
	return st, nil
}
