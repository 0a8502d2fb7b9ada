package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// statusServer answers GET /api/registrations/{id} with "processing" until
// the id is marked done, then "completed"; it counts the reads.
type statusServer struct {
	mu    sync.Mutex
	done  map[string]bool
	reads map[string]int
}

func (s *statusServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/api/registrations/")
	s.mu.Lock()
	s.reads[id]++
	status := "processing"
	if s.done[id] {
		status = "completed"
	}
	if id == "stuck" {
		status = "needs_attention"
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"id":"` + id + `","status":"` + status + `"}`))
}

func (s *statusServer) finish(id string) {
	s.mu.Lock()
	s.done[id] = true
	s.mu.Unlock()
}

func TestTrackerWithHints(t *testing.T) {
	t.Parallel()
	ss := &statusServer{done: map[string]bool{}, reads: map[string]int{}}
	srv := httptest.NewServer(ss)
	defer srv.Close()

	tk := newTracker(srv.URL, 20*time.Millisecond, 2)
	tk.useHints(time.Hour) // without a hint, never read
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tk.run(ctx); close(done) }()

	began := time.Now()
	tk.add("a", began)
	tk.add("stuck", began)
	tk.hint("b") // a hint may come before the 202 is seen
	tk.add("b", began)
	tk.hint("stuck")
	time.Sleep(100 * time.Millisecond)
	ss.finish("a")
	ss.finish("b")
	tk.hint("a")
	tk.wait(context.Background(), 5*time.Second)
	cancel()
	<-done

	c := tk.result(began, 5*time.Second)
	if c.Tracked != 3 || c.Completed != 2 || c.NeedsAttention != 1 || c.TimedOut != 0 || c.Rate != 2.0/3 {
		t.Fatalf("completion = %+v", c)
	}
	if c.Latency.N != 2 || c.Latency.Max < 100 {
		t.Fatalf("latency = %+v, want 2 completions after at least 100 ms", c.Latency)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.reads["a"] != 1 {
		t.Errorf("a read %d times, want once: only after its hint", ss.reads["a"])
	}
	if ss.reads["b"] < 2 {
		t.Errorf("b read %d times, want every interval from its hint until done", ss.reads["b"])
	}
}

func TestTrackerTimesOut(t *testing.T) {
	t.Parallel()
	ss := &statusServer{done: map[string]bool{}, reads: map[string]int{}}
	srv := httptest.NewServer(ss)
	defer srv.Close()
	tk := newTracker(srv.URL, 10*time.Millisecond, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tk.run(ctx); close(done) }()
	tk.add("never", time.Now())
	tk.wait(context.Background(), 100*time.Millisecond)
	cancel()
	<-done
	if c := tk.result(time.Now(), 100*time.Millisecond); c.TimedOut != 1 || c.Completed != 0 || c.Rate != 0 {
		t.Fatalf("completion = %+v, want 1 timed out", c)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.reads["never"] < 3 {
		t.Errorf("read %d times in 100 ms at a 10 ms interval without hints", ss.reads["never"])
	}
}
