package admin_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/postgres"
	"github.com/registrar/registrar/internal/postgres/pgtest"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/sqlite/sqlitetest"
)

// template is the migrated SQLite database every test copies.
var template sqlitetest.Template

// store is what both engines' stores provide: the back office's, the
// public form's and the pipeline's.
type store interface {
	admin.Store
	registration.Store
	pipeline.Store
	pipeline.OfficeStore
	pipeline.MailingList
	SyncTickets(ctx context.Context, ev *event.Event) error
	EmailSending(ctx context.Context, id string) error
	StepFailed(ctx context.Context, id string, step registration.StepName, msg string, final bool) error
}

// engine opens a migrated, empty database of its own for one test, with
// stock following ev, and returns its store and River's driver over it.
type engine struct {
	name string
	open func(t *testing.T, ev *event.Event) (store, riverdriver.Driver[*sql.Tx])
}

// engines are the databases every back-office test runs on.
var engines = []engine{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// forEachEngine runs test as a parallel subtest per engine.
func forEachEngine(t *testing.T, test func(t *testing.T, eng engine)) {
	t.Helper()
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			t.Parallel()
			test(t, eng)
		})
	}
}

func openSQLite(t *testing.T, ev *event.Event) (store, riverdriver.Driver[*sql.Tx]) {
	t.Helper()
	db, s := template.Open(t, ev)
	return s, riversqlite.New(db.Write)
}

func openPostgres(t *testing.T, ev *event.Event) (store, riverdriver.Driver[*sql.Tx]) {
	t.Helper()
	conn := pgtest.NewSchema(t, "admin_test_")
	ctx := context.Background()
	db, err := postgres.Open(ctx, conn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := db.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s := postgres.NewStore(db)
	if err := s.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	return s, db.RiverDriver()
}

// t0 is when every test's clock starts.
var t0 = time.Date(2027, 3, 15, 10, 0, 0, 0, time.UTC)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// call is one action the back office asked for.
type call struct {
	Action string
	Actor  admin.Actor
	ID     string
	To     string
	Key    string
	Edit   registration.AttendeeEdit
	Cancel admin.Cancellation
	Amount int64
	Reason string
}

// recorder stands in for the actions and the email previews: it records
// what the handlers ask for and answers err when set.
type recorder struct {
	mu    sync.Mutex
	calls []call
	err   error
}

func (r *recorder) record(c call) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	return r.err
}

func (r *recorder) Calls() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *recorder) Retry(ctx context.Context, by admin.Actor, id string) error {
	return r.record(call{Action: "retry", Actor: by, ID: id})
}

func (r *recorder) Resend(ctx context.Context, by admin.Actor, id, to, key string) error {
	return r.record(call{Action: "resend", Actor: by, ID: id, To: to, Key: key})
}

func (r *recorder) Edit(ctx context.Context, by admin.Actor, id string, e registration.AttendeeEdit) error {
	return r.record(call{Action: "edit", Actor: by, ID: id, Edit: e})
}

func (r *recorder) Cancel(ctx context.Context, by admin.Actor, id string, c admin.Cancellation) error {
	return r.record(call{Action: "cancel", Actor: by, ID: id, Cancel: c, Key: c.Key})
}

func (r *recorder) Refund(ctx context.Context, by admin.Actor, id string, amount int64, reason, key string) error {
	return r.record(call{Action: "refund", Actor: by, ID: id, Amount: amount, Reason: reason, Key: key})
}

func (r *recorder) Erase(ctx context.Context, by admin.Actor, id string) error {
	return r.record(call{Action: "erase", Actor: by, ID: id})
}

func (r *recorder) Preview(ctx context.Context, reg registration.Registration, m registration.Message) (email.Message, error) {
	return email.Message{
		ID: reg.ID, From: email.Address{Name: "GopherFest", Email: "tickets@gopherfest.example"},
		To: email.Address{Name: reg.FirstName + " " + reg.LastName, Email: m.To}, Subject: "Your ticket for GopherFest 2027",
		Date: reg.CreatedAt, Text: "Hello " + reg.FirstName + ",\nyour registration " + reg.ID + " is confirmed.",
		HTML: "<p>Hello " + reg.FirstName + "</p>",
	}, nil
}

// env is a back office over a real store of one engine.
type env struct {
	t      *testing.T
	h      http.Handler
	store  store
	driver riverdriver.Driver[*sql.Tx]
	clock  *clock
	acts   *recorder
	ev     *event.Event
	jobs   *int // requests the job console got
}

func newEnv(t *testing.T, eng engine) *env {
	t.Helper()
	return newEnvWith(t, eng, func(*event.Event) {})
}

// newEnvWith is newEnv with an event changed by change.
func newEnvWith(t *testing.T, eng engine, change func(*event.Event)) *env {
	t.Helper()
	ev := event.Demo()
	change(ev)
	s, driver := eng.open(t, ev)
	e := &env{t: t, store: s, driver: driver, clock: &clock{now: t0}, acts: &recorder{}, ev: ev, jobs: new(int)}
	e.serve(e.acts)
	return e
}

// serve makes the back office carry out its actions with acts.
func (e *env) serve(acts admin.Actions) {
	e.t.Helper()
	jobs := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*e.jobs++
		io.WriteString(w, "job console")
	})
	h, err := admin.New(admin.Deps{Store: e.store, Actions: acts, Preview: e.acts, Event: e.ev, Jobs: jobs,
		Log: slog.New(slog.DiscardHandler), Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.h = h
}

// office makes the back office carry out its actions with the pipeline's
// real ones, over the same store: they record what they do and insert
// their jobs through River, whose workers do not run here. It returns the
// pipeline, whose River client lists those jobs.
func (e *env) office() *pipeline.Pipeline {
	e.t.Helper()
	log := slog.New(slog.DiscardHandler)
	p, err := pipeline.New(e.driver, pipeline.Deps{Store: e.store, Office: e.store, List: e.store, Event: e.ev, Log: log,
		BaseURL: "http://127.0.0.1"}, pipeline.DefaultOptions(), false, log)
	if err != nil {
		e.t.Fatalf("pipeline.New: %v", err)
	}
	e.serve(p.Office())
	return p
}

// account creates an account of role with a password hash nobody can log
// in with, and a live session for it; it returns the session's cookie.
func (e *env) account(role admin.Role) (admin.Account, string) {
	e.t.Helper()
	ctx := context.Background()
	a, err := e.store.CreateAccount(ctx, admin.Account{Email: string(role) + "@example.org", PasswordHash: "-", Role: role,
		CreatedAt: e.clock.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	return a, e.session(a)
}

// session starts a session for a and returns its cookie value.
func (e *env) session(a admin.Account) string {
	e.t.Helper()
	token := fmt.Sprintf("token-%d-%d", a.ID, time.Now().UnixNano())
	now := e.clock.Now()
	if err := e.store.CreateSession(context.Background(), admin.Session{TokenHash: admin.TokenHash(token), AccountID: a.ID,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(admin.DefaultLifetime)}); err != nil {
		e.t.Fatal(err)
	}
	return token
}

// loginAccount creates an account that can log in with password.
func (e *env) loginAccount(emailAddr, password string, role admin.Role) admin.Account {
	e.t.Helper()
	hash, err := admin.HashPassword(password)
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := e.store.CreateAccount(context.Background(), admin.Account{Email: emailAddr, PasswordHash: hash, Role: role,
		CreatedAt: e.clock.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// req is one request to the back office.
type req struct {
	method, path string
	cookie       string
	form         url.Values
	addr         string // client address; 192.0.2.1 when empty
	header       http.Header
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.cookie != "" {
		hr.AddCookie(&http.Cookie{Name: admin.CookieName, Value: r.cookie})
	}
	hr.RemoteAddr = "192.0.2.1:4711"
	if r.addr != "" {
		hr.RemoteAddr = r.addr + ":4711"
	}
	for k, vs := range r.header {
		hr.Header[k] = vs
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, hr)
	return w
}

func (e *env) get(path, cookie string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(req{method: http.MethodGet, path: path, cookie: cookie})
}

func (e *env) post(path, cookie string, form url.Values) *httptest.ResponseRecorder {
	e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	return e.do(req{method: http.MethodPost, path: path, cookie: cookie, form: form})
}

// seedReg is a registration to store.
type seedReg struct {
	ID, Ticket, First, Last, Email, Company string
	Created                                 time.Time
	Newsletter                              bool
	Status                                  registration.Status
}

// seed stores registrations as the public form does: an attempt holding a
// seat, completed as a paid registration with its steps.
func (e *env) seed(regs ...seedReg) []registration.Registration {
	e.t.Helper()
	ctx := context.Background()
	var out []registration.Registration
	for i, s := range regs {
		if s.Ticket == "" {
			s.Ticket = "standard"
		}
		if s.ID == "" {
			id, err := registration.NewID()
			if err != nil {
				e.t.Fatal(err)
			}
			s.ID = id
		}
		if s.Created.IsZero() {
			s.Created = t0.Add(-time.Duration(len(regs)-i) * time.Minute)
		}
		if s.First == "" {
			s.First, s.Last = "Ada", fmt.Sprintf("Lovelace%03d", i)
		}
		if s.Email == "" {
			s.Email = fmt.Sprintf("ada%03d@example.org", i)
		}
		if s.Status == "" {
			s.Status = registration.StatusProcessing
		}
		tk, ok := e.ev.Ticket(s.Ticket)
		if !ok {
			e.t.Fatalf("no ticket %q", s.Ticket)
		}
		r := registration.Registration{ID: s.ID, EventID: e.ev.ID, TicketID: s.Ticket, Status: s.Status, Amount: tk.Price,
			Currency: e.ev.Currency, FirstName: s.First, LastName: s.Last, Email: s.Email, Company: s.Company,
			Newsletter: s.Newsletter, CreatedAt: s.Created, UpdatedAt: s.Created,
			Billing: payment.BillingAddress{Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"},
			Steps: []registration.Step{{Name: registration.StepSaveOrder, Status: registration.StepPending},
				{Name: registration.StepSendConfirmation, Status: registration.StepPending},
				{Name: registration.StepAddToMailingList, Status: registration.StepSkipped}}}
		if s.Newsletter {
			r.NewsletterConsentedAt = s.Created
			r.NewsletterConsentText = registration.NewsletterConsentText
			r.Steps[2].Status = registration.StepPending
		}
		if tk.Price > 0 {
			r.Payment = payment.Charge{Provider: "test", Reference: "TEST-" + strings.ToUpper(s.ID[:8]), Brand: "visa", Last4: "1111"}
		}
		a := registration.Attempt{ID: s.ID, EventID: e.ev.ID, TicketID: s.Ticket, CreatedAt: s.Created,
			ResolveAfter: s.Created.Add(time.Hour), Draft: r}
		if _, err := e.store.StartAttempt(ctx, a, registration.Outcome{Code: registration.CodeSoldOut}); err != nil {
			e.t.Fatalf("start attempt: %v", err)
		}
		if err := e.store.CompleteAttempt(ctx, a, r, func(context.Context, *sql.Tx, string) error { return nil }); err != nil {
			e.t.Fatalf("complete attempt: %v", err)
		}
		out = append(out, r)
	}
	return out
}

// auditActions returns the actions of the audit log, newest first.
func (e *env) audit(f admin.AuditFilter) []registration.AuditEntry {
	e.t.Helper()
	f.Limit = 1000
	entries, err := e.store.AuditLog(context.Background(), f)
	if err != nil {
		e.t.Fatal(err)
	}
	return entries
}

// sessionCookie returns the session cookie a response sets.
func sessionCookie(w *httptest.ResponseRecorder) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == admin.CookieName {
			return c
		}
	}
	return nil
}
