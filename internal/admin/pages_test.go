package admin_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

// rowIDs returns the registration ids a list page links to, in order.
func rowIDs(body string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`<td data-label="Attendee"><a href="/admin/registrations/([a-z0-9]+)">`).FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// olderLink returns the list's "Older" link, or "".
func olderLink(body string) string {
	m := regexp.MustCompile(`<a class="button subtle" href="([^"]+)" rel="next">`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

func TestRegistrationsPagination(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		var seeds []seedReg
		for i := range 120 {
			// Two registrations share each creation time, so the cursor must
			// break ties by id.
			seeds = append(seeds, seedReg{Created: t0.Add(-time.Duration(i/2) * time.Minute)})
		}
		regs := e.seed(seeds...)
		_, ck := e.account(admin.RoleStaff)

		var got []string
		path := "/admin/registrations"
		pages := 0
		for path != "" {
			w := e.get(path, ck)
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s: %d", path, w.Code)
			}
			ids := rowIDs(w.Body.String())
			if len(ids) > 50 {
				t.Fatalf("page %d has %d rows", pages, len(ids))
			}
			got = append(got, ids...)
			path = olderLink(w.Body.String())
			pages++
		}
		if pages != 3 || len(got) != 120 {
			t.Fatalf("%d pages, %d rows; want 3 pages, 120 rows", pages, len(got))
		}
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Fatalf("%s listed twice", id)
			}
			seen[id] = true
		}
		// Newest first.
		created := map[string]time.Time{}
		for _, r := range regs {
			created[r.ID] = r.CreatedAt
		}
		for i := 1; i < len(got); i++ {
			if created[got[i]].After(created[got[i-1]]) {
				t.Fatalf("row %d is newer than row %d", i, i-1)
			}
		}
	})
}

func TestRegistrationsFilters(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		regs := e.seed(
			seedReg{First: "Grace", Last: "Hopper", Email: "grace@navy.example", Company: "US Navy", Created: t0.AddDate(0, 0, -10)},
			seedReg{First: "Ada", Last: "Lovelace", Email: "ada@engines.example", Ticket: "student", Created: t0.AddDate(0, 0, -5)},
			seedReg{First: "Alan", Last: "Turing", Email: "alan@bletchley.example", Ticket: "community", Created: t0.AddDate(0, 0, -1),
				Status: registration.StatusNeedsAttention},
		)
		grace, ada, alan := regs[0].ID, regs[1].ID, regs[2].ID
		_, ck := e.account(admin.RoleStaff)
		day := func(d int) string { return t0.AddDate(0, 0, d).Format(time.DateOnly) }
		cases := []struct {
			query string
			want  []string
		}{
			{"", []string{alan, ada, grace}},
			{"q=GRACE@navy", []string{grace}},
			{"q=hopper", []string{grace}},
			{"q=" + ada, []string{ada}},
			{"q=" + url.QueryEscape(regs[0].Payment.Reference), []string{grace}},
			{"ticket=student", []string{ada}},
			{"status=needs_attention", []string{alan}},
			{"from=" + day(-5), []string{alan, ada}},
			{"to=" + day(-5), []string{ada, grace}}, // the "to" day is included
			{"from=" + day(-6) + "&to=" + day(-2), []string{ada}},
			{"q=nobody", nil},
		}
		for _, c := range cases {
			w := e.get("/admin/registrations?"+c.query, ck)
			if w.Code != http.StatusOK {
				t.Errorf("%q: %d", c.query, w.Code)
				continue
			}
			if got := rowIDs(w.Body.String()); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("%q: %v, want %v", c.query, got, c.want)
			}
			// The export link carries exactly the filter.
			if c.query != "" {
				q, _ := url.ParseQuery(c.query)
				if !strings.Contains(w.Body.String(), `href="/admin/export/registrations.csv?`+strings.ReplaceAll(q.Encode(), "&", "&amp;")+`"`) {
					t.Errorf("%q: the export link does not carry the filter", c.query)
				}
			}
		}
	})
}

func TestRegistrationsBadFilter(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		e.seed(seedReg{})
		_, ck := e.account(admin.RoleStaff)
		cases := []struct{ query, message string }{
			{"from=2027-13-01", "Write the date as YYYY-MM-DD"},
			{"to=yesterday", "Write the date as YYYY-MM-DD"},
			{"from=2027-03-10&to=2027-03-01", "The end date is before the start date."},
			{"ticket=vip", "There is no ticket"},
			{"status=lost", "There is no status"},
			{"after=garbage", "The page link is damaged"},
			{"after=" + url.QueryEscape("2027-01-01T00:00:00Z_../../x"), "The page link is damaged"},
			{"q=" + strings.Repeat("x", 201), "The search is too long"},
		}
		for _, c := range cases {
			w := e.get("/admin/registrations?"+c.query, ck)
			if w.Code != http.StatusBadRequest {
				t.Errorf("%q: %d, want 400", c.query, w.Code)
			}
			if !strings.Contains(w.Body.String(), c.message) {
				t.Errorf("%q: the page does not say %q", c.query, c.message)
			}
			if ids := rowIDs(w.Body.String()); len(ids) != 0 {
				t.Errorf("%q: listed %v despite the bad filter", c.query, ids)
			}
			if w := e.get("/admin/export/registrations.csv?"+c.query, ck); w.Code != http.StatusBadRequest && !strings.HasPrefix(c.query, "after") {
				t.Errorf("export with %q: %d, want 400", c.query, w.Code)
			}
		}
	})
}

func TestDetail(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		regs := e.seed(seedReg{First: "Grace", Last: "Hopper", Email: "grace@navy.example", Company: "US Navy", Newsletter: true})
		id := regs[0].ID
		ctx := context.Background()
		const detail = "sendgrid: 403 Forbidden from api.sendgrid.com: the from address does not match a verified Sender Identity"
		if err := e.store.StepFailed(ctx, id, registration.StepSendConfirmation, detail, true); err != nil {
			t.Fatal(err)
		}
		if err := e.store.EmailSending(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Audit(ctx, registration.AuditEntry{At: t0, Actor: "finance@example.org", Action: "edit",
			RegistrationID: id, Detail: "company: \"\" → \"US Navy\"", Address: "192.0.2.9"}); err != nil {
			t.Fatal(err)
		}
		_, staff := e.account(admin.RoleStaff)
		_, finance := e.account(admin.RoleFinance)
		w := e.get("/admin/registrations/"+id, staff)
		if w.Code != http.StatusOK {
			t.Fatalf("detail: %d", w.Code)
		}
		body := w.Body.String()
		for _, want := range []string{
			"Grace Hopper", "grace@navy.example", "US Navy", "Standard", "149.00 EUR", "test", regs[0].Payment.Reference,
			"visa", "ending 1111", "12 St James&#39;s Square", "SW1Y 4JH London", "Consented 2027-03-15",
			"send_confirmation", "needs attention", detail[:40], // the full error, escaped
			"Your ticket for GopherFest 2027", "your registration " + id + " is confirmed.",
			`href="/admin/registrations/` + id + `/emails/0"`,
			"company: &#34;&#34; → &#34;US Navy&#34;", "192.0.2.9",
			`action="/admin/registrations/` + id + `/retry"`, `action="/admin/registrations/` + id + `/edit"`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("detail lacks %q", want)
			}
		}
		// Staff are not offered refunds or cancellation; finance is.
		for _, action := range []string{"/refund", "/cancel"} {
			if strings.Contains(body, `action="/admin/registrations/`+id+action+`"`) {
				t.Errorf("staff are offered %s", action)
			}
			if !strings.Contains(e.get("/admin/registrations/"+id, finance).Body.String(), `action="/admin/registrations/`+id+action+`"`) {
				t.Errorf("finance is not offered %s", action)
			}
		}
		// Each form carries its own one-time key, fresh on each rendering.
		keys := regexp.MustCompile(`name="key" value="([A-Za-z0-9_-]+)"`).FindAllStringSubmatch(body, -1)
		if len(keys) != 3 {
			t.Fatalf("staff's page has %d keyed forms, want 3 (retry, resend, edit)", len(keys))
		}
		again := e.get("/admin/registrations/"+id, staff).Body.String()
		if strings.Contains(again, keys[0][1]) {
			t.Error("the form keys repeat across renderings")
		}

		// The HTML preview runs nothing.
		w = e.get("/admin/registrations/"+id+"/emails/0", staff)
		if w.Code != http.StatusOK || w.Body.String() != "<p>Hello Grace</p>" {
			t.Errorf("preview: %d %q", w.Code, w.Body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || strings.Contains(csp, "script-src") {
			t.Errorf("preview CSP %q", csp)
		}
		for _, path := range []string{"/admin/registrations/" + id + "/emails/1", "/admin/registrations/nosuchid", "/admin/registrations/" + id + "/emails/x"} {
			if w := e.get(path, staff); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "admin.css") {
				t.Errorf("GET %s: %d, want the styled 404", path, w.Code)
			}
		}
	})
}

func TestActions(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		regs := e.seed(seedReg{First: "Grace", Last: "Hopper", Email: "grace@navy.example"})
		id := regs[0].ID
		ctx := context.Background()
		if err := e.store.StepFailed(ctx, id, registration.StepSaveOrder, "database is locked", true); err != nil {
			t.Fatal(err)
		}
		acct, ck := e.account(admin.RoleFinance)
		const key = "k0123456789abcdefghij"
		form := func(kv ...string) url.Values {
			v := url.Values{"key": {key}}
			for i := 0; i+1 < len(kv); i += 2 {
				v.Set(kv[i], kv[i+1])
			}
			return v
		}
		cases := []struct {
			name    string
			action  string
			form    url.Values
			actErr  error
			status  int
			want    *call  // what the actions must have been asked, when status is 303
			message string // shown on the page when status is 422
		}{
			{"retry", "retry", form(), nil, 303, &call{Action: "retry", ID: id}, ""},
			{"resend to the attendee", "resend", form(), nil, 303, &call{Action: "resend", ID: id, Key: key}, ""},
			{"resend elsewhere", "resend", form("to", "grace@hopper.example"), nil, 303, &call{Action: "resend", ID: id, To: "grace@hopper.example", Key: key}, ""},
			{"resend to a bad address", "resend", form("to", "grace at navy"), nil, 422, nil, "That is not an email address"},
			{"edit", "edit", form("first_name", " Grace ", "last_name", "Murray Hopper", "email", "grace@navy.example", "company", "Navy"), nil, 303,
				&call{Action: "edit", ID: id, Edit: registration.AttendeeEdit{FirstName: "Grace", LastName: "Murray Hopper", Email: "grace@navy.example", Company: "Navy"}}, ""},
			{"edit without a name", "edit", form("first_name", "", "last_name", "Hopper", "email", "grace@navy.example"), nil, 422, nil, "Enter the attendee&#39;s first name."},
			{"edit with a bad email", "edit", form("first_name", "Grace", "last_name", "Hopper", "email", "grace@"), nil, 422, nil, "That is not an email address"},
			{"edit refused by the actions", "edit", form("first_name", "Grace", "last_name", "Hopper", "email", "grace@navy.example"),
				&registration.Error{Code: registration.CodeValidationFailed, Message: "bad", Fields: map[string]string{"attendee.email": "That domain does not take mail."}},
				422, nil, "That domain does not take mail."},
			{"refund half", "refund", form("amount", "74.50", "reason", "left early"), nil, 303, &call{Action: "refund", ID: id, Amount: 7450, Reason: "left early", Key: key}, ""},
			{"refund in whole units", "refund", form("amount", "149"), nil, 303, &call{Action: "refund", ID: id, Amount: 14900, Key: key}, ""},
			{"refund too much", "refund", form("amount", "149.01"), nil, 422, nil, "At most 149.00 EUR is left to refund."},
			{"refund nothing", "refund", form("amount", "0"), nil, 422, nil, "The amount must be more than zero."},
			{"refund a bad amount", "refund", form("amount", "12,50"), nil, 422, nil, "Amount &#34;12,50&#34; is not a decimal number"},
			{"refund a negative amount", "refund", form("amount", "-5"), nil, 422, nil, "is negative"},
			{"refund with three decimals", "refund", form("amount", "1.005"), nil, 422, nil, "has more than 2 decimals"},
			{"refund raced past the charge", "refund", form("amount", "100"), registration.ErrRefundExceedsCharge, 422, nil, "Refunds would add up to more than was charged"},
			{"refund repeated", "refund", form("amount", "10"), registration.ErrDuplicate, 303, nil, ""},
			{"cancel without refund", "cancel", form("refund", "none", "notify", "1", "reason", "asked by email"), nil, 303,
				&call{Action: "cancel", ID: id, Key: key, Cancel: admin.Cancellation{Notify: true, Key: key, Reason: "asked by email"}}, ""},
			{"cancel with full refund", "cancel", form("refund", "full"), nil, 303,
				&call{Action: "cancel", ID: id, Key: key, Cancel: admin.Cancellation{Refund: 14900, Key: key}}, ""},
			{"cancel with part refund", "cancel", form("refund", "part", "amount", "50"), nil, 303,
				&call{Action: "cancel", ID: id, Key: key, Cancel: admin.Cancellation{Refund: 5000, Key: key}}, ""},
			{"cancel with too large a part", "cancel", form("refund", "part", "amount", "500"), nil, 422, nil, "At most 149.00 EUR is left to refund."},
			{"cancel without choosing", "cancel", form(), nil, 422, nil, "Choose whether to refund nothing, everything or a part."},
			{"cancel again", "cancel", form("refund", "none"), registration.ErrAlreadyCancelled, 303, nil, ""},
			{"no key", "retry", url.Values{}, nil, 422, nil, "The form is incomplete."},
			{"failing actions", "retry", form(), errors.New("database on fire"), 500, nil, "Something went wrong"},
		}
		for _, c := range cases {
			e.acts.fail(c.actErr)
			before := len(e.acts.Calls())
			w := e.post("/admin/registrations/"+id+"/"+c.action, ck, c.form)
			if w.Code != c.status {
				t.Errorf("%s: %d, want %d: %s", c.name, w.Code, c.status, w.Body)
				continue
			}
			calls := e.acts.Calls()[before:]
			switch c.status {
			case http.StatusSeeOther:
				if loc := w.Header().Get("Location"); loc != "/admin/registrations/"+id+"?done="+c.action {
					t.Errorf("%s: redirected to %q", c.name, loc)
				}
				if c.want != nil {
					if len(calls) != 1 {
						t.Fatalf("%s: %d calls", c.name, len(calls))
					}
					got := calls[0]
					want := *c.want
					want.Actor = admin.Actor{AccountID: acct.ID, Email: acct.Email, Role: admin.RoleFinance, Address: "192.0.2.1"}
					if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
						t.Errorf("%s: asked\n %+v\nwant\n %+v", c.name, got, want)
					}
				}
			case http.StatusUnprocessableEntity:
				if c.actErr == nil && len(calls) != 0 {
					t.Errorf("%s: invalid input reached the actions: %+v", c.name, calls)
				}
				if !strings.Contains(w.Body.String(), c.message) {
					t.Errorf("%s: the page lacks %q", c.name, c.message)
				}
				if !strings.Contains(w.Body.String(), `aria-invalid="true"`) && c.action != "retry" && c.action != "cancel" {
					t.Errorf("%s: no field is marked invalid", c.name)
				}
			default:
				if !strings.Contains(w.Body.String(), c.message) || strings.Contains(w.Body.String(), "on fire") {
					t.Errorf("%s: the error page shows %s", c.name, w.Body)
				}
			}
		}
		e.acts.fail(nil)
		// The banner after the redirect.
		if body := e.get("/admin/registrations/"+id+"?done=refund", ck).Body.String(); !strings.Contains(body, "The refund is requested.") {
			t.Error("no banner after a refund")
		}
		// An unknown registration is a 404, and nothing is asked.
		before := len(e.acts.Calls())
		if w := e.post("/admin/registrations/zzzzzzzzzz/retry", ck, form()); w.Code != http.StatusNotFound {
			t.Errorf("retry of an unknown registration: %d", w.Code)
		}
		if len(e.acts.Calls()) != before {
			t.Error("an unknown registration reached the actions")
		}
		// A body over the limit is refused.
		big := form("reason", strings.Repeat("x", 70<<10), "amount", "1")
		if w := e.post("/admin/registrations/"+id+"/refund", ck, big); w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("huge form: %d, want 413", w.Code)
		}
	})
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		e.seed(
			seedReg{Created: t0.Add(-time.Hour)},
			seedReg{Created: t0.Add(-2 * time.Hour)},
			seedReg{Ticket: "student", Created: t0.AddDate(0, 0, -3)},
			seedReg{Ticket: "community", Created: t0.AddDate(0, 0, -40), Status: registration.StatusNeedsAttention},
		)
		if err := e.store.RecordIncident(context.Background(), registration.Incident{AttemptID: "attemptx", Kind: registration.IncidentUnresolved,
			Provider: "paypal", Amount: 14900, Currency: "EUR", CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		_, ck := e.account(admin.RoleStaff)
		w := e.get("/admin", ck)
		if w.Code != http.StatusOK {
			t.Fatalf("dashboard: %d", w.Code)
		}
		body := w.Body.String()
		for _, want := range []string{
			"347.00 EUR", // gross: 2 × 149 + 49 + 0
			"<svg class=\"chart\"", "<title id=\"chart-title\">", "3 registrations in all, at most 2 on one day.",
			"<strong>2</strong> sold · 0 held · 400 seats",
			`href="/admin/registrations?status=needs_attention"><strong>1</strong> registration needs attention`,
			`href="/admin/incidents?kind=unresolved"`,
			"<td>2027-03-15</td><td class=\"num\">2</td>",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("dashboard lacks %q", want)
			}
		}
		if strings.Contains(body, "style=") || strings.Contains(body, "<script") {
			t.Error("the dashboard has inline style or script, which its policy forbids")
		}
	})
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		_, owner := e.account(admin.RoleOwner)
		const strict = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
		for _, path := range []string{"/admin", "/admin/registrations", "/admin/audit", "/admin/nowhere"} {
			w := e.get(path, owner)
			if got := w.Header().Get("Content-Security-Policy"); got != strict {
				t.Errorf("%s: CSP %q", path, got)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("%s: Cache-Control %q", path, got)
			}
		}
		w := e.get("/admin/login", "")
		if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" || !strings.Contains(w.Body.String(), `name="password"`) {
			t.Errorf("login page: %d %q", w.Code, w.Header().Get("Cache-Control"))
		}
		css := regexp.MustCompile(`href="(/admin/assets/admin\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(w.Body.String())
		if css == nil {
			t.Fatal("the login page links no stylesheet")
		}
		w = e.get(css[1], "")
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") ||
			!strings.Contains(w.Header().Get("Cache-Control"), "max-age=31536000") || !strings.Contains(w.Body.String(), ":focus-visible") {
			t.Errorf("stylesheet: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"))
		}
		w = e.get("/admin/jobs/", owner)
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("job console CSP %q", csp)
		}
		if w := e.get("/admin/jobs", owner); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin/jobs/" {
			t.Errorf("/admin/jobs: %d %q", w.Code, w.Header().Get("Location"))
		}
	})
}

func TestErrorPages(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		_, ck := e.account(admin.RoleStaff)
		cases := []struct {
			method, path string
			want         int
			allow        string
		}{
			{"GET", "/admin/nowhere", http.StatusNotFound, ""},
			{"GET", "/admin/registrations/abc/nowhere", http.StatusNotFound, ""},
			{"DELETE", "/admin/registrations", http.StatusMethodNotAllowed, "GET"},
			{"POST", "/admin/audit", http.StatusMethodNotAllowed, "GET"},
			{"GET", "/admin/logout", http.StatusMethodNotAllowed, "POST"},
			{"PUT", "/admin/login", http.StatusMethodNotAllowed, "GET, POST"},
		}
		for _, c := range cases {
			var form url.Values
			if c.method != "GET" {
				form = url.Values{}
			}
			w := e.do(req{method: c.method, path: c.path, cookie: ck, form: form})
			if w.Code != c.want || w.Header().Get("Allow") != c.allow {
				t.Errorf("%s %s: %d Allow %q, want %d %q", c.method, c.path, w.Code, w.Header().Get("Allow"), c.want, c.allow)
			}
			if !strings.Contains(w.Body.String(), "admin.css") || !strings.Contains(w.Body.String(), fmt.Sprint(c.want)) {
				t.Errorf("%s %s: not the styled error page", c.method, c.path)
			}
		}
	})
}

func TestAuditAndIncidentPages(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		ctx := context.Background()
		for i := range 60 {
			if err := e.store.Audit(ctx, registration.AuditEntry{At: t0.Add(time.Duration(i) * time.Second), Actor: "finance@example.org",
				Action: []string{"refund", "export"}[i%2], Detail: fmt.Sprintf("entry %02d", i), Address: "192.0.2.3"}); err != nil {
				t.Fatal(err)
			}
		}
		for i, k := range []registration.IncidentKind{registration.IncidentRefunded, registration.IncidentUnresolved} {
			if err := e.store.RecordIncident(ctx, registration.Incident{AttemptID: fmt.Sprintf("attempt%d", i), Kind: k, Provider: "paypal",
				Reference: fmt.Sprintf("CAP-%d", i), Amount: 4900, Currency: "EUR", Detail: "detail " + string(k), CreatedAt: t0}); err != nil {
				t.Fatal(err)
			}
		}
		_, ck := e.account(admin.RoleStaff)
		w := e.get("/admin/audit?action=refund", ck)
		body := w.Body.String()
		if w.Code != http.StatusOK || !strings.Contains(body, "entry 58") || strings.Contains(body, "entry 59") {
			t.Errorf("audit filtered by action: %d", w.Code)
		}
		w = e.get("/admin/audit", ck)
		if !strings.Contains(w.Body.String(), "entry 59") || strings.Contains(w.Body.String(), "entry 09") {
			t.Error("the audit log's first page is not the newest 50")
		}
		older := olderLink(w.Body.String())
		if older == "" {
			t.Fatal("no older link on the audit log")
		}
		if body := e.get(older, ck).Body.String(); !strings.Contains(body, "entry 09") || strings.Contains(body, "entry 10") {
			t.Error("the audit log's second page is wrong")
		}
		for _, q := range []string{"action=DROP%20TABLE", "registration=../x", "before=-1"} {
			if w := e.get("/admin/audit?"+q, ck); w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "entry ") {
				t.Errorf("audit %s: %d", q, w.Code)
			}
		}
		w = e.get("/admin/incidents?kind=unresolved", ck)
		if body := w.Body.String(); w.Code != http.StatusOK || !strings.Contains(body, "CAP-1") || strings.Contains(body, "CAP-0") {
			t.Errorf("incidents by kind: %d", w.Code)
		}
		if body := e.get("/admin/incidents", ck).Body.String(); !strings.Contains(body, "CAP-0") || !strings.Contains(body, "CAP-1") {
			t.Error("incidents: not all listed")
		}
		if w := e.get("/admin/incidents?kind=stolen", ck); w.Code != http.StatusBadRequest {
			t.Errorf("bad incident kind: %d", w.Code)
		}
	})
}

func TestAccountsPage(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		_, owner := e.account(admin.RoleOwner)
		e.account(admin.RoleStaff)
		body := e.get("/admin/accounts", owner).Body.String()
		for _, want := range []string{"owner@example.org", "staff@example.org", "2027-03-15 10:00 UTC"} {
			if !strings.Contains(body, want) {
				t.Errorf("accounts page lacks %q", want)
			}
		}
		if strings.Contains(body, "PasswordHash") || strings.Contains(body, "$argon2") {
			t.Error("accounts page shows password hashes")
		}
	})
}

// TestConcurrentRefunds posts two refunds (different forms, so different
// keys) of one registration at once, through the real actions, whose sum
// exceeds the charge: exactly one is accepted, the other answered 422, and
// only the accepted one is recorded, audited and queued.
func TestConcurrentRefunds(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		pipe := e.office()
		ctx := context.Background()
		regs := e.seed(seedReg{}, seedReg{}, seedReg{}, seedReg{}) // 149.00 EUR each
		_, finance := e.account(admin.RoleFinance)
		_, owner := e.account(admin.RoleOwner)
		for n, reg := range regs {
			keys := []string{fmt.Sprintf("race-%d-finance-0123456789", n), fmt.Sprintf("race-%d-owner-0123456789", n)}
			cookies := []string{finance, owner}
			answers := make([]*httptest.ResponseRecorder, len(keys))
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range keys {
				wg.Go(func() {
					<-start
					answers[i] = e.post("/admin/registrations/"+reg.ID+"/refund", cookies[i],
						url.Values{"key": {keys[i]}, "amount": {"100.00"}, "reason": {"race"}})
				})
			}
			close(start)
			wg.Wait()
			var accepted []string
			for i, w := range answers {
				switch w.Code {
				case http.StatusSeeOther:
					if loc := w.Header().Get("Location"); loc != "/admin/registrations/"+reg.ID+"?done=refund" {
						t.Errorf("registration %d: accepted refund redirected to %q", n, loc)
					}
					accepted = append(accepted, keys[i])
				case http.StatusUnprocessableEntity:
					body := w.Body.String()
					// Refused by the store's reservation, or, when the other
					// was recorded before this form was read, by the form's
					// own check of what is left.
					if !strings.Contains(body, "Refunds would add up to more than the 149.00 EUR charged") &&
						!strings.Contains(body, "At most 49.00 EUR is left to refund.") {
						t.Errorf("registration %d: the refusal does not say why: %s", n, body)
					}
					if !strings.Contains(body, `aria-invalid="true"`) {
						t.Errorf("registration %d: the refusal marks no field invalid", n)
					}
				default:
					t.Errorf("registration %d: refund %s answered %d: %s", n, keys[i], w.Code, w.Body)
				}
			}
			if len(accepted) != 1 {
				t.Fatalf("registration %d: %d of 2 concurrent refunds accepted (%d, %d), want exactly 1", n, len(accepted),
					answers[0].Code, answers[1].Code)
			}
			refunds, err := e.store.Refunds(ctx, reg.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(refunds) != 1 || refunds[0].ID != accepted[0] || refunds[0].Amount != 10000 ||
				refunds[0].State != registration.RefundRequested || refunds[0].Reason != "race" {
				t.Errorf("registration %d: refunds %+v, want only %s of 100.00 requested", n, refunds, accepted[0])
			}
			if got := e.audit(admin.AuditFilter{RegistrationID: reg.ID, Action: "refund"}); len(got) != 1 {
				t.Errorf("registration %d: %d refund audit entries, want 1: %+v", n, len(got), got)
			}
			// The refused one reserved nothing: what is left can still be
			// refunded, and not a cent more.
			w := e.post("/admin/registrations/"+reg.ID+"/refund", finance,
				url.Values{"key": {fmt.Sprintf("race-%d-rest-0123456789", n)}, "amount": {"49.01"}})
			if w.Code != http.StatusUnprocessableEntity {
				t.Errorf("registration %d: a refund past the charge after the race: %d", n, w.Code)
			}
			w = e.post("/admin/registrations/"+reg.ID+"/refund", finance,
				url.Values{"key": {fmt.Sprintf("race-%d-rest-0123456789", n)}, "amount": {"49.00"}})
			if w.Code != http.StatusSeeOther {
				t.Errorf("registration %d: the rest of the charge after the race: %d: %s", n, w.Code, w.Body)
			}
		}
		jobs, err := pipe.Client().JobList(ctx, river.NewJobListParams().Kinds(pipeline.KindRefund).First(100))
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs.Jobs) != 2*len(regs) {
			t.Errorf("%d refund jobs queued, want %d (one per accepted refund)", len(jobs.Jobs), 2*len(regs))
		}
	})
}
