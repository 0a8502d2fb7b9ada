package pipeline_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/telemetry"
)

// logBuffer is an io.Writer safe for concurrent log writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestJobsCarryTheRequest: the request id of the request that registered
// reaches the register job's metadata and every log line of its jobs (the
// register job's, and the retry job it inserts), with the job's id, kind
// and attempt; the jobs' and steps' spans join the request's trace.
func TestJobsCarryTheRequest(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	log := slog.New(telemetry.NewLogHandler(slog.NewTextHandler(logs, nil)))
	exp := tracetest.NewInMemoryExporter()
	tracing := telemetry.NewWithExporter(telemetry.Config{ServiceName: "registrar", Sampler: "always_on"}, "test", exp)
	h := newHarnessWith(t, func(m *testMailer) { m.failNext = 2 }, nil, log, tracing)

	ctx := telemetry.WithRequestID(t.Context(), "req-Trace.1")
	ctx, reqSpan := tracing.Tracer().Start(ctx, "POST /api/registrations")
	id, err := h.svc.Register(ctx, request(1, true), "")
	reqSpan.End()
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	h.waitStatus(t, id, registration.StatusCompleted)

	var meta struct {
		RequestID   string `json:"request_id"`
		Traceparent string `json:"traceparent"`
	}
	var raw []byte
	if err := h.db.Read.QueryRowContext(t.Context(), `SELECT json(metadata) FROM river_job WHERE kind = 'register'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil || meta.RequestID != "req-Trace.1" ||
		!strings.Contains(meta.Traceparent, reqSpan.SpanContext().TraceID().String()) {
		t.Errorf("register job metadata %s; want the request id and the request's traceparent", raw)
	}

	traceID := reqSpan.SpanContext().TraceID().String()
	var failed []string
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, "activity failed") {
			failed = append(failed, line)
		}
	}
	if len(failed) != 2 {
		t.Fatalf("want 2 activity failed lines (register job, then the step's job); logs:\n%s", logs)
	}
	for i, kind := range []string{pipeline.KindRegister, pipeline.KindSendConfirmation} {
		for _, want := range []string{"request_id=req-Trace.1", "job_kind=" + kind, "job_attempt=1", "job_id=", "trace_id=" + traceID} {
			if !strings.Contains(failed[i], want) {
				t.Errorf("line %q lacks %s", failed[i], want)
			}
		}
	}

	// The spans: register job under the request; save_order and the first
	// send_confirmation under it; the step jobs it inserted under it too
	// (both attempts of send_confirmation's), each with its step's span.
	spans := exp.GetSpans()
	byID := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID().String()] = s
		if s.Name == "job "+pipeline.KindResolvePayments {
			continue // periodic, of no request
		}
		if s.SpanContext.TraceID().String() != traceID {
			t.Errorf("span %q is in trace %s, not the request's", s.Name, s.SpanContext.TraceID())
		}
	}
	parent := func(s tracetest.SpanStub) string { return byID[s.Parent.SpanID().String()].Name }
	count := map[string]int{}
	for _, s := range spans {
		key := s.Name + " < " + parent(s)
		count[key]++
	}
	want := map[string]int{
		"job register < POST /api/registrations":        1,
		"save_order < job register":                     1,
		"send_confirmation < job register":              1,
		"job send_confirmation < job register":          2,
		"send_confirmation < job send_confirmation":     2,
		"job add_to_mailing_list < job register":        1,
		"add_to_mailing_list < job add_to_mailing_list": 1,
		"POST /api/registrations < ":                    1,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d spans %q, want %d; all: %v", count[k], k, n, count)
		}
	}
}
