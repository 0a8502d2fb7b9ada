package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// Summary is the medians of repeated runs (-repeat). A figure missing from
// a run (e.g. never ready) is left out of its median; N says how many runs
// had it.
type Summary struct {
	Runs int `json:"runs"`
	// ExactRuns had no oversell, no double charge and no money without a
	// registration; CompletedRuns completed every registration (202s and
	// registered attempts whose client got no 202).
	ExactRuns     int `json:"exact_runs"`
	CompletedRuns int `json:"completed_runs"`

	Accepted        Median `json:"accepted"`
	Paid            Median `json:"paid"`
	P99MS           Median `json:"p99_ms"`
	SoldOutAfterMS  Median `json:"sold_out_after_ms"`
	LastAcceptedMS  Median `json:"last_accepted_ms"`
	CompletionP99MS Median `json:"completion_p99_ms"`
	PeakRSSMiB      Median `json:"peak_rss_mib"`

	ListeningMS       Median `json:"listening_ms"`
	ReadyMS           Median `json:"ready_ms"`
	FirstPostMS       Median `json:"first_post_ms"`
	FirstLoadAnswerMS Median `json:"first_load_answer_ms"`
	First202MS        Median `json:"first_202_ms"`
	AllResumedMS      Median `json:"all_resumed_ms"`

	BacklogPeakRSSMiB   Median `json:"backlog_peak_rss_mib"`
	BacklogSteadyRSSMiB Median `json:"backlog_steady_rss_mib"`
}

// Median is the median of the values a figure took across runs.
type Median struct {
	N      int       `json:"n"`
	Median float64   `json:"median"`
	Values []float64 `json:"values"`
}

func (m Median) String() string {
	if m.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.4g %v", m.Median, m.Values)
}

// medianOf is the median of vs (the mean of the middle two for an even
// count), with vs kept in run order.
func medianOf(vs []float64) Median {
	m := Median{N: len(vs), Values: vs}
	if len(vs) == 0 {
		return m
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		m.Median = s[len(s)/2]
	} else {
		m.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return m
}

// collector gathers one figure's values across runs.
type collector map[string][]float64

func (c collector) add(name string, v float64) { c[name] = append(c[name], v) }

func (c collector) addOpt(name string, v *float64) {
	if v != nil {
		c.add(name, *v)
	}
}

// summarize computes the medians of reports.
func summarize(reports []*Report) Summary {
	s := Summary{Runs: len(reports)}
	c := collector{}
	for _, r := range reports {
		if b := r.Backlog; b != nil {
			c.add("bpeak", b.PeakRSSMiB)
			c.add("bsteady", b.SteadyRSSMiB)
		}
		side := r.Registrar
		if side == nil {
			continue
		}
		if e := side.Exactness; e != nil && e.OK {
			s.ExactRuns++
		}
		if cp := side.Completion; cp != nil && cp.Completed == cp.Tracked && cp.UnansweredCompleted == cp.Unanswered {
			s.CompletedRuns++
		}
		c.add("accepted", float64(side.Accepted))
		if e := side.Exactness; e != nil {
			c.add("paid", float64(e.Paid))
		}
		c.add("p99", side.Latency.P99)
		c.addOpt("soldout", side.SoldOutAfterMS)
		c.add("last202", side.LastAcceptedMS)
		if cp := side.Completion; cp != nil && cp.Latency.N > 0 {
			c.add("cp99", cp.Latency.P99)
		}
		if side.PeakRSSMiB > 0 {
			c.add("rss", side.PeakRSSMiB)
		}
		if rs := side.Restart; rs != nil {
			c.addOpt("listening", rs.ListeningMS)
			c.addOpt("ready", rs.ReadyMS)
			c.addOpt("post", rs.FirstPostMS)
			c.addOpt("answer", rs.FirstLoadAnswerMS)
			c.addOpt("first202", rs.First202MS)
			if d := rs.Redispatch; d != nil && d.Interrupted > 0 {
				c.addOpt("resumed", d.AllResumedMS)
			}
		}
	}
	s.Accepted, s.Paid, s.P99MS = medianOf(c["accepted"]), medianOf(c["paid"]), medianOf(c["p99"])
	s.SoldOutAfterMS, s.LastAcceptedMS, s.CompletionP99MS = medianOf(c["soldout"]), medianOf(c["last202"]), medianOf(c["cp99"])
	s.PeakRSSMiB = medianOf(c["rss"])
	s.ListeningMS = medianOf(c["listening"])
	s.ReadyMS, s.FirstPostMS, s.FirstLoadAnswerMS = medianOf(c["ready"]), medianOf(c["post"]), medianOf(c["answer"])
	s.First202MS, s.AllResumedMS = medianOf(c["first202"]), medianOf(c["resumed"])
	s.BacklogPeakRSSMiB, s.BacklogSteadyRSSMiB = medianOf(c["bpeak"]), medianOf(c["bsteady"])
	return s
}

// writeReports prints one report as before, or each of several and their
// medians.
func writeReports(w io.Writer, asJSON bool, reports []*Report) error {
	if len(reports) == 1 {
		if asJSON {
			return reports[0].writeJSON(w)
		}
		reports[0].writeText(w)
		return nil
	}
	sum := summarize(reports)
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Runs    []*Report `json:"runs"`
			Summary Summary   `json:"summary"`
		}{reports, sum})
	}
	for i, r := range reports {
		fmt.Fprintf(w, "=== run %d of %d\n", i+1, len(reports))
		r.writeText(w)
		fmt.Fprintln(w)
	}
	sum.writeText(w)
	return nil
}

func (s Summary) writeText(w io.Writer) {
	fmt.Fprintf(w, "=== summary of %d runs: median [per run]\n", s.Runs)
	fmt.Fprintf(w, "exact runs            %d of %d; runs with every registration completed: %d\n", s.ExactRuns, s.Runs, s.CompletedRuns)
	rows := []struct {
		name string
		m    Median
	}{
		{"accepted", s.Accepted},
		{"paid", s.Paid},
		{"latency p99 ms", s.P99MS},
		{"sold out after ms", s.SoldOutAfterMS},
		{"last 202 ms", s.LastAcceptedMS},
		{"completion p99 ms", s.CompletionP99MS},
		{"peak RSS MiB", s.PeakRSSMiB},
		{"listening ms (log)", s.ListeningMS},
		{"ready ms", s.ReadyMS},
		{"first POST ms", s.FirstPostMS},
		{"first load answer ms", s.FirstLoadAnswerMS},
		{"first 202 ms", s.First202MS},
		{"all resumed ms", s.AllResumedMS},
		{"backlog peak RSS MiB", s.BacklogPeakRSSMiB},
		{"backlog steady MiB", s.BacklogSteadyRSSMiB},
	}
	for _, r := range rows {
		if r.m.N > 0 {
			fmt.Fprintf(w, "%-21s %s\n", r.name, r.m)
		}
	}
}
