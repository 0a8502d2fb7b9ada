package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// statusReader reads registrations' statuses, pollers at a time, over
// connections it keeps: thousands of ids read one by one take longer than
// registrar takes to finish them.
type statusReader struct {
	client  *http.Client
	baseURL string
	pollers int
}

func newStatusReader(baseURL string, pollers int) *statusReader {
	pollers = max(1, pollers)
	tr := &http.Transport{MaxIdleConnsPerHost: pollers, IdleConnTimeout: 30 * time.Second}
	return &statusReader{
		client:  &http.Client{Timeout: 10 * time.Second, Transport: tr},
		baseURL: strings.TrimRight(baseURL, "/"),
		pollers: pollers,
	}
}

func (r *statusReader) close() { r.client.CloseIdleConnections() }

// status reads registration id's status ("" when registrar does not have it
// or does not answer; "unknown" when it has it but the answer names none).
func (r *statusReader) status(ctx context.Context, id string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.baseURL+"/api/registrations/"+id, nil)
	if err != nil {
		return ""
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	// Read to the end, so that the connection is kept for the next read.
	defer io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	var body struct {
		Status string `json:"status"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body) != nil || body.Status == "" {
		return "unknown"
	}
	return body.Status
}

// statuses reads the statuses of ids concurrently, by id.
func (r *statusReader) statuses(ctx context.Context, ids []string) map[string]string {
	got := make([]string, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(r.pollers, len(ids)) {
		wg.Go(func() {
			for i := range next {
				got[i] = r.status(ctx, ids[i])
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	out := make(map[string]string, len(ids))
	for i, id := range ids {
		out[id] = got[i]
	}
	return out
}

// settlePause is the least time between two reads of one id while settling.
const settlePause = time.Second

// settle waits until every capture without a 202 (unanswered lists those not
// refunded) is registered or refunded, or timeout from now passes. It
// returns the ids registered and how many are still neither.
//
// It reads the pending ids round after round, concurrently, until none is
// left or the deadline passes: an id read before registrar finished it is
// read again. A round starts at the deadline at the latest and runs to its
// end, so every id still pending at the end was read once more at or after
// the deadline (or at the end of the previous round, if that one ended
// past it).
func settle(ctx context.Context, unanswered func() []string, sr *statusReader, timeout time.Duration, log *slog.Logger) (registeredIDs []string, left int) {
	reg := map[string]bool{}
	deadline := time.Now().Add(timeout)
	pending := notIn(unanswered(), reg)
	for len(pending) > 0 && ctx.Err() == nil {
		for id, status := range sr.statuses(ctx, pending) {
			if status != "" {
				reg[id] = true
			}
		}
		// Refunds may have come in during the round too.
		pending = notIn(unanswered(), reg)
		if len(pending) == 0 || !time.Now().Before(deadline) {
			break
		}
		log.Info("waiting for charged attempts without a 202 to be registered or refunded",
			"pending", len(pending), "left", time.Until(deadline).Round(time.Second))
		sleep(ctx, min(settlePause, time.Until(deadline)))
	}
	return slices.Sorted(maps.Keys(reg)), len(pending)
}

// awaitCompleted reads the registrations ids, concurrently, until all are
// completed or timeout from now passes (as settle does), and returns how
// many are completed.
func awaitCompleted(ctx context.Context, sr *statusReader, ids []string, timeout time.Duration) int {
	done := map[string]bool{}
	deadline := time.Now().Add(timeout)
	pending := notIn(ids, done)
	for len(pending) > 0 && ctx.Err() == nil {
		for id, status := range sr.statuses(ctx, pending) {
			if status == "completed" {
				done[id] = true
			}
		}
		pending = notIn(ids, done)
		if len(pending) == 0 || !time.Now().Before(deadline) {
			break
		}
		sleep(ctx, min(settlePause, time.Until(deadline)))
	}
	return len(done)
}

// notIn are the ids not in set.
func notIn(ids []string, set map[string]bool) []string {
	var out []string
	for _, id := range ids {
		if !set[id] {
			out = append(out, id)
		}
	}
	return out
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
