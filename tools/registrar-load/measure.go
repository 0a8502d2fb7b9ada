package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// serveFakes serves the fake providers on addr and returns their URL and a
// function that stops them.
func serveFakes(fk *fakes, addr string) (string, func(), error) {
	ln, err := listen(addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: fk.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// measureRegistrar runs the attack against registrar — the one it starts, or
// the one at -target — with the fakes as its providers. With -kill-after it
// SIGKILLs the started registrar that long after the attack's start and
// restarts it at once.
func measureRegistrar(ctx context.Context, o options, dir string, getenv func(string) string, log *slog.Logger) (*Side, error) {
	fk := newFakes(o.providerDelay)
	fk.effectsOnHangup = o.effectsOnHangup
	fakesURL, stopFakes, err := serveFakes(fk, o.fakeAddr)
	if err != nil {
		return nil, err
	}
	defer stopFakes()

	base, pid := o.target, o.pid
	var sup *supervisor
	if o.target == "" {
		addr := "127.0.0.1:0"
		if o.killAfter > 0 {
			// The restarted registrar must listen where the clients send.
			if addr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		env := registrarEnv(o, dir, addr, fakesURL, getenv)
		c, err := startRegistrar(ctx, o, dir, env, log)
		if err != nil {
			return nil, err
		}
		sup = newSupervisor(o.registrar, dir, env, c, log)
		defer sup.stop()
		base = c.baseURL
	} else {
		log.Info("fake providers for the target", "PAYPAL_API_BASE", fakesURL, "SENDGRID_API_BASE", fakesURL,
			"MAILCHIMP_API_BASE", fakesURL+"/3.0")
	}

	watch := newRecoveryWatch()
	hooks := attackHooks{answered: watch.answer}
	var tk *tracker
	stopTracker := func() {}
	if o.completion {
		tk = newTracker(base, o.pollInterval, o.pollers)
		tk.onComplete = watch.complete
		if o.target == "" {
			tk.useHints(10 * o.pollInterval)
			fk.mu.Lock()
			fk.onEmail = tk.hint
			fk.onEmailCall = watch.emailCall
			fk.mu.Unlock()
		}
		tctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { tk.run(tctx); close(done) }()
		stopTracker = func() { cancel(); <-done }
		defer stopTracker()
		hooks.accepted = func(id string, at time.Time) {
			tk.add(id, at)
			watch.accept(id, at)
		}
	}

	cpuOf := func() time.Duration {
		if sup != nil {
			return sup.cpu()
		}
		if pid > 0 {
			c, _ := procCPU(pid)
			return c
		}
		return 0
	}
	cpu0 := cpuOf()
	self0 := selfCPU()
	log.Info("attack started", "target", base, "scenario", scenarioOf(o).String())
	began := time.Now()
	restarted := scheduleRestart(ctx, o.killAfter, sup, began, watch)
	out, err := attack(ctx, o, base, "registrar", hooks)
	if err != nil {
		return nil, err
	}
	selfCPUUsed := selfCPU() - self0
	cpu := cpuOf() - cpu0
	log.Info("attack done", "attempts", len(out.records), "wall", out.wall.Round(time.Millisecond))
	restart, err := awaitRestart(ctx, restarted)
	if err != nil {
		return nil, err
	}

	side := summarise("registrar", base, o, out)
	side.Restart = restart
	if tk != nil {
		log.Info("waiting for registrations to complete", "timeout", o.completionTimeout)
		tk.wait(ctx, o.completionTimeout)
		stopTracker()
		side.Completion = tk.result(out.began, o.completionTimeout)
	}
	if restart != nil {
		watch.fill(restart)
	}
	if sup != nil || pid > 0 {
		side.CPUSeconds = cpu.Seconds()
		side.CPUCores = ratio(cpu.Seconds(), out.wall.Seconds())
		if err := readPeakRSS(side, sup, pid); err != nil {
			log.Warn("peak RSS unknown", "err", err)
		}
	}
	side.LoadCPUSeconds = selfCPUUsed.Seconds()
	if sup != nil && (o.keep || o.dataDir != "") {
		side.LogFile = sup.current().logPath
	}
	checkExactness(ctx, o, side, fk, out, base, log)
	return side, nil
}

// readPeakRSS sets side's peak RSS: the highest of the started registrar
// processes, or that of process pid.
func readPeakRSS(side *Side, sup *supervisor, pid int) error {
	var rss int64
	var err error
	if sup != nil {
		rss, err = sup.peakRSS()
	} else {
		rss, err = procStatus(pid, "VmHWM")
	}
	if err != nil {
		return err
	}
	side.PeakRSSBytes = rss
	side.PeakRSSMiB = float64(rss) / (1 << 20)
	return nil
}

// restartResult is the outcome of a scheduled kill and restart.
type restartResult struct {
	restart *Restart
	err     error
}

// scheduleRestart kills and restarts sup's registrar after (from began);
// nil when there is nothing to kill.
func scheduleRestart(ctx context.Context, after time.Duration, sup *supervisor, began time.Time, w *recoveryWatch) <-chan restartResult {
	if after <= 0 || sup == nil {
		return nil
	}
	done := make(chan restartResult, 1)
	go func() {
		t := time.NewTimer(time.Until(began.Add(after)))
		defer t.Stop()
		select {
		case <-ctx.Done():
			done <- restartResult{err: ctx.Err()}
			return
		case <-t.C:
		}
		r, err := sup.killAndRestart(ctx, began, w)
		done <- restartResult{restart: r, err: err}
	}()
	return done
}

// awaitRestart waits for a scheduled restart (nil: none).
func awaitRestart(ctx context.Context, restarted <-chan restartResult) (*Restart, error) {
	if restarted == nil {
		return nil, nil
	}
	select {
	case res := <-restarted:
		return res.restart, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// checkExactness counts what the fakes saw and checks the launch
// guarantees. paid counts every distinct 202, plus each charge kept
// without a 202 that registrar did register (its client never got the
// answer: a time-out, or a kill of registrar after the commit).
func checkExactness(ctx context.Context, o options, side *Side, fk *fakes, out *outcome, base string, log *slog.Logger) {
	ids := map[string]bool{}
	for _, r := range out.records {
		if r.id != "" {
			ids[r.id] = true
		}
	}
	counts := fk.counts(ids)
	paid := len(ids)
	if o.target == "" || counts.Captures > 0 || counts.TokenRequests > 0 {
		// A capture without a 202 is money without a registration only
		// if registrar has no registration under that id (the PayPal
		// request id is the registration id) and does not refund it.
		// Attempts whose client gave up may still be finishing: wait for
		// them up to -settle-timeout.
		sr := newStatusReader(base, o.pollers)
		defer sr.close()
		regIDs, left := settle(ctx, func() []string { return fk.unanswered(ids) }, sr, o.settleTimeout, log)
		counts = fk.counts(ids)
		counts.RegisteredUnanswered = len(regIDs)
		counts.ChargedNotRegistered = left
		paid += len(regIDs)
		side.Providers = &counts
		if c := side.Completion; c != nil && len(regIDs) > 0 {
			// They must complete too.
			log.Info("waiting for registrations without a 202 to complete", "count", len(regIDs))
			c.Unanswered = len(regIDs)
			c.UnansweredCompleted = awaitCompleted(ctx, sr, regIDs, o.completionTimeout)
		}
	}
	side.Exactness = exactness(o.capacity, paid, side.Providers)
}
