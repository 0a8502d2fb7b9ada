// Package web serves registrar over HTTP: the PaymentAPI and status API, the
// public registration pages and the health endpoints.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/metrics"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/telemetry"
)

//go:embed templates/*.html
var templateFS embed.FS

// Registrar takes and reports registrations.
type Registrar interface {
	Register(ctx context.Context, req registration.Request, key string) (string, error)
	Registration(ctx context.Context, id string) (registration.Registration, error)
	Event() *event.Event
	// Availability reports every ticket's seats, by ticket id: the form
	// marks sold-out tickets and the last few seats.
	Availability(ctx context.Context) (map[string]registration.Availability, error)
	// RecentDuplicate returns the newest registration of the ticket by the
	// same email address made lately: the form asks before charging again.
	RecentDuplicate(ctx context.Context, ticketID, email string) (registration.Registration, bool, error)
}

// Deps are the web layer's collaborators.
type Deps struct {
	Registrar Registrar
	// Ready reports whether the process can serve (database up, schema current).
	Ready   func(ctx context.Context) error
	Log     *slog.Logger
	BaseURL string
	// RateLimit is how many registration attempts one client address may make
	// per minute; 0 turns the limit off.
	RateLimit int
	// Metrics counts requests and outcomes; nil for none. They are served
	// on a listener of their own, never here.
	Metrics *metrics.Metrics
	// Newsletter confirms subscriptions to the local mailing list by the
	// links emailed to attendees; nil for none.
	Newsletter Newsletter
	// Admin is the organisers' back office, served under /admin (it checks
	// its own sessions and roles); nil for none.
	Admin http.Handler
	// PaymentProcessor names who processes card payments, as the form tells
	// attendees: "paypal", "test" (the built-in test processor), or "" to
	// say nothing.
	PaymentProcessor string
	// Tracing, when on, traces each request in a span named after its
	// route; nil for none.
	Tracing *telemetry.Tracing
	// FormWait is how long a form submission waits for the same form's
	// submission still in progress (a double click, or a charge another
	// process was making when it died) before it tells the attendee to
	// come back; 0 means 45 seconds.
	FormWait time.Duration
}

// server holds the parsed templates and dependencies.
type server struct {
	Deps
	pages   *template.Template
	limiter *limiter
}

// Handler returns the HTTP handler for the web role: one route table.
func Handler(d Deps) (http.Handler, error) {
	pages, err := template.New("").Funcs(template.FuncMap{
		"amount": event.FormatAmount,
		"field":  field,
		// The newsletter box's label is the consent text stored with each
		// consent: one constant, so what is recorded is what was shown.
		"newsletterConsent": func() string { return registration.NewsletterConsentText },
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	s := &server{Deps: d, pages: pages, limiter: newLimiter(d.RateLimit, time.Minute)}
	mux := http.NewServeMux()
	mux.Handle("POST /api/registrations", s.limit(s.apiCreate(), s.writeError))
	mux.Handle("GET /api/registrations/{id}", s.apiGet())
	mux.Handle("/api/", s.apiUnknown())
	mux.Handle("GET /{$}", s.formPage())
	mux.Handle("POST /register", s.limit(s.formSubmit(), s.formError))
	mux.Handle("GET /register", http.RedirectHandler("/", http.StatusSeeOther))
	mux.Handle("GET /registrations/{id}", s.statusPage())
	if d.Newsletter != nil {
		mux.Handle("GET /newsletter/confirm/{token}", s.newsletterPage())
		mux.Handle("POST /newsletter/confirm/{token}", s.newsletterConfirm())
		mux.Handle("GET /newsletter/confirmed", s.newsletterConfirmed())
	}
	mux.Handle("GET /static/{name}", s.staticFiles())
	mux.Handle("GET /healthz", healthz())
	mux.Handle("GET /readyz", s.readyz())
	if d.Admin != nil {
		mux.Handle("/admin", d.Admin)
		mux.Handle("/admin/", d.Admin)
	}
	cop := http.NewCrossOriginProtection()
	return withRequestID(d.Tracing.Handler(tagSpan(d.Metrics.Wrap(securityHeaders(cop.Handler(s.routeErrors(mux))))))), nil
}

// HealthHandler serves only health and readiness, for worker-only
// processes; m, when not nil, counts their requests.
func HealthHandler(ready func(ctx context.Context) error, log *slog.Logger, m *metrics.Metrics) http.Handler {
	s := &server{Deps: Deps{Ready: ready, Log: log}}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", healthz())
	mux.Handle("GET /readyz", s.readyz())
	return withRequestID(m.Wrap(mux))
}

// register takes a registration and counts its outcome.
func (s *server) register(ctx context.Context, req registration.Request, key string) (string, error) {
	id, err := s.Registrar.Register(ctx, req, key)
	var e *registration.Error
	switch {
	case err == nil:
		s.Metrics.Attempt("accepted")
	case errors.As(err, &e):
		s.Metrics.Attempt(e.Code)
	default:
		s.Metrics.Attempt(registration.CodeInternal)
	}
	return id, err
}

func healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
}

func (s *server) readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.Ready(ctx); err != nil {
			s.Log.WarnContext(ctx, "not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

// limit rejects clients over the rate limit with 429 and Retry-After,
// answered by refuse (JSON for the API, a page for the form).
func (s *server) limit(next http.Handler, refuse func(http.ResponseWriter, *http.Request, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait, ok := s.limiter.allow(clientAddr(r), time.Now()); !ok {
			secs := max(int((wait+time.Second-1)/time.Second), 1)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			refuse(w, r, &registration.Error{Code: registration.CodeRateLimited,
				Message: "Too many attempts from your address; wait " + seconds(secs) + " and try again."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// seconds says n seconds in words: "1 second", "30 seconds".
func seconds(n int) string {
	if n == 1 {
		return "1 second"
	}
	return strconv.Itoa(n) + " seconds"
}

// apiUnknown answers API paths and methods that do not exist in the API's
// JSON envelope rather than as plain text.
func (s *server) apiUnknown() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allow := ""
		switch {
		case r.URL.Path == "/api/registrations":
			allow = http.MethodPost
		case strings.HasPrefix(r.URL.Path, "/api/registrations/") && !strings.Contains(r.URL.Path[len("/api/registrations/"):], "/"):
			allow = http.MethodGet + ", " + http.MethodHead
		}
		if allow != "" {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, errorEnvelope(registration.CodeInvalidRequest,
				r.Method+" is not allowed here; use "+allow+"."))
			return
		}
		writeJSON(w, http.StatusNotFound, errorEnvelope(registration.CodeNotFound, "There is no such API endpoint."))
	})
}

// status maps an error code to its HTTP status: the one place that does.
func status(code string) int {
	switch code {
	case registration.CodeInvalidRequest:
		return http.StatusBadRequest
	case registration.CodeRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case registration.CodeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case registration.CodeValidationFailed, registration.CodeIdempotencyKeyReused:
		return http.StatusUnprocessableEntity
	case registration.CodePaymentDeclined:
		return http.StatusPaymentRequired
	case registration.CodeSoldOut, registration.CodeSalesNotOpen, registration.CodeSalesClosed,
		registration.CodeIdempotencyInProgress:
		return http.StatusConflict
	case registration.CodeRateLimited:
		return http.StatusTooManyRequests
	case registration.CodePaymentUnavailable:
		return http.StatusBadGateway
	case registration.CodeNotFound:
		return http.StatusNotFound
	default:
		return http.StatusInternalServerError
	}
}

// asError turns any error into an attendee-safe *registration.Error,
// logging what the attendee must not see.
func (s *server) asError(r *http.Request, err error) *registration.Error {
	var e *registration.Error
	if !errors.As(err, &e) {
		e = &registration.Error{Code: registration.CodeInternal, Err: err}
	}
	if e.Code == registration.CodeInternal {
		s.Log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		return &registration.Error{Code: e.Code, Message: "Something went wrong on our side. Please try again."}
	}
	if e.Err != nil {
		s.Log.InfoContext(r.Context(), "request refused", "path", r.URL.Path, "code", e.Code, "err", e.Err)
	}
	return e
}

type errorBody struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Fields  map[string]string `json:"fields,omitempty"`
		// Retryable marks an answer that may change soon; Retry-After says
		// when to ask again.
		Retryable bool `json:"retryable,omitempty"`
	} `json:"error"`
}

func errorEnvelope(code, message string) errorBody {
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	return b
}

func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := s.asError(r, err)
	b := errorEnvelope(e.Code, e.Message)
	b.Error.Fields = e.Fields
	b.Error.Retryable = e.Retryable
	if e.Retryable && e.RetryAfter > 0 && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, status(e.Code), b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v) // the client went away; nothing to do
}
