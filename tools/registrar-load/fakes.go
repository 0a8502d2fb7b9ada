package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// fakes are minimal, fast stand-ins for PayPal, SendGrid and Mailchimp,
// served from one server (their paths do not overlap). They answer what
// registrar's clients need after a fixed latency and count every effect, so
// the report can tell charges, double charges and duplicate emails. Unlike
// internal/providertest they do not validate requests against the providers'
// OpenAPI descriptions: at thousands of requests a second that validation
// would be the bottleneck being measured.
type fakes struct {
	latency time.Duration
	// effectsOnHangup makes a charge, an email or a list upsert take effect
	// even when the caller hangs up during the call (as the real providers
	// would: a killed registrar cannot take back a request it sent); by
	// default a call whose caller went away has no effect.
	effectsOnHangup bool
	// stall, when not nil, holds every SendGrid and Mailchimp call until it
	// is closed (then answers 503) or the caller gives up: stalled providers.
	stall chan struct{}

	mu sync.Mutex
	// PayPal: one order per PayPal-Request-Id.
	orders       map[string]*fakeOrder
	capturesByID map[string]int         // captures taken per request id (> 1 would be a double charge)
	captures     map[string]fakeCapture // by capture id
	replays      int                    // create-order requests answered from an earlier request id
	refunds      map[string]int
	refundReqs   map[string]bool
	tokens       int
	seq          int
	// SendGrid: messages per custom_args.registration_id.
	emails map[string]int
	// Mailchimp: upserts and tag calls per subscriber hash.
	upserts map[string]int
	tags    map[string]int

	// Stalled calls, by provider ("sendgrid", "mailchimp"), and the distinct
	// registrations (SendGrid) or subscribers (Mailchimp) they were for.
	stalledCalls map[string]int
	stalledKeys  map[string]map[string]bool

	// onEmail, when set, learns of each confirmation email's registration
	// id as it is sent.
	onEmail func(registrationID string)
	// onEmailCall, when set, learns of each confirmation email's
	// registration id as soon as the call arrives (before the latency).
	onEmailCall func(registrationID string, at time.Time)
}

// fakeCapture is one capture: whose (the card holder's name is unique per
// attempt of the load) and under which request id.
type fakeCapture struct {
	id, requestID, name string
}

// fakeOrder is the stored outcome of one PayPal-Request-Id.
type fakeOrder struct {
	done   chan struct{}
	status int
	body   []byte
}

func newFakes(latency time.Duration) *fakes {
	return &fakes{
		latency:      latency,
		orders:       map[string]*fakeOrder{},
		capturesByID: map[string]int{},
		captures:     map[string]fakeCapture{},
		refunds:      map[string]int{},
		refundReqs:   map[string]bool{},
		emails:       map[string]int{},
		upserts:      map[string]int{},
		tags:         map[string]int{},
		stalledCalls: map[string]int{},
		stalledKeys:  map[string]map[string]bool{},
	}
}

// Handler serves the three fakes.
func (f *fakes) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/oauth2/token", f.paypalToken)
	mux.HandleFunc("POST /v2/checkout/orders", f.paypalCreateOrder)
	mux.HandleFunc("POST /v2/payments/captures/{id}/refund", f.paypalRefund)
	mux.HandleFunc("POST /v3/mail/send", f.sendgridSend)
	mux.HandleFunc("POST /3.0/lists/{list}", f.mailchimpBatch)
	mux.HandleFunc("PUT /3.0/lists/{list}/members/{hash}", f.mailchimpUpsert)
	mux.HandleFunc("POST /3.0/lists/{list}/members/{hash}/tags", f.mailchimpTags)
	return mux
}

// wait is the provider's latency; false when the caller gave up.
func (f *fakes) wait(ctx context.Context) bool {
	if f.latency <= 0 {
		return true
	}
	t := time.NewTimer(f.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// effectContext is the context a call's effect waits in: the caller's, or
// with effectsOnHangup one that outlives the caller.
func (f *fakes) effectContext(r *http.Request) context.Context {
	if f.effectsOnHangup {
		return context.WithoutCancel(r.Context())
	}
	return r.Context()
}

// hold keeps a call while the providers are stalled, until the stall ends
// or the caller gives up, and reports whether it did (the call then fails).
func (f *fakes) hold(r *http.Request, provider string, keys ...string) bool {
	if f.stall == nil {
		return false
	}
	f.mu.Lock()
	f.stalledCalls[provider]++
	if f.stalledKeys[provider] == nil {
		f.stalledKeys[provider] = map[string]bool{}
	}
	for _, key := range keys {
		f.stalledKeys[provider][key] = true
	}
	f.mu.Unlock()
	select {
	case <-f.stall:
	case <-r.Context().Done():
	}
	return true
}

// stalledCount is how many calls of provider were held, and for how many
// distinct registrations (SendGrid) or subscribers (Mailchimp).
func (f *fakes) stalledCount(provider string) (calls, distinct int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stalledCalls[provider], len(f.stalledKeys[provider])
}

func writeFakeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func (f *fakes) paypalToken(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := r.BasicAuth(); !ok {
		writeFakeJSON(w, http.StatusUnauthorized, []byte(`{"error":"invalid_client","error_description":"Client Authentication failed"}`))
		return
	}
	io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	f.tokens++
	f.mu.Unlock()
	writeFakeJSON(w, http.StatusOK, []byte(`{"scope":"https://uri.paypal.com/services/payments/payment","access_token":"A21AAFakeToken","token_type":"Bearer","app_id":"APP-LOAD","expires_in":32400,"nonce":"load"}`))
}

func paypalError(status int, name, issue string) []byte {
	b, _ := json.Marshal(map[string]any{
		"name": name, "message": issue, "debug_id": "fakedebug",
		"details": []map[string]string{{"issue": issue, "description": issue}},
	})
	return b
}

// paypalCreateOrder creates an order with the card as payment source and
// captures it at once (COMPLETED), as PayPal does for intent CAPTURE with a
// card. A repeated PayPal-Request-Id gets the first answer and takes no
// money; a request that is still being answered makes the repeat wait for
// it. An order without a payment source (registrar's Resolve of an unknown
// id) takes no money.
func (f *fakes) paypalCreateOrder(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		writeFakeJSON(w, http.StatusUnauthorized, []byte(`{"error":"invalid_token","error_description":"No access token"}`))
		return
	}
	rid := r.Header.Get("PayPal-Request-Id")
	var req struct {
		Intent        string `json:"intent"`
		PurchaseUnits []struct {
			Amount struct {
				CurrencyCode string `json:"currency_code"`
				Value        string `json:"value"`
			} `json:"amount"`
		} `json:"purchase_units"`
		PaymentSource *struct {
			Card *struct {
				Name   string `json:"name"`
				Number string `json:"number"`
			} `json:"card"`
		} `json:"payment_source"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || rid == "" || len(req.PurchaseUnits) == 0 {
		writeFakeJSON(w, http.StatusBadRequest, paypalError(400, "INVALID_REQUEST", "MALFORMED_REQUEST_JSON"))
		return
	}

	f.mu.Lock()
	if o, ok := f.orders[rid]; ok {
		f.replays++
		f.mu.Unlock()
		select {
		case <-o.done:
		case <-r.Context().Done():
			return
		}
		if !f.wait(r.Context()) {
			return
		}
		writeFakeJSON(w, o.status, o.body)
		return
	}
	o := &fakeOrder{done: make(chan struct{})}
	f.orders[rid] = o
	f.seq++
	n := f.seq
	f.mu.Unlock()

	ok := f.wait(f.effectContext(r))
	pu := req.PurchaseUnits[0]
	orderID := fmt.Sprintf("ORDER%09d", n)
	order := map[string]any{"id": orderID, "intent": req.Intent}
	charged := ok && req.PaymentSource != nil && req.PaymentSource.Card != nil
	if charged {
		c := req.PaymentSource.Card
		last4 := c.Number
		if len(last4) > 4 {
			last4 = last4[len(last4)-4:]
		}
		captureID := fmt.Sprintf("CAPTURE%09d", n)
		order["status"] = "COMPLETED"
		order["payment_source"] = map[string]any{"card": map[string]string{"name": c.Name, "last_digits": last4, "brand": "VISA", "type": "CREDIT"}}
		order["purchase_units"] = []any{map[string]any{
			"reference_id": "default",
			"amount":       pu.Amount,
			"payments": map[string]any{"captures": []any{map[string]any{
				"id": captureID, "status": "COMPLETED", "amount": pu.Amount, "final_capture": true,
			}}},
		}}
		f.mu.Lock()
		f.capturesByID[rid]++
		f.captures[captureID] = fakeCapture{id: captureID, requestID: rid, name: c.Name}
		f.mu.Unlock()
	} else {
		order["status"] = "CREATED"
		order["purchase_units"] = []any{map[string]any{"reference_id": "default", "amount": pu.Amount}}
	}
	o.status = http.StatusCreated
	o.body, _ = json.Marshal(order)
	close(o.done)
	if ok {
		writeFakeJSON(w, o.status, o.body)
	}
}

func (f *fakes) paypalRefund(w http.ResponseWriter, r *http.Request) {
	rid := r.Header.Get("PayPal-Request-Id")
	capture := r.PathValue("id")
	io.Copy(io.Discard, r.Body)
	if !f.wait(f.effectContext(r)) {
		return
	}
	f.mu.Lock()
	_, known := f.captures[capture]
	if known && !f.refundReqs[rid] {
		f.refundReqs[rid] = true
		f.refunds[capture]++
	}
	f.mu.Unlock()
	if !known {
		writeFakeJSON(w, http.StatusNotFound, paypalError(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID"))
		return
	}
	writeFakeJSON(w, http.StatusCreated, []byte(`{"id":"REFUND-`+capture+`","status":"COMPLETED"}`))
}

func (f *fakes) sendgridSend(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		writeFakeJSON(w, http.StatusUnauthorized, []byte(`{"errors":[{"message":"authorization required","field":null}]}`))
		return
	}
	var req struct {
		CustomArgs map[string]string `json:"custom_args"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeFakeJSON(w, http.StatusBadRequest, []byte(`{"errors":[{"message":"Bad Request","field":null}]}`))
		return
	}
	id := req.CustomArgs["registration_id"]
	f.mu.Lock()
	onCall := f.onEmailCall
	f.mu.Unlock()
	if onCall != nil {
		onCall(id, time.Now())
	}
	if f.hold(r, "sendgrid", id) {
		writeFakeJSON(w, http.StatusServiceUnavailable, []byte(`{"errors":[{"message":"stalled","field":null}]}`))
		return
	}
	if !f.wait(f.effectContext(r)) {
		return
	}
	f.mu.Lock()
	f.emails[id]++
	f.seq++
	n := f.seq
	onEmail := f.onEmail
	f.mu.Unlock()
	if onEmail != nil {
		onEmail(id)
	}
	w.Header().Set("X-Message-Id", fmt.Sprintf("fake-message-%d", n))
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakes) mailchimpUpsert(w http.ResponseWriter, r *http.Request) {
	var req struct {
		EmailAddress string `json:"email_address"`
		StatusIfNew  string `json:"status_if_new"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.EmailAddress == "" {
		writeFakeJSON(w, http.StatusBadRequest, []byte(`{"type":"about:blank","title":"Invalid Resource","status":400,"detail":"The resource submitted could not be validated.","instance":"fake"}`))
		return
	}
	hash := r.PathValue("hash")
	if f.hold(r, "mailchimp", hash) {
		writeFakeJSON(w, http.StatusServiceUnavailable, []byte(`{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"stalled","instance":"fake"}`))
		return
	}
	if !f.wait(f.effectContext(r)) {
		return
	}
	f.mu.Lock()
	f.upserts[hash]++
	f.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"id": hash, "email_address": req.EmailAddress, "status": req.StatusIfNew, "list_id": r.PathValue("list")})
	writeFakeJSON(w, http.StatusOK, body)
}

// mailchimpBatch is the batch subscribe (POST /lists/{list_id}) without
// update_existing: a member not on the list yet is added, which counts as one
// upsert (and one tag call when it has tags) of its subscriber hash; one
// already on it is refused with ERROR_CONTACT_EXISTS, as Mailchimp does.
func (f *fakes) mailchimpBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Members []struct {
			EmailAddress string   `json:"email_address"`
			Status       string   `json:"status"`
			Tags         []string `json:"tags"`
		} `json:"members"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Members) == 0 {
		writeFakeJSON(w, http.StatusBadRequest, []byte(`{"type":"about:blank","title":"Invalid Resource","status":400,"detail":"The resource submitted could not be validated.","instance":"fake"}`))
		return
	}
	hashes := make([]string, len(req.Members))
	for i, m := range req.Members {
		sum := md5.Sum([]byte(strings.ToLower(m.EmailAddress)))
		hashes[i] = hex.EncodeToString(sum[:])
	}
	if f.hold(r, "mailchimp", hashes...) {
		writeFakeJSON(w, http.StatusServiceUnavailable, []byte(`{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"stalled","instance":"fake"}`))
		return
	}
	if !f.wait(f.effectContext(r)) {
		return
	}
	type member struct {
		ID           string `json:"id"`
		EmailAddress string `json:"email_address"`
		Status       string `json:"status"`
	}
	type refusal struct {
		EmailAddress string `json:"email_address"`
		Error        string `json:"error"`
		ErrorCode    string `json:"error_code"`
	}
	added, refused := []member{}, []refusal{}
	f.mu.Lock()
	for i, m := range req.Members {
		if f.upserts[hashes[i]] > 0 {
			refused = append(refused, refusal{m.EmailAddress, m.EmailAddress + " is already a list member.", "ERROR_CONTACT_EXISTS"})
			continue
		}
		f.upserts[hashes[i]]++
		if len(m.Tags) > 0 {
			f.tags[hashes[i]]++
		}
		added = append(added, member{ID: hashes[i], EmailAddress: m.EmailAddress, Status: m.Status})
	}
	f.mu.Unlock()
	body, _ := json.Marshal(map[string]any{"new_members": added, "updated_members": []member{}, "errors": refused,
		"total_created": len(added), "total_updated": 0, "error_count": len(refused)})
	writeFakeJSON(w, http.StatusOK, body)
}

func (f *fakes) mailchimpTags(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if f.hold(r, "mailchimp", r.PathValue("hash")) {
		writeFakeJSON(w, http.StatusServiceUnavailable, []byte(`{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"stalled","instance":"fake"}`))
		return
	}
	if !f.wait(f.effectContext(r)) {
		return
	}
	f.mu.Lock()
	f.tags[r.PathValue("hash")]++
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// ProviderCounts is what the fakes saw.
type ProviderCounts struct {
	Captures int `json:"captures"`
	// CaptureReplays are create-order requests answered from an earlier
	// PayPal-Request-Id: retries the idempotency key made harmless.
	CaptureReplays int `json:"capture_replays"`
	Refunds        int `json:"refunds"`
	// DoubleCapturedRequestIDs are request ids captured more than once.
	DoubleCapturedRequestIDs int `json:"double_captured_request_ids"`
	// AttendeesChargedTwice are attendees (card holders, unique per
	// attempt) with more than one capture not refunded: double charges.
	AttendeesChargedTwice int `json:"attendees_charged_twice"`
	// NetCaptures are captures less refunds: money kept.
	NetCaptures int `json:"net_captures"`
	// CapturedWithoutAcceptance are request ids with a kept capture but no
	// 202 answer: money taken from someone not told they are registered.
	// Of those, RegisteredUnanswered turned out registered (the client gave
	// up waiting; registrar finished the attempt) and ChargedNotRegistered
	// were neither registered nor refunded by the end of the run (after
	// -settle-timeout): money without a registration.
	CapturedWithoutAcceptance int `json:"captured_without_acceptance"`
	RegisteredUnanswered      int `json:"registered_unanswered"`
	ChargedNotRegistered      int `json:"charged_not_registered"`
	Emails                    int `json:"emails"`
	DuplicateEmails           int `json:"duplicate_emails"`
	// DuplicateEmailIDs are up to 5 of the registrations emailed twice.
	DuplicateEmailIDs []string `json:"duplicate_email_ids,omitempty"`
	MailchimpUpserts  int      `json:"mailchimp_upserts"`
	MailchimpTags     int      `json:"mailchimp_tags"`
	RepeatedUpserts   int      `json:"repeated_upserts"`
	TokenRequests     int      `json:"token_requests"`
}

// counts summarises what the fakes saw. accepted holds the registration ids
// answered 202 (= PayPal request ids); nil skips that check.
func (f *fakes) counts(accepted map[string]bool) ProviderCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	var c ProviderCounts
	keptByReq := map[string]int{}
	keptByName := map[string]int{}
	for _, cp := range f.captures {
		c.Captures++
		kept := 1 - min(f.refunds[cp.id], 1)
		keptByReq[cp.requestID] += kept
		keptByName[cp.name] += kept
	}
	for _, n := range f.refunds {
		c.Refunds += n
	}
	for rid, n := range f.capturesByID {
		if n > 1 {
			c.DoubleCapturedRequestIDs++
		}
		if keptByReq[rid] > 0 && accepted != nil && !accepted[rid] {
			c.CapturedWithoutAcceptance++
		}
	}
	for _, n := range keptByName {
		c.NetCaptures += n
		if n > 1 {
			c.AttendeesChargedTwice++
		}
	}
	c.CaptureReplays = f.replays
	for id, n := range f.emails {
		c.Emails += n
		if n > 1 {
			c.DuplicateEmails++
			c.DuplicateEmailIDs = append(c.DuplicateEmailIDs, id)
		}
	}
	slices.Sort(c.DuplicateEmailIDs)
	c.DuplicateEmailIDs = c.DuplicateEmailIDs[:min(len(c.DuplicateEmailIDs), 5)]
	for _, n := range f.upserts {
		c.MailchimpUpserts += n
		if n > 1 {
			c.RepeatedUpserts++
		}
	}
	for _, n := range f.tags {
		c.MailchimpTags += n
	}
	c.TokenRequests = f.tokens
	return c
}

// unanswered are the request ids with a kept capture but no 202.
func (f *fakes) unanswered(accepted map[string]bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	refunded := map[string]bool{}
	for _, cp := range f.captures {
		if f.refunds[cp.id] > 0 {
			refunded[cp.requestID] = true
		}
	}
	var out []string
	for rid := range f.capturesByID {
		if !accepted[rid] && !refunded[rid] {
			out = append(out, rid)
		}
	}
	return out
}
