package web

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/sqlite"
	"github.com/registrar/registrar/internal/telemetry"
)

// testBaseURL is the public URL the harness configures; status_url and
// emails are built from it.
const testBaseURL = "https://tickets.example"

// testEventJSON is the event every test sells unless it brings its own:
// %d is the capacity of the "standard" ticket.
const testEventJSON = `{
  "id": "testconf-2027",
  "name": "TestConf 2027",
  "starts_at": "2027-06-10T09:00:00+02:00",
  "venue": "Hall 1, Berlin",
  "currency": "EUR",
  "email_from": {"address": "tickets@testconf.example", "name": "TestConf"},
  "tickets": [
    {"id": "standard", "name": "Standard", "price": "149.00", "capacity": %d},
    {"id": "student", "name": "Student", "price": "49.00", "capacity": 100},
    {"id": "community", "name": "Community", "price": "0.00", "capacity": 50},
    {"id": "last-seat", "name": "Last seat", "price": "99.00", "capacity": 1}
  ]
}`

// secretNumbers are card numbers tests send. None may ever reach a log line
// or the database file (the first guarantee in the README); every harness checks
// that when its test ends.
var secretNumbers = []string{
	payment.TestCardVisa, payment.TestCardVisa2, payment.TestCardDeclined,
	payment.TestCardExpired, payment.TestCardProcessErr, "4111111111111112",
}

type harnessOptions struct {
	// capacity of the "standard" ticket; 0 means 100.
	capacity int
	// rateLimit is Deps.RateLimit (0: off).
	rateLimit int
	// wrapProcessor wraps the counting test processor, e.g. to block a call.
	wrapProcessor func(payment.Processor) payment.Processor
	// wrapRegistrar wraps the registration service as the web layer sees it.
	wrapRegistrar func(Registrar) Registrar
	// workers runs the pipeline's River workers, so registrations complete.
	workers bool
	// formWait is Deps.FormWait (0: its default).
	formWait time.Duration
}

// harness is one registrar web process on its own SQLite file.
type harness struct {
	t      *testing.T
	db     *sqlite.DB
	store  *sqlite.Store
	event  *event.Event
	proc   *payment.TestProcessor
	calls  *countingProcessor
	svc    *registration.Service
	srv    *httptest.Server
	logs   *syncBuffer
	dbPath string

	closeOnce *sync.Once
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	if o.capacity == 0 {
		o.capacity = 100
	}
	ev, err := event.Parse(fmt.Appendf(nil, testEventJSON, o.capacity))
	if err != nil {
		t.Fatalf("test event: %v", err)
	}
	dir := t.TempDir()
	h := &harness{t: t, event: ev, logs: &syncBuffer{}, dbPath: filepath.Join(dir, "registrar.db"), closeOnce: &sync.Once{}}
	log := slog.New(telemetry.NewLogHandler(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	h.db, err = sqlite.Open(ctx, h.dbPath)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(h.closeDB)
	if err := h.db.Migrate(ctx, log); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	h.store = sqlite.NewStore(h.db)
	if err := h.store.SyncTickets(ctx, ev); err != nil {
		t.Fatalf("sync tickets: %v", err)
	}

	renderer, err := email.NewRenderer()
	if err != nil {
		t.Fatalf("email renderer: %v", err)
	}
	outbox, err := email.NewOutbox(filepath.Join(dir, "outbox"))
	if err != nil {
		t.Fatalf("outbox: %v", err)
	}
	deps := pipeline.Deps{
		Store:    h.store,
		Mailer:   outbox,
		List:     h.store,
		Renderer: renderer,
		Event:    ev,
		BaseURL:  testBaseURL,
		Log:      log,
	}
	opts := pipeline.DefaultOptions()
	opts.FetchPollInterval = 50 * time.Millisecond
	riverCfg, err := pipeline.Config(deps, opts, o.workers, log.With("component", "river"))
	if err != nil {
		t.Fatalf("river config: %v", err)
	}
	client, err := river.NewClient(riversqlite.New(h.db.Write), riverCfg)
	if err != nil {
		t.Fatalf("river client: %v", err)
	}
	if o.workers {
		runCtx, cancel := context.WithCancel(ctx)
		if err := client.Start(runCtx); err != nil {
			cancel()
			t.Fatalf("start river: %v", err)
		}
		t.Cleanup(func() {
			stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
			defer stop()
			if err := client.Stop(stopCtx); err != nil {
				t.Errorf("stop river: %v", err)
			}
			cancel()
		})
	}

	h.proc = payment.NewTestProcessor()
	h.calls = &countingProcessor{Processor: h.proc}
	var proc payment.Processor = h.calls
	if o.wrapProcessor != nil {
		proc = o.wrapProcessor(proc)
	}
	h.svc = registration.NewService(h.store, proc, pipeline.Enqueue(client), ev, log)
	var reg Registrar = h.svc
	if o.wrapRegistrar != nil {
		reg = o.wrapRegistrar(reg)
	}
	handler, err := Handler(Deps{
		Registrar: reg,
		Ready:     h.db.Ready,
		Log:       log,
		BaseURL:   testBaseURL,
		RateLimit: o.rateLimit,
		FormWait:  o.formWait,
	})
	if err != nil {
		t.Fatalf("web handler: %v", err)
	}
	h.srv = httptest.NewServer(handler)
	t.Cleanup(h.srv.Close)
	// Registered last, so it runs first: the server and queue are still up,
	// but every request of the test has finished.
	t.Cleanup(h.checkNoCardData)
	return h
}

// forTest returns the harness for use by a (parallel) subtest: its helpers
// then fail that subtest.
func (h *harness) forTest(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

func (h *harness) closeDB() {
	h.closeOnce.Do(func() {
		if err := h.db.Close(); err != nil {
			h.t.Errorf("close database: %v", err)
		}
	})
}

// checkNoCardData enforces invariant 1 on every test: no full card number in
// the logs, the database files or the emails written.
func (h *harness) checkNoCardData() {
	logs := h.logs.String()
	var files []byte // the database, its WAL, and the email outbox
	err := filepath.WalkDir(filepath.Dir(h.dbPath), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		files = append(files, data...)
		return err
	})
	if err != nil {
		h.t.Errorf("read the data directory: %v", err)
	}
	for _, n := range secretNumbers {
		if strings.Contains(logs, n) {
			h.t.Errorf("card number %s appears in the logs:\n%s", n, logs)
		}
		if bytes.Contains(files, []byte(n)) {
			h.t.Errorf("card number %s appears in the database files", n)
		}
	}
}

// client is an HTTP client that does not follow redirects.
func (h *harness) client() *http.Client {
	c := *h.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.Timeout = 60 * time.Second
	return &c
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

func (h *harness) do(req *http.Request) response {
	h.t.Helper()
	res, err := h.send(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// send is do for any goroutine: it reports failure instead of ending the test.
func (h *harness) send(req *http.Request) (response, error) {
	res, err := h.client().Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", req.Method, req.URL, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}, nil
}

// sendAsync sends req from another goroutine; the response arrives on the
// channel (a zero response, with the test marked failed, on error).
func (h *harness) sendAsync(req *http.Request) <-chan response {
	ch := make(chan response, 1)
	go func() {
		res, err := h.send(req)
		if err != nil {
			h.t.Error(err)
		}
		ch <- res
	}()
	return ch
}

func (h *harness) newRequest(method, path, contentType string, body []byte) *http.Request {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

func (h *harness) get(path string) response {
	h.t.Helper()
	return h.do(h.newRequest(http.MethodGet, path, "", nil))
}

// postJSON posts body to the API; key "" sends no Idempotency-Key.
func (h *harness) postJSON(body []byte, key string) response {
	h.t.Helper()
	req := h.newRequest(http.MethodPost, "/api/registrations", "application/json", body)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return h.do(req)
}

// register posts a registration that must be accepted and returns its id.
func (h *harness) register(body []byte) string {
	h.t.Helper()
	res := h.postJSON(body, "")
	if res.status != http.StatusAccepted {
		h.t.Fatalf("register: got %v, want 202", res)
	}
	var ok struct{ ID string }
	if err := json.Unmarshal(res.body, &ok); err != nil {
		h.t.Fatalf("register: %v in %s", err, res.body)
	}
	return ok.ID
}

// counts is what a registration attempt can leave behind.
type counts struct {
	Registrations, SeatHolds, IdempotencyKeys, Taken, RegisterJobs int
}

func (h *harness) counts(ticket string) counts {
	h.t.Helper()
	var c counts
	for _, q := range []struct {
		dst   *int
		query string
		args  []any
	}{
		{&c.Registrations, `SELECT count(*) FROM registrations`, nil},
		{&c.SeatHolds, `SELECT count(*) FROM seat_holds`, nil},
		{&c.IdempotencyKeys, `SELECT count(*) FROM idempotency_keys`, nil},
		{&c.Taken, `SELECT taken FROM ticket_stock WHERE event_id = ? AND ticket_id = ?`, []any{h.event.ID, ticket}},
		{&c.RegisterJobs, `SELECT count(*) FROM river_job WHERE kind = 'register'`, nil},
	} {
		if err := h.db.Read.QueryRow(q.query, q.args...).Scan(q.dst); err != nil {
			h.t.Fatalf("%s: %v", q.query, err)
		}
	}
	return c
}

// count runs a count(*) query.
func (h *harness) count(query string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.db.Read.QueryRow(query, args...).Scan(&n); err != nil && err != sql.ErrNoRows {
		h.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// countingProcessor counts Charge calls reaching the payment processor.
type countingProcessor struct {
	payment.Processor
	mu      sync.Mutex
	charges int
	refunds int
}

func (p *countingProcessor) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	p.mu.Lock()
	p.charges++
	p.mu.Unlock()
	return p.Processor.Charge(ctx, req)
}

func (p *countingProcessor) Refund(ctx context.Context, c payment.Charge, amount int64, currency, requestID string) (payment.RefundOutcome, error) {
	p.mu.Lock()
	p.refunds++
	p.mu.Unlock()
	return p.Processor.Refund(ctx, c, amount, currency, requestID)
}

func (p *countingProcessor) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.charges
}

// blockingProcessor holds the first Charge until release is closed, after
// closing entered.
type blockingProcessor struct {
	payment.Processor
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newBlockingProcessor(next payment.Processor) *blockingProcessor {
	return &blockingProcessor{Processor: next, entered: make(chan struct{}), release: make(chan struct{})}
}

func (p *blockingProcessor) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	first := false
	p.once.Do(func() { first = true })
	if first {
		close(p.entered)
		<-p.release
	}
	return p.Processor.Charge(ctx, req)
}

// syncBuffer is a log sink safe for concurrent handlers.
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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait receives from ch or fails the test after a while.
func wait[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
