package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// limits are what a rate must meet for the whole of a step to count as
// sustained end to end.
type limits struct {
	// P99MS bounds the p99 of every answer: 250 ms plus the PayPal wait.
	P99MS float64 `json:"p99_ms"`
	// CompletionP99MS bounds the p99 from 202 to completed: 1 s plus the
	// PayPal, SendGrid and Mailchimp waits.
	CompletionP99MS float64 `json:"completion_p99_ms"`
	// DrainS is how long after the load every accepted registration must be
	// completed by.
	DrainS float64 `json:"drain_s"`
}

// drain is how long after the load a step's registrations may take to
// complete.
const drain = 5 * time.Second

// limitsOf are the limits for o's provider latency (the same for the three
// fakes).
func limitsOf(o options) limits {
	d := ms(o.providerDelay)
	return limits{P99MS: 250 + d, CompletionP99MS: 1000 + 3*d, DrainS: drain.Seconds()}
}

// verdict is one step's outcome: passed, or the criteria it failed, each
// with why.
type verdict struct {
	Pass   bool     `json:"pass"`
	Failed []string `json:"failed,omitempty"`
}

// judge checks one step's measurement of registrar (planned attempts at the
// step's rate) against l: the rate was offered, every request answered 202
// within the latency limit, completions kept pace, none was left after the
// drain, and the run was exact.
func judge(l limits, planned int, s *Side) verdict {
	var failed []string
	if short := planned - s.Attempts; short > max(1, planned/100) {
		failed = append(failed, fmt.Sprintf("rate: the load generator sent %d of %d attempts (it could not keep the rate, so the step says nothing of registrar)", s.Attempts, planned))
	}
	if s.Accepted < s.Attempts || s.Attempts == 0 {
		other := countsText(s.Errors)
		if s.SoldOut > 0 {
			other = fmt.Sprintf("409 sold_out: %d; %s", s.SoldOut, other)
		}
		failed = append(failed, fmt.Sprintf("202: %d of %d answered 202 (others: %s)", s.Accepted, s.Attempts, other))
	}
	if s.Latency.N > 0 && s.Latency.P99 > l.P99MS {
		failed = append(failed, fmt.Sprintf("latency: p99 %.1f ms > %.1f ms", s.Latency.P99, l.P99MS))
	}
	c := s.Completion
	switch {
	case c == nil:
		failed = append(failed, "completion: not followed")
	default:
		if c.Latency.N > 0 && c.Latency.P99 > l.CompletionP99MS {
			failed = append(failed, fmt.Sprintf("completion: p99 %.1f ms > %.1f ms", c.Latency.P99, l.CompletionP99MS))
		}
		if left := s.Accepted - c.Completed; left > 0 {
			failed = append(failed, fmt.Sprintf("backlog: %d of %d accepted registrations not completed %gs after the load (needs_attention %d)",
				left, s.Accepted, l.DrainS, c.NeedsAttention))
		}
	}
	if e := s.Exactness; e != nil && !e.OK {
		notRegistered := 0
		if s.Providers != nil {
			notRegistered = s.Providers.ChargedNotRegistered
		}
		failed = append(failed, fmt.Sprintf("exactness: oversold %d, double charges %d, charged but not registered %d",
			e.Oversold, e.DoubleCharges, notRegistered))
	}
	return verdict{Pass: len(failed) == 0, Failed: failed}
}

// step is one rate tried.
type step struct {
	Rate int `json:"rate_per_sec"`
	verdict
	// Figures of the step (zero for a step judged without a measurement).
	Attempts        int     `json:"attempts"`
	Accepted        int     `json:"accepted"`
	P99MS           float64 `json:"p99_ms"`
	CompletionP99MS float64 `json:"completion_p99_ms"`
	Completed       int     `json:"completed"`

	side *Side
}

// searchResult is where the search ended.
type searchResult struct {
	Steps []step `json:"steps"`
	// Sustained is the highest rate that passed (0: none did); Failed the
	// lowest that failed above it (0: none did).
	Sustained int `json:"sustained_per_sec"`
	Failed    int `json:"lowest_failed_per_sec,omitempty"`
	// StepCapReached says the search stopped at the step cap before
	// bracketing the limit within 10%.
	StepCapReached bool `json:"step_cap_reached"`
}

// within10 says the bracket lo (passed) to hi (failed) is narrow enough:
// hi is within 10% of lo, or no whole rate lies between them.
func within10(lo, hi int) bool {
	return lo > 0 && (float64(hi) <= 1.1*float64(lo) || hi-lo <= 1)
}

// search finds the highest sustained rate: it tries start, doubles until a
// step fails, then bisects between the highest pass and the lowest failure
// until they are within 10%, trying at most maxSteps rates. When even
// start fails, it halves (bisects down from 0). try measures one rate;
// each step is passed to done as soon as it is judged.
func search(ctx context.Context, start, maxSteps int, try func(ctx context.Context, rate int) (step, error), done func(step)) (searchResult, error) {
	var res searchResult
	lo, hi := 0, 0 // highest pass, lowest failure (0: none yet)
	next := start
	for len(res.Steps) < maxSteps {
		st, err := try(ctx, next)
		if err != nil {
			return res, fmt.Errorf("step %d (%d/s): %w", len(res.Steps)+1, next, err)
		}
		st.Rate = next
		res.Steps = append(res.Steps, st)
		if done != nil {
			done(st)
		}
		if st.Pass {
			lo = next
		} else {
			hi = next
		}
		switch {
		case hi == 0:
			next = lo * 2
		case within10(lo, hi) || hi == 1:
			res.Sustained, res.Failed = lo, hi
			return res, nil
		default:
			next = lo + (hi-lo)/2
		}
	}
	res.Sustained, res.Failed, res.StepCapReached = lo, hi, true
	return res, nil
}

// findMaxReport is the -find-max outcome.
type findMaxReport struct {
	Mode              string  `json:"mode"` // "find-max"
	StepDurationS     float64 `json:"step_duration_s"`
	StartPerSec       int     `json:"start_per_sec"`
	MaxSteps          int     `json:"max_steps"`
	ProviderLatencyMS float64 `json:"provider_latency_ms"`
	Newsletter        float64 `json:"newsletter"`
	Limits            limits  `json:"limits"`
	Machine           Machine `json:"machine"`
	searchResult
	// With -probe: the probe at the sustained rate, and registrar's
	// figures at that rate over the probe's.
	Probe *Side       `json:"probe,omitempty"`
	Ratio *probeRatio `json:"ratio,omitempty"`
}

// probeRatio compares registrar's passing step at the sustained rate with
// the probe at the same rate.
type probeRatio struct {
	AcceptedPerSec float64 `json:"accepted_per_sec"`
	P99            float64 `json:"p99"`
}

// stepOptions are o for one step at rate: an open-loop attack of
// -find-max-duration, registrations followed until drain after it, and
// (unless -capacity was given) seats for twice the planned attempts so that
// no answer is sold_out.
func stepOptions(o options, rate int) options {
	s := o
	s.rate = rate2(rate)
	s.duration = o.findMaxDuration
	s.completion = true
	s.completionTimeout = drain
	if !o.capacitySet {
		s.capacity = 2*plannedAttempts(s) + 10
	}
	return s
}

func rate2(perSec int) rate { return rate{Freq: perSec, Per: time.Second} }

// plannedAttempts is the number of attempts o's rate and duration send.
func plannedAttempts(o options) int { return int(o.rate.perSecond() * o.duration.Seconds()) }

// findMax runs the search, each step on a fresh registrar and database in a
// directory of its own under dir, and prints each step's verdict as it is
// judged (text) or the whole outcome at the end (JSON).
func findMax(ctx context.Context, o options, dir string, getenv func(string) string, log *slog.Logger, stdout io.Writer) error {
	l := limitsOf(o)
	rep := &findMaxReport{
		Mode: "find-max", StepDurationS: o.findMaxDuration.Seconds(), StartPerSec: startRate(o), MaxSteps: o.findMaxSteps,
		ProviderLatencyMS: ms(o.providerDelay), Newsletter: o.newsletter, Limits: l, Machine: machineOf(),
	}
	if !o.json {
		fmt.Fprintf(stdout, "find-max  each step %gs open loop on a fresh registrar; sustained: every request 202, p99 ≤ %s, completion p99 ≤ %s, every registration completed %gs after the load; from %d/s, doubling, then bisecting to 10%%, at most %d steps\n",
			rep.StepDurationS, fmtMS(l.P99MS), fmtMS(l.CompletionP99MS), l.DrainS, rep.StartPerSec, o.findMaxSteps)
	}
	n := 0
	try := func(ctx context.Context, rate int) (step, error) {
		n++
		so := stepOptions(o, rate)
		stepDir := filepath.Join(dir, fmt.Sprintf("step-%d", n))
		if err := os.MkdirAll(stepDir, 0o750); err != nil {
			return step{}, err
		}
		log.Info("find-max step", "n", n, "rate", rate, "duration", so.duration)
		side, err := measureRegistrar(ctx, so, stepDir, getenv, log)
		if err != nil {
			return step{}, err
		}
		st := step{verdict: judge(l, plannedAttempts(so), side), Attempts: side.Attempts, Accepted: side.Accepted,
			P99MS: side.Latency.P99, side: side}
		if c := side.Completion; c != nil {
			st.CompletionP99MS, st.Completed = c.Latency.P99, c.Completed
		}
		return st, nil
	}
	done := func(st step) {
		if !o.json {
			writeStep(stdout, n, st)
		}
	}
	res, err := search(ctx, rep.StartPerSec, o.findMaxSteps, try, done)
	if err != nil {
		return err
	}
	rep.searchResult = res
	if o.probe && res.Sustained > 0 {
		po := stepOptions(o, res.Sustained)
		probe, err := measureProbe(ctx, po, dir, log)
		if err != nil {
			return err
		}
		rep.Probe = probe
		if reg := passingSide(res); reg != nil {
			rep.Ratio = &probeRatio{
				AcceptedPerSec: ratio(reg.AcceptedPerSec, probe.AcceptedPerSec),
				P99:            ratio(reg.Latency.P99, probe.Latency.P99),
			}
		}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeFindMaxEnd(stdout, rep)
	return nil
}

// startRate is -find-max-start in whole requests per second (at least 1).
func startRate(o options) int { return max(int(o.findMaxStart.perSecond()+0.5), 1) }

// passingSide is registrar's measurement at the sustained rate.
func passingSide(res searchResult) *Side {
	for _, st := range res.Steps {
		if st.Pass && st.Rate == res.Sustained {
			return st.side
		}
	}
	return nil
}

func writeStep(w io.Writer, n int, st step) {
	figures := fmt.Sprintf("%d/%d answered 202, p99 %s, completion p99 %s, %d completed",
		st.Accepted, st.Attempts, fmtMS(st.P99MS), fmtMS(st.CompletionP99MS), st.Completed)
	if st.Pass {
		fmt.Fprintf(w, "step %d  %d/s: pass (%s)\n", n, st.Rate, figures)
		return
	}
	fmt.Fprintf(w, "step %d  %d/s: FAIL — %s (%s)\n", n, st.Rate, strings.Join(st.Failed, "; "), figures)
}

func writeFindMaxEnd(w io.Writer, rep *findMaxReport) {
	var note string
	switch {
	case rep.Sustained == 0:
		note = fmt.Sprintf("  (no rate tried was sustained; the lowest, %d/s, failed: try a lower -find-max-start)", rep.Failed)
	case rep.Failed == 0:
		note = fmt.Sprintf("  (at least: no step failed within %d steps; raise -find-max-start or -find-max-steps)", rep.MaxSteps)
	case rep.StepCapReached:
		note = fmt.Sprintf("  (%d/s failed; the step cap stopped the search before it was within 10%%)", rep.Failed)
	default:
		note = fmt.Sprintf("  (%d/s failed)", rep.Failed)
	}
	fmt.Fprintf(w, "sustained: %d/s%s\n", rep.Sustained, note)
	if p := rep.Probe; p != nil {
		fmt.Fprintf(w, "probe at %d/s: accepted %.1f/s, p99 %s, errors %s\n", rep.Sustained, p.AcceptedPerSec, fmtMS(p.Latency.P99), countsText(p.Errors))
		if r := rep.Ratio; r != nil {
			fmt.Fprintf(w, "registrar / probe at %d/s: accepted/s %.2f, p99 %.2f\n", rep.Sustained, r.AcceptedPerSec, r.P99)
		}
	}
}

// findMaxProblems checks the flags of -find-max.
func findMaxProblems(o options) []string {
	if !o.findMax {
		return nil
	}
	var problems []string
	if o.registrar == "" || o.target != "" || o.probeOnly {
		problems = append(problems, "-find-max needs -registrar: each step starts a fresh registrar")
	}
	if o.rate.Freq > 0 || o.burst > 0 || o.backlog > 0 || o.killAfter > 0 || o.repeat > 1 {
		problems = append(problems, "-find-max chooses the rates itself: use it without -rate, -burst, -backlog, -kill-after and -repeat")
	}
	if o.database != "" {
		problems = append(problems, "-find-max needs a fresh database per step: use SQLite (the default)")
	}
	if !o.completion {
		problems = append(problems, "-find-max judges completions: use it without -completion=false")
	}
	if o.findMaxDuration <= 0 {
		problems = append(problems, "-find-max-duration must be positive")
	}
	if o.findMaxStart.perSecond() < 0.5 {
		problems = append(problems, "-find-max-start must be at least 1/s")
	}
	if o.findMaxSteps < 1 {
		problems = append(problems, "-find-max-steps must be at least 1")
	}
	return problems
}
