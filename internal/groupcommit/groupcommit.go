// Package groupcommit lets writes that arrive together share one database
// transaction, so many requests pay for one commit instead of one each.
package groupcommit

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Batcher is group commit: writes that arrive together share one
// transaction, so many requests pay for one commit (one fsync) instead of
// one each. There is no background goroutine: the first caller to find no
// batch running leads, running the writes queued so far (its own first) in
// one batch, while later callers wait. Then it hands the lead to the
// caller whose write is next in the queue, if any, and returns: no caller
// waits longer than the batches ahead of its write, however long the load
// lasts. A write that fails is rolled back alone: when one fails, the
// batch runs again with each write inside its own savepoint (on PostgreSQL,
// where an error aborts the transaction until then, ROLLBACK TO SAVEPOINT
// also makes the transaction usable for the writes after it). A write may
// therefore run twice, the first time rolled back: it must not act outside
// the transaction.
//
// Batches run one after another: a Batcher never has two transactions open.
type Batcher struct {
	db    *sql.DB
	max   int
	begin func(ctx context.Context, tx *sql.Tx) error

	mu      sync.Mutex
	queue   []*write
	leading bool
	batches int // transactions run, for tests and diagnostics
}

type write struct {
	order    string // DoOrdered's key: a batch runs its writes in this order
	ctx      context.Context
	fn       func(ctx context.Context, tx *sql.Tx) error
	done     chan outcome
	deferred []deferred // handed over by fn with Defer
}

// FlushFunc writes, in a batch's transaction, the items its writes deferred
// under one key.
type FlushFunc func(ctx context.Context, tx *sql.Tx, items []any) error

type deferred struct {
	key   any
	item  any
	flush FlushFunc
}

// writeKey is the context key under which a running write finds itself.
type writeKey struct{}

// Defer hands item over to the batch the write running with ctx belongs to:
// after the batch's last write and before its commit, flush runs once with
// the items that writes kept under key (comparable), in the order they were
// deferred. Items of a write that fails are dropped with the write; if flush
// fails, every write of the batch fails. Writes that each insert a row of
// the same kind (a job, say) thus insert them all with one statement. Defer
// reports false when ctx is not a write's of a Batcher: the caller then
// writes item itself.
func Defer(ctx context.Context, key, item any, flush FlushFunc) bool {
	w, ok := ctx.Value(writeKey{}).(*write)
	if !ok {
		return false
	}
	w.deferred = append(w.deferred, deferred{key: key, item: item, flush: flush})
	return true
}

// flushDeferred runs the flush of each key once with the items of the kept
// writes, keys in the order first deferred.
func flushDeferred(ctx context.Context, tx *sql.Tx, batch []*write, results []error) error {
	type group struct {
		flush FlushFunc
		items []any
	}
	var keys []any
	groups := make(map[any]*group)
	for i, w := range batch {
		if results[i] != nil {
			continue
		}
		for _, d := range w.deferred {
			g, ok := groups[d.key]
			if !ok {
				g = &group{flush: d.flush}
				groups[d.key] = g
				keys = append(keys, d.key)
			}
			g.items = append(g.items, d.item)
		}
	}
	for _, k := range keys {
		g := groups[k]
		if err := g.flush(ctx, tx, g.items); err != nil {
			return err
		}
	}
	return nil
}

// outcome is what a waiting write is told: its result, or that it leads
// the next batch.
type outcome struct {
	err  error
	lead bool
}

// Option configures a Batcher.
type Option func(*Batcher)

// OnBegin makes every batch transaction run f before its first write; if f
// fails, every write of the batch fails with its error. PostgreSQL uses it
// to take a lock that lets one batch at a time into the database, so that
// the batches of several processes never wait for each other's rows in a
// circle.
func OnBegin(f func(ctx context.Context, tx *sql.Tx) error) Option {
	return func(b *Batcher) { b.begin = f }
}

// New returns a Batcher putting up to max writes in one transaction of db.
func New(db *sql.DB, max int, opts ...Option) *Batcher {
	b := &Batcher{db: db, max: max}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Batches reports how many transactions have run.
func (b *Batcher) Batches() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.batches
}

// Do runs fn in a transaction shared with other writes and returns once
// that transaction committed (or fn failed and was rolled back). fn must
// report only failures as errors: its writes are kept only if it returns nil.
//
// Once fn has started, cancelling ctx no longer stops it: fn gets ctx's
// values but the batch's deadline, because a statement interrupted halfway
// can take the shared transaction down with it (pgx closes the connection;
// SQLite may roll the whole transaction back). A write whose ctx is done
// before its turn is not run.
func (b *Batcher) Do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return b.do(&write{ctx: ctx, fn: fn, done: make(chan outcome, 1)})
}

// DoOrdered is Do for a write whose locks follow key (the id of the one
// row it locks first, say): a batch runs its writes in key order, writes
// with equal keys (and every plain Do, whose key is "") in the order they
// came. Batches of several processes then take those locks in one order
// and never wait for each other in a circle.
func (b *Batcher) DoOrdered(ctx context.Context, key string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return b.do(&write{order: key, ctx: ctx, fn: fn, done: make(chan outcome, 1)})
}

func (b *Batcher) do(w *write) error {
	b.mu.Lock()
	b.queue = append(b.queue, w)
	if b.leading {
		b.mu.Unlock()
		if o := <-w.done; !o.lead {
			return o.err
		}
		// Promoted: w is first in the queue.
		b.mu.Lock()
	}
	b.leading = true
	n := min(len(b.queue), b.max)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.batches++
	b.mu.Unlock()
	b.run(batch) // w is among them
	b.mu.Lock()
	if len(b.queue) > 0 {
		b.queue[0].done <- outcome{lead: true}
	} else {
		b.leading = false
	}
	b.mu.Unlock()
	return (<-w.done).err
}

// call runs w's write with the caller's values and the batch's deadline. A
// write that panics fails alone: the panic must not leave the others
// waiting, nor the Batcher without a leader.
func call(w *write, tx *sql.Tx, deadline time.Time) (err error) {
	ctx, cancel := context.WithDeadline(context.WithoutCancel(w.ctx), deadline)
	defer cancel()
	ctx = context.WithValue(ctx, writeKey{}, w)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("write panicked: %v", p)
		}
	}()
	return w.fn(ctx, tx)
}

// run executes one batch in one transaction.
//
// Writes rarely fail, so the batch first runs them all without savepoints,
// which cost two statements per write (two round trips on PostgreSQL, where
// more than 64 subtransactions in one transaction also slow every other
// session's snapshots). Only if one fails is that transaction rolled back
// and the batch run again, each write inside its own savepoint so that the
// failing ones are rolled back alone.
func (b *Batcher) run(batch []*write) {
	slices.SortStableFunc(batch, func(x, y *write) int { return strings.Compare(x.order, y.order) })
	results := make([]error, len(batch))
	defer func() {
		for i, w := range batch {
			w.done <- outcome{err: results[i]}
		}
	}()
	// The batch outlives any one caller's cancellation.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b.attempt(ctx, batch, results, false) || len(batch) == 1 {
		return
	}
	clear(results)
	b.attempt(ctx, batch, results, true)
}

// attempt runs the batch in one transaction and commits what it kept.
// Without savepoints it gives up at the first failing write, rolls back and
// reports false: the batch must run again with them.
func (b *Batcher) attempt(ctx context.Context, batch []*write, results []error, savepoints bool) bool {
	fail := func(err error) {
		for i := range results {
			if results[i] == nil {
				results[i] = err
			}
		}
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return true
	}
	defer tx.Rollback()
	if b.begin != nil {
		if err := b.begin(ctx, tx); err != nil {
			fail(fmt.Errorf("begin: %w", err))
			return true
		}
	}
	deadline, _ := ctx.Deadline()
	kept := 0
	for i, w := range batch {
		w.deferred = nil
		if err := w.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if savepoints {
			if _, err := tx.ExecContext(ctx, `SAVEPOINT batch_write`); err != nil {
				fail(fmt.Errorf("savepoint: %w", err))
				return true
			}
		}
		results[i] = call(w, tx, deadline)
		if results[i] != nil {
			w.deferred = nil
			if !savepoints {
				if len(batch) > 1 {
					clear(results)
					return false
				}
				return true // one write: its failure is the batch's
			}
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO batch_write`); err != nil {
				fail(fmt.Errorf("roll back one write: %w", err))
				return true
			}
		}
		if savepoints {
			if _, err := tx.ExecContext(ctx, `RELEASE batch_write`); err != nil {
				fail(fmt.Errorf("release savepoint: %w", err))
				return true
			}
		}
		if results[i] == nil {
			kept++
		}
	}
	if kept == 0 {
		return true // the deferred Rollback discards nothing of value
	}
	if err := flushDeferred(ctx, tx, batch, results); err != nil {
		fail(fmt.Errorf("write deferred items: %w", err))
		return true
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
	}
	return true
}
