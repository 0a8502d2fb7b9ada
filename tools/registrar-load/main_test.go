package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildRegistrar builds cmd/registrar, in registrar's own module two
// directories up, into a temporary directory.
func buildRegistrar(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH: cannot build the registrar binary for the end-to-end load test")
	}
	bin := filepath.Join(t.TempDir(), "registrar")
	cmd := exec.Command(goTool, "build", "-C", "../..", "-o", bin, "./cmd/registrar")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -C ../.. ./cmd/registrar: %v\n%s", err, out)
	}
	return bin
}

// TestLoadEndToEnd runs a tiny launch against a real registrar: 20/s for
// 2 s at capacity 10 must accept exactly 10, answer sold_out to the rest,
// charge nobody twice and complete every accepted registration. The probe
// runs too, so its path is exercised.
func TestLoadEndToEnd(t *testing.T) {
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
		"-registrar", bin, "-data-dir", t.TempDir(),
		"-rate", "20/s", "-duration", "2s", "-capacity", "10",
		"-provider-latency", "20ms", "-retries", "2", "-completion-timeout", "60s",
		"-probe", "-json",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, args, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	r := rep.Registrar
	if r == nil || rep.Probe == nil || rep.Ratio == nil {
		t.Fatalf("report lacks a side:\n%s", stdout.String())
	}
	if r.Attempts != 40 {
		t.Errorf("attempts = %d, want 40", r.Attempts)
	}
	if r.Accepted != 10 || r.SoldOut != r.Attempts-10 || len(r.Errors) != 0 {
		t.Errorf("accepted %d, sold out %d, errors %v; want 10, %d, none", r.Accepted, r.SoldOut, r.Errors, r.Attempts-10)
	}
	if e := r.Exactness; e == nil || !e.OK || e.Oversold != 0 || e.DoubleCharges != 0 || e.Paid != 10 {
		t.Errorf("exactness = %+v", e)
	}
	if p := r.Providers; p == nil || p.Captures != 10 || p.NetCaptures != 10 || p.DoubleCapturedRequestIDs != 0 ||
		p.AttendeesChargedTwice != 0 || p.Emails != 10 || p.DuplicateEmails != 0 {
		t.Errorf("providers = %+v, want 10 captures and 10 emails, no duplicates", p)
	}
	if c := r.Completion; c == nil || c.Tracked != 10 || c.Completed != 10 || c.Rate != 1 {
		t.Errorf("completion = %+v, want all 10 completed", c)
	}
	if r.PeakRSSBytes <= 0 {
		t.Errorf("peak RSS = %d", r.PeakRSSBytes)
	}
	if rep.Probe.Accepted != rep.Probe.Attempts || rep.Probe.Attempts != 40 {
		t.Errorf("probe accepted %d of %d, want 40 of 40", rep.Probe.Accepted, rep.Probe.Attempts)
	}

	// The text report holds the same run's headline figures.
	stdout.Reset()
	args = append(args[:len(args)-2], "-completion=false") // no probe, no JSON
	if err := run(ctx, args, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("run (text): %v\nstderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{"accepted     10", "double charges 0: ok", "peak RSS"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		bad  string
	}{
		{[]string{"-rate", "10/s"}, "-registrar PATH or -target URL is required"},
		{[]string{"-registrar", "x", "-target", "http://y", "-rate", "1"}, "not both"},
		{[]string{"-registrar", "x"}, "-rate N/s"},
		{[]string{"-registrar", "x", "-rate", "1", "-burst", "5"}, "either -rate or -burst"},
		{[]string{"-registrar", "x", "-burst", "5", "-newsletter", "2"}, "-newsletter"},
		{[]string{"-registrar", "x", "-burst", "5", "-database", "sqlite:x"}, "postgres://"},
		{[]string{"-probe-only", "-burst", "5"}, ""},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args, new(bytes.Buffer))
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("%q: error %v, want one mentioning %q", tt.args, err, tt.bad)
		case tt.bad == "" && (!o.probe || o.probeWait != o.providerDelay):
			t.Errorf("%q: probe %v, probe wait %v", tt.args, o.probe, o.probeWait)
		}
	}
	o, err := parseFlags([]string{"-registrar", "x", "-burst", "5", "-retries", "3"}, new(bytes.Buffer))
	if err != nil || !o.keys {
		t.Errorf("-retries does not turn idempotency keys on: %v %v", o.keys, err)
	}
}
