// Package metrics exposes registrar's Prometheus metrics at /metrics, on a
// listener of their own: HTTP traffic, registration outcomes, pipeline
// activity results, the figures an organiser alerts on (seats,
// registrations, jobs, payment incidents, refunds; read from the database),
// the build, and the Go runtime and process.
package metrics

import (
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/registrar/registrar/internal/buildinfo"
)

// Metrics holds one process's collectors in a registry of its own.
type Metrics struct {
	registry   *prometheus.Registry
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	attempts   *prometheus.CounterVec
	activities *prometheus.CounterVec
}

// New returns the metrics of one process.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registrar_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "registrar_http_request_duration_seconds",
			Help:    "HTTP request duration by route, including the payment provider's time.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registrar_registration_attempts_total",
			Help: "Registration attempts by outcome: accepted, or the API error code.",
		}, []string{"outcome"}),
		activities: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registrar_activity_runs_total",
			Help: "Pipeline activity runs by step and result (succeeded, retrying, failed).",
		}, []string{"step", "result"}),
	}
	version, revision := buildLabels(buildinfo.Read())
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "registrar_build_info",
		Help: "Always 1; the labels name the binary's module version and VCS revision.",
	}, []string{"version", "revision"})
	build.WithLabelValues(version, revision).Set(1)
	m.registry.MustRegister(m.requests, m.duration, m.attempts, m.activities, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// buildLabels are registrar_build_info's labels for the build b: its
// module version, and the revision it was built from ("unknown" when the
// build recorded none, as with go run or go test; "-dirty" after it for a
// modified work tree).
func buildLabels(b buildinfo.Info) (version, revision string) {
	revision = cmp.Or(b.Revision, "unknown")
	if b.Revision != "" && b.Modified {
		revision += "-dirty"
	}
	return b.Version, revision
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Private is the handler of the metrics listener: GET /metrics and nothing
// else. With a token, every request must carry it as
// "Authorization: Bearer TOKEN"; any other is answered 401.
func (m *Metrics) Private(token string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if token == "" {
		return mux
	}
	return RequireToken(token, mux)
}

// RequireToken answers 401 with a WWW-Authenticate challenge to a request
// without "Authorization: Bearer TOKEN", and passes the others to next.
// The comparison takes the same time whatever the request holds: both
// sides are hashed first, so not even the token's length shows.
func RequireToken(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(got))
		if ok := subtle.ConstantTimeCompare(sum[:], want[:]) == 1; !ok || !strings.EqualFold(scheme, "Bearer") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="registrar metrics"`)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "401 unauthorized: send the metrics token as Authorization: Bearer TOKEN", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Attempt counts one registration attempt's outcome.
func (m *Metrics) Attempt(outcome string) {
	if m != nil {
		m.attempts.WithLabelValues(outcome).Inc()
	}
}

// Activity counts one run of a pipeline activity.
func (m *Metrics) Activity(step, result string) {
	if m != nil {
		m.activities.WithLabelValues(step, result).Inc()
	}
}

// Wrap counts and times the requests next serves. The route label is the
// matched pattern of the request (r.Pattern), never the raw path, so ids do
// not multiply the series.
func (m *Metrics) Wrap(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type recorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
