// Package sqlite stores registrar's data in one SQLite file: the embedded
// default. One connection writes (River's SQLite driver and SQLite itself
// want a single writer); a small pool reads.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/registrar/registrar/internal/migration"
	modernc "modernc.org/sqlite"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is an open registrar database file.
type DB struct {
	// Write is the single writer connection; River shares it so that a
	// registration and its job commit in one transaction.
	Write *sql.DB
	// Read serves queries that need no write.
	Read *sql.DB
	path string
	lock *os.File
}

const timeFormat = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse stored time %q: %w", s, err)
	}
	return t, nil
}

// Open opens (creating if needed) the database file at path, takes the
// file's process lock so no second registrar uses it at once, and applies
// the pragmas registrar relies on.
func Open(ctx context.Context, path string) (*DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	return openLocked(ctx, path, lock)
}

// fileURI is the driver's name of the database file at path with the
// parameters q: a file: URI, whose path has '%', '?' and '#' escaped (SQLite
// decodes them), so that a directory named "event#2" or "a?b" is not cut
// into another, shared, file name.
func fileURI(path string, q url.Values) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
	return "file:" + esc + "?" + q.Encode()
}

// openLocked opens the database file at path, whose process lock the caller
// holds; the DB releases it on Close.
func openLocked(ctx context.Context, path string, lock *os.File) (*DB, error) {
	db := &DB{path: path, lock: lock}
	dsn := func(extra ...string) string {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous(FULL)")
		// What is deleted or overwritten is zeroed in the file, not left
		// in free space: an erased attendee's data is gone from the
		// database file, not only from its rows.
		q.Add("_pragma", "secure_delete(1)")
		for _, e := range extra {
			k, v, _ := strings.Cut(e, "=")
			q.Add(k, v)
		}
		return fileURI(path, q)
	}
	drv := &modernc.Driver{}
	db.Write = sql.OpenDB(connector{driver: drv, dsn: dsn("_txlock=immediate")})
	db.Write.SetMaxOpenConns(1)
	db.Write.SetMaxIdleConns(1)
	db.Write.SetConnMaxLifetime(0)
	db.Write.SetConnMaxIdleTime(0)
	if err := db.Write.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.Read = sql.OpenDB(connector{driver: drv, dsn: dsn("_pragma=query_only(1)")})
	db.Read.SetMaxOpenConns(4)
	db.Read.SetMaxIdleConns(4)
	return db, nil
}

// Close closes the connections and releases the file lock.
func (db *DB) Close() error {
	var errs []error
	if db.Read != nil {
		errs = append(errs, db.Read.Close())
	}
	if db.Write != nil {
		errs = append(errs, db.Write.Close())
	}
	if db.lock != nil {
		errs = append(errs, db.lock.Close())
	}
	return errors.Join(errs...)
}

func migrations() ([]migration.Migration, error) { return migration.Load(migrationFS, "migrations") }

// SchemaVersion is the newest migration this binary knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return migration.Latest(ms)
}

// Migrate applies River's migrations and registrar's own, each in a
// transaction. A database migrated by a newer registrar is refused.
func (db *DB) Migrate(ctx context.Context, log *slog.Logger) error {
	if _, err := db.Write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	ms, err := migrations()
	if err != nil {
		return err
	}
	current, err := db.version(ctx, db.Write)
	if err != nil {
		return err
	}
	if latest := migration.Latest(ms); current > latest {
		return fmt.Errorf("database schema is version %d but this registrar knows only up to %d: run the newer registrar, or restore a backup made for this version", current, latest)
	}
	migrator, err := rivermigrate.New(riversqlite.New(db.Write), &rivermigrate.Config{Logger: log})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	for _, m := range ms {
		if m.Version <= current {
			continue
		}
		if err := db.apply(ctx, m); err != nil {
			return err
		}
		log.Info("applied migration", "version", m.Version, "name", m.Name)
	}
	return nil
}

// apply runs one migration in a transaction with foreign keys off, as
// SQLite asks of a migration that rebuilds a table, and checks every foreign
// key before it commits.
func (db *DB) apply(ctx context.Context, m migration.Migration) (err error) {
	conn, err := db.Write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	defer conn.Close()
	// The pragma has no effect inside a transaction: set it around one.
	if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	defer func() {
		if _, ferr := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`); ferr != nil && err == nil {
			err = fmt.Errorf("migration %s: turn foreign keys back on: %w", m.Name, ferr)
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	rows, err := tx.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return fmt.Errorf("migration %s: check foreign keys: %w", m.Name, err)
	}
	broken := rows.Next()
	rows.Close()
	if broken {
		return fmt.Errorf("migration %s: leaves rows whose foreign keys point nowhere", m.Name)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, formatTime(time.Now())); err != nil {
		return fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	return nil
}

func (db *DB) version(ctx context.Context, q *sql.DB) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// Ready reports whether the database answers and its schema is current.
func (db *DB) Ready(ctx context.Context) error {
	v, err := db.version(ctx, db.Read)
	if err != nil {
		return err
	}
	if want := SchemaVersion(); v != want {
		return fmt.Errorf("schema version %d, want %d", v, want)
	}
	return nil
}

// RescueRunningJobs makes jobs left running by a killed process available
// again at once. Only one process can hold the database file's lock, so a job
// still marked running at start belongs to a process that died.
func (db *DB) RescueRunningJobs(ctx context.Context) (int64, error) {
	res, err := db.Write.ExecContext(ctx,
		`UPDATE river_job SET state = 'available', scheduled_at = datetime('now', 'subsec') WHERE state = 'running'`)
	if err != nil {
		return 0, fmt.Errorf("rescue running jobs: %w", err)
	}
	return res.RowsAffected()
}

// ResolveHoldsNow makes every attempt still holding a seat due for
// resolution at once: as with RescueRunningJobs, at start they all belong to
// a process that died. serve then settles them at once, asking the payment
// provider about each.
func (db *DB) ResolveHoldsNow(ctx context.Context) (int64, error) {
	res, err := db.Write.ExecContext(ctx, `UPDATE seat_holds SET expires_at = ?`, formatTime(time.Now().Add(-time.Second)))
	if err != nil {
		return 0, fmt.Errorf("mark abandoned attempts: %w", err)
	}
	return res.RowsAffected()
}
