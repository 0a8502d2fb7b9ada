package providertest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFaults: each fault does to a request what it says, to the client and
// to the server behind the proxy, and only the scheduled request meets it.
func TestFaults(t *testing.T) {
	t.Parallel()
	const answer = `{"id":"order-1","status":"COMPLETED"}`
	cases := []struct {
		fault Fault
		// reached: the server behind saw the request.
		reached bool
		// status and body the client reads; errText a part of the error
		// it gets instead (at Do or while reading the body).
		status  int
		body    string
		errText string
	}{
		{fault: ResetRequest, reached: false, errText: "connection reset"},
		{fault: ResetResponse, reached: true, errText: ""},
		{fault: CutBody, reached: true, status: http.StatusCreated, errText: "unexpected EOF"},
		{fault: StallBody, reached: true, status: http.StatusCreated, errText: "deadline exceeded"},
		{fault: Hang, reached: true, errText: "deadline exceeded"},
		{fault: Malformed, reached: true, status: http.StatusCreated, body: `{"id":"order-1","s}`},
		{fault: Answer(http.StatusServiceUnavailable, ""), reached: false, status: http.StatusServiceUnavailable,
			body: `{"message":"injected fault: 503 Service Unavailable"}`},
		{fault: AnswerAfter(http.StatusInternalServerError, `{"name":"INTERNAL_SERVER_ERROR"}`), reached: true,
			status: http.StatusInternalServerError, body: `{"name":"INTERNAL_SERVER_ERROR"}`},
		{fault: RateLimited("Wed, 21 Oct 2037 07:28:00 GMT", "{}"), reached: false, status: http.StatusTooManyRequests, body: "{}"},
	}
	for _, tc := range cases {
		t.Run(tc.fault.String(), func(t *testing.T) {
			t.Parallel()
			var hits atomic.Int32
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				in, _ := io.ReadAll(r.Body)
				if string(in) != `{"amount":"1.00"}` || r.Header.Get("PayPal-Request-Id") != "req-1" {
					t.Errorf("the server behind got %q with request id %q", in, r.Header.Get("PayPal-Request-Id"))
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusCreated)
				io.WriteString(w, answer)
			}))
			defer backend.Close()
			f := NewFaults(t, backend.URL)
			const route = "POST /v2/checkout/orders"
			plan := f.Schedule(route, Pass, tc.fault)

			do := func() (int, string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.URL()+"/v2/checkout/orders", strings.NewReader(`{"amount":"1.00"}`))
				req.Header.Set("PayPal-Request-Id", "req-1")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				data, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(data), err
			}
			// The first request passes, the second meets the fault, the
			// third passes again.
			if code, body, err := do(); err != nil || code != http.StatusCreated || body != answer {
				t.Fatalf("first request: %d %q %v; want it untouched", code, body, err)
			}
			code, body, err := do()
			switch {
			case tc.errText == "" && tc.status == 0:
				if err == nil {
					t.Errorf("faulted request: %d %q; want an error", code, body)
				}
			case tc.errText != "":
				if err == nil || !strings.Contains(err.Error(), tc.errText) && !errors.Is(err, io.EOF) {
					t.Errorf("faulted request: %d %q %v; want an error with %q", code, body, err, tc.errText)
				}
				if tc.status != 0 && code != tc.status {
					t.Errorf("faulted request: status %d; want %d before the error", code, tc.status)
				}
			default:
				if err != nil || code != tc.status || body != tc.body {
					t.Errorf("faulted request: %d %q %v; want %d %q", code, body, err, tc.status, tc.body)
				}
				if json.Valid([]byte(body)) == (tc.fault.Kind == FaultMalformed) {
					t.Errorf("body %q: JSON valid = %v", body, json.Valid([]byte(body)))
				}
			}
			if code, body, err := do(); err != nil || code != http.StatusCreated || body != answer {
				t.Fatalf("third request: %d %q %v; want it untouched", code, body, err)
			}
			want := int32(2)
			if tc.reached {
				want = 3
			}
			// A held request reaches the server before the client gives up;
			// allow the proxy's forward to land.
			deadline := time.Now().Add(10 * time.Second)
			for hits.Load() != want && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := hits.Load(); got != want {
				t.Errorf("the server behind saw %d requests; want %d", got, want)
			}
			if got := plan.Requests(); got != 3 {
				t.Errorf("Requests = %d; want 3", got)
			}
			if a := f.Applied(); len(a) != 1 || a[0] != route+" #2: "+tc.fault.String() {
				t.Errorf("Applied = %q", a)
			}
			if plan.Pending() != 0 {
				t.Errorf("Pending = %d after the schedule ran out", plan.Pending())
			}
		})
	}
}

// TestFaultsRoutes: a fault goes to the pattern that matches, wildcards
// included; other paths pass.
func TestFaultsRoutes(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	f := NewFaults(t, backend.URL)
	f.Schedule("POST /v2/checkout/orders/{id}/capture", Answer(http.StatusBadGateway, "down"))
	get := func(method, path string) int {
		req, _ := http.NewRequest(method, f.URL()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(http.MethodPost, "/v2/checkout/orders"); code != http.StatusOK {
		t.Errorf("create: %d; want it untouched", code)
	}
	if code := get(http.MethodGet, "/v2/checkout/orders/A1/capture"); code != http.StatusOK {
		t.Errorf("GET capture: %d; want it untouched", code)
	}
	if code := get(http.MethodPost, "/v2/checkout/orders/A1/capture"); code != http.StatusBadGateway {
		t.Errorf("capture: %d; want the fault's 502", code)
	}
	if code := get(http.MethodPost, "/v2/checkout/orders/A2/capture"); code != http.StatusOK {
		t.Errorf("second capture: %d; want it untouched", code)
	}
}

// TestFaultsMarkers: a plan with a marker takes only the requests that hold
// it, in the path or the body; the route's plan without one takes the rest.
func TestFaultsMarkers(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		w.Write(in)
	}))
	defer backend.Close()
	f := NewFaults(t, backend.URL)
	const route = "PUT /lists/{list}/members/{hash}"
	ada := f.ScheduleFor(route, `Lovelace-1"`, Answer(http.StatusTeapot, "ada"))
	hash := f.ScheduleFor(route, "/members/c0ffee", Answer(http.StatusGone, "hash"))
	rest := f.Schedule(route, Pass, Answer(http.StatusConflict, "rest"))
	put := func(path, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, f.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	for _, c := range []struct {
		path, body string
		status     int
		answer     string
	}{
		{"/lists/l/members/aa", `{"LNAME":"Lovelace-10"}`, http.StatusOK, `{"LNAME":"Lovelace-10"}`}, // rest's Pass
		{"/lists/l/members/aa", `{"LNAME":"Lovelace-1"}`, http.StatusTeapot, "ada"},
		{"/lists/l/members/c0ffee", `{}`, http.StatusGone, "hash"},
		{"/lists/l/members/aa", `{"LNAME":"Lovelace-1"}`, http.StatusOK, `{"LNAME":"Lovelace-1"}`}, // ada's plan is spent
		{"/lists/l/members/bb", `{}`, http.StatusConflict, "rest"},
	} {
		if code, body := put(c.path, c.body); code != c.status || body != c.answer {
			t.Errorf("PUT %s %s: %d %q; want %d %q", c.path, c.body, code, body, c.status, c.answer)
		}
	}
	if ada.Requests() != 2 || hash.Requests() != 1 || rest.Requests() != 2 {
		t.Errorf("requests by plan: %d, %d, %d; want 2, 1, 2", ada.Requests(), hash.Requests(), rest.Requests())
	}
	if a := f.Applied(); len(a) != 3 || a[0] != route+` "Lovelace-1\"" #1: 418` {
		t.Errorf("Applied = %q", a)
	}
}
