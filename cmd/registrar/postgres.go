package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/registrar/registrar/internal/postgres"
)

// openPostgres opens and migrates a PostgreSQL database. Several processes
// may start at once: one migrates, the others wait for it.
func openPostgres(ctx context.Context, url string, log *slog.Logger) (*engine, error) {
	db, err := postgres.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, log); err != nil {
		db.Close()
		return nil, err
	}
	return &engine{
		store:         postgres.NewStore(db),
		driver:        db.RiverDriver(),
		ready:         db.Ready,
		close:         db.Close,
		schemaVersion: postgres.SchemaVersion(),
		watchWorkers: func(ctx context.Context, clientID string, log *slog.Logger) (func() error, error) {
			return watchWorkers(ctx, db, clientID, rescueEvery, log)
		},
	}, nil
}

// rescueEvery is how often a worker looks for jobs of dead workers.
const rescueEvery = 2 * time.Second

// watchWorkers holds this worker's liveness lock and re-queues the running
// jobs of dead workers now and every interval, until stop.
func watchWorkers(ctx context.Context, db *postgres.DB, clientID string, interval time.Duration, log *slog.Logger) (stop func() error, err error) {
	live, err := db.HoldLiveness(ctx, clientID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			n, err := db.RescueAbandonedJobs(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Error("re-queueing jobs of stopped workers", "err", err)
			case n > 0:
				log.Warn("re-queued jobs left running by a stopped worker", "count", n)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() error {
		cancel()
		<-done
		return live.Release()
	}, nil
}
