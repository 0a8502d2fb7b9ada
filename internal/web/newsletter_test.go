package web

import (
	"database/sql"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/registration"
)

// fixedToken is a well-formed confirmation token for pages compared with
// golden files.
const fixedToken = "q3Z7mL0v4Xc2NfR9sT1uW6yB8dE5gH0jK3lM7nP9rQw"

// newsletterHarness is a harness whose handler confirms the local list's
// links, with one consenting registration whose address awaits
// confirmation under a link with token.
func newsletterHarness(t *testing.T, token string) (h *harness, registrationID string) {
	t.Helper()
	base := newHarness(t, harnessOptions{})
	handler, err := Handler(Deps{Registrar: base.svc, Ready: base.db.Ready, Log: slog.New(slog.NewTextHandler(base.logs, nil)), BaseURL: testBaseURL,
		Newsletter: base.store})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	h = base.forTest(t)
	h.srv = srv
	id := h.register(mustJSON(t, with(validRequest(), "newsletter", true)))
	hash, ok := email.ConfirmTokenHash(token)
	if !ok {
		t.Fatalf("test token %q is not a token", token)
	}
	ask, err := h.store.SubscribePending(t.Context(), registration.Subscriber{Email: "ada@example.org", FirstName: "Ada",
		LastName: "Lovelace", EventID: h.event.ID, RegistrationID: id}, hash)
	if err != nil || !ask {
		t.Fatalf("SubscribePending = %v, %v", ask, err)
	}
	return h, id
}

// listStatus is the address's status on the local list and whether a
// link works for it.
func (h *harness) listStatus(addr string) (status string, linked bool) {
	h.t.Helper()
	var hash sql.NullString
	if err := h.db.Read.QueryRow(`SELECT status, confirm_token_hash FROM mailing_list WHERE email = ?`, addr).
		Scan(&status, &hash); err != nil {
		h.t.Fatalf("read mailing list: %v", err)
	}
	return status, hash.Valid
}

func TestNewsletterConfirmPage(t *testing.T) {
	t.Parallel()
	token, _, err := email.NewConfirmToken()
	if err != nil {
		t.Fatal(err)
	}
	h, id := newsletterHarness(t, token)
	path := "/newsletter/confirm/" + token

	// GET asks and changes nothing, however often a scanner follows it.
	for range 2 {
		res := h.get(path)
		if res.status != http.StatusOK {
			t.Fatalf("GET %s = %v", path, res)
		}
		body := string(res.body)
		for _, want := range []string{"<h1>Confirm your subscription</h1>", `<form method="post" action="` + path + `">`,
			"a•••@example.org", "TestConf 2027", `<button type="submit">Confirm my subscription</button>`} {
			if !strings.Contains(body, want) {
				t.Errorf("GET page lacks %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, "ada@example.org") {
			t.Error("the page shows the whole address")
		}
		if res.header.Get("Cache-Control") != "no-store" || res.header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("headers %v: the link's page must be neither cached nor referred", res.header)
		}
	}
	if status, linked := h.listStatus("ada@example.org"); status != "pending" || !linked {
		t.Fatalf("after GET: %s, link kept %v; want pending with its link", status, linked)
	}
	if st, err := h.store.NewsletterState(t.Context(), id); err != nil || !st.ConfirmedAt.IsZero() {
		t.Fatalf("after GET: NewsletterState %+v, %v; want not confirmed", st, err)
	}

	// A cross-site POST is refused and changes nothing.
	req := h.newRequest(http.MethodPost, path, "", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if res := h.do(req); res.status != http.StatusForbidden {
		t.Errorf("cross-site POST = %v; want 403", res)
	}
	if status, _ := h.listStatus("ada@example.org"); status != "pending" {
		t.Fatalf("a cross-site POST confirmed: %s", status)
	}

	// POST confirms, then shows the page saying so.
	res := h.do(h.newRequest(http.MethodPost, path, "", nil))
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/newsletter/confirmed" {
		t.Fatalf("POST %s = %v (Location %q); want 303 to /newsletter/confirmed", path, res, res.header.Get("Location"))
	}
	if status, linked := h.listStatus("ada@example.org"); status != "subscribed" || linked {
		t.Errorf("after POST: %s, link kept %v; want subscribed, link cleared", status, linked)
	}
	if st, err := h.store.NewsletterState(t.Context(), id); err != nil || st.ConfirmedAt.IsZero() {
		t.Errorf("after POST: NewsletterState %+v, %v; want confirmed", st, err)
	}
	done := h.get("/newsletter/confirmed")
	if done.status != http.StatusOK || !strings.Contains(string(done.body), "<h1>You're subscribed</h1>") {
		t.Errorf("GET /newsletter/confirmed = %v", done)
	}

	// The link worked once.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		res := h.do(h.newRequest(method, path, "", nil))
		if res.status != http.StatusNotFound || !strings.Contains(string(res.body), "This link has expired or was already used") {
			t.Errorf("%s of a used link = %v; want 404 saying it expired or was used", method, res)
		}
	}
}

func TestNewsletterConfirmUnknownLinks(t *testing.T) {
	t.Parallel()
	h, _ := newsletterHarness(t, fixedToken)
	other, _, err := email.NewConfirmToken()
	if err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{other, "not-a-token", strings.Repeat("A", 42) + "B", fixedToken + "x", "%00"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			res := h.do(h.newRequest(method, "/newsletter/confirm/"+token, "", nil))
			if res.status != http.StatusNotFound || !strings.Contains(string(res.body), "This link has expired or was already used") {
				t.Errorf("%s %q = %v; want the 404 page of an expired link", method, token, res)
			}
		}
	}
	if status, linked := h.listStatus("ada@example.org"); status != "pending" || !linked {
		t.Errorf("unknown links changed the list: %s, link kept %v", status, linked)
	}
}

// TestNewsletterGoldenPages compares the confirmation pages with
// testdata/newsletter_*.golden; run with -update to rewrite them.
func TestNewsletterGoldenPages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		path   string
		method string
	}{
		{"newsletter_confirm", "/newsletter/confirm/" + fixedToken, http.MethodGet},
		{"newsletter_expired", "/newsletter/confirm/" + strings.Repeat("A", 43), http.MethodGet},
		{"newsletter_confirmed", "/newsletter/confirmed", http.MethodGet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newsletterHarness(t, fixedToken)
			res := h.do(h.newRequest(tt.method, tt.path, "", nil))
			checkGolden(t, filepath.Join("testdata", tt.name+".golden"), res.body)
		})
	}
}
