package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"

	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

// postgresBacklog is the PostgreSQL database at this URL, migrated by
// `registrar migrate` and otherwise empty.
type postgresBacklog string

func (u postgresBacklog) engine() string { return "postgres" }

func (u postgresBacklog) open() (*sql.DB, error) {
	db, err := sql.Open("pgx", string(u))
	if err != nil {
		return nil, fmt.Errorf("open the backlog database: %w", err)
	}
	db.SetMaxOpenConns(2)
	return db, nil
}

func (u postgresBacklog) size(ctx context.Context) (int64, error) {
	db, err := u.open()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
		return 0, fmt.Errorf("database size: %w", err)
	}
	return n, nil
}

func (u postgresBacklog) countJobs(ctx context.Context) (map[string]int, error) {
	db, err := u.open()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return scanJobCounts(ctx, db)
}

// seed writes the same rows as seedSQLite (see there), into PostgreSQL:
// registrations and steps by unnest, one multi-row INSERT per table and
// batch, the jobs through River's InsertManyTx on its database/sql driver.
func (u postgresBacklog) seed(ctx context.Context, regs, batch int, log *slog.Logger) error {
	db, err := u.open()
	if err != nil {
		return err
	}
	defer db.Close()
	var existing int
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM registrations) + (SELECT count(*) FROM river_job)`).Scan(&existing); err != nil {
		return fmt.Errorf("backlog database: %w", err)
	}
	if existing > 0 {
		return fmt.Errorf("-backlog needs a fresh PostgreSQL database: this one already holds %d registrations and jobs", existing)
	}
	client, err := river.NewClient(riverdatabasesql.New(db), &river.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("river client for seeding: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO ticket_stock (event_id, ticket_id, capacity, taken) VALUES ('loadfest', 'standard', $1, $1)
		ON CONFLICT (event_id, ticket_id) DO UPDATE SET capacity = excluded.capacity, taken = excluded.taken`, int64(regs)); err != nil {
		return fmt.Errorf("seed ticket stock: %w", err)
	}
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	for done := 0; done < regs; done += batch {
		n := min(batch, regs-done)
		if err := seedPostgresBatch(ctx, db, client, run, done, n); err != nil {
			return err
		}
		if (done/batch)%20 == 19 {
			log.Info("seeding", "registrations", done+n, "of", regs)
		}
	}
	// Fresh statistics, as autovacuum would gather them a little later.
	if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

// seedPostgresBatch writes registrations first..first+n-1 in one
// transaction.
func seedPostgresBatch(ctx context.Context, db *sql.DB, client *river.Client[*sql.Tx], run string, first, n int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer tx.Rollback()

	const card = "4111111111111111"
	now := time.Now().UTC()
	ids := make([]string, 0, n)
	lastNames := make([]string, 0, n)
	emails := make([]string, 0, n)
	refs := make([]string, 0, n)
	for i := first; i < first+n; i++ {
		id, err := registration.NewID()
		if err != nil {
			return err
		}
		idx := strconv.Itoa(i)
		ids = append(ids, id)
		lastNames = append(lastNames, "Attendee "+idx)
		emails = append(emails, "backlog-"+run+"-"+idx+"@example.org")
		refs = append(refs, fmt.Sprintf("CAPTURE%09d", i))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO registrations (id, event_id, ticket_id, status, amount, currency,
		first_name, last_name, email, company, newsletter, payment_provider, payment_reference, card_brand, card_last4,
		created_at, updated_at)
		SELECT r.id, 'loadfest', 'standard', 'processing', 14900, 'EUR', 'Backlog', r.last_name, r.email, 'Load Testing Ltd', true,
			'paypal', r.ref, $5, $6, $7, $7
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS r (id, last_name, email, ref)`,
		ids, lastNames, emails, refs, payment.Brand(card), payment.Last4(card), now); err != nil {
		return fmt.Errorf("seed registrations: %w", err)
	}
	steps := make([]string, 0, len(registration.Steps))
	for _, st := range registration.Steps {
		steps = append(steps, string(st))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO registration_steps (registration_id, step, status, attempts, last_error, updated_at)
		SELECT r.id, s.step, 'pending', 0, '', $3
		FROM unnest($1::text[]) WITH ORDINALITY AS r (id, n) CROSS JOIN unnest($2::text[]) AS s (step)
		ORDER BY r.n`, ids, steps, now); err != nil {
		return fmt.Errorf("seed steps: %w", err)
	}
	if err := seedJobs(ctx, client, tx, ids, completeJobsPostgres); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// completeJobsPostgres marks the register jobs just inserted as completed
// by one attempt, as their run left them.
func completeJobsPostgres(ctx context.Context, tx *sql.Tx, ids []int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE river_job SET state = 'completed', attempt = 1,
		attempted_at = now(), finalized_at = now()
		WHERE id = ANY($1::bigint[]) AND kind = $2`, ids, pipeline.KindRegister); err != nil {
		return fmt.Errorf("complete register jobs: %w", err)
	}
	return nil
}
