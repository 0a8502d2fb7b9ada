package groupcommit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	_ "modernc.org/sqlite"
)

// engine is a database the Batcher runs on in registrar.
type engine struct {
	name string
	open func(t *testing.T) *sql.DB
	bind func(query string) string // rewrites ? placeholders
	slow string                    // a statement that runs for tens of milliseconds at least
}

// engines are SQLite, and PostgreSQL when TEST_DATABASE_URL is set.
func engines() []engine {
	return []engine{
		{"sqlite", openSQLite, func(q string) string { return q },
			`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT count(*) FROM c`},
		{"postgres", openPostgres, dollars, `SELECT pg_sleep(0.3)`},
	}
}

// openSQLite is a real SQLite file with one writer connection, as registrar
// uses it.
func openSQLite(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "batch.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE items (n INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// openPostgres is a pool on a schema of the test's own, dropped when the
// test ends; without TEST_DATABASE_URL the test is skipped.
func openPostgres(t *testing.T) *sql.DB {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		t.Skip("TEST_DATABASE_URL is not set: skipping the PostgreSQL tests (set it to a postgres:// URL to run them)")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "groupcommit_test_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open TEST_DATABASE_URL: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	if _, err := admin.ExecContext(t.Context(), `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	conn := base + " search_path=" + schema
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatalf("TEST_DATABASE_URL: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		conn = u.String()
	}
	db, err := sql.Open("pgx", conn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(10)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE items (n integer PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return db
}

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

// forEngine runs test on each engine, in parallel.
func forEngine(t *testing.T, test func(t *testing.T, e engine, db *sql.DB)) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			test(t, e, e.open(t))
		})
	}
}

func items(t *testing.T, db *sql.DB) []int {
	t.Helper()
	r, err := db.Query(`SELECT n FROM items ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rows []int
	for r.Next() {
		var n int
		if err := r.Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, n)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// Concurrent writes share transactions, and a write that fails is rolled
// back alone: the others in its batch commit. Failures are of both kinds: a
// write that returns an error after writing, and one whose statement the
// database refuses (a unique violation, which on PostgreSQL aborts the
// transaction until the savepoint is rolled back).
func TestBatcherGroupsWritesAndIsolatesFailures(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		b := New(db, 64)
		const writes = 200
		errBoom := errors.New("boom")
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]error, writes)
		for i := range writes {
			wg.Go(func() {
				<-start
				results[i] = b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
					if _, err := tx.ExecContext(ctx, e.bind(`INSERT INTO items (n) VALUES (?)`), i); err != nil {
						return err
					}
					switch i % 3 {
					case 0:
						return errBoom // after writing: the write must be undone
					case 1:
						// The row again: the database refuses it.
						_, err := tx.ExecContext(ctx, e.bind(`INSERT INTO items (n) VALUES (?)`), i)
						return err
					}
					return nil
				})
			})
		}
		close(start)
		wg.Wait()
		var want []int
		for i, err := range results {
			switch i % 3 {
			case 0:
				if !errors.Is(err, errBoom) {
					t.Errorf("write %d: %v; want %v", i, err, errBoom)
				}
			case 1:
				if err == nil {
					t.Errorf("write %d inserted a row twice without an error", i)
				}
			default:
				if err != nil {
					t.Errorf("write %d: %v", i, err)
				}
				want = append(want, i)
			}
		}
		if got := items(t, db); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rows %v\nwant %v (only the writes that succeeded)", got, want)
		}
		if b.Batches() >= writes/2 {
			t.Errorf("%d transactions for %d concurrent writes: no group commit", b.Batches(), writes)
		}
		t.Logf("%d writes in %d transactions", writes, b.Batches())
	})
}

// A caller returns once its own batch committed, even while more writes
// wait: the leader hands the lead on instead of running everyone's batches
// until the queue empties, which under a sustained load could be never.
func TestBatcherLeaderReturnsWhileWritesWait(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		b := New(db, 64)
		insert := func(ctx context.Context, tx *sql.Tx, n int) error {
			_, err := tx.ExecContext(ctx, e.bind(`INSERT INTO items (n) VALUES (?)`), n)
			return err
		}
		firstReturned := make(chan struct{})
		secondQueued := make(chan struct{})
		results := make(chan error, 2)
		go func() {
			err := b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
				<-secondQueued
				return insert(ctx, tx, 1)
			})
			close(firstReturned)
			results <- err
		}()
		for !b.leader() {
			time.Sleep(time.Millisecond)
		}
		go func() {
			// The second write waits for the first caller to have returned:
			// a leader that ran this batch before returning would wait for
			// ever.
			results <- b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
				select {
				case <-firstReturned:
				case <-time.After(10 * time.Second):
					return errors.New("the first caller did not return before the next batch ran")
				}
				return insert(ctx, tx, 2)
			})
		}()
		for b.queued() < 1 {
			time.Sleep(time.Millisecond)
		}
		close(secondQueued)
		for range 2 {
			if err := <-results; err != nil {
				t.Error(err)
			}
		}
		if got := items(t, db); fmt.Sprint(got) != "[1 2]" || b.Batches() != 2 {
			t.Errorf("rows %v in %d transactions; want [1 2] in 2", got, b.Batches())
		}
		if b.leader() || b.queued() != 0 {
			t.Error("the Batcher still has a leader or queued writes after all returned")
		}
	})
}

// One batch with a refused statement in the middle: the writes before and
// after it commit in the same transaction.
func TestBatcherRecoversFromARefusedStatement(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		if _, err := db.Exec(`INSERT INTO items (n) VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		b := New(db, 64)
		// The first write holds the batch open until the others are queued,
		// so that all three run in the second transaction.
		queued := make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- b.Do(context.Background(), func(context.Context, *sql.Tx) error {
				<-queued
				return nil
			})
		}()
		for !b.leader() {
			time.Sleep(time.Millisecond)
		}
		insert := func(n int) func(ctx context.Context, tx *sql.Tx) error {
			return func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, e.bind(`INSERT INTO items (n) VALUES (?)`), n)
				return err
			}
		}
		results := make([]error, 3)
		var wg sync.WaitGroup
		for i, n := range []int{2, 1, 3} {
			wg.Go(func() { results[i] = b.Do(context.Background(), insert(n)) })
			for b.queued() < i+1 {
				time.Sleep(time.Millisecond)
			}
		}
		close(queued)
		wg.Wait()
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if results[0] != nil || results[1] == nil || results[2] != nil {
			t.Errorf("results %v; want nil, a unique violation, nil", results)
		}
		if got := items(t, db); fmt.Sprint(got) != "[1 2 3]" {
			t.Errorf("rows %v; want [1 2 3]", got)
		}
		if b.Batches() != 2 {
			t.Errorf("%d transactions; want 2", b.Batches())
		}
	})
}

// A cancelled caller's write is not run; the batch goes on.
func TestBatcherSkipsCancelledWrites(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		b := New(db, 64)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := b.Do(ctx, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (1)`)
			return err
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled write: %v", err)
		}
		if err := b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (2)`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got := items(t, db); fmt.Sprint(got) != "[2]" {
			t.Errorf("rows %v, want [2]", got)
		}
	})
}

// A caller cancelled while its write runs does not interrupt it: an
// interrupted statement can take the shared transaction down (pgx closes
// the connection; SQLite may roll the transaction back), and with it the
// other writes of the batch.
func TestBatcherFinishesAWriteCancelledMidway(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		b := New(db, 64)
		// A first write holds the batch open until the others are queued,
		// so that they share the second transaction.
		queued := make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- b.Do(context.Background(), func(context.Context, *sql.Tx) error {
				<-queued
				return nil
			})
		}()
		for !b.leader() {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "value"))
		defer cancel()
		writes := []func(ctx context.Context, tx *sql.Tx) error{
			func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (1)`)
				return err
			},
			func(ctx context.Context, tx *sql.Tx) error {
				if ctx.Value(ctxKey{}) != "value" {
					return errors.New("the write lost the values of its caller's context")
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (2)`); err != nil {
					return err
				}
				// The caller goes away in the middle of a statement.
				time.AfterFunc(10*time.Millisecond, cancel)
				if _, err := tx.ExecContext(ctx, e.slow); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (3)`)
				return err
			},
			func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (4)`)
				return err
			},
		}
		results := make([]error, len(writes))
		var wg sync.WaitGroup
		for i, w := range writes {
			wctx := context.Background()
			if i == 1 {
				wctx = ctx
			}
			wg.Go(func() { results[i] = b.Do(wctx, w) })
			for b.queued() < i+1 {
				time.Sleep(time.Millisecond)
			}
		}
		close(queued)
		wg.Wait()
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		for i, err := range results {
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
		if ctx.Err() == nil {
			t.Error("the caller was not cancelled during its write")
		}
		if got := items(t, db); fmt.Sprint(got) != "[1 2 3 4]" {
			t.Errorf("rows %v; want [1 2 3 4]", got)
		}
	})
}

type ctxKey struct{}

// A write that panics fails alone, and the Batcher goes on.
func TestBatcherSurvivesAPanickingWrite(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		b := New(db, 64)
		err := b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (1)`); err != nil {
				return err
			}
			panic("bug")
		})
		if err == nil || !strings.Contains(err.Error(), "bug") {
			t.Errorf("panicking write: %v; want an error quoting the panic", err)
		}
		if err := b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (2)`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got := items(t, db); fmt.Sprint(got) != "[2]" {
			t.Errorf("rows %v, want [2]", got)
		}
	})
}

// OnBegin runs first in every batch transaction; when it fails, the batch
// fails and writes nothing.
func TestBatcherOnBegin(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		errLocked := errors.New("locked")
		var fail bool
		var begins int
		b := New(db, 64, OnBegin(func(ctx context.Context, tx *sql.Tx) error {
			begins++
			if fail {
				return errLocked
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (0)`)
			return err
		}))
		insert := func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (1)`)
			return err
		}
		if err := b.Do(context.Background(), insert); err != nil {
			t.Fatal(err)
		}
		fail = true
		if _, err := db.Exec(`DELETE FROM items`); err != nil {
			t.Fatal(err)
		}
		if err := b.Do(context.Background(), insert); !errors.Is(err, errLocked) {
			t.Errorf("write after a failing OnBegin: %v; want %v", err, errLocked)
		}
		if got := items(t, db); len(got) != 0 || begins != 2 {
			t.Errorf("rows %v after %d begins; want none after 2", got, begins)
		}
	})
}

// leader reports whether a batch is running.
func (b *Batcher) leader() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leading
}

// queued reports how many writes wait for the next batch.
func (b *Batcher) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// insertItems is a FlushFunc writing every item (an int) with one INSERT,
// counting its calls and the items it saw.
type insertItems struct {
	bind  func(string) string
	mu    sync.Mutex
	calls int
	seen  int
	err   error // returned instead of writing, when set
}

func (f *insertItems) flush(ctx context.Context, tx *sql.Tx, items []any) error {
	f.mu.Lock()
	f.calls++
	f.seen += len(items)
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO items (n) VALUES `)
	args := make([]any, len(items))
	for i, it := range items {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?)")
		args[i] = it.(int)
	}
	_, err = tx.ExecContext(ctx, f.bind(q.String()), args...)
	return err
}

// Writes hand rows over with Defer: each batch writes the rows of its kept
// writes with one flush before it commits; a failed write's rows are
// dropped with it.
func TestDeferFlushesOncePerBatch(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		b := New(db, 64)
		f := &insertItems{bind: e.bind}
		const writes = 200
		errBoom := errors.New("boom")
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]error, writes)
		for i := range writes {
			wg.Go(func() {
				<-start
				results[i] = b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
					if !Defer(ctx, "items", i, f.flush) {
						return errors.New("Defer refused inside a batch")
					}
					if i%4 == 0 {
						return errBoom
					}
					return nil
				})
			})
		}
		close(start)
		wg.Wait()
		var want []int
		for i, err := range results {
			if i%4 == 0 {
				if !errors.Is(err, errBoom) {
					t.Errorf("write %d: %v; want %v", i, err, errBoom)
				}
				continue
			}
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
			want = append(want, i)
		}
		if got := items(t, db); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rows %v\nwant %v (the rows of the kept writes)", got, want)
		}
		// A batch whose writes all failed commits nothing and flushes nothing.
		if f.calls == 0 || f.calls > b.Batches() || f.seen != len(want) {
			t.Errorf("%d flushes of %d items in %d batches; want at most one flush per batch, %d items", f.calls, f.seen, b.Batches(), len(want))
		}
		if ok := Defer(context.Background(), "items", 1, f.flush); ok {
			t.Error("Defer outside a batch reported true; want false, so that the caller writes")
		}
	})
}

// A flush that fails fails every write of its batch, and nothing of the
// batch is committed.
func TestDeferFlushFailureFailsTheBatch(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		b := New(db, 64)
		errFlush := errors.New("flush refused")
		f := &insertItems{bind: e.bind, err: errFlush}
		err := b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, e.bind(`INSERT INTO items (n) VALUES (?)`), 7); err != nil {
				return err
			}
			Defer(ctx, "items", 8, f.flush)
			return nil
		})
		if !errors.Is(err, errFlush) {
			t.Errorf("write whose batch's flush failed: %v; want %v", err, errFlush)
		}
		if got := items(t, db); len(got) != 0 {
			t.Errorf("rows %v; want none: the batch is rolled back", got)
		}
	})
}

// Writes queued behind a running batch run in the next one in the order of
// their DoOrdered keys, plain writes (key "") first, equal keys in the
// order they came.
func TestBatcherDoOrdered(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		b := New(db, 64)
		release := make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
				<-release
				return nil
			})
		}()
		for !b.leader() {
			time.Sleep(time.Millisecond)
		}
		var mu sync.Mutex
		var ran []string
		keys := []string{"c", "a", "", "b", "a"}
		var wg sync.WaitGroup
		for i, k := range keys {
			name := fmt.Sprintf("%s%d", k, i)
			do := func(fn func(ctx context.Context, tx *sql.Tx) error) error {
				return b.DoOrdered(context.Background(), k, fn)
			}
			if k == "" {
				do = func(fn func(ctx context.Context, tx *sql.Tx) error) error { return b.Do(context.Background(), fn) }
			}
			wg.Go(func() {
				if err := do(func(ctx context.Context, tx *sql.Tx) error {
					mu.Lock()
					defer mu.Unlock()
					ran = append(ran, name)
					return nil
				}); err != nil {
					t.Error(err)
				}
			})
			for b.queued() < i+1 { // queue them in this order
				time.Sleep(time.Millisecond)
			}
		}
		close(release)
		wg.Wait()
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(ran), "[2 a1 a4 b3 c0]"; got != want || b.Batches() != 2 {
			t.Errorf("writes ran as %s in %d batches; want %s in 2", got, b.Batches(), want)
		}
	})
}
