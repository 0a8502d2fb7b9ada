// Command registrar is a conference registration system: a public form, a
// payment API, and a durable pipeline that saves the order, sends the
// confirmation and adds the attendee to the mailing list.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"riverqueue.com/riverui"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/buildinfo"
	"github.com/registrar/registrar/internal/config"
	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/logredact"
	"github.com/registrar/registrar/internal/mailchimp"
	"github.com/registrar/registrar/internal/metrics"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/paypal"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/sendgrid"
	"github.com/registrar/registrar/internal/smtprelay"
	"github.com/registrar/registrar/internal/sqlite"
	"github.com/registrar/registrar/internal/telemetry"
	"github.com/registrar/registrar/internal/web"
)

func main() {
	// run's error comes redacted as the log is.
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "registrar:", err)
		os.Exit(1)
	}
}

const usage = `usage: registrar [command]

commands:
  serve                          run the configured roles (default)
  migrate                        apply database migrations and exit
  admin add EMAIL --role ROLE    create a back-office account (owner, finance or staff);
                                 the password is read from standard input
  admin password EMAIL           set an account's password, read from standard input,
                                 and end its sessions
  admin list                     list the back-office accounts
  attendee export ID|EMAIL       print a registration's data as JSON (an email: all of its registrations)
  attendee erase ID [--yes]      erase a registration's personal data (asks first, unless --yes)
  backup PATH                    write a consistent copy of the SQLite database to PATH
  restore PATH                   put a backup in place of the SQLite database (service stopped)
  version                        print the version, revision and commit time and exit
                                 (also -version, --version)

Configuration is read from the environment; see README.md.`

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	// The error returned is printed to stderr: it is redacted as the log
	// is, with the configured secrets once they are known, and those
	// learnt since (a provider's access token).
	var secrets *logredact.Handler
	defer func() { err = redactError(err, secrets) }()
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve", "migrate":
		if len(args) > 1 {
			return fmt.Errorf("unexpected arguments after %q\n%s", cmd, usage)
		}
	case "admin":
		if err := checkAdminArgs(args[1:]); err != nil {
			return err
		}
	case "attendee":
		if _, err := parseAttendeeArgs(args[1:]); err != nil {
			return err
		}
	case "backup", "restore":
		if len(args) != 2 {
			return fmt.Errorf("%s needs one argument, the backup file's path\n%s", cmd, usage)
		}
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "registrar", buildinfo.Read())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}

	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	traces, err := telemetry.FromEnv(getenv)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if cmd == "admin" || cmd == "attendee" {
		// The command's own output is what matters there; migrations and the
		// like are reported only when something goes wrong.
		level = slog.LevelWarn
	}
	// Every logger derives from this one: lines written with a request's or a
	// job's context carry its ids, and card numbers and the configured
	// secrets never reach the log, whatever a provider's error echoes.
	secrets = logredact.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}), cfg.Secrets())
	log := slog.New(telemetry.NewLogHandler(secrets))
	switch cmd {
	case "backup":
		return backupCommand(ctx, cfg.Database, args[1], stdout)
	case "restore":
		return restoreCommand(ctx, cfg.Database, args[1], stdout, log)
	}
	ev, err := event.Load(cfg.EventFile)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	db, err := openEngine(ctx, cfg.Database, log)
	if err != nil {
		return err
	}
	defer db.close()
	switch cmd {
	case "migrate":
		fmt.Fprintln(stdout, "database is at schema version", db.schemaVersion)
		return nil
	case "admin":
		return adminCommand(ctx, args[1:], db.store, stdin, stdout, stderr)
	case "attendee":
		return attendeeCommand(ctx, args[1:], cfg, ev, db, stdin, stdout, stderr, log, secrets)
	}
	if err := db.store.SyncTickets(ctx, ev); err != nil {
		return err
	}
	build := buildinfo.Read()
	log.Info("starting registrar", "version", build.Version, "revision", build.RevisionLabel(), "built", build.Time, "config", cfg, "event", ev.ID, "tracing", traces.String())
	if err := bootstrapOwner(ctx, db.store, cfg.AdminEmail, cfg.AdminPassword, cfg.BaseURL, stderr, log); err != nil {
		return err
	}
	tracing, err := telemetry.New(traces, build.Version, log.With("component", "tracing"))
	if err != nil {
		return err
	}
	return serve(ctx, cfg, ev, db, tracing, log, secrets, stdout)
}

// redactError is err with its text redacted by secrets (card numbers
// alone while secrets is nil); errors.Is and errors.As still see err.
func redactError(err error, secrets *logredact.Handler) error {
	if err == nil {
		return nil
	}
	if secrets == nil {
		secrets = logredact.New(slog.DiscardHandler, nil)
	}
	msg := err.Error()
	if red := secrets.String(msg); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}

// redactedError is an error whose text has been redacted.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// store is everything registrar keeps, on either engine.
type store interface {
	registration.Store
	pipeline.Store
	pipeline.OfficeStore
	pipeline.MailingList
	pipeline.OptInList
	web.Newsletter
	admin.Store
	metrics.StatsSource
	SyncTickets(ctx context.Context, ev *event.Event) error
}

// engine is an open, migrated database of either kind.
type engine struct {
	store         store
	driver        riverdriver.Driver[*sql.Tx]
	ready         func(ctx context.Context) error
	close         func() error
	schemaVersion int
	// recover settles what a dead process left behind, at start; only a
	// single-process engine (SQLite) can know that everything running belongs
	// to a dead process. nil elsewhere: River's rescuer and the periodic
	// payment resolver take care of it there.
	recover func(ctx context.Context, log *slog.Logger) error
	// watchWorkers, on a multi-process engine (PostgreSQL), marks this
	// worker process alive under its River client id and re-queues the
	// running jobs of workers that died, until the returned stop is called
	// (after River stopped).
	watchWorkers func(ctx context.Context, clientID string, log *slog.Logger) (stop func() error, err error)
}

func openEngine(ctx context.Context, cfg config.Database, log *slog.Logger) (*engine, error) {
	switch cfg.Engine {
	case config.EnginePostgres:
		return openPostgres(ctx, cfg.URL, log)
	default:
		return openSQLite(ctx, cfg.Path, log)
	}
}

func openSQLite(ctx context.Context, path string, log *slog.Logger) (*engine, error) {
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, log); err != nil {
		db.Close()
		return nil, err
	}
	return &engine{
		store:         sqlite.NewStore(db),
		driver:        riversqlite.New(db.Write),
		ready:         db.Ready,
		close:         db.Close,
		schemaVersion: sqlite.SchemaVersion(),
		recover: func(ctx context.Context, log *slog.Logger) error {
			n, err := db.RescueRunningJobs(ctx)
			if err != nil {
				return err
			}
			if n > 0 {
				log.Warn("re-queued jobs left running by a stopped process", "count", n)
			}
			n, err = db.ResolveHoldsNow(ctx)
			if err != nil {
				return err
			}
			if n > 0 {
				log.Warn("payment attempts left by a stopped process will be resolved", "count", n)
			}
			return nil
		},
	}, nil
}

// listConns is how many mailing-list calls one worker process makes at once:
// Mailchimp allows 10 simultaneous connections per account across all
// processes.
const listConns = 5

// adapters are the providers chosen by the configuration.
type adapters struct {
	processor payment.Processor
	mailer    pipeline.Mailer
	list      pipeline.MailingList
}

func newAdapters(cfg config.Config, store store, tracing *telemetry.Tracing, log *slog.Logger, secrets *logredact.Handler) (adapters, error) {
	var a adapters
	// Each provider call is a client span when tracing is on.
	traced := func(provider string, hc *http.Client) *http.Client {
		hc.Transport = tracing.Transport(provider, hc.Transport)
		return hc
	}
	switch cfg.Payment {
	case "paypal":
		pp := paypal.New(cfg.PayPal.APIBase, cfg.PayPal.ClientID, cfg.PayPal.ClientSecret,
			traced("paypal", paypal.HTTPClient()), log.With("component", "paypal"))
		// Its Basic credentials and access tokens are redacted as the
		// configured secrets are.
		pp.RedactWith(secrets)
		a.processor = pp
	default:
		a.processor = payment.NewTestProcessor()
	}
	switch cfg.Email {
	case "smtp":
		sender, err := smtprelay.New(cfg.SMTPURL)
		if err != nil {
			return a, fmt.Errorf("SMTP_URL: %w", err)
		}
		a.mailer = sender
	case "sendgrid":
		a.mailer = sendgrid.New(cfg.SendGrid.APIBase, cfg.SendGrid.APIKey, traced("sendgrid", sendgrid.HTTPClient()))
	default:
		outbox, err := email.NewOutbox(filepath.Join(cfg.DataDir, "outbox"))
		if err != nil {
			return a, err
		}
		a.mailer = outbox
	}
	switch cfg.MailingList {
	case "mailchimp":
		a.list = mailchimp.New(cfg.Mailchimp.APIBase, cfg.Mailchimp.APIKey, cfg.Mailchimp.ListID,
			mailchimp.Options{DoubleOptIn: cfg.Mailchimp.DoubleOptIn, MaxConns: listConns,
				HTTPClient: traced("mailchimp", mailchimp.HTTPClient(listConns))})
	default:
		a.list = store
	}
	return a, nil
}

// app is one serving process: built by build, started by start, and taken
// down by shutdown, the one cleanup path, which releases whatever build and
// start got running, however far they got.
type app struct {
	cfg config.Config
	ev  *event.Event
	db  *engine
	log *slog.Logger
	// secrets is the log's redaction, which learns the secrets providers
	// issue while running.
	secrets *logredact.Handler
	// tracing is flushed last by shutdown.
	tracing *telemetry.Tracing

	svc     *registration.Service
	pipe    *pipeline.Pipeline
	handler http.Handler
	// jobsUI is River UI, served by the back office at /admin/jobs/ for
	// owners; stopJobsUI ends its background work.
	jobsUI     http.Handler
	stopJobsUI context.CancelFunc

	stopWatch func() error
	resolved  chan struct{}
	ln        net.Listener
	stopDebug func()
	// metrics are served on a listener of their own (REGISTRAR_METRICS_ADDR)
	// until stopMetrics is called.
	metrics     *metrics.Metrics
	stopMetrics func()
	srv         *http.Server
	served      chan error
}

func serve(ctx context.Context, cfg config.Config, ev *event.Event, db *engine, tracing *telemetry.Tracing, log *slog.Logger, secrets *logredact.Handler, stdout io.Writer) (err error) {
	a := &app{cfg: cfg, ev: ev, db: db, log: log, secrets: secrets, tracing: tracing}
	defer func() { err = errors.Join(err, a.shutdown()) }()
	if err := a.build(ctx); err != nil {
		return err
	}
	if err := a.start(ctx, stdout); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-a.served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http server: %w", err)
	}
}

// build wires the process: adapters, the registration service, the
// pipeline, the job console and the HTTP handler. Nothing runs yet but the
// job console's caches.
func (a *app) build(ctx context.Context) error {
	cfg, store, log := a.cfg, a.db.store, a.log
	ad, err := newAdapters(cfg, store, a.tracing, log, a.secrets)
	if err != nil {
		return err
	}
	renderer, err := email.NewRenderer()
	if err != nil {
		return err
	}
	// The service enqueues through the pipeline, and the pipeline's resolver
	// job calls the service: bind the pipeline once it exists.
	a.svc = registration.NewService(store, ad.processor, func(ctx context.Context, tx *sql.Tx, id string) error {
		return a.pipe.Enqueue(ctx, tx, id)
	}, a.ev, log)
	m := metrics.New()
	m.AddOperator(metrics.Operator{
		Source:  store,
		EventID: a.ev.ID,
		Queues:  []string{river.QueueDefault, pipeline.QueueMailingList, pipeline.QueuePayments},
		Log:     log.With("component", "metrics"),
	})
	a.metrics = m
	deps := pipeline.Deps{
		Observe:  m.Activity,
		Tracing:  a.tracing,
		Store:    store,
		Mailer:   ad.mailer,
		List:     ad.list,
		Payments: a.svc,
		Renderer: renderer,
		Event:    a.ev,
		BaseURL:  cfg.BaseURL,
		Log:      log,
		Office:   store,
		Refunds:  ad.processor,
		NotifyTo: cfg.NotifyEmails,
		Owners:   func(ctx context.Context) ([]string, error) { return ownerEmails(ctx, store) },
	}
	opts := pipeline.DefaultOptions()
	opts.JobTimeout = cfg.JobTimeout
	// Attendees subscribing at once share one batch call (up to 500
	// members), so a connection carries as many members as there are
	// workers waiting for it: 40 per connection kept up with 400
	// subscriptions/s at 50 ms per call where 4 per connection managed ~130.
	opts.ListWorkers = 40 * listConns
	opts.RescueAfter = 2 * cfg.JobTimeout
	opts.RetentionDays = cfg.RetentionDays
	if opts.ClientID, err = clientID(); err != nil {
		return err
	}
	// River reports routine progress at info level; keep its warnings.
	riverLog := slog.New(levelHandler{slog.LevelWarn, log.Handler()}).With("component", "river")
	if a.pipe, err = pipeline.New(a.db.driver, deps, opts, cfg.Roles.Worker, riverLog); err != nil {
		return err
	}

	if !cfg.Roles.Web {
		a.handler = web.HealthHandler(a.db.ready, log, m)
		return nil
	}
	jobsUI, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints:                riverui.NewEndpoints(a.pipe.Client(), nil),
		Prefix:                   "/admin/jobs",
		JobListHideArgsByDefault: true,
		Logger:                   riverLog.With("component", "riverui"),
	})
	if err != nil {
		return fmt.Errorf("job console: %w", err)
	}
	uiCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopJobsUI = cancel
	if err := jobsUI.Start(uiCtx); err != nil {
		return fmt.Errorf("start job console: %w", err)
	}
	a.jobsUI = jobsUI
	backOffice, err := newBackOffice(store, a.pipe.Office(), a.ev, jobsUI, log)
	if err != nil {
		return err
	}
	a.handler, err = web.Handler(web.Deps{
		Registrar: a.svc,
		Ready:     a.db.ready,
		Log:       log,
		BaseURL:   cfg.BaseURL,
		RateLimit: cfg.RateLimit,
		Metrics:   m,
		Admin:     backOffice,
		// The form names who processes card payments.
		PaymentProcessor: cfg.Payment,
		// The local list's confirmation links; a provider's list confirms
		// by itself.
		Newsletter: localNewsletter(ad.list, store),
		Tracing:    a.tracing,
	})
	return err
}

// localNewsletter is what confirms the links of the local list's double
// opt-in when that list is list, and nil otherwise.
func localNewsletter(list pipeline.MailingList, store store) web.Newsletter {
	if _, ok := list.(pipeline.OptInList); ok {
		return store
	}
	return nil
}

// start settles what a dead process left behind, starts the pipeline's
// workers and serves HTTP.
func (a *app) start(ctx context.Context, stdout io.Writer) error {
	cfg, log := a.cfg, a.log
	if a.db.recover != nil {
		if err := a.db.recover(ctx, log); err != nil {
			return err
		}
		a.settleHolds(ctx)
	}
	if cfg.Roles.Worker && a.db.watchWorkers != nil {
		stop, err := a.db.watchWorkers(ctx, a.pipe.ID(), log)
		if err != nil {
			return err
		}
		a.stopWatch = stop
	}
	if err := a.pipe.Start(ctx); err != nil {
		return err
	}
	// Attempts left holding a seat by a process that died are settled now
	// rather than at the periodic resolver's first run, which waits for this
	// process to lead River: until then their money is neither registered nor
	// refunded, their seats are unsold and their clients' retries are told
	// "in progress". It runs to its end even during a shutdown, as each
	// settlement must (a charge found must become a registration).
	a.resolved = make(chan struct{})
	go func() {
		defer close(a.resolved)
		n, err := a.svc.ResolveAbandoned(context.WithoutCancel(ctx), time.Now())
		if err != nil {
			log.Error("settling payment attempts left by a stopped process", "settled", n, "err", err)
		} else if n > 0 {
			log.Warn("settled payment attempts left by a stopped process", "count", n)
		}
	}()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("REGISTRAR_ADDR: cannot listen on %s: %w", cfg.Addr, err)
	}
	// More clients than file descriptors wait to be accepted rather than
	// make the process's own file opens fail; when the connections run
	// short, served clients are let go instead of kept alive.
	// Inside that, one client may hold at most cfg.MaxConnsPerClient of
	// them: its connections beyond are closed at once, not waited for.
	a.ln = limitConns(capPerClient(ln, cfg.MaxConnsPerClient, log), maxConns(log))
	if cfg.DebugAddr != "" {
		dln, err := listenDebug(cfg.DebugAddr)
		if err != nil {
			return err
		}
		a.stopDebug = serveDebug(dln, log)
	}
	if cfg.MetricsAddr != "" {
		mln, err := listenMetrics(cfg.MetricsAddr)
		if err != nil {
			return err
		}
		a.stopMetrics = serveMetrics(mln, a.metrics, cfg.MetricsToken, log)
	}
	a.srv = &http.Server{
		Handler:           closeWhenCrowded(a.handler, a.ln),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	fmt.Fprintf(stdout, "registrar listening on %s\n", openableURL(a.ln.Addr()))
	log.Info("listening", "addr", a.ln.Addr().String(), "roles", cfg.Roles)
	a.served = make(chan error, 1)
	go func() { a.served <- a.srv.Serve(a.ln) }()
	return nil
}

// settleWithin bounds how long a single process settles, before it
// serves, the payment attempts a dead process left holding seats.
const settleWithin = 30 * time.Second

// settleHolds settles, on a single-process engine and before the listener
// opens, the attempts a dead process left holding seats: the provider is
// asked about each; charged ones become registrations, the others give
// their seat and key back. Otherwise the first attendees would be told the
// ticket is sold out for seats nobody holds, and retries "in progress".
// What the provider cannot tell stays, postponed; what is not reached
// within settleWithin is left to the resolver, which runs next.
func (a *app) settleHolds(ctx context.Context) {
	n, complete, err := a.svc.SettleAll(ctx, settleWithin)
	switch {
	case err != nil:
		a.log.Error("settling payment attempts left by a stopped process", "settled", n, "err", err)
	case !complete:
		a.log.Warn("not every payment attempt left by a stopped process was settled in time; the resolver settles the rest",
			"settled", n, "within", settleWithin)
	case n > 0:
		a.log.Warn("settled payment attempts left by a stopped process before serving", "count", n)
	}
}

// shutdown takes down whatever build and start got running, in reverse
// order: the HTTP server (letting requests finish), the profiles, the
// metrics, the job console, the pipeline (letting jobs finish), the worker
// liveness watch; then it waits for the start-up settling of payment
// attempts.
func (a *app) shutdown() error {
	a.log.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var errs []error
	switch {
	case a.srv != nil:
		if err := a.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	case a.ln != nil:
		a.ln.Close()
	}
	if a.stopDebug != nil {
		a.stopDebug()
	}
	if a.stopMetrics != nil {
		a.stopMetrics()
	}
	if a.stopJobsUI != nil {
		a.stopJobsUI()
	}
	if a.pipe != nil {
		if err := a.pipe.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if a.stopWatch != nil {
		if err := a.stopWatch(); err != nil {
			errs = append(errs, fmt.Errorf("release worker liveness lock: %w", err))
		}
	}
	if a.resolved != nil {
		select {
		case <-a.resolved:
		case <-ctx.Done():
			errs = append(errs, errors.New("stopped while settling payment attempts; the next start settles the rest"))
		}
	}
	// The spans of everything that ran are flushed last, within a few
	// seconds of their own.
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	if err := a.tracing.Shutdown(fctx); err != nil {
		errs = append(errs, err)
	}
	a.log.Info("stopped")
	return errors.Join(errs...)
}

// clientID names this process's River client: host, process id and random
// bits, unique across restarts. Jobs record it in attempted_by.
func clientID() (string, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "registrar"
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("client id: %w", err)
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:])), nil
}

// levelHandler drops records below a minimum level.
type levelHandler struct {
	min slog.Level
	slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelHandler{h.min, h.Handler.WithAttrs(attrs)}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{h.min, h.Handler.WithGroup(name)}
}

// openableURL is the URL a person can open for the listen address addr: a
// listener on every interface (":8080", "0.0.0.0:8080", "[::]:8080") is
// reached at localhost; a specific host is kept (an IPv6 one in brackets).
func openableURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
