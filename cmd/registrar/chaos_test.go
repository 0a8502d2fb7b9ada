package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The kinds of attempt the randomised crash test mixes.
const (
	kindPaid     = "paid"     // a good card, standard ticket
	kindLimited  = "limited"  // a good card, the small ticket that sells out
	kindDeclined = "declined" // PayPal declines the card
	kindFailing  = "failing"  // PayPal answers 503 to the charge
	kindFree     = "free"     // a free ticket, no card
)

// failingCardName is the card name the crash test's PayPal gateway answers
// with a 503 before PayPal sees the order: a provider error that took no
// money.
const failingCardName = "FAIL-PROVIDER"

// payPalGateway stands between registrar and the PayPal fake: it records the
// PayPal-Request-Id of every card order (each may take money) and fails the
// orders of failingCardName with a 503.
type payPalGateway struct {
	srv   *httptest.Server
	mu    sync.Mutex
	cards map[string]bool // request ids of card orders seen
}

func newPayPalGateway(t *testing.T, target string) *payPalGateway {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &payPalGateway{cards: map[string]bool{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v2/checkout/orders" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			var o struct {
				PaymentSource struct {
					Card *struct {
						Name string `json:"name"`
					} `json:"card"`
				} `json:"payment_source"`
			}
			json.Unmarshal(body, &o)
			if c := o.PaymentSource.Card; c != nil {
				g.mu.Lock()
				g.cards[r.Header.Get("PayPal-Request-Id")] = true
				g.mu.Unlock()
				if c.Name == failingCardName {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusServiceUnavailable)
					io.WriteString(w, `{"name":"SERVICE_UNAVAILABLE","message":"Service Unavailable.","debug_id":"crash0test0503"}`)
					return
				}
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// requestIDs lists the request ids of the card orders seen.
func (g *payPalGateway) requestIDs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids := make([]string, 0, len(g.cards))
	for id := range g.cards {
		ids = append(ids, id)
	}
	return ids
}

// sendGateway stands between one registrar process and the SendGrid fake:
// it counts, per registration, the confirmations the fake accepted from that
// process. A send the kill caught in flight still reaches the fake through
// it, and is counted against the process that made it, however late.
type sendGateway struct {
	srv  *httptest.Server
	mu   sync.Mutex
	sent map[string]int // registration id -> emails accepted
}

func newSendGateway(t *testing.T, target string) *sendGateway {
	t.Helper()
	g := &sendGateway{sent: map[string]int{}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The send goes on when the process dies (SendGrid would finish
		// taking in what it had received), so it is made with a context
		// of its own, not with httputil's proxy, which cancels it.
		fwd, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fwd.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(fwd)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var m struct {
			CustomArgs map[string]string `json:"custom_args"`
		}
		if resp.StatusCode == http.StatusAccepted && json.Unmarshal(body, &m) == nil && m.CustomArgs["registration_id"] != "" {
			g.mu.Lock()
			g.sent[m.CustomArgs["registration_id"]]++
			g.mu.Unlock()
		}
		maps.Copy(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		w.Write(answer)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// sentBy reports how many confirmations of each registration the fake
// accepted through g.
func (g *sendGateway) sentBy() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.sent)
}

// crashEventFile writes the crash test's event: a big ticket, a small one
// that sells out, and a free one.
func crashEventFile(t *testing.T, dir string, big, small, free int) string {
	t.Helper()
	path := filepath.Join(dir, "event.json")
	data := fmt.Sprintf(`{
  "id": "scaleconf-2027", "name": "ScaleConf 2027", "starts_at": "2027-09-01T09:00:00+02:00",
  "venue": "Messe, Hall 2", "currency": "EUR",
  "email_from": {"address": "tickets@scaleconf.example", "name": "ScaleConf"},
  "tickets": [
    {"id": "standard", "name": "Standard", "price": "149.00", "capacity": %d},
    {"id": "limited", "name": "Limited", "price": "99.00", "capacity": %d},
    {"id": "free", "name": "Community", "price": "0.00", "capacity": %d}
  ]
}`, big, small, free)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// crashAttempt is one registration attempt of the crash test.
type crashAttempt struct {
	i          int
	kind       string
	newsletter bool
	key        string
	// The answer: HTTP status, error code, registration id on a 202, and
	// how many times the request was sent.
	code    int
	errCode string
	id      string
	sends   int
}

func (a *crashAttempt) ticket() string {
	switch a.kind {
	case kindLimited, kindFree:
		return a.kind
	}
	return "standard"
}

func (a *crashAttempt) email() string { return fmt.Sprintf("ada.%d@example.org", a.i) }

func (a *crashAttempt) body() string {
	if a.kind == kindFree {
		return registrationBody(a.i, "free", a.newsletter, "")
	}
	name := "Ada Lovelace"
	switch a.kind {
	case kindDeclined:
		name = "CCREJECT-REFUSED"
	case kindFailing:
		name = failingCardName
	}
	var b map[string]any
	json.Unmarshal([]byte(registrationBody(a.i, a.ticket(), a.newsletter, paypalCard)), &b)
	b["billing"].(map[string]any)["card"].(map[string]any)["name"] = name
	data, _ := json.Marshal(b)
	return string(data)
}

// liveURL is the base URL of the registrar process running now: it changes
// at each restart.
type liveURL struct {
	mu  sync.Mutex
	url string
}

func (l *liveURL) get() string  { l.mu.Lock(); defer l.mu.Unlock(); return l.url }
func (l *liveURL) set(u string) { l.mu.Lock(); defer l.mu.Unlock(); l.url = u }
func crashSeed(t *testing.T) uint64 { // CRASH_SEED replays a run
	t.Helper()
	if v := os.Getenv("CRASH_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CRASH_SEED=%q: want an unsigned integer", v)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

// sendUntilAnswered posts the attempt with its Idempotency-Key until the
// running process answers it: a request the kill cut off is sent again, and
// so is one answered "in progress" (its first try died with the process)
// unless heldIsFinal. On PostgreSQL a restarted process cannot tell that the
// holder died (other processes may be serving): the dead attempt keeps its
// key until the resolver settles it, 90 s after its start, so there the
// answer "in progress" is taken as final and checked against the hold.
func sendUntilAnswered(t *testing.T, client *http.Client, live *liveURL, a *crashAttempt, deadline time.Time, heldIsFinal bool) {
	for {
		if time.Now().After(deadline) {
			t.Errorf("attempt %d (%s, key %s) not answered by the deadline after %d sends", a.i, a.kind, a.key, a.sends)
			return
		}
		a.sends++
		req, err := http.NewRequest(http.MethodPost, live.get()+"/api/registrations", strings.NewReader(a.body()))
		if err != nil {
			t.Error(err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", a.key)
		resp, err := client.Do(req)
		if err != nil {
			time.Sleep(20 * time.Millisecond) // cut off by the kill: send again to the restarted process
			continue
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		var ans struct {
			ID    string `json:"id"`
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &ans); err != nil {
			t.Errorf("attempt %d: answer %d %q: %v", a.i, resp.StatusCode, data, err)
			return
		}
		if ans.Error.Code == "idempotency_in_progress" && !heldIsFinal || resp.StatusCode == http.StatusServiceUnavailable {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		a.code, a.errCode, a.id = resp.StatusCode, ans.Error.Code, ans.ID
		return
	}
}

// TestRandomCrash runs the registrar binary under a mixed load — good,
// declined and failing cards, a ticket that sells out, free tickets, with
// and without the newsletter, every attempt with an Idempotency-Key — and
// kills it with SIGKILL at random moments (seeded: CRASH_SEED=<seed>
// replays a run), restarting it on the same database each time, while the
// clients send every cut-off request again with its key until answered.
// Then: every 202 completes; no ticket is oversold; no PayPal request id is
// captured twice; every capture is a registration or was refunded; no
// process sends a registration two confirmations (a kill that caught a send
// accepted but not yet recorded makes the next process send it again: one
// more for each kill at most); declined and failed payments left no
// registration and no held seat.
func TestRandomCrash(t *testing.T) {
	t.Parallel()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			seed := crashSeed(t)
			t.Logf("seed %d (CRASH_SEED=%d replays it)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, seed))

			dir := t.TempDir()
			e, f := providerEnv(t, dir, "sendgrid")
			where := useEngine(t, e, engine, dir)
			gw := newPayPalGateway(t, f.paypal.URL())
			e["PAYPAL_API_BASE"] = gw.srv.URL
			const limited = 12
			e["REGISTRAR_EVENT_FILE"] = crashEventFile(t, dir, 1000, limited, 1000)

			const kills, perRound, clients = 3, 50, 8
			var attempts []*crashAttempt
			kinds := []string{kindPaid, kindPaid, kindPaid, kindLimited, kindLimited, kindDeclined, kindFailing, kindFree, kindFree}
			for i := range kills * perRound {
				attempts = append(attempts, &crashAttempt{i: i, kind: kinds[rng.IntN(len(kinds))],
					newsletter: rng.IntN(2) == 0, key: fmt.Sprintf("crash-%d-%d", seed, i)})
			}

			var sends []*sendGateway // one per process, in order
			start := func() *child {
				g := newSendGateway(t, f.sendgrid.URL())
				sends = append(sends, g)
				e["SENDGRID_API_BASE"] = g.srv.URL
				return startChild(t, e)
			}
			c := start()
			defer func() {
				select {
				case <-c.done:
				default:
					c.kill(t)
				}
			}()
			live := &liveURL{url: c.url}
			client := &http.Client{Timeout: 20 * time.Second}
			deadline := time.Now().Add(45 * time.Second)
			logs := []*syncBuffer{c.logs}
			for round := range kills {
				batch := attempts[round*perRound : (round+1)*perRound]
				// The kill comes once a random number of this round's
				// attempts were answered, after a random pause: while
				// the others are in flight.
				killAt, pause := 3+rng.IntN(perRound/2), time.Duration(rng.IntN(30))*time.Millisecond
				answered := make(chan struct{}, perRound)
				work := make(chan *crashAttempt)
				var wg sync.WaitGroup
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for a := range work {
							sendUntilAnswered(t, client, live, a, deadline, engine == "postgres")
							answered <- struct{}{}
						}
					}()
				}
				go func() {
					for _, a := range batch {
						work <- a
					}
					close(work)
				}()
				for range killAt {
					<-answered
				}
				time.Sleep(pause)
				c.kill(t)
				c = start()
				logs = append(logs, c.logs)
				live.set(c.url)
				wg.Wait()
			}

			// What each attempt was answered.
			outcomes := map[string]int{}
			var accepted []string
			var held []*crashAttempt // PostgreSQL: cut off, key still held by the dead attempt
			resent := 0
			for _, a := range attempts {
				if a.sends > 1 {
					resent++
				}
				if a.errCode == "idempotency_in_progress" {
					held = append(held, a)
					continue // checked against its hold below
				}
				want := map[string][]int{
					kindPaid:     {http.StatusAccepted},
					kindFree:     {http.StatusAccepted},
					kindLimited:  {http.StatusAccepted, http.StatusConflict},
					kindDeclined: {http.StatusPaymentRequired},
					kindFailing:  {http.StatusBadGateway},
				}[a.kind]
				ok := false
				for _, code := range want {
					ok = ok || a.code == code
				}
				switch {
				case a.code == 0:
					continue // not answered: reported already
				case !ok:
					t.Errorf("attempt %d (%s): answered %d %s; want one of %v", a.i, a.kind, a.code, a.errCode, want)
				case a.code == http.StatusConflict && a.errCode != "sold_out":
					t.Errorf("attempt %d (%s): 409 %s; want sold_out", a.i, a.kind, a.errCode)
				}
				outcomes[fmt.Sprintf("%s %d", a.kind, a.code)]++
				if a.code == http.StatusAccepted {
					accepted = append(accepted, a.id)
				}
			}
			if resent == 0 {
				t.Errorf("no request was cut off by %d kills: the kills caught nothing in flight", kills)
			}
			// No accepted registration is lost: each completes.
			waitCompleted(t, c.url, accepted, 60*time.Second)

			// The database: registrations by id, stock and holds.
			var db *sql.DB
			if engine == "postgres" {
				var err error
				if db, err = sql.Open("pgx", where); err != nil {
					t.Fatal(err)
				}
			} else {
				db = openDB(t, filepath.Join(dir, "registrar.db"))
			}
			defer db.Close()
			type reg struct{ ticket, email, status string }
			regs := map[string]reg{}
			byEmail := map[string]int{}
			// Stored but never answered (cut off, then settled as charged)
			// completes too, after the answered ones.
			waitAllCompleted(t, db, 30*time.Second, "the answered ones")
			rows, err := db.Query(`SELECT id, ticket_id, email, status FROM registrations`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id string
				var r reg
				if err := rows.Scan(&id, &r.ticket, &r.email, &r.status); err != nil {
					t.Fatal(err)
				}
				regs[id] = r
				byEmail[strings.ToLower(r.email)]++
			}
			if err := rows.Close(); err != nil {
				t.Fatal(err)
			}
			for _, id := range accepted {
				if _, ok := regs[id]; !ok {
					t.Errorf("registration %s was answered 202 and is not stored", id)
				}
			}
			perTicket := map[string]int{}
			for _, r := range regs {
				perTicket[r.ticket]++
			}
			heldPerTicket := map[string]int{}
			for _, a := range held {
				heldPerTicket[a.ticket()]++
			}
			if perTicket["limited"]+heldPerTicket["limited"] > limited {
				t.Errorf("%d registrations for the limited ticket of %d seats: oversold", perTicket["limited"], limited)
			}
			stock, err := db.Query(`SELECT ticket_id, taken FROM ticket_stock`)
			if err != nil {
				t.Fatal(err)
			}
			for stock.Next() {
				var ticket string
				var taken int
				if err := stock.Scan(&ticket, &taken); err != nil {
					t.Fatal(err)
				}
				if taken != perTicket[ticket]+heldPerTicket[ticket] {
					t.Errorf("ticket %s: %d seats taken for %d registrations and %d held", ticket, taken, perTicket[ticket], heldPerTicket[ticket])
				}
			}
			if err := stock.Close(); err != nil {
				t.Fatal(err)
			}
			// The only seats held are those of the attempts cut off by a kill
			// and still due for the resolver (PostgreSQL), one each.
			holdRows, err := db.Query(`SELECT id, coalesce(idempotency_key, '') FROM seat_holds`)
			if err != nil {
				t.Fatal(err)
			}
			holdOf := map[string]string{} // hold (attempt) id by key
			for holdRows.Next() {
				var id, key string
				if err := holdRows.Scan(&id, &key); err != nil {
					t.Fatal(err)
				}
				holdOf[strings.TrimPrefix(key, "api:")] = id // the API's keys are stored as api:<key>
			}
			if err := holdRows.Close(); err != nil {
				t.Fatal(err)
			}
			pendingAttempt := map[string]bool{}
			for _, a := range held {
				id, ok := holdOf[a.key]
				if !ok {
					t.Errorf("attempt %d (%s) answered in progress, and no seat is held for its key", a.i, a.kind)
				}
				pendingAttempt[id] = true
			}
			if len(holdOf) != len(held) {
				t.Errorf("%d seats held after every attempt was answered and settled; want %d (attempts left to the resolver)", len(holdOf), len(held))
			}
			for _, a := range attempts {
				n := byEmail[a.email()]
				switch {
				case a.errCode == "idempotency_in_progress":
				case a.code == http.StatusAccepted && n != 1:
					t.Errorf("attempt %d (%s) answered 202: %d registrations for %s; want 1", a.i, a.kind, n, a.email())
				case a.code != http.StatusAccepted && a.code != 0 && n != 0:
					t.Errorf("attempt %d (%s) answered %d %s: %d registrations for %s; want none", a.i, a.kind, a.code, a.errCode, n, a.email())
				}
			}

			// Charges: one capture at most per request id; each is a
			// registration or was refunded.
			unregistered := 0
			for _, rid := range gw.requestIDs() {
				n := f.paypal.CapturesFor(rid)
				if n > 1 {
					t.Errorf("PayPal request id %s captured %d times", rid, n)
				}
				r, registered := regs[rid]
				switch {
				case registered && r.ticket != "free" && n != 1:
					t.Errorf("registration %s (%s): %d captures; want 1", rid, r.ticket, n)
				case !registered && n > 0 && !pendingAttempt[rid]:
					unregistered++
				}
			}
			if got := f.paypal.Refunds(); got != unregistered {
				t.Errorf("%d captures belong to no registration, %d refunds; want each refunded", unregistered, got)
			}

			// Email: one per registration; SendGrid has no idempotency key,
			// so a send a kill caught in flight (accepted, not yet recorded)
			// is sent again by the next process: never two emails from one
			// process, so one more at most for each kill; none for anything
			// else.
			emails := map[string]int{}
			duplicates, most := 0, 0
			for p, g := range sends {
				for id, k := range g.sentBy() {
					emails[id] += k
					if k > 1 {
						t.Errorf("registration %s: %d confirmation emails from process %d; want 1", id, k, p)
						for _, line := range strings.Split(logs[p].String(), "\n") {
							if strings.Contains(line, id) {
								t.Log(line)
							}
						}
					}
				}
			}
			confirmations := 0
			for _, m := range f.sendgrid.Accepted() {
				if m.CustomArgs["registration_id"] != "" {
					confirmations++
				}
			}
			if got := sum(emails); got != confirmations {
				t.Errorf("SendGrid accepted %d confirmations, the processes' gateways counted %d", confirmations, got)
				fake := map[string]int{}
				for _, m := range f.sendgrid.Accepted() {
					fake[m.CustomArgs["registration_id"]]++
				}
				for id, n := range fake {
					if id != "" && emails[id] != n {
						t.Logf("registration %s: %d confirmations at SendGrid, %d through the gateways; its log lines:", id, n, emails[id])
						for p, l := range logs {
							for _, line := range strings.Split(l.String(), "\n") {
								if strings.Contains(line, id) {
									t.Logf("process %d: %s", p, line)
								}
							}
						}
					}
				}
			}
			for id, r := range regs {
				n := emails[id]
				if n < 1 || n > 1+kills {
					t.Errorf("registration %s (%s): %d confirmation emails; want 1 (one more for each kill that caught its send)", id, r.ticket, n)
				}
				duplicates += max(n-1, 0)
				most = max(most, n)
			}
			for id, n := range emails {
				if _, ok := regs[id]; !ok {
					t.Errorf("%d emails for %s, which is no registration", n, id)
				}
			}
			all := ""
			for _, l := range logs {
				all += l.String()
			}
			assertNoSecrets(t, all)
			t.Logf("%d attempts, %d kills, %d sent more than once, %d left to the resolver; answers %v; %d registrations (%v), %d captures, %d refunds, %d duplicate emails (at most %d for one registration)",
				len(attempts), kills, resent, len(held), outcomes, len(regs), perTicket, f.paypal.Captures(), f.paypal.Refunds(), duplicates, most)
		})
	}
}
