package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// supervisor owns the registrar the command started, across a SIGKILL and
// restart: the restarted process gets the same binary, environment (and so
// address and database) and data directory.
type supervisor struct {
	bin string
	dir string
	env []string
	log *slog.Logger

	mu  sync.Mutex
	cur *child
	// Figures of the processes killed so far, read just before each kill.
	deadCPU  time.Duration
	deadPeak int64
}

func newSupervisor(bin, dir string, env []string, c *child, log *slog.Logger) *supervisor {
	return &supervisor{bin: bin, dir: dir, env: env, log: log, cur: c}
}

func (s *supervisor) current() *child {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// cpu is the CPU time used by every registrar process started so far.
func (s *supervisor) cpu() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deadCPU
	if c, err := procCPU(s.cur.pid()); err == nil {
		d += c
	}
	return d
}

// peakRSS is the highest VmHWM of the registrar processes, in bytes.
func (s *supervisor) peakRSS() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rss, err := procStatus(s.cur.pid(), "VmHWM")
	return max(rss, s.deadPeak), err
}

// stop ends the current registrar with SIGTERM.
func (s *supervisor) stop() { s.current().stop(s.log) }

// Restart is what one SIGKILL of registrar and its restart measured. All
// durations after the restart run from the moment the command exec'd the
// new process.
type Restart struct {
	// KillAtMS is when registrar was killed, from the attack's start.
	KillAtMS float64 `json:"kill_at_ms"`
	// GoneMS is from the SIGKILL until the process was reaped.
	GoneMS float64 `json:"gone_ms"`
	// PeakRSSBeforeKillMiB is the killed process's VmHWM just before.
	PeakRSSBeforeKillMiB float64 `json:"peak_rss_before_kill_mib"`
	// PollMS is how often /readyz and the POST were polled.
	PollMS float64 `json:"poll_ms"`
	// ReadyMS is to the first 200 from GET /readyz; FirstPostMS to the first
	// answer (any status below 500) to POST /api/registrations with an empty
	// body, which registrar refuses with 422 before touching the database.
	ReadyMS     *float64 `json:"ready_ms"`
	FirstPostMS *float64 `json:"first_post_ms"`
	// FirstLoadAnswerMS is to the first answer below 500 to one of the
	// load's own requests (retries included) after the restart,
	// First202MS to the first 202 among them.
	FirstLoadAnswerMS *float64 `json:"first_load_answer_ms,omitempty"`
	First202MS        *float64 `json:"first_202_ms,omitempty"`
	// RequeuedJobs and HeldSeats are what registrar's start-up recovery
	// reported in its log: jobs left running that it re-queued, and payment
	// attempts still holding a seat that it made due for resolution.
	RequeuedJobs int `json:"requeued_jobs"`
	HeldSeats    int `json:"held_seats"`
	// ListeningMS is to registrar's own "listening" log line: when its
	// listener was open, whatever the load made the polls wait.
	ListeningMS *float64    `json:"listening_ms,omitempty"`
	Redispatch  *Redispatch `json:"redispatch,omitempty"`
}

// restartPoll is how often /readyz and the POST are polled after a restart.
const restartPoll = 5 * time.Millisecond

// killAndRestart SIGKILLs the current registrar, starts it again at once
// and measures how soon the new one is ready and answers. began is the
// attack's start.
func (s *supervisor) killAndRestart(ctx context.Context, began time.Time, w *recoveryWatch) (*Restart, error) {
	old := s.current()
	r := &Restart{PollMS: ms(restartPoll)}
	peak, _ := procStatus(old.pid(), "VmHWM")
	cpu, _ := procCPU(old.pid())
	r.PeakRSSBeforeKillMiB = float64(peak) / (1 << 20)
	logOffset := fileSize(old.logPath)

	killAt := time.Now()
	if err := old.cmd.Process.Kill(); err != nil {
		return nil, fmt.Errorf("SIGKILL registrar: %w", err)
	}
	<-old.exited
	gone := time.Now()
	s.mu.Lock()
	s.deadCPU += cpu
	s.deadPeak = max(s.deadPeak, peak)
	s.mu.Unlock()
	r.KillAtMS, r.GoneMS = ms(killAt.Sub(began)), ms(gone.Sub(killAt))
	s.log.Info("registrar killed; restarting", "pid", old.pid(), "at", killAt.Sub(began).Round(time.Millisecond))

	execAt := time.Now()
	w.restarted(killAt, execAt)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// A new connection per request: nothing waits on one to the dead process.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ready := pollAsync(pctx, restartPoll, func(ctx context.Context) bool { return readyzOK(ctx, tr, old.baseURL) })
	posted := pollAsync(pctx, restartPoll, func(ctx context.Context) bool { return postAnswered(ctx, tr, old.baseURL) })

	c, err := spawn(ctx, s.bin, s.dir, s.env, s.log)
	if err != nil {
		return nil, fmt.Errorf("restart registrar: %w", err)
	}
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()
	if c.baseURL != old.baseURL {
		return nil, fmt.Errorf("restarted registrar listens on %s, not %s", c.baseURL, old.baseURL)
	}
	r.ReadyMS = sinceMS(execAt, <-ready)
	r.FirstPostMS = sinceMS(execAt, <-posted)
	s.log.Info("registrar restarted", "pid", c.pid(), "ready_after", fmtOptMS(r.ReadyMS), "first_post_after", fmtOptMS(r.FirstPostMS))
	restartLog := readFrom(c.logPath, logOffset)
	r.RequeuedJobs, r.HeldSeats = recoveryCounts(restartLog)
	r.ListeningMS = sinceMS(execAt, logTime(restartLog, "msg=listening"))
	return r, nil
}

// sinceMS is at − from in milliseconds, or nil when at is zero.
func sinceMS(from, at time.Time) *float64 {
	if at.IsZero() {
		return nil
	}
	v := ms(at.Sub(from))
	return &v
}

func fmtOptMS(v *float64) string {
	if v == nil {
		return "never"
	}
	return fmtMS(*v)
}

// pollAsync calls ok every interval until it reports true or ctx ends, and
// then sends the time ok last returned at (zero if never true).
func pollAsync(ctx context.Context, interval time.Duration, ok func(context.Context) bool) <-chan time.Time {
	done := make(chan time.Time, 1)
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if ok(ctx) {
				done <- time.Now()
				return
			}
			select {
			case <-ctx.Done():
				done <- time.Time{}
				return
			case <-tick.C:
			}
		}
	}()
	return done
}

// pollDo sends req through rt with a short timeout and returns the status.
func pollDo(ctx context.Context, rt http.RoundTripper, req *http.Request) (int, bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		return 0, false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, true
}

// readyzOK reports whether GET /readyz answers 200.
func readyzOK(ctx context.Context, rt http.RoundTripper, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return false
	}
	status, ok := pollDo(ctx, rt, req)
	return ok && status == http.StatusOK
}

// postAnswered reports whether POST /api/registrations is answered below
// 500. The body is empty JSON: registrar answers 422 and changes nothing.
func postAnswered(ctx context.Context, rt http.RoundTripper, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/registrations", bytes.NewReader([]byte(`{}`)))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	status, ok := pollDo(ctx, rt, req)
	return ok && status < 500
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns path's content from offset on ("" if unreadable).
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, _ := io.ReadAll(f)
	return string(data)
}

// recoveryCounts reads registrar's start-up recovery lines (slog text):
// jobs re-queued and held seats made due for resolution.
func recoveryCounts(log string) (requeued, held int) {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, `msg="re-queued jobs left running by a stopped process"`):
			requeued += logInt(line, "count")
		case strings.Contains(line, `msg="payment attempts left by a stopped process will be resolved"`):
			held += logInt(line, "count")
		}
	}
	return requeued, held
}

// logTime is the time= of the first slog text line holding marker (zero if
// none).
func logTime(log, marker string) time.Time {
	for line := range strings.SplitSeq(log, "\n") {
		if !strings.Contains(line, marker) {
			continue
		}
		v, ok := strings.CutPrefix(line, "time=")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, " ")
		t, err := time.Parse(time.RFC3339Nano, v)
		if err == nil {
			return t
		}
	}
	return time.Time{}
}

// logInt is the integer value of key=N in a slog text line (0 if absent).
func logInt(line, key string) int {
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// recoveryWatch collects, across a kill, what tells when the load was
// answered again and when the pipelines cut off by the kill resumed.
type recoveryWatch struct {
	mu          sync.Mutex
	killAt      time.Time
	execAt      time.Time
	firstAnswer time.Time
	first202    time.Time
	accepted    map[string]time.Time // 202s, by registration id
	completed   map[string]time.Time // first read as completed
	emailCalls  map[string]time.Time // first SendGrid call after the restart
}

func newRecoveryWatch() *recoveryWatch {
	return &recoveryWatch{accepted: map[string]time.Time{}, completed: map[string]time.Time{}, emailCalls: map[string]time.Time{}}
}

func (w *recoveryWatch) restarted(killAt, execAt time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.killAt, w.execAt = killAt, execAt
}

// answer notes an HTTP answer to the load.
func (w *recoveryWatch) answer(status int, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.execAt.IsZero() || at.Before(w.execAt) || status >= 500 {
		return
	}
	if w.firstAnswer.IsZero() {
		w.firstAnswer = at
	}
	if status == http.StatusAccepted && w.first202.IsZero() {
		w.first202 = at
	}
}

func (w *recoveryWatch) accept(id string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.accepted[id]; !ok {
		w.accepted[id] = at
	}
}

func (w *recoveryWatch) complete(id string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.completed[id]; !ok {
		w.completed[id] = at
	}
}

// emailCall notes a SendGrid call for registration id; only the first after
// the restart counts.
func (w *recoveryWatch) emailCall(id string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.execAt.IsZero() || at.Before(w.execAt) {
		return
	}
	if _, ok := w.emailCalls[id]; !ok {
		w.emailCalls[id] = at
	}
}

// fill completes r with the load's first answers after the restart and the
// re-dispatch of the interrupted pipelines.
func (w *recoveryWatch) fill(r *Restart) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r.FirstLoadAnswerMS = sinceMS(w.execAt, w.firstAnswer)
	r.First202MS = sinceMS(w.execAt, w.first202)
	r.Redispatch = redispatch(w.killAt, w.execAt, w.accepted, w.completed, w.emailCalls)
}

// Redispatch is how soon the pipelines the kill interrupted resumed.
//
// Interrupted are the registrations answered 202 before the kill and not
// read as completed before it. One has resumed at the first sign after the
// restart that its pipeline runs again: a SendGrid call for it (its
// confirmation job ran), or a read showing it completed (its last jobs ran;
// for one whose email went out before the kill, only saving the order may
// be left, which no provider sees). The figure is therefore an upper bound
// on re-dispatch: it includes a job's wait in the queue behind the others,
// and a completion is seen up to one -poll-interval late.
type Redispatch struct {
	Interrupted int `json:"interrupted"`
	Resumed     int `json:"resumed"`
	// AllResumedMS is from the restart's exec until the last interrupted
	// registration resumed; nil when some never did.
	AllResumedMS *float64    `json:"all_resumed_ms"`
	Latency      Percentiles `json:"latency"`
	// NotResumed lists up to 10 registrations that never resumed.
	NotResumed []string `json:"not_resumed,omitempty"`
}

// redispatch computes Redispatch from the 202s, completions and SendGrid
// calls (the latter only after execAt).
func redispatch(killAt, execAt time.Time, accepted, completed, emailCalls map[string]time.Time) *Redispatch {
	if killAt.IsZero() {
		return nil
	}
	d := &Redispatch{}
	var lat []time.Duration
	for id, at := range accepted {
		if !at.Before(killAt) {
			continue
		}
		done, ok := completed[id]
		if ok && done.Before(killAt) {
			continue
		}
		d.Interrupted++
		resumed, seen := emailCalls[id]
		if ok && (!seen || done.Before(resumed)) {
			resumed, seen = done, true
		}
		if !seen {
			if len(d.NotResumed) < 10 {
				d.NotResumed = append(d.NotResumed, id)
			}
			continue
		}
		d.Resumed++
		lat = append(lat, max(resumed.Sub(execAt), 0))
	}
	slices.Sort(d.NotResumed)
	d.Latency = percentiles(lat)
	if d.Resumed == d.Interrupted {
		v := d.Latency.Max
		d.AllResumedMS = &v
	}
	return d
}
