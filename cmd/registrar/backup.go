package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/registrar/registrar/internal/config"
	"github.com/registrar/registrar/internal/sqlite"
)

// errBackupPostgres answers backup and restore on PostgreSQL.
var errBackupPostgres = errors.New("REGISTRAR_DATABASE_URL is a PostgreSQL database: back it up with pg_dump -Fc and restore it with pg_restore (see README.md, Backups)")

// backupCommand writes a consistent copy of the SQLite database to path.
func backupCommand(ctx context.Context, db config.Database, path string, stdout io.Writer) error {
	if db.Engine == config.EnginePostgres {
		return errBackupPostgres
	}
	info, err := sqlite.Backup(ctx, db.Path, path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d bytes, schema version %d, %d registrations\n",
		info.Path, info.Bytes, info.SchemaVersion, info.Registrations)
	return nil
}

// restoreCommand puts the backup at path in place of the SQLite database.
func restoreCommand(ctx context.Context, db config.Database, path string, stdout io.Writer, log *slog.Logger) error {
	if db.Engine == config.EnginePostgres {
		return errBackupPostgres
	}
	info, err := sqlite.Restore(ctx, path, db.Path, time.Now(), log)
	if err != nil {
		return err
	}
	if info.Kept != "" {
		fmt.Fprintf(stdout, "kept the previous database as %s\n", info.Kept)
	}
	fmt.Fprintf(stdout, "restored %s from %s: schema version %d (backup at %d), %d registrations\n",
		db.Path, path, info.SchemaVersion, info.BackupVersion, info.Registrations)
	return nil
}
