package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// measureRegistrar runs the attack against registrar — the one it starts, or
// the one at -target — with the fakes as its providers.
func measureRegistrar(ctx context.Context, o options, dir string, getenv func(string) string, log *slog.Logger) (*Side, error) {
	fk := newFakes(o.providerDelay)
	ln, err := listen(o.fakeAddr)
	if err != nil {
		return nil, err
	}
	fakeSrv := &http.Server{Handler: fk.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go fakeSrv.Serve(ln)
	defer fakeSrv.Close()
	fakesURL := "http://" + ln.Addr().String()

	base, pid := o.target, o.pid
	var c *child
	if o.target == "" {
		if c, err = startRegistrar(ctx, o, dir, fakesURL, getenv, log); err != nil {
			return nil, err
		}
		defer c.stop(log)
		base, pid = c.baseURL, c.pid()
	} else {
		log.Info("fake providers for the target", "PAYPAL_API_BASE", fakesURL, "SENDGRID_API_BASE", fakesURL,
			"MAILCHIMP_API_BASE", fakesURL+"/3.0")
	}

	var tk *tracker
	var accepted func(string, time.Time)
	stopTracker := func() {}
	if o.completion {
		tk = newTracker(base, o.pollInterval, o.pollers)
		if o.target == "" {
			tk.useHints(10 * o.pollInterval)
			fk.mu.Lock()
			fk.onEmail = tk.hint
			fk.mu.Unlock()
		}
		tctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { tk.run(tctx); close(done) }()
		stopTracker = func() { cancel(); <-done }
		defer stopTracker()
		accepted = tk.add
	}

	var cpu0 time.Duration
	if pid > 0 {
		cpu0, _ = procCPU(pid)
	}
	self0 := selfCPU()
	log.Info("attack started", "target", base, "scenario", scenarioOf(o).String())
	out, err := attack(ctx, o, base, "registrar", accepted)
	if err != nil {
		return nil, err
	}
	selfCPUUsed := selfCPU() - self0
	var cpu time.Duration
	if pid > 0 {
		if c1, err := procCPU(pid); err == nil {
			cpu = c1 - cpu0
		}
	}
	log.Info("attack done", "attempts", len(out.records), "wall", out.wall.Round(time.Millisecond))

	side := summarise("registrar", base, o, out)
	if tk != nil {
		log.Info("waiting for registrations to complete", "timeout", o.completionTimeout)
		tk.wait(ctx, o.completionTimeout)
		stopTracker()
		side.Completion = tk.result(out.began, o.completionTimeout)
	}
	if pid > 0 {
		if rss, err := procStatus(pid, "VmHWM"); err == nil {
			side.PeakRSSBytes = rss
			side.PeakRSSMiB = float64(rss) / (1 << 20)
		} else {
			log.Warn("peak RSS unknown", "err", err)
		}
		side.CPUSeconds = cpu.Seconds()
		side.CPUCores = ratio(cpu.Seconds(), out.wall.Seconds())
	}
	side.LoadCPUSeconds = selfCPUUsed.Seconds()
	if c != nil && (o.keep || o.dataDir != "") {
		side.LogFile = c.logPath
	}
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
		n, left := settle(ctx, fk, ids, base, o.settleTimeout, log)
		counts = fk.counts(ids)
		counts.RegisteredUnanswered = n
		counts.ChargedNotRegistered = left
		paid += n
		side.Providers = &counts
	}
	side.Exactness = exactness(o.capacity, paid, side.Providers)
	return side, nil
}

// registered reports whether registrar has a registration with id.
func registered(ctx context.Context, base, id string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/registrations/"+id, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// settle waits until every capture without a 202 is registered or
// refunded, or timeout passes. It returns how many were registered and how
// many are still neither.
func settle(ctx context.Context, fk *fakes, accepted map[string]bool, base string, timeout time.Duration, log *slog.Logger) (registeredN, left int) {
	reg := map[string]bool{}
	deadline := time.Now().Add(timeout)
	for {
		pending := 0
		for _, rid := range fk.unanswered(accepted) {
			if reg[rid] {
				continue
			}
			if registered(ctx, base, rid) {
				reg[rid] = true
				continue
			}
			pending++
		}
		if pending == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return len(reg), pending
		}
		log.Info("waiting for charged attempts without a 202 to be registered or refunded", "pending", pending)
		time.Sleep(time.Second)
	}
}
