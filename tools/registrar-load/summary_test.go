package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestMedianOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		m := medianOf(tt.in)
		if m.Median != tt.want || m.N != len(tt.in) {
			t.Errorf("medianOf(%v) = %+v, want %g", tt.in, m, tt.want)
		}
	}
	in := []float64{3, 1, 2}
	medianOf(in)
	if in[0] != 3 {
		t.Error("medianOf reordered its input")
	}
	if got := steadyRSS([]float64{100, 10, 30, 31, 32}); got != 31 {
		t.Errorf("steadyRSS = %g, want 31 (median of the second half)", got)
	}
}

func sampleReport(accepted int, ready float64, ok bool) *Report {
	resumed := ready * 10
	return &Report{Registrar: &Side{
		Name: "registrar", Accepted: accepted, PeakRSSMiB: 600,
		Exactness:  &Exactness{Paid: 1000, OK: ok},
		Completion: &Completion{Tracked: accepted, Completed: accepted, Unanswered: 5, UnansweredCompleted: 5},
		Restart:    &Restart{ReadyMS: &ready, FirstPostMS: &ready, Redispatch: &Redispatch{Interrupted: 3, Resumed: 3, AllResumedMS: &resumed}},
	}}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	reports := []*Report{sampleReport(400, 30, true), sampleReport(500, 50, true), sampleReport(450, 40, false)}
	reports[2].Registrar.Restart.ReadyMS = nil // never ready: left out
	s := summarize(reports)
	if s.Runs != 3 || s.ExactRuns != 2 || s.CompletedRuns != 3 {
		t.Errorf("runs %d, exact %d, completed %d; want 3, 2, 3", s.Runs, s.ExactRuns, s.CompletedRuns)
	}
	if s.Accepted.Median != 450 || s.ReadyMS.N != 2 || s.ReadyMS.Median != 40 || s.AllResumedMS.Median != 400 {
		t.Errorf("medians: accepted %+v, ready %+v, resumed %+v", s.Accepted, s.ReadyMS, s.AllResumedMS)
	}

	var b bytes.Buffer
	if err := writeReports(&b, false, reports); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=== run 3 of 3", "=== summary of 3 runs", "exact runs            2 of 3", "ready ms              40 [30 50]"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := writeReports(&b, true, reports); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Runs    []Report `json:"runs"`
		Summary Summary  `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || len(got.Runs) != 3 || got.Summary.Accepted.Median != 450 {
		t.Errorf("JSON of repeated runs: %v %+v", err, got.Summary)
	}
	b.Reset()
	if err := writeReports(&b, true, reports[:1]); err != nil {
		t.Fatal(err)
	}
	var one Report
	if err := json.Unmarshal(b.Bytes(), &one); err != nil || one.Registrar == nil {
		t.Errorf("one run is not printed as one report: %v", err)
	}
}

func TestWriteBacklog(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	rep := &Report{Scenario: Scenario{Mode: "backlog", Backlog: 30000, DurationS: 60, Engine: "sqlite"},
		Backlog: &Backlog{Registrations: 10000, Jobs: 30000, PeakRSSMiB: 33.3, SteadyRSSMiB: 33.2, RunS: 60,
			EmailCalls: 25, EmailRegistrations: 25, JobsBefore: map[string]int{"save_order available": 10000}}}
	rep.writeText(&b)
	for _, want := range []string{"backlog of 30000 queued activity jobs", "peak RSS 33.3 MiB, steady 33.2 MiB", "SendGrid 25 calls (25 registrations)", "save_order available: 10000"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("backlog text lacks %q:\n%s", want, b.String())
		}
	}
}
