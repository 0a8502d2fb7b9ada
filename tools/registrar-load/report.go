package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report is everything one run measured.
type Report struct {
	Scenario  Scenario `json:"scenario"`
	Machine   Machine  `json:"machine"`
	Registrar *Side    `json:"registrar,omitempty"`
	Probe     *Side    `json:"probe,omitempty"`
	Ratio     *Ratio   `json:"ratio,omitempty"`
	Backlog   *Backlog `json:"backlog,omitempty"`
}

// Scenario is what was asked for.
type Scenario struct {
	Mode              string  `json:"mode"` // "rate", "burst" or "backlog"
	Rate              float64 `json:"rate_per_sec,omitempty"`
	DurationS         float64 `json:"duration_s,omitempty"`
	Attempts          int     `json:"attempts"`
	Retries           int     `json:"retries"`
	IdempotencyKeys   bool    `json:"idempotency_keys"`
	Newsletter        float64 `json:"newsletter"`
	Capacity          int     `json:"capacity"`
	ProviderLatencyMS float64 `json:"provider_latency_ms"`
	Engine            string  `json:"engine"`
	Target            string  `json:"target,omitempty"`
	ProbeBatch        int     `json:"probe_batch"`
	ProbeWaitMS       float64 `json:"probe_wait_ms"`
	// KillAfterMS is -kill-after (0: no kill).
	KillAfterMS     float64 `json:"kill_after_ms,omitempty"`
	EffectsOnHangup bool    `json:"effects_on_hangup,omitempty"`
	// Backlog is -backlog: queued activity jobs seeded.
	Backlog int `json:"backlog,omitempty"`
}

func (s Scenario) String() string {
	var b strings.Builder
	switch s.Mode {
	case "backlog":
		fmt.Fprintf(&b, "backlog of %d queued activity jobs, SendGrid and Mailchimp stalled, %gs, %s", s.Backlog, s.DurationS, s.Engine)
		return b.String()
	case "burst":
		fmt.Fprintf(&b, "burst of %d attempts", s.Attempts)
	default:
		fmt.Fprintf(&b, "%g/s for %gs (%d attempts)", s.Rate, s.DurationS, s.Attempts)
	}
	fmt.Fprintf(&b, ", capacity %d, provider latency %gms, %s, newsletter %.2f", s.Capacity, s.ProviderLatencyMS, s.Engine, s.Newsletter)
	if s.Retries > 0 {
		fmt.Fprintf(&b, ", up to %d retries with the key", s.Retries)
	} else if s.IdempotencyKeys {
		b.WriteString(", with idempotency keys")
	}
	if s.KillAfterMS > 0 {
		fmt.Fprintf(&b, ", SIGKILL of registrar %s after the start (then restart)", fmtMS(s.KillAfterMS))
	}
	if s.EffectsOnHangup {
		b.WriteString(", providers take effect when the caller hangs up")
	}
	return b.String()
}

// Machine is where it ran.
type Machine struct {
	CPUs       int     `json:"cpus"`
	CPUModel   string  `json:"cpu_model,omitempty"`
	MemoryGiB  float64 `json:"memory_gib,omitempty"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	GoVersion  string  `json:"go_version"`
	OS         string  `json:"os"`
}

// Percentiles of a set of durations, in milliseconds.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func (p Percentiles) String() string {
	if p.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s", fmtMS(p.P50), fmtMS(p.P95), fmtMS(p.P99), fmtMS(p.Max))
}

// Side is the measurement of one server: registrar or the probe.
type Side struct {
	Name string `json:"name"`
	URL  string `json:"url"`

	Attempts int   `json:"attempts"`
	Requests int64 `json:"requests"` // including retries
	Accepted int   `json:"accepted"`
	SoldOut  int   `json:"sold_out"`
	// Answered are final answers that are neither 5xx nor transport
	// errors: the requests the server handled.
	Answered int `json:"answered"`
	// Errors are final answers other than 202 and 409 sold_out, by status
	// and code ("502 payment_unavailable", "0 timeout").
	Errors map[string]int `json:"errors"`
	// Retried are answers a client retried, by status and code.
	Retried map[string]int `json:"retried,omitempty"`

	WallS float64 `json:"wall_s"` // attack start to last answer
	// MaxConnections is the client's connection cap (0: none).
	MaxConnections int `json:"max_connections"`
	// SendSpanS is from the first attempt sent to the last.
	SendSpanS      float64 `json:"send_span_s"`
	AcceptedPerSec float64 `json:"accepted_per_sec"`
	SoldOutPerSec  float64 `json:"sold_out_per_sec"`
	AnsweredPerSec float64 `json:"answered_per_sec"`
	// SoldOutAfterMS is when the first sold_out answer was sent, from the
	// attack's start; LastAcceptedMS when the last 202 arrived.
	SoldOutAfterMS *float64 `json:"sold_out_after_ms,omitempty"`
	LastAcceptedMS float64  `json:"last_accepted_ms"`

	Latency         Percentiles `json:"latency"`
	AcceptedLatency Percentiles `json:"accepted_latency"`
	SoldOutLatency  Percentiles `json:"sold_out_latency"`
	// ServerP99MS is the p99 of 202s less one provider call: the server's
	// own share of the accepted path's tail.
	ServerP99MS float64 `json:"server_p99_excl_provider_ms"`

	Restart    *Restart        `json:"restart,omitempty"`
	Completion *Completion     `json:"completion,omitempty"`
	Providers  *ProviderCounts `json:"providers,omitempty"`
	Exactness  *Exactness      `json:"exactness,omitempty"`

	PeakRSSBytes   int64   `json:"peak_rss_bytes,omitempty"`
	PeakRSSMiB     float64 `json:"peak_rss_mib,omitempty"`
	CPUSeconds     float64 `json:"cpu_s,omitempty"`
	CPUCores       float64 `json:"cpu_cores,omitempty"`
	CPUNote        string  `json:"cpu_note,omitempty"`
	LoadCPUSeconds float64 `json:"load_generator_cpu_s,omitempty"`
	LogFile        string  `json:"log_file,omitempty"`
	// CommittedRows are the probe's rows (202s plus requests whose client
	// gave up after the commit).
	CommittedRows int `json:"committed_rows,omitempty"`
}

// Exactness checks the launch guarantees.
type Exactness struct {
	Capacity int `json:"capacity"`
	// Paid are distinct registrations answered 202, plus those registered
	// whose answer the client did not get.
	Paid     int `json:"paid"`
	Oversold int `json:"oversold"`
	// DoubleCharges are request ids (= registrations) captured more than
	// once plus attendees charged more than once.
	DoubleCharges int  `json:"double_charges"`
	OK            bool `json:"ok"`
}

// Ratio compares registrar with the probe.
type Ratio struct {
	AcceptedPerSec float64 `json:"accepted_per_sec"`
	AnsweredPerSec float64 `json:"answered_per_sec"`
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Percentiles{
		N:   len(s),
		P50: ms(percentile(s, 50)),
		P95: ms(percentile(s, 95)),
		P99: ms(percentile(s, 99)),
		Max: ms(s[len(s)-1]),
	}
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// summarise turns an attack's records into a Side.
func summarise(name, url string, o options, out *outcome) *Side {
	s := &Side{Name: name, URL: url, Attempts: len(out.records), Requests: out.requests, Errors: map[string]int{},
		WallS: out.wall.Seconds()}
	if len(out.retried) > 0 {
		s.Retried = maps.Clone(out.retried)
	}
	var all, acc, sold []time.Duration
	var firstSoldOut time.Duration = -1
	var lastAccepted, lastStart time.Duration
	for _, r := range out.records {
		all = append(all, r.latency)
		lastStart = max(lastStart, r.start)
		end := r.start + r.latency
		switch {
		case r.status == http.StatusAccepted:
			s.Accepted++
			acc = append(acc, r.latency)
			lastAccepted = max(lastAccepted, end)
		case r.status == http.StatusConflict && r.code == "sold_out":
			s.SoldOut++
			sold = append(sold, r.latency)
			if firstSoldOut < 0 || end < firstSoldOut {
				firstSoldOut = end
			}
		default:
			s.Errors[strconv.Itoa(r.status)+" "+r.code]++
		}
		if r.status != 0 && r.status < 500 {
			s.Answered++
		}
	}
	s.SendSpanS = lastStart.Seconds()
	s.MaxConnections = maxConnections(o, name == "probe")
	s.AcceptedPerSec = ratio(float64(s.Accepted), s.WallS)
	s.SoldOutPerSec = ratio(float64(s.SoldOut), s.WallS)
	s.AnsweredPerSec = ratio(float64(s.Answered), s.WallS)
	if firstSoldOut >= 0 {
		v := ms(firstSoldOut)
		s.SoldOutAfterMS = &v
	}
	s.LastAcceptedMS = ms(lastAccepted)
	s.Latency = percentiles(all)
	s.AcceptedLatency = percentiles(acc)
	s.SoldOutLatency = percentiles(sold)
	if s.AcceptedLatency.N > 0 {
		wait := o.providerDelay
		if name == "probe" {
			wait = o.probeWait
		}
		s.ServerP99MS = max(s.AcceptedLatency.P99-ms(wait), 0)
	}
	return s
}

// exactness checks paid ≤ capacity and no double charge.
func exactness(capacity, paid int, pc *ProviderCounts) *Exactness {
	e := &Exactness{Capacity: capacity, Paid: paid}
	if capacity > 0 {
		e.Oversold = max(paid-capacity, 0)
		if pc != nil {
			e.Oversold = max(e.Oversold, pc.NetCaptures-capacity)
		}
	}
	if pc != nil {
		e.DoubleCharges = pc.DoubleCapturedRequestIDs + pc.AttendeesChargedTwice
	}
	e.OK = e.Oversold == 0 && e.DoubleCharges == 0 && (pc == nil || pc.ChargedNotRegistered == 0)
	return e
}

// finish computes the ratio of registrar to the probe.
func (r *Report) finish() {
	if r.Registrar == nil || r.Probe == nil {
		return
	}
	r.Ratio = &Ratio{
		AcceptedPerSec: ratio(r.Registrar.AcceptedPerSec, r.Probe.AcceptedPerSec),
		AnsweredPerSec: ratio(r.Registrar.AnsweredPerSec, r.Probe.AnsweredPerSec),
	}
}

func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func fmtMS(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func countsText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Collect(maps.Keys(m))
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", strings.TrimSpace(k), m[k])
	}
	return strings.Join(parts, ", ")
}

func okText(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}

func (r *Report) writeText(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "scenario  %s\n", r.Scenario)
	fmt.Fprintf(w, "machine   %d CPUs (%s), %.1f GiB, %s %s, GOMAXPROCS %d; load generator on the same machine\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.GoVersion, m.OS, m.GOMAXPROCS)
	for _, s := range []*Side{r.Registrar, r.Probe} {
		if s == nil {
			continue
		}
		fmt.Fprintln(w)
		title := s.Name
		if s.Name == "probe" {
			title = fmt.Sprintf("probe (%s, %d row(s) per transaction, %gms wait per request)", r.Scenario.Engine, r.Scenario.ProbeBatch, r.Scenario.ProbeWaitMS)
		}
		fmt.Fprintf(w, "%s  %s\n", title, s.URL)
		fmt.Fprintf(w, "  attempts     %d sent within %.2f s, all answered within %.2f s (requests incl. retries: %d)\n", s.Attempts, s.SendSpanS, s.WallS, s.Requests)
		fmt.Fprintf(w, "  accepted     %d  %.1f/s", s.Accepted, s.AcceptedPerSec)
		if s.Accepted > 0 {
			fmt.Fprintf(w, "  (last 202 at %s)", fmtMS(s.LastAcceptedMS))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  sold out     %d  %.1f/s", s.SoldOut, s.SoldOutPerSec)
		if s.SoldOutAfterMS != nil {
			fmt.Fprintf(w, "  (first at %s)", fmtMS(*s.SoldOutAfterMS))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  errors       %s\n", countsText(s.Errors))
		if len(s.Retried) > 0 {
			fmt.Fprintf(w, "  retried      %s\n", countsText(s.Retried))
		}
		fmt.Fprintf(w, "  latency      %s\n", s.Latency)
		fmt.Fprintf(w, "    202        %s", s.AcceptedLatency)
		if s.AcceptedLatency.N > 0 {
			fmt.Fprintf(w, "; p99 less the provider wait: %s", fmtMS(s.ServerP99MS))
		}
		fmt.Fprintln(w)
		if s.SoldOutLatency.N > 0 {
			fmt.Fprintf(w, "    sold out   %s\n", s.SoldOutLatency)
		}
		if c := s.Completion; c != nil {
			fmt.Fprintf(w, "  completed    %d/%d (%.1f%%) within %gs after the attack, %.1f/s; needs_attention %d, not done %d\n",
				c.Completed, c.Tracked, 100*c.Rate, c.TimeoutS, c.CompletedPerSec, c.NeedsAttention, c.TimedOut)
			fmt.Fprintf(w, "    from 202   %s (status read every %s)\n", c.Latency, fmtMS(c.PollIntervalMS))
			if c.Unanswered > 0 {
				fmt.Fprintf(w, "    no 202     %d registered without the client getting its 202: %d completed\n", c.Unanswered, c.UnansweredCompleted)
			}
		}
		if s.Restart != nil {
			writeRestart(w, s.Restart)
		}
		if p := s.Providers; p != nil {
			fmt.Fprintf(w, "  payments     %d captures, %d refunds, %d replayed request ids; request ids (= registrations) captured twice: %d; attendees charged twice: %d\n",
				p.Captures, p.Refunds, p.CaptureReplays, p.DoubleCapturedRequestIDs, p.AttendeesChargedTwice)
			fmt.Fprintf(w, "               captured without a 202: %d (registered, answer not received: %d; not registered: %d)\n",
				p.CapturedWithoutAcceptance, p.RegisteredUnanswered, p.ChargedNotRegistered)
			fmt.Fprintf(w, "  effects      %d emails (%d registrations emailed twice); Mailchimp %d upserts, %d tags\n",
				p.Emails, p.DuplicateEmails, p.MailchimpUpserts, p.MailchimpTags)
			if len(p.DuplicateEmailIDs) > 0 {
				fmt.Fprintf(w, "               emailed twice, e.g.: %s\n", strings.Join(p.DuplicateEmailIDs, " "))
			}
		}
		if e := s.Exactness; e != nil {
			cap := "no capacity check"
			if e.Capacity > 0 {
				cap = fmt.Sprintf("paid %d of capacity %d, oversold %d", e.Paid, e.Capacity, e.Oversold)
			}
			fmt.Fprintf(w, "  exactness    %s; double charges %d: %s\n", cap, e.DoubleCharges, okText(e.OK))
		}
		if s.PeakRSSBytes > 0 || s.CPUSeconds > 0 {
			fmt.Fprintf(w, "  process      ")
			if s.PeakRSSBytes > 0 {
				fmt.Fprintf(w, "peak RSS %.1f MiB; ", s.PeakRSSMiB)
			}
			fmt.Fprintf(w, "CPU %.1f s during the attack (%.2f cores)", s.CPUSeconds, s.CPUCores)
			if s.CPUNote != "" {
				fmt.Fprintf(w, " — %s", s.CPUNote)
			}
			if s.LoadCPUSeconds > 0 {
				fmt.Fprintf(w, "; load generator + fakes %.1f s", s.LoadCPUSeconds)
			}
			fmt.Fprintln(w)
		}
		if s.LogFile != "" {
			fmt.Fprintf(w, "  log          %s\n", s.LogFile)
		}
	}
	if r.Backlog != nil {
		writeBacklog(w, r.Backlog)
	}
	if r.Ratio != nil {
		fmt.Fprintf(w, "\nregistrar / probe: accepted/s %.2f, answered/s %.2f\n", r.Ratio.AcceptedPerSec, r.Ratio.AnsweredPerSec)
	}
}

// writeRestart prints the kill and recovery figures.
func writeRestart(w io.Writer, r *Restart) {
	fmt.Fprintf(w, "  kill         SIGKILL at %s (gone after %s; peak RSS until then %.1f MiB); on restart registrar re-queued %d running jobs and made %d held seats due for resolution\n",
		fmtMS(r.KillAtMS), fmtMS(r.GoneMS), r.PeakRSSBeforeKillMiB, r.RequeuedJobs, r.HeldSeats)
	fmt.Fprintf(w, "  recovery     from the restart's exec: listening (its log) after %s, /readyz 200 after %s, first answered POST after %s (polled every %s); load: first answer %s, first 202 %s\n",
		fmtOptMS(r.ListeningMS), fmtOptMS(r.ReadyMS), fmtOptMS(r.FirstPostMS), fmtMS(r.PollMS), fmtOptMS(r.FirstLoadAnswerMS), fmtOptMS(r.First202MS))
	d := r.Redispatch
	if d == nil {
		return
	}
	if d.Interrupted == 0 {
		fmt.Fprintln(w, "  re-dispatch  no registration answered 202 before the kill was still in its pipeline: nothing to re-dispatch")
		return
	}
	fmt.Fprintf(w, "  re-dispatch  %d registrations answered 202 before the kill were not completed then; %d resumed (SendGrid call or completion seen after the restart)",
		d.Interrupted, d.Resumed)
	if d.AllResumedMS != nil {
		fmt.Fprintf(w, ", all within %s of the exec", fmtMS(*d.AllResumedMS))
	} else {
		fmt.Fprintf(w, ", %d NEVER: %s", d.Interrupted-d.Resumed, strings.Join(d.NotResumed, " "))
	}
	fmt.Fprintln(w)
	if d.Latency.N > 0 {
		fmt.Fprintf(w, "    resumed    %s\n", d.Latency)
	}
}

// writeBacklog prints a backlog run.
func writeBacklog(w io.Writer, b *Backlog) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "backlog  %d registrations, %d queued activity jobs seeded in %.1f s (database %.0f MiB)\n",
		b.Registrations, b.Jobs, b.SeedS, b.DatabaseMiB)
	fmt.Fprintf(w, "  start        /readyz 200 after %s\n", fmtMS(b.StartMS))
	fmt.Fprintf(w, "  memory       peak RSS %.1f MiB, steady %.1f MiB (median of the second half) over %.0f s; CPU %.1f s\n",
		b.PeakRSSMiB, b.SteadyRSSMiB, b.RunS, b.CPUSeconds)
	fmt.Fprintf(w, "  stalled      SendGrid %d calls (%d registrations), Mailchimp %d calls (%d subscribers)\n",
		b.EmailCalls, b.EmailRegistrations, b.ListCalls, b.ListSubscribers)
	fmt.Fprintf(w, "  jobs before  %s\n", countsText(b.JobsBefore))
	fmt.Fprintf(w, "  jobs after   %s\n", countsText(b.JobsAfter))
	if b.LogFile != "" {
		fmt.Fprintf(w, "  log          %s\n", b.LogFile)
	}
}
