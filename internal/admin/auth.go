package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// CookieName is the session cookie. The __Host- prefix makes browsers
// insist on Secure, Path=/ and no Domain, so no other host can set it.
const CookieName = "__Host-registrar_session"

// touchEvery is how stale a session's last-seen time may get before a
// request refreshes it: once a minute at most, to spare writes.
const touchEvery = time.Minute

// Login throttling: the first freeFailures failures of a key cost
// nothing, each further one doubles the wait, up to maxDelay. A key whose
// last failure is older than forgetAfter starts afresh.
const (
	freeFailures = 3
	maxDelay     = 15 * time.Minute
	forgetAfter  = 24 * time.Hour
)

// wrongCredentials is the one message for an unknown email and a wrong
// password alike.
const wrongCredentials = "Wrong email or password."

// visitor is a logged-in organiser.
type visitor struct {
	Session Session
	Account Account
	Address string
}

// actor is the visitor as the actions and the audit log know them.
func (v *visitor) actor() Actor {
	return Actor{AccountID: v.Account.ID, Email: v.Account.Email, Role: v.Account.Role, Address: v.Address}
}

// Can reports whether the visitor's role has permission p.
func (v *visitor) Can(p Permission) bool { return v != nil && v.Account.Role.Can(p) }

// authedHandler is a handler that runs for a logged-in visitor.
type authedHandler func(w http.ResponseWriter, r *http.Request, v *visitor)

// errNoSession reports a request without a live session.
var errNoSession = errors.New("no live session")

// visitor returns the request's logged-in organiser; errNoSession when
// there is none (no cookie, unknown token, idle or past its lifetime).
// An expired session is deleted.
func (s *server) visitor(r *http.Request) (*visitor, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, errNoSession
	}
	hash := tokenHash(c.Value)
	sess, acct, err := s.Store.Session(r.Context(), hash)
	if errors.Is(err, registration.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	now := s.Now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeenAt) >= s.IdleTimeout {
		if err := s.Store.DeleteSession(r.Context(), hash); err != nil {
			s.Log.WarnContext(r.Context(), "delete expired session", "err", err)
		}
		return nil, errNoSession
	}
	return &visitor{Session: sess, Account: acct, Address: clientAddr(r)}, nil
}

// guard runs h for a visitor whose role has permission p. Without a
// session a page redirects to the login (and back after it); any other
// method is refused. A role without p gets a 403 page.
func (s *server) guard(p Permission, h authedHandler) http.Handler {
	return s.guardOr(p, h, s.toLogin)
}

// toLogin answers a request without a session: a page redirects to the
// login (and back after it); any other method is refused.
func (s *server) toLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		http.Redirect(w, r, "/admin/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	s.errorPage(w, r, nil, http.StatusForbidden, "Not logged in",
		"Your session has ended, so this was not carried out. Log in and try again.")
}

// guardOr is guard with noSession answering a request without a session.
func (s *server) guardOr(p Permission, h authedHandler, noSession http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.visitor(r)
		if errors.Is(err, errNoSession) {
			noSession(w, r)
			return
		}
		if err != nil {
			s.fail(w, r, nil, "session", err)
			return
		}
		if now := s.Now(); now.Sub(v.Session.LastSeenAt) >= touchEvery {
			if err := s.Store.TouchSession(r.Context(), v.Session.TokenHash, now); err != nil {
				s.Log.WarnContext(r.Context(), "touch session", "err", err)
			} else {
				v.Session.LastSeenAt = now
			}
		}
		if !v.Can(p) {
			s.errorPage(w, r, v, http.StatusForbidden, "Not allowed",
				"Your role ("+string(v.Account.Role)+") may not open this page or do this. An owner can change your role.")
			return
		}
		h(w, r, v)
	})
}

// loginView is the login page.
type loginView struct {
	Email   string
	Next    string
	Error   string
	Notice  string
	Blocked bool
}

func (s *server) loginPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := safeNext(r.URL.Query().Get("next"))
		if v, err := s.visitor(r); err == nil && v != nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		lv := loginView{Next: next}
		if r.URL.Query().Get("done") == "logout" {
			lv.Notice = "You are logged out."
		}
		s.render(w, r, http.StatusOK, "login", nil, "Log in", lv)
	})
}

func (s *server) loginSubmit() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if !s.parseForm(w, r, nil) {
			return
		}
		email := strings.ToLower(strings.TrimSpace(r.PostForm.Get("email")))
		if len(email) > 254 {
			email = email[:254]
		}
		password := r.PostForm.Get("password")
		next := safeNext(r.PostForm.Get("next"))
		addr := clientAddr(r)
		lv := loginView{Email: email, Next: next}
		now := s.Now()
		keys := []string{"addr:" + addr, "account:" + email}

		throttles, err := s.Store.LoginThrottle(ctx, keys)
		if err != nil {
			s.fail(w, r, nil, "read login throttle", err)
			return
		}
		var until time.Time
		for _, t := range throttles {
			if t.BlockedUntil.After(until) {
				until = t.BlockedUntil
			}
		}
		if until.After(now) {
			secs := int(math.Ceil(until.Sub(now).Seconds()))
			s.audit(ctx, registration.AuditEntry{At: now, Actor: email, Action: "login_failed",
				Detail: "refused: too many failed attempts", Address: addr})
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			lv.Blocked = true
			lv.Error = "Too many attempts. Try again in " + plural(secs, "second") + "."
			s.render(w, r, http.StatusTooManyRequests, "login", nil, "Log in", lv)
			return
		}

		acct, err := s.Store.AccountByEmail(ctx, email)
		ok := false
		switch {
		case errors.Is(err, registration.ErrNotFound) || email == "":
			// Spend the time a real check takes, so the answer's timing does
			// not tell which emails have an account.
			VerifyPassword(s.dummy(), password)
		case err != nil:
			s.fail(w, r, nil, "read account", err)
			return
		default:
			ok, err = VerifyPassword(acct.PasswordHash, password)
			if err != nil {
				s.Log.ErrorContext(ctx, "verify password", "err", err, "account", acct.ID)
				ok = false
			}
		}
		if !ok {
			for _, key := range keys {
				t := throttles[key]
				if now.Sub(t.LastFailureAt) > forgetAfter {
					t = Throttle{}
				}
				t.Failures++
				t.LastFailureAt = now
				t.BlockedUntil = now.Add(loginDelay(t.Failures))
				if err := s.Store.SaveLoginThrottle(ctx, key, t); err != nil {
					s.fail(w, r, nil, "save login throttle", err)
					return
				}
			}
			s.audit(ctx, registration.AuditEntry{At: now, Actor: email, Action: "login_failed",
				Detail: "wrong email or password", Address: addr})
			lv.Error = wrongCredentials
			s.render(w, r, http.StatusUnauthorized, "login", nil, "Log in", lv)
			return
		}

		if err := s.Store.ClearLoginThrottle(ctx, "account:"+email); err != nil {
			s.Log.WarnContext(ctx, "clear login throttle", "err", err)
		}
		// Rotation: whatever session the browser had ends; a new one starts.
		if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
			if err := s.Store.DeleteSession(ctx, tokenHash(c.Value)); err != nil && !errors.Is(err, registration.ErrNotFound) {
				s.Log.WarnContext(ctx, "delete previous session", "err", err)
			}
		}
		token, err := newToken()
		if err != nil {
			s.fail(w, r, nil, "session token", err)
			return
		}
		sess := Session{TokenHash: tokenHash(token), AccountID: acct.ID, CreatedAt: now, LastSeenAt: now,
			ExpiresAt: now.Add(s.Lifetime), Address: addr, UserAgent: truncate(r.UserAgent(), 256)}
		if err := s.Store.CreateSession(ctx, sess); err != nil {
			s.fail(w, r, nil, "create session", err)
			return
		}
		if err := s.Store.RecordLogin(ctx, acct.ID, now); err != nil {
			s.Log.WarnContext(ctx, "record login", "err", err)
		}
		if _, err := s.Store.DeleteExpiredSessions(ctx, now, now.Add(-s.IdleTimeout)); err != nil {
			s.Log.WarnContext(ctx, "delete expired sessions", "err", err)
		}
		s.audit(ctx, registration.AuditEntry{At: now, Actor: acct.Email, Action: "login",
			Detail: "role " + string(acct.Role), Address: addr})
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: "/", MaxAge: int(s.Lifetime / time.Second),
			Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, next, http.StatusSeeOther)
	})
}

func (s *server) logout() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		if err := s.Store.DeleteSession(r.Context(), v.Session.TokenHash); err != nil && !errors.Is(err, registration.ErrNotFound) {
			s.fail(w, r, v, "delete session", err)
			return
		}
		s.audit(r.Context(), registration.AuditEntry{At: s.Now(), Actor: v.Account.Email, Action: "logout", Address: v.Address})
		clearCookie(w)
		http.Redirect(w, r, "/admin/login?done=logout", http.StatusSeeOther)
	}
}

func (s *server) logoutEverywhere() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		if err := s.Store.DeleteSessions(r.Context(), v.Account.ID); err != nil {
			s.fail(w, r, v, "delete sessions", err)
			return
		}
		s.audit(r.Context(), registration.AuditEntry{At: s.Now(), Actor: v.Account.Email, Action: "logout_everywhere",
			Detail: "every session of the account ended", Address: v.Address})
		clearCookie(w)
		http.Redirect(w, r, "/admin/login?done=logout", http.StatusSeeOther)
	}
}

// audit records an entry; a failure is logged, not shown.
func (s *server) audit(ctx context.Context, e registration.AuditEntry) {
	if err := s.Store.Audit(detached(ctx), e); err != nil {
		s.Log.ErrorContext(ctx, "audit", "err", err, "action", e.Action)
	}
}

// loginDelay is how long a key is blocked after its n-th failure in a row.
func loginDelay(n int) time.Duration {
	if n <= freeFailures {
		return 0
	}
	shift := n - freeFailures
	if shift >= 10 { // 2^10 s is past the cap already
		return maxDelay
	}
	return min(time.Duration(1<<shift)*time.Second, maxDelay)
}

func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// newToken returns a session token: 32 random bytes, base64url.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// tokenHash is what the store keeps of a token: its SHA-256, in hex.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// newKey returns a form's one-time key.
func newKey() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// safeNext returns where to go after logging in: a back-office path, never
// another site.
func safeNext(next string) string {
	if next == "" || strings.ContainsAny(next, "\\\r\n\t") || strings.HasPrefix(next, "//") {
		return "/admin"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/admin"
	}
	if u.Path != "/admin" && !strings.HasPrefix(u.Path, "/admin/") || strings.HasPrefix(u.Path, "/admin/login") {
		return "/admin"
	}
	return u.RequestURI()
}

// clientAddr is the client's IP address (without port).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
