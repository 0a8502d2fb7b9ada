package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

// Backlog is what registrar did on a database holding a large queue of
// activity jobs whose providers are stalled.
type Backlog struct {
	Registrations int     `json:"registrations"`
	Jobs          int     `json:"jobs"` // queued activity jobs seeded
	SeedS         float64 `json:"seed_s"`
	DatabaseMiB   float64 `json:"database_mib"`
	// StartMS is from registrar's exec to its first 200 from /readyz.
	StartMS float64 `json:"start_ms"`
	RunS    float64 `json:"run_s"`
	// PeakRSSMiB is VmHWM at the end of the run; SteadyRSSMiB the median
	// VmRSS over its second half. RSSMiB has one VmRSS sample a second.
	PeakRSSMiB   float64   `json:"peak_rss_mib"`
	SteadyRSSMiB float64   `json:"steady_rss_mib"`
	RSSMiB       []float64 `json:"rss_mib"`
	CPUSeconds   float64   `json:"cpu_s"`
	// Calls the stalled fakes held, and for how many distinct registrations
	// (SendGrid) or subscribers (Mailchimp): proof the seeded jobs ran.
	EmailCalls         int `json:"email_calls"`
	EmailRegistrations int `json:"email_registrations"`
	ListCalls          int `json:"list_calls"`
	ListSubscribers    int `json:"list_subscribers"`
	// JobsBefore and JobsAfter count river_job rows by "kind state", after
	// seeding and after registrar stopped.
	JobsBefore map[string]int `json:"jobs_before"`
	JobsAfter  map[string]int `json:"jobs_after"`
	LogFile    string         `json:"log_file,omitempty"`
}

// measureBacklog seeds a backlog of o.backlog activity jobs, starts
// registrar on it with SendGrid and Mailchimp stalled, and samples its
// memory for o.backlogFor.
func measureBacklog(ctx context.Context, o options, dir string, getenv func(string) string, log *slog.Logger) (*Backlog, error) {
	fk := newFakes(o.providerDelay)
	fk.stall = make(chan struct{})
	fakesURL, stopFakes, err := serveFakes(fk, o.fakeAddr)
	if err != nil {
		return nil, err
	}
	defer stopFakes()
	releaseStall := sync1(func() { close(fk.stall) })
	defer releaseStall()

	regs := o.backlog / 3
	b := &Backlog{Registrations: regs, Jobs: 3 * regs}
	if err := prepareDataDir(o, dir, regs); err != nil {
		return nil, err
	}
	env := registrarEnv(o, dir, "127.0.0.1:0", fakesURL, getenv)
	if err := migrate(ctx, o.registrar, dir, env); err != nil {
		return nil, err
	}
	store := backlogStore(sqliteBacklog(sqlitePath(dir)))
	if o.database != "" {
		store = postgresBacklog(o.database)
	}
	t0 := time.Now()
	log.Info("seeding the backlog", "registrations", regs, "jobs", 3*regs, "engine", store.engine())
	if err := store.seed(ctx, regs, o.backlogBatch, log); err != nil {
		return nil, err
	}
	b.SeedS = time.Since(t0).Seconds()
	size, err := store.size(ctx)
	if err != nil {
		return nil, err
	}
	b.DatabaseMiB = float64(size) / (1 << 20)
	if b.JobsBefore, err = store.countJobs(ctx); err != nil {
		return nil, err
	}
	log.Info("seeded", "s", b.SeedS, "database_mib", b.DatabaseMiB)

	if err := runOnBacklog(ctx, o, dir, env, releaseStall, b, log); err != nil {
		return nil, err
	}
	if b.JobsAfter, err = store.countJobs(ctx); err != nil {
		return nil, err
	}
	b.EmailCalls, b.EmailRegistrations = fk.stalledCount("sendgrid")
	b.ListCalls, b.ListSubscribers = fk.stalledCount("mailchimp")
	return b, nil
}

// backlogStore is the database a backlog is seeded into: SQLite (the
// default) or PostgreSQL (-database).
type backlogStore interface {
	engine() string
	// seed writes regs registrations with their jobs, batch per transaction.
	seed(ctx context.Context, regs, batch int, log *slog.Logger) error
	// size is the database's size on disk in bytes.
	size(ctx context.Context) (int64, error)
	// countJobs counts river_job rows by "kind state".
	countJobs(ctx context.Context) (map[string]int, error)
}

// sqliteBacklog is the SQLite file at this path.
type sqliteBacklog string

func (p sqliteBacklog) engine() string { return "sqlite" }

func (p sqliteBacklog) seed(ctx context.Context, regs, batch int, log *slog.Logger) error {
	return seedSQLite(ctx, string(p), regs, batch, log)
}

func (p sqliteBacklog) size(context.Context) (int64, error) {
	return fileSize(string(p)) + fileSize(string(p)+"-wal"), nil
}

func (p sqliteBacklog) countJobs(ctx context.Context) (map[string]int, error) {
	return countJobs(ctx, string(p))
}

// sync1 returns a function that runs f on its first call only.
func sync1(f func()) func() {
	done := false
	return func() {
		if !done {
			done = true
			f()
		}
	}
}

// runOnBacklog starts registrar on the seeded database, samples its RSS
// once a second for o.backlogFor, and stops it.
// release ends the providers' stall, so that registrar stops without
// waiting for held calls.
func runOnBacklog(ctx context.Context, o options, dir string, env []string, release func(), b *Backlog, log *slog.Logger) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	execAt := time.Now()
	c, err := spawn(ctx, o.registrar, dir, env, log)
	if err != nil {
		return err
	}
	defer c.stop(log)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ready := <-pollAsync(rctx, restartPoll, func(ctx context.Context) bool { return readyzOK(ctx, tr, c.baseURL) })
	if ready.IsZero() {
		return fmt.Errorf("registrar on the backlog was not ready within 5 minutes; its log: %s", tail(c.logPath))
	}
	b.StartMS = ms(ready.Sub(execAt))
	log.Info("registrar ready on the backlog", "after", ready.Sub(execAt).Round(time.Millisecond), "pid", c.pid())

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.After(o.backlogFor)
sampling:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.exited:
			return fmt.Errorf("registrar exited on the backlog (%v); its log: %s", c.waitErr, tail(c.logPath))
		case <-end:
			break sampling
		case <-tick.C:
			if rss, err := procStatus(c.pid(), "VmRSS"); err == nil {
				b.RSSMiB = append(b.RSSMiB, float64(rss)/(1<<20))
			}
		}
	}
	b.RunS = time.Since(ready).Seconds()
	if peak, err := procStatus(c.pid(), "VmHWM"); err == nil {
		b.PeakRSSMiB = float64(peak) / (1 << 20)
	}
	if cpu, err := procCPU(c.pid()); err == nil {
		b.CPUSeconds = cpu.Seconds()
	}
	b.SteadyRSSMiB = steadyRSS(b.RSSMiB)
	if o.keep || o.dataDir != "" {
		b.LogFile = c.logPath
	}
	release()
	c.stop(log)
	return nil
}

// steadyRSS is the median of the second half of the samples.
func steadyRSS(samples []float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	return medianOf(samples[len(samples)/2:]).Median
}

// migrate runs `registrar migrate` with env.
func migrate(ctx context.Context, bin, dir string, env []string) error {
	cmd := exec.CommandContext(ctx, bin, "migrate")
	cmd.Env, cmd.Dir = env, dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("registrar migrate: %w: %s", err, out)
	}
	return nil
}

// openSeedDB opens the SQLite database for seeding, as registrar's writer.
func openSeedDB(path string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// seedSQLite writes regs paid registrations, each as registrar has it
// right after its "register" job ran: status processing, three pending
// steps (newsletter ticked, so none is skipped), the register job
// completed, and its three activity jobs queued — save_order,
// send_confirmation, add_to_mailing_list, inserted through River's own
// client with the unique options the pipeline uses, so kinds, args, unique
// keys and states are River's — plus the ticket's seats taken.
//
// The seeding bypasses the API on purpose: the measurement is about what
// registrar does with a large queue, not about filling it, and through the
// API (about 200 registrations/s, each also paying and running its
// pipeline, which would drain the queue while it fills) a million jobs
// would take hours. Writing the rows directly takes about a minute.
func seedSQLite(ctx context.Context, path string, regs, batch int, log *slog.Logger) error {
	db, err := openSeedDB(path)
	if err != nil {
		return err
	}
	defer db.Close()
	client, err := river.NewClient(riversqlite.New(db), &river.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("river client for seeding: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO ticket_stock (event_id, ticket_id, capacity, taken) VALUES ('loadfest', 'standard', ?, ?)
		ON CONFLICT (event_id, ticket_id) DO UPDATE SET capacity = excluded.capacity, taken = excluded.taken`, regs, regs); err != nil {
		return fmt.Errorf("seed ticket stock: %w", err)
	}
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	for done := 0; done < regs; done += batch {
		n := min(batch, regs-done)
		if err := seedBatch(ctx, db, client, run, done, n); err != nil {
			return err
		}
		if (done/batch)%20 == 19 {
			log.Info("seeding", "registrations", done+n, "of", regs)
		}
	}
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// seedBatch writes registrations first..first+n-1 in one transaction.
func seedBatch(ctx context.Context, db *sql.DB, client *river.Client[*sql.Tx], run string, first, n int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer tx.Rollback()
	regStmt, err := tx.PrepareContext(ctx, `INSERT INTO registrations (id, event_id, ticket_id, status, amount, currency,
		first_name, last_name, email, company, newsletter, payment_provider, payment_reference, card_brand, card_last4,
		created_at, updated_at) VALUES (?, 'loadfest', 'standard', 'processing', 14900, 'EUR', 'Backlog', ?, ?, 'Load Testing Ltd', 1,
		'paypal', ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer regStmt.Close()
	stepStmt, err := tx.PrepareContext(ctx, `INSERT INTO registration_steps (registration_id, step, status, attempts, last_error, updated_at)
		VALUES (?, ?, 'pending', 0, '', ?)`)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer stepStmt.Close()

	const card = "4111111111111111"
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	ids := make([]string, 0, n)
	for i := first; i < first+n; i++ {
		id, err := registration.NewID()
		if err != nil {
			return err
		}
		idx := strconv.Itoa(i)
		if _, err := regStmt.ExecContext(ctx, id, "Attendee "+idx, "backlog-"+run+"-"+idx+"@example.org",
			fmt.Sprintf("CAPTURE%09d", i), payment.Brand(card), payment.Last4(card), now, now); err != nil {
			return fmt.Errorf("seed registration: %w", err)
		}
		for _, st := range registration.Steps {
			if _, err := stepStmt.ExecContext(ctx, id, string(st), now); err != nil {
				return fmt.Errorf("seed step: %w", err)
			}
		}
		ids = append(ids, id)
	}
	if err := seedJobs(ctx, client, tx, ids, completeJobs); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// seedJobs inserts in tx the jobs of registrations whose register job ran:
// that job, marked completed by complete, and their three activity jobs,
// with the pipeline's unique options.
func seedJobs(ctx context.Context, client *river.Client[*sql.Tx], tx *sql.Tx, ids []string,
	complete func(ctx context.Context, tx *sql.Tx, jobIDs []int64) error) error {
	unique := &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
	registers := make([]river.InsertManyParams, 0, len(ids))
	activities := make([]river.InsertManyParams, 0, 3*len(ids))
	for _, id := range ids {
		registers = append(registers, river.InsertManyParams{Args: pipeline.RegisterArgs{RegistrationID: id}})
		activities = append(activities,
			river.InsertManyParams{Args: pipeline.SaveOrderArgs{RegistrationID: id}, InsertOpts: unique},
			river.InsertManyParams{Args: pipeline.SendConfirmationArgs{RegistrationID: id}, InsertOpts: unique},
			river.InsertManyParams{Args: pipeline.AddToMailingListArgs{RegistrationID: id}, InsertOpts: unique})
	}
	res, err := client.InsertManyTx(ctx, tx, registers)
	if err != nil {
		return fmt.Errorf("seed register jobs: %w", err)
	}
	jobIDs := make([]int64, 0, len(res))
	for _, r := range res {
		jobIDs = append(jobIDs, r.Job.ID)
	}
	if len(jobIDs) > 0 {
		if err := complete(ctx, tx, jobIDs); err != nil {
			return err
		}
	}
	if _, err := client.InsertManyTx(ctx, tx, activities); err != nil {
		return fmt.Errorf("seed activity jobs: %w", err)
	}
	return nil
}

// completeJobs marks the register jobs just inserted (SQLite) as completed
// by one attempt, as their run left them.
func completeJobs(ctx context.Context, tx *sql.Tx, ids []int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE river_job SET state = 'completed', attempt = 1,
		attempted_at = datetime('now', 'subsec'), finalized_at = datetime('now', 'subsec')
		WHERE id BETWEEN ? AND ? AND kind = ?`, slices.Min(ids), slices.Max(ids), pipeline.KindRegister); err != nil {
		return fmt.Errorf("complete register jobs: %w", err)
	}
	return nil
}

// countJobs counts river_job rows by "kind state".
func countJobs(ctx context.Context, path string) (map[string]int, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	db, err := openSeedDB(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return scanJobCounts(ctx, db)
}

// scanJobCounts counts db's river_job rows by "kind state".
func scanJobCounts(ctx context.Context, db *sql.DB) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT kind, state, count(*) FROM river_job GROUP BY kind, state`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var kind, state string
		var n int
		if err := rows.Scan(&kind, &state, &n); err != nil {
			return nil, fmt.Errorf("count jobs: %w", err)
		}
		out[kind+" "+state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	return out, nil
}
