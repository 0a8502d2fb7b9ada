package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/admin"
)

// TestJobConsoleGate checks what stands before the job console: only an
// owner reaches it, only its own answers carry the policy that lets its
// script run, and its script's writes pass from the same origin only.
func TestJobConsoleGate(t *testing.T) {
	t.Parallel()
	const strict = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		_, owner := e.account(admin.RoleOwner)
		_, staff := e.account(admin.RoleStaff)
		hdr := func(kv ...string) http.Header {
			h := http.Header{}
			for i := 0; i+1 < len(kv); i += 2 {
				h.Set(kv[i], kv[i+1])
			}
			return h
		}
		cases := []struct {
			name         string
			method, path string
			cookie       string
			header       http.Header
			want         int
			reaches      bool // the console's handler runs
			consoleCSP   bool // the answer carries the console's policy, else the strict one
		}{
			{"owner opens the console", "GET", "/admin/jobs/", owner, nil, http.StatusOK, true, true},
			{"owner reads its API", "GET", "/admin/jobs/api/jobs?state=running", owner, hdr("Accept", "application/json"), http.StatusOK, true, true},
			{"staff is refused the console", "GET", "/admin/jobs/", staff, nil, http.StatusForbidden, false, false},
			{"staff is refused its API", "GET", "/admin/jobs/api/states", staff, nil, http.StatusForbidden, false, false},
			{"no session goes to the login", "GET", "/admin/jobs/jobs/7", "", nil, http.StatusSeeOther, false, false},
			{"no session: API refused", "GET", "/admin/jobs/api/states", "", nil, http.StatusForbidden, false, false},
			{"same-origin retry", "POST", "/admin/jobs/api/jobs/retry", owner, hdr("Sec-Fetch-Site", "same-origin", "Origin", "http://example.com"), http.StatusOK, true, true},
			{"same-origin pause (PUT)", "PUT", "/admin/jobs/api/queues/default/pause", owner, hdr("Sec-Fetch-Site", "same-origin"), http.StatusOK, true, true},
			{"same-origin PATCH", "PATCH", "/admin/jobs/api/queues/default", owner, hdr("Sec-Fetch-Site", "same-origin"), http.StatusOK, true, true},
			{"matching Origin, no Sec-Fetch-Site", "POST", "/admin/jobs/api/jobs/cancel", owner, hdr("Origin", "http://example.com"), http.StatusOK, true, true},
			{"cross-site retry", "POST", "/admin/jobs/api/jobs/retry", owner, hdr("Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"), http.StatusForbidden, false, false},
			{"same-site, other origin", "POST", "/admin/jobs/api/jobs/retry", owner, hdr("Sec-Fetch-Site", "same-site", "Origin", "http://other.example.com"), http.StatusForbidden, false, false},
			{"foreign Origin, no Sec-Fetch-Site", "DELETE", "/admin/jobs/api/jobs", owner, hdr("Origin", "http://evil.example"), http.StatusForbidden, false, false},
		}
		for _, c := range cases {
			before := *e.jobs
			w := e.do(req{method: c.method, path: c.path, cookie: c.cookie, header: c.header})
			if w.Code != c.want {
				t.Errorf("%s: %s %s answered %d, want %d", c.name, c.method, c.path, w.Code, c.want)
			}
			if reached := *e.jobs > before; reached != c.reaches {
				t.Errorf("%s: the console's handler ran: %v, want %v", c.name, reached, c.reaches)
			}
			csp := w.Header().Get("Content-Security-Policy")
			if !c.consoleCSP {
				if csp != strict {
					t.Errorf("%s: CSP %q, want the strict one", c.name, csp)
				}
				continue
			}
			for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("%s: CSP %q lacks %q", c.name, csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-eval") || strings.Count(csp, "unsafe-inline") != 1 || !strings.Contains(csp, "style-src 'self' 'unsafe-inline'") {
				t.Errorf("%s: CSP %q may run more than the console's own script files", c.name, csp)
			}
		}
	})
}
