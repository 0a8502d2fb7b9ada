// Package groupcommit lets writes that arrive together share one database
// transaction, so many requests pay for one commit instead of one each.
package groupcommit

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// Batcher is group commit: writes that arrive together share one
// transaction, so many requests pay for one commit (one fsync) instead of
// one each. There is no background goroutine: the first caller to find no
// batch running leads, running the queue in batches until it is empty,
// while later callers wait for their result. Each write runs inside its
// own savepoint, so one that fails is rolled back alone.
type Batcher struct {
	db  *sql.DB
	max int

	mu      sync.Mutex
	queue   []*write
	leading bool
	batches int // transactions run, for tests and diagnostics
}

type write struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan error
}

// New returns a Batcher putting up to max writes in one transaction of db.
func New(db *sql.DB, max int) *Batcher { return &Batcher{db: db, max: max} }

// Batches reports how many transactions have run.
func (b *Batcher) Batches() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.batches
}

// Do runs fn in a transaction shared with other writes and returns once
// that transaction committed (or fn failed and was rolled back). fn must
// report only failures as errors: its writes are kept only if it returns nil.
func (b *Batcher) Do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	w := &write{ctx: ctx, fn: fn, done: make(chan error, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, w)
	if b.leading {
		b.mu.Unlock()
		return <-w.done
	}
	b.leading = true
	for len(b.queue) > 0 {
		n := min(len(b.queue), b.max)
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.batches++
		b.mu.Unlock()
		b.run(batch)
		b.mu.Lock()
	}
	b.leading = false
	b.mu.Unlock()
	return <-w.done
}

// run executes one batch in one transaction.
func (b *Batcher) run(batch []*write) {
	results := make([]error, len(batch))
	finish := func() {
		for i, w := range batch {
			w.done <- results[i]
		}
	}
	defer finish()
	fail := func(err error) {
		for i := range results {
			if results[i] == nil {
				results[i] = err
			}
		}
	}
	// The batch outlives any one caller's cancellation.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	defer tx.Rollback()
	single := len(batch) == 1
	kept := 0
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if !single {
			if _, err := tx.ExecContext(ctx, `SAVEPOINT batch_write`); err != nil {
				fail(fmt.Errorf("savepoint: %w", err))
				return
			}
		}
		results[i] = w.fn(w.ctx, tx)
		if single {
			break
		}
		if results[i] != nil {
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO batch_write`); err != nil {
				fail(fmt.Errorf("roll back one write: %w", err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, `RELEASE batch_write`); err != nil {
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
		if results[i] == nil {
			kept++
		}
	}
	if single && results[0] == nil {
		kept = 1
	}
	if kept == 0 {
		return // the deferred Rollback discards nothing of value
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
	}
}
