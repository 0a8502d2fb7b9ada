package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/registrar/registrar/internal/payment"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

var template struct {
	once sync.Once
	dir  string
	data []byte
	err  error
}

// TestMain removes the migrated template database.
func TestMain(m *testing.M) {
	code := m.Run()
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	os.Exit(code)
}

// migratedTemplate returns the bytes of a freshly migrated database, built
// once: migrating from scratch is slow under the race detector.
func migratedTemplate(t testing.TB) []byte {
	t.Helper()
	template.once.Do(func() {
		template.dir, template.err = os.MkdirTemp("", "registrar-sqlite-test-")
		if template.err != nil {
			return
		}
		path := filepath.Join(template.dir, "template.db")
		db, err := Open(context.Background(), path)
		if err != nil {
			template.err = err
			return
		}
		err = db.Migrate(context.Background(), discardLog())
		// Closing the last connection checkpoints the WAL into the file.
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			template.err = err
			return
		}
		template.data, template.err = os.ReadFile(path)
	})
	if template.err != nil {
		t.Fatalf("migrated template database: %v", template.err)
	}
	return template.data
}

// openDB opens and migrates a database file in t.TempDir(), copied from the
// migrated template (Migrate then has nothing left to do).
func openDB(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registrar.db")
	if err := os.WriteFile(path, migratedTemplate(t), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := db.Migrate(t.Context(), discardLog()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db, path
}

func queryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestOpenLocksTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "data", "registrar.db")
	first, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	second, err := Open(t.Context(), path)
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("second Open of the same file succeeded; want it refused while the first is open")
	}
	if !strings.Contains(err.Error(), "in use by another registrar process") || !strings.Contains(err.Error(), path) {
		t.Errorf("second Open error = %q; want it to name %s and say another registrar process uses it", err, path)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	third, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := third.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// A path holding characters of a file: URI ('#', '?', '%') is the file it
// names: not cut at the character into another name, which other paths with
// the same beginning would then share.
func TestOpenPathWithURICharacters(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, dir := range []string{"event#2", "event?2", "event%232", "event%"} {
		path := filepath.Join(root, dir, "registrar.db")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		db, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open %s: %v", path, err)
		}
		if err := db.Migrate(t.Context(), slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("Migrate %s: %v", path, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v; want the database there", path, err)
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"event#2", "event%", "event%232", "event?2"}; !slices.Equal(names, want) {
		t.Errorf("%s holds %q; want only the four directories %q", root, names, want)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "registrar.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, discardLog()); err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if err := db.Migrate(ctx, discardLog()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("Ready after Migrate: %v", err)
	}
	if got, want := queryInt(t, db.Write, `SELECT count(*) FROM schema_migrations`), SchemaVersion(); got != want {
		t.Errorf("schema_migrations has %d rows after two migrations; want %d (one per migration)", got, want)
	}
	if SchemaVersion() < 1 {
		t.Fatalf("SchemaVersion() = %d; want at least 1", SchemaVersion())
	}
	// River's tables exist too.
	if got := queryInt(t, db.Write, `SELECT count(*) FROM river_job`); got != 0 {
		t.Errorf("river_job has %d rows in a fresh database", got)
	}

	newer := SchemaVersion() + 1
	if _, err := db.Write.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future.sql', '2030-01-01T00:00:00.000000Z')`, newer); err != nil {
		t.Fatal(err)
	}
	err = db.Migrate(ctx, discardLog())
	if err == nil {
		t.Fatal("Migrate accepted a database of a newer schema")
	}
	for _, want := range []string{fmt.Sprintf("version %d", newer), fmt.Sprintf("only up to %d", SchemaVersion())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Migrate error = %q; want it to contain %q", err, want)
		}
	}
	if err := db.Ready(ctx); err == nil {
		t.Error("Ready passed on a database of a newer schema")
	}
}

func TestReadyBeforeMigrate(t *testing.T) {
	t.Parallel()
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "registrar.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ready(t.Context()); err == nil {
		t.Error("Ready passed on an unmigrated database")
	}
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	db, _ := openDB(t)
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
		{"synchronous", "2"}, // FULL
	}
	for _, tt := range tests {
		var got string
		if err := db.Write.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %q; want %q", tt.pragma, got, tt.want)
		}
	}
	// The read pool cannot write.
	if _, err := db.Read.ExecContext(t.Context(), `DELETE FROM ticket_stock`); err == nil {
		t.Error("a write through the read pool succeeded")
	}
	// That foreign keys are enforced, storetest's ForeignKeys checks.
}

// TestResolveHoldsNow: at start every hold belongs to a dead process, so all
// become due for the resolver at once.
func TestResolveHoldsNow(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openDB(t)
	s := NewStore(db)
	ev := &event.Event{ID: "testconf", Currency: "EUR", Tickets: []event.Ticket{{ID: "standard", Price: 100, Capacity: 5}}}
	if err := s.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if n, err := db.ResolveHoldsNow(ctx); err != nil || n != 0 {
		t.Errorf("ResolveHoldsNow without holds = %d, %v; want 0, nil", n, err)
	}
	now := time.Now().UTC()
	var ids []string
	for _, after := range []time.Duration{time.Minute, time.Hour} {
		id, err := registration.NewID()
		if err != nil {
			t.Fatal(err)
		}
		a := registration.Attempt{ID: id, EventID: ev.ID, TicketID: "standard", CreatedAt: now, ResolveAfter: now.Add(after)}
		if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if due, err := s.AbandonedAttempts(ctx, now, 10); err != nil || len(due) != 0 {
		t.Fatalf("AbandonedAttempts before = %d, %v; want none due", len(due), err)
	}
	if n, err := db.ResolveHoldsNow(ctx); err != nil || n != 2 {
		t.Errorf("ResolveHoldsNow = %d, %v; want 2, nil", n, err)
	}
	due, err := s.AbandonedAttempts(ctx, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range due {
		got = append(got, a.ID)
	}
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Errorf("due after ResolveHoldsNow = %v; want %v", got, ids)
	}
}

type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "noop" }

func TestRescueRunningJobs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openDB(t)
	client, err := river.NewClient(riversqlite.New(db.Write), &river.Config{Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	insert := func(args noopArgs, opts *river.InsertOpts) int64 {
		t.Helper()
		res, err := client.Insert(ctx, args, opts)
		if err != nil {
			t.Fatalf("Insert: %v", err)
		}
		return res.Job.ID
	}
	running := insert(noopArgs{1}, nil)
	available := insert(noopArgs{2}, nil)
	scheduled := insert(noopArgs{3}, &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	// A process was killed while working the first job.
	if _, err := db.Write.ExecContext(ctx, `UPDATE river_job SET state = 'running', attempt = 1,
		attempted_at = datetime('now', 'subsec'), scheduled_at = datetime('now', '+1 minute') WHERE id = ?`, running); err != nil {
		t.Fatal(err)
	}

	n, err := db.RescueRunningJobs(ctx)
	if err != nil {
		t.Fatalf("RescueRunningJobs: %v", err)
	}
	if n != 1 {
		t.Errorf("RescueRunningJobs = %d; want 1", n)
	}
	want := map[int64]string{running: "available", available: "available", scheduled: "scheduled"}
	for id, state := range want {
		job, err := client.JobGet(ctx, id)
		if err != nil {
			t.Fatalf("JobGet(%d): %v", id, err)
		}
		if string(job.State) != state {
			t.Errorf("job %d is %s; want %s", id, job.State, state)
		}
	}
	// The rescued job is due now, so a worker fetches it at once.
	if got := queryInt(t, db.Write, `SELECT count(*) FROM river_job WHERE id = ? AND scheduled_at <= datetime('now', 'subsec')`, running); got != 1 {
		t.Error("the rescued job is not due now")
	}
	if n, err := db.RescueRunningJobs(ctx); err != nil || n != 0 {
		t.Errorf("second RescueRunningJobs = %d, %v; want 0, nil", n, err)
	}
}

// The held count kept by triggers follows the holds as attempts start and
// end, and a final sell-out is told from it.
func TestHeldSeatsCount(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, s, attempt := stockFixture(t, 3)
	check := func(want int) {
		t.Helper()
		var held, holds int
		if err := db.Write.QueryRowContext(ctx, `SELECT held, (SELECT count(*) FROM seat_holds) FROM ticket_stock`).Scan(&held, &holds); err != nil {
			t.Fatal(err)
		}
		if held != want || holds != want {
			t.Errorf("held %d, holds %d; want %d", held, holds, want)
		}
	}
	var as []registration.Attempt
	for range 3 {
		a := attempt("")
		if _, err := s.StartAttempt(ctx, a, registration.Outcome{}); err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
	}
	check(3)
	if _, err := s.StartAttempt(ctx, attempt(""), registration.Outcome{}); !errors.Is(err, registration.ErrSeatsHeld) {
		t.Errorf("a fourth attempt while three are held: %v; want ErrSeatsHeld", err)
	}
	if err := s.FailAttempt(ctx, as[0], nil); err != nil {
		t.Fatal(err)
	}
	check(2)
	if _, err := db.Write.ExecContext(ctx, `DELETE FROM seat_holds`); err != nil {
		t.Fatal(err)
	}
	check(0)
}

// Once a ticket is sold out for good, later attempts are refused from the
// committed stock without a write; a key already known still goes to the
// writer (and replays), and a seat freed by a cancellation is sold again.
func TestSoldOutAnsweredWithoutWrite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, s, attempt := stockFixture(t, 1)
	keys := func() int {
		var n int
		if err := db.Write.QueryRowContext(ctx, `SELECT count(*) FROM idempotency_keys`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	paid := attempt("k-paid")
	if _, err := s.StartAttempt(ctx, paid, registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	now := paid.CreatedAt
	reg := registration.Registration{ID: paid.ID, EventID: paid.EventID, TicketID: "standard", Status: registration.StatusPaid,
		Amount: 100, Currency: "EUR", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.org",
		Payment: payment.Charge{Provider: "test", Reference: "ref", Brand: "visa", Last4: "1111"}, CreatedAt: now, UpdatedAt: now}
	if err := s.CompleteAttempt(ctx, paid, reg, func(context.Context, *sql.Tx, string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	soldOut := registration.Outcome{Code: registration.CodeSoldOut, Message: "sold out"}
	// The writer refuses the first and stores the answer under its key.
	if _, err := s.StartAttempt(ctx, attempt("k-first"), soldOut); !errors.Is(err, registration.ErrSoldOut) {
		t.Fatalf("first attempt after the sell-out: %v; want ErrSoldOut", err)
	}
	stored := keys()
	// Later ones are refused with nothing written.
	for i := range 5 {
		if _, err := s.StartAttempt(ctx, attempt(fmt.Sprintf("k-late-%d", i)), soldOut); !errors.Is(err, registration.ErrSoldOut) {
			t.Fatalf("late attempt %d: %v; want ErrSoldOut", i, err)
		}
	}
	if got := keys(); got != stored {
		t.Errorf("%d keys after five refusals from the stock; want %d (none written)", got, stored)
	}
	// They do not even wait for the writer: with its one connection taken,
	// the refusal still comes.
	held, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = s.StartAttempt(wctx, attempt("k-writer-busy"), soldOut)
	cancel()
	held.Rollback()
	if !errors.Is(err, registration.ErrSoldOut) {
		t.Errorf("attempt while the writer is busy: %v; want ErrSoldOut from the stock", err)
	}
	// A key the writer knows replays its stored answer.
	first := attempt("k-first")
	if o, err := s.StartAttempt(ctx, first, soldOut); err != nil || o == nil || o.Code != registration.CodeSoldOut {
		t.Errorf("the first key again: %+v, %v; want its stored sold_out replayed", o, err)
	}
	// A cancellation frees the seat: the next attempt takes it.
	if err := s.CancelRegistration(ctx, paid.ID, nil, registration.AuditEntry{At: now, Actor: "owner@example.org", Action: "cancel", RegistrationID: paid.ID},
		func(context.Context, *sql.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartAttempt(ctx, attempt("k-after-cancel"), soldOut); err != nil {
		t.Errorf("attempt after the cancellation: %v; want the freed seat", err)
	}
}

// While the last seats are only held, later attempts get the retryable
// refusal from the stock, without the writer; once a hold is released the
// seat is sold again.
func TestSeatsHeldAnsweredWithoutWriter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, s, attempt := stockFixture(t, 1)
	holding := attempt(fmt.Sprintf("k-%d", 1))
	if _, err := s.StartAttempt(ctx, holding, registration.Outcome{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartAttempt(ctx, attempt(fmt.Sprintf("k-%d", 2)), registration.Outcome{}); !errors.Is(err, registration.ErrSeatsHeld) {
		t.Fatalf("attempt while the seat is held: %v; want ErrSeatsHeld", err)
	}
	busy, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = s.StartAttempt(wctx, attempt(fmt.Sprintf("k-%d", 3)), registration.Outcome{})
	cancel()
	busy.Rollback()
	if !errors.Is(err, registration.ErrSeatsHeld) {
		t.Errorf("attempt while the writer is busy: %v; want ErrSeatsHeld from the stock", err)
	}
	if err := s.FailAttempt(ctx, holding, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartAttempt(ctx, attempt(fmt.Sprintf("k-%d", 4)), registration.Outcome{}); err != nil {
		t.Errorf("attempt after the hold was released: %v; want the seat", err)
	}
}

// stockFixture is a store whose one ticket "standard" has capacity seats,
// and a maker of attempts for it (key "" for none).
func stockFixture(t *testing.T, capacity int) (*DB, *Store, func(key string) registration.Attempt) {
	t.Helper()
	db, _ := openDB(t)
	s := NewStore(db)
	ev := &event.Event{ID: "testconf", Currency: "EUR", Tickets: []event.Ticket{{ID: "standard", Price: 100, Capacity: capacity}}}
	if err := s.SyncTickets(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	return db, s, func(key string) registration.Attempt {
		t.Helper()
		id, err := registration.NewID()
		if err != nil {
			t.Fatal(err)
		}
		return registration.Attempt{ID: id, EventID: ev.ID, TicketID: "standard", IdempotencyKey: key,
			RequestHash: "h-" + key, CreatedAt: now, ResolveAfter: now.Add(time.Hour)}
	}
}
