package admin

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// pageSize is how many rows a list shows at once.
const pageSize = 50

// chartDays is how many days the dashboard's chart covers.
const chartDays = 30

// Statuses lists the registration statuses in the order filters offer them.
var statuses = []registration.Status{
	registration.StatusPaid, registration.StatusProcessing, registration.StatusCompleted,
	registration.StatusNeedsAttention, registration.StatusCancelled,
}

// incidentKinds lists the payment incident kinds, those needing a person first.
var incidentKinds = []registration.IncidentKind{
	registration.IncidentRefundFailed, registration.IncidentUnresolved, registration.IncidentRefunded,
	registration.IncidentResolvedCharged, registration.IncidentResolvedNotCharged,
}

// stepStatuses are the step states the dashboard counts.
var stepStatuses = []registration.StepStatus{
	registration.StepPending, registration.StepRunning, registration.StepRetrying, registration.StepFailed,
}

type dashboardView struct {
	Tickets              []ticketRow
	Gross, Refunded, Net int64
	Chart                chart
	Steps                []stepCount
	NeedsAttention       int64
	Cancelled            int64
	Incidents            []incidentCount
	RefundsFailed        int64
	RefundsOpen          int64
}

type ticketRow struct {
	Name                       string
	Sold, Held, Capacity, Free int64
	// SoldWidth and HeldWidth are the bar's parts, out of 100.
	SoldWidth, HeldWidth, HeldX string
}

type stepCount struct {
	Status registration.StepStatus
	Count  int64
}

type incidentCount struct {
	Kind  registration.IncidentKind
	Count int64
	Alert bool // a person must act
}

func (s *server) dashboard() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		now := s.Now().UTC()
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		since := today.AddDate(0, 0, -(chartDays - 1))
		d, err := s.Store.Dashboard(r.Context(), s.Event.ID, since)
		if err != nil {
			s.fail(w, r, v, "dashboard", err)
			return
		}
		dv := dashboardView{Gross: d.Gross, Refunded: d.Refunded, Net: d.Gross - d.Refunded,
			Chart: newChart(since, chartDays, d.PerDay), NeedsAttention: d.NeedsAttention, Cancelled: d.Cancelled,
			RefundsFailed: d.RefundsFailed, RefundsOpen: d.RefundsOpen}
		stats := map[string]TicketStats{}
		for _, t := range d.Tickets {
			stats[t.TicketID] = t
		}
		for _, t := range s.Event.Tickets {
			st, ok := stats[t.ID]
			if !ok {
				st = TicketStats{TicketID: t.ID, Capacity: int64(t.Capacity)}
			}
			dv.Tickets = append(dv.Tickets, newTicketRow(t.Name, st))
		}
		for _, st := range stepStatuses {
			dv.Steps = append(dv.Steps, stepCount{Status: st, Count: d.Steps[st]})
		}
		for _, k := range incidentKinds {
			dv.Incidents = append(dv.Incidents, incidentCount{Kind: k, Count: d.Incidents[k],
				Alert: (k == registration.IncidentRefundFailed || k == registration.IncidentUnresolved) && d.Incidents[k] > 0})
		}
		s.render(w, r, http.StatusOK, "dashboard", v, "Dashboard", dv)
	}
}

func newTicketRow(name string, st TicketStats) ticketRow {
	row := ticketRow{Name: name, Sold: st.Sold, Held: st.Held, Capacity: st.Capacity,
		Free: max(st.Capacity-st.Sold-st.Held, 0)}
	sold, held := 0.0, 0.0
	if st.Capacity > 0 {
		sold = min(100, 100*float64(st.Sold)/float64(st.Capacity))
		held = min(100-sold, 100*float64(st.Held)/float64(st.Capacity))
	}
	row.SoldWidth = svgNum(sold)
	row.HeldWidth = svgNum(held)
	row.HeldX = svgNum(sold)
	return row
}

// chart is the dashboard's bar chart of registrations per day, drawn as
// inline SVG by the template.
type chart struct {
	Bars  []bar
	Max   int64
	Total int64
	Ticks []tick // day labels under the bars
	Label string // what the chart shows, in words
}

type bar struct {
	Day        time.Time
	Count      int64
	X, Y, W, H string
}

type tick struct {
	X, Text string
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 600
	chartTop    = 16
	chartBottom = 150
)

func newChart(since time.Time, days int, perDay []DayCount) chart {
	counts := map[string]int64{}
	for _, d := range perDay {
		counts[d.Day.UTC().Format(time.DateOnly)] += d.Count
	}
	c := chart{}
	for i := range days {
		day := since.AddDate(0, 0, i)
		n := counts[day.Format(time.DateOnly)]
		c.Total += n
		c.Max = max(c.Max, n)
		c.Bars = append(c.Bars, bar{Day: day, Count: n})
	}
	slot := float64(chartWidth) / float64(days)
	for i := range c.Bars {
		b := &c.Bars[i]
		h := 0.0
		if c.Max > 0 {
			h = float64(chartBottom-chartTop) * float64(b.Count) / float64(c.Max)
		}
		if b.Count > 0 && h < 2 {
			h = 2
		}
		b.X = svgNum(float64(i)*slot + slot*0.15)
		b.W = svgNum(slot * 0.7)
		b.H = svgNum(h)
		b.Y = svgNum(chartBottom - h)
		if i%7 == 0 || (i == days-1 && i%7 >= 4) {
			c.Ticks = append(c.Ticks, tick{X: svgNum(float64(i)*slot + slot/2), Text: b.Day.Format("Jan 2")})
		}
	}
	c.Label = "Registrations per day from " + since.Format("2 January") + " to " +
		since.AddDate(0, 0, days-1).Format("2 January 2006") + ": " + plural(int(c.Total), "registration") +
		" in all, at most " + strconv.FormatInt(c.Max, 10) + " on one day."
	return c
}

func svgNum(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// listView is the registrations list.
type listView struct {
	Q, Ticket, Status, From, To string
	Errors                      map[string]string
	Rows                        []registration.Registration
	Older, Newest, Export       string
	Paged                       bool
	Tickets                     []event.Ticket
	Statuses                    []registration.Status
}

func (s *server) registrations() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		q := r.URL.Query()
		lv := listView{Q: q.Get("q"), Ticket: q.Get("ticket"), Status: q.Get("status"), From: q.Get("from"),
			To: q.Get("to"), Tickets: s.Event.Tickets, Statuses: statuses}
		f, errs := s.parseFilter(q, true)
		if len(errs) > 0 {
			lv.Errors = errs
			s.render(w, r, http.StatusBadRequest, "registrations", v, "Registrations", lv)
			return
		}
		f.Limit = pageSize + 1
		rows, err := s.Store.SearchRegistrations(r.Context(), f)
		if err != nil {
			s.fail(w, r, v, "search registrations", err)
			return
		}
		filter := []string{"q", strings.TrimSpace(lv.Q), "ticket", lv.Ticket, "status", lv.Status, "from", lv.From, "to", lv.To}
		if len(rows) > pageSize {
			rows = rows[:pageSize]
			last := rows[len(rows)-1]
			lv.Older = "/admin/registrations" + query(append(filter, "after", encodeCursor(Cursor{CreatedAt: last.CreatedAt, ID: last.ID}))...)
		}
		lv.Rows = rows
		lv.Paged = !f.After.IsZero()
		lv.Newest = "/admin/registrations" + query(filter...)
		lv.Export = "/admin/export/registrations.csv" + query(filter...)
		s.render(w, r, http.StatusOK, "registrations", v, "Registrations", lv)
	}
}

// parseFilter reads the list's filter from a query; errs names each bad
// parameter. withCursor also reads the page cursor.
func (s *server) parseFilter(q url.Values, withCursor bool) (Filter, map[string]string) {
	errs := map[string]string{}
	f := Filter{Query: strings.TrimSpace(q.Get("q"))}
	if len(f.Query) > 200 {
		errs["q"] = "The search is too long: use at most 200 characters."
	}
	if t := q.Get("ticket"); t != "" {
		if _, ok := s.Event.Ticket(t); !ok {
			errs["ticket"] = "There is no ticket " + strconv.Quote(t) + "."
		}
		f.Ticket = t
	}
	if st := registration.Status(q.Get("status")); st != "" {
		if !slices.Contains(statuses, st) {
			errs["status"] = "There is no status " + strconv.Quote(string(st)) + "."
		}
		f.Status = st
	}
	var err error
	if from := q.Get("from"); from != "" {
		if f.From, err = time.Parse(time.DateOnly, from); err != nil {
			errs["from"] = "Write the date as YYYY-MM-DD, for example 2027-01-31."
		}
	}
	if to := q.Get("to"); to != "" {
		var t time.Time
		if t, err = time.Parse(time.DateOnly, to); err != nil {
			errs["to"] = "Write the date as YYYY-MM-DD, for example 2027-01-31."
		} else {
			f.To = t.AddDate(0, 0, 1) // the whole "to" day is included
		}
	}
	if errs["from"] == "" && errs["to"] == "" && !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		errs["to"] = "The end date is before the start date."
	}
	if after := q.Get("after"); withCursor && after != "" {
		c, ok := decodeCursor(after)
		if !ok {
			errs["after"] = "The page link is damaged. Start again from the newest registrations."
		}
		f.After = c
	}
	return f, errs
}

// encodeCursor writes a list position as created_at (RFC 3339, with
// nanoseconds) and id.
func encodeCursor(c Cursor) string {
	return c.CreatedAt.UTC().Format(time.RFC3339Nano) + "_" + c.ID
}

func decodeCursor(s string) (Cursor, bool) {
	ts, id, ok := strings.Cut(s, "_")
	if !ok || !validID(id) {
		return Cursor{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return Cursor{}, false
	}
	return Cursor{CreatedAt: t, ID: id}, true
}

// validID reports whether s could be a registration id: short, and of
// letters, digits, '-' and '_' only.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// incidentsView is the payment incidents list.
type incidentsView struct {
	Kind  string
	Kinds []registration.IncidentKind
	Error string
	Rows  []registration.Incident
	Older string
	Paged bool
}

func (s *server) incidents() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		q := r.URL.Query()
		iv := incidentsView{Kind: q.Get("kind"), Kinds: incidentKinds}
		f := IncidentFilter{Limit: pageSize + 1}
		if k := registration.IncidentKind(iv.Kind); k != "" {
			if !slices.Contains(incidentKinds, k) {
				iv.Error = "There is no incident kind " + strconv.Quote(iv.Kind) + "."
			}
			f.Kinds = []registration.IncidentKind{k}
		}
		if b := q.Get("before"); b != "" {
			n, err := strconv.ParseInt(b, 10, 64)
			if err != nil || n <= 0 {
				iv.Error = "The page link is damaged. Start again from the newest incidents."
			}
			f.Before = n
		}
		if iv.Error != "" {
			s.render(w, r, http.StatusBadRequest, "incidents", v, "Payment incidents", iv)
			return
		}
		rows, err := s.Store.PaymentIncidents(r.Context(), f)
		if err != nil {
			s.fail(w, r, v, "payment incidents", err)
			return
		}
		if len(rows) > pageSize {
			rows = rows[:pageSize]
			iv.Older = "/admin/incidents" + query("kind", iv.Kind, "before", strconv.FormatInt(rows[len(rows)-1].ID, 10))
		}
		iv.Rows = rows
		iv.Paged = f.Before > 0
		s.render(w, r, http.StatusOK, "incidents", v, "Payment incidents", iv)
	}
}

// auditView is the audit log.
type auditView struct {
	Actor, Action, Registration string
	Errors                      map[string]string
	Rows                        []registration.AuditEntry
	Older                       string
	Paged                       bool
}

func (s *server) auditLog() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		q := r.URL.Query()
		av := auditView{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")),
			Registration: strings.TrimSpace(q.Get("registration")), Errors: map[string]string{}}
		f := AuditFilter{Actor: strings.ToLower(av.Actor), Action: av.Action, RegistrationID: av.Registration, Limit: pageSize + 1}
		if len(av.Actor) > 254 {
			av.Errors["actor"] = "That is longer than any email address."
		}
		if !validAction(av.Action) {
			av.Errors["action"] = "An action is one word of letters and underscores, like refund or login_failed."
		}
		if av.Registration != "" && !validID(av.Registration) {
			av.Errors["registration"] = "That is not a registration id."
		}
		if b := q.Get("before"); b != "" {
			n, err := strconv.ParseInt(b, 10, 64)
			if err != nil || n <= 0 {
				av.Errors["before"] = "The page link is damaged. Start again from the newest entries."
			}
			f.Before = n
		}
		if len(av.Errors) > 0 {
			s.render(w, r, http.StatusBadRequest, "audit", v, "Audit log", av)
			return
		}
		rows, err := s.Store.AuditLog(r.Context(), f)
		if err != nil {
			s.fail(w, r, v, "audit log", err)
			return
		}
		if len(rows) > pageSize {
			rows = rows[:pageSize]
			av.Older = "/admin/audit" + query("actor", av.Actor, "action", av.Action, "registration", av.Registration,
				"before", strconv.FormatInt(rows[len(rows)-1].ID, 10))
		}
		av.Rows = rows
		av.Paged = f.Before > 0
		s.render(w, r, http.StatusOK, "audit", v, "Audit log", av)
	}
}

func validAction(a string) bool {
	if len(a) > 64 {
		return false
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

func (s *server) accounts() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		accts, err := s.Store.Accounts(r.Context())
		if err != nil {
			s.fail(w, r, v, "accounts", err)
			return
		}
		s.render(w, r, http.StatusOK, "accounts", v, "Accounts", accts)
	}
}

// emailPreview serves the HTML part of an email as it was sent, under a
// policy that runs nothing and submits nothing.
func (s *server) emailPreview() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		ctx := r.Context()
		id := r.PathValue("id")
		n, err := strconv.Atoi(r.PathValue("n"))
		if !validID(id) || err != nil || n < 0 {
			s.errorPage(w, r, v, http.StatusNotFound, "Email not found", "There is no such email.")
			return
		}
		reg, err := s.Store.Registration(ctx, id)
		if errors.Is(err, registration.ErrNotFound) {
			s.errorPage(w, r, v, http.StatusNotFound, "Registration not found", "There is no registration with this id.")
			return
		}
		if err != nil {
			s.fail(w, r, v, "read registration", err)
			return
		}
		msgs, err := s.Store.Messages(ctx, id)
		if err != nil {
			s.fail(w, r, v, "read messages", err)
			return
		}
		if n >= len(msgs) {
			s.errorPage(w, r, v, http.StatusNotFound, "Email not found", "This registration has no such email.")
			return
		}
		m, err := s.Preview.Preview(ctx, reg, msgs[n])
		if err != nil {
			s.fail(w, r, v, "preview email", err)
			return
		}
		w.Header().Set("Content-Security-Policy", previewCSP)
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(m.HTML))
	}
}
