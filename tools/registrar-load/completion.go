package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// tracker follows accepted registrations until they are completed, reading
// GET /api/registrations/{id}. A completion is timed from the 202 to the
// first read that shows it, so the figures are late by up to one interval.
//
// Status reads cost the server work (two queries each), so they are spent
// where they tell something: with hints on (the fakes report each
// confirmation email, one of the three activities), a registration is read
// shortly after its email went out and then every interval. Before its hint
// it is read only every slow interval, in case its email step fails, and
// such reads are rationed to one per slowGap in all, so that a backlog of
// thousands does not turn into thousands of reads a second. Without hints
// (-target with other providers) every pending registration is read every
// interval.
type tracker struct {
	client   *http.Client
	baseURL  string
	interval time.Duration
	slow     time.Duration // read interval before the hint; = interval without hints
	pollers  int

	mu             sync.Mutex
	nextSlowRead   time.Time // rations reads before a hint
	pending        map[string]*pendingReg
	tracked        int
	latencies      []time.Duration
	lastCompleted  time.Time
	needsAttention int
	reads          int64
	readErrors     int64
	hinted         map[string]bool // hints for ids not (yet) added

	// onComplete, when set before run, learns of each registration read as
	// completed, with the time of that read.
	onComplete func(id string, at time.Time)
}

type pendingReg struct {
	acceptedAt time.Time
	nextRead   time.Time
	hinted     bool
	reading    bool
}

// hintDelay is how long after its hint a registration is first read: the
// fan-in commit follows the last activity. slowGap rations reads before a
// hint to 20 a second.
const (
	hintDelay = 5 * time.Millisecond
	slowGap   = 50 * time.Millisecond
)

func newTracker(baseURL string, interval time.Duration, pollers int) *tracker {
	tr := &http.Transport{MaxIdleConnsPerHost: pollers, MaxConnsPerHost: pollers, IdleConnTimeout: 30 * time.Second}
	return &tracker{
		client:   &http.Client{Timeout: 10 * time.Second, Transport: tr},
		baseURL:  strings.TrimRight(baseURL, "/"),
		interval: interval,
		slow:     interval,
		pollers:  pollers,
		pending:  map[string]*pendingReg{},
		hinted:   map[string]bool{},
	}
}

// useHints makes reads before a registration's hint rare (every slow).
func (t *tracker) useHints(slow time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.slow = max(slow, t.interval)
}

// hint says registration id's last activity is probably done.
func (t *tracker) hint(id string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pending[id]
	if !ok {
		t.hinted[id] = true
		return
	}
	if !p.hinted {
		p.hinted = true
		if next := now.Add(hintDelay); next.Before(p.nextRead) {
			p.nextRead = next
		}
	}
}

// add starts following registration id, accepted at at.
func (t *tracker) add(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.pending[id]; ok {
		return
	}
	t.tracked++
	p := &pendingReg{acceptedAt: at, nextRead: at.Add(t.slow)}
	if t.hinted[id] {
		delete(t.hinted, id)
		p.hinted, p.nextRead = true, at
	}
	t.pending[id] = p
}

// run reads pending registrations until ctx is done.
func (t *tracker) run(ctx context.Context) {
	jobs := make(chan string, t.pollers*4)
	var wg sync.WaitGroup
	for range t.pollers {
		wg.Go(func() {
			for id := range jobs {
				t.read(ctx, id)
			}
		})
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer func() {
		tick.Stop()
		close(jobs)
		wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		var due []string
		t.mu.Lock()
		rationed := t.slow > t.interval
		for id, p := range t.pending {
			if p.reading || now.Before(p.nextRead) {
				continue
			}
			if rationed && !p.hinted {
				if now.Before(t.nextSlowRead) {
					continue
				}
				t.nextSlowRead = now.Add(slowGap)
			}
			p.reading = true
			due = append(due, id)
		}
		t.mu.Unlock()
		for i, id := range due {
			select {
			case jobs <- id:
			case <-ctx.Done():
				t.release(due[i:])
				return
			}
		}
	}
}

func (t *tracker) release(ids []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		if p, ok := t.pending[id]; ok {
			p.reading = false
		}
	}
}

// read reads one registration's status.
func (t *tracker) read(ctx context.Context, id string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.baseURL+"/api/registrations/"+id, nil)
	var status string
	resp, err := t.client.Do(req)
	if err == nil {
		var body struct {
			Status string `json:"status"`
		}
		if resp.StatusCode == http.StatusOK {
			json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body)
			status = body.Status
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reads++
	if err != nil {
		t.readErrors++
	}
	p, ok := t.pending[id]
	if !ok {
		return
	}
	switch status {
	case "completed":
		t.latencies = append(t.latencies, now.Sub(p.acceptedAt))
		t.lastCompleted = now
		delete(t.pending, id)
		if t.onComplete != nil {
			t.onComplete(id, now)
		}
	case "needs_attention":
		t.needsAttention++
		delete(t.pending, id)
	default:
		p.reading = false
		if p.hinted {
			p.nextRead = now.Add(t.interval)
		} else {
			p.nextRead = now.Add(t.slow)
		}
	}
}

// wait returns when nothing is pending or after timeout.
func (t *tracker) wait(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		t.mu.Lock()
		n := len(t.pending)
		t.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Completion is the end-to-end outcome of the accepted registrations.
type Completion struct {
	Tracked        int     `json:"tracked"`
	Completed      int     `json:"completed"`
	NeedsAttention int     `json:"needs_attention"`
	TimedOut       int     `json:"timed_out"`
	Rate           float64 `json:"rate"`
	// CompletedPerSec is completions per second from the attack's start to
	// the last completion.
	CompletedPerSec float64     `json:"completed_per_sec"`
	Latency         Percentiles `json:"latency"`
	PollIntervalMS  float64     `json:"poll_interval_ms"`
	StatusReads     int64       `json:"status_reads"`
	TimeoutS        float64     `json:"timeout_s"`
	// Unanswered are registrations whose client never got their 202 (it
	// timed out, or registrar was killed after the commit);
	// UnansweredCompleted of them were completed by the end of the run.
	Unanswered          int `json:"unanswered,omitempty"`
	UnansweredCompleted int `json:"unanswered_completed,omitempty"`
}

// result summarises the tracker; began is the attack's start.
func (t *tracker) result(began time.Time, timeout time.Duration) *Completion {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &Completion{
		Tracked:        t.tracked,
		Completed:      len(t.latencies),
		NeedsAttention: t.needsAttention,
		TimedOut:       len(t.pending),
		Latency:        percentiles(t.latencies),
		PollIntervalMS: ms(t.interval),
		StatusReads:    t.reads,
		TimeoutS:       timeout.Seconds(),
	}
	c.Rate = ratio(float64(c.Completed), float64(c.Tracked))
	if c.Completed > 0 {
		c.CompletedPerSec = float64(c.Completed) / t.lastCompleted.Sub(began).Seconds()
	}
	return c
}
