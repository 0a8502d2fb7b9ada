package telemetry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestOffCreatesNothing(t *testing.T) {
	t.Parallel()
	cfg, err := FromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for name, tr := range map[string]*Tracing{"from empty env": mustNew(t, cfg), "nil": nil} {
		if tr != nil && tr.sdk != nil {
			t.Errorf("%s: a tracer provider (and exporter) was created", name)
		}
		_, span := tr.Tracer().Start(context.Background(), "x")
		if span.IsRecording() || span.SpanContext().IsValid() {
			t.Errorf("%s: spans are recorded", name)
		}
		span.End()
		rt := http.DefaultTransport
		if tr.Transport("paypal", rt) != rt {
			t.Errorf("%s: the transport was wrapped", name)
		}
		h := http.NotFoundHandler()
		if got := tr.Handler(h); got == nil {
			t.Errorf("%s: no handler", name)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("%s: Shutdown: %v", name, err)
		}
	}
}

func mustNew(t *testing.T, cfg Config) *Tracing {
	t.Helper()
	tr, err := New(cfg, "v1.2.3", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tr
}

// TestExportsOverOTLPHTTP posts spans to a collector on loopback, with the
// configured headers, and Shutdown flushes what is buffered.
func TestExportsOverOTLPHTTP(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []*coltracepb.ExportTraceServiceRequest
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" ||
			r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("X-Api-Key") != "k=1" {
			t.Errorf("collector got %s %s, Content-Type %q, X-Api-Key %q", r.Method, r.URL.Path,
				r.Header.Get("Content-Type"), r.Header.Get("X-Api-Key"))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Errorf("collector: %v", err)
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	cfg, err := FromEnv(env{
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL,
		"OTEL_EXPORTER_OTLP_HEADERS":  "X-Api-Key=k%3D1",
		"OTEL_SERVICE_NAME":           "tickets",
	}.get)
	if err != nil {
		t.Fatal(err)
	}
	tr := mustNew(t, cfg)
	_, span := tr.Tracer().Start(context.Background(), "work")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || len(got[0].ResourceSpans) != 1 {
		t.Fatalf("collector got %d exports, want 1 with one resource", len(got))
	}
	rs := got[0].ResourceSpans[0]
	var service string
	for _, kv := range rs.Resource.Attributes {
		if kv.Key == "service.name" {
			service = kv.Value.GetStringValue()
		}
	}
	if service != "tickets" || len(rs.ScopeSpans) != 1 || len(rs.ScopeSpans[0].Spans) != 1 || rs.ScopeSpans[0].Spans[0].Name != "work" {
		t.Errorf("exported service %q, spans %v; want tickets and one span named work", service, rs.ScopeSpans)
	}
}

type env map[string]string

func (e env) get(k string) string { return e[k] }

// TestSpansNameRoutesAndKeepNoSecrets: a server span is named after the
// route, a client span after the provider; neither keeps the path's
// token or hash, and the provider hears no trace context.
func TestSpansNameRoutesAndKeepNoSecrets(t *testing.T) {
	t.Parallel()
	const token, hash = "tok3nS3CRET", "5f2b9c0deadbeef"
	exp := tracetest.NewInMemoryExporter()
	tr := NewWithExporter(Config{ServiceName: "registrar", Sampler: "always_on"}, "v0", exp)

	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tp := r.Header.Get("Traceparent"); tp != "" {
			t.Errorf("provider was sent traceparent %q", tp)
		}
	}))
	defer provider.Close()
	client := &http.Client{Transport: tr.Transport("mailchimp", http.DefaultTransport)}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /newsletter/confirm/{token}", func(w http.ResponseWriter, r *http.Request) {
		resp, err := client.Do(mustRequest(t, r.Context(), provider.URL+"/3.0/lists/l1/members/"+hash+"?email=a%40b.example"))
		if err != nil {
			t.Errorf("provider call: %v", err)
			return
		}
		resp.Body.Close()
	})
	mux.HandleFunc("/", http.NotFound)
	h := tr.Handler(mux)
	for _, path := range []string{"/newsletter/confirm/" + token + "?x=" + token, "/nowhere/" + token} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = "203.0.113.9:5555"
		h.ServeHTTP(httptest.NewRecorder(), req)
	}

	spans := exp.GetSpans()
	names := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		names[s.Name] = s
		for _, kv := range s.Attributes {
			v := kv.Value.Emit()
			for _, secret := range []string{token, hash, "a%40b", "203.0.113.9"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %q attribute %s = %q keeps %q", s.Name, kv.Key, v, secret)
				}
			}
			if kv.Key == "url.full" && v != provider.URL {
				t.Errorf("url.full = %q, want %q", v, provider.URL)
			}
		}
	}
	server, ok := names["GET /newsletter/confirm/{token}"]
	client_, ok2 := names["mailchimp GET"]
	if _, ok3 := names["GET /"]; !ok || !ok2 || !ok3 || len(spans) != 3 {
		t.Fatalf("spans %v; want the route's, the provider's and the unmatched GET /", keys(names))
	}
	if client_.Parent.SpanID() != server.SpanContext.SpanID() || client_.SpanContext.TraceID() != server.SpanContext.TraceID() {
		t.Errorf("the provider's span is not the request span's child")
	}
}

func keys(m map[string]tracetest.SpanStub) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func mustRequest(t *testing.T, ctx context.Context, url string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestLogHandler(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr := NewWithExporter(Config{Sampler: "always_on"}, "v0", exp)
	var buf bytes.Buffer
	log := slog.New(NewLogHandler(slog.NewTextHandler(&buf, nil))).With("component", "test")

	ctx := WithRequestID(context.Background(), "req-1")
	ctx = WithLogAttrs(ctx, slog.Int64("job_id", 7))
	ctx, span := tr.Tracer().Start(ctx, "x")
	log.InfoContext(ctx, "in a request")
	span.End()
	log.Info("no context")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log:\n%s", buf.String())
	}
	for _, want := range []string{"component=test", "request_id=req-1", "job_id=7", "trace_id=" + span.SpanContext().TraceID().String()} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %s", lines[0], want)
		}
	}
	if strings.Contains(lines[1], "request_id") || strings.Contains(lines[1], "trace_id") {
		t.Errorf("a line without context carries request attributes: %q", lines[1])
	}
	if RequestID(ctx) != "req-1" || RequestID(context.Background()) != "" {
		t.Errorf("RequestID = %q", RequestID(ctx))
	}
}

func TestRequestIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true}, {"req-1.A_b", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"a b", false}, {"a/b", false}, {"é", false}, {"a\nb", false},
	}
	for _, tt := range tests {
		if got := ValidRequestID(tt.id); got != tt.want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
	a, b := NewRequestID(), NewRequestID()
	if a == b || len(a) != 16 || !ValidRequestID(a) {
		t.Errorf("NewRequestID gave %q and %q", a, b)
	}
}

// TestFailedExportIsLogged: a collector refusing spans costs one log line
// of ours, naming no header value.
func TestFailedExportIsLogged(t *testing.T) {
	t.Parallel()
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer collector.Close()
	var buf bytes.Buffer
	tr, err := New(Config{Endpoint: collector.URL + "/v1/traces", ServiceName: "registrar", Sampler: "always_on",
		Headers: map[string]string{"x-api-key": "S3CRET"}}, "v0", slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Tracer().Start(context.Background(), "work")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if out := buf.String(); !strings.Contains(out, `msg="exporting spans failed; they are dropped" spans=1`) || strings.Contains(out, "S3CRET") {
		t.Errorf("log:\n%s", out)
	}
}
