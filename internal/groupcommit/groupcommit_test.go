package groupcommit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	_ "modernc.org/sqlite"
)

// dbHandle is a real SQLite file with one writer connection, as registrar
// uses it.
type dbHandle struct{ Write *sql.DB }

func openBatchDB(t *testing.T) dbHandle {
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
	return dbHandle{Write: db}
}

// Concurrent writes share transactions, and a write that fails is rolled
// back alone: the others in its batch commit.
func TestBatcherGroupsWritesAndIsolatesFailures(t *testing.T) {
	t.Parallel()
	db := openBatchDB(t)
	b := New(db.Write, 64)
	const writes = 200
	errBoom := errors.New("boom")
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]error, writes)
	for i := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = b.Do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO items (n) VALUES (?)`, i); err != nil {
					return err
				}
				if i%3 == 0 {
					return errBoom // after writing: the write must be undone
				}
				return nil
			})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range results {
		if want := i%3 == 0; want != errors.Is(err, errBoom) {
			t.Errorf("write %d: %v", i, err)
		}
	}
	var n, bad int
	db.Write.QueryRow(`SELECT count(*), coalesce(sum(n % 3 = 0), 0) FROM items`).Scan(&n, &bad)
	if want := writes - (writes+2)/3; n != want || bad != 0 {
		t.Errorf("%d rows (%d from failed writes), want %d and 0", n, bad, want)
	}
	if b.Batches() >= writes/2 {
		t.Errorf("%d transactions for %d concurrent writes: no group commit", b.batches, writes)
	}
	t.Logf("%d writes in %d transactions", writes, b.Batches())
}

// A cancelled caller's write is not run; the batch goes on.
func TestBatcherSkipsCancelledWrites(t *testing.T) {
	t.Parallel()
	db := openBatchDB(t)
	b := New(db.Write, 64)
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
	var rows []int
	r, _ := db.Write.Query(`SELECT n FROM items`)
	for r.Next() {
		var n int
		r.Scan(&n)
		rows = append(rows, n)
	}
	r.Close()
	if fmt.Sprint(rows) != "[2]" {
		t.Errorf("rows %v, want [2]", rows)
	}
}
