package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

// validRequest is a fresh, valid registration for the "standard" ticket.
func validRequest() map[string]any {
	return map[string]any{
		"ticket": "standard",
		"attendee": map[string]any{
			"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org",
			"company": "Analytical Engines",
		},
		"billing": map[string]any{
			"card": map[string]any{
				"number": "4111 1111 1111 1111", "expiry": "2030-12", "cvc": "123", "name": "Ada Lovelace",
			},
			"address": map[string]any{
				"line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB",
			},
		},
		"newsletter": false,
	}
}

// deleted, as a value for with, removes the field.
var deleted = &struct{ deleted bool }{}

// with sets the field at a dotted path ("billing.card.number") of a request
// built by validRequest; the deleted value removes it.
func with(req map[string]any, path string, v any) map[string]any {
	keys := strings.Split(path, ".")
	m := req
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	if v == deleted {
		delete(m, keys[len(keys)-1])
	} else {
		m[keys[len(keys)-1]] = v
	}
	return req
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// apiError decodes an error envelope, failing unless the response has the
// wanted status and code.
func apiError(t *testing.T, res response, status int, code string) errorBody {
	t.Helper()
	if res.status != status {
		t.Fatalf("status: got %v, want %d %s", res, status, code)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
	var e errorBody
	dec := json.NewDecoder(bytes.NewReader(res.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error envelope: %v in %s", err, res.body)
	}
	if e.Error.Code != code {
		t.Fatalf("error.code: got %q, want %q (%s)", e.Error.Code, code, res.body)
	}
	if e.Error.Message == "" {
		t.Errorf("error.message is empty: %s", res.body)
	}
	return e
}

// decodeObject decodes a JSON object into generic maps.
func decodeObject(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return m
}

func TestCreateAndGet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		newsletter  bool
		contentType string
		mailingList string
	}{
		{"no newsletter", false, "application/json", "skipped"},
		{"newsletter", true, "application/json; charset=utf-8", "pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			body := mustJSON(t, with(validRequest(), "newsletter", tt.newsletter))
			res := h.do(h.newRequest(http.MethodPost, "/api/registrations", tt.contentType, body))
			if res.status != http.StatusAccepted {
				t.Fatalf("POST: got %v, want 202", res)
			}
			created := decodeObject(t, res.body)
			id, _ := created["id"].(string)
			if !registration.ValidID(id) {
				t.Fatalf("id %q does not have the shape of an id", id)
			}
			want := map[string]any{"id": id, "status": "paid", "status_url": testBaseURL + "/registrations/" + id}
			if !reflect.DeepEqual(created, want) {
				t.Errorf("202 body: got %v, want %v", created, want)
			}
			if loc := res.header.Get("Location"); loc != "/api/registrations/"+id {
				t.Errorf("Location: got %q, want /api/registrations/%s", loc, id)
			}
			for k, v := range map[string]string{
				"Content-Type": "application/json", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
			} {
				if got := res.header.Get(k); got != v {
					t.Errorf("%s: got %q, want %q", k, got, v)
				}
			}
			if got, want := h.counts("standard"), (counts{Registrations: 1, Taken: 1, RegisterJobs: 1}); got != want {
				t.Errorf("after 202: got %+v, want %+v", got, want)
			}

			got := h.get(res.header.Get("Location"))
			if got.status != http.StatusOK {
				t.Fatalf("GET: got %v, want 200", got)
			}
			reg := decodeObject(t, got.body)
			createdAt, _ := reg["created_at"].(string)
			if ts, err := time.Parse(time.RFC3339, createdAt); err != nil || time.Since(ts) > time.Minute || !strings.HasSuffix(createdAt, "Z") {
				t.Errorf("created_at %q is not a recent RFC 3339 UTC time (%v)", createdAt, err)
			}
			pay, _ := reg["payment"].(map[string]any)
			ref, _ := pay["reference"].(string)
			if !strings.HasPrefix(ref, "test_") {
				t.Errorf("payment.reference %q: want a test processor reference", ref)
			}
			wantReg := map[string]any{
				"id": id, "status": "paid", "ticket": "standard", "amount": "149.00", "currency": "EUR",
				"attendee": map[string]any{
					"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org", "company": "Analytical Engines",
				},
				"payment": map[string]any{
					"provider": "test", "reference": ref,
					"card": map[string]any{"brand": "visa", "last4": "1111"},
				},
				"newsletter": tt.newsletter,
				"steps": map[string]any{
					"save_order":          map[string]any{"status": "pending", "attempts": 0.0},
					"send_confirmation":   map[string]any{"status": "pending", "attempts": 0.0},
					"add_to_mailing_list": map[string]any{"status": tt.mailingList, "attempts": 0.0},
				},
				"created_at": createdAt,
			}
			if !reflect.DeepEqual(reg, wantReg) {
				t.Errorf("GET body:\n got %v\nwant %v", reg, wantReg)
			}
			for _, secret := range []string{"4111111111111111", "4111 1111 1111 1111", `"cvc"`, `"number"`, "expiry"} {
				if bytes.Contains(got.body, []byte(secret)) {
					t.Errorf("GET body contains %q: %s", secret, got.body)
				}
			}
			if c, r := h.proc.Charges(); c != 1 || r != 0 {
				t.Errorf("charges: got %d charged, %d refunded; want 1, 0", c, r)
			}
		})
	}
}

func TestCreateInvalidRequest(t *testing.T) {
	t.Parallel()
	valid := string(mustJSON(t, validRequest()))
	tests := []struct {
		name string
		body string
		key  *string // Idempotency-Key header; nil sends none
		// mention is a word the message must contain.
		mention string
	}{
		{name: "form encoded as json", body: "ticket=standard&attendee.first_name=Ada"},
		{name: "empty body", body: ""},
		{name: "only space", body: "  \n"},
		{name: "cut short", body: valid[:len(valid)/2]},
		{name: "array", body: "[]"},
		{name: "string", body: `"standard"`},
		{name: "number", body: `42`},
		{name: "null", body: `null`},
		{name: "newsletter as string", body: string(mustJSON(t, with(validRequest(), "newsletter", "yes"))), mention: "newsletter"},
		{name: "ticket as number", body: string(mustJSON(t, with(validRequest(), "ticket", 5))), mention: "ticket"},
		{name: "attendee as string", body: string(mustJSON(t, with(validRequest(), "attendee", "Ada Lovelace"))), mention: "attendee"},
		{name: "card number as number", body: string(mustJSON(t, with(validRequest(), "billing.card.number", 4111111111111111))), mention: "billing.card.number"},
		{name: "billing as array", body: string(mustJSON(t, with(validRequest(), "billing", []any{}))), mention: "billing"},
		{name: "unknown top-level field", body: string(mustJSON(t, with(validRequest(), "coupon", "FREE"))), mention: "coupon"},
		{name: "unknown attendee field", body: string(mustJSON(t, with(validRequest(), "attendee.phone", "+44"))), mention: "phone"},
		{name: "unknown card field", body: string(mustJSON(t, with(validRequest(), "billing.card.pin", "0000"))), mention: "pin"},
		{name: "unknown address field", body: string(mustJSON(t, with(validRequest(), "billing.address.state", "X"))), mention: "state"},
		{name: "second object", body: valid + ` {}`},
		{name: "trailing garbage", body: valid + `x`},
		{name: "trailing bracket", body: valid + `]`},
		{name: "trailing brace", body: valid + `}`},
		{name: "trailing null", body: valid + "\nnull"},
		{name: "empty idempotency key", body: valid, key: new("")},
		{name: "idempotency key too long", body: valid, key: new(strings.Repeat("k", 256))},
		{name: "idempotency key with tab", body: valid, key: new("abc\tdef")},
		{name: "idempotency key not ascii", body: valid, key: new("clé-1")},
	}
	// Bad requests change nothing, so one server serves them all.
	shared := newHarness(t, harnessOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := shared.forTest(t)
			req := h.newRequest(http.MethodPost, "/api/registrations", "application/json", []byte(tt.body))
			if tt.key != nil {
				req.Header["Idempotency-Key"] = []string{*tt.key}
			}
			e := apiError(t, h.do(req), http.StatusBadRequest, registration.CodeInvalidRequest)
			if !strings.Contains(e.Error.Message, tt.mention) {
				t.Errorf("message %q does not mention %q", e.Error.Message, tt.mention)
			}
			if e.Error.Fields != nil {
				t.Errorf("fields: got %v, want none", e.Error.Fields)
			}
			if got := h.counts("standard"); got != (counts{}) {
				t.Errorf("a bad request changed the database: %+v", got)
			}
			if n := h.calls.Calls(); n != 0 {
				t.Errorf("processor called %d times", n)
			}
		})
	}
}

func TestCreateIdempotencyKeyShape(t *testing.T) {
	t.Parallel()
	// The longest and the most unusual keys the contract allows.
	for _, key := range []string{strings.Repeat("k", 255), "!", "~key/with:punctuation@{}"} {
		t.Run(strconv.Itoa(len(key)), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			if res := h.postJSON(mustJSON(t, validRequest()), key); res.status != http.StatusAccepted {
				t.Fatalf("key %q: got %v, want 202", key, res)
			}
			if n := h.count(`SELECT count(*) FROM idempotency_keys WHERE key = ?`, "api:"+key); n != 1 {
				t.Errorf("key %q: %d stored keys, want 1", key, n)
			}
		})
	}
}

func TestCreateTooLarge(t *testing.T) {
	t.Parallel()
	valid := mustJSON(t, validRequest())
	pad := func(n int) []byte { // valid JSON of exactly n bytes
		return append(bytes.Clone(valid), bytes.Repeat([]byte(" "), n-len(valid))...)
	}
	tests := []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"at the limit", pad(64 << 10), http.StatusAccepted, ""},
		{"one byte over", pad(64<<10 + 1), http.StatusRequestEntityTooLarge, registration.CodeRequestTooLarge},
		{"huge field", mustJSON(t, with(validRequest(), "attendee.company", strings.Repeat("x", 70_000))),
			http.StatusRequestEntityTooLarge, registration.CodeRequestTooLarge},
		{"a megabyte", pad(1 << 20), http.StatusRequestEntityTooLarge, registration.CodeRequestTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			res := h.postJSON(tt.body, "")
			if tt.code == "" {
				if res.status != tt.status {
					t.Fatalf("got %v, want %d", res, tt.status)
				}
				return
			}
			apiError(t, res, tt.status, tt.code)
			if got := h.counts("standard"); got != (counts{}) {
				t.Errorf("a too large request changed the database: %+v", got)
			}
		})
	}
}

func TestCreateUnsupportedMediaType(t *testing.T) {
	t.Parallel()
	valid := mustJSON(t, validRequest())
	tests := []struct {
		name, contentType string
		body              []byte
	}{
		{"text/plain", "text/plain", valid},
		{"text/plain with charset", "text/plain; charset=utf-8", valid},
		{"form encoded", "application/x-www-form-urlencoded", []byte("ticket=standard&attendee.first_name=Ada")},
		{"multipart", "multipart/form-data; boundary=x", []byte("--x--\r\n")},
		{"no content type", "", valid},
		{"json-like suffix", "application/merge-patch+json", valid},
		{"malformed", "application/json; charset", valid},
	}
	shared := newHarness(t, harnessOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := shared.forTest(t)
			req := h.newRequest(http.MethodPost, "/api/registrations", tt.contentType, tt.body)
			if tt.contentType == "" {
				req.Header["Content-Type"] = nil
			}
			apiError(t, h.do(req), http.StatusUnsupportedMediaType, registration.CodeUnsupportedMediaType)
			if got := h.counts("standard"); got != (counts{}) {
				t.Errorf("changed the database: %+v", got)
			}
		})
	}
}

func TestCreateValidationFailed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		req    map[string]any
		fields []string
	}{
		{"missing names", with(with(validRequest(), "attendee.first_name", deleted), "attendee.last_name", deleted),
			[]string{"attendee.first_name", "attendee.last_name"}},
		{"blank names", with(with(validRequest(), "attendee.first_name", "  "), "attendee.last_name", "\t"),
			[]string{"attendee.first_name", "attendee.last_name"}},
		{"bad email", with(validRequest(), "attendee.email", "ada@"), []string{"attendee.email"}},
		{"email with name", with(validRequest(), "attendee.email", "Ada <ada@example.org>"), []string{"attendee.email"}},
		{"missing ticket", with(validRequest(), "ticket", deleted), []string{"ticket"}},
		{"unknown ticket", with(validRequest(), "ticket", "platinum"), []string{"ticket"}},
		{"luhn-invalid card", with(validRequest(), "billing.card.number", "4111111111111112"), []string{"billing.card.number"}},
		{"letters in card", with(validRequest(), "billing.card.number", "4111 1111 1111 111x"), []string{"billing.card.number"}},
		{"missing card", with(validRequest(), "billing.card.number", deleted), []string{"billing.card.number"}},
		{"expired", with(validRequest(), "billing.card.expiry", "2020-01"), []string{"billing.card.expiry"}},
		{"expiry format", with(validRequest(), "billing.card.expiry", "30/12"), []string{"billing.card.expiry"}},
		{"expiry month 13", with(validRequest(), "billing.card.expiry", "13/30"), []string{"billing.card.expiry"}},
		{"short cvc", with(validRequest(), "billing.card.cvc", "12"), []string{"billing.card.cvc"}},
		{"letters in cvc", with(validRequest(), "billing.card.cvc", "abc"), []string{"billing.card.cvc"}},
		{"missing billing", with(validRequest(), "billing", deleted), []string{"billing"}},
		{"null billing", with(validRequest(), "billing", nil), []string{"billing"}},
		{"bad country", with(validRequest(), "billing.address.country", "GBR"), []string{"billing.address.country"}},
		{"missing address", with(validRequest(), "billing.address", deleted),
			[]string{"billing.address.line1", "billing.address.city", "billing.address.country"}},
		{"everything", map[string]any{"ticket": "", "attendee": map[string]any{"email": "nope"},
			"billing": map[string]any{"card": map[string]any{"number": "4111111111111112", "expiry": "1999-01", "cvc": "1"}}},
			[]string{"ticket", "attendee.first_name", "attendee.last_name", "attendee.email", "billing.card.number",
				"billing.card.expiry", "billing.card.cvc", "billing.card.name", "billing.address.line1",
				"billing.address.city", "billing.address.country"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			res := h.postJSON(mustJSON(t, tt.req), "validation-key")
			e := apiError(t, res, http.StatusUnprocessableEntity, registration.CodeValidationFailed)
			got := slices.Sorted(maps.Keys(e.Error.Fields))
			if want := slices.Sorted(slices.Values(tt.fields)); !slices.Equal(got, want) {
				t.Errorf("fields: got %v, want %v", e.Error.Fields, want)
			}
			for f, msg := range e.Error.Fields {
				if msg == "" {
					t.Errorf("field %s has no message", f)
				}
			}
			if got := h.counts("standard"); got != (counts{}) {
				t.Errorf("invalid input changed the database: %+v", got)
			}
			if n := h.calls.Calls(); n != 0 {
				t.Errorf("processor called %d times", n)
			}
			// The key was not used up: the corrected request goes through.
			if res := h.postJSON(mustJSON(t, validRequest()), "validation-key"); res.status != http.StatusAccepted {
				t.Errorf("corrected request with the same key: got %v, want 202", res)
			}
		})
	}
}

func TestCreateDeclined(t *testing.T) {
	t.Parallel()
	tests := []struct {
		card, message string
	}{
		{"4000 0000 0000 0002", "Your card was declined. Please use another card or contact your bank."},
		{"4000000000000069", "Your card has expired. Please use another card."},
	}
	for _, tt := range tests {
		t.Run(tt.card, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			before := h.counts("standard")
			body := mustJSON(t, with(validRequest(), "billing.card.number", tt.card))
			for _, key := range []string{"", "decline-key"} {
				e := apiError(t, h.postJSON(body, key), http.StatusPaymentRequired, registration.CodePaymentDeclined)
				if e.Error.Message != tt.message {
					t.Errorf("message: got %q, want %q", e.Error.Message, tt.message)
				}
			}
			after := h.counts("standard")
			if after.Registrations != 0 || after.SeatHolds != 0 || after.Taken != before.Taken || after.RegisterJobs != 0 {
				t.Errorf("a decline left something behind: before %+v, after %+v", before, after)
			}
			if after.IdempotencyKeys != 1 {
				t.Errorf("idempotency keys: got %d, want the declined outcome stored once", after.IdempotencyKeys)
			}
			// A retry with the key replays the decline without a new charge attempt.
			e := apiError(t, h.postJSON(body, "decline-key"), http.StatusPaymentRequired, registration.CodePaymentDeclined)
			if e.Error.Message != tt.message {
				t.Errorf("replayed message: got %q, want %q", e.Error.Message, tt.message)
			}
			if n := h.calls.Calls(); n != 2 {
				t.Errorf("processor calls: got %d, want 2 (one per attempt, none for the replay)", n)
			}
			if c, r := h.proc.Charges(); c != 0 || r != 0 {
				t.Errorf("charges: got %d, %d refunded; want none", c, r)
			}
		})
	}
}

func TestCreatePaymentUnavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	body := mustJSON(t, with(validRequest(), "billing.card.number", "4000000000000119"))
	for attempt := 1; attempt <= 2; attempt++ {
		e := apiError(t, h.postJSON(body, "flaky-key"), http.StatusBadGateway, registration.CodePaymentUnavailable)
		for _, leak := range []string{"0119", "processor error", "test processor"} {
			if strings.Contains(e.Error.Message, leak) {
				t.Errorf("message reveals the cause (%q): %q", leak, e.Error.Message)
			}
		}
		if got := h.counts("standard"); got != (counts{}) {
			t.Errorf("attempt %d: a failed payment left something behind: %+v", attempt, got)
		}
		// Processed again, not replayed: the key was forgotten.
		if n := h.calls.Calls(); n != attempt {
			t.Errorf("attempt %d: processor calls %d, want %d", attempt, n, attempt)
		}
	}
	// As nothing is remembered under the key, the client may fix the card and
	// try again with it.
	if res := h.postJSON(mustJSON(t, validRequest()), "flaky-key"); res.status != http.StatusAccepted {
		t.Fatalf("retry with another card: got %v, want 202", res)
	}
	if c, _ := h.proc.Charges(); c != 1 {
		t.Errorf("charges: got %d, want 1", c)
	}
}

func TestCreateSoldOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	first := with(validRequest(), "ticket", "last-seat")
	if res := h.postJSON(mustJSON(t, first), ""); res.status != http.StatusAccepted {
		t.Fatalf("first: got %v, want 202", res)
	}
	second := mustJSON(t, with(with(validRequest(), "ticket", "last-seat"), "attendee.email", "grace@example.org"))
	for _, key := range []string{"", "late-key", "late-key"} {
		e := apiError(t, h.postJSON(second, key), http.StatusConflict, registration.CodeSoldOut)
		if !strings.Contains(e.Error.Message, "Last seat") {
			t.Errorf("message %q does not name the ticket", e.Error.Message)
		}
	}
	// Once sold out for good, a ticket's attempts are refused from the
	// committed stock: the late key is answered the same both times, and
	// nothing is written for it.
	if got, want := h.counts("last-seat"), (counts{Registrations: 1, Taken: 1, IdempotencyKeys: 0, RegisterJobs: 1}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if n := h.calls.Calls(); n != 1 {
		t.Errorf("processor calls: got %d, want 1 (a sold-out attempt is not charged)", n)
	}
	// Other tickets still sell.
	if res := h.postJSON(mustJSON(t, validRequest()), ""); res.status != http.StatusAccepted {
		t.Errorf("standard ticket: got %v, want 202", res)
	}
}

func TestIdempotentReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	body := mustJSON(t, validRequest())
	first := h.postJSON(body, "order-42")
	if first.status != http.StatusAccepted {
		t.Fatalf("first: got %v, want 202", first)
	}
	// The same request, typed differently: normalisation makes it the same.
	same := with(with(validRequest(), "billing.card.number", "4111-1111-1111-1111"), "attendee.first_name", "  Ada ")
	for i, b := range [][]byte{body, body, mustJSON(t, same)} {
		again := h.postJSON(b, "order-42")
		if again.status != http.StatusAccepted || !bytes.Equal(again.body, first.body) {
			t.Errorf("repeat %d: got %v, want %v", i, again, first)
		}
		if again.header.Get("Location") != first.header.Get("Location") {
			t.Errorf("repeat %d: Location %q, want %q", i, again.header.Get("Location"), first.header.Get("Location"))
		}
	}
	others := []map[string]any{
		with(validRequest(), "attendee.first_name", "Augusta"),
		with(validRequest(), "newsletter", true),
		with(validRequest(), "ticket", "student"),
		with(validRequest(), "billing.card.number", "4242424242424242"),
	}
	for i, other := range others {
		apiError(t, h.postJSON(mustJSON(t, other), "order-42"), http.StatusUnprocessableEntity, registration.CodeIdempotencyKeyReused)
		_ = i
	}
	if got, want := h.counts("standard"), (counts{Registrations: 1, Taken: 1, IdempotencyKeys: 1, RegisterJobs: 1}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if c, r := h.proc.Charges(); c != 1 || r != 0 {
		t.Errorf("charges: got %d, %d refunded; want 1, 0", c, r)
	}
	if n := h.calls.Calls(); n != 1 {
		t.Errorf("processor calls: got %d, want 1", n)
	}
	// Keys are per client request, not global: another key is another registration.
	if res := h.postJSON(body, "order-43"); res.status != http.StatusAccepted || bytes.Equal(res.body, first.body) {
		t.Errorf("another key: got %v, want a new 202", res)
	}
}

func TestIdempotencyInProgress(t *testing.T) {
	t.Parallel()
	var blocker *blockingProcessor
	h := newHarness(t, harnessOptions{wrapProcessor: func(p payment.Processor) payment.Processor {
		blocker = newBlockingProcessor(p)
		return blocker
	}})
	body := mustJSON(t, validRequest())
	slow := h.newRequest(http.MethodPost, "/api/registrations", "application/json", body)
	slow.Header.Set("Idempotency-Key", "slow-key")
	firstDone := h.sendAsync(slow)
	wait(t, "the first charge", blocker.entered)

	busy := h.postJSON(body, "slow-key")
	if e := apiError(t, busy, http.StatusConflict, registration.CodeIdempotencyInProgress); !e.Error.Retryable {
		t.Errorf("in progress: not retryable: %s", busy.body)
	}
	if got := busy.header.Get("Retry-After"); got != "1" {
		t.Errorf("in progress: Retry-After %q, want 1", got)
	}
	apiError(t, h.postJSON(mustJSON(t, with(validRequest(), "attendee.first_name", "Grace")), "slow-key"),
		http.StatusUnprocessableEntity, registration.CodeIdempotencyKeyReused)
	if got, want := h.counts("standard"), (counts{SeatHolds: 1, Taken: 1, IdempotencyKeys: 1}); got != want {
		t.Errorf("while charging: got %+v, want %+v", got, want)
	}

	close(blocker.release)
	first := wait(t, "the first response", firstDone)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: got %v, want 202", first)
	}
	if again := h.postJSON(body, "slow-key"); again.status != http.StatusAccepted || !bytes.Equal(again.body, first.body) {
		t.Errorf("after it finished: got %v, want %v", again, first)
	}
	if got, want := h.counts("standard"), (counts{Registrations: 1, Taken: 1, IdempotencyKeys: 1, RegisterJobs: 1}); got != want {
		t.Errorf("at the end: got %+v, want %+v", got, want)
	}
	if n := h.calls.Calls(); n != 1 {
		t.Errorf("processor calls: got %d, want 1", n)
	}
}

func TestRateLimited(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, path, contentType string
		body                    []byte
	}{
		{"api", "/api/registrations", "application/json", nil},
		{"form", "/register", "application/x-www-form-urlencoded", []byte("ticket=standard")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{rateLimit: 2})
			body := tt.body
			if body == nil {
				body = mustJSON(t, validRequest())
			}
			for i := range 2 {
				res := h.do(h.newRequest(http.MethodPost, tt.path, tt.contentType, body))
				if res.status == http.StatusTooManyRequests {
					t.Fatalf("attempt %d limited: %v", i+1, res)
				}
			}
			res := h.do(h.newRequest(http.MethodPost, tt.path, tt.contentType, body))
			if tt.name == "api" {
				apiError(t, res, http.StatusTooManyRequests, registration.CodeRateLimited)
			} else {
				// A browser gets the form back with the reason, not JSON.
				if res.status != http.StatusTooManyRequests || !strings.HasPrefix(res.header.Get("Content-Type"), "text/html") ||
					!strings.Contains(string(res.body), "Too many attempts") {
					t.Errorf("form over the limit: got %d %q", res.status, res.header.Get("Content-Type"))
				}
			}
			// 2 per minute: the next token is about 30 seconds away.
			if secs, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || secs < 25 || secs > 31 {
				t.Errorf("Retry-After: got %q, want about 30 seconds", res.header.Get("Retry-After"))
			}
			// Reading is not limited.
			if res := h.get("/"); res.status != http.StatusOK {
				t.Errorf("GET / after the limit: got %d", res.status)
			}
			before := h.counts("standard")
			h.do(h.newRequest(http.MethodPost, tt.path, tt.contentType, body))
			if after := h.counts("standard"); after != before {
				t.Errorf("a limited request changed the database: %+v → %+v", before, after)
			}
		})
	}
}

func TestGetNotFound(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	unknown, err := registration.NewID()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{
		unknown,
		"nope",
		strings.ToUpper(unknown),
		unknown + "a",
		unknown[:31],
		"00000000000000000000000000000000",
		"%2e%2e",
		"x'%20OR%201=1--",
	} {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			h := h.forTest(t)
			apiError(t, h.get("/api/registrations/"+id), http.StatusNotFound, registration.CodeNotFound)
			page := h.get("/registrations/" + id)
			if page.status != http.StatusNotFound || !bytes.Contains(page.body, []byte("Registration not found")) {
				t.Errorf("status page: got %d %.200s, want 404 not found page", page.status, page.body)
			}
		})
	}
}

func TestInternalError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	id := h.register(mustJSON(t, validRequest()))
	h.closeDB() // the database goes away under the running server

	for _, res := range []response{
		h.postJSON(mustJSON(t, with(validRequest(), "attendee.email", "grace@example.org")), ""),
		h.postJSON(mustJSON(t, validRequest()), "some-key"),
		h.get("/api/registrations/" + id),
	} {
		e := apiError(t, res, http.StatusInternalServerError, registration.CodeInternal)
		if e.Error.Message != "Something went wrong on our side. Please try again." {
			t.Errorf("message: got %q", e.Error.Message)
		}
		for _, leak := range []string{"sql", "database", "closed", "sqlite", "begin", "tx"} {
			if strings.Contains(strings.ToLower(string(res.body)), leak) {
				t.Errorf("response reveals %q: %s", leak, res.body)
			}
		}
	}
	if n := h.calls.Calls(); n != 1 {
		t.Errorf("processor calls: got %d, want 1 (nothing charged once the database is gone)", n)
	}
	if res := h.get("/readyz"); res.status != http.StatusServiceUnavailable {
		t.Errorf("readyz: got %v, want 503", res)
	}
	if res := h.get("/registrations/" + id); res.status != http.StatusInternalServerError ||
		bytes.Contains(bytes.ToLower(res.body), []byte("sql")) {
		t.Errorf("status page: got %v, want a plain 500", res)
	}
	if !strings.Contains(h.logs.String(), "request failed") {
		t.Errorf("the internal error was not logged:\n%s", h.logs.String())
	}
}

func TestFreeTicket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  map[string]any
	}{
		{"no billing", with(with(validRequest(), "ticket", "community"), "billing", deleted)},
		{"null billing", with(with(validRequest(), "ticket", "community"), "billing", nil)},
		// Billing given for a free ticket is ignored, even if it is wrong.
		{"ignored billing", with(with(validRequest(), "ticket", "community"), "billing.card.number", "4111111111111112")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			id := h.register(mustJSON(t, tt.req))
			res := h.get("/api/registrations/" + id)
			if res.status != http.StatusOK {
				t.Fatalf("GET: %v", res)
			}
			reg := decodeObject(t, res.body)
			if p, ok := reg["payment"]; !ok || p != nil {
				t.Errorf("payment: got %v (present %v), want null", p, ok)
			}
			if reg["amount"] != "0.00" || reg["ticket"] != "community" || reg["status"] != "paid" {
				t.Errorf("got amount %v, ticket %v, status %v", reg["amount"], reg["ticket"], reg["status"])
			}
			if n := h.calls.Calls(); n != 0 {
				t.Errorf("processor called %d times for a free ticket", n)
			}
			if got, want := h.counts("community"), (counts{Registrations: 1, Taken: 1, RegisterJobs: 1}); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestCapacityUnderConcurrency(t *testing.T) {
	t.Parallel()
	const capacity, attendees = 5, 30
	h := newHarness(t, harnessOptions{capacity: capacity, rateLimit: 0})
	reqs := make([]*http.Request, attendees)
	for i := range attendees {
		reqs[i] = h.newRequest(http.MethodPost, "/api/registrations", "application/json",
			mustJSON(t, with(with(validRequest(), "attendee.email", fmt.Sprintf("attendee%d@example.org", i)),
				"attendee.first_name", fmt.Sprintf("Attendee %d", i))))
	}
	results := make([]response, attendees)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, req := range reqs {
		wg.Go(func() {
			<-start
			res, err := h.send(req)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	close(start)
	wg.Wait()

	byStatus := map[int]int{}
	for i, res := range results {
		byStatus[res.status]++
		if res.status == http.StatusConflict && !bytes.Contains(res.body, []byte(`"code":"sold_out"`)) {
			t.Errorf("attendee %d: 409 that is not sold_out: %s", i, res.body)
		}
	}
	if want := map[int]int{http.StatusAccepted: capacity, http.StatusConflict: attendees - capacity}; !maps.Equal(byStatus, want) {
		t.Errorf("statuses: got %v, want %v", byStatus, want)
	}
	if got, want := h.counts("standard"), (counts{Registrations: capacity, Taken: capacity, RegisterJobs: capacity}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if c, r := h.proc.Charges(); c != capacity || r != 0 {
		t.Errorf("charges: got %d, %d refunded; want %d, 0", c, r, capacity)
	}
}

func TestUnknownAPIRoutesAnswerJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodPut, "/api/registrations", http.StatusMethodNotAllowed, registration.CodeInvalidRequest, "POST"},
		{http.MethodGet, "/api/registrations", http.StatusMethodNotAllowed, registration.CodeInvalidRequest, "POST"},
		{http.MethodDelete, "/api/registrations/abc", http.StatusMethodNotAllowed, registration.CodeInvalidRequest, "GET, HEAD"},
		{http.MethodGet, "/api/tickets", http.StatusNotFound, registration.CodeNotFound, ""},
		{http.MethodGet, "/api/registrations/a/b", http.StatusNotFound, registration.CodeNotFound, ""},
	}
	for _, tt := range tests {
		res := h.do(h.newRequest(tt.method, tt.path, "", nil))
		apiError(t, res, tt.status, tt.code)
		if got := res.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

func TestFormTooLarge(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	before := h.counts("standard")
	body := []byte("ticket=standard&attendee.company=" + strings.Repeat("x", 70<<10))
	res := h.do(h.newRequest(http.MethodPost, "/register", "application/x-www-form-urlencoded", body))
	if res.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(res.body), "larger than 64 KiB") {
		t.Errorf("oversized form: got %d, want 413 with the form and the reason", res.status)
	}
	if after := h.counts("standard"); after != before {
		t.Errorf("an oversized form changed the database: %+v → %+v", before, after)
	}
}
