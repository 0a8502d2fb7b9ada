package providertest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/payment"
)

// PayPal is a strict fake of PayPal's REST API: OAuth2 client credentials
// (POST /v1/oauth2/token), Orders v2 (create, capture, get) and Payments v2
// (refund, get capture), behaving as PayPal documents them.
//
// Every request is checked against the official OpenAPI description (the
// token call, which has none, by hand), and must carry a Bearer token the
// fake issued and, on POST, a PayPal-Request-Id. A request that breaks the
// contract fails the test (tb.Errorf) and is answered with PayPal's error
// shape. A token that is unknown, expired or revoked is answered with a 401
// without failing the test: a client may hold one.
//
// PayPal-Request-Id works as PayPal documents it: a repeat of a successful
// create, capture or refund with the same id on the same endpoint returns the
// stored resource as it is now and ignores the new body; order create and
// capture replays answer 200 instead of 201 (as the Orders spec says), refund
// replays 201 (the only success the Payments spec defines for a refund).
// Error answers are not stored. Stored ids are kept 6 hours (orders) and 45
// days (payments), or until ExpireRequestIDs.
//
// Sandbox triggers: a card name starting with CCREJECT- gives a COMPLETED
// order whose capture is DECLINED (decline form 1); the header
// PayPal-Mock-Response: {"mock_application_codes":"INSTRUMENT_DECLINED"}
// gives that error (form 2, a 422 for card issues). A card expiry in the
// past is a 422 CARD_EXPIRED, a security code of the wrong length a 422
// INVALID_SECURITY_CODE_LENGTH.
//
// Faults (FailNext, HangNext) apply to API calls, not to token requests, and
// only to calls that pass validation and authentication. A hung or slow call
// is processed in full before its answer is held back, as when a response is
// lost on the way back.
type PayPal struct {
	tb           testing.TB
	srv          *httptest.Server
	conns        atomic.Int64 // connections accepted
	clientID     string
	clientSecret string
	orders       *Spec
	payments     *Spec
	closing      chan struct{}

	vmu        sync.Mutex
	violations []string

	mu              sync.Mutex
	tokenTTL        time.Duration
	tokens          map[string]time.Time // access token → expiry
	revoked         map[string]bool
	orderByID       map[string]*ppOrder
	captureByID     map[string]*ppCapture
	refundByID      map[string]*ppRefund
	replays         map[ppKey]ppReplay
	ordersKeyTTL    time.Duration
	paymentsKeyTTL  time.Duration
	failN           int
	failStatus      int
	failAfterN      int
	failAfterStatus int
	hangN           int
	latency         time.Duration
	requireApproval bool
	pendCaptures    bool
	pendRefunds     bool
	echoCard        bool
	echoCreds       bool
	refundRefusals  []string
	nTokens         int
	nRequests       int
	nRefunds        int
}

type ppKey struct{ endpoint, requestID string }

type ppReplay struct {
	id string // order, or refund id
	at time.Time
}

type ppOrder struct {
	id, status, requestID                         string
	referenceID, customID, invoiceID, description string
	currency, value                               string
	minor                                         int64
	card                                          *ppCard // no number or security code kept
	captures                                      []*ppCapture
	created, updated                              time.Time
}

type ppCard struct{ name, lastDigits, expiry, brand string }

type ppCapture struct {
	id, status, pendingReason string
	order                     *ppOrder
	minor, refunded           int64
	responseCode, avs, cvv    string
	tookMoney                 bool
	created, updated          time.Time
}

type ppRefund struct {
	id, status       string
	requestID        string
	seq              int
	capture          *ppCapture
	currency, value  string
	invoiceID, note  string
	created, updated time.Time
}

// NewPayPal starts a fake PayPal that accepts the given client credentials.
// The server is closed when the test ends.
func NewPayPal(tb testing.TB, clientID, clientSecret string) *PayPal {
	tb.Helper()
	orders, err := PayPalOrdersSpec()
	if err != nil {
		tb.Fatalf("paypal fake: %v", err)
	}
	payments, err := PayPalPaymentsSpec()
	if err != nil {
		tb.Fatalf("paypal fake: %v", err)
	}
	p := &PayPal{
		tb: tb, clientID: clientID, clientSecret: clientSecret,
		orders: orders, payments: payments, closing: make(chan struct{}),
		tokenTTL: 32400 * time.Second, tokens: map[string]time.Time{}, revoked: map[string]bool{},
		orderByID: map[string]*ppOrder{}, captureByID: map[string]*ppCapture{}, refundByID: map[string]*ppRefund{},
		replays: map[ppKey]ppReplay{}, ordersKeyTTL: 6 * time.Hour, paymentsKeyTTL: 45 * 24 * time.Hour,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/oauth2/token", p.serveToken)
	const ordersFile, paymentsFile = "paypal/checkout_orders_v2.json", "paypal/payments_payment_v2.json"
	mux.HandleFunc("POST /v2/checkout/orders",
		p.api(p.orders, ppOpTexts(ordersFile, "/v2/checkout/orders", "post"), p.createOrder))
	mux.HandleFunc("GET /v2/checkout/orders/{id}",
		p.api(p.orders, ppOpTexts(ordersFile, "/v2/checkout/orders/{id}", "get"), p.getOrder))
	mux.HandleFunc("POST /v2/checkout/orders/{id}/capture",
		p.api(p.orders, ppOpTexts(ordersFile, "/v2/checkout/orders/{id}/capture", "post"), p.captureOrder))
	mux.HandleFunc("GET /v2/payments/captures/{id}",
		p.api(p.payments, ppOpTexts(paymentsFile, "/v2/payments/captures/{capture_id}", "get"), p.getCapture))
	mux.HandleFunc("POST /v2/payments/captures/{id}/refund",
		p.api(p.payments, ppOpTexts(paymentsFile, "/v2/payments/captures/{capture_id}/refund", "post"), p.refundCapture))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		p.count()
		id := ppDebugID()
		w.Header().Set("Paypal-Debug-Id", id)
		p.report("%s %s is not an operation this fake serves", r.Method, r.URL.Path)
		ppWriteJSON(w, http.StatusNotFound, ppWithDebugID(ppErrorBody(http.StatusNotFound, "INVALID_RESOURCE_ID", ppTexts{}), id))
	})
	p.srv = httptest.NewUnstartedServer(mux)
	p.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			p.conns.Add(1)
		}
	}
	p.srv.Start()
	tb.Cleanup(func() {
		close(p.closing) // releases hung requests
		p.srv.Close()
	})
	return p
}

// Connections is how many connections clients opened to the fake.
func (p *PayPal) Connections() int { return int(p.conns.Load()) }

// URL is the fake's base URL, for paypal.New and PAYPAL_API_BASE.
func (p *PayPal) URL() string { return p.srv.URL }

// FailNext makes the next n API calls fail with status (500, 503, 429, ...)
// before anything is processed.
func (p *PayPal) FailNext(n, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failN, p.failStatus = n, status
}

// FailAfterNext makes the next n API calls be processed (an order created
// and captured, a refund made) and then answered with status (500, 503, ...)
// as a gateway failing after PayPal acted would: the outcome is unknown to
// the client until it asks again with the same PayPal-Request-Id.
func (p *PayPal) FailAfterNext(n, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failAfterN, p.failAfterStatus = n, status
}

// EchoCardInErrors makes error answers to calls whose body holds a card
// number echo it, as PayPal's INVALID_PARAMETER_VALUE details do: in the
// detail's value, and in its description with spaces between groups of four.
func (p *PayPal) EchoCardInErrors(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.echoCard = on
}

// EchoCredentialsInErrors makes error answers quote the request's
// Authorization header, as a misbehaving gateway or proxy might: the Basic
// client credentials in a refused token request's error_description, the
// Bearer access token in the first detail of an API call's error.
func (p *PayPal) EchoCredentialsInErrors(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.echoCreds = on
}

// SetLatency delays every answer (token requests too) by d.
func (p *PayPal) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// HangNext makes the next n API calls be processed but never answered: the
// handler waits until the client gives up (or the test ends).
func (p *PayPal) HangNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hangN = n
}

// SetTokenTTL sets the lifetime of the access tokens issued from now on
// (default 9 hours). The token answer states it as expires_in, rounded up to
// whole seconds, so a lifetime under a second outlives the fake's own view:
// the client then meets a 401 for an expired token.
func (p *PayPal) SetTokenTTL(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenTTL = d
}

// ExpireTokens ends the lifetime of every access token issued so far, as if
// their TTL had passed: calls with one get a 401 AUTHENTICATION_FAILURE.
func (p *PayPal) ExpireTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for tok := range p.tokens {
		p.tokens[tok] = past
	}
}

// RevokeTokens invalidates every access token issued so far. Calls with one
// get PayPal's OAuth-shaped 401 invalid_token ("Access Token not found in
// cache").
func (p *PayPal) RevokeTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for tok := range p.tokens {
		p.revoked[tok] = true
		delete(p.tokens, tok)
	}
}

// RequireApproval makes card orders come back APPROVED instead of COMPLETED,
// so that they need a capture call.
func (p *PayPal) RequireApproval(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requireApproval = on
}

// PendCaptures makes new captures PENDING (status_details.reason
// PENDING_REVIEW) instead of COMPLETED.
func (p *PayPal) PendCaptures(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pendCaptures = on
}

// PendRefunds makes new refunds PENDING (status_details.reason ECHECK)
// instead of COMPLETED.
func (p *PayPal) PendRefunds(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pendRefunds = on
}

// RefuseRefunds makes the next refunds (one per issue) answer 422 with
// these issues, e.g. REFUND_TIME_LIMIT_EXCEEDED for a capture too old to
// refund. Like every error answer, a refusal is not stored under its
// PayPal-Request-Id.
func (p *PayPal) RefuseRefunds(issues ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refundRefusals = append(p.refundRefusals, issues...)
}

// RefundsOf lists the refunds of a capture as "VALUE CURRENCY STATUS",
// oldest first.
func (p *PayPal) RefundsOf(captureID string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rs []*ppRefund
	for _, rf := range p.refundByID {
		if rf.capture.id == captureID {
			rs = append(rs, rf)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].seq < rs[j].seq })
	out := make([]string, len(rs))
	for i, rf := range rs {
		out[i] = rf.value + " " + rf.currency + " " + rf.status
	}
	return out
}

// RefundRequestID is the PayPal-Request-Id the refund with this id was
// made with.
func (p *PayPal) RefundRequestID(refundID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rf := p.refundByID[refundID]; rf != nil {
		return rf.requestID
	}
	return ""
}

// SettlePending completes every PENDING capture and reports how many.
func (p *PayPal) SettlePending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.captureByID {
		if c.status == "PENDING" {
			c.status, c.pendingReason, c.tookMoney = "COMPLETED", "", true
			c.updated = time.Now().UTC()
			n++
		}
	}
	return n
}

// ExpireRequestIDs forgets every stored PayPal-Request-Id, as PayPal does
// after 6 hours (orders) or 45 days (payments).
func (p *PayPal) ExpireRequestIDs() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.replays)
}

// Captures counts the captures that took money (COMPLETED, whether refunded
// since or not).
func (p *PayPal) Captures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.captureByID {
		if c.tookMoney {
			n++
		}
	}
	return n
}

// CapturesFor counts the captures that took money on orders created with
// PayPal-Request-Id requestID.
func (p *PayPal) CapturesFor(requestID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.captureByID {
		if c.tookMoney && c.order.requestID == requestID {
			n++
		}
	}
	return n
}

// CaptureStatus is the status of the capture with that id ("COMPLETED",
// "DECLINED", "REFUNDED", ...), or "" when there is none.
func (p *PayPal) CaptureStatus(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.captureByID[id]; c != nil {
		return c.status
	}
	return ""
}

// Refunds counts the refunds made (replays not counted).
func (p *PayPal) Refunds() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nRefunds
}

// TokenRequests counts the token requests that were answered with a token.
func (p *PayPal) TokenRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nTokens
}

// Requests counts every request the fake received, token requests included.
func (p *PayPal) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nRequests
}

// Err joins the contract violations seen so far (each was also reported
// with tb.Errorf).
func (p *PayPal) Err() error {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	errs := make([]error, len(p.violations))
	for i, v := range p.violations {
		errs[i] = errors.New(v)
	}
	return errors.Join(errs...)
}

func (p *PayPal) count() {
	p.mu.Lock()
	p.nRequests++
	p.mu.Unlock()
}

// report records a contract violation and fails the test. It takes only
// vmu, so it may be called with p.mu held.
func (p *PayPal) report(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.vmu.Lock()
	p.violations = append(p.violations, msg)
	p.vmu.Unlock()
	p.tb.Errorf("paypal fake: %s", msg)
}

// serveToken is POST /v1/oauth2/token, checked by hand.
func (p *PayPal) serveToken(w http.ResponseWriter, r *http.Request) {
	p.count()
	debugID := ppDebugID()
	w.Header().Set("Paypal-Debug-Id", debugID)
	p.mu.Lock()
	echoCreds := p.echoCreds
	p.mu.Unlock()
	oauthErr := func(status int, code, desc string) {
		if echoCreds {
			desc += " for Authorization: " + r.Header.Get("Authorization")
		}
		ppWriteJSON(w, status, map[string]any{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		p.report("token request with method %s, want POST", r.Method)
		oauthErr(http.StatusMethodNotAllowed, "invalid_request", "Method not allowed")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		p.report("token request with Content-Type %q, want application/x-www-form-urlencoded", r.Header.Get("Content-Type"))
		oauthErr(http.StatusBadRequest, "invalid_request", "Unsupported content type")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		p.report("token request without HTTP Basic client credentials")
		oauthErr(http.StatusUnauthorized, "invalid_client", "Client Authentication failed")
		return
	}
	if err := r.ParseForm(); err != nil {
		p.report("token request body: %v", err)
		oauthErr(http.StatusBadRequest, "invalid_request", "Malformed request")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" || len(r.PostForm) != 1 {
		p.report("token request form %q, want grant_type=client_credentials", r.PostForm.Encode())
		oauthErr(http.StatusBadRequest, "unsupported_grant_type", "Grant Type is NULL or not supported")
		return
	}
	p.mu.Lock()
	latency := p.latency
	if id != p.clientID || secret != p.clientSecret {
		p.mu.Unlock()
		oauthErr(http.StatusUnauthorized, "invalid_client", "Client Authentication failed")
		return
	}
	tok := "A21AA" + ppRandom(48)
	ttl := p.tokenTTL
	p.tokens[tok] = time.Now().Add(ttl)
	p.nTokens++
	p.mu.Unlock()
	if !p.pause(r, latency, false) {
		return
	}
	ppWriteJSON(w, http.StatusOK, map[string]any{
		"scope":        "https://uri.paypal.com/services/payments/payment/authcapture https://uri.paypal.com/services/payments/refund openid",
		"access_token": tok,
		"token_type":   "Bearer",
		"app_id":       "APP-80W284485P519543T",
		"expires_in":   max(int64(math.Ceil(ttl.Seconds())), 1),
		"nonce":        time.Now().UTC().Format(time.RFC3339) + ppRandom(16),
	})
}

// ppResult is what an operation answers: a status and a JSON value.
type ppResult struct {
	status int
	body   any    // nil for an error: built from issue
	issue  string // details[0].issue of an error, if any
}

// ppFail is an error answer in PayPal's shape.
func ppFail(status int, issue string) ppResult { return ppResult{status: status, issue: issue} }

// api wraps an operation with the checks every API call goes through:
// media type, spec, Bearer token, PayPal-Request-Id, injected faults, the
// sandbox mock header; then latency or a hang after processing. op runs
// with p.mu held.
func (p *PayPal) api(spec *Spec, texts ppTexts, op func(r *http.Request, body []byte) ppResult) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.count()
		debugID := ppDebugID()
		w.Header().Set("Paypal-Debug-Id", debugID)
		echo := "" // the card number an error answer echoes
		p.mu.Lock()
		echoCreds := p.echoCreds
		p.mu.Unlock()
		answer := func(res ppResult) {
			if res.status >= 400 && res.body == nil {
				res.body = ppErrorBody(res.status, res.issue, texts)
			}
			if res.status >= 400 && echo != "" {
				res.body = ppEchoCard(res.body, echo)
			}
			if res.status >= 400 && echoCreds {
				res.body = ppEchoAuthorization(res.body, r.Header.Get("Authorization"))
			}
			if res.status >= 400 {
				res.body = ppWithDebugID(res.body, debugID)
			}
			ppWriteJSON(w, res.status, res.body)
		}
		where := r.Method + " " + r.URL.Path
		if r.Method == http.MethodPost {
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
				p.report("%s: Content-Type %q, want application/json", where, r.Header.Get("Content-Type"))
				answer(ppFail(http.StatusUnsupportedMediaType, ""))
				return
			}
		}
		if err := spec.Validate(r); err != nil {
			p.report("%v", err)
			answer(ppFail(http.StatusBadRequest, "INVALID_PARAMETER_SYNTAX"))
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			answer(ppFail(http.StatusBadRequest, "MALFORMED_REQUEST_JSON"))
			return
		}
		p.mu.Lock()
		if p.echoCard {
			echo = ppCardNumber(body)
		}
		p.mu.Unlock()
		if res, ok := p.authenticate(r, where); !ok {
			answer(res)
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("PayPal-Request-Id") == "" {
			issue := "MISSING_REQUIRED_PARAMETER"
			if r.URL.Path == "/v2/checkout/orders" && strings.Contains(string(body), `"payment_source"`) {
				issue = "PAYPAL_REQUEST_ID_REQUIRED"
			}
			p.report("%s without PayPal-Request-Id", where)
			answer(ppFail(http.StatusBadRequest, issue))
			return
		}

		p.mu.Lock()
		latency, fail, hang := p.latency, 0, false
		if p.failN > 0 {
			p.failN--
			fail = p.failStatus
		} else if p.hangN > 0 {
			p.hangN--
			hang = true
		}
		p.mu.Unlock()
		if fail != 0 {
			if !p.pause(r, latency, false) {
				return
			}
			if fail == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "1")
			}
			answer(ppFail(fail, ""))
			return
		}
		if mock := r.Header.Get("PayPal-Mock-Response"); mock != "" {
			var m struct {
				Code string `json:"mock_application_codes"`
			}
			if err := json.Unmarshal([]byte(mock), &m); err != nil || m.Code == "" {
				p.report("%s: PayPal-Mock-Response %q is not {\"mock_application_codes\":\"CODE\"}", where, mock)
				answer(ppFail(http.StatusBadRequest, "INVALID_PARAMETER_VALUE"))
				return
			}
			if !p.pause(r, latency, false) {
				return
			}
			answer(ppFail(ppMockStatus(m.Code), m.Code))
			return
		}

		p.mu.Lock()
		res := op(r, body)
		failAfter := 0
		if p.failAfterN > 0 {
			p.failAfterN--
			failAfter = p.failAfterStatus
		}
		p.mu.Unlock()
		if !p.pause(r, latency, hang) {
			return
		}
		if failAfter != 0 {
			answer(ppFail(failAfter, ""))
			return
		}
		answer(res)
	}
}

// authenticate checks the Bearer token.
func (p *PayPal) authenticate(r *http.Request, where string) (ppResult, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		p.report("%s without a Bearer token", where)
		return ppFail(http.StatusUnauthorized, ""), false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revoked[tok] {
		return ppResult{status: http.StatusUnauthorized, body: map[string]any{
			"error": "invalid_token", "error_description": "Access Token not found in cache"}}, false
	}
	exp, known := p.tokens[tok]
	if !known || time.Now().After(exp) {
		return ppFail(http.StatusUnauthorized, ""), false
	}
	return ppResult{}, true
}

// pause holds an answer back for d, or, when hang, until the client gives
// up. It reports whether to answer at all.
func (p *PayPal) pause(r *http.Request, d time.Duration, hang bool) bool {
	var timeout <-chan time.Time
	if !hang {
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-r.Context().Done():
		return false
	case <-p.closing:
		return false
	}
}

// replay finds the resource a request id stored on an endpoint.
func (p *PayPal) replay(key ppKey, ttl time.Duration) (string, bool) {
	rp, ok := p.replays[key]
	if !ok {
		return "", false
	}
	if time.Since(rp.at) > ttl {
		delete(p.replays, key)
		return "", false
	}
	return rp.id, true
}

func (p *PayPal) remember(key ppKey, id string) {
	p.replays[key] = ppReplay{id: id, at: time.Now()}
}

// createOrder is POST /v2/checkout/orders.
func (p *PayPal) createOrder(r *http.Request, body []byte) ppResult {
	key := ppKey{"POST /v2/checkout/orders", r.Header.Get("PayPal-Request-Id")}
	if id, ok := p.replay(key, p.ordersKeyTTL); ok {
		return ppResult{status: http.StatusOK, body: p.orderJSON(p.orderByID[id], ppRepresentation(r))}
	}
	var req struct {
		Intent        string `json:"intent"`
		PurchaseUnits []struct {
			ReferenceID string  `json:"reference_id"`
			CustomID    string  `json:"custom_id"`
			InvoiceID   string  `json:"invoice_id"`
			Description string  `json:"description"`
			Amount      ppMoney `json:"amount"`
		} `json:"purchase_units"`
		PaymentSource map[string]json.RawMessage `json:"payment_source"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return ppFail(http.StatusBadRequest, "MALFORMED_REQUEST_JSON")
	}
	if req.Intent != "CAPTURE" || len(req.PurchaseUnits) != 1 {
		p.report("create order: the fake serves intent CAPTURE with one purchase unit, got %q with %d", req.Intent, len(req.PurchaseUnits))
		return ppFail(http.StatusUnprocessableEntity, "UNSUPPORTED_INTENT")
	}
	pu := req.PurchaseUnits[0]
	minor, issue := ppParseAmount(pu.Amount)
	if issue != "" {
		return ppFail(http.StatusUnprocessableEntity, issue)
	}
	now := time.Now().UTC()
	o := &ppOrder{
		id: ppID(), status: "CREATED", requestID: key.requestID,
		referenceID: pu.ReferenceID, customID: pu.CustomID, invoiceID: pu.InvoiceID, description: pu.Description,
		currency: pu.Amount.CurrencyCode, value: pu.Amount.Value, minor: minor, created: now, updated: now,
	}
	if o.referenceID == "" {
		o.referenceID = "default"
	}
	if len(req.PaymentSource) > 0 {
		raw, ok := req.PaymentSource["card"]
		if !ok || len(req.PaymentSource) != 1 {
			p.report("create order: the fake serves payment_source.card only")
			return ppFail(http.StatusUnprocessableEntity, "PAYMENT_SOURCE_CANNOT_BE_USED")
		}
		card, res, ok := ppCheckCard(raw, now)
		if !ok {
			return res
		}
		o.card = card
		if p.requireApproval {
			o.status = "APPROVED"
		} else {
			p.capture(o, now)
		}
	}
	p.orderByID[o.id] = o
	p.remember(key, o.id)
	return ppResult{status: http.StatusCreated, body: p.orderJSON(o, ppRepresentation(r))}
}

// ppCheckCard reads payment_source.card and applies the card checks of the
// sandbox. It keeps neither the number nor the security code.
func ppCheckCard(raw json.RawMessage, now time.Time) (*ppCard, ppResult, bool) {
	var c struct {
		Name         string `json:"name"`
		Number       string `json:"number"`
		Expiry       string `json:"expiry"`
		SecurityCode string `json:"security_code"`
	}
	fail := func(issue string) (*ppCard, ppResult, bool) {
		return nil, ppFail(http.StatusUnprocessableEntity, issue), false
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, ppFail(http.StatusBadRequest, "MALFORMED_REQUEST_JSON"), false
	}
	if c.Number == "" {
		return fail("CARD_NUMBER_REQUIRED")
	}
	if c.Expiry == "" {
		return fail("CARD_EXPIRY_REQUIRED")
	}
	if len(c.Expiry) != 7 { // the spec allows only YYYY-MM
		return fail("INVALID_EXPIRY_DATE")
	}
	y, _ := strconv.Atoi(c.Expiry[:4])
	m, _ := strconv.Atoi(c.Expiry[5:])
	if y < now.Year() || (y == now.Year() && m < int(now.Month())) {
		return fail("CARD_EXPIRED")
	}
	brand := payment.Brand(c.Number)
	if c.SecurityCode != "" {
		want := 3
		if brand == "amex" {
			want = 4
		}
		if len(c.SecurityCode) != want {
			return fail("INVALID_SECURITY_CODE_LENGTH")
		}
	}
	pb := map[string]string{"visa": "VISA", "mastercard": "MASTERCARD", "amex": "AMEX", "discover": "DISCOVER",
		"jcb": "JCB", "diners": "DINERS"}[brand]
	if pb == "" {
		pb = "UNKNOWN"
	}
	return &ppCard{name: c.Name, lastDigits: payment.Last4(c.Number), expiry: c.Expiry, brand: pb}, ppResult{}, true
}

// ccReject maps the sandbox rejection names to processor response codes.
var ccReject = map[string]string{
	"CCREJECT-REFUSED": "0500", "CCREJECT-SF": "9500", "CCREJECT-EC": "5400", "CCREJECT-IRC": "5180",
	"CCREJECT-IF": "5120", "CCREJECT-LS": "9520", "CCREJECT-IA": "1330", "CCREJECT-BANK_ERROR": "5100",
	"CCREJECT-CVV_F": "00N7",
}

// capture captures an order's amount, following the sandbox triggers.
func (p *PayPal) capture(o *ppOrder, now time.Time) {
	c := &ppCapture{id: ppID(), order: o, minor: o.minor, created: now, updated: now}
	switch {
	case o.card != nil && strings.HasPrefix(o.card.name, "CCREJECT-"):
		code, ok := ccReject[o.card.name]
		if !ok {
			code = "5100"
		}
		c.status, c.responseCode, c.avs, c.cvv = "DECLINED", code, "G", "P"
	case p.pendCaptures:
		c.status, c.pendingReason, c.responseCode, c.avs, c.cvv = "PENDING", "PENDING_REVIEW", "0000", "Y", "M"
	default:
		c.status, c.responseCode, c.avs, c.cvv, c.tookMoney = "COMPLETED", "0000", "Y", "M", true
	}
	o.captures = append(o.captures, c)
	o.status, o.updated = "COMPLETED", now
	p.captureByID[c.id] = c
}

// captureOrder is POST /v2/checkout/orders/{id}/capture.
func (p *PayPal) captureOrder(r *http.Request, _ []byte) ppResult {
	o := p.orderByID[r.PathValue("id")]
	if o == nil {
		return ppFail(http.StatusNotFound, "INVALID_RESOURCE_ID")
	}
	key := ppKey{"POST " + r.URL.Path, r.Header.Get("PayPal-Request-Id")}
	if _, ok := p.replay(key, p.ordersKeyTTL); ok {
		return ppResult{status: http.StatusOK, body: p.orderJSON(o, ppRepresentation(r))}
	}
	switch o.status {
	case "APPROVED":
	case "COMPLETED":
		return ppFail(http.StatusUnprocessableEntity, "ORDER_ALREADY_CAPTURED")
	default:
		return ppFail(http.StatusUnprocessableEntity, "ORDER_NOT_APPROVED")
	}
	p.capture(o, time.Now().UTC())
	p.remember(key, o.id)
	return ppResult{status: http.StatusCreated, body: p.orderJSON(o, ppRepresentation(r))}
}

// getOrder is GET /v2/checkout/orders/{id}.
func (p *PayPal) getOrder(r *http.Request, _ []byte) ppResult {
	o := p.orderByID[r.PathValue("id")]
	if o == nil {
		return ppFail(http.StatusNotFound, "INVALID_RESOURCE_ID")
	}
	return ppResult{status: http.StatusOK, body: p.orderJSON(o, true)}
}

// getCapture is GET /v2/payments/captures/{id}.
func (p *PayPal) getCapture(r *http.Request, _ []byte) ppResult {
	c := p.captureByID[r.PathValue("id")]
	if c == nil {
		return ppFail(http.StatusNotFound, "INVALID_RESOURCE_ID")
	}
	return ppResult{status: http.StatusOK, body: p.captureJSON(c)}
}

// refundCapture is POST /v2/payments/captures/{id}/refund.
func (p *PayPal) refundCapture(r *http.Request, body []byte) ppResult {
	c := p.captureByID[r.PathValue("id")]
	if c == nil {
		return ppFail(http.StatusNotFound, "INVALID_RESOURCE_ID")
	}
	key := ppKey{"POST " + r.URL.Path, r.Header.Get("PayPal-Request-Id")}
	if id, ok := p.replay(key, p.paymentsKeyTTL); ok {
		// The Payments spec defines no 200 for a refund: a replay is a 201.
		return ppResult{status: http.StatusCreated, body: p.refundJSON(p.refundByID[id])}
	}
	fail := func(issue string) ppResult {
		return ppFail(http.StatusUnprocessableEntity, issue)
	}
	var req struct {
		Amount      *ppMoney `json:"amount"`
		InvoiceID   string   `json:"invoice_id"`
		NoteToPayer string   `json:"note_to_payer"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return ppFail(http.StatusBadRequest, "MALFORMED_REQUEST_JSON")
		}
	}
	if len(p.refundRefusals) > 0 {
		issue := p.refundRefusals[0]
		p.refundRefusals = p.refundRefusals[1:]
		return fail(issue)
	}
	switch c.status {
	case "COMPLETED", "PARTIALLY_REFUNDED":
	case "REFUNDED":
		return fail("CAPTURE_FULLY_REFUNDED")
	case "PENDING":
		return fail("PENDING_CAPTURE")
	default:
		return fail("REFUND_NOT_ALLOWED")
	}
	o := c.order
	remaining := c.minor - c.refunded
	amount := remaining
	if req.Amount != nil {
		if req.Amount.CurrencyCode != o.currency {
			return fail("CURRENCY_MISMATCH")
		}
		v, issue := ppParseAmount(*req.Amount)
		if issue != "" {
			return fail(issue)
		}
		if v > remaining {
			return fail("REFUND_AMOUNT_EXCEEDED")
		}
		amount = v
	}
	now := time.Now().UTC()
	status := "COMPLETED"
	if p.pendRefunds {
		status = "PENDING"
	}
	rf := &ppRefund{
		id: ppID(), status: status, requestID: key.requestID, seq: p.nRefunds, capture: c, currency: o.currency,
		value: ppFormatAmount(amount, o.currency), invoiceID: req.InvoiceID, note: req.NoteToPayer,
		created: now, updated: now,
	}
	c.refunded += amount
	c.status, c.updated = "PARTIALLY_REFUNDED", now
	if c.refunded == c.minor {
		c.status = "REFUNDED"
	}
	p.refundByID[rf.id] = rf
	p.nRefunds++
	p.remember(key, rf.id)
	return ppResult{status: http.StatusCreated, body: p.refundJSON(rf)}
}

// JSON shapes.

type ppMoney struct {
	CurrencyCode string `json:"currency_code"`
	Value        string `json:"value"`
}

func ppLink(href, rel, method string) map[string]string {
	return map[string]string{"href": href, "rel": rel, "method": method}
}

func ppTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ppRepresentation reports whether the request asked for the whole resource.
func ppRepresentation(r *http.Request) bool {
	return r.Header.Get("Prefer") == "return=representation"
}

func (p *PayPal) orderJSON(o *ppOrder, full bool) map[string]any {
	self := p.srv.URL + "/v2/checkout/orders/" + o.id
	links := []any{ppLink(self, "self", "GET")}
	switch o.status {
	case "CREATED":
		links = append(links, ppLink("https://www.sandbox.paypal.com/checkoutnow?token="+o.id, "approve", "GET"),
			ppLink(self, "update", "PATCH"), ppLink(self+"/capture", "capture", "POST"))
	case "APPROVED":
		links = append(links, ppLink(self, "update", "PATCH"), ppLink(self+"/capture", "capture", "POST"))
	}
	m := map[string]any{"id": o.id, "status": o.status, "links": links}
	if !full {
		return m
	}
	m["intent"] = "CAPTURE"
	m["create_time"], m["update_time"] = ppTime(o.created), ppTime(o.updated)
	if o.card != nil {
		card := map[string]any{"last_digits": o.card.lastDigits, "expiry": o.card.expiry, "brand": o.card.brand, "type": "CREDIT"}
		if o.card.name != "" {
			card["name"] = o.card.name
		}
		m["payment_source"] = map[string]any{"card": card}
	}
	pu := map[string]any{
		"reference_id": o.referenceID,
		"amount":       ppMoney{o.currency, o.value},
		"payee":        map[string]any{"merchant_id": "7KNGBPH2U58GQ", "email_address": "merchant@example.com"},
	}
	for k, v := range map[string]string{"custom_id": o.customID, "invoice_id": o.invoiceID, "description": o.description} {
		if v != "" {
			pu[k] = v
		}
	}
	if len(o.captures) > 0 {
		cs := make([]any, len(o.captures))
		for i, c := range o.captures {
			cs[i] = p.captureJSON(c)
		}
		pu["payments"] = map[string]any{"captures": cs}
	}
	m["purchase_units"] = []any{pu}
	return m
}

func (p *PayPal) captureJSON(c *ppCapture) map[string]any {
	self := p.srv.URL + "/v2/payments/captures/" + c.id
	m := map[string]any{
		"id":                 c.id,
		"status":             c.status,
		"amount":             ppMoney{c.order.currency, c.order.value},
		"final_capture":      true,
		"seller_protection":  map[string]any{"status": "NOT_ELIGIBLE"},
		"processor_response": map[string]any{"avs_code": c.avs, "cvv_code": c.cvv, "response_code": c.responseCode},
		"links": []any{ppLink(self, "self", "GET"), ppLink(self+"/refund", "refund", "POST"),
			ppLink(p.srv.URL+"/v2/checkout/orders/"+c.order.id, "up", "GET")},
		"create_time": ppTime(c.created),
		"update_time": ppTime(c.updated),
	}
	if c.pendingReason != "" {
		m["status_details"] = map[string]any{"reason": c.pendingReason}
	}
	if c.order.customID != "" {
		m["custom_id"] = c.order.customID
	}
	if c.order.invoiceID != "" {
		m["invoice_id"] = c.order.invoiceID
	}
	return m
}

func (p *PayPal) refundJSON(rf *ppRefund) map[string]any {
	m := map[string]any{
		"id":     rf.id,
		"status": rf.status,
		"amount": ppMoney{rf.currency, rf.value},
		"links": []any{ppLink(p.srv.URL+"/v2/payments/refunds/"+rf.id, "self", "GET"),
			ppLink(p.srv.URL+"/v2/payments/captures/"+rf.capture.id, "up", "GET")},
		"create_time": ppTime(rf.created),
		"update_time": ppTime(rf.updated),
	}
	if rf.status == "PENDING" {
		m["status_details"] = map[string]string{"reason": "ECHECK"}
	}
	if rf.invoiceID != "" {
		m["invoice_id"] = rf.invoiceID
	}
	if rf.note != "" {
		m["note_to_payer"] = rf.note
	}
	return m
}

// Errors.

var ppErrorNames = map[int][2]string{
	400: {"INVALID_REQUEST", "Request is not well-formed, syntactically incorrect, or violates schema."},
	401: {"AUTHENTICATION_FAILURE", "Authentication failed due to missing authorization header, or invalid authentication credentials."},
	403: {"NOT_AUTHORIZED", "Authorization failed due to insufficient permissions."},
	404: {"RESOURCE_NOT_FOUND", "The specified resource does not exist."},
	409: {"RESOURCE_CONFLICT", "The server has detected a conflict while processing this request."},
	415: {"UNSUPPORTED_MEDIA_TYPE", "The server does not support the request payload's media type."},
	422: {"UNPROCESSABLE_ENTITY", "The requested action could not be performed, semantically incorrect, or failed business validation."},
	429: {"RATE_LIMIT_REACHED", "Too many requests. Blocked due to rate limiting."},
	500: {"INTERNAL_SERVER_ERROR", "An internal server error occurred."},
	503: {"SERVICE_UNAVAILABLE", "Service Unavailable."},
}

// ppTexts gives an error issue its description as the spec words it. The
// specs enumerate, per operation and status, each issue with its exact
// description; the same issue may be worded differently elsewhere.
type ppTexts struct {
	byStatus map[int]map[string]string // from the operation's responses
	anywhere map[string]string         // first wording in the whole file
}

func (t ppTexts) text(status int, issue string) (string, bool) {
	if d, ok := t.byStatus[status][issue]; ok {
		return d, true
	}
	d, ok := t.anywhere[issue]
	return d, ok
}

var (
	ppTextsMu    sync.Mutex
	ppTextsCache = map[string]ppTexts{} // by file, path and method; read-only once built
)

// ppOpTexts collects the issue descriptions of one operation (path as in
// the spec, method in lower case), once per test binary.
func ppOpTexts(file, path, method string) ppTexts {
	ppTextsMu.Lock()
	defer ppTextsMu.Unlock()
	key := file + " " + method + " " + path
	if t, ok := ppTextsCache[key]; ok {
		return t
	}
	var root any
	if data, err := specFS.ReadFile("apispecs/" + file); err == nil {
		_ = json.Unmarshal(data, &root)
	}
	t := ppTexts{byStatus: map[int]map[string]string{}, anywhere: map[string]string{}}
	ppCollect(root, root, t.anywhere, nil)
	responses, _ := ppAt(root, "paths", path, method, "responses").(map[string]any)
	for code, resp := range responses {
		status, err := strconv.Atoi(code)
		if err != nil {
			continue
		}
		m := map[string]string{}
		ppCollect(root, resp, m, map[string]bool{})
		t.byStatus[status] = m
	}
	ppTextsCache[key] = t
	return t
}

// ppCollect finds {"properties": {"issue": {"enum": [I]}, "description":
// {"enum": [D]}}} under node. With seen non-nil it follows $refs.
func ppCollect(root, node any, out map[string]string, seen map[string]bool) {
	switch v := node.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok && seen != nil {
			if seen[ref] {
				return
			}
			seen[ref] = true
			var keys []string
			for _, k := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
				keys = append(keys, strings.ReplaceAll(strings.ReplaceAll(k, "~1", "/"), "~0", "~"))
			}
			ppCollect(root, ppAt(root, keys...), out, seen)
			return
		}
		if props, ok := v["properties"].(map[string]any); ok {
			issue, _ := ppAt(props, "issue", "enum").([]any)
			desc, _ := ppAt(props, "description", "enum").([]any)
			if len(issue) == 1 && len(desc) == 1 {
				i, _ := issue[0].(string)
				d, _ := desc[0].(string)
				if _, dup := out[i]; !dup && i != "" {
					out[i] = d
				}
			}
		}
		for _, x := range v {
			ppCollect(root, x, out, seen)
		}
	case []any:
		for _, x := range v {
			ppCollect(root, x, out, seen)
		}
	}
}

// ppAt follows map keys.
func ppAt(v any, keys ...string) any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

// ppMockStatus is the HTTP status PayPal answers a mocked issue with.
func ppMockStatus(issue string) int {
	switch issue {
	case "INTERNAL_SERVER_ERROR":
		return 500
	case "SERVICE_UNAVAILABLE":
		return 503
	case "RATE_LIMIT_REACHED":
		return 429
	case "PERMISSION_DENIED", "NOT_AUTHORIZED":
		return 403
	case "INVALID_RESOURCE_ID":
		return 404
	case "PREVIOUS_REQUEST_IN_PROGRESS":
		return 409
	case "MALFORMED_REQUEST_JSON", "INVALID_PARAMETER_VALUE", "INVALID_PARAMETER_SYNTAX",
		"MISSING_REQUIRED_PARAMETER", "INVALID_STRING_LENGTH", "PAYPAL_REQUEST_ID_REQUIRED":
		return 400
	}
	return 422
}

// ppErrorBody is PayPal's error shape (debug_id added when written), with
// the issue's description as the spec gives it.
func ppErrorBody(status int, issue string, texts ppTexts) map[string]any {
	nm, ok := ppErrorNames[status]
	if !ok {
		nm = [2]string{"INTERNAL_SERVER_ERROR", "An internal server error occurred."}
	}
	m := map[string]any{"name": nm[0], "message": nm[1]}
	if issue != "" {
		description, ok := texts.text(status, issue)
		if !ok {
			description = strings.ReplaceAll(strings.ToLower(issue), "_", " ") + "."
		}
		m["details"] = []any{map[string]string{"issue": issue, "description": description}}
		m["links"] = []any{ppLink("https://developer.paypal.com/api/rest/reference/orders/v2/errors/#"+issue, "information_link", "GET")}
	}
	return m
}

// ppCardNumber is the payment_source.card.number of a request body, if any.
func ppCardNumber(body []byte) string {
	var v struct {
		PaymentSource struct {
			Card struct {
				Number string `json:"number"`
			} `json:"card"`
		} `json:"payment_source"`
	}
	_ = json.Unmarshal(body, &v)
	return v.PaymentSource.Card.Number
}

// ppEchoCard adds to an error body a detail that echoes the card number.
func ppEchoCard(body any, number string) any {
	m, ok := body.(map[string]any)
	if !ok {
		return body
	}
	var spaced strings.Builder
	for i, c := range number {
		if i > 0 && i%4 == 0 {
			spaced.WriteByte(' ')
		}
		spaced.WriteRune(c)
	}
	details, _ := m["details"].([]any)
	m["details"] = append([]any{map[string]string{
		"field": "/payment_source/card/number", "value": number, "location": "body",
		"issue": "INVALID_PARAMETER_VALUE", "description": "The card " + spaced.String() + " could not be processed.",
	}}, details...)
	return m
}

// ppEchoAuthorization adds to an error body a first detail that quotes the
// Authorization header.
func ppEchoAuthorization(body any, authorization string) any {
	m, ok := body.(map[string]any)
	if !ok {
		return body
	}
	details, _ := m["details"].([]any)
	m["details"] = append([]any{map[string]string{
		"issue": "PERMISSION_DENIED", "description": "Request with Authorization: " + authorization + " could not be processed.",
	}}, details...)
	return m
}

func ppWithDebugID(body any, debugID string) any {
	if m, ok := body.(map[string]any); ok {
		if _, oauth := m["error"]; !oauth {
			m["debug_id"] = debugID
		}
	}
	return body
}

func ppWriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Amounts, as PayPal reads them: no decimals for JPY, HUF and TWD, two for
// the others the fake knows.

func ppDecimals(currency string) int {
	switch currency {
	case "JPY", "HUF", "TWD":
		return 0
	}
	return 2
}

// ppParseAmount reads a money value into minor units, or names the 422 issue.
func ppParseAmount(m ppMoney) (int64, string) {
	if len(m.CurrencyCode) != 3 || strings.ToUpper(m.CurrencyCode) != m.CurrencyCode {
		return 0, "INVALID_CURRENCY_CODE"
	}
	dec := ppDecimals(m.CurrencyCode)
	v := m.Value
	if strings.HasPrefix(v, "-") {
		return 0, "CANNOT_BE_ZERO_OR_NEGATIVE"
	}
	whole, frac, _ := strings.Cut(v, ".")
	if len(frac) > dec {
		return 0, "DECIMAL_PRECISION"
	}
	digits := whole + frac + strings.Repeat("0", dec-len(frac))
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, "MAX_VALUE_EXCEEDED"
	}
	if n <= 0 {
		return 0, "CANNOT_BE_ZERO_OR_NEGATIVE"
	}
	return n, ""
}

func ppFormatAmount(minor int64, currency string) string {
	dec := ppDecimals(currency)
	s := strconv.FormatInt(minor, 10)
	if dec == 0 {
		return s
	}
	if len(s) <= dec {
		s = strings.Repeat("0", dec-len(s)+1) + s
	}
	return s[:len(s)-dec] + "." + s[len(s)-dec:]
}

// IDs.

const ppIDChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// ppID is a PayPal-like resource id: 17 upper-case alphanumerics.
func ppID() string {
	b := make([]byte, 17)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = ppIDChars[int(b[i])%len(ppIDChars)]
	}
	return string(b)
}

func ppDebugID() string {
	b := make([]byte, 7)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:13]
}

func ppRandom(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
