package postgres

import (
	"strings"
	"testing"
)

// insertRunning adds a job running under the given clients' attempts (the
// last one is the current owner) and returns its id.
func insertRunning(t *testing.T, db *DB, attemptedBy ...string) int64 {
	t.Helper()
	var id int64
	err := db.SQL.QueryRowContext(t.Context(), `INSERT INTO river_job
		(args, kind, max_attempts, queue, state, attempt, attempted_at, attempted_by, scheduled_at)
		VALUES ('{}', 'save_order', 5, 'default', 'running', $1, now(), $2, now()) RETURNING id`,
		len(attemptedBy), "{"+strings.Join(attemptedBy, ",")+"}").Scan(&id)
	if err != nil {
		t.Fatalf("insert running job: %v", err)
	}
	return id
}

func jobState(t *testing.T, db *DB, id int64) string {
	t.Helper()
	var state string
	if err := db.SQL.QueryRowContext(t.Context(), `SELECT state FROM river_job WHERE id = $1`, id).Scan(&state); err != nil {
		t.Fatal(err)
	}
	return state
}

func TestRescueAbandonedJobs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openDB(t)
	live, err := db.HoldLiveness(ctx, "worker-live")
	if err != nil {
		t.Fatal(err)
	}
	dying, err := db.HoldLiveness(ctx, "worker-dying")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.HoldLiveness(ctx, "worker-live"); err == nil || !strings.Contains(err.Error(), "held by another process") {
		t.Errorf("a second lock on the same client id: err %v; want held by another process", err)
	}

	liveJob := insertRunning(t, db, "worker-live")
	// The dead worker's job was first tried by the live one: the last
	// attempt decides.
	dyingJob := insertRunning(t, db, "worker-live", "worker-dying")
	oldJob := insertRunning(t, db, "worker-before-locks")
	var completed int64
	if err := db.SQL.QueryRowContext(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, attempt, attempted_by, finalized_at)
		VALUES ('{}', 'save_order', 5, 'default', 'completed', 1, '{worker-gone}', now()) RETURNING id`).Scan(&completed); err != nil {
		t.Fatal(err)
	}

	n, err := db.RescueAbandonedJobs(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RescueAbandonedJobs = %d, %v; want 1 (the job of a client that never held a lock)", n, err)
	}
	if got := jobState(t, db, oldJob); got != "available" {
		t.Errorf("job of a lock-less client is %s; want available", got)
	}
	for _, id := range []int64{liveJob, dyingJob} {
		if got := jobState(t, db, id); got != "running" {
			t.Errorf("job %d of a live worker is %s; want running", id, got)
		}
	}

	// The worker dies: its session ends, and so does its lock.
	if err := dying.Release(); err != nil {
		t.Fatal(err)
	}
	n, err = db.RescueAbandonedJobs(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RescueAbandonedJobs after the death = %d, %v; want 1", n, err)
	}
	if got := jobState(t, db, dyingJob); got != "available" {
		t.Errorf("job of the dead worker is %s; want available", got)
	}
	if got := jobState(t, db, liveJob); got != "running" {
		t.Errorf("job of the live worker is %s; want running", got)
	}
	if got := jobState(t, db, completed); got != "completed" {
		t.Errorf("completed job is %s; want completed", got)
	}
	if err := live.Release(); err != nil {
		t.Fatal(err)
	}
	if n, err := db.RescueAbandonedJobs(ctx); err != nil || n != 1 {
		t.Errorf("RescueAbandonedJobs after the last worker stopped = %d, %v; want 1", n, err)
	}
}
