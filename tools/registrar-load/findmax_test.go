package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// sustainedSide is a step's measurement that meets every limit of
// limitsOf(50 ms): 100 attempts, all 202, completed in time, exact.
func sustainedSide() *Side {
	return &Side{
		Attempts: 100, Accepted: 100, Errors: map[string]int{},
		Latency:    Percentiles{N: 100, P99: 120},
		Completion: &Completion{Tracked: 100, Completed: 100, Latency: Percentiles{N: 100, P99: 600}},
		Providers:  &ProviderCounts{},
		Exactness:  &Exactness{OK: true},
	}
}

// TestJudge checks the verdict on synthetic steps: one that meets every
// limit passes, and each criterion failing alone fails the step with that
// criterion named.
func TestJudge(t *testing.T) {
	t.Parallel()
	l := limitsOf(options{providerDelay: 50 * time.Millisecond})
	if l.P99MS != 300 || l.CompletionP99MS != 1150 || l.DrainS != 5 {
		t.Fatalf("limits = %+v, want p99 300 ms, completion p99 1150 ms, drain 5 s", l)
	}
	if v := judge(l, 100, sustainedSide()); !v.Pass || len(v.Failed) != 0 {
		t.Fatalf("a sustained step: %+v, want a pass", v)
	}
	tests := []struct {
		name  string
		spoil func(s *Side)
		want  string
	}{
		{"rate not offered", func(s *Side) {
			s.Attempts, s.Accepted, s.Latency.N = 90, 90, 90
			s.Completion.Tracked, s.Completion.Completed = 90, 90
		}, "rate: the load generator sent 90 of 100"},
		{"an answer not 202", func(s *Side) {
			s.Accepted, s.Errors = 99, map[string]int{"503 unavailable": 1}
			s.Completion.Tracked, s.Completion.Completed = 99, 99
		}, "202: 99 of 100 answered 202 (others: 503 unavailable: 1)"},
		{"sold out", func(s *Side) {
			s.Accepted, s.SoldOut = 98, 2
			s.Completion.Tracked, s.Completion.Completed = 98, 98
		}, "202: 98 of 100 answered 202 (others: 409 sold_out: 2"},
		{"latency", func(s *Side) { s.Latency.P99 = 301 }, "latency: p99 301.0 ms > 300.0 ms"},
		{"completion pace", func(s *Side) { s.Completion.Latency.P99 = 1151 }, "completion: p99 1151.0 ms > 1150.0 ms"},
		{"backlog", func(s *Side) { s.Completion.Completed, s.Completion.TimedOut = 97, 3 }, "backlog: 3 of 100 accepted registrations not completed 5s after the load"},
		{"needs attention", func(s *Side) { s.Completion.Completed, s.Completion.NeedsAttention = 99, 1 }, "backlog: 1 of 100"},
		{"completion not followed", func(s *Side) { s.Completion = nil }, "completion: not followed"},
		{"double charge", func(s *Side) { s.Exactness = &Exactness{DoubleCharges: 1} }, "exactness: oversold 0, double charges 1"},
	}
	for _, tt := range tests {
		s := sustainedSide()
		tt.spoil(s)
		v := judge(l, 100, s)
		if v.Pass || len(v.Failed) != 1 || !strings.HasPrefix(v.Failed[0], tt.want) {
			t.Errorf("%s: %+v, want a failure of one criterion starting %q", tt.name, v, tt.want)
		}
	}
	// Within the limits exactly is still a pass.
	s := sustainedSide()
	s.Latency.P99, s.Completion.Latency.P99 = 300, 1150
	if v := judge(l, 100, s); !v.Pass {
		t.Errorf("at the limits: %+v, want a pass", v)
	}
}

// threshold is a fake measurement: rates up to max pass.
func threshold(max int, tried *[]int) func(context.Context, int) (step, error) {
	return func(_ context.Context, rate int) (step, error) {
		*tried = append(*tried, rate)
		if rate <= max {
			return step{verdict: verdict{Pass: true}}, nil
		}
		return step{verdict: verdict{Failed: []string{"latency: too slow"}}}, nil
	}
}

// TestSearch checks the search over a fake verdict: doubling until a step
// fails, bisecting to within 10%, halving when the start fails, and the
// step cap.
func TestSearch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		start, steps int
		max          int // the highest rate that passes
		tried        []int
		sustained    int
		failed       int
		capReached   bool
	}{
		{"double then bisect", 100, 8, 730, []int{100, 200, 400, 800, 600, 700, 750}, 700, 750, false},
		{"limit at a doubling", 100, 8, 400, []int{100, 200, 400, 800, 600, 500, 450, 425}, 400, 425, false},
		{"step cap while bisecting", 100, 5, 400, []int{100, 200, 400, 800, 600}, 400, 600, true},
		{"step cap while doubling", 100, 3, 1e6, []int{100, 200, 400}, 400, 0, true},
		{"start fails: halve", 100, 8, 30, []int{100, 50, 25, 37, 31, 28, 29}, 29, 31, false},
		{"nothing passes", 4, 8, 0, []int{4, 2, 1}, 0, 1, false},
		{"small rates: adjacent whole rates", 2, 8, 5, []int{2, 4, 8, 6, 5}, 5, 6, false},
	}
	for _, tt := range tests {
		var tried []int
		var reported []int
		res, err := search(context.Background(), tt.start, tt.steps, threshold(tt.max, &tried), func(st step) {
			reported = append(reported, st.Rate)
		})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(tried, tt.tried) || !slices.Equal(reported, tt.tried) || len(res.Steps) != len(tt.tried) {
			t.Errorf("%s: tried %v, reported %v, %d steps; want %v", tt.name, tried, reported, len(res.Steps), tt.tried)
		}
		if res.Sustained != tt.sustained || res.Failed != tt.failed || res.StepCapReached != tt.capReached {
			t.Errorf("%s: sustained %d, failed %d, cap reached %v; want %d, %d, %v",
				tt.name, res.Sustained, res.Failed, res.StepCapReached, tt.sustained, tt.failed, tt.capReached)
		}
		for i, st := range res.Steps {
			if st.Rate != tt.tried[i] || st.Pass != (st.Rate <= tt.max) {
				t.Errorf("%s: step %d = %+v", tt.name, i+1, st)
			}
		}
	}

	// A measurement that cannot be made ends the search with its error.
	boom := errors.New("registrar exited at start")
	_, err := search(context.Background(), 100, 8, func(context.Context, int) (step, error) { return step{}, boom }, nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "step 1 (100/s)") {
		t.Errorf("error = %v, want the step's error naming step 1 (100/s)", err)
	}
}

func TestFindMaxFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		bad  string
	}{
		{[]string{"-find-max", "-target", "http://127.0.0.1:1"}, "-find-max needs -registrar"},
		{[]string{"-find-max", "-registrar", "x", "-rate", "10/s"}, "without -rate"},
		{[]string{"-find-max", "-registrar", "x", "-repeat", "2"}, "without -rate, -burst, -backlog, -kill-after and -repeat"},
		{[]string{"-find-max", "-registrar", "x", "-database", "postgres://127.0.0.1/x"}, "fresh database per step"},
		{[]string{"-find-max", "-registrar", "x", "-completion=false"}, "judges completions"},
		{[]string{"-find-max", "-registrar", "x", "-find-max-duration", "0s"}, "-find-max-duration must be positive"},
		{[]string{"-find-max", "-registrar", "x", "-find-max-start", "0/s"}, "-find-max-start must be at least 1/s"},
		{[]string{"-find-max", "-registrar", "x", "-find-max-steps", "0"}, "-find-max-steps must be at least 1"},
		{[]string{"-find-max", "-registrar", "x", "-find-max-start", "30/100ms", "-probe"}, ""},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args, new(bytes.Buffer))
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("%q: error %v, want one mentioning %q", tt.args, err, tt.bad)
		case tt.bad == "" && (startRate(o) != 300 || o.findMaxDuration != time.Minute || o.findMaxSteps != 8):
			t.Errorf("%q: start %d/s, duration %v, steps %d; want 300/s, 1m, 8", tt.args, startRate(o), o.findMaxDuration, o.findMaxSteps)
		}
	}

	// A step's options: the step's rate and duration, the drain as the
	// completion timeout, and seats for every attempt unless -capacity
	// was given.
	o, err := parseFlags([]string{"-find-max", "-registrar", "x", "-find-max-duration", "3s"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	s := stepOptions(o, 40)
	if s.rate.perSecond() != 40 || s.duration != 3*time.Second || s.completionTimeout != drain || s.capacity < 120 {
		t.Errorf("step options: rate %v, duration %v, completion timeout %v, capacity %d", &s.rate, s.duration, s.completionTimeout, s.capacity)
	}
	o, err = parseFlags([]string{"-find-max", "-registrar", "x", "-capacity", "7"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if s := stepOptions(o, 40); s.capacity != 7 {
		t.Errorf("step capacity with -capacity 7 = %d", s.capacity)
	}
}

// TestFindMaxEndToEnd runs a short search against a real registrar, with
// the probe at the rate found: it finishes, prints a verdict for each step
// and the sustained line.
func TestFindMaxEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs registrar")
	}
	t.Parallel()
	bin := buildRegistrar(t)

	var stdout, stderr bytes.Buffer
	getenv := func(k string) string {
		if k == "PATH" || k == "HOME" || k == "TMPDIR" {
			return os.Getenv(k)
		}
		return ""
	}
	args := []string{
		"-registrar", bin, "-data-dir", t.TempDir(), "-find-max",
		"-find-max-duration", "2s", "-find-max-start", "2/s", "-find-max-steps", "2",
		"-provider-latency", "20ms", "-probe",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, args, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^step 1  2/s: (pass|FAIL — )`),
		regexp.MustCompile(`(?m)^step 2  [0-9]+/s: (pass|FAIL — )`),
		regexp.MustCompile(`(?m)^sustained: [0-9]+/s`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "step 3 ") {
		t.Errorf("more steps than -find-max-steps 2:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^sustained: 0/s`).MatchString(out) && !strings.Contains(out, "registrar / probe at ") {
		t.Errorf("a rate was sustained but the probe's comparison is missing:\n%s", out)
	}
}
