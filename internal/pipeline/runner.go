package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
)

// Pipeline owns the River client of one process: it inserts the jobs of
// new registrations and of the back office's actions, and, in a worker
// process, works them between Start and Stop.
type Pipeline struct {
	client  *river.Client[*sql.Tx]
	deps    Deps
	workers bool

	mu      sync.Mutex
	started bool
}

// New builds the pipeline on driver. With workers false it only inserts
// jobs (a web-only process). riverLog receives River's own logs; d.Log the
// pipeline's.
func New(driver riverdriver.Driver[*sql.Tx], d Deps, o Options, workers bool, riverLog *slog.Logger) (*Pipeline, error) {
	cfg, err := Config(d, o, workers, riverLog)
	if err != nil {
		return nil, err
	}
	cfg.ID = o.ClientID
	client, err := river.NewClient(driver, cfg)
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	return &Pipeline{client: client, deps: d, workers: workers}, nil
}

// Client is the River client, for River UI and tests.
func (p *Pipeline) Client() *river.Client[*sql.Tx] { return p.client }

// ID is the River client's id.
func (p *Pipeline) ID() string { return p.client.ID() }

// Enqueue inserts a registration's pipeline in the transaction that stores
// it (a registration.EnqueueFunc).
func (p *Pipeline) Enqueue(ctx context.Context, tx *sql.Tx, id string) error {
	return insertJobs(ctx, p.client, tx, river.InsertManyParams{Args: RegisterArgs{RegistrationID: id}})
}

// Start starts working jobs, in a worker process; elsewhere it does nothing.
func (p *Pipeline) Start(ctx context.Context) error {
	if !p.workers {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return nil
	}
	if err := p.client.Start(ctx); err != nil {
		return fmt.Errorf("start job queue: %w", err)
	}
	p.started = true
	return nil
}

// Stop lets running jobs finish until most of ctx's time is gone, then
// cancels them (they run again later: every job is idempotent). It does
// nothing when the pipeline was not started, and may be called again.
func (p *Pipeline) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		return nil
	}
	p.started = false
	soft := 20 * time.Second
	if deadline, ok := ctx.Deadline(); ok {
		soft = time.Until(deadline) * 4 / 5
	}
	sctx, cancel := context.WithTimeout(ctx, soft)
	defer cancel()
	err := p.client.Stop(sctx)
	if err == nil {
		return nil
	}
	if cerr := p.client.StopAndCancel(ctx); cerr != nil {
		return fmt.Errorf("stop job queue: %w", errors.Join(err, cerr))
	}
	return nil
}
