package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/registrar/registrar/internal/postgres/pgtest"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testURL, inSchema and newSchema are pgtest's, under the names this
// package's tests use.
func testURL(t testing.TB) string { return pgtest.URL(t) }

func inSchema(t testing.TB, conn, schema string) string { return pgtest.InSchema(t, conn, schema) }

func newSchema(t testing.TB) string { return pgtest.NewSchema(t, "registrar_test_") }

// open opens url and closes the database when the test ends.
func open(t testing.TB, url string) *DB {
	t.Helper()
	db, err := Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// openDB returns a migrated database in a schema of its own.
func openDB(t testing.TB) *DB {
	t.Helper()
	db := open(t, newSchema(t))
	if err := db.Migrate(t.Context(), discardLog()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

// dollars rewrites ? placeholders as $1, $2, ...
func dollars(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func queryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestOpenKeepsThePasswordSecret(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55"
	tests := []string{
		"postgres://registrar:" + secret + "@127.0.0.1:1/registrar?sslmode=disable&connect_timeout=2",
		"postgres://registrar:" + secret + "@127.0.0.1:notaport/registrar",
		"postgres://registrar:" + secret + "@127.0.0.1:5432/registrar?sslmode=bogus",
		"postgres://registrar:" + secret + "@127.0.0.1:5432/registrar?pool_max_conns=many",
		"host=127.0.0.1 port=1 user=registrar password=" + secret + " dbname=registrar sslmode=disable connect_timeout=2",
		"host=127.0.0.1 port=1 user=registrar password='" + secret + "' dbname=registrar sslmode=nope",
		"postgres://registrar:" + secret + "@[::1:5432/registrar",
	}
	for _, u := range tests {
		db, err := Open(t.Context(), u)
		if err == nil {
			db.Close()
			t.Errorf("Open(%s) succeeded; want an error", strings.ReplaceAll(u, secret, "…"))
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open error reveals the password: %v", err)
		}
	}
}

func TestOpenPoolSize(t *testing.T) {
	t.Parallel()
	base := newSchema(t)
	tests := []struct {
		extra string
		want  int
	}{
		{"", defaultMaxConns},
		{"pool_max_conns=3", 3},
	}
	for _, tt := range tests {
		u := base
		if tt.extra != "" {
			if strings.Contains(u, "://") {
				u += "&" + tt.extra
			} else {
				u += " " + tt.extra
			}
		}
		db := open(t, u)
		if got := db.SQL.Stats().MaxOpenConnections; got != tt.want {
			t.Errorf("Open(%q): pool of %d connections; want %d", tt.extra, got, tt.want)
		}
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := open(t, newSchema(t))
	if err := db.Ready(ctx); err == nil {
		t.Error("Ready passed on an unmigrated database")
	}
	if err := db.Migrate(ctx, discardLog()); err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if err := db.Migrate(ctx, discardLog()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("Ready after Migrate: %v", err)
	}
	if SchemaVersion() < 2 {
		t.Fatalf("SchemaVersion() = %d; want at least 2", SchemaVersion())
	}
	if got, want := queryInt(t, db.SQL, `SELECT count(*) FROM schema_migrations`), SchemaVersion(); got != want {
		t.Errorf("schema_migrations has %d rows after two migrations; want %d (one per migration)", got, want)
	}
	// River's tables exist too, in the same schema.
	if got := queryInt(t, db.SQL, `SELECT count(*) FROM river_job`); got != 0 {
		t.Errorf("river_job has %d rows in a fresh database", got)
	}
	// And the advisory lock was released: another session can take it.
	var free bool
	if err := db.SQL.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, migrateLock).Scan(&free); err != nil || !free {
		t.Errorf("the migration lock is still held after Migrate (%v)", err)
	}
	if _, err := db.SQL.ExecContext(ctx, `SELECT pg_advisory_unlock_all()`); err != nil {
		t.Fatal(err)
	}

	newer := SchemaVersion() + 1
	if _, err := db.SQL.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'from_the_future.sql', now())`, newer); err != nil {
		t.Fatal(err)
	}
	err := db.Migrate(ctx, discardLog())
	if err == nil {
		t.Fatal("Migrate accepted a database of a newer schema")
	}
	for _, want := range []string{fmt.Sprintf("version %d", newer), fmt.Sprintf("only up to %d", SchemaVersion()), "run the newer registrar"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Migrate error = %q; want it to contain %q", err, want)
		}
	}
	if err := db.Ready(ctx); err == nil {
		t.Error("Ready passed on a database of a newer schema")
	}
}

// TestConcurrentMigrate starts four processes' worth of Migrate on one empty
// schema at once: all succeed and each migration is applied once.
func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	url := newSchema(t)
	const n = 4
	dbs := make([]*DB, n)
	for i := range dbs {
		dbs[i] = open(t, url)
	}
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() {
			<-start
			errs[i] = db.Migrate(t.Context(), discardLog())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	db := dbs[0].SQL
	if got, want := queryInt(t, db, `SELECT count(*) FROM schema_migrations`), SchemaVersion(); got != want {
		t.Errorf("schema_migrations has %d rows; want %d", got, want)
	}
	if got := queryInt(t, db, `SELECT count(*) FROM (SELECT version FROM river_migration GROUP BY line, version HAVING count(*) > 1) d`); got != 0 {
		t.Errorf("%d River migrations recorded twice", got)
	}
	for i, d := range dbs {
		if err := d.Ready(t.Context()); err != nil {
			t.Errorf("Ready %d: %v", i, err)
		}
	}
}

// TestConcurrentFanIn commits the last steps of a registration at the same
// moment, 50 times: at READ COMMITTED each transaction could miss the
// other's success and leave the registration processing for ever.
func TestConcurrentFanIn(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openDB(t)
	s := NewStore(db)
	ev := &event.Event{ID: "testconf", Currency: "EUR", Tickets: []event.Ticket{{ID: "standard", Price: 14900, Capacity: 100}}}
	if err := s.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		newsletter := i%2 == 0 // three steps finish at once, or two and one is skipped
		r := newRegistration(t, s, ev, newsletter)
		var steps []registration.StepName
		for _, st := range r.Steps {
			if !st.Status.Done() {
				steps = append(steps, st.Name)
			}
		}
		if err := s.EmailSending(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		// Every transaction has done its activity's write before any
		// finishes its step.
		var ready sync.WaitGroup
		ready.Add(len(steps))
		errs := make(chan error, len(steps))
		var wg sync.WaitGroup
		for _, step := range steps {
			wg.Go(func() {
				errs <- func() error {
					tx, err := s.BeginTx(ctx)
					if err != nil {
						ready.Done()
						return err
					}
					defer tx.Rollback()
					switch step {
					case registration.StepSaveOrder:
						err = s.SaveOrderTx(ctx, tx, r)
					case registration.StepSendConfirmation:
						err = s.EmailSentTx(ctx, tx, r.ID, "ref")
					}
					ready.Done()
					if err != nil {
						return err
					}
					ready.Wait()
					if err := s.FinishStepTx(ctx, tx, r.ID, step); err != nil {
						return err
					}
					return tx.Commit()
				}()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		got, err := s.Registration(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != registration.StatusCompleted {
			t.Fatalf("round %d: registration is %s with steps %+v after its last steps finished together; want completed", i, got.Status, got.Steps)
		}
	}
}

// newRegistration stores a paid registration in processing.
func newRegistration(t *testing.T, s *Store, ev *event.Event, newsletter bool) registration.Registration {
	t.Helper()
	ctx := t.Context()
	id, err := registration.NewID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	a := registration.Attempt{ID: id, EventID: ev.ID, TicketID: "standard", CreatedAt: now, ResolveAfter: now.Add(time.Minute)}
	if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	r := registration.Registration{ID: id, EventID: ev.ID, TicketID: "standard", Status: registration.StatusPaid,
		Amount: 14900, Currency: "EUR", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.org",
		Newsletter: newsletter, Payment: payment.Charge{Provider: "test", Reference: "ref", Brand: "visa", Last4: "1111"},
		CreatedAt: now, UpdatedAt: now}
	for _, name := range registration.Steps {
		st := registration.StepPending
		if name == registration.StepAddToMailingList && !newsletter {
			st = registration.StepSkipped
		}
		r.Steps = append(r.Steps, registration.Step{Name: name, Status: st})
	}
	if err := s.CompleteAttempt(ctx, a, r, func(ctx context.Context, tx *sql.Tx, id string) error {
		return s.StartPipelineTx(ctx, tx, id)
	}); err != nil {
		t.Fatal(err)
	}
	return r
}
