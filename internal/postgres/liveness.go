package postgres

import (
	"context"
	"errors"
	"fmt"
)

// A worker that dies leaves its jobs "running". River retries them only
// after RescueStuckJobsAfter (minutes), because it cannot tell a dead worker
// from a slow one. Here each worker process holds a session-level advisory
// lock named after its River client id for as long as it lives: PostgreSQL
// releases the lock the moment the process's connection is gone, however it
// died. A job still running whose last attempt belongs to a client whose lock
// is free was therefore abandoned, and is made available again at once.

// livenessLock is the first half of the liveness lock key; the second half
// hashes the schema and the client id.
const livenessLock = 0x6c697665 // "live"

// Liveness is a held liveness lock.
type Liveness struct {
	release func() error
}

// Release gives up the lock, as a clean shutdown does after River stopped.
func (l *Liveness) Release() error { return l.release() }

// HoldLiveness takes the liveness lock of the River client id on a
// connection of its own, held until Release.
func (db *DB) HoldLiveness(ctx context.Context, clientID string) (*Liveness, error) {
	conn, err := db.SQL.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("liveness lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, hashtext(coalesce(current_schema(), '') || '/' || $2))`,
		livenessLock, clientID).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("liveness lock: %w", err)
	}
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("liveness lock: client id %q is held by another process", clientID)
	}
	return &Liveness{release: func() error {
		_, err := conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1, hashtext(coalesce(current_schema(), '') || '/' || $2))`,
			livenessLock, clientID)
		return errors.Join(err, conn.Close())
	}}, nil
}

// RescueAbandonedJobs makes available again the running jobs whose worker's
// liveness lock is free, and returns how many. A job of a client that never
// held the lock (a process of an older version) counts as abandoned too.
func (db *DB) RescueAbandonedJobs(ctx context.Context) (int64, error) {
	// The transaction-level try-locks are taken by this session and end with
	// the statement's transaction; a live worker's session lock makes them
	// fail.
	res, err := db.SQL.ExecContext(ctx, `
		WITH owners AS (
			SELECT DISTINCT attempted_by[array_upper(attempted_by, 1)] AS owner
			FROM river_job
			WHERE state = 'running' AND cardinality(attempted_by) > 0
		), dead AS (
			SELECT owner FROM owners
			WHERE pg_try_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '') || '/' || owner))
		)
		UPDATE river_job SET state = 'available', scheduled_at = now()
		WHERE state = 'running' AND attempted_by[array_upper(attempted_by, 1)] IN (SELECT owner FROM dead)`,
		livenessLock)
	if err != nil {
		return 0, fmt.Errorf("rescue abandoned jobs: %w", err)
	}
	return res.RowsAffected()
}
