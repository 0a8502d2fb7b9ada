package admin

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/registrar/registrar/internal/event"
)

//go:embed templates/*.html assets/admin.css
var files embed.FS

// Session defaults.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultLifetime    = 12 * time.Hour
)

// maxFormBytes bounds every form body the back office reads.
const maxFormBytes = 64 << 10

// Content security policies. Back-office pages run no script at all and
// take their styles from the one stylesheet. The job console (River UI) is
// a script application served from the same origin: its modules, its
// stylesheet, its icons and data: images in that stylesheet, and fetches
// of its own API; it adds <style> elements at run time (its toasts and
// theme switch), hence 'unsafe-inline' for styles, never for scripts. It
// never needs eval: its validation library probes for it once and works
// without. An email's HTML preview may carry inline styles but never runs
// anything.
const (
	pageCSP    = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	jobsCSP    = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	previewCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox"
)

// Deps are the back office's collaborators.
type Deps struct {
	Store   Store
	Actions Actions
	Preview Previewer
	Event   *event.Event
	// Jobs is the job console (River UI), built for the prefix /admin/jobs;
	// nil for none.
	Jobs http.Handler
	Log  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// IdleTimeout ends a session unused for that long (DefaultIdleTimeout
	// when zero); Lifetime ends it that long after login whatever happens
	// (DefaultLifetime when zero).
	IdleTimeout time.Duration
	Lifetime    time.Duration
}

// server holds the back office's templates and dependencies.
type server struct {
	Deps
	mux      *http.ServeMux
	pages    map[string]*template.Template
	css      []byte
	cssURL   string
	dummy    func() string // a password hash to verify unknown emails against
	currency string
}

// New returns the back office, serving everything under /admin. It checks
// its own sessions and roles and refuses cross-origin writes by itself.
func New(d Deps) (http.Handler, error) {
	if d.Store == nil || d.Actions == nil || d.Preview == nil || d.Event == nil {
		return nil, errors.New("admin: Store, Actions, Preview and Event are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = DefaultIdleTimeout
	}
	if d.Lifetime <= 0 {
		d.Lifetime = DefaultLifetime
	}
	css, err := fs.ReadFile(files, "assets/admin.css")
	if err != nil {
		return nil, fmt.Errorf("admin: stylesheet: %w", err)
	}
	sum := sha256.Sum256(css)
	s := &server{
		Deps:     d,
		mux:      http.NewServeMux(),
		css:      css,
		cssURL:   "/admin/assets/admin.css?v=" + hex.EncodeToString(sum[:6]),
		currency: d.Event.Currency,
	}
	s.dummy = sync.OnceValue(func() string {
		h, err := HashPassword(GeneratePassword())
		if err != nil {
			// Verifying against a malformed hash fails fast; the timing
			// then differs, but the answer stays the same.
			return ""
		}
		return h
	})
	if s.pages, err = s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, nil, http.StatusForbidden, "Request refused",
			"This form was sent from another site, so it was not carried out. Open the back office and try again.")
	}))
	// The headers wrap the refusal too: it is a page like any other.
	return s.headers(cop.Handler(s.mux)), nil
}

// routes is the back office's one route table.
func (s *server) routes() {
	m := s.mux
	m.Handle("GET /admin/assets/admin.css", s.stylesheet())
	m.Handle("GET /admin/login", s.loginPage())
	m.Handle("POST /admin/login", s.loginSubmit())
	m.Handle("POST /admin/logout", s.guard(PermRead, s.logout()))
	m.Handle("POST /admin/logout-everywhere", s.guard(PermRead, s.logoutEverywhere()))

	m.Handle("GET /admin", s.guard(PermRead, s.dashboard()))
	m.Handle("GET /admin/{$}", s.guard(PermRead, s.dashboard()))
	m.Handle("GET /admin/registrations", s.guard(PermRead, s.registrations()))
	m.Handle("GET /admin/registrations/{id}", s.guard(PermRead, s.detail()))
	m.Handle("GET /admin/registrations/{id}/emails/{n}", s.guard(PermRead, s.emailPreview()))
	m.Handle("POST /admin/registrations/{id}/retry", s.guard(PermEdit, s.retry()))
	m.Handle("POST /admin/registrations/{id}/resend", s.guard(PermEdit, s.resend()))
	m.Handle("POST /admin/registrations/{id}/edit", s.guard(PermEdit, s.edit()))
	m.Handle("POST /admin/registrations/{id}/refund", s.guard(PermRefund, s.refund()))
	m.Handle("POST /admin/registrations/{id}/cancel", s.guard(PermRefund, s.cancel()))
	m.Handle("GET /admin/registrations/{id}/export.json", s.guard(PermExportPayments, s.exportData()))
	m.Handle("POST /admin/registrations/{id}/erase", s.guard(PermErase, s.erase()))
	m.Handle("GET /admin/incidents", s.guard(PermRead, s.incidents()))
	m.Handle("GET /admin/audit", s.guard(PermRead, s.auditLog()))
	m.Handle("GET /admin/accounts", s.guard(PermAccounts, s.accounts()))
	m.Handle("GET /admin/export/registrations.csv", s.guard(PermEdit, s.exportRegistrations()))
	m.Handle("GET /admin/export/mailing-list.csv", s.guard(PermEdit, s.exportMailingList()))
	m.Handle("/admin/jobs", s.guard(PermJobs, s.jobs()))
	m.Handle("/admin/jobs/", s.guard(PermJobs, s.jobs()))
	m.Handle("/admin/jobs/api/", s.guardOr(PermJobs, s.jobs(), jobsSessionEnded))

	m.Handle("/admin", s.unknown())
	m.Handle("/admin/", s.unknown())
}

// headers sets what every back-office answer carries. Pages are never
// cached (they show personal data) and run no script; only what the job
// console itself answers may run its script (see jobs).
func (s *server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", pageCSP)
		next.ServeHTTP(w, r)
	})
}

// stylesheet serves the one stylesheet. Its address carries a hash of its
// content, so it may be cached for long.
func (s *server) stylesheet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Write(s.css)
	})
}

// jobs serves the job console to owners. Its answers, and only its own,
// carry the policy that lets its script run; the login redirect and the
// refusals before it keep the strict one.
func (s *server) jobs() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		if s.Jobs == nil {
			s.errorPage(w, r, v, http.StatusNotFound, "No job console", "The job console is not available in this process.")
			return
		}
		if r.URL.Path == "/admin/jobs" {
			http.Redirect(w, r, "/admin/jobs/", http.StatusSeeOther)
			return
		}
		w.Header().Set("Content-Security-Policy", jobsCSP)
		s.Jobs.ServeHTTP(w, r)
	}
}

// jobsSessionEnded answers the job console's script when the session has
// ended (logged out, elsewhere too, or past its lifetime) while the console
// was open: in JSON, whose message the console shows, rather than with the
// login page, which its script would take for data and so keep showing
// what it last had.
func jobsSessionEnded(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintln(w, `{"message": "Your session has ended. Reload the page to log in again."}`)
}

// unknown answers paths that do not exist (404) and methods a path does
// not take (405, with Allow), as styled pages.
func (s *server) unknown() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := s.visitor(r)
		var allow []string
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			if method == r.Method || (method == http.MethodGet && r.Method == http.MethodHead) {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = method
			if _, pattern := s.mux.Handler(probe); pattern != "/admin" && pattern != "/admin/" && pattern != "" {
				allow = append(allow, method)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.errorPage(w, r, v, http.StatusMethodNotAllowed, "Method not allowed",
				"This address does not take "+r.Method+" requests.")
			return
		}
		s.errorPage(w, r, v, http.StatusNotFound, "Page not found", "There is no page at this address.")
	})
}

// fail logs an unexpected error once and answers a page that reveals
// nothing of it.
func (s *server) fail(w http.ResponseWriter, r *http.Request, v *visitor, msg string, err error) {
	s.Log.ErrorContext(r.Context(), msg, "err", err, "path", r.URL.Path)
	s.errorPage(w, r, v, http.StatusInternalServerError, "Something went wrong",
		"The back office could not do this. Try again; if it keeps failing, the server's log says why.")
}

// detached is a context for writes that must happen even when the client
// has gone (the audit entry of an export it broke off).
func detached(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }
