package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// TestMain lets the test binary act as the registrar binary: the crash test
// starts it as a child process and kills it with SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("REGISTRAR_TEST_CHILD") == "1" {
		if err := run(context.Background(), os.Args[len(os.Args)-1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "registrar:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Card data used by the suites; none of it may survive anywhere.
const (
	cardNumber = "4242424242424242"
	cardCVC    = "989"
)

type env map[string]string

func (e env) get(k string) string { return e[k] }

func baseEnv(dir string) env {
	return env{
		"REGISTRAR_ADDR":         "127.0.0.1:0",
		"REGISTRAR_DATABASE_URL": "sqlite:" + filepath.Join(dir, "registrar.db"),
		"REGISTRAR_RATE_LIMIT":   "0",
		// Every test client connects from 127.0.0.1; the launch tests
		// hold hundreds of connections at once.
		"REGISTRAR_MAX_CONNS_PER_CLIENT": "0",
		// Tests run many registrars at once: each serves its metrics on a
		// free loopback port, found by metricsURL.
		"REGISTRAR_METRICS_ADDR": "127.0.0.1:0",
	}
}

// syncBuffer is an io.Writer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var cvcAlone = regexp.MustCompile(`(^|[^0-9A-Za-z])` + cardCVC + `([^0-9A-Za-z]|$)`)

var listenLine = regexp.MustCompile(`registrar listening on (http://\S+)`)

// addrWriter captures stdout and reports the listen URL once printed.
type addrWriter struct {
	once sync.Once
	url  chan string
	syncBuffer
}

func (w *addrWriter) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	if m := listenLine.FindStringSubmatch(w.String()); m != nil {
		w.once.Do(func() { w.url <- m[1] })
	}
	return n, err
}

type server struct {
	url    string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startRun calls run in-process on a free port and waits until it listens.
func startRun(t *testing.T, e env) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &addrWriter{url: make(chan string, 1)}
	s := &server{logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, []string{"serve"}, e.get, strings.NewReader(""), out, s.logs) }()
	select {
	case s.url = <-out.url:
	case err := <-s.done:
		t.Fatalf("run stopped before listening: %v\nlogs:\n%s", err, s.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not listen within 30s\nlogs:\n%s", s.logs)
	}
	return s
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("run did not stop within 40s of cancel")
	}
}

func registrationBody(i int, ticket string, newsletter bool, card string) string {
	b := map[string]any{
		"ticket": ticket,
		"attendee": map[string]any{
			"first_name": "Ada", "last_name": fmt.Sprintf("Lovelace-%d", i),
			"email": fmt.Sprintf("Ada.%d@Example.org", i), "company": "Analytical Engines",
		},
		"newsletter": newsletter,
	}
	if card != "" {
		b["billing"] = map[string]any{
			"card": map[string]any{"number": card, "expiry": "2031-12", "cvc": cardCVC, "name": "Ada Lovelace"},
			"address": map[string]any{"line1": "12 St James's Square", "city": "London",
				"postal_code": "SW1Y 4JH", "country": "GB"},
		}
	}
	data, _ := json.Marshal(b)
	return string(data)
}

type created struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	StatusURL string `json:"status_url"`
}

func post(client *http.Client, base, body, key string) (int, created, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/api/registrations", strings.NewReader(body))
	if err != nil {
		return 0, created{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, created{}, err
	}
	defer resp.Body.Close()
	var c created
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(data, &c); err != nil {
			return resp.StatusCode, c, fmt.Errorf("decode 202 body %q: %w", data, err)
		}
		if loc := resp.Header.Get("Location"); loc != "/api/registrations/"+c.ID {
			return resp.StatusCode, c, fmt.Errorf("Location %q, want /api/registrations/%s", loc, c.ID)
		}
	}
	return resp.StatusCode, c, nil
}

type status struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Steps  map[string]struct {
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
	} `json:"steps"`
	Payment *struct {
		Card struct{ Brand, Last4 string } `json:"card"`
	} `json:"payment"`
}

func getStatus(base, id string) (status, error) {
	resp, err := http.Get(base + "/api/registrations/" + id)
	if err != nil {
		return status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return status{}, fmt.Errorf("GET %s: %s", id, resp.Status)
	}
	var s status
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// waitCompleted polls until every id is completed, or fails at the deadline.
func waitCompleted(t *testing.T, base string, ids []string, within time.Duration) map[string]status {
	t.Helper()
	deadline := time.Now().Add(within)
	done := map[string]status{}
	for len(done) < len(ids) {
		for _, id := range ids {
			if _, ok := done[id]; ok {
				continue
			}
			s, err := getStatus(base, id)
			if err == nil && s.Status == "completed" {
				done[id] = s
			}
		}
		if len(done) == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d registrations completed within %s", len(done), len(ids), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return done
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startRun(t, baseEnv(dir))

	// The form is served.
	resp, err := http.Get(s.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(`method="post" action="/register"`)) {
		t.Fatalf("GET / = %d, form missing", resp.StatusCode)
	}

	var ids []string
	consented := map[string]bool{}
	for i, newsletter := range []bool{true, false, true} {
		code, c, err := post(http.DefaultClient, s.url, registrationBody(i, "standard", newsletter, "4111 1111 1111 1111"), "")
		if err != nil || code != http.StatusAccepted || c.Status != "paid" {
			t.Fatalf("registration %d: %d %+v %v", i, code, c, err)
		}
		ids = append(ids, c.ID)
		consented[fmt.Sprintf("ada.%d@example.org", i)] = newsletter
	}
	code, c, err := post(http.DefaultClient, s.url, registrationBody(9, "standard", false, cardNumber), "")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("second test card: %d %v", code, err)
	}
	ids = append(ids, c.ID)
	done := waitCompleted(t, s.url, ids, 30*time.Second)

	// Metrics count the outcomes and label requests by route, not by path;
	// they are served on the metrics listener, not the public one.
	resp, err = http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("public GET /metrics = %d, want 404", resp.StatusCode)
	}
	resp, err = http.Get(metricsURL(t, s.logs))
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`registrar_registration_attempts_total{outcome="accepted"} 4`,
		`registrar_http_requests_total{code="202",route="POST /api/registrations"} 4`,
		`route="GET /api/registrations/{id}"`,
		`registrar_activity_runs_total{result="succeeded",step="save_order"} 4`,
		"go_goroutines",
	} {
		if !bytes.Contains(metricsText, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for i, id := range ids[:3] {
		st := done[id]
		want := "succeeded"
		if i == 1 {
			want = "skipped"
		}
		if got := st.Steps["add_to_mailing_list"].Status; got != want {
			t.Errorf("registration %d: add_to_mailing_list %s, want %s", i, got, want)
		}
		if st.Payment == nil || st.Payment.Card.Last4 != "1111" || st.Payment.Card.Brand != "visa" {
			t.Errorf("registration %d: payment %+v", i, st.Payment)
		}
	}
	// Those who consented are asked to confirm by email; the first does.
	links := newsletterLinks(t, filepath.Join(dir, "outbox"))
	if len(links) != 2 || len(links[ids[0]]) != 1 || len(links[ids[2]]) != 1 {
		t.Fatalf("newsletter confirmation links %v; want one for each of %s and %s", links, ids[0], ids[2])
	}
	confirmNewsletter(t, s.url, links[ids[0]][0])
	s.stop(t)

	// One .eml per registration in the outbox.
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(dir, "outbox", id+".eml")); err != nil {
			t.Errorf("no email for %s: %v", id, err)
		}
	}
	db := openDB(t, filepath.Join(dir, "registrar.db"))
	rows, err := db.Query(`SELECT email, status FROM mailing_list`)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	statuses := map[string]string{}
	for rows.Next() {
		var e, st string
		rows.Scan(&e, &st)
		listed[e], statuses[e] = true, st
	}
	rows.Close()
	for addr, want := range consented {
		if listed[addr] != want {
			t.Errorf("mailing list has %s = %v, want %v", addr, listed[addr], want)
		}
	}
	if statuses["ada.0@example.org"] != "subscribed" || statuses["ada.2@example.org"] != "pending" {
		t.Errorf("mailing list statuses %v; want ada.0 subscribed (confirmed), ada.2 pending", statuses)
	}
	if len(listed) != 2 {
		t.Errorf("mailing list has %d entries, want 2: %v", len(listed), listed)
	}
	db.Close()

	assertNoCardData(t, dir, s.logs.String())
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// assertNoCardData scans every file under dir (the database with its -wal,
// the outbox) and the logs for card numbers and the security code
// (invariant 1).
func assertNoCardData(t *testing.T, dir, logs string) {
	t.Helper()
	secrets := []string{cardNumber, "4242 4242 4242 4242", "4111111111111111", "4111 1111 1111 1111"}
	check := func(where string, data []byte) {
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s contains card number %q", where, s)
			}
		}
		for _, key := range []string{`"cvc"`, "cvc=", `"security_code"`, "security_code="} {
			if bytes.Contains(bytes.ToLower(data), []byte(key)) {
				t.Errorf("%s contains a security code field %s", where, key)
			}
		}
	}
	check("logs", []byte(logs))
	n := 0
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		check(path, data)
		// The code as a value of its own: hex hashes and dates in a message
		// may hold the same digits inside longer runs.
		if strings.HasSuffix(path, ".eml") && cvcAlone.Match(data) {
			t.Errorf("%s contains the security code", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("scanned only %d files under %s", n, dir)
	}
}

func TestBadConfigurationStopsTheStart(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     env
		wantVar string
	}{
		{"unknown payment", env{"REGISTRAR_PAYMENT": "bitcoin"}, "REGISTRAR_PAYMENT"},
		{"paypal without credentials", env{"REGISTRAR_PAYMENT": "paypal"}, "PAYPAL_CLIENT_ID"},
		{"bad address", env{"REGISTRAR_ADDR": "eighty"}, "REGISTRAR_ADDR"},
		{"bad roles", env{"REGISTRAR_ROLES": "cook"}, "REGISTRAR_ROLES"},
		{"bad event file", env{"REGISTRAR_EVENT_FILE": "/nonexistent/event.json"}, "/nonexistent/event.json"},
		{"metrics on every interface without a token", env{"REGISTRAR_METRICS_ADDR": ":0"}, "REGISTRAR_METRICS_TOKEN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := baseEnv(t.TempDir())
			for k, v := range tc.env {
				e[k] = v
			}
			var out, logs bytes.Buffer
			err := run(context.Background(), nil, e.get, strings.NewReader(""), &out, &logs)
			if err == nil || !strings.Contains(err.Error(), tc.wantVar) {
				t.Fatalf("run error = %v, want one naming %s", err, tc.wantVar)
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, env{}.get, strings.NewReader(""), &out, &out); err == nil {
		t.Fatal("unknown command accepted")
	}
}

// child is registrar running as a real process on a SQLite file.
type child struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan struct{}
}

func startChild(t *testing.T, e env) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "serve")
	cmd.Env = append(os.Environ(), "REGISTRAR_TEST_CHILD=1")
	for k, v := range e {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &child{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
	}()
	go func() { cmd.Wait(); close(c.done) }()
	select {
	case c.url = <-urls:
	case <-c.done:
		t.Fatalf("registrar exited before listening:\n%s", c.logs)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("registrar did not listen within 30s:\n%s", c.logs)
	}
	return c
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
}

// loadAndKill sends registrations from 8 clients to c and kills c with
// SIGKILL once at least n were accepted, while more are arriving. It returns
// the ids of the accepted ones.
func loadAndKill(t *testing.T, c *child, n int, body func(i int) string) []string {
	t.Helper()
	const clients, perClient = 8, 15
	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	killed := make(chan struct{})
	httpc := &http.Client{Timeout: 10 * time.Second}
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				select {
				case <-killed:
					return
				default:
				}
				code, cr, err := post(httpc, c.url, body(w*100+i), "")
				if err != nil {
					return // the process died under this request: it may or may not have been accepted
				}
				if code == http.StatusAccepted {
					mu.Lock()
					accepted = append(accepted, cr.ID)
					mu.Unlock()
				}
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(accepted)
		mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.kill(t)
	close(killed)
	wg.Wait()
	if len(accepted) < n {
		t.Fatalf("only %d registrations accepted before the kill", len(accepted))
	}
	return accepted
}

// TestCrashRecovery kills registrar with SIGKILL while registrations are in
// flight, restarts it on the same database and expects every registration
// that got a 202 to complete, with one email each (invariant 2 and 4).
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := baseEnv(dir)
	c := startChild(t, e)

	accepted := loadAndKill(t, c, 40, func(i int) string {
		return registrationBody(i, "standard", i%2 == 0, "4111111111111111")
	})

	// The kill must have caught work in flight, or this test proves nothing.
	pending := func() int {
		db := openDB(t, filepath.Join(dir, "registrar.db"))
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM registrations WHERE status <> 'completed'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}()
	if pending == 0 {
		t.Fatal("every registration had completed before the kill: nothing was in flight")
	}

	c = startChild(t, e)
	defer c.kill(t)
	waitCompleted(t, c.url, accepted, 60*time.Second)

	// Exactly one email per accepted registration, and nothing else.
	entries, err := os.ReadDir(filepath.Join(dir, "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	newsletters := 0
	for _, en := range entries {
		switch {
		case strings.HasPrefix(en.Name(), "newsletter-") && strings.HasSuffix(en.Name(), ".eml"):
			newsletters++ // the newsletter's requests to confirm, checked below
		case strings.HasSuffix(en.Name(), ".eml"):
			files[en.Name()] = true
		}
	}
	for _, id := range accepted {
		if !files[id+".eml"] {
			t.Errorf("registration %s has no email", id)
		}
	}
	db := openDB(t, filepath.Join(dir, "registrar.db"))
	defer db.Close()
	var regs, sent int
	db.QueryRow(`SELECT count(*) FROM registrations`).Scan(&regs)
	db.QueryRow(`SELECT count(*) FROM email_deliveries WHERE state = 'sent'`).Scan(&sent)
	if len(files) != regs || sent != regs {
		t.Errorf("%d emails, %d sent deliveries for %d registrations", len(files), sent, regs)
	}
	if len(entries) != len(files)+newsletters {
		t.Errorf("outbox holds %d entries besides the emails (temp files left behind?)", len(entries)-len(files)-newsletters)
	}
	// Registrations stored but never answered (the kill cut the response, or
	// the restart settled an attempt the provider had charged) complete too:
	// nothing paid is left behind. They may finish after the answered ones.
	waitAllCompleted(t, db, 60*time.Second, "the restart")
	// Each attendee who consented is asked to confirm once, or twice when
	// the kill caught the request's send; nobody else is asked.
	links := newsletterLinks(t, filepath.Join(dir, "outbox"))
	rows, err := db.Query(`SELECT id, newsletter FROM registrations`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var newsletter bool
		if err := rows.Scan(&id, &newsletter); err != nil {
			t.Fatal(err)
		}
		if n := len(links[id]); newsletter && (n < 1 || n > 2) || !newsletter && n != 0 {
			t.Errorf("registration %s (newsletter %v): %d requests to confirm; want 1 (2 if the kill caught its send) with consent, none without",
				id, newsletter, n)
		}
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted %d before SIGKILL; %d registrations stored, %d of them unfinished at the kill", len(accepted), regs, pending)
}

// waitAllCompleted waits until every registration in db is completed, for
// at most timeout after since (what the error names), and reports those
// still open then.
func waitAllCompleted(t *testing.T, db *sql.DB, timeout time.Duration, since string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		var open int
		if err := db.QueryRow(`SELECT count(*) FROM registrations WHERE status <> 'completed'`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d registrations not completed %v after %s", open, timeout, since)
			return
		}
	}
}
