package groupcommit

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// Set is group commit for writes of one kind whose batch runs as a whole:
// Run gets every write of the batch at once and can write them all with a
// few set-based statements, where Batcher runs one write after another.
//
// Up to lanes batches run at a time, each in a transaction of its own.
// Writes wait in one queue: the first caller to find a lane free leads,
// running the writes queued so far (its own first) in one batch; when its
// batch is done it hands the lane to the first write still queued, with
// the writes queued up to then as that one's batch, and returns. As with
// Batcher there is no background goroutine, and no caller waits longer
// than the batches ahead of its write.
//
// If Run fails, or panics, the batch is rolled back and each of its writes
// runs again alone, in a transaction of its own, through Alone: a write may
// therefore run twice, the first time rolled back, and must not act outside
// the transaction. Run can also leave to Alone the rare cases it would
// rather not handle set-wise by returning an error.
type Set[T any] struct {
	db    *sql.DB
	max   int
	lanes int
	run   RunFunc[T]
	alone AloneFunc[T]

	mu      sync.Mutex
	queue   []*setWrite[T]
	running int // lanes running a batch
	batches int // transactions run, for tests and diagnostics
	alones  int // writes run alone after their batch failed
}

// Item is one write of a batch as Run sees it.
type Item[T any] struct {
	// Ctx has the caller's values and the batch's deadline; Defer works
	// with it, the items deferred being kept only if Err is nil.
	Ctx context.Context
	Val T
	// Err is what Run sets as the write's result. It rolls nothing back:
	// Run leaves the transaction as the write's result requires.
	Err error

	w *write
}

// RunFunc writes a batch's items in tx and sets each one's Err. An error
// fails the batch: it is rolled back and its writes run alone.
type RunFunc[T any] func(ctx context.Context, tx *sql.Tx, items []*Item[T]) error

// AloneFunc writes one item in a transaction of its own; an error rolls it
// back and is the write's result.
type AloneFunc[T any] func(ctx context.Context, tx *sql.Tx, item T) error

type setWrite[T any] struct {
	ctx  context.Context
	val  T
	done chan setOutcome[T]
}

// setOutcome is what a waiting write is told: its result, or the batch it
// leads.
type setOutcome[T any] struct {
	err   error
	batch []*setWrite[T]
}

// NewSet returns a Set putting up to max writes in one transaction of db,
// up to lanes transactions at a time.
func NewSet[T any](db *sql.DB, max, lanes int, run RunFunc[T], alone AloneFunc[T]) *Set[T] {
	return &Set[T]{db: db, max: max, lanes: max1(lanes), run: run, alone: alone}
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// Batches reports how many batch transactions have run.
func (s *Set[T]) Batches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches
}

// Alones reports how many writes ran alone after their batch failed.
func (s *Set[T]) Alones() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alones
}

// Do writes v in a batch and returns its result once the batch's
// transaction committed or was rolled back. As with Batcher.Do, once the
// batch started, cancelling ctx no longer stops the write; a write whose ctx
// is done before its turn is not run.
func (s *Set[T]) Do(ctx context.Context, v T) error {
	w := &setWrite[T]{ctx: ctx, val: v, done: make(chan setOutcome[T], 1)}
	var batch []*setWrite[T]
	s.mu.Lock()
	s.queue = append(s.queue, w)
	if s.running == s.lanes {
		s.mu.Unlock()
		o := <-w.done
		if o.batch == nil {
			return o.err
		}
		batch = o.batch // w leads it, on the lane handed over
	} else {
		s.running++
		batch = s.take()
		s.mu.Unlock()
	}
	s.runBatch(batch)
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.running--
		s.mu.Unlock()
	} else {
		next := s.take()
		s.mu.Unlock()
		next[0].done <- setOutcome[T]{batch: next}
	}
	return (<-w.done).err
}

// take removes the next batch from the queue; s.mu is held.
func (s *Set[T]) take() []*setWrite[T] {
	n := min(len(s.queue), s.max)
	batch := s.queue[:n:n]
	s.queue = s.queue[n:]
	s.batches++
	return batch
}

// runBatch runs one batch and tells each write its result.
func (s *Set[T]) runBatch(batch []*setWrite[T]) {
	results := make([]error, len(batch))
	defer func() {
		for i, w := range batch {
			w.done <- setOutcome[T]{err: results[i]}
		}
	}()
	// The batch outlives any one caller's cancellation.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var items []*Item[T]
	var index []int
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		iw := &write{ctx: w.ctx}
		ictx, icancel := context.WithDeadline(context.WithoutCancel(w.ctx), deadline)
		defer icancel()
		items = append(items, &Item[T]{Ctx: context.WithValue(ictx, writeKey{}, iw), Val: w.val, w: iw})
		index = append(index, i)
	}
	if len(items) == 0 {
		return
	}
	err := s.attempt(ctx, items)
	if err == nil {
		for j, it := range items {
			results[index[j]] = it.Err
		}
		return
	}
	s.mu.Lock()
	s.alones += len(items)
	s.mu.Unlock()
	for j, it := range items {
		results[index[j]] = s.runAlone(ctx, it)
	}
}

// attempt runs the batch's items in one transaction and commits what they
// kept (a failed commit is every item's result). It returns an error only
// when the batch must run again alone.
func (s *Set[T]) attempt(ctx context.Context, items []*Item[T]) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		for _, it := range items {
			it.Err = fmt.Errorf("begin: %w", err)
		}
		return nil
	}
	defer tx.Rollback()
	if err := s.call(ctx, tx, items); err != nil {
		return err
	}
	writes := make([]*write, len(items))
	results := make([]error, len(items))
	for i, it := range items {
		writes[i], results[i] = it.w, it.Err
	}
	if err := flushDeferred(ctx, tx, writes, results); err != nil {
		return fmt.Errorf("write deferred items: %w", err)
	}
	if err := tx.Commit(); err != nil {
		for _, it := range items {
			it.Err = fmt.Errorf("commit: %w", err)
		}
	}
	return nil
}

// call runs Run; a panic fails the batch rather than leaving its writes
// waiting, or the lane without a leader.
func (s *Set[T]) call(ctx context.Context, tx *sql.Tx, items []*Item[T]) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("batch panicked: %v", p)
		}
	}()
	return s.run(ctx, tx, items)
}

// runAlone runs one item in a transaction of its own.
func (s *Set[T]) runAlone(ctx context.Context, it *Item[T]) (err error) {
	it.w.deferred = nil
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	err = func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("write panicked: %v", p)
			}
		}()
		return s.alone(it.Ctx, tx, it.Val)
	}()
	if err != nil {
		return err
	}
	if err := flushDeferred(ctx, tx, []*write{it.w}, []error{nil}); err != nil {
		return fmt.Errorf("write deferred items: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
