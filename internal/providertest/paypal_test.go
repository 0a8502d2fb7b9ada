package providertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// recorder is a testing.TB that keeps the fake's Errorf calls instead of
// failing the test, so that the fake's strictness can itself be tested.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recorder) Helper() {}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

const (
	ppTestID     = "test-client"
	ppTestSecret = "test-secret"
)

var ppSeq atomic.Int64

// ppCaller talks raw HTTP to a fake and validates every answer against the
// spec's response schemas.
type ppCaller struct {
	t     *testing.T
	p     *PayPal
	token string
}

func newPPCaller(t *testing.T, tb testing.TB) *ppCaller {
	p := NewPayPal(tb, ppTestID, ppTestSecret)
	c := &ppCaller{t: t, p: p}
	status, _, body := c.tokenRequest(http.MethodPost, "application/x-www-form-urlencoded", "grant_type=client_credentials", true)
	if status != 200 {
		t.Fatalf("token: %d %v", status, body)
	}
	c.token = body["access_token"].(string)
	return c
}

func (c *ppCaller) tokenRequest(method, contentType, form string, auth bool) (int, http.Header, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.p.URL()+"/v1/oauth2/token", strings.NewReader(form))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth {
		req.SetBasicAuth(ppTestID, ppTestSecret)
	}
	return c.send(req, nil)
}

// do sends an API call. Headers default to a Bearer token, JSON, a fresh
// PayPal-Request-Id on POST and Prefer: return=representation; hdr
// ("Name", "value", ...) overrides them, an empty value removes one.
func (c *ppCaller) do(method, path, body string, hdr ...string) (int, http.Header, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.p.URL()+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Prefer", "return=representation")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("PayPal-Request-Id", fmt.Sprintf("req-%d", ppSeq.Add(1)))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	var spec *Spec
	switch {
	case strings.HasPrefix(path, "/v2/checkout/"):
		spec = c.p.orders
	case strings.HasPrefix(path, "/v2/payments/"):
		spec = c.p.payments
	}
	return c.send(req, spec)
}

func (c *ppCaller) send(req *http.Request, spec *Spec) (int, http.Header, map[string]any) {
	c.t.Helper()
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.Header.Get("Paypal-Debug-Id") == "" {
		c.t.Errorf("%s %s: no Paypal-Debug-Id header", req.Method, req.URL.Path)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("%s %s: answer is not a JSON object: %v: %s", req.Method, req.URL.Path, err, data)
	}
	if resp.StatusCode >= 400 && m["name"] != nil && m["debug_id"] != resp.Header.Get("Paypal-Debug-Id") {
		c.t.Errorf("error body debug_id %v, header %s", m["debug_id"], resp.Header.Get("Paypal-Debug-Id"))
	}
	if spec != nil && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests { // the spec has no 429, and 5xx are all "default"
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
		if err := spec.validateResponse(req, resp.StatusCode, resp.Header, data); err != nil {
			c.t.Errorf("the fake's answer breaks the spec: %v\n%s", err, data)
		}
	}
	return resp.StatusCode, resp.Header, m
}

// validateResponse checks an answer against the spec's response schema.
func (s *Spec) validateResponse(r *http.Request, status int, header http.Header, body []byte) error {
	probe := r.Clone(context.Background())
	probe.URL = &url.URL{Scheme: "http", Host: "fake.invalid", Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	probe.Host = "fake.invalid"
	route, params, err := s.router.FindRoute(probe)
	if err != nil {
		return nil // not an operation: nothing to check the answer against
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route, Options: opts},
		Status:                 status,
		Header:                 header,
		Options:                opts,
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// get reads a value at a path of map keys and slice indexes.
func get(v any, path ...any) any {
	for _, k := range path {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func issueOf(m map[string]any) any { return get(m, "details", 0, "issue") }

const (
	ppCardOrder = `{"intent":"CAPTURE","purchase_units":[{"custom_id":"r1","invoice_id":"r1","description":"Ticket",
		"amount":{"currency_code":"EUR","value":"149.00"}}],
		"payment_source":{"card":{"name":"%s","number":"4012888888881881","expiry":"2030-12","security_code":"123",
		"billing_address":{"address_line_1":"12 St James's Square","admin_area_2":"London","postal_code":"SW1Y 4JH","country_code":"GB"}}}}`
	ppWalletOrder = `{"intent":"CAPTURE","purchase_units":[{"amount":{"currency_code":"EUR","value":"149.00"}}]}`
)

func cardOrder(name string) string { return fmt.Sprintf(ppCardOrder, name) }

func TestPayPalTokenEndpoint(t *testing.T) {
	t.Parallel()
	const form = "application/x-www-form-urlencoded"
	cases := []struct {
		name             string
		method, ct, body string
		secret           string // "" sends no Basic credentials
		status           int
		oauthError       string
		violation        bool
	}{
		{"good", "POST", form, "grant_type=client_credentials", ppTestSecret, 200, "", false},
		{"good with charset", "POST", form + "; charset=utf-8", "grant_type=client_credentials", ppTestSecret, 200, "", false},
		{"wrong secret is no violation", "POST", form, "grant_type=client_credentials", "nope", 401, "invalid_client", false},
		{"no credentials", "POST", form, "grant_type=client_credentials", "", 401, "invalid_client", true},
		{"JSON body", "POST", "application/json", `{"grant_type":"client_credentials"}`, ppTestSecret, 400, "invalid_request", true},
		{"other grant", "POST", form, "grant_type=password", ppTestSecret, 400, "unsupported_grant_type", true},
		{"extra fields", "POST", form, "grant_type=client_credentials&client_secret=x", ppTestSecret, 400, "unsupported_grant_type", true},
		{"GET", "GET", "", "", ppTestSecret, 405, "invalid_request", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{TB: t}
			p := NewPayPal(rec, ppTestID, ppTestSecret)
			req, err := http.NewRequest(tc.method, p.URL()+"/v1/oauth2/token", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			if tc.secret != "" {
				req.SetBasicAuth(ppTestID, tc.secret)
			}
			status, _, body := (&ppCaller{t: t, p: p}).send(req, nil)
			if status != tc.status || (tc.oauthError != "" && body["error"] != tc.oauthError) {
				t.Errorf("answer %d %v, want %d %s", status, body, tc.status, tc.oauthError)
			}
			if status == 200 {
				tok, _ := body["access_token"].(string)
				if tok == "" || body["token_type"] != "Bearer" || body["expires_in"] != float64(32400) {
					t.Errorf("token answer %v", body)
				}
			}
			if want := 0; status == 200 {
				want = 1
				if n := p.TokenRequests(); n != want {
					t.Errorf("TokenRequests = %d, want %d", n, want)
				}
			}
			if got := len(rec.messages()) > 0; got != tc.violation {
				t.Errorf("violations %q, want some: %v", rec.messages(), tc.violation)
			}
		})
	}
}

func TestPayPalRejectsBadRequests(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 109)
	cases := []struct {
		name       string
		method     string
		path, body string
		hdr        []string
		setup      func(*ppCaller)
		status     int
		issue      string // details[0].issue, or OAuth error
		violation  bool
	}{
		{name: "order without intent", method: "POST", path: "/v2/checkout/orders",
			body: `{"purchase_units":[{"amount":{"currency_code":"EUR","value":"149.00"}}]}`, status: 400, violation: true},
		{name: "expiry as MM/YY", method: "POST", path: "/v2/checkout/orders",
			body: strings.Replace(cardOrder("Ada"), "2030-12", "12/30", 1), status: 400, violation: true},
		{name: "amount as a number", method: "POST", path: "/v2/checkout/orders",
			body: `{"intent":"CAPTURE","purchase_units":[{"amount":{"currency_code":"EUR","value":149}}]}`, status: 400, violation: true},
		{name: "card number with spaces", method: "POST", path: "/v2/checkout/orders",
			body: strings.Replace(cardOrder("Ada"), "4012888888881881", "4012 8888 8888 1881", 1), status: 400, violation: true},
		{name: "card order without request id", method: "POST", path: "/v2/checkout/orders", body: cardOrder("Ada"),
			hdr: []string{"PayPal-Request-Id", ""}, status: 400, issue: "PAYPAL_REQUEST_ID_REQUIRED", violation: true},
		{name: "request id too long", method: "POST", path: "/v2/checkout/orders", body: cardOrder("Ada"),
			hdr: []string{"PayPal-Request-Id", long}, status: 400, violation: true},
		{name: "bad Prefer", method: "POST", path: "/v2/checkout/orders", body: ppWalletOrder,
			hdr: []string{"Prefer", "return=everything-please"}, status: 400, violation: true},
		{name: "text body", method: "POST", path: "/v2/checkout/orders", body: ppWalletOrder,
			hdr: []string{"Content-Type", "text/plain"}, status: 415, violation: true},
		{name: "no Authorization", method: "POST", path: "/v2/checkout/orders", body: ppWalletOrder,
			hdr: []string{"Authorization", ""}, status: 401, violation: true},
		{name: "Basic instead of Bearer", method: "POST", path: "/v2/checkout/orders", body: ppWalletOrder,
			hdr: []string{"Authorization", "Basic dGVzdDp0ZXN0"}, status: 401, violation: true},
		{name: "unknown token", method: "POST", path: "/v2/checkout/orders", body: ppWalletOrder,
			hdr: []string{"Authorization", "Bearer A21AAnot-issued"}, status: 401},
		{name: "revoked token", method: "POST", path: "/v2/checkout/orders", body: ppWalletOrder,
			setup: func(c *ppCaller) { c.p.RevokeTokens() }, status: 401, issue: "invalid_token"},
		{name: "refund without request id", method: "POST", path: "/v2/payments/captures/ABC/refund", body: `{}`,
			hdr: []string{"PayPal-Request-Id", ""}, status: 400, issue: "MISSING_REQUIRED_PARAMETER", violation: true},
		{name: "capture of a bad order id", method: "POST", path: "/v2/checkout/orders/not-an-id/capture", body: `{}`,
			status: 400, violation: true},
		{name: "unknown operation", method: "DELETE", path: "/v2/checkout/orders/ABC", status: 404, violation: true},
		{name: "unknown path", method: "POST", path: "/v1/payments/payment", body: `{}`, status: 404, violation: true},
		{name: "malformed mock header", method: "POST", path: "/v2/checkout/orders", body: ppWalletOrder,
			hdr: []string{"PayPal-Mock-Response", "INSTRUMENT_DECLINED"}, status: 400, violation: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{TB: t}
			c := newPPCaller(t, rec)
			if tc.setup != nil {
				tc.setup(c)
			}
			status, _, body := c.do(tc.method, tc.path, tc.body, tc.hdr...)
			if status != tc.status {
				t.Errorf("status %d, want %d: %v", status, tc.status, body)
			}
			if tc.issue != "" && issueOf(body) != tc.issue && body["error"] != tc.issue {
				t.Errorf("answer %v, want issue %s", body, tc.issue)
			}
			if status == 400 && body["name"] != "INVALID_REQUEST" {
				t.Errorf("400 named %v", body["name"])
			}
			if got := len(rec.messages()) > 0; got != tc.violation {
				t.Errorf("violations %q, want some: %v", rec.messages(), tc.violation)
			}
			if c.p.Captures() != 0 {
				t.Error("a rejected request captured money")
			}
			if tc.violation && c.p.Err() == nil {
				t.Error("Err() is nil after a violation")
			}
		})
	}
}

func TestPayPalTokenExpiry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		expire func(*PayPal)
		shape  string // name, or OAuth error
	}{
		{"TTL", func(p *PayPal) { time.Sleep(300 * time.Millisecond) }, "AUTHENTICATION_FAILURE"},
		{"ExpireTokens", (*PayPal).ExpireTokens, "AUTHENTICATION_FAILURE"},
		{"RevokeTokens", (*PayPal).RevokeTokens, "invalid_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{TB: t}
			p := NewPayPal(rec, ppTestID, ppTestSecret)
			p.SetTokenTTL(250 * time.Millisecond)
			c := &ppCaller{t: t, p: p}
			_, _, tok := c.tokenRequest("POST", "application/x-www-form-urlencoded", "grant_type=client_credentials", true)
			if tok["expires_in"] != float64(1) {
				t.Errorf("expires_in %v, want 1 (rounded up)", tok["expires_in"])
			}
			c.token = tok["access_token"].(string)
			tc.expire(p)
			status, _, body := c.do("POST", "/v2/checkout/orders", ppWalletOrder)
			if status != 401 || (body["name"] != tc.shape && body["error"] != tc.shape) {
				t.Errorf("expired token: %d %v, want 401 %s", status, body, tc.shape)
			}
			if len(rec.messages()) != 0 {
				t.Errorf("an expired token is no violation: %q", rec.messages())
			}
		})
	}
}

func TestPayPalOrders(t *testing.T) {
	t.Parallel()
	c := newPPCaller(t, t)
	p := c.p

	// Single-step card order: COMPLETED on create, one COMPLETED capture.
	status, _, o := c.do("POST", "/v2/checkout/orders", cardOrder("Ada Lovelace"), "PayPal-Request-Id", "order-1")
	if status != 201 || o["status"] != "COMPLETED" || get(o, "purchase_units", 0, "payments", "captures", 0, "status") != "COMPLETED" {
		t.Fatalf("card order: %d %v", status, o)
	}
	captureID, _ := get(o, "purchase_units", 0, "payments", "captures", 0, "id").(string)
	if len(captureID) != 17 || get(o, "payment_source", "card", "last_digits") != "1881" || get(o, "payment_source", "card", "brand") != "VISA" {
		t.Errorf("order %v", o)
	}
	if strings.Contains(fmt.Sprint(o), "4012888888881881") || get(o, "payment_source", "card", "security_code") != nil {
		t.Error("the order shows the card number or security code")
	}
	if p.Captures() != 1 || p.CapturesFor("order-1") != 1 || p.CaptureStatus(captureID) != "COMPLETED" {
		t.Errorf("counters: %d %d %s", p.Captures(), p.CapturesFor("order-1"), p.CaptureStatus(captureID))
	}

	// A replay returns the stored order with 200 and ignores the new body.
	status, _, again := c.do("POST", "/v2/checkout/orders", ppWalletOrder, "PayPal-Request-Id", "order-1")
	if status != 200 || again["id"] != o["id"] || get(again, "purchase_units", 0, "payments", "captures", 0, "id") != captureID {
		t.Errorf("replay: %d %v", status, again)
	}
	// Prefer: return=minimal gives id, status and links only.
	status, _, min := c.do("POST", "/v2/checkout/orders", ppWalletOrder, "PayPal-Request-Id", "order-1", "Prefer", "")
	if status != 200 || len(min) != 3 || min["id"] != o["id"] || min["links"] == nil {
		t.Errorf("minimal replay: %d %v", status, min)
	}
	if p.Captures() != 1 {
		t.Errorf("replays captured: %d", p.Captures())
	}
	if status, _, got := c.do("GET", "/v2/checkout/orders/"+o["id"].(string), ""); status != 200 || got["status"] != "COMPLETED" {
		t.Errorf("get order: %d %v", status, got)
	}
	if status, _, got := c.do("GET", "/v2/payments/captures/"+captureID, ""); status != 200 || got["status"] != "COMPLETED" {
		t.Errorf("get capture: %d %v", status, got)
	}

	// Decline form 1: a COMPLETED order whose capture is DECLINED.
	status, _, o = c.do("POST", "/v2/checkout/orders", cardOrder("CCREJECT-REFUSED"))
	if status != 201 || o["status"] != "COMPLETED" ||
		get(o, "purchase_units", 0, "payments", "captures", 0, "status") != "DECLINED" ||
		get(o, "purchase_units", 0, "payments", "captures", 0, "processor_response", "response_code") != "0500" {
		t.Errorf("CCREJECT-REFUSED: %d %v", status, o)
	}
	// Decline form 2: the sandbox mock header.
	status, hdr, e := c.do("POST", "/v2/checkout/orders", cardOrder("Ada"), "PayPal-Mock-Response", `{"mock_application_codes":"INSTRUMENT_DECLINED"}`)
	if status != 422 || e["name"] != "UNPROCESSABLE_ENTITY" || issueOf(e) != "INSTRUMENT_DECLINED" || e["debug_id"] != hdr.Get("Paypal-Debug-Id") {
		t.Errorf("mocked decline: %d %v", status, e)
	}
	if status, _, e := c.do("POST", "/v2/checkout/orders", strings.Replace(cardOrder("Ada"), "2030-12", "2020-01", 1)); status != 422 || issueOf(e) != "CARD_EXPIRED" {
		t.Errorf("expired card: %d %v", status, e)
	}
	if status, _, e := c.do("POST", "/v2/checkout/orders", strings.Replace(ppWalletOrder, "149.00", "149.001", 1)); status != 422 || issueOf(e) != "DECIMAL_PRECISION" {
		t.Errorf("three decimals: %d %v", status, e)
	}
	if p.Captures() != 1 {
		t.Errorf("declines captured: %d", p.Captures())
	}

	// A wallet order waits for approval; capturing it is refused.
	status, _, w := c.do("POST", "/v2/checkout/orders", ppWalletOrder)
	if status != 201 || w["status"] != "CREATED" || !strings.Contains(fmt.Sprint(w["links"]), "approve") {
		t.Errorf("wallet order: %d %v", status, w)
	}
	if status, _, e := c.do("POST", "/v2/checkout/orders/"+w["id"].(string)+"/capture", `{}`); status != 422 || issueOf(e) != "ORDER_NOT_APPROVED" {
		t.Errorf("capture of a CREATED order: %d %v", status, e)
	}
	if status, _, e := c.do("POST", "/v2/checkout/orders/ABCDEFGHIJKLMNOPQ/capture", `{}`); status != 404 || issueOf(e) != "INVALID_RESOURCE_ID" {
		t.Errorf("capture of an unknown order: %d %v", status, e)
	}

	// An APPROVED card order is captured once.
	p.RequireApproval(true)
	status, _, a := c.do("POST", "/v2/checkout/orders", cardOrder("Ada"), "PayPal-Request-Id", "order-2")
	if status != 201 || a["status"] != "APPROVED" || get(a, "purchase_units", 0, "payments") != nil {
		t.Fatalf("approved order: %d %v", status, a)
	}
	capturePath := "/v2/checkout/orders/" + a["id"].(string) + "/capture"
	if status, _, got := c.do("POST", capturePath, `{}`, "PayPal-Request-Id", "order-2-capture"); status != 201 || got["status"] != "COMPLETED" {
		t.Errorf("capture: %d %v", status, got)
	}
	if status, _, got := c.do("POST", capturePath, `{}`, "PayPal-Request-Id", "order-2-capture"); status != 200 || got["status"] != "COMPLETED" {
		t.Errorf("capture replay: %d %v", status, got)
	}
	if status, _, e := c.do("POST", capturePath, `{}`); status != 422 || issueOf(e) != "ORDER_ALREADY_CAPTURED" {
		t.Errorf("second capture: %d %v", status, e)
	}
	if p.Captures() != 2 || p.CapturesFor("order-2") != 1 {
		t.Errorf("captures %d, for order-2 %d", p.Captures(), p.CapturesFor("order-2"))
	}
	p.RequireApproval(false)

	// Pending captures take no money until settled.
	p.PendCaptures(true)
	status, _, pend := c.do("POST", "/v2/checkout/orders", cardOrder("Ada"), "PayPal-Request-Id", "order-3")
	if status != 201 || get(pend, "purchase_units", 0, "payments", "captures", 0, "status") != "PENDING" ||
		get(pend, "purchase_units", 0, "payments", "captures", 0, "status_details", "reason") != "PENDING_REVIEW" {
		t.Errorf("pending: %d %v", status, pend)
	}
	p.PendCaptures(false)
	if p.CapturesFor("order-3") != 0 || p.SettlePending() != 1 || p.CapturesFor("order-3") != 1 {
		t.Error("settling a pending capture")
	}
	if _, _, now := c.do("POST", "/v2/checkout/orders", ppWalletOrder, "PayPal-Request-Id", "order-3"); get(now, "purchase_units", 0, "payments", "captures", 0, "status") != "COMPLETED" {
		t.Errorf("a replay does not show the order as it is now: %v", now)
	}

	// Request ids are forgotten after their TTL.
	p.ExpireRequestIDs()
	if status, _, fresh := c.do("POST", "/v2/checkout/orders", ppWalletOrder, "PayPal-Request-Id", "order-1"); status != 201 || fresh["status"] != "CREATED" {
		t.Errorf("after expiry: %d %v", status, fresh)
	}
	if err := p.Err(); err != nil {
		t.Errorf("Err() = %v", err)
	}
}

func TestPayPalFaults(t *testing.T) {
	t.Parallel()
	t.Run("fail next", func(t *testing.T) {
		t.Parallel()
		c := newPPCaller(t, t)
		c.p.FailNext(2, 503)
		for i, want := range []int{503, 503, 201} {
			status, _, body := c.do("POST", "/v2/checkout/orders", cardOrder("Ada"), "PayPal-Request-Id", "same")
			if status != want {
				t.Errorf("call %d: %d %v, want %d", i, status, body, want)
			}
			if status == 503 && body["name"] != "SERVICE_UNAVAILABLE" {
				t.Errorf("503 body %v", body)
			}
		}
		c.p.FailNext(1, 429)
		if status, hdr, body := c.do("POST", "/v2/checkout/orders", ppWalletOrder); status != 429 || hdr.Get("Retry-After") == "" || body["name"] != "RATE_LIMIT_REACHED" {
			t.Errorf("429: %d %v", status, body)
		}
		if c.p.Captures() != 1 {
			t.Errorf("captures %d, want 1", c.p.Captures())
		}
	})
	t.Run("hang completes the work", func(t *testing.T) {
		t.Parallel()
		c := newPPCaller(t, t)
		c.p.HangNext(1)
		req, _ := http.NewRequest("POST", c.p.URL()+"/v2/checkout/orders", strings.NewReader(cardOrder("Ada")))
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("PayPal-Request-Id", "hung")
		start := time.Now()
		if _, err := (&http.Client{Timeout: 200 * time.Millisecond}).Do(req); err == nil {
			t.Fatal("a hung call was answered")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("gave up after %v", d)
		}
		if c.p.CapturesFor("hung") != 1 {
			t.Error("the hung call was not processed")
		}
		if status, _, o := c.do("POST", "/v2/checkout/orders", ppWalletOrder, "PayPal-Request-Id", "hung"); status != 200 || o["status"] != "COMPLETED" {
			t.Errorf("replay after the hang: %d %v", status, o)
		}
	})
	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		c := newPPCaller(t, t)
		c.p.SetLatency(100 * time.Millisecond)
		start := time.Now()
		c.do("POST", "/v2/checkout/orders", ppWalletOrder)
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("answered after %v", d)
		}
		if c.p.Requests() != 2 {
			t.Errorf("Requests() = %d, want 2", c.p.Requests())
		}
	})
}

func TestPayPalRefunds(t *testing.T) {
	t.Parallel()
	c := newPPCaller(t, t)
	p := c.p
	_, _, o := c.do("POST", "/v2/checkout/orders", cardOrder("Ada"))
	capID := get(o, "purchase_units", 0, "payments", "captures", 0, "id").(string)
	refund := "/v2/payments/captures/" + capID + "/refund"

	status, _, r1 := c.do("POST", refund, `{"amount":{"currency_code":"EUR","value":"49.00"},"note_to_payer":"Partial"}`, "PayPal-Request-Id", "refund-1")
	if status != 201 || r1["status"] != "COMPLETED" || get(r1, "amount", "value") != "49.00" {
		t.Fatalf("partial refund: %d %v", status, r1)
	}
	status, _, again := c.do("POST", refund, `{"amount":{"currency_code":"EUR","value":"1.00"}}`, "PayPal-Request-Id", "refund-1")
	if status != 201 || again["id"] != r1["id"] || get(again, "amount", "value") != "49.00" {
		t.Errorf("refund replay: %d %v", status, again)
	}
	if p.Refunds() != 1 || p.CaptureStatus(capID) != "PARTIALLY_REFUNDED" {
		t.Errorf("after a partial refund: %d refunds, capture %s", p.Refunds(), p.CaptureStatus(capID))
	}
	for _, tc := range []struct{ body, issue string }{
		{`{"amount":{"currency_code":"EUR","value":"100.01"}}`, "REFUND_AMOUNT_EXCEEDED"},
		{`{"amount":{"currency_code":"USD","value":"1.00"}}`, "CURRENCY_MISMATCH"},
		{`{"amount":{"currency_code":"EUR","value":"1.001"}}`, "DECIMAL_PRECISION"},
	} {
		if status, _, e := c.do("POST", refund, tc.body); status != 422 || issueOf(e) != tc.issue {
			t.Errorf("refund %s: %d %v, want %s", tc.body, status, e, tc.issue)
		}
	}
	status, _, r2 := c.do("POST", refund, `{}`)
	if status != 201 || get(r2, "amount", "value") != "100.00" || p.CaptureStatus(capID) != "REFUNDED" {
		t.Errorf("refund of the rest: %d %v, capture %s", status, r2, p.CaptureStatus(capID))
	}
	if status, _, e := c.do("POST", refund, `{}`); status != 422 || issueOf(e) != "CAPTURE_FULLY_REFUNDED" {
		t.Errorf("refund of a refunded capture: %d %v", status, e)
	}
	if status, _, e := c.do("POST", "/v2/payments/captures/NOSUCHCAPTURE0000/refund", `{}`); status != 404 || issueOf(e) != "INVALID_RESOURCE_ID" {
		t.Errorf("refund of an unknown capture: %d %v", status, e)
	}
	_, _, d := c.do("POST", "/v2/checkout/orders", cardOrder("CCREJECT-IF"))
	declined := get(d, "purchase_units", 0, "payments", "captures", 0, "id").(string)
	if status, _, e := c.do("POST", "/v2/payments/captures/"+declined+"/refund", `{}`); status != 422 || issueOf(e) != "REFUND_NOT_ALLOWED" {
		t.Errorf("refund of a declined capture: %d %v", status, e)
	}
	if p.Refunds() != 2 || p.Captures() != 1 {
		t.Errorf("refunds %d, captures %d", p.Refunds(), p.Captures())
	}
}
