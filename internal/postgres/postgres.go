// Package postgres stores registrar's data in PostgreSQL: the engine for
// running several stateless web and worker processes against one database.
// It mirrors package sqlite method for method; where PostgreSQL runs
// transactions concurrently, row locks keep the same guarantees SQLite gets
// from its single writer.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/registrar/registrar/internal/migration"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is an open registrar database.
type DB struct {
	// SQL is the pool every query and transaction uses, River's included, so
	// that a registration and its job commit in one transaction.
	SQL *sql.DB
	// Batch is the pool of the registration hot path's group-commit
	// batches (see NewStore), apart from SQL so that they never wait for a
	// connection behind River's workers and the pages; nil: they use SQL.
	Batch *sql.DB
	// Listener lends River the connections it LISTENs on.
	Listener *pgxpool.Pool
}

// batchConns is the size of the batches' pool: one connection for each lane
// that may run a batch at once.
const batchConns = startLanes + completeLanes + failLanes + stepLanes

// defaultMaxConns bounds the connections of one process unless the URL sets
// pool_max_conns.
const defaultMaxConns = 20

// defaultConnectTimeout applies unless the URL sets connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// Open connects to the database at url (postgres://... or a key=value
// connection string; pool_max_conns sets the size of the pool). Errors never
// contain the password.
func Open(ctx context.Context, url string) (*DB, error) {
	secrets := passwords(url)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, redact(fmt.Errorf("invalid PostgreSQL URL: %w", err), secrets)
	}
	secrets = append(secrets, cfg.ConnConfig.Password)
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// An unreachable server fails the start instead of hanging it.
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	maxConns := defaultMaxConns
	if strings.Contains(url, "pool_max_conns") {
		maxConns = int(cfg.MaxConns)
	}
	db := &DB{SQL: stdlib.OpenDB(*cfg.ConnConfig.Copy())}
	db.SQL.SetMaxOpenConns(maxConns)
	db.SQL.SetMaxIdleConns(maxConns)
	db.SQL.SetConnMaxIdleTime(5 * time.Minute)
	db.SQL.SetConnMaxLifetime(time.Hour)
	db.Batch = stdlib.OpenDB(*cfg.ConnConfig.Copy())
	db.Batch.SetMaxOpenConns(batchConns)
	db.Batch.SetMaxIdleConns(batchConns)
	db.Batch.SetConnMaxIdleTime(5 * time.Minute)
	db.Batch.SetConnMaxLifetime(time.Hour)
	listen := cfg.Copy()
	listen.MinConns, listen.MaxConns = 0, 2
	if db.Listener, err = pgxpool.NewWithConfig(ctx, listen); err != nil {
		db.Close()
		return nil, redact(fmt.Errorf("open PostgreSQL listener pool: %w", err), secrets)
	}
	if err := db.SQL.PingContext(ctx); err != nil {
		db.Close()
		return nil, redact(fmt.Errorf("connect to PostgreSQL: %w", err), secrets)
	}
	return db, nil
}

// Close closes the pools.
func (db *DB) Close() error {
	if db.Listener != nil {
		db.Listener.Close()
	}
	var err error
	if db.Batch != nil {
		err = db.Batch.Close()
	}
	if db.SQL != nil {
		err = errors.Join(err, db.SQL.Close())
	}
	return err
}

// RiverDriver returns River's driver on the database: queries and
// transactions through SQL (the *sql.Tx the store hands out), LISTEN/NOTIFY
// through Listener.
func (db *DB) RiverDriver() *riverdatabasesql.Driver {
	return riverdatabasesql.NewWithPgxListener(db.SQL, db.Listener)
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

// migrateLock is the first half of the advisory lock key Migrate holds; the
// second half is a hash of the schema, so that registrar databases in other
// schemas of the same database migrate independently.
const migrateLock = 0x72656769 // "regi"

// Migrate applies River's migrations and registrar's own, each in a
// transaction, holding an advisory lock throughout: of several processes
// starting at once one migrates, the others wait and then find nothing to
// do. A database migrated by a newer registrar is refused.
func (db *DB) Migrate(ctx context.Context, log *slog.Logger) error {
	conn, err := db.SQL.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	const key = `$1, hashtext(coalesce(current_schema(), ''))`
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(`+key+`)`, migrateLock); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	defer func() {
		_, uerr := conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+key+`)`, migrateLock)
		if uerr != nil {
			// Never hand a connection that may still hold the lock back to
			// the pool: closing it releases the lock.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer NOT NULL PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	ms, err := migrations()
	if err != nil {
		return err
	}
	current, err := version(ctx, conn)
	if err != nil {
		return err
	}
	if latest := migration.Latest(ms); current > latest {
		return fmt.Errorf("database schema is version %d but this registrar knows only up to %d: run the newer registrar, or restore a backup made for this version", current, latest)
	}
	migrator, err := rivermigrate.New(riverdatabasesql.New(db.SQL), &rivermigrate.Config{Logger: log})
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
		if err := apply(ctx, conn, m); err != nil {
			return err
		}
		log.Info("applied migration", "version", m.Version, "name", m.Name)
	}
	return nil
}

func apply(ctx context.Context, conn *sql.Conn, m migration.Migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.Version, m.Name, time.Now().UTC()); err != nil {
		return fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func version(ctx context.Context, q queryer) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// Ready reports whether the database answers and its schema is current.
func (db *DB) Ready(ctx context.Context) error {
	v, err := version(ctx, db.SQL)
	if err != nil {
		return err
	}
	if want := SchemaVersion(); v != want {
		return fmt.Errorf("schema version %d, want %d", v, want)
	}
	return nil
}

// passwords finds what may be the password in a connection string, in the
// forms an error message might quote it, even when the string does not parse.
func passwords(conn string) []string {
	var out []string
	if u, err := url.Parse(conn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	if m := urlPassword.FindStringSubmatch(conn); m != nil {
		out = append(out, m[1])
		if p, err := url.PathUnescape(m[1]); err == nil {
			out = append(out, p)
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(conn, -1) {
		out = append(out, strings.Trim(m[1], "'"))
	}
	return out
}

var (
	urlPassword = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:(.+)@[^@]*$`)
	kvPassword  = regexp.MustCompile(`password\s*=\s*('[^']*'|\S+)`)
)

// redactedError hides secrets in the text of the error it wraps.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, secrets []string) error {
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}
