package admin_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
)

const goodPassword = "correct horse battery staple"

func loginForm(emailAddr, password, next string) url.Values {
	return url.Values{"email": {emailAddr}, "password": {password}, "next": {next}}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		acct := e.loginAccount("ops@example.org", goodPassword, admin.RoleFinance)

		cases := []struct {
			name, email, password string
			wantStatus            int
			wantBody              string
			wantAudit             string
		}{
			{"unknown email", "nobody@example.org", goodPassword, http.StatusUnauthorized, "Wrong email or password.", "login_failed"},
			{"wrong password", "ops@example.org", "not the password", http.StatusUnauthorized, "Wrong email or password.", "login_failed"},
			{"email in capitals", "OPS@Example.org ", goodPassword, http.StatusSeeOther, "", "login"},
		}
		for _, c := range cases {
			w := e.do(req{method: http.MethodPost, path: "/admin/login", form: loginForm(c.email, c.password, "/admin/audit?action=login"),
				addr: "198.51.100.7"})
			if w.Code != c.wantStatus {
				t.Fatalf("%s: status %d, want %d", c.name, w.Code, c.wantStatus)
			}
			if c.wantBody != "" && !strings.Contains(w.Body.String(), c.wantBody) {
				t.Errorf("%s: body lacks %q", c.name, c.wantBody)
			}
			entries := e.audit(admin.AuditFilter{})
			if len(entries) == 0 || entries[0].Action != c.wantAudit {
				t.Fatalf("%s: newest audit entry %+v, want action %s", c.name, entries, c.wantAudit)
			}
			if got := entries[0]; got.Actor != strings.ToLower(strings.TrimSpace(c.email)) || got.Address != "198.51.100.7" {
				t.Errorf("%s: audit entry %+v: actor or address wrong", c.name, got)
			}
			if c.wantStatus != http.StatusSeeOther {
				if sessionCookie(w) != nil {
					t.Errorf("%s: a failed login set a session cookie", c.name)
				}
				continue
			}
			if loc := w.Header().Get("Location"); loc != "/admin/audit?action=login" {
				t.Errorf("%s: redirected to %q", c.name, loc)
			}
			ck := sessionCookie(w)
			if ck == nil {
				t.Fatalf("%s: no session cookie", c.name)
			}
			if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
				t.Errorf("cookie attributes: %+v", ck)
			}
			if len(ck.Value) != 43 { // 32 bytes, base64url without padding
				t.Errorf("cookie value %q is not 32 random bytes", ck.Value)
			}
			// The store keeps only the token's hash.
			if _, _, err := e.store.Session(context.Background(), ck.Value); err == nil {
				t.Error("the session is found by the raw token: the store keeps the token itself")
			}
			sess, got, err := e.store.Session(context.Background(), admin.TokenHash(ck.Value))
			if err != nil || got.ID != acct.ID {
				t.Fatalf("session by hash: %v, %+v", err, got)
			}
			if !sess.ExpiresAt.Equal(t0.Add(admin.DefaultLifetime)) || sess.Address != "198.51.100.7" {
				t.Errorf("session %+v", sess)
			}
			if w := e.get("/admin", ck.Value); w.Code != http.StatusOK {
				t.Errorf("dashboard with the new session: %d", w.Code)
			}
			accts, err := e.store.Accounts(context.Background())
			if err != nil || len(accts) != 1 || !accts[0].LastLoginAt.Equal(t0) {
				t.Errorf("last login not recorded: %v %+v", err, accts)
			}
		}
	})
}

// TestLoginNext checks that the login only ever sends back into the back
// office.
func TestLoginNext(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		e.loginAccount("ops@example.org", goodPassword, admin.RoleOwner)
		cases := []struct{ next, want string }{
			{"/admin/registrations?status=paid", "/admin/registrations?status=paid"},
			{"https://evil.example/admin", "/admin"},
			{"//evil.example/admin", "/admin"},
			{"/\\evil.example", "/admin"},
			{"/registrations/x", "/admin"},
			{"", "/admin"},
		}
		for _, c := range cases {
			w := e.post("/admin/login", "", loginForm("ops@example.org", goodPassword, c.next))
			if w.Code != http.StatusSeeOther || w.Header().Get("Location") != c.want {
				t.Errorf("next %q: %d to %q, want %q", c.next, w.Code, w.Header().Get("Location"), c.want)
			}
		}
	})
}

func TestLoginDelay(t *testing.T) {
	t.Parallel()
	cases := []struct {
		failures int
		want     time.Duration
	}{{1, 0}, {3, 0}, {4, 2 * time.Second}, {5, 4 * time.Second}, {8, 32 * time.Second}, {12, 512 * time.Second},
		{13, 15 * time.Minute}, {100, 15 * time.Minute}}
	for _, c := range cases {
		if got := admin.LoginDelay(c.failures); got != c.want {
			t.Errorf("after %d failures: %v, want %v", c.failures, got, c.want)
		}
	}
}

func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		e.loginAccount("ops@example.org", goodPassword, admin.RoleOwner)
		login := func(password, addr string) int {
			t.Helper()
			return e.do(req{method: http.MethodPost, path: "/admin/login", form: loginForm("ops@example.org", password, ""), addr: addr}).Code
		}
		// Three failures cost nothing.
		for i := range 3 {
			if code := login("wrong password", "203.0.113.1"); code != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d", i+1, code)
			}
		}
		// The fourth is answered, then blocks for 2 s.
		if code := login("wrong password", "203.0.113.1"); code != http.StatusUnauthorized {
			t.Fatalf("failure 4: %d", code)
		}
		e.clock.Advance(time.Second)
		w := e.do(req{method: http.MethodPost, path: "/admin/login", form: loginForm("ops@example.org", goodPassword, ""), addr: "203.0.113.1"})
		if w.Code != http.StatusTooManyRequests {
			t.Fatalf("while blocked, even the right password: %d, want 429", w.Code)
		}
		if !strings.Contains(w.Body.String(), "Too many attempts. Try again in 1 second.") || w.Header().Get("Retry-After") != "1" {
			t.Errorf("429 page: Retry-After %q, body %s", w.Header().Get("Retry-After"), w.Body)
		}
		if !strings.Contains(w.Body.String(), `<link rel="stylesheet"`) {
			t.Error("the 429 answer is not the styled login page")
		}
		if sessionCookie(w) != nil {
			t.Error("a blocked login set a session")
		}
		// The account is blocked from any address: the key is the account too.
		if code := login(goodPassword, "203.0.113.99"); code != http.StatusTooManyRequests {
			t.Errorf("blocked account from another address: %d", code)
		}
		// After the delay the next failure doubles it.
		e.clock.Advance(time.Second)
		if code := login("wrong password", "203.0.113.1"); code != http.StatusUnauthorized {
			t.Fatalf("failure 5: %d", code)
		}
		e.clock.Advance(3 * time.Second)
		if code := login(goodPassword, "203.0.113.1"); code != http.StatusTooManyRequests {
			t.Fatalf("3 s into a 4 s block: %d", code)
		}
		e.clock.Advance(time.Second)
		if code := login(goodPassword, "203.0.113.1"); code != http.StatusSeeOther {
			t.Fatalf("after the block, the right password: %d", code)
		}
		th, err := e.store.LoginThrottle(context.Background(), []string{"account:ops@example.org", "addr:203.0.113.1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := th["account:ops@example.org"]; ok {
			t.Error("a successful login left the account's throttle")
		}
		if th["addr:203.0.113.1"].Failures != 5 {
			t.Errorf("address throttle %+v: want its 5 failures kept", th["addr:203.0.113.1"])
		}
		// Audit: five failures, two refusals while blocked... every attempt.
		failed := e.audit(admin.AuditFilter{Action: "login_failed"})
		if len(failed) != 8 {
			t.Errorf("%d login_failed entries, want 8 (5 wrong passwords, 3 refused while blocked)", len(failed))
		}
		if ok := e.audit(admin.AuditFilter{Action: "login"}); len(ok) != 1 {
			t.Errorf("%d login entries, want 1", len(ok))
		}
	})
}

// TestThrottlePerAddress checks that one address guessing many accounts is
// slowed down, while another address is not.
func TestThrottlePerAddress(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		e.loginAccount("ops@example.org", goodPassword, admin.RoleOwner)
		for i := range 4 {
			w := e.do(req{method: http.MethodPost, path: "/admin/login", addr: "203.0.113.5",
				form: loginForm("guess"+string(rune('a'+i))+"@example.org", "whatever password", "")})
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("guess %d: %d", i, w.Code)
			}
		}
		w := e.do(req{method: http.MethodPost, path: "/admin/login", addr: "203.0.113.5", form: loginForm("ops@example.org", goodPassword, "")})
		if w.Code != http.StatusTooManyRequests {
			t.Errorf("the guessing address: %d, want 429", w.Code)
		}
		w = e.do(req{method: http.MethodPost, path: "/admin/login", addr: "203.0.113.6", form: loginForm("ops@example.org", goodPassword, "")})
		if w.Code != http.StatusSeeOther {
			t.Errorf("another address: %d, want 303", w.Code)
		}
	})
}

func TestSessionIdleExpiry(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		_, ck := e.account(admin.RoleStaff)
		// Used every 29 minutes, the session lives on.
		for i := range 4 {
			e.clock.Advance(29 * time.Minute)
			if w := e.get("/admin", ck); w.Code != http.StatusOK {
				t.Fatalf("use %d after 29 min: %d", i, w.Code)
			}
		}
		e.clock.Advance(30 * time.Minute)
		w := e.get("/admin/registrations?status=paid", ck)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin/login?next="+url.QueryEscape("/admin/registrations?status=paid") {
			t.Fatalf("after 30 idle minutes: %d to %q", w.Code, w.Header().Get("Location"))
		}
		if _, _, err := e.store.Session(context.Background(), admin.TokenHash(ck)); err == nil {
			t.Error("the idle session is still stored")
		}
	})
}

func TestSessionAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		_, ck := e.account(admin.RoleStaff)
		for e.clock.Now().Before(t0.Add(admin.DefaultLifetime - 20*time.Minute)) {
			e.clock.Advance(20 * time.Minute)
			if w := e.get("/admin", ck); w.Code != http.StatusOK {
				t.Fatalf("at %v: %d", e.clock.Now().Sub(t0), w.Code)
			}
		}
		e.clock.Advance(20 * time.Minute) // exactly 12 h after login
		if w := e.get("/admin", ck); w.Code != http.StatusSeeOther {
			t.Fatalf("12 h after login, in use all along: %d, want a redirect to log in", w.Code)
		}
	})
}

// TestSessionTouch checks that the last-seen time is written at most once
// a minute.
func TestSessionTouch(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		_, ck := e.account(admin.RoleStaff)
		lastSeen := func() time.Time {
			s, _, err := e.store.Session(context.Background(), admin.TokenHash(ck))
			if err != nil {
				t.Fatal(err)
			}
			return s.LastSeenAt
		}
		e.clock.Advance(30 * time.Second)
		e.get("/admin", ck)
		if got := lastSeen(); !got.Equal(t0) {
			t.Errorf("touched after 30 s: %v", got)
		}
		e.clock.Advance(40 * time.Second)
		e.get("/admin", ck)
		if got := lastSeen(); !got.Equal(t0.Add(70 * time.Second)) {
			t.Errorf("not touched after 70 s: %v", got)
		}
	})
}

func TestSessionRotation(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		acct := e.loginAccount("ops@example.org", goodPassword, admin.RoleOwner)
		old := e.session(acct)
		w := e.do(req{method: http.MethodPost, path: "/admin/login", cookie: old, form: loginForm("ops@example.org", goodPassword, "")})
		ck := sessionCookie(w)
		if w.Code != http.StatusSeeOther || ck == nil {
			t.Fatalf("login: %d", w.Code)
		}
		if ck.Value == old {
			t.Fatal("the session was not rotated")
		}
		if w := e.get("/admin", old); w.Code != http.StatusSeeOther {
			t.Errorf("the session presented at login still works: %d", w.Code)
		}
		if w := e.get("/admin", ck.Value); w.Code != http.StatusOK {
			t.Errorf("the new session: %d", w.Code)
		}
	})
}

func TestLogout(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		acct, ck := e.account(admin.RoleStaff)
		other := e.session(acct)
		w := e.post("/admin/logout", ck, nil)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin/login?done=logout" {
			t.Fatalf("logout: %d %q", w.Code, w.Header().Get("Location"))
		}
		if c := sessionCookie(w); c == nil || c.MaxAge >= 0 {
			t.Errorf("logout did not clear the cookie: %+v", c)
		}
		if w := e.get("/admin", ck); w.Code != http.StatusSeeOther {
			t.Errorf("after logout: %d", w.Code)
		}
		if w := e.get("/admin", other); w.Code != http.StatusOK {
			t.Errorf("logout ended the account's other session too: %d", w.Code)
		}
		if got := e.audit(admin.AuditFilter{Action: "logout"}); len(got) != 1 || got[0].Actor != acct.Email {
			t.Errorf("logout audit: %+v", got)
		}
	})
}

func TestLogoutEverywhere(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		acct, ck := e.account(admin.RoleStaff)
		other := e.session(acct)
		_, someoneElse := e.account(admin.RoleOwner)
		if w := e.post("/admin/logout-everywhere", ck, nil); w.Code != http.StatusSeeOther {
			t.Fatalf("logout everywhere: %d", w.Code)
		}
		for _, c := range []string{ck, other} {
			if w := e.get("/admin", c); w.Code != http.StatusSeeOther {
				t.Errorf("a session of the account survived: %d", w.Code)
			}
		}
		if w := e.get("/admin", someoneElse); w.Code != http.StatusOK {
			t.Errorf("another account's session ended: %d", w.Code)
		}
		if got := e.audit(admin.AuditFilter{Action: "logout_everywhere"}); len(got) != 1 {
			t.Errorf("audit: %+v", got)
		}
	})
}

// TestCrossOrigin checks that a form posted from another site is refused
// before anything happens.
func TestCrossOrigin(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		regs := e.seed(seedReg{})
		_, ck := e.account(admin.RoleOwner)
		cases := []struct {
			name   string
			header http.Header
			want   int
		}{
			{"cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
			{"other origin", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
			{"same origin", http.Header{"Sec-Fetch-Site": {"same-origin"}}, http.StatusSeeOther},
		}
		for _, c := range cases {
			before := len(e.acts.Calls())
			w := e.do(req{method: http.MethodPost, path: "/admin/registrations/" + regs[0].ID + "/refund", cookie: ck,
				form: url.Values{"key": {"k0123456789abcdefghij"}, "amount": {"10.00"}}, header: c.header})
			if w.Code != c.want {
				t.Errorf("%s: %d, want %d", c.name, w.Code, c.want)
			}
			done := len(e.acts.Calls()) - before
			if c.want == http.StatusForbidden && done != 0 {
				t.Errorf("%s: the refund was carried out", c.name)
			}
			if c.want == http.StatusForbidden && !strings.Contains(w.Body.String(), "another site") {
				t.Errorf("%s: not the styled refusal: %s", c.name, w.Body)
			}
		}
		// A login form posted from elsewhere is refused too.
		w := e.do(req{method: http.MethodPost, path: "/admin/login", form: loginForm("x@example.org", "y", ""),
			header: http.Header{"Sec-Fetch-Site": {"cross-site"}}})
		if w.Code != http.StatusForbidden {
			t.Errorf("cross-site login: %d", w.Code)
		}
	})
}
