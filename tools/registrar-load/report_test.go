package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := percentiles(ds)
	want := Percentiles{N: 100, P50: 50, P95: 95, P99: 99, Max: 100}
	if got != want {
		t.Fatalf("percentiles(1..100 ms) = %+v, want %+v", got, want)
	}
	if ds[0] != 100*time.Millisecond {
		t.Fatal("percentiles sorted its input")
	}

	tests := []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 99, 7},
		{[]time.Duration{1, 2, 3, 4}, 50, 2},  // nearest rank: ceil(0.5*4) = 2
		{[]time.Duration{1, 2, 3, 4}, 51, 3},  // ceil(2.04) = 3
		{[]time.Duration{1, 2, 3, 4}, 100, 4}, //
		{[]time.Duration{1, 2, 3, 4}, 1, 1},
	}
	for _, tt := range tests {
		if got := percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %g) = %v, want %v", tt.in, tt.p, got, tt.want)
		}
	}
}

func TestRatioAndMS(t *testing.T) {
	t.Parallel()
	if got := ratio(3, 4); got != 0.75 {
		t.Errorf("ratio(3, 4) = %g", got)
	}
	if got := ratio(3, 0); got != 0 {
		t.Errorf("ratio(3, 0) = %g, want 0", got)
	}
	if got := ms(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("ms(1.5ms) = %g", got)
	}
}

// TestSummarise checks the report math on fixed records: 4 accepted, 5
// sold out, one 502 and one transport error over 2 s.
func TestSummarise(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	out := &outcome{wall: 2 * time.Second, requests: 13, retried: map[string]int{"502 payment_unavailable": 2}}
	for i := range 4 {
		out.records = append(out.records, record{start: time.Duration(i) * 100 * ms, latency: time.Duration(60+i*10) * ms, status: 202, id: "id" + string(rune('a'+i))})
	}
	for i := range 5 {
		out.records = append(out.records, record{start: time.Duration(500+i*100) * ms, latency: 2 * ms, status: 409, code: "sold_out"})
	}
	out.records = append(out.records,
		record{start: 1500 * ms, latency: 30 * ms, status: 502, code: "payment_unavailable"},
		record{start: 1600 * ms, latency: 400 * ms, status: 0, code: "timeout"},
	)
	o := options{providerDelay: 50 * ms}
	s := summarise("registrar", "http://x", o, out)

	if s.Attempts != 11 || s.Accepted != 4 || s.SoldOut != 5 || s.Answered != 9 || s.Requests != 13 {
		t.Fatalf("counts: %+v", s)
	}
	if s.AcceptedPerSec != 2 || s.SoldOutPerSec != 2.5 || s.AnsweredPerSec != 4.5 {
		t.Fatalf("rates: accepted %g, sold out %g, answered %g; want 2, 2.5, 4.5", s.AcceptedPerSec, s.SoldOutPerSec, s.AnsweredPerSec)
	}
	if want := map[string]int{"502 payment_unavailable": 1, "0 timeout": 1}; !equalCounts(s.Errors, want) {
		t.Fatalf("errors = %v, want %v", s.Errors, want)
	}
	if s.AcceptedLatency != (Percentiles{N: 4, P50: 70, P95: 90, P99: 90, Max: 90}) {
		t.Fatalf("accepted latency = %+v", s.AcceptedLatency)
	}
	if s.ServerP99MS != 40 {
		t.Fatalf("server p99 = %g, want 90-50 = 40", s.ServerP99MS)
	}
	if s.SoldOutAfterMS == nil || *s.SoldOutAfterMS != 502 {
		t.Fatalf("sold out after = %v, want 502 ms", s.SoldOutAfterMS)
	}
	if s.LastAcceptedMS != 390 {
		t.Fatalf("last accepted = %g, want 300+90", s.LastAcceptedMS)
	}

	r := &Report{Registrar: s, Probe: &Side{AcceptedPerSec: 8, AnsweredPerSec: 9}}
	r.finish()
	if r.Ratio.AcceptedPerSec != 0.25 || r.Ratio.AnsweredPerSec != 0.5 {
		t.Fatalf("ratio = %+v, want 0.25 and 0.5", r.Ratio)
	}
	var text strings.Builder
	r.writeText(&text)
	for _, want := range []string{"accepted     4  2.0/s", "502 payment_unavailable: 1", "registrar / probe: accepted/s 0.25"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var js strings.Builder
	if err := r.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil || back.Registrar.Accepted != 4 {
		t.Fatalf("JSON report does not read back: %v", err)
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestExactness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		capacity int
		paid     int
		pc       *ProviderCounts
		want     Exactness
	}{
		{"exact", 10, 10, &ProviderCounts{NetCaptures: 10}, Exactness{Capacity: 10, Paid: 10, OK: true}},
		{"oversold by 202s", 10, 12, &ProviderCounts{NetCaptures: 12}, Exactness{Capacity: 10, Paid: 12, Oversold: 2}},
		{"oversold by captures", 10, 10, &ProviderCounts{NetCaptures: 11, CapturedWithoutAcceptance: 1}, Exactness{Capacity: 10, Paid: 10, Oversold: 1}},
		{"double charge", 10, 5, &ProviderCounts{NetCaptures: 6, AttendeesChargedTwice: 1}, Exactness{Capacity: 10, Paid: 5, DoubleCharges: 1}},
		{"charged, not registered", 10, 9, &ProviderCounts{NetCaptures: 10, CapturedWithoutAcceptance: 1, ChargedNotRegistered: 1}, Exactness{Capacity: 10, Paid: 9}},
		{"registered, answer lost", 10, 10, &ProviderCounts{NetCaptures: 10, CapturedWithoutAcceptance: 1, RegisteredUnanswered: 1}, Exactness{Capacity: 10, Paid: 10, OK: true}},
		{"no capacity check", 0, 50, nil, Exactness{Paid: 50, OK: true}},
	}
	for _, tt := range tests {
		if got := *exactness(tt.capacity, tt.paid, tt.pc); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestRateFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want float64
		bad  bool
	}{
		{"500", 500, false},
		{"500/s", 500, false},
		{"500/1s", 500, false},
		{"30000/1m", 500, false},
		{"30000/m", 500, false},
		{"50/100ms", 500, false},
		{"x/s", 0, true},
		{"5/0s", 0, true},
	}
	for _, tt := range tests {
		var r rate
		err := r.Set(tt.in)
		if (err != nil) != tt.bad || !tt.bad && r.perSecond() != tt.want {
			t.Errorf("rate %q = %v (%g/s), %v", tt.in, r, r.perSecond(), err)
		}
	}
}

func TestWantsNewsletter(t *testing.T) {
	t.Parallel()
	for _, r := range []float64{0, 0.25, 0.5, 1} {
		n := 0
		for i := range int64(1000) {
			if wantsNewsletter(i, r) {
				n++
			}
		}
		if want := int(r * 1000); n != want {
			t.Errorf("ratio %g: %d of 1000 sign up, want %d", r, n, want)
		}
	}
}

// TestRetryTransport retries with the same key and body on a 5xx and on
// 409 idempotency_in_progress, and not on 409 sold_out.
func TestRetryTransport(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) != `{"x":1}` || r.Header.Get("Idempotency-Key") != "k1" {
			t.Errorf("call %d: body %q key %q", calls.Load(), body, r.Header.Get("Idempotency-Key"))
		}
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, `{"error":{"code":"payment_unavailable"}}`)
		case 2:
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":{"code":"idempotency_in_progress"}}`)
		case 3:
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":{"code":"sold_out"}}`)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer srv.Close()
	rt := &retryTransport{base: http.DefaultTransport, retries: 5, wait: time.Millisecond, retried: map[string]int{}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"x":1}`))
	req.Header.Set("Idempotency-Key", "k1")
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || errorCode(body) != "sold_out" {
		t.Fatalf("final answer %d %s, want 409 sold_out", resp.StatusCode, body)
	}
	if rt.requests.Load() != 3 || rt.retried["502 payment_unavailable"] != 1 || rt.retried["409 idempotency_in_progress"] != 1 {
		t.Fatalf("requests %d, retried %v", rt.requests.Load(), rt.retried)
	}
}

func TestErrorClass(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		`Post "http://127.0.0.1:1/api/registrations": dial tcp 127.0.0.1:1: connect: connection refused`:                  "connection refused",
		`Post "http://127.0.0.1:1/api/registrations": context deadline exceeded (Client.Timeout exceeded while awaiting)`: "timeout",
		`Post "http://127.0.0.1:1/api/registrations": EOF`:                                                                "EOF",
	}
	for in, want := range tests {
		if got := errorClass(in); got != want {
			t.Errorf("errorClass(%q) = %q, want %q", in, got, want)
		}
	}
}
