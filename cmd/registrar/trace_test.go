package main

import (
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

	"github.com/registrar/registrar/internal/config"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/logredact"
	"github.com/registrar/registrar/internal/telemetry"
)

// startServe is startRun with tracing of the test's own: it does what run
// does before serving.
func startServe(t *testing.T, e env, tracing *telemetry.Tracing) *server {
	t.Helper()
	cfg, err := config.Load(e.get)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.Load(cfg.EventFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	secrets := logredact.New(slog.NewTextHandler(s.logs, nil), cfg.Secrets())
	log := slog.New(telemetry.NewLogHandler(secrets))
	db, err := openEngine(ctx, cfg.Database, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.store.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	out := &addrWriter{url: make(chan string, 1)}
	go func() {
		defer db.close()
		s.done <- serve(ctx, cfg, ev, db, tracing, log, secrets, out)
	}()
	select {
	case s.url = <-out.url:
	case err := <-s.done:
		t.Fatalf("serve stopped before listening: %v\nlogs:\n%s", err, s.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not listen within 30s\nlogs:\n%s", s.logs)
	}
	return s
}

// TestOneRegistrationOneTrace: a registration through the real handler,
// PayPal, the pipeline, SendGrid and Mailchimp (strict fakes) is one trace:
// the request's server span, the payment's client span under it, the
// register job under the request, each step under its job with its
// provider's call under it. No span keeps the attendee's name, email or
// card. On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.
func TestOneRegistrationOneTrace(t *testing.T) {
	t.Parallel()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			oneRegistrationOneTrace(t, engine)
		})
	}
}

func oneRegistrationOneTrace(t *testing.T, engine string) {
	dir := t.TempDir()
	e, _ := providerEnv(t, dir, "sendgrid")
	useEngine(t, e, engine, dir)
	exp := tracetest.NewInMemoryExporter()
	tracing := telemetry.NewWithExporter(telemetry.Config{ServiceName: "registrar", Sampler: "parentbased_always_on"}, "test", exp)
	s := startServe(t, e, tracing)
	defer s.stop(t)

	body := paypalBody(1, true, "Ada Lovelace")
	req, _ := http.NewRequest(http.MethodPost, s.url+"/api/registrations", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "trace-e2e-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Request-Id") != "trace-e2e-1" {
		t.Fatalf("POST: %s %s, X-Request-Id %q", resp.Status, data, resp.Header.Get("X-Request-Id"))
	}
	id := string(data[strings.Index(string(data), `"id":"`)+6:])
	id = id[:strings.Index(id, `"`)]
	waitCompleted(t, s.url, []string{id}, 30*time.Second)

	// want are "span < parent" of the registration's trace; each at least
	// once (PayPal is called for a token and an order).
	want := []string{
		"POST /api/registrations < ",
		"paypal POST < POST /api/registrations",
		"job register < POST /api/registrations",
		"save_order < job register",
		"send_confirmation < job register",
		"sendgrid POST < send_confirmation",
		"job add_to_mailing_list < job register",
		"add_to_mailing_list < job add_to_mailing_list",
		"mailchimp POST < add_to_mailing_list",
	}
	var got map[string]int
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = map[string]int{}
		spans := exp.GetSpans()
		var root tracetest.SpanStub
		for _, sp := range spans {
			if sp.Name == "POST /api/registrations" {
				root = sp
			}
		}
		byID := map[string]tracetest.SpanStub{}
		for _, sp := range spans {
			if sp.SpanContext.TraceID() == root.SpanContext.TraceID() {
				byID[sp.SpanContext.SpanID().String()] = sp
			}
		}
		for _, sp := range byID {
			got[sp.Name+" < "+byID[sp.Parent.SpanID().String()].Name]++
		}
		missing := false
		for _, w := range want {
			missing = missing || got[w] == 0
		}
		if !missing {
			for _, sp := range spans {
				for _, kv := range sp.Attributes {
					v := kv.Value.Emit()
					for _, secret := range []string{"Ada", "Lovelace", "Example.org", "example.org", paypalCard} {
						if strings.Contains(v, secret) {
							t.Errorf("span %q attribute %s = %q shows %q", sp.Name, kv.Key, v, secret)
						}
					}
					if cvcAlone.MatchString(v) { // random ids may hold its digits
						t.Errorf("span %q attribute %s = %q shows the CVC", sp.Name, kv.Key, v)
					}
				}
			}
			if root.Attributes == nil || !hasAttr(root, "registrar.request_id", "trace-e2e-1") {
				t.Errorf("the request span lacks its request id: %v", root.Attributes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registration's trace has %v; want each of %q", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for k := range got {
		if !strings.HasPrefix(k, "paypal POST") && !strings.HasPrefix(k, "mailchimp ") && got[k] != 1 {
			t.Errorf("%d spans %q, want 1", got[k], k)
		}
	}
	if logs := s.logs.String(); !strings.Contains(logs, "request_id=trace-e2e-1") {
		t.Errorf("no log line carries the request id:\n%s", logs)
	}
}

func hasAttr(s tracetest.SpanStub, key, value string) bool {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key && kv.Value.Emit() == value {
			return true
		}
	}
	return false
}

// TestTracingFromTheEnvironment: run reads the OTEL_* variables through
// getenv; with an endpoint its spans reach the collector by the time run
// returns (the shutdown flushes them); with the SDK disabled nothing is
// sent. (With no endpoint no exporter exists: TestOffCreatesNothing.)
func TestTracingFromTheEnvironment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{name: "endpoint set", env: map[string]string{"OTEL_SERVICE_NAME": "registrar-test",
			"OTEL_EXPORTER_OTLP_HEADERS": "x-collector-key=k1"}, want: true},
		{name: "SDK disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-key=k1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var names []string
			var service string
			collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				data, _ := io.ReadAll(r.Body)
				if r.URL.Path != "/v1/traces" || r.Header.Get("X-Collector-Key") != "k1" {
					t.Errorf("collector got %s with key %q", r.URL.Path, r.Header.Get("X-Collector-Key"))
				}
				var req coltracepb.ExportTraceServiceRequest
				if err := proto.Unmarshal(data, &req); err != nil {
					t.Errorf("collector: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, rs := range req.ResourceSpans {
					for _, kv := range rs.Resource.Attributes {
						if kv.Key == "service.name" {
							service = kv.Value.GetStringValue()
						}
					}
					for _, ss := range rs.ScopeSpans {
						for _, sp := range ss.Spans {
							names = append(names, sp.Name)
						}
					}
				}
			}))
			defer collector.Close()
			e := baseEnv(t.TempDir())
			for k, v := range tt.env {
				e[k] = v
			}
			e["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.URL
			s := startRun(t, e)
			resp, err := http.Get(s.url + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			s.stop(t)
			mu.Lock()
			defer mu.Unlock()
			if tt.want && (service != "registrar-test" || !contains(names, "GET /healthz")) {
				t.Errorf("collector got spans %q of service %q; want GET /healthz of registrar-test", names, service)
			}
			if !tt.want && len(names) > 0 {
				t.Errorf("collector got spans %q; want none", names)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
