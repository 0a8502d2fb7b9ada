package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWrapLabelsByPatternAndCode(t *testing.T) {
	t.Parallel()
	m := New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	mux.Handle("GET /metrics", m.Handler())
	srv := httptest.NewServer(m.Wrap(mux))
	defer srv.Close()
	for _, p := range []string{"/things/1", "/things/2", "/nowhere"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	m.Attempt("accepted")
	m.Attempt("sold_out")
	m.Attempt("sold_out")
	m.Activity("send_confirmation", "retrying")
	var nilMetrics *Metrics
	nilMetrics.Attempt("ignored") // a nil *Metrics is a no-op
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`registrar_http_requests_total{code="418",route="GET /things/{id}"} 2`,
		`registrar_http_requests_total{code="404",route="unmatched"} 1`,
		`registrar_registration_attempts_total{outcome="sold_out"} 2`,
		`registrar_activity_runs_total{result="retrying",step="send_confirmation"} 1`,
		`registrar_http_request_duration_seconds_count{route="GET /things/{id}"} 2`,
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, "/things/1") {
		t.Error("a raw path became a label")
	}
}
