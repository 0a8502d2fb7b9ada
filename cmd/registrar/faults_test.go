package main

import (
	"database/sql"
	"fmt"
	"net/http"
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
	// notCharged: 502 payment_unavailable "Nothing was charged"; the same
	// key, tried again, completes, charged once.
	notCharged
	// needsAttention: 202, then the step fails at once with the
	// provider's reason for the back office, and nothing is retried.
	needsAttention
)

// faultCase is one registration meeting faults on one provider call.
type faultCase struct {
	route   string
	faults  func() []providertest.Fault
	outcome faultOutcome
	// emails is how many confirmations SendGrid accepts: 2 when it
	// accepted one whose answer was lost (SendGrid has no idempotency
	// key, so the retry sends it again: the one duplicate allowed).
	emails int
	// existing: the attendee is already on the Mailchimp list (as an
	// unsubscribed member), so the list step upserts them on their own.
	existing bool
	// failedStep and reason: for needsAttention, the step that fails and
	// a part of its error in the back office.
	failedStep, reason string
}

func (c faultCase) name() string {
	fs := c.faults()
	route := c.route[strings.IndexByte(c.route, ' ')+1:]
	switch c.route {
	case routeBatch:
		route = "batch"
	case routeUpsert:
		route = "upsert"
	}
	n := route + ": " + fs[0].String()
	if len(fs) > 1 {
		n += fmt.Sprintf(" ×%d", len(fs))
	}
	return n
}

// faultGroup is the cases one registrar runs, with one provider behind the
// proxy.
type faultGroup struct {
	name, provider, engine string
	// approval: PayPal leaves card orders APPROVED, so that each needs a
	// capture call.
	approval bool
	// apart: the cases run one after another, as each one's fault could
	// reach the others' requests: the access token is shared, a capture
	// call names no attendee, and concurrent subscriptions share a
	// Mailchimp batch call. Otherwise they run at once, each fault aimed
	// at its attendee's requests.
	apart bool
	// waits: some cases' calls never finish; the job timeout is cut to
	// 10 s so that their attempts end sooner. Only those cases have it: on
	// a loaded machine a confirmation can take that long, and a send cut
	// off after SendGrid accepted it is sent again.
	waits bool
	cases []faultCase
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

// faultMatrix is every fault against every provider call it can meet, in
// groups of cases that share a registrar.
func faultMatrix() []faultGroup {
	order := func(f providertest.Fault, o faultOutcome) faultCase {
		return faultCase{route: routeOrder, faults: one(f), outcome: o, emails: 1}
	}
	orders := []faultCase{
		order(providertest.ResetRequest, notCharged),
		order(providertest.ResetResponse, completes),
		order(providertest.CutBody, completes),
		order(providertest.StallBody, completes), // registrar gives up after 30 s, then asks PayPal
		order(providertest.Hang, completes),
		order(providertest.Malformed, completes),
		order(providertest.Answer(http.StatusServiceUnavailable, ppUnavailable), notCharged),
		order(providertest.AnswerAfter(http.StatusInternalServerError, ppServerError), completes),
		order(providertest.AnswerAfter(http.StatusBadGateway, cdnPage, "Content-Type", "text/html"), completes),
		{route: routeOrder, faults: storm(3, 1, false, ppRateLimited), outcome: notCharged, emails: 1},
		{route: routeOrder, faults: storm(3, 1, true, ppRateLimited), outcome: notCharged, emails: 1},
	}
	var token []faultCase
	for _, f := range []providertest.Fault{
		providertest.Answer(http.StatusUnauthorized, ppBadClient),
		providertest.Answer(http.StatusServiceUnavailable, ppUnavailable),
		providertest.ResetResponse,
		providertest.Malformed,
	} {
		token = append(token, faultCase{route: routeToken, faults: one(f), outcome: notCharged, emails: 1})
	}
	// The capture of an approved order failing after the charge (found by
	// asking PayPal again) or before it (nothing taken).
	capture := func(f providertest.Fault, o faultOutcome) faultCase {
		return faultCase{route: routeCapture, faults: one(f), outcome: o, emails: 1}
	}
	captures := []faultCase{
		capture(providertest.AnswerAfter(http.StatusInternalServerError, ppServerError), completes),
		capture(providertest.ResetResponse, completes),
		capture(providertest.Answer(http.StatusServiceUnavailable, ppUnavailable), notCharged),
		capture(providertest.ResetRequest, notCharged),
	}
	mail := func(f func() []providertest.Fault, emails int) faultCase {
		return faultCase{route: routeMail, faults: f, emails: emails}
	}
	mails := []faultCase{
		mail(one(providertest.ResetRequest), 1),
		mail(one(providertest.ResetResponse), 2),
		mail(one(providertest.CutBody), 1),
		mail(one(providertest.StallBody), 1),
		mail(one(providertest.Hang), 2),
		mail(one(providertest.Malformed), 1),
		mail(one(providertest.Answer(http.StatusInternalServerError, sgServerError)), 1),
		mail(one(providertest.AnswerAfter(http.StatusBadGateway, cdnPage, "Content-Type", "text/html")), 2),
		mail(storm(3, 1, false, sgRateLimited), 1),
		mail(storm(3, 1, true, sgRateLimited), 1),
		{route: routeMail, faults: one(providertest.Answer(http.StatusBadRequest, "<html>Bad Request</html>", "Content-Type", "text/html")),
			outcome: needsAttention, failedStep: "send_confirmation", reason: `sendgrid: 400 Bad Request: "<html>Bad Request</html>"`},
	}
	batch := func(f func() []providertest.Fault) faultCase {
		return faultCase{route: routeBatch, faults: f, emails: 1}
	}
	invalid := faultCase{faults: one(providertest.Answer(http.StatusBadRequest, mcInvalid)), outcome: needsAttention, emails: 1,
		failedStep: "add_to_mailing_list", reason: "400 Invalid Resource: The resource submitted could not be validated."}
	batchInvalid, upsertInvalid := invalid, invalid
	batchInvalid.route, upsertInvalid.route, upsertInvalid.existing = routeBatch, routeUpsert, true
	upsert := func(f func() []providertest.Fault) faultCase {
		return faultCase{route: routeUpsert, faults: f, emails: 1, existing: true}
	}
	return []faultGroup{
		{name: "paypal order", provider: "paypal", engine: "sqlite", cases: orders},
		{name: "paypal order", provider: "paypal", engine: "postgres", cases: []faultCase{orders[1], orders[4], orders[7]}},
		{name: "sendgrid waits", provider: "sendgrid", engine: "sqlite", waits: true, cases: mails[3:5]},
		{name: "mailchimp batch waits", provider: "mailchimp", engine: "sqlite", apart: true, waits: true, cases: []faultCase{
			batch(one(providertest.Hang)), batch(one(providertest.ResetRequest)), batchInvalid}},
		{name: "mailchimp stalls", provider: "mailchimp", engine: "sqlite", apart: true, waits: true, cases: []faultCase{
			batch(one(providertest.StallBody)), upsert(one(providertest.Hang))}},
		{name: "mailchimp batch storms", provider: "mailchimp", engine: "sqlite", apart: true, cases: []faultCase{
			batch(storm(3, 1, false, mcRateLimited)), batch(storm(3, 1, true, mcRateLimited)),
			batch(one(providertest.Answer(http.StatusInternalServerError, mcServerError)))}},
		{name: "sendgrid", provider: "sendgrid", engine: "postgres", cases: []faultCase{mails[9]}},
		{name: "paypal token", provider: "paypal", engine: "sqlite", apart: true, cases: token},
		{name: "paypal capture", provider: "paypal", engine: "sqlite", apart: true, approval: true, cases: captures},
		{name: "sendgrid", provider: "sendgrid", engine: "sqlite", cases: slices.Concat(mails[:3], mails[5:])},
		{name: "mailchimp batch answers", provider: "mailchimp", engine: "sqlite", apart: true, cases: []faultCase{
			batch(one(providertest.ResetResponse)), batch(one(providertest.CutBody)), batch(one(providertest.Malformed)),
			batch(one(providertest.Answer(http.StatusBadGateway, cdnPage, "Content-Type", "text/html")))}},
		{name: "mailchimp upsert", provider: "mailchimp", engine: "sqlite", cases: []faultCase{
			upsert(one(providertest.ResetResponse)),
			upsert(one(providertest.Answer(http.StatusInternalServerError, mcServerError))),
			upsert(storm(2, 1, true, mcRateLimited)), upsertInvalid}},
		{name: "mailchimp batch", provider: "mailchimp", engine: "postgres", apart: true, cases: []faultCase{batch(one(providertest.ResetResponse))}},
	}
}

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
	// A group spends its time waiting for timeouts, back-offs and the
	// waits 429s ask for, not computing: groups and the cases of a group
	// run side by side in goroutines of their own rather than as parallel
	// subtests, which go test would run only GOMAXPROCS at a time.
	// Starting (creating and migrating a database) is what loads the
	// machine: a few registrars start at a time, the groups that wait
	// longest first.
	starting := make(chan struct{}, 3)
	var wg sync.WaitGroup
	for _, g := range faultMatrix() {
		starting <- struct{}{}
		started := sync.OnceFunc(func() { <-starting })
		wg.Go(func() {
			defer started()
			t.Run(g.engine+"/"+g.name, func(t *testing.T) { runFaultGroup(t, g, started) })
		})
	}
	wg.Wait()
}

// faultRun is a group's registrar, its fakes and the proxy before one of
// them.
type faultRun struct {
	g     faultGroup
	s     *server
	f     fakes
	proxy *providertest.Faults
	where string // the database, for seatsHeld and stepError
}

func runFaultGroup(t *testing.T, g faultGroup, started func()) {
	dir := t.TempDir()
	e, f := providerEnv(t, dir, "sendgrid")
	r := &faultRun{g: g, f: f, where: useEngine(t, e, g.engine, dir)}
	if g.waits {
		e["REGISTRAR_JOB_TIMEOUT"] = "10s"
	}
	switch g.provider {
	case "paypal":
		r.proxy = providertest.NewFaults(t, f.paypal.URL())
		e["PAYPAL_API_BASE"] = r.proxy.URL()
	case "sendgrid":
		r.proxy = providertest.NewFaults(t, f.sendgrid.URL())
		e["SENDGRID_API_BASE"] = r.proxy.URL()
	case "mailchimp":
		r.proxy = providertest.NewFaults(t, strings.TrimSuffix(f.mailchimp.URL(), "/3.0"))
		e["MAILCHIMP_API_BASE"] = r.proxy.URL() + "/3.0"
	}
	f.paypal.RequireApproval(g.approval)
	for i, c := range g.cases {
		if c.existing {
			f.mailchimp.Unsubscribe(faultAttendee(i))
		}
	}
	r.s = startRun(t, e)
	started()
	defer r.s.stop(t)

	ids := make([]string, len(g.cases))
	var wg sync.WaitGroup
	for i, c := range g.cases {
		run := func() { t.Run(c.name(), func(t *testing.T) { ids[i] = r.runCase(t, i, c) }) }
		if g.apart {
			run()
		} else {
			wg.Go(run)
		}
	}
	wg.Wait()
	if t.Failed() {
		t.Logf("registrar's log:\n%s", r.s.logs)
		return
	}
	// Nothing was charged but the registrations, once each; no seat is
	// held, none refunded, and every email is a registration's.
	if n := f.paypal.Captures(); n != len(ids) {
		t.Errorf("%d captures for %d registrations", n, len(ids))
	}
	if f.paypal.Refunds() != 0 {
		t.Errorf("%d refunds; want none", f.paypal.Refunds())
	}
	if taken, holds := seatsHeld(t, r.where); taken != len(ids) || holds != 0 {
		t.Errorf("taken %d, held %d; want %d and 0", taken, holds, len(ids))
	}
	for _, m := range f.sendgrid.Accepted() {
		if !slices.Contains(ids, m.CustomArgs["registration_id"]) {
			t.Errorf("an email for %q, no registration of this run", m.CustomArgs["registration_id"])
		}
	}
	assertNoSecrets(t, r.s.logs.String())
}

// faultAttendee is the email address of case i's attendee (as paypalBody
// writes it, lower-cased).
func faultAttendee(i int) string { return fmt.Sprintf("ada.%d@example.org", 10+i) }

// runCase makes case i's registration meet its faults and checks what it
// came to; it returns the registration's id.
func (r *faultRun) runCase(t *testing.T, i int, tc faultCase) string {
	n := 10 + i // two digits: no attendee's marker is a part of another's
	name := fmt.Sprintf("Ada Lovelace-%d", n)
	body := paypalBody(n, true, name)
	key := fmt.Sprintf("k-fault-%d", n)
	faults := tc.faults()
	var plan *providertest.FaultPlan
	if r.g.apart && (tc.route == routeToken || tc.route == routeCapture) {
		// Neither names the attendee; the cases run one at a time.
		if tc.route == routeToken {
			r.f.paypal.RevokeTokens() // the next call needs a new token
		}
		plan = r.proxy.Schedule(tc.route, faults...)
	} else {
		// The name is in the order's card, the email's recipient and the
		// member's LNAME.
		plan = r.proxy.ScheduleFor(tc.route, fmt.Sprintf(`Lovelace-%d"`, n), faults...)
	}
	s := r.s
	var id string
	switch tc.outcome {
	case completes, needsAttention:
		code, c, err := post(http.DefaultClient, s.url, body, key)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("answer %d %v; want 202", code, err)
		}
		id = c.ID
	case notCharged:
		// The attendee tries again with the same key until PayPal takes
		// the charge; each refusal says nothing was charged.
		for try := 1; ; try++ {
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
			if r.g.apart {
				// Alone with PayPal: the seat is back at once.
				if taken, holds := seatsHeld(t, r.where); holds != 0 || taken != i {
					t.Fatalf("try %d: taken %d, held %d; want the seat back at once", try, taken, holds)
				}
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
	}

	if tc.outcome == needsAttention {
		st := waitStatus(t, s.url, id, "needs_attention", 60*time.Second)
		// The other steps go on: wait for them to finish too.
		deadline := time.Now().Add(60 * time.Second)
		for !othersDone(st, tc.failedStep) {
			if time.Now().After(deadline) {
				t.Fatalf("registration %s: steps %+v; want every step but %s done", id, st.Steps, tc.failedStep)
			}
			time.Sleep(50 * time.Millisecond)
			st, _ = getStatus(s.url, id)
		}
		if got := st.Steps[tc.failedStep]; got.Status != "failed" || got.Attempts != 1 {
			t.Errorf("step %s: %+v; want failed after one attempt (retrying cannot help)", tc.failedStep, got)
		}
		if msg := stepError(t, r.where, id, tc.failedStep); !strings.Contains(msg, tc.reason) {
			t.Errorf("step %s error %q; want it to say %q", tc.failedStep, msg, tc.reason)
		}
	} else {
		waitCompleted(t, s.url, []string{id}, 90*time.Second)
	}

	if got := plan.Pending(); got != 0 {
		t.Errorf("%d faults never met a request; applied: %q", got, r.proxy.Applied())
	}
	if n := r.f.paypal.CapturesFor(id); n != 1 {
		t.Errorf("captures for %s: %d; want 1", id, n)
	}
	emails := 0
	for _, m := range r.f.sendgrid.Accepted() {
		if m.CustomArgs["registration_id"] == id {
			emails++
		}
	}
	wantEmails := tc.emails
	if tc.failedStep == "send_confirmation" {
		wantEmails = 0
	}
	if emails != wantEmails {
		t.Errorf("%d confirmations for %s; want %d", emails, id, wantEmails)
	}
	if tc.failedStep != "add_to_mailing_list" {
		m, ok := r.f.mailchimp.Member(faultAttendee(i))
		wantStatus := "pending"
		if tc.existing {
			wantStatus = "unsubscribed" // never resubscribed
		}
		if !ok || m.Status != wantStatus || len(m.Tags) != 1 || m.Tags[0] != "gopherfest-2027" {
			t.Errorf("Mailchimp member %+v (listed %v); want %s, tagged with the event", m, ok, wantStatus)
		}
	}
	// A wait a 429 asked for passed before the call was made again.
	at := plan.Arrivals()
	for k, ft := range faults {
		ra := ft.Header.Get("Retry-After")
		if ra == "" || r.g.provider == "paypal" { // registrar does not retry PayPal; the attendee does
			continue
		}
		if len(at) <= k+1 {
			t.Errorf("no call after the 429 #%d", k+1)
			continue
		}
		earliest := at[k]
		if secs, err := strconv.Atoi(ra); err == nil {
			earliest = earliest.Add(time.Duration(secs) * time.Second)
		} else if d, err := http.ParseTime(ra); err == nil {
			earliest = d
		}
		// The clock's granularity, no more.
		if next := at[k+1]; next.Before(earliest.Add(-50 * time.Millisecond)) {
			t.Errorf("429 #%d asked to wait until %s (Retry-After %q); the next call came at %s",
				k+1, earliest.Format(time.RFC3339Nano), ra, next.Format(time.RFC3339Nano))
		}
	}
	return id
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

// othersDone reports whether every step of st but failed has succeeded (or
// was skipped).
func othersDone(st status, failed string) bool {
	for name, step := range st.Steps {
		if name != failed && step.Status != "succeeded" && step.Status != "skipped" {
			return false
		}
	}
	return len(st.Steps) > 0
}

// stepError is a step's error as the back office shows it.
func stepError(t *testing.T, where, id, step string) string {
	t.Helper()
	db := openWhere(t, where)
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
