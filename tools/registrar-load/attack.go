package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/registrar/registrar/internal/registration"
)

// generator makes the attempts: each a distinct attendee with a valid test
// card, so every attempt is a new registration.
type generator struct {
	url        string
	runID      string
	newsletter float64
	keys       bool
	expiry     string
	next       atomic.Int64
}

func newGenerator(baseURL string, o options, now time.Time) *generator {
	var b [4]byte
	rand.Read(b[:])
	return &generator{
		url:        strings.TrimRight(baseURL, "/") + "/api/registrations",
		runID:      hex.EncodeToString(b[:]),
		newsletter: o.newsletter,
		keys:       o.keys,
		expiry:     fmt.Sprintf("%04d-12", now.Year()+3),
	}
}

// wantsNewsletter spreads a share r of newsletter sign-ups evenly over the
// attempts: attempt i signs up when i*r and (i+1)*r fall in different whole
// numbers.
func wantsNewsletter(i int64, r float64) bool {
	return math.Floor(float64(i+1)*r) > math.Floor(float64(i)*r)
}

// request is attempt i's body: the API's JSON, as registrar decodes it.
func (g *generator) request(i int64) registration.Request {
	n := strconv.FormatInt(i, 10)
	return registration.Request{
		Ticket: "standard",
		Attendee: registration.Attendee{
			FirstName: "Load",
			LastName:  "Tester " + n,
			Email:     "load-" + g.runID + "-" + n + "@example.org",
			Company:   "Load Testing Ltd",
		},
		Billing: &registration.Billing{
			Card: registration.CardInput{
				Number: "4111 1111 1111 1111",
				Expiry: g.expiry,
				CVC:    "123",
				// The fake PayPal counts captures per card holder: the name
				// is unique per attempt, so a second capture is a double charge.
				Name: "Load Tester " + g.runID + " " + n,
			},
			Address: registration.Address{
				Line1:      "12 St James's Square",
				City:       "London",
				PostalCode: "SW1Y 4JH",
				Country:    "GB",
			},
		},
		Newsletter: wantsNewsletter(i, g.newsletter),
	}
}

// targeter hands vegeta one new attempt per call.
func (g *generator) targeter() vegeta.Targeter {
	return func(t *vegeta.Target) error {
		i := g.next.Add(1) - 1
		body, err := json.Marshal(g.request(i))
		if err != nil {
			return err
		}
		t.Method = http.MethodPost
		t.URL = g.url
		t.Body = body
		t.Header = http.Header{"Content-Type": {"application/json"}}
		if g.keys {
			t.Header.Set("Idempotency-Key", "load-"+g.runID+"-"+strconv.FormatInt(i, 10))
		}
		return nil
	}
}

// burstPacer sends n hits at n per second, then stops.
type burstPacer struct {
	n    uint64
	rate vegeta.ConstantPacer
}

func (p burstPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits >= p.n {
		return 0, true
	}
	return p.rate.Pace(elapsed, hits)
}

func (p burstPacer) Rate(elapsed time.Duration) float64 { return p.rate.Rate(elapsed) }

// retryTransport sends each attempt with its own timeout and retries an
// attempt that carries an Idempotency-Key, as a careful client would: on a
// transport error (its own timeout included), a 5xx, and 409
// idempotency_in_progress, with the same key and body, after a wait that
// doubles each time.
type retryTransport struct {
	base    http.RoundTripper
	retries int
	wait    time.Duration
	timeout time.Duration // per attempt; 0: none

	// answered, when set, learns of every HTTP answer (retries included)
	// as it arrives.
	answered func(status int, at time.Time)

	requests atomic.Int64
	mu       sync.Mutex
	retried  map[string]int // answers that were retried, by status and code
}

// cancelOnClose ends an attempt's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := req.Context(), context.CancelFunc(func() {})
		if t.timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, t.timeout)
		}
		r := req.Clone(ctx)
		if attempt > 0 {
			body, err := req.GetBody()
			if err != nil {
				cancel()
				return nil, err
			}
			r.Body = body
		}
		t.requests.Add(1)
		resp, err := t.base.RoundTrip(r)
		if err == nil && t.answered != nil {
			t.answered(resp.StatusCode, time.Now())
		}
		last := attempt >= t.retries || req.Header.Get("Idempotency-Key") == ""
		var reason string
		switch {
		case err != nil:
			cancel()
			if req.Context().Err() != nil || last {
				return nil, err
			}
			reason = "transport: " + errorClass(err.Error())
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusConflict:
			data, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			cancel()
			code := errorCode(data)
			if last || rerr != nil || resp.StatusCode == http.StatusConflict && code != "idempotency_in_progress" {
				resp.Body = io.NopCloser(bytes.NewReader(data))
				return resp, rerr
			}
			reason = strconv.Itoa(resp.StatusCode) + " " + code
		default:
			resp.Body = cancelOnClose{resp.Body, cancel}
			return resp, nil
		}
		t.mu.Lock()
		t.retried[reason]++
		t.mu.Unlock()
		timer := time.NewTimer(t.wait << attempt)
		select {
		case <-timer.C:
		case <-req.Context().Done():
			timer.Stop()
			return nil, req.Context().Err()
		}
	}
}

// errorCode is the error.code of a JSON error envelope, or "".
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// errorClass shortens a transport error: without the request URL, and with
// the addresses of a dial error left out, so that errors group.
func errorClass(s string) string {
	if i := strings.Index(s, `": `); i >= 0 && strings.Contains(s[:i], "http") {
		s = s[i+3:]
	}
	switch {
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "connection reset"):
		return "connection reset"
	case strings.Contains(s, "Client.Timeout"), strings.Contains(s, "deadline exceeded"), strings.Contains(s, "timeout"):
		return "timeout"
	case strings.Contains(s, "EOF"):
		return "EOF"
	case strings.Contains(s, "too many open files"):
		return "too many open files"
	case strings.Contains(s, "cannot assign requested address"):
		return "no free local port"
	}
	return s
}

// record is the final outcome of one attempt (after its retries).
type record struct {
	start   time.Duration // from the attack's start
	latency time.Duration
	status  int    // 0: no answer
	code    string // error.code, or the transport error's class
	id      string // registration id of a 202
}

// maxConnections is -max-connections, or when it is 0 as many connections
// as the open-file limit allows with 2000 files to spare; an in-process
// server (the probe) holds the other end of each connection too.
func maxConnections(o options, inProcess bool) int {
	if o.maxConns != 0 || o.fileLimit == 0 {
		return o.maxConns
	}
	n := int(min(o.fileLimit, 1<<30)) - 2000
	if inProcess {
		n /= 2
	}
	return max(n, 100)
}

// outcome is what one attack produced.
type outcome struct {
	records  []record
	requests int64
	retried  map[string]int
	began    time.Time
	wall     time.Duration // start to last answer
}

// attackHooks learn of answers as they arrive; nil hooks are skipped.
type attackHooks struct {
	// accepted gets each 202's registration id (once per attempt).
	accepted func(id string, at time.Time)
	// answered gets the status of every HTTP answer, retries included.
	answered func(status int, at time.Time)
}

// attack drives one vegeta attack at baseURL with o's rate or burst, telling
// hooks of answers as they arrive.
func attack(ctx context.Context, o options, baseURL, name string, hooks attackHooks) (*outcome, error) {
	accepted := hooks.accepted
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConns:        o.conns,
		MaxIdleConnsPerHost: o.conns,
		MaxConnsPerHost:     maxConnections(o, name == "probe"),
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	rt := &retryTransport{base: tr, retries: o.retries, wait: o.retryWait, timeout: o.timeout, retried: map[string]int{},
		answered: hooks.answered}
	client := &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	maxWorkers := o.maxWorkers
	if maxWorkers == 0 {
		maxWorkers = math.MaxUint64
	}
	attacker := vegeta.NewAttacker(
		vegeta.Client(client),
		vegeta.Workers(o.workers),
		vegeta.MaxWorkers(maxWorkers),
		vegeta.MaxBody(1<<16),
	)

	var pacer vegeta.Pacer
	var du time.Duration
	if o.burst > 0 {
		pacer = burstPacer{n: uint64(o.burst), rate: vegeta.ConstantPacer{Freq: o.burst, Per: time.Second}}
	} else {
		pacer = vegeta.ConstantPacer{Freq: o.rate.Freq, Per: o.rate.Per}
		du = o.duration
	}
	gen := newGenerator(baseURL, o, time.Now())

	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			attacker.Stop()
		case <-stopped:
		}
	}()

	out := &outcome{began: time.Now()}
	var last time.Time
	for res := range attacker.Attack(gen.targeter(), pacer, du, name) {
		rec := record{start: res.Timestamp.Sub(out.began), latency: res.Latency, status: int(res.Code)}
		end := res.Timestamp.Add(res.Latency)
		if end.After(last) {
			last = end
		}
		switch {
		case res.Code == http.StatusAccepted:
			var b struct {
				ID string `json:"id"`
			}
			json.Unmarshal(res.Body, &b)
			rec.id = b.ID
			if accepted != nil && b.ID != "" {
				accepted(b.ID, end)
			}
		case res.Code == 0:
			rec.code = errorClass(res.Error)
		default:
			rec.code = errorCode(res.Body)
		}
		out.records = append(out.records, rec)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	out.wall = last.Sub(out.began)
	out.requests = rt.requests.Load()
	out.retried = rt.retried
	return out, nil
}
