package admin_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/admin"
)

// TestRoles checks every route for every role, and without a session: a
// lower role gets the styled 403 page, and nothing is carried out.
func TestRoles(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		regs := e.seed(seedReg{})
		id := regs[0].ID
		if err := e.store.EmailSending(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		cookies := map[admin.Role]string{}
		for _, role := range admin.Roles {
			_, cookies[role] = e.account(role)
		}
		key := url.Values{"key": {"k0123456789abcdefghij"}}
		form := func(extra ...string) url.Values {
			v := url.Values{"key": key["key"]}
			for i := 0; i+1 < len(extra); i += 2 {
				v.Set(extra[i], extra[i+1])
			}
			return v
		}
		const (
			ok   = http.StatusOK
			done = http.StatusSeeOther
			no   = http.StatusForbidden
		)
		routes := []struct {
			method, path string
			form         url.Values
			// want is the status for owner, finance and staff.
			owner, finance, staff int
		}{
			{"GET", "/admin", nil, ok, ok, ok},
			{"GET", "/admin/", nil, ok, ok, ok},
			{"GET", "/admin/registrations", nil, ok, ok, ok},
			{"GET", "/admin/registrations/" + id, nil, ok, ok, ok},
			{"GET", "/admin/registrations/" + id + "/emails/0", nil, ok, ok, ok},
			{"GET", "/admin/incidents", nil, ok, ok, ok},
			{"GET", "/admin/audit", nil, ok, ok, ok},
			{"GET", "/admin/accounts", nil, ok, no, no},
			{"GET", "/admin/export/registrations.csv", nil, ok, ok, ok},
			{"GET", "/admin/export/mailing-list.csv", nil, ok, ok, ok},
			{"GET", "/admin/jobs/", nil, ok, no, no},
			{"GET", "/admin/jobs/api/jobs?state=running", nil, ok, no, no},
			{"POST", "/admin/jobs/api/jobs/retry", url.Values{}, ok, no, no},
			{"POST", "/admin/registrations/" + id + "/retry", form(), done, done, done},
			{"POST", "/admin/registrations/" + id + "/resend", form(), done, done, done},
			{"POST", "/admin/registrations/" + id + "/edit", form("first_name", "Ada", "last_name", "King", "email", "ada@example.org"), done, done, done},
			{"POST", "/admin/registrations/" + id + "/refund", form("amount", "1.00"), done, done, no},
			{"POST", "/admin/registrations/" + id + "/cancel", form("refund", "none"), done, done, no},
			{"GET", "/admin/registrations/" + id + "/export.json", nil, ok, ok, no},
			{"POST", "/admin/registrations/" + id + "/erase", form("confirm", "yes"), done, no, no},
		}
		for _, rt := range routes {
			for _, role := range admin.Roles {
				want := map[admin.Role]int{admin.RoleOwner: rt.owner, admin.RoleFinance: rt.finance, admin.RoleStaff: rt.staff}[role]
				calls, jobs := len(e.acts.Calls()), *e.jobs
				w := e.do(req{method: rt.method, path: rt.path, cookie: cookies[role], form: rt.form})
				if w.Code != want {
					t.Errorf("%s %s as %s: %d, want %d", rt.method, rt.path, role, w.Code, want)
					continue
				}
				if want == no {
					if !strings.Contains(w.Body.String(), "Not allowed") || !strings.Contains(w.Body.String(), "admin.css") {
						t.Errorf("%s %s as %s: 403 is not the styled page", rt.method, rt.path, role)
					}
					if len(e.acts.Calls()) != calls || *e.jobs != jobs {
						t.Errorf("%s %s as %s: refused, yet carried out", rt.method, rt.path, role)
					}
				}
			}
			// Without a session: pages send to the login, writes are refused;
			// the job console's API refuses both, in JSON its script shows.
			calls := len(e.acts.Calls())
			w := e.do(req{method: rt.method, path: rt.path, form: rt.form})
			switch {
			case strings.HasPrefix(rt.path, "/admin/jobs/api/"):
				if w.Code != http.StatusForbidden || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") ||
					!strings.Contains(w.Body.String(), `"message": "Your session has ended`) {
					t.Errorf("%s %s without a session: %d %q %q, want a 403 in JSON", rt.method, rt.path, w.Code, w.Header().Get("Content-Type"), w.Body.String())
				}
			case rt.method == "GET":
				if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/admin/login?next=") {
					t.Errorf("%s %s without a session: %d to %q", rt.method, rt.path, w.Code, w.Header().Get("Location"))
				}
			default:
				if w.Code != http.StatusForbidden {
					t.Errorf("%s %s without a session: %d, want 403", rt.method, rt.path, w.Code)
				}
			}
			if len(e.acts.Calls()) != calls {
				t.Errorf("%s %s without a session was carried out", rt.method, rt.path)
			}
		}
		// A made-up session is no session.
		if w := e.get("/admin", "forged-token"); w.Code != http.StatusSeeOther {
			t.Errorf("forged cookie: %d", w.Code)
		}
	})
}

// TestNavigation checks that each role sees only the entries it may use.
func TestNavigation(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		for _, role := range admin.Roles {
			_, ck := e.account(role)
			body := e.get("/admin", ck).Body.String()
			for link, want := range map[string]bool{
				`href="/admin/registrations"`: true, `href="/admin/audit"`: true,
				`href="/admin/jobs/"`: role == admin.RoleOwner, `href="/admin/accounts"`: role == admin.RoleOwner,
			} {
				if strings.Contains(body, link) != want {
					t.Errorf("%s: link %s shown %v, want %v", role, link, !want, want)
				}
			}
		}
	})
}
