package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRedispatch(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	killAt, execAt := at(1000), at(1010)
	accepted := map[string]time.Time{
		"done-before": at(100),  // completed before the kill: not interrupted
		"emailed":     at(200),  // SendGrid call after the restart
		"completed":   at(300),  // read completed after the restart
		"both":        at(400),  // completion seen before its (late) email call
		"never":       at(500),  // nothing after the restart
		"after-kill":  at(1500), // accepted after the restart: not interrupted
	}
	completed := map[string]time.Time{
		"done-before": at(900),
		"completed":   at(1310),
		"both":        at(1110),
	}
	emails := map[string]time.Time{
		"emailed": at(1060),
		"both":    at(1410),
	}
	d := redispatch(killAt, execAt, accepted, completed, emails)
	if d.Interrupted != 4 || d.Resumed != 3 {
		t.Fatalf("interrupted %d, resumed %d; want 4, 3", d.Interrupted, d.Resumed)
	}
	if d.AllResumedMS != nil {
		t.Errorf("all resumed = %v, want nil while one never resumed", *d.AllResumedMS)
	}
	if len(d.NotResumed) != 1 || d.NotResumed[0] != "never" {
		t.Errorf("not resumed = %v", d.NotResumed)
	}
	if d.Latency.N != 3 || d.Latency.P50 != 100 || d.Latency.Max != 300 {
		t.Errorf("latency = %+v, want 50, 100, 300 ms", d.Latency)
	}

	delete(accepted, "never")
	d = redispatch(killAt, execAt, accepted, completed, emails)
	if d.AllResumedMS == nil || *d.AllResumedMS != 300 {
		t.Errorf("all resumed = %v, want 300 ms", d.AllResumedMS)
	}
	if redispatch(time.Time{}, time.Time{}, accepted, completed, emails) != nil {
		t.Error("redispatch without a kill is not nil")
	}
}

func TestRecoveryWatch(t *testing.T) {
	t.Parallel()
	w := newRecoveryWatch()
	t0 := time.Now()
	w.answer(http.StatusAccepted, t0) // before any restart: ignored
	w.emailCall("a", t0)
	w.accept("a", t0)
	w.restarted(t0.Add(time.Millisecond), t0.Add(2*time.Millisecond))
	w.answer(http.StatusServiceUnavailable, t0.Add(3*time.Millisecond)) // 5xx: not an answer
	w.answer(http.StatusConflict, t0.Add(10*time.Millisecond))
	w.answer(http.StatusAccepted, t0.Add(20*time.Millisecond))
	w.answer(http.StatusAccepted, t0.Add(30*time.Millisecond))
	w.emailCall("a", t0.Add(40*time.Millisecond))
	w.emailCall("a", t0.Add(50*time.Millisecond))
	var r Restart
	w.fill(&r)
	if r.FirstLoadAnswerMS == nil || *r.FirstLoadAnswerMS != 8 || r.First202MS == nil || *r.First202MS != 18 {
		t.Errorf("first answer %v, first 202 %v; want 8 and 18 ms", r.FirstLoadAnswerMS, r.First202MS)
	}
	if d := r.Redispatch; d == nil || d.Resumed != 1 || *d.AllResumedMS != 38 {
		t.Errorf("redispatch = %+v, want one resumed after 38 ms", d)
	}
}

func TestRecoveryCounts(t *testing.T) {
	t.Parallel()
	log := `time=2026-11-26T11:42:50.709Z level=INFO msg="starting registrar" version=(devel)
time=2026-11-26T11:42:50.713Z level=WARN msg="re-queued jobs left running by a stopped process" count=12
time=2026-11-26T11:42:50.715Z level=WARN msg="payment attempts left by a stopped process will be resolved" count=3
time=2026-11-26T11:43:10.178Z level=WARN msg="settled abandoned payment attempts" count=3
`
	if q, h := recoveryCounts(log); q != 12 || h != 3 {
		t.Errorf("recoveryCounts = %d, %d; want 12, 3", q, h)
	}
	want := time.Date(2026, 11, 26, 11, 42, 50, 713e6, time.UTC)
	if got := logTime(log, "msg=\"re-queued"); !got.Equal(want) {
		t.Errorf("logTime = %v, want %v", got, want)
	}
	if got := logTime(log, "msg=listening"); !got.IsZero() {
		t.Errorf("logTime of a missing line = %v", got)
	}
	if q, h := recoveryCounts("nothing to see\n"); q != 0 || h != 0 {
		t.Errorf("recoveryCounts of an empty log = %d, %d", q, h)
	}
}

func TestPollAsync(t *testing.T) {
	t.Parallel()
	ready := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/readyz" && !ready:
			ready = true
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/api/registrations":
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
	}))
	defer srv.Close()
	tr := &http.Transport{DisableKeepAlives: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if at := <-pollAsync(ctx, time.Millisecond, func(ctx context.Context) bool { return readyzOK(ctx, tr, srv.URL) }); at.IsZero() {
		t.Error("readyz poll never succeeded")
	}
	if !postAnswered(ctx, tr, srv.URL) {
		t.Error("a 422 to the POST is not an answer")
	}
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if at := <-pollAsync(short, time.Millisecond, func(context.Context) bool { return false }); !at.IsZero() {
		t.Error("a poll that never succeeds reported a time")
	}
}

func TestWriteRestart(t *testing.T) {
	t.Parallel()
	ready, post, all := 37.2, 36.3, 115.0
	r := &Restart{KillAtMS: 2000, GoneMS: 1.85, PeakRSSBeforeKillMiB: 33, PollMS: 5, ReadyMS: &ready, FirstPostMS: &post,
		RequeuedJobs: 12, HeldSeats: 3,
		Redispatch: &Redispatch{Interrupted: 12, Resumed: 12, AllResumedMS: &all, Latency: Percentiles{N: 12, P50: 62, Max: 115}}}
	var b bytes.Buffer
	writeRestart(&b, r)
	for _, want := range []string{"SIGKILL at 2.00 s", "re-queued 12 running jobs", "3 held seats",
		"/readyz 200 after 37.2 ms", "first answered POST after 36.3 ms", "first 202 never", "12 resumed", "all within 115 ms"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("restart text lacks %q:\n%s", want, b.String())
		}
	}
	r.Redispatch = &Redispatch{Interrupted: 3, Resumed: 2, NotResumed: []string{"abc"}}
	b.Reset()
	writeRestart(&b, r)
	if !strings.Contains(b.String(), "1 NEVER: abc") {
		t.Errorf("restart text does not name the registration that never resumed:\n%s", b.String())
	}
}

func TestRestartFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		bad  string
	}{
		{[]string{"-target", "http://x", "-burst", "5", "-kill-after", "1s"}, "-kill-after needs -registrar"},
		{[]string{"-registrar", "x", "-burst", "5", "-repeat", "0"}, "-repeat must be at least 1"},
		{[]string{"-registrar", "x", "-burst", "5", "-repeat", "2", "-database", "postgres://h/db"}, "fresh database per run"},
		{[]string{"-registrar", "x", "-backlog", "9", "-burst", "5"}, "-backlog runs no attack"},
		{[]string{"-target", "http://x", "-backlog", "9"}, "-backlog needs -registrar"},
		{[]string{"-registrar", "x", "-backlog", "2"}, "at least 3"},
		{[]string{"-registrar", "x", "-backlog", "9"}, ""},
		{[]string{"-registrar", "x", "-backlog", "9", "-database", "postgres://h/db"}, ""},
		{[]string{"-registrar", "x", "-burst", "5", "-kill-after", "300ms", "-repeat", "3"}, ""},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, new(bytes.Buffer))
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("%q: error %v, want one mentioning %q", tt.args, err, tt.bad)
		}
	}
	o, err := parseFlags([]string{"-registrar", "x", "-burst", "5", "-kill-after", "1s"}, new(bytes.Buffer))
	if err != nil || !o.effectsOnHangup {
		t.Errorf("-kill-after does not turn -effects-on-hangup on: %v %v", o.effectsOnHangup, err)
	}
	o, err = parseFlags([]string{"-registrar", "x", "-burst", "5", "-kill-after", "1s", "-effects-on-hangup=false"}, new(bytes.Buffer))
	if err != nil || o.effectsOnHangup {
		t.Errorf("-effects-on-hangup=false is overridden: %v %v", o.effectsOnHangup, err)
	}
}
