// Command registrar-load measures registrar under load: it starts registrar
// (or targets a running one) with fast fake payment, email and mailing-list
// providers, drives POST /api/registrations with vegeta at a chosen rate or
// as a launch burst, follows every accepted registration to completion, and
// checks exactness (no oversell, no double charge). With -probe it measures
// in the same run a bare-limit probe — a minimal handler that decodes the
// same JSON and commits one row per request with the same durability — so
// that registrar's figures read as a share of what the machine can do.
//
// Usage:
//
//	go build -o /tmp/registrar ./cmd/registrar
//	go run -C tools/registrar-load . -registrar /tmp/registrar -rate 500/s -duration 20s -probe
//	go run -C tools/registrar-load . -registrar /tmp/registrar -burst 20000 -capacity 1000 -retries 3
//
// Crash recovery: -kill-after D SIGKILLs the started registrar D after the
// attack's start and restarts it at once (same environment, address and
// database), then reports the time to ready, to the first answered POST and
// to the re-dispatch of the interrupted pipelines; -repeat N reports the
// medians of N runs. Memory with a backlog: -backlog N seeds N queued
// activity jobs into a fresh SQLite database (or, with -database, a fresh
// PostgreSQL one) and runs registrar on them with SendGrid and Mailchimp
// stalled:
//
//	go run -C tools/registrar-load . -registrar /tmp/registrar -rate 50/s -duration 6s -capacity 1000000 -kill-after 3s -retries 3 -repeat 5
//	go run -C tools/registrar-load . -registrar /tmp/registrar -backlog 1000000 -backlog-for 60s
//
// The highest rate sustained end to end: -find-max tries rates on a fresh
// registrar each, from -find-max-start, doubling until one fails, then
// bisecting to within 10%, and prints each step's verdict and the rate
// found:
//
//	go run -C tools/registrar-load . -registrar /tmp/registrar -find-max -probe
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "registrar-load:", err)
		}
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	target        string
	registrar     string
	database      string
	dataDir       string
	keep          bool
	registrarEnv  []string
	pid           int
	capacity      int
	capacitySet   bool // -capacity was given
	price         string
	providerDelay time.Duration
	fakeAddr      string

	rate       rate
	duration   time.Duration
	burst      int
	retries    int
	retryWait  time.Duration
	keys       bool
	newsletter float64
	timeout    time.Duration
	workers    uint64
	maxWorkers uint64
	conns      int
	maxConns   int

	completion        bool
	pollInterval      time.Duration
	pollers           int
	completionTimeout time.Duration
	settleTimeout     time.Duration

	probe      bool
	probeOnly  bool
	probeBatch int
	probeWait  time.Duration
	probeConns int

	killAfter       time.Duration
	effectsOnHangup bool
	repeat          int
	backlog         int
	backlogFor      time.Duration
	backlogBatch    int

	findMax         bool
	findMaxDuration time.Duration
	findMaxStart    rate
	findMaxSteps    int

	json       bool
	cpuProfile string
	pprofAddr  string

	fileLimit uint64 // the open-file limit in force (0: unknown)
}

// rate is a -rate value: Freq requests per Per.
type rate struct {
	Freq int
	Per  time.Duration
}

func (r *rate) String() string {
	if r.Freq == 0 {
		return "0"
	}
	return fmt.Sprintf("%d/%s", r.Freq, r.Per)
}

// Set parses "500", "500/s", "500/1s", "30000/1m".
func (r *rate) Set(s string) error {
	n, per, hasPer := strings.Cut(s, "/")
	f, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || f < 0 {
		return fmt.Errorf("%q is not a rate like 500/s", s)
	}
	d := time.Second
	if hasPer {
		per = strings.TrimSpace(per)
		if per != "" && (per[0] < '0' || per[0] > '9') {
			per = "1" + per
		}
		if d, err = time.ParseDuration(per); err != nil || d <= 0 {
			return fmt.Errorf("%q is not a rate like 500/s", s)
		}
	}
	r.Freq, r.Per = f, d
	return nil
}

// perSecond is the rate in requests per second.
func (r rate) perSecond() float64 {
	if r.Per <= 0 {
		return 0
	}
	return float64(r.Freq) / r.Per.Seconds()
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("registrar-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: registrar-load (-registrar PATH | -target URL) (-rate N/s -duration D | -burst N | -find-max) [flags]

Starts registrar PATH (built beforehand with go build -o /tmp/registrar ./cmd/registrar) with
fake providers, or targets the registrar at URL, drives POST /api/registrations and reports
throughput, latency, completion, exactness and memory. Flags:`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.target, "target", "", "base URL of a running registrar (instead of -registrar)")
	fs.StringVar(&o.registrar, "registrar", "", "path of a registrar binary to start with a fresh database and fake providers")
	fs.StringVar(&o.database, "database", "", "REGISTRAR_DATABASE_URL for the started registrar and the probe: postgres://... (default: a fresh SQLite file in the data dir)")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for the event file, SQLite files and logs (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the data directory after the run (it is printed)")
	fs.Var((*stringList)(&o.registrarEnv), "registrar-env", "extra KEY=VALUE for the started registrar's environment (repeatable), e.g. GOMAXPROCS=2")
	fs.IntVar(&o.pid, "pid", 0, "with -target: process id of the registrar, to read its peak RSS")
	fs.IntVar(&o.capacity, "capacity", 1000, "seats of the one ticket on sale (with -target: its capacity, for the oversell check; 0 skips it)")
	fs.StringVar(&o.price, "price", "149.00", "ticket price in the event file")
	fs.DurationVar(&o.providerDelay, "provider-latency", 50*time.Millisecond, "latency of every fake provider call")
	fs.StringVar(&o.fakeAddr, "fake-addr", "127.0.0.1:0", "listen address of the fake providers (PayPal, SendGrid, Mailchimp on one server)")

	fs.Var(&o.rate, "rate", "request rate, e.g. 500/s (with -duration)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "attack duration with -rate")
	fs.IntVar(&o.burst, "burst", 0, "send N attempts as fast as possible, paced over about one second (instead of -rate)")
	fs.IntVar(&o.retries, "retries", 0, "retry each attempt up to K times with its Idempotency-Key on 5xx, 409 idempotency_in_progress and transport errors")
	fs.DurationVar(&o.retryWait, "retry-wait", 100*time.Millisecond, "wait before the first retry, doubling after each")
	fs.BoolVar(&o.keys, "keys", false, "send an Idempotency-Key with every attempt (always on with -retries)")
	fs.Float64Var(&o.newsletter, "newsletter", 0.5, "share of attendees who tick the newsletter box (0 to 1)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "client timeout of each request (each retry has its own)")
	fs.Uint64Var(&o.workers, "workers", 0, "initial vegeta workers, more are started as needed (0: 10, or N with -burst N so that the burst is not held up starting them one by one)")
	fs.Uint64Var(&o.maxWorkers, "max-workers", 0, "maximum vegeta workers, i.e. attempts in flight (0: unlimited)")
	fs.IntVar(&o.conns, "connections", 10000, "maximum idle client connections")
	fs.IntVar(&o.maxConns, "max-connections", 0, "maximum client connections (0: as many as the open-file limit allows, leaving 2000 spare; the in-process probe needs two files per connection)")

	fs.BoolVar(&o.completion, "completion", true, "follow every 202 until its registration is completed")
	fs.DurationVar(&o.pollInterval, "poll-interval", 100*time.Millisecond, "how often a pending registration's status is read (the resolution of completion latency)")
	fs.IntVar(&o.pollers, "pollers", 4, "concurrent status readers")
	fs.DurationVar(&o.completionTimeout, "completion-timeout", 60*time.Second, "how long after the attack registrations may take to complete")
	fs.DurationVar(&o.settleTimeout, "settle-timeout", 60*time.Second, "how long after that a charged attempt whose client got no 202 may take to be registered or refunded")

	fs.BoolVar(&o.probe, "probe", false, "also measure the bare-limit probe with the same attack")
	fs.BoolVar(&o.probeOnly, "probe-only", false, "measure only the probe")
	fs.IntVar(&o.probeBatch, "probe-batch", 256, "probe requests committed per transaction: N>1 group-commits up to N waiting requests in one transaction, as registrar does (up to 256); 1 commits each request alone")
	fs.DurationVar(&o.probeWait, "probe-wait", 0, "how long the probe waits per request before committing, standing in for the payment call (default: -provider-latency)")
	fs.IntVar(&o.probeConns, "probe-conns", 16, "probe's PostgreSQL connections")

	fs.DurationVar(&o.killAfter, "kill-after", 0, "with -registrar: SIGKILL registrar this long after the attack starts and restart it at once with the same environment, address and database; reports the recovery times and the re-dispatch of interrupted pipelines")
	fs.BoolVar(&o.effectsOnHangup, "effects-on-hangup", false, "the fake providers take effect (charge, send, upsert) even when registrar hangs up mid-call, as real ones would (default: true with -kill-after)")
	fs.IntVar(&o.repeat, "repeat", 1, "run the whole measurement N times, each on a fresh database, and report the medians")
	fs.IntVar(&o.backlog, "backlog", 0, "memory with a backlog: seed N queued activity jobs (N/3 paid registrations) straight into a fresh SQLite database (or the fresh PostgreSQL one of -database), start registrar on it with SendGrid and Mailchimp stalled, and report its RSS (instead of -rate or -burst)")
	fs.DurationVar(&o.backlogFor, "backlog-for", 60*time.Second, "how long registrar runs on the backlog")
	fs.IntVar(&o.backlogBatch, "backlog-batch", 5000, "registrations seeded per transaction")
	o.findMaxStart = rate{Freq: 100, Per: time.Second}
	fs.BoolVar(&o.findMax, "find-max", false, "search the highest rate sustained end to end (every request 202, p99 within 250 ms plus the PayPal wait, completion p99 within 1 s plus the three providers' waits, nothing left to complete 5 s after the load), each step on a fresh registrar: from -find-max-start, doubling until a step fails, then bisecting to 10% (instead of -rate or -burst; with -probe, the probe runs at the rate found)")
	fs.DurationVar(&o.findMaxDuration, "find-max-duration", 60*time.Second, "with -find-max: how long each step sends")
	fs.Var(&o.findMaxStart, "find-max-start", "with -find-max: the first rate tried, e.g. 100/s")
	fs.IntVar(&o.findMaxSteps, "find-max-steps", 8, "with -find-max: the most rates tried")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (load generator, fakes and probe) to FILE")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve this process's /debug/pprof/ (load generator, fakes and probe) at ADDR, e.g. 127.0.0.1:6062")

	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.capacitySet = set["capacity"]
	if !set["probe-wait"] {
		o.probeWait = o.providerDelay
	}
	if !set["effects-on-hangup"] && o.killAfter > 0 {
		o.effectsOnHangup = true
	}
	if o.probeOnly {
		o.probe = true
	}
	if o.retries > 0 {
		o.keys = true
	}
	if o.workers == 0 {
		o.workers = 10
		if o.burst > 0 {
			o.workers = uint64(o.burst)
		}
	}

	var problems []string
	switch {
	case o.probeOnly:
	case o.target == "" && o.registrar == "":
		problems = append(problems, "-registrar PATH or -target URL is required")
	case o.target != "" && o.registrar != "":
		problems = append(problems, "use either -registrar or -target, not both")
	}
	problems = append(problems, restartProblems(o)...)
	problems = append(problems, findMaxProblems(o)...)
	switch {
	case o.backlog > 0, o.findMax:
	case o.burst < 0:
		problems = append(problems, "-burst must not be negative")
	case o.burst > 0 && o.rate.Freq > 0:
		problems = append(problems, "use either -rate or -burst, not both")
	case o.burst == 0 && o.rate.Freq == 0:
		problems = append(problems, "-rate N/s (with -duration) or -burst N is required")
	case o.burst == 0 && o.duration <= 0:
		problems = append(problems, "-duration must be positive")
	}
	if o.newsletter < 0 || o.newsletter > 1 {
		problems = append(problems, "-newsletter must be from 0 to 1")
	}
	if o.retries < 0 {
		problems = append(problems, "-retries must not be negative")
	}
	if o.capacity < 0 {
		problems = append(problems, "-capacity must not be negative")
	}
	if o.database != "" && !strings.HasPrefix(o.database, "postgres://") && !strings.HasPrefix(o.database, "postgresql://") {
		problems = append(problems, "-database must be a postgres:// URL (SQLite is the default)")
	}
	if o.probeBatch < 1 {
		problems = append(problems, "-probe-batch must be at least 1")
	}
	if o.pollers < 1 {
		problems = append(problems, "-pollers must be at least 1")
	}
	if o.pollInterval <= 0 {
		problems = append(problems, "-poll-interval must be positive")
	}
	if len(problems) > 0 {
		return o, errors.New(strings.Join(problems, "\n"))
	}
	return o, nil
}

// restartProblems checks the flags of the kill, repeat and backlog modes.
func restartProblems(o options) []string {
	var problems []string
	if o.killAfter < 0 {
		problems = append(problems, "-kill-after must not be negative")
	}
	if o.killAfter > 0 && (o.registrar == "" || o.probeOnly) {
		problems = append(problems, "-kill-after needs -registrar: only a registrar this command started can be killed and restarted")
	}
	if o.repeat < 1 {
		problems = append(problems, "-repeat must be at least 1")
	}
	if o.repeat > 1 && o.database != "" {
		problems = append(problems, "-repeat needs a fresh database per run: use SQLite, or run once per fresh PostgreSQL database")
	}
	switch {
	case o.backlog < 0:
		problems = append(problems, "-backlog must not be negative")
	case o.backlog == 0:
	case o.registrar == "":
		problems = append(problems, "-backlog needs -registrar")
	case o.burst > 0 || o.rate.Freq > 0 || o.killAfter > 0 || o.probe:
		problems = append(problems, "-backlog runs no attack: use it without -rate, -burst, -kill-after and -probe")
	case o.backlog < 3:
		problems = append(problems, "-backlog must be at least 3 (three activity jobs per registration)")
	case o.backlogFor <= 0 || o.backlogBatch < 1:
		problems = append(problems, "-backlog-for must be positive and -backlog-batch at least 1")
	}
	return problems
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	o.fileLimit = raiseFileLimit()
	log.Debug("open-file limit", "limit", o.fileLimit)
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	if o.pprofAddr != "" {
		ln, err := listen(o.pprofAddr)
		if err != nil {
			return fmt.Errorf("-pprof-addr: %w", err)
		}
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		runtime.SetMutexProfileFraction(10)
		srv := &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving pprof", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	}

	dir := o.dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "registrar-load-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if o.keep || o.dataDir != "" {
		log.Info("data directory", "dir", dir)
	}

	if o.findMax {
		return findMax(ctx, o, dir, getenv, log, stdout)
	}
	var reports []*Report
	for i := range o.repeat {
		if o.repeat > 1 {
			log.Info("run", "n", i+1, "of", o.repeat)
		}
		rep, err := measureOnce(ctx, o, dir, getenv, log)
		if err != nil {
			return err
		}
		reports = append(reports, rep)
	}
	return writeReports(stdout, o.json, reports)
}

// measureOnce runs one measurement: the backlog, or the attack on
// registrar and/or the probe.
func measureOnce(ctx context.Context, o options, dir string, getenv func(string) string, log *slog.Logger) (*Report, error) {
	rep := &Report{
		Scenario: scenarioOf(o),
		Machine:  machineOf(),
	}
	if o.backlog > 0 {
		b, err := measureBacklog(ctx, o, dir, getenv, log)
		if err != nil {
			return nil, err
		}
		rep.Backlog = b
		return rep, nil
	}
	if !o.probeOnly {
		side, err := measureRegistrar(ctx, o, dir, getenv, log)
		if err != nil {
			return nil, err
		}
		rep.Registrar = side
	}
	if o.probe {
		side, err := measureProbe(ctx, o, dir, log)
		if err != nil {
			return nil, err
		}
		rep.Probe = side
	}
	rep.finish()
	return rep, nil
}

func scenarioOf(o options) Scenario {
	s := Scenario{
		Retries:           o.retries,
		IdempotencyKeys:   o.keys,
		Newsletter:        o.newsletter,
		Capacity:          o.capacity,
		ProviderLatencyMS: ms(o.providerDelay),
		Engine:            "sqlite",
		Target:            o.target,
		ProbeBatch:        o.probeBatch,
		ProbeWaitMS:       ms(o.probeWait),
	}
	if o.database != "" {
		s.Engine = "postgres"
	}
	s.KillAfterMS = ms(o.killAfter)
	s.EffectsOnHangup = o.effectsOnHangup
	switch {
	case o.backlog > 0:
		s.Mode, s.Backlog, s.DurationS = "backlog", o.backlog, o.backlogFor.Seconds()
	case o.burst > 0:
		s.Mode, s.Attempts = "burst", o.burst
	default:
		s.Mode, s.Rate, s.DurationS = "rate", o.rate.perSecond(), o.duration.Seconds()
		s.Attempts = int(o.rate.perSecond() * o.duration.Seconds())
	}
	return s
}

func machineOf() Machine {
	m := Machine{
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				m.MemoryGiB = float64(kb) / (1 << 20)
			}
		}
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

// pprofHandler serves net/http/pprof's handlers.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	return mux
}
