package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/providertest"
)

// The routes of the provider calls the fault matrix disturbs.
const (
	routeToken   = "POST /v1/oauth2/token"
	routeOrder   = "POST /v2/checkout/orders"
	routeCapture = "POST /v2/checkout/orders/{id}/capture"
	routeMail    = "POST /v3/mail/send"
	routeBatch   = "POST /3.0/lists/{list}"
	routeUpsert  = "PUT /3.0/lists/{list}/members/{hash}"
)

// faultOutcome is what a registration meeting a fault must come to.
type faultOutcome int

const (
	// completes: 202, then completed, charged once.
	completes faultOutcome = iota
	// notCharged: 502 payment_unavailable "Nothing was charged", the seat
	// back at once; the same key, tried again, completes, charged once.
	notCharged
	// needsAttention: 202, then the step fails at once with the
	// provider's reason for the back office, and nothing is retried.
	needsAttention
)

type faultCase struct {
	provider string // paypal, sendgrid or mailchimp: the one behind the proxy
	route    string
	faults   func() []providertest.Fault
	outcome  faultOutcome
	// emails is how many confirmations SendGrid accepts: 2 when it
	// accepted one whose answer was lost (SendGrid has no idempotency
	// key, so the retry sends it again: the one duplicate allowed).
	emails int
	// approval: PayPal leaves card orders APPROVED, so that each needs a
	// capture call.
	approval bool
	// existing: the attendee is already on the Mailchimp list (as an
	// unsubscribed member), so the list step upserts them on their own.
	existing bool
	// failedStep and reason: for needsAttention, the step that fails and
	// a part of its error in the back office.
	failedStep, reason string
	// postgres: the case also runs on PostgreSQL.
	postgres bool
}

func (c faultCase) name() string {
	fs := c.faults()
	names := make([]string, 0, len(fs))
	for _, f := range fs {
		names = append(names, f.String())
	}
	route := c.route
	if c.provider == "mailchimp" && c.route == routeBatch {
		route = "batch"
	}
	if c.provider == "mailchimp" && c.route == routeUpsert {
		route = "upsert"
	}
	n := c.provider + " " + route[strings.IndexByte(route, ' ')+1:] + ": " + names[0]
	if len(names) > 1 {
		n += fmt.Sprintf(" ×%d", len(names))
	}
	return n
}

func one(f providertest.Fault) func() []providertest.Fault {
	return func() []providertest.Fault { return []providertest.Fault{f} }
}

// storm is n 429s in a row, each asking for a wait of secs seconds, in
// delay-seconds or (when date) in HTTP-date form, computed when scheduled.
func storm(n, secs int, date bool, body string) func() []providertest.Fault {
	return func() []providertest.Fault {
		fs := make([]providertest.Fault, n)
		for i := range fs {
			ra := strconv.Itoa(secs)
			if date {
				ra = time.Now().Add(time.Duration(secs+1) * time.Second).UTC().Format(http.TimeFormat)
			}
			fs[i] = providertest.RateLimited(ra, body)
		}
		return fs
	}
}

// Provider-shaped error bodies.
const (
	ppServerError = `{"name":"INTERNAL_SERVER_ERROR","message":"An internal server error occurred.","debug_id":"f00dfeed"}`
	ppUnavailable = `{"name":"SERVICE_UNAVAILABLE","message":"Service Unavailable.","debug_id":"f00dfeed"}`
	ppRateLimited = `{"name":"RATE_LIMIT_REACHED","message":"Too many requests. Blocked due to rate limiting.","debug_id":"f00dfeed"}`
	ppBadClient   = `{"error":"invalid_client","error_description":"Client Authentication failed"}`
	sgServerError = `{"errors":[{"message":"Internal server error","field":null,"help":null}]}`
	sgRateLimited = `{"errors":[{"message":"too many requests","field":null,"help":null}]}`
	mcServerError = `{"type":"https://mailchimp.com/developer/marketing/docs/errors/","title":"Internal Server Error","status":500,"detail":"An unexpected internal error has occurred.","instance":"f00d"}`
	mcRateLimited = `{"type":"https://mailchimp.com/developer/marketing/docs/errors/","title":"Too Many Requests","status":429,"detail":"You have exceeded the limit of 10 simultaneous connections.","instance":"f00d"}`
	mcInvalid     = `{"type":"https://mailchimp.com/developer/marketing/docs/errors/","title":"Invalid Resource","status":400,"detail":"The resource submitted could not be validated.","instance":"f00d"}`
	cdnPage       = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
)

// faultMatrix is every fault against every provider call it can meet.
func faultMatrix() []faultCase {
	pf := func(f providertest.Fault) faultCase {
		return faultCase{provider: "paypal", route: routeOrder, faults: one(f), emails: 1}
	}
	// PayPal, create order (the card charged in one step).
	cs := []faultCase{
		withOutcome(pf(providertest.ResetRequest), notCharged),
		withPostgres(pf(providertest.ResetResponse)),
		pf(providertest.CutBody),
		pf(providertest.StallBody), // registrar gives up after 30 s, then asks PayPal
		withPostgres(pf(providertest.Hang)),
		pf(providertest.Malformed),
		withOutcome(pf(providertest.Answer(http.StatusServiceUnavailable, ppUnavailable)), notCharged),
		withPostgres(pf(providertest.AnswerAfter(http.StatusInternalServerError, ppServerError))),
		withOutcome(pf(providertest.AnswerAfter(http.StatusBadGateway, cdnPage, "Content-Type", "text/html")), completes),
		{provider: "paypal", route: routeOrder, faults: storm(3, 1, false, ppRateLimited), outcome: notCharged, emails: 1},
		{provider: "paypal", route: routeOrder, faults: storm(3, 1, true, ppRateLimited), outcome: notCharged, emails: 1},
	}
	// PayPal, the access token.
	for _, f := range []providertest.Fault{
		providertest.Answer(http.StatusUnauthorized, ppBadClient),
		providertest.Answer(http.StatusServiceUnavailable, ppUnavailable),
		providertest.ResetResponse,
		providertest.Malformed,
	} {
		cs = append(cs, faultCase{provider: "paypal", route: routeToken, faults: one(f), outcome: notCharged, emails: 1})
	}
	// PayPal, the capture of an approved order: failing after the charge
	// (found by asking again), or before it (nothing taken).
	for _, c := range []struct {
		f providertest.Fault
		o faultOutcome
	}{
		{providertest.AnswerAfter(http.StatusInternalServerError, ppServerError), completes},
		{providertest.ResetResponse, completes},
		{providertest.Answer(http.StatusServiceUnavailable, ppUnavailable), notCharged},
		{providertest.ResetRequest, notCharged},
	} {
		cs = append(cs, faultCase{provider: "paypal", route: routeCapture, faults: one(c.f), outcome: c.o, emails: 1, approval: true})
	}
	// SendGrid, mail send.
	for _, c := range []faultCase{
		{faults: one(providertest.ResetRequest), emails: 1},
		{faults: one(providertest.ResetResponse), emails: 2},
		{faults: one(providertest.CutBody), emails: 1},
		{faults: one(providertest.StallBody), emails: 1},
		{faults: one(providertest.Hang), emails: 2},
		{faults: one(providertest.Malformed), emails: 1},
		{faults: one(providertest.Answer(http.StatusInternalServerError, sgServerError)), emails: 1},
		{faults: one(providertest.AnswerAfter(http.StatusBadGateway, cdnPage, "Content-Type", "text/html")), emails: 2},
		{faults: storm(3, 1, false, sgRateLimited), emails: 1},
		{faults: storm(3, 1, true, sgRateLimited), emails: 1, postgres: true},
		{faults: one(providertest.Answer(http.StatusBadRequest, "<html>Bad Request</html>", "Content-Type", "text/html")),
			outcome: needsAttention, failedStep: "send_confirmation", reason: `sendgrid: 400 Bad Request: "<html>Bad Request</html>"`},
	} {
		c.provider, c.route = "sendgrid", routeMail
		cs = append(cs, c)
	}
	// Mailchimp, the batch subscribe; and the upsert of a member already
	// on the list, a PUT, with one fault of each shape.
	mcInvalidCase := faultCase{faults: one(providertest.Answer(http.StatusBadRequest, mcInvalid)), outcome: needsAttention,
		failedStep: "add_to_mailing_list", reason: "400 Invalid Resource: The resource submitted could not be validated."}
	for _, c := range []faultCase{
		{faults: one(providertest.ResetRequest)},
		{faults: one(providertest.ResetResponse), postgres: true},
		{faults: one(providertest.CutBody)},
		{faults: one(providertest.StallBody)},
		{faults: one(providertest.Hang)},
		{faults: one(providertest.Malformed)},
		{faults: one(providertest.Answer(http.StatusInternalServerError, mcServerError))},
		{faults: one(providertest.Answer(http.StatusBadGateway, cdnPage, "Content-Type", "text/html"))},
		{faults: storm(3, 1, false, mcRateLimited)},
		{faults: storm(3, 1, true, mcRateLimited)},
		mcInvalidCase,
	} {
		c.provider, c.route, c.emails = "mailchimp", routeBatch, 1
		cs = append(cs, c)
	}
	for _, c := range []faultCase{
		{faults: one(providertest.ResetResponse)},
		{faults: one(providertest.Hang)},
		{faults: one(providertest.Answer(http.StatusInternalServerError, mcServerError))},
		{faults: storm(2, 1, true, mcRateLimited)},
		mcInvalidCase,
	} {
		c.provider, c.route, c.emails, c.existing = "mailchimp", routeUpsert, 1, true
		cs = append(cs, c)
	}
	return cs
}

func withOutcome(c faultCase, o faultOutcome) faultCase { c.outcome = o; return c }
func withPostgres(c faultCase) faultCase                { c.postgres = true; return c }

// TestProviderFaults is the fault matrix: each fault meets one provider
// call of one registration, behind a proxy in front of the strict fakes.
// Every registration either completes (charged once, one confirmation, on
// the list) or fails with a clear answer (502 "Nothing was charged", or a
// step needing attention with the provider's reason), and nothing is
// charged twice; an email is sent twice only when SendGrid accepted it and
// its answer was lost. A wait a 429 asked for, in seconds or as an
// HTTP-date, is honoured before the call is made again.
func TestProviderFaults(t *testing.T) {
	t.Parallel()
	// A case spends its time waiting for timeouts, back-offs and the waits
	// 429s ask for, not computing: the cases run side by side in
	// goroutines of their own rather than as parallel subtests, which go
	// test would run only GOMAXPROCS at a time. A few lanes keep the
	// registrars starting at once (each migrating a database) few enough
	// for a small machine; the cases that wait longest start first.
	const lanes = 10
	cases := faultMatrix()
	slices.SortStableFunc(cases, func(a, b faultCase) int { return b.wait() - a.wait() })
	lane := make(chan struct{}, lanes)
	var wg sync.WaitGroup
	for _, tc := range cases {
		for _, engine := range engines {
			if engine == "postgres" && !tc.postgres {
				continue
			}
			wg.Go(func() {
				lane <- struct{}{}
				defer func() { <-lane }()
				t.Run(engine+"/"+tc.name(), func(t *testing.T) { runFaultCase(t, engine, tc) })
			})
		}
	}
	wg.Wait()
}

// wait ranks a case by how long it waits: PayPal's calls that never finish
// (registrar waits 30 s for a charge), then calls that end with their job's
// time, then 429 storms.
func (c faultCase) wait() int {
	f := c.faults()
	switch k := f[0].Kind; {
	case c.provider == "paypal" && (k == providertest.FaultHang || k == providertest.FaultStallBody):
		return 3
	case k == providertest.FaultHang || k == providertest.FaultStallBody:
		return 2
	case len(f) > 1:
		return 1
	}
	return 0
}

func runFaultCase(t *testing.T, engine string, tc faultCase) {
	dir := t.TempDir()
	e, f := providerEnv(t, dir, "sendgrid")
	where := useEngine(t, e, engine, dir)
	// A provider call that hangs ends with its job's attempt.
	e["REGISTRAR_JOB_TIMEOUT"] = "5s"
	var proxy *providertest.Faults
	switch tc.provider {
	case "paypal":
		proxy = providertest.NewFaults(t, f.paypal.URL())
		e["PAYPAL_API_BASE"] = proxy.URL()
	case "sendgrid":
		proxy = providertest.NewFaults(t, f.sendgrid.URL())
		e["SENDGRID_API_BASE"] = proxy.URL()
	case "mailchimp":
		proxy = providertest.NewFaults(t, strings.TrimSuffix(f.mailchimp.URL(), "/3.0"))
		e["MAILCHIMP_API_BASE"] = proxy.URL() + "/3.0"
	}
	f.paypal.RequireApproval(tc.approval)
	const attendee = 3
	addr := fmt.Sprintf("ada.%d@example.org", attendee)
	if tc.existing {
		f.mailchimp.Unsubscribe(addr)
	}
	s := startRun(t, e)
	defer s.stop(t)

	faults := tc.faults()
	proxy.Schedule(tc.route, faults...)
	body := paypalBody(attendee, true, "Ada Lovelace")
	const key = "k-fault"
	var id string
	switch tc.outcome {
	case completes, needsAttention:
		code, c, err := post(http.DefaultClient, s.url, body, key)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("answer %d %v; want 202\n%s", code, err, s.logs)
		}
		id = c.ID
	case notCharged:
		// The attendee tries again with the same key until PayPal takes
		// the charge; each refusal says nothing was charged and frees
		// the seat at once.
		tries := 0
		for try := 1; ; try++ {
			tries = try
			code, a := apiAnswer(t, s.url, body, key)
			if code == http.StatusAccepted {
				if try == 1 {
					t.Fatalf("the first try was answered 202; want 502 nothing charged")
				}
				break
			}
			if code != http.StatusBadGateway || a.Error.Code != "payment_unavailable" || !strings.Contains(a.Error.Message, "Nothing was charged") {
				t.Fatalf("try %d: %d %+v; want 502 payment_unavailable, nothing was charged", try, code, a.Error)
			}
			if taken, holds := seatsHeld(t, where); taken != 0 || holds != 0 {
				t.Fatalf("try %d: taken %d, held %d; want the seat back at once", try, taken, holds)
			}
			if n := f.paypal.Captures(); n != 0 {
				t.Fatalf("try %d: %d captures after a refusal", try, n)
			}
			if try > len(faults)+1 {
				t.Fatalf("still refused after %d tries; the schedule had %d faults", try, len(faults))
			}
		}
		code, c, err := post(http.DefaultClient, s.url, body, key)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("the accepted key again: %d %v; want 202", code, err)
		}
		id = c.ID
		// A 429 refuses the order before any charge: PayPal is not asked
		// again whether it charged (one order call a try).
		if tc.route == routeOrder && faults[0].Status == http.StatusTooManyRequests {
			if n := proxy.Requests(routeOrder); n != tries {
				t.Errorf("%d order calls in %d tries; want one a try, no resolve", n, tries)
			}
		}
	}

	var st status
	if tc.outcome == needsAttention {
		st = waitStatus(t, s.url, id, "needs_attention", 60*time.Second)
		if got := st.Steps[tc.failedStep]; got.Status != "failed" || got.Attempts != 1 {
			t.Errorf("step %s: %+v; want failed after one attempt (retrying cannot help)", tc.failedStep, got)
		}
		if msg := stepError(t, where, id, tc.failedStep); !strings.Contains(msg, tc.reason) {
			t.Errorf("step %s error %q; want it to say %q", tc.failedStep, msg, tc.reason)
		}
	} else {
		st = waitCompleted(t, s.url, []string{id}, 90*time.Second)[id]
	}

	if got := proxy.Pending(tc.route); got != 0 {
		t.Errorf("%d faults never met a request; applied: %q", got, proxy.Applied())
	}
	if got, want := len(proxy.Applied()), len(faults); got != want {
		t.Errorf("applied %q; want %d faults", proxy.Applied(), want)
	}
	if n, all := f.paypal.CapturesFor(id), f.paypal.Captures(); n != 1 || all != 1 {
		t.Errorf("captures for %s: %d (all: %d); want 1", id, n, all)
	}
	if f.paypal.Refunds() != 0 {
		t.Errorf("%d refunds; want none", f.paypal.Refunds())
	}
	if taken, holds := seatsHeld(t, where); taken != 1 || holds != 0 {
		t.Errorf("taken %d, held %d; want 1 and 0", taken, holds)
	}
	emails := 0
	for _, m := range f.sendgrid.Accepted() {
		if m.CustomArgs["registration_id"] != id {
			t.Errorf("an email for %q; only %s registered", m.CustomArgs["registration_id"], id)
			continue
		}
		emails++
	}
	wantEmails := tc.emails
	if tc.outcome == needsAttention && tc.failedStep == "send_confirmation" {
		wantEmails = 0
	}
	if emails != wantEmails {
		t.Errorf("%d confirmations for %s; want %d", emails, id, wantEmails)
	}
	if tc.outcome != needsAttention || tc.failedStep != "add_to_mailing_list" {
		m, ok := f.mailchimp.Member(addr)
		wantStatus := "pending"
		if tc.existing {
			wantStatus = "unsubscribed" // never resubscribed
		}
		if !ok || m.Status != wantStatus || len(m.Tags) != 1 || m.Tags[0] != "gopherfest-2027" {
			t.Errorf("Mailchimp member %+v (listed %v); want %s, tagged with the event", m, ok, wantStatus)
		}
	}
	// A wait a 429 asked for passed before the next call.
	for i, ft := range faults {
		ra := ft.Header.Get("Retry-After")
		if ra == "" || tc.provider == "paypal" { // registrar does not retry PayPal; the attendee does
			continue
		}
		at := proxy.Arrivals(tc.route)
		if len(at) <= i+1 {
			t.Errorf("no call after the 429 #%d", i+1)
			continue
		}
		earliest := at[i]
		if secs, err := strconv.Atoi(ra); err == nil {
			earliest = earliest.Add(time.Duration(secs) * time.Second)
		} else if d, err := http.ParseTime(ra); err == nil {
			earliest = d
		}
		// The clock's granularity, no more.
		if next := at[i+1]; next.Before(earliest.Add(-50 * time.Millisecond)) {
			t.Errorf("429 #%d asked to wait until %s (Retry-After %q); the next call came at %s",
				i+1, earliest.Format(time.RFC3339Nano), ra, next.Format(time.RFC3339Nano))
		}
	}
	if st.Status == "" {
		t.Errorf("no status for %s", id)
	}
	assertNoSecrets(t, s.logs.String())
}

// waitStatus polls a registration until it has status want.
func waitStatus(t *testing.T, base, id, want string, within time.Duration) status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s, err := getStatus(base, id)
		if err == nil && s.Status == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration %s: %+v %v; want %s within %s", id, s, err, want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stepError is a step's error as the back office shows it.
func stepError(t *testing.T, where, id, step string) string {
	t.Helper()
	var db *sql.DB
	if strings.HasPrefix(where, "postgres") {
		var err error
		if db, err = sql.Open("pgx", where); err != nil {
			t.Fatal(err)
		}
	} else {
		db = openDB(t, filepath.Join(where, "registrar.db"))
	}
	defer db.Close()
	q := `SELECT last_error FROM registration_steps WHERE registration_id = ? AND step = ?`
	if strings.HasPrefix(where, "postgres") {
		q = `SELECT last_error FROM registration_steps WHERE registration_id = $1 AND step = $2`
	}
	var msg sql.NullString
	if err := db.QueryRow(q, id, step).Scan(&msg); err != nil {
		t.Fatal(err)
	}
	return msg.String
}
