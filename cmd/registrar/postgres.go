package main

import (
	"context"
	"log/slog"

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
	}, nil
}
