package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// registry stands in for registrar's status reads while settling: an id is
// found (200) once registered, else 404. It counts the reads of each id and
// the most reads in flight at once; until pollers reads are in flight
// together, each read waits (up to 2 s) for the others.
type registry struct {
	pollers int
	started time.Time

	mu          sync.Mutex
	registered  map[string]bool
	after       map[string]time.Duration // registered this long after started
	onFirstRead map[string]bool          // registered by its first read, after answering 404
	reads       map[string]int
	inFlight    int
	maxInFlight int
	allIn       chan struct{}
}

func newRegistry(pollers int) *registry {
	return &registry{
		pollers:     pollers,
		started:     time.Now(),
		registered:  map[string]bool{},
		after:       map[string]time.Duration{},
		onFirstRead: map[string]bool{},
		reads:       map[string]int{},
		allIn:       make(chan struct{}),
	}
}

func (g *registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/api/registrations/")
	g.mu.Lock()
	g.reads[id]++
	g.inFlight++
	g.maxInFlight = max(g.maxInFlight, g.inFlight)
	if g.inFlight == g.pollers {
		select {
		case <-g.allIn:
		default:
			close(g.allIn)
		}
	}
	found := g.registered[id] || (g.after[id] > 0 && time.Since(g.started) >= g.after[id])
	if g.onFirstRead[id] {
		delete(g.onFirstRead, id)
		g.registered[id] = true
	}
	g.mu.Unlock()

	select {
	case <-g.allIn:
	case <-time.After(2 * time.Second):
	}
	g.mu.Lock()
	g.inFlight--
	g.mu.Unlock()
	if !found {
		http.NotFound(w, r)
		return
	}
	fmt.Fprintf(w, `{"id":%q,"status":"processing"}`, id)
}

func (g *registry) readsOf(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reads[id]
}

// TestSettle checks that settling reads the pending ids concurrently and
// re-reads those not registered yet until the deadline, which counts from
// its start: an id registered after its first read, or just before the
// deadline, counts as registered; a refunded one is no longer read; one
// never registered is left.
func TestSettle(t *testing.T) {
	t.Parallel()
	const pollers = 4
	g := newRegistry(pollers)
	ids := []string{"later", "late", "refunded", "never"}
	for i := range 20 {
		id := fmt.Sprintf("ok-%02d", i)
		ids = append(ids, id)
		g.registered[id] = true
	}
	g.onFirstRead["later"] = true
	const timeout = 600 * time.Millisecond
	// Past the first round, before the deadline, and sooner than a pause
	// of settlePause after the first round would read it again.
	g.after["late"] = timeout / 2
	srv := httptest.NewServer(g)
	defer srv.Close()

	var mu sync.Mutex
	refunded := false
	unanswered := func() []string {
		mu.Lock()
		defer mu.Unlock()
		if refunded {
			return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "refunded" })
		}
		refunded = true // refunded during the first round
		return slices.Clone(ids)
	}
	sr := newStatusReader(srv.URL, pollers)
	defer sr.close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	began := time.Now()
	reg, left := settle(context.Background(), unanswered, sr, timeout, log)
	took := time.Since(began)

	want := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "refunded" || id == "never" })
	slices.Sort(want)
	if !slices.Equal(reg, want) || left != 1 {
		t.Errorf("settle = %v, %d left; want %v, 1 left (never)", reg, left, want)
	}
	if took < timeout || took > timeout+10*time.Second {
		t.Errorf("settle took %v, want the timeout (%v) and one round more at most", took, timeout)
	}
	g.mu.Lock()
	maxInFlight := g.maxInFlight
	g.mu.Unlock()
	if maxInFlight != pollers {
		t.Errorf("at most %d reads in flight at once, want %d", maxInFlight, pollers)
	}
	for id, want := range map[string]int{"ok-00": 1, "refunded": 1, "later": 2, "late": 2} {
		if n := g.readsOf(id); n != want {
			t.Errorf("%s read %d times, want %d", id, n, want)
		}
	}
	if n := g.readsOf("never"); n < 2 {
		t.Errorf("never read %d times, want again until the deadline", n)
	}
}

// TestSettleNothingPending checks that settling with nothing to settle
// reads nothing and returns at once.
func TestSettleNothingPending(t *testing.T) {
	t.Parallel()
	sr := newStatusReader("http://127.0.0.1:1", 4)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	began := time.Now()
	reg, left := settle(context.Background(), func() []string { return nil }, sr, time.Hour, log)
	if len(reg) != 0 || left != 0 || time.Since(began) > 5*time.Second {
		t.Fatalf("settle = %v, %d left after %v; want nothing, at once", reg, left, time.Since(began))
	}
}

// TestAwaitCompleted checks that the registrations read as not completed are
// read again until the deadline.
func TestAwaitCompleted(t *testing.T) {
	t.Parallel()
	ss := &statusServer{done: map[string]bool{"a": true}, reads: map[string]int{}}
	srv := httptest.NewServer(ss)
	defer srv.Close()
	sr := newStatusReader(srv.URL, 2)
	defer sr.close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		ss.finish("b")
	}()
	if n := awaitCompleted(context.Background(), sr, []string{"a", "b", "stuck"}, 500*time.Millisecond); n != 2 {
		t.Fatalf("%d completed, want 2 (a, b)", n)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.reads["a"] != 1 || ss.reads["b"] < 2 || ss.reads["stuck"] < 2 {
		t.Fatalf("reads = %v, want a once, b and stuck again", ss.reads)
	}
}
