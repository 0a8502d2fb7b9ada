package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/metrics"
)

// TestNoPublicMetrics: the metrics show sales, so neither the public
// handler nor a worker's health handler serves them (they have a listener
// of their own); the requests are still counted.
func TestNoPublicMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	log := slog.New(slog.DiscardHandler)
	m := metrics.New()
	public, err := Handler(Deps{Registrar: h.svc, Ready: h.db.Ready, Log: log, BaseURL: testBaseURL, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	health := HealthHandler(func(context.Context) error { return nil }, log, m)
	for name, handler := range map[string]http.Handler{"public": public, "health": health} {
		srv := httptest.NewServer(handler)
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s GET /metrics = %d, want 404", name, resp.StatusCode)
		}
		resp, err = http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s GET /healthz = %d, want 200", name, resp.StatusCode)
		}
		srv.Close()
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`registrar_http_requests_total{code="404",route="unmatched"} 2`,
		`registrar_http_requests_total{code="200",route="GET /healthz"} 2`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, rec.Body.String())
		}
	}
}
