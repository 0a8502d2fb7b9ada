package providertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FaultKind is what a Fault does to one request.
type FaultKind int

const (
	// FaultPass lets the request through untouched (a schedule's filler).
	FaultPass FaultKind = iota
	// FaultResetRequest reads the request's headers and part of its body,
	// then resets the connection: the provider never sees the request.
	FaultResetRequest
	// FaultResetResponse forwards the request (the provider acts on it),
	// then resets the connection before any byte of the answer.
	FaultResetResponse
	// FaultCutBody forwards the request, sends the provider's status and
	// headers (a Content-Length promising the whole body) and half the
	// body, then closes the connection.
	FaultCutBody
	// FaultStallBody forwards the request, sends the provider's status and
	// headers, then holds the body back until the client gives up.
	FaultStallBody
	// FaultHang forwards the request and never answers: the client's
	// timeout is all that ends it.
	FaultHang
	// FaultMalformed forwards the request and answers with the provider's
	// status and headers and a body that is not JSON (its first half, and
	// a stray brace).
	FaultMalformed
	// FaultAnswer answers Status, Header and Body without forwarding: the
	// provider never sees the request.
	FaultAnswer
	// FaultAnswerAfter forwards the request (the provider acts on it) and
	// answers Status, Header and Body instead of the provider's answer, as
	// a gateway failing on the way back would.
	FaultAnswerAfter
)

// Fault is what happens to one request that passes through Faults.
type Fault struct {
	Kind   FaultKind
	Status int         // FaultAnswer, FaultAnswerAfter
	Header http.Header // FaultAnswer, FaultAnswerAfter: e.g. Retry-After
	Body   string      // FaultAnswer, FaultAnswerAfter; empty: a small JSON error
}

// The faults that take no parameter.
var (
	Pass          = Fault{Kind: FaultPass}
	ResetRequest  = Fault{Kind: FaultResetRequest}
	ResetResponse = Fault{Kind: FaultResetResponse}
	CutBody       = Fault{Kind: FaultCutBody}
	StallBody     = Fault{Kind: FaultStallBody}
	Hang          = Fault{Kind: FaultHang}
	Malformed     = Fault{Kind: FaultMalformed}
)

// Answer is a fault answering status with body (empty: a small JSON error)
// without forwarding the request. Headers are given as name, value pairs.
func Answer(status int, body string, header ...string) Fault {
	return Fault{Kind: FaultAnswer, Status: status, Header: headerOf(header), Body: body}
}

// AnswerAfter is Answer once the provider has acted on the request.
func AnswerAfter(status int, body string, header ...string) Fault {
	return Fault{Kind: FaultAnswerAfter, Status: status, Header: headerOf(header), Body: body}
}

// RateLimited is a 429 with Retry-After: retryAfter (delay-seconds or an
// HTTP-date, the two forms RFC 9110 allows), not forwarded.
func RateLimited(retryAfter, body string) Fault {
	return Answer(http.StatusTooManyRequests, body, "Retry-After", retryAfter)
}

func headerOf(kv []string) http.Header {
	if len(kv)%2 != 0 {
		panic("providertest: headers must be name, value pairs")
	}
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func (f Fault) String() string {
	switch f.Kind {
	case FaultPass:
		return "pass"
	case FaultResetRequest:
		return "reset mid-request"
	case FaultResetResponse:
		return "reset mid-response"
	case FaultCutBody:
		return "body cut short"
	case FaultStallBody:
		return "body stalled"
	case FaultHang:
		return "no answer"
	case FaultMalformed:
		return "malformed JSON"
	case FaultAnswer, FaultAnswerAfter:
		s := strconv.Itoa(f.Status)
		if ra := f.Header.Get("Retry-After"); ra != "" {
			s += " Retry-After " + ra
		}
		if f.Kind == FaultAnswerAfter {
			s += " after acting"
		}
		return s
	}
	return fmt.Sprintf("fault %d", int(f.Kind))
}

// forwards reports whether the provider sees a request meeting f.
func (f Fault) forwards() bool {
	return f.Kind != FaultResetRequest && f.Kind != FaultAnswer
}

// Faults is a fault-injecting proxy in front of a provider fake (or any
// HTTP server). Requests pass through unchanged except those a plan names:
// the nth request of a plan's route, from the scheduling on, meets the
// plan's nth fault, on the way to the provider or on the way back. The
// client under test is pointed at URL instead of the fake's; the fake still
// checks every request that reaches it.
//
// Routes are http.ServeMux patterns with a method, e.g.
// "POST /v2/checkout/orders/{id}/capture". A plan made by ScheduleFor
// takes only the requests of its route whose path or body holds its marker
// (an attendee's name or address, say), so that clients sharing the proxy
// each meet their own faults; a plan made by Schedule takes the route's
// other requests.
type Faults struct {
	tb      testing.TB
	target  string
	srv     *httptest.Server
	fwd     *http.Client
	closing chan struct{}

	mu      sync.Mutex
	routes  *http.ServeMux // patterns only, for matching
	plans   map[string][]*FaultPlan
	applied []string
}

// FaultPlan is the schedule of faults of one route (and marker), with what
// it has seen.
type FaultPlan struct {
	f             *Faults
	route, marker string
	faults        []Fault // still to come
	seen          int
	arrived       []time.Time
}

// NewFaults starts a proxy forwarding to target (a base URL such as a
// fake's URL(), without a path). It is closed when the test ends, releasing
// every request it holds.
func NewFaults(tb testing.TB, target string) *Faults {
	tb.Helper()
	f := &Faults{
		tb: tb, target: strings.TrimRight(target, "/"), closing: make(chan struct{}),
		fwd:    &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		routes: http.NewServeMux(), plans: map[string][]*FaultPlan{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	tb.Cleanup(func() {
		close(f.closing)
		f.srv.Close()
		f.fwd.CloseIdleConnections()
	})
	return f
}

// URL is the proxy's base URL: what the client under test is given in
// place of the provider's.
func (f *Faults) URL() string { return f.srv.URL }

// Schedule makes the following requests of route meet faults in turn: the
// first the first fault, and so on (Pass lets one through). A second call
// for the same route appends to what is left of its plan.
func (f *Faults) Schedule(route string, faults ...Fault) *FaultPlan {
	return f.ScheduleFor(route, "", faults...)
}

// ScheduleFor is Schedule for the requests of route whose path or body
// holds marker.
func (f *Faults) ScheduleFor(route, marker string, faults ...Fault) *FaultPlan {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.plans[route]; !ok {
		f.routes.Handle(route, http.NotFoundHandler())
	}
	for _, p := range f.plans[route] {
		if p.marker == marker {
			p.faults = append(p.faults, faults...)
			return p
		}
	}
	p := &FaultPlan{f: f, route: route, marker: marker, faults: faults}
	f.plans[route] = append(f.plans[route], p)
	return p
}

// Pending is how many faults of the plan are still to come.
func (p *FaultPlan) Pending() int {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	n := 0
	for _, ft := range p.faults {
		if ft.Kind != FaultPass {
			n++
		}
	}
	return n
}

// Requests counts the requests the plan has taken.
func (p *FaultPlan) Requests() int {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	return p.seen
}

// Arrivals are when each request the plan took arrived, in order.
func (p *FaultPlan) Arrivals() []time.Time {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	return append([]time.Time(nil), p.arrived...)
}

// Applied lists the faults applied so far, as "ROUTE #N: FAULT" (with the
// marker after the route when there is one).
func (f *Faults) Applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.applied...)
}

// next finds the plan r belongs to, counts r under it and returns r's
// fault. It reads the body when a plan of r's route has a marker, and
// then gives r a copy of it.
func (f *Faults) next(r *http.Request) (Fault, error) {
	f.mu.Lock()
	_, route := f.routes.Handler(r)
	marked := false
	for _, p := range f.plans[route] {
		marked = marked || p.marker != ""
	}
	f.mu.Unlock()
	if route == "" {
		return Pass, nil
	}
	var body []byte
	if marked {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return Pass, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var plan *FaultPlan
	for _, p := range f.plans[route] {
		if p.marker == "" && plan == nil {
			plan = p
		}
		if p.marker != "" && (strings.Contains(r.URL.Path, p.marker) || bytes.Contains(body, []byte(p.marker))) {
			plan = p
			break
		}
	}
	if plan == nil {
		return Pass, nil
	}
	plan.seen++
	plan.arrived = append(plan.arrived, time.Now())
	if len(plan.faults) == 0 {
		return Pass, nil
	}
	ft := plan.faults[0]
	plan.faults = plan.faults[1:]
	if ft.Kind != FaultPass {
		where := route
		if plan.marker != "" {
			where += " " + strconv.Quote(plan.marker)
		}
		f.applied = append(f.applied, fmt.Sprintf("%s #%d: %s", where, plan.seen, ft))
	}
	return ft, nil
}

func (f *Faults) serve(w http.ResponseWriter, r *http.Request) {
	ft, err := f.next(r)
	if err != nil {
		http.Error(w, "fault proxy: "+err.Error(), http.StatusBadRequest)
		return
	}
	if ft.Kind == FaultResetRequest {
		// Half the body arrives; then the connection is reset.
		n := r.ContentLength / 2
		if n < 0 {
			n = 1
		}
		_, _ = io.CopyN(io.Discard, r.Body, n)
		f.reset(w)
		return
	}
	if ft.Kind == FaultAnswer {
		_, _ = io.Copy(io.Discard, r.Body)
		writeFaultAnswer(w, ft)
		return
	}
	resp, body, err := f.forward(r)
	if err != nil {
		select {
		case <-f.closing:
		default:
			f.tb.Errorf("fault proxy: forwarding %s %s: %v", r.Method, r.URL.Path, err)
		}
		http.Error(w, "fault proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	switch ft.Kind {
	case FaultResetResponse:
		f.reset(w)
	case FaultCutBody:
		f.cut(w, resp, body)
	case FaultStallBody:
		copyHeader(w.Header(), resp.Header)
		w.Header().Set("Content-Length", strconv.Itoa(max(len(body), 1)))
		w.WriteHeader(resp.StatusCode)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		f.hold(r)
	case FaultHang:
		f.hold(r)
	case FaultMalformed:
		copyHeader(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(append(bytes.Clone(body[:len(body)/2]), '}'))
	case FaultAnswerAfter:
		writeFaultAnswer(w, ft)
	default:
		copyHeader(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}
}

// forward sends r on to the target and reads the whole answer. The
// provider gets the request even if the client gives up meanwhile, as a
// request that has left the client does.
func (f *Faults) forward(r *http.Request) (*http.Response, []byte, error) {
	in, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, r.Method, f.target+r.URL.RequestURI(), bytes.NewReader(in))
	if err != nil {
		return nil, nil, err
	}
	copyHeader(out.Header, r.Header)
	resp, err := f.fwd.Do(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// hold keeps a request unanswered until its client goes away or the test
// ends.
func (f *Faults) hold(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-f.closing:
	}
}

// reset closes the client's connection abruptly (TCP RST), with nothing
// written.
func (f *Faults) reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		f.tb.Errorf("fault proxy: hijack: %v", err)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// cut writes the provider's status line and headers, a Content-Length for
// the whole body and half of it, then closes the connection.
func (f *Faults) cut(w http.ResponseWriter, resp *http.Response, body []byte) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		f.tb.Errorf("fault proxy: hijack: %v", err)
		return
	}
	defer conn.Close()
	h := http.Header{}
	copyHeader(h, resp.Header)
	h.Set("Content-Length", strconv.Itoa(max(len(body), 2)))
	h.Set("Connection", "close")
	bw := bufio.NewWriter(conn)
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	_ = h.Write(bw)
	_, _ = bw.WriteString("\r\n")
	_, _ = bw.Write(body[:len(body)/2])
	_ = bw.Flush()
}

func writeFaultAnswer(w http.ResponseWriter, ft Fault) {
	body := ft.Body
	if body == "" {
		body = fmt.Sprintf(`{"message":"injected fault: %d %s"}`, ft.Status, http.StatusText(ft.Status))
	}
	if ft.Header.Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	copyHeader(w.Header(), ft.Header)
	w.WriteHeader(ft.Status)
	_, _ = io.WriteString(w, body)
}

// hopByHop are the headers that belong to one connection, not to the
// message a proxy passes on.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		if hopByHop[k] {
			continue
		}
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}
