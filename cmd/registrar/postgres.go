package main

import (
	"context"
	"errors"
	"log/slog"
)

func openPostgres(ctx context.Context, url string, log *slog.Logger) (*engine, error) {
	return nil, errors.New("REGISTRAR_DATABASE_URL: PostgreSQL support is not built in yet")
}
