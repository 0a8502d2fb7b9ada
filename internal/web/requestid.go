package web

import (
	"net/http"

	otelattribute "go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/registrar/registrar/internal/telemetry"
)

// requestIDHeader names a request's id, answered on every response.
const requestIDHeader = "X-Request-Id"

// withRequestID gives every request an id: the client's X-Request-Id when
// it is 1–64 characters of A-Z, a-z, 0-9, '.', '_' and '-', a new one
// otherwise. It is answered in X-Request-Id, carried by every log line the
// request causes and stored with the jobs it inserts.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeader)
		if !telemetry.ValidRequestID(id) {
			id = telemetry.NewRequestID()
		}
		w.Header().Set(requestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(telemetry.WithRequestID(r.Context(), id)))
	})
}

// tagSpan records the request id on the request's span. It hands on the
// request itself, not a copy, so the route the mux matches reaches the
// span's name.
func tagSpan(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			span.SetAttributes(otelattribute.String("registrar.request_id", telemetry.RequestID(r.Context())))
		}
		next.ServeHTTP(w, r)
	})
}
