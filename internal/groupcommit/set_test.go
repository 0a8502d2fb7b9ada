package groupcommit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// insertRun is a Set's batch that inserts every item in one statement per
// item and fails the batch when an item is negative, as the set-wise code
// does for what it leaves to one transaction per write.
func insertRun(bind func(string) string, running, most *atomic.Int32) RunFunc[int] {
	return func(ctx context.Context, tx *sql.Tx, items []*Item[int]) error {
		if running != nil {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, it := range items {
			if it.Val < 0 {
				return errors.New("left to one transaction per write")
			}
			if _, err := tx.ExecContext(ctx, bind(`INSERT INTO items (n) VALUES (?)`), it.Val); err != nil {
				return err
			}
		}
		return nil
	}
}

func insertAlone(bind func(string) string) AloneFunc[int] {
	return func(ctx context.Context, tx *sql.Tx, v int) error {
		if v < 0 {
			return fmt.Errorf("item %d refused", v)
		}
		_, err := tx.ExecContext(ctx, bind(`INSERT INTO items (n) VALUES (?)`), v)
		return err
	}
}

// TestSetLanes runs many writes on a Set of three lanes on PostgreSQL: all
// are written, batches run side by side, never more than three at once.
func TestSetLanes(t *testing.T) {
	t.Parallel()
	e := engines()[1]
	db := e.open(t)
	var running, most atomic.Int32
	s := NewSet(db, 8, 3, insertRun(e.bind, &running, &most), insertAlone(e.bind))
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() { errs <- s.Do(t.Context(), i) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM items`).Scan(&n); err != nil || n != 200 {
		t.Fatalf("%d items (%v); want 200", n, err)
	}
	if m := most.Load(); m < 2 || m > 3 {
		t.Errorf("at most %d batches ran at once; want 2 or 3 (three lanes)", m)
	}
	if b := s.Batches(); b >= 200 || b < 200/8 {
		t.Errorf("%d batches for 200 writes of up to 8; want them grouped", b)
	}
}

// TestSetFailedBatchRunsAlone: a batch that fails is rolled back and each
// of its writes runs in a transaction of its own; the good ones are kept,
// the bad one hears its own error, and deferred items of kept writes only
// are flushed, in the transaction that keeps them.
func TestSetFailedBatchRunsAlone(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			db := e.open(t)
			var mu sync.Mutex
			var flushed []any
			flush := func(ctx context.Context, tx *sql.Tx, items []any) error {
				mu.Lock()
				defer mu.Unlock()
				flushed = append(flushed, items...)
				return nil
			}
			block := make(chan struct{})
			run := insertRun(e.bind, nil, nil)
			s := NewSet(db, 16, 1, func(ctx context.Context, tx *sql.Tx, items []*Item[int]) error {
				if items[0].Val == 0 {
					<-block // hold the lane so that the next writes queue up
				}
				for _, it := range items {
					if !Defer(it.Ctx, "k", it.Val, flush) {
						return errors.New("Defer outside a write")
					}
				}
				return run(ctx, tx, items)
			}, func(ctx context.Context, tx *sql.Tx, v int) error {
				if !Defer(ctx, "k", v, flush) {
					return errors.New("Defer outside a write")
				}
				return insertAlone(e.bind)(ctx, tx, v)
			})
			first := make(chan error, 1)
			go func() { first <- s.Do(t.Context(), 0) }()
			for s.Batches() == 0 {
				time.Sleep(time.Millisecond)
			}
			vals := []int{1, 2, -3, 4}
			errs := make([]error, len(vals))
			var wg sync.WaitGroup
			for i, v := range vals {
				wg.Go(func() { errs[i] = s.Do(t.Context(), v) })
			}
			for {
				s.mu.Lock()
				n := len(s.queue)
				s.mu.Unlock()
				if n == len(vals) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			close(block)
			wg.Wait()
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if (errs[i] != nil) != (v < 0) {
					t.Errorf("write %d: %v", v, errs[i])
				}
			}
			if s.Batches() != 2 || s.Alones() != 4 {
				t.Errorf("%d batches, %d writes alone; want 2 and the second batch's 4", s.Batches(), s.Alones())
			}
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM items`).Scan(&n); err != nil || n != 4 {
				t.Errorf("%d items (%v); want 4 (0, 1, 2, 4)", n, err)
			}
			mu.Lock()
			defer mu.Unlock()
			// 0 from its batch; 1, 2, 4 alone, in the order they queued
			// (their batch's flush never ran).
			slices.SortFunc(flushed, func(a, b any) int { return a.(int) - b.(int) })
			if fmt.Sprint(flushed) != "[0 1 2 4]" {
				t.Errorf("flushed %v; want [0 1 2 4]", flushed)
			}
		})
	}
}
