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
	"runtime/debug"
	"syscall"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/registrar/registrar/internal/config"
	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/mailchimp"
	"github.com/registrar/registrar/internal/metrics"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/paypal"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/sendgrid"
	"github.com/registrar/registrar/internal/smtprelay"
	"github.com/registrar/registrar/internal/sqlite"
	"github.com/registrar/registrar/internal/web"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "registrar:", err)
		os.Exit(1)
	}
}

const usage = `usage: registrar [command]

commands:
  serve     run the configured roles (default)
  migrate   apply database migrations and exit
  version   print the version and exit

Configuration is read from the environment; see README.md.`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	if len(args) > 1 {
		return fmt.Errorf("unexpected arguments after %q\n%s", cmd, usage)
	}
	switch cmd {
	case "serve", "migrate":
	case "version":
		fmt.Fprintln(stdout, "registrar", version())
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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
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
	if cmd == "migrate" {
		fmt.Fprintln(stdout, "database is at schema version", db.schemaVersion)
		return nil
	}
	if err := db.store.SyncTickets(ctx, ev); err != nil {
		return err
	}
	log.Info("starting registrar", "version", version(), "config", cfg, "event", ev.ID)
	return serve(ctx, cfg, ev, db, log, stdout)
}

// store is everything registrar keeps, on either engine.
type store interface {
	registration.Store
	pipeline.Store
	pipeline.MailingList
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

func newAdapters(cfg config.Config, store store, log *slog.Logger) (adapters, error) {
	var a adapters
	switch cfg.Payment {
	case "paypal":
		a.processor = paypal.New(cfg.PayPal.APIBase, cfg.PayPal.ClientID, cfg.PayPal.ClientSecret, nil, log.With("component", "paypal"))
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
		a.mailer = sendgrid.New(cfg.SendGrid.APIBase, cfg.SendGrid.APIKey, nil)
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
			mailchimp.Options{DoubleOptIn: cfg.Mailchimp.DoubleOptIn, MaxConns: listConns})
	default:
		a.list = store
	}
	return a, nil
}

func serve(ctx context.Context, cfg config.Config, ev *event.Event, db *engine, log *slog.Logger, stdout io.Writer) error {
	store := db.store
	ad, err := newAdapters(cfg, store, log)
	if err != nil {
		return err
	}
	renderer, err := email.NewRenderer()
	if err != nil {
		return err
	}
	// The service enqueues through the River client, and the client's
	// resolver job calls the service: bind the client once it exists.
	var queue *river.Client[*sql.Tx]
	svc := registration.NewService(store, ad.processor, func(ctx context.Context, tx *sql.Tx, id string) error {
		return pipeline.Enqueue(queue)(ctx, tx, id)
	}, ev, log)
	m := metrics.New()
	deps := pipeline.Deps{
		Observe:  m.Activity,
		Store:    store,
		Mailer:   ad.mailer,
		List:     ad.list,
		Payments: svc,
		Renderer: renderer,
		Event:    ev,
		BaseURL:  cfg.BaseURL,
		Log:      log,
	}
	// River reports routine progress at info level; keep its warnings.
	riverLog := slog.New(levelHandler{slog.LevelWarn, log.Handler()}).With("component", "river")
	opts := pipeline.DefaultOptions()
	opts.JobTimeout = cfg.JobTimeout
	opts.ListWorkers = 4 * listConns
	opts.RescueAfter = 2 * cfg.JobTimeout
	riverCfg, err := pipeline.Config(deps, opts, cfg.Roles.Worker, riverLog)
	if err != nil {
		return err
	}
	if riverCfg.ID, err = clientID(); err != nil {
		return err
	}
	queue, err = river.NewClient(db.driver, riverCfg)
	if err != nil {
		return fmt.Errorf("job queue: %w", err)
	}
	if db.recover != nil {
		if err := db.recover(ctx, log); err != nil {
			return err
		}
	}
	stopWatch := func() error { return nil }
	if cfg.Roles.Worker && db.watchWorkers != nil {
		if stopWatch, err = db.watchWorkers(ctx, riverCfg.ID, log); err != nil {
			return err
		}
	}
	if cfg.Roles.Worker {
		if err := queue.Start(ctx); err != nil {
			stopWatch()
			return fmt.Errorf("start job queue: %w", err)
		}
	}
	// Attempts left holding a seat by a process that died are settled now
	// rather than at the periodic resolver's first run, which waits for this
	// process to lead River: until then their money is neither registered nor
	// refunded, their seats are unsold and their clients' retries are told
	// "in progress". It runs to its end even during a shutdown, as each
	// settlement must (a charge found must become a registration).
	resolved := make(chan struct{})
	go func() {
		defer close(resolved)
		n, err := svc.ResolveAbandoned(context.WithoutCancel(ctx), time.Now())
		if err != nil {
			log.Error("settling payment attempts left by a stopped process", "settled", n, "err", err)
		} else if n > 0 {
			log.Warn("settled payment attempts left by a stopped process", "count", n)
		}
	}()

	var handler http.Handler
	if cfg.Roles.Web {
		handler, err = web.Handler(web.Deps{
			Registrar: svc,
			Ready:     db.ready,
			Log:       log,
			BaseURL:   cfg.BaseURL,
			RateLimit: cfg.RateLimit,
			Metrics:   m,
		})
		if err != nil {
			return err
		}
	} else {
		handler = web.HealthHandler(db.ready, log, m)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("REGISTRAR_ADDR: cannot listen on %s: %w", cfg.Addr, err)
	}
	// More clients than file descriptors wait to be accepted rather than
	// make the process's own file opens fail; when the connections run
	// short, served clients are let go instead of kept alive.
	ln = limitConns(ln, maxConns(log))
	srv := &http.Server{
		Handler:           closeWhenCrowded(handler, ln),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if cfg.DebugAddr != "" {
		dln, err := listenDebug(cfg.DebugAddr)
		if err != nil {
			ln.Close()
			return err
		}
		defer serveDebug(dln, log)()
	}
	fmt.Fprintf(stdout, "registrar listening on http://%s\n", ln.Addr())
	log.Info("listening", "addr", ln.Addr().String(), "roles", cfg.Roles)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var errs []error
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("http server: %w", serveErr))
	}
	if err := srv.Shutdown(shutdownCtx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if cfg.Roles.Worker {
		if err := stopQueue(shutdownCtx, queue); err != nil {
			errs = append(errs, err)
		}
		if err := stopWatch(); err != nil {
			errs = append(errs, fmt.Errorf("release worker liveness lock: %w", err))
		}
	}
	select {
	case <-resolved:
	case <-shutdownCtx.Done():
		errs = append(errs, errors.New("stopped while settling payment attempts; the next start settles the rest"))
	}
	log.Info("stopped")
	return errors.Join(errs...)
}

// stopQueue lets running jobs finish; past the deadline it cancels them (they
// are retried later, as each activity is idempotent).
func stopQueue(ctx context.Context, client *river.Client[*sql.Tx]) error {
	soft, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := client.Stop(soft); err == nil {
		return nil
	}
	if err := client.StopAndCancel(ctx); err != nil {
		return fmt.Errorf("stop job queue: %w", err)
	}
	return nil
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

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
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
