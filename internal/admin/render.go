package admin

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// page is what the layout of every page needs.
type page struct {
	Title   string
	Section string // the navigation entry to mark as current
	CSS     string
	Event   *event.Event
	Visitor *visitor
	Flash   string
	Data    any
}

// errorView is a styled error page.
type errorView struct {
	Status  int
	Heading string
	Message string
}

// sections maps a page to its navigation entry.
var sections = map[string]string{
	"dashboard": "dashboard", "registrations": "registrations", "detail": "registrations",
	"incidents": "incidents", "audit": "audit", "accounts": "accounts",
}

func (s *server) parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"money":      s.money,
		"when":       when,
		"day":        func(t time.Time) string { return t.UTC().Format("2006-01-02") },
		"ticketName": s.ticketName,
		"statusText": statusText,
		"kindText":   kindText,
		"can":        func(v *visitor, p string) bool { return v.Can(permissions[p]) },
		"initial":    initial,
		"field":      inputField,
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("admin: layout template: %w", err)
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		if path.Base(name) == "layout.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(files, name)
		if err != nil {
			return nil, fmt.Errorf("admin: template %s: %w", name, err)
		}
		pages[strings.TrimSuffix(path.Base(name), ".html")] = t
	}
	return pages, nil
}

// permissions names the permissions for templates.
var permissions = map[string]Permission{
	"read": PermRead, "edit": PermEdit, "refund": PermRefund, "exportPayments": PermExportPayments,
	"accounts": PermAccounts, "jobs": PermJobs, "erase": PermErase,
}

// render writes page name with status. It renders into a buffer first, so
// a template error becomes a clean 500.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, v *visitor, title string, data any) {
	t, ok := s.pages[name]
	if !ok {
		s.fail(w, r, v, "render", fmt.Errorf("no template %q", name))
		return
	}
	p := page{Title: title, Section: sections[name], CSS: s.cssURL, Event: s.Event, Visitor: v, Data: data,
		Flash: flashes[r.URL.Query().Get("done")]}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "page", p); err != nil {
		s.Log.ErrorContext(r.Context(), "render page", "err", err, "page", name)
		if name != "error" {
			s.errorPage(w, r, v, http.StatusInternalServerError, "Something went wrong", "This page could not be shown.")
			return
		}
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (s *server) errorPage(w http.ResponseWriter, r *http.Request, v *visitor, status int, heading, msg string) {
	s.render(w, r, status, "error", v, heading, errorView{Status: status, Heading: heading, Message: msg})
}

// flashes are the banners shown after an action redirected back.
var flashes = map[string]string{
	"retry":  "The failed steps run again. Reload in a moment to see how they went.",
	"resend": "The confirmation is queued to be sent again.",
	"edit":   "The attendee's details are saved.",
	"refund": "The refund is requested. Its outcome appears below once the payment provider answers.",
	"cancel": "The registration is cancelled; its seat is on sale again.",
	"erase":  "The attendee's personal data is erased. The amount, payment reference, ticket and dates are kept for the accounts.",
}

// parseForm reads a form body of at most maxFormBytes; it answers the
// request itself and returns false when it cannot.
func (s *server) parseForm(w http.ResponseWriter, r *http.Request, v *visitor) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.errorPage(w, r, v, http.StatusRequestEntityTooLarge, "Too much data", "The form sent more than the back office accepts.")
			return false
		}
		s.errorPage(w, r, v, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return false
	}
	return true
}

// money formats minor units in the event's currency for people, with
// thousands grouped: "35,123.00 EUR".
func (s *server) money(minor int64) string {
	return groupThousands(event.FormatAmount(minor, s.currency)) + " " + s.currency
}

// groupThousands puts a comma between each three digits of the whole part
// of a decimal string.
func groupThousands(amount string) string {
	sign := ""
	if strings.HasPrefix(amount, "-") {
		sign, amount = "-", amount[1:]
	}
	whole, frac, hasFrac := strings.Cut(amount, ".")
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		return sign + b.String() + "." + frac
	}
	return sign + b.String()
}

func (s *server) ticketName(id string) string {
	if t, ok := s.Event.Ticket(id); ok {
		return t.Name
	}
	return id
}

// when formats a time for organisers, in UTC; "—" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func statusText(st registration.Status) string {
	switch st {
	case registration.StatusNeedsAttention:
		return "needs attention"
	case "":
		return "—"
	}
	return string(st)
}

func kindText(k registration.IncidentKind) string {
	switch k {
	case registration.IncidentRefunded:
		return "refunded automatically"
	case registration.IncidentRefundFailed:
		return "refund failed"
	case registration.IncidentResolvedCharged:
		return "resolved: charged"
	case registration.IncidentResolvedNotCharged:
		return "resolved: not charged"
	case registration.IncidentUnresolved:
		return "unresolved"
	}
	return string(k)
}

// query builds a query string from pairs, leaving out empty values.
func query(pairs ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// initial is the first letter of s, upper-cased, for an avatar.
func initial(s string) string {
	for _, c := range s {
		return strings.ToUpper(string(c))
	}
	return "?"
}
