package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	modernc "modernc.org/sqlite"
)

// BackupInfo describes a copy of a database.
type BackupInfo struct {
	Path          string
	Bytes         int64
	SchemaVersion int
	Registrations int64
}

// Backup writes a consistent copy of the database at dbPath to dst with
// VACUUM INTO, while a registrar may be serving from it: the copy is the
// database as of one transaction, the WAL's committed pages included. It
// never overwrites dst: the copy is written to a temporary file beside it,
// checked (integrity_check), synced and then linked into place.
func Backup(ctx context.Context, dbPath, dst string) (BackupInfo, error) {
	if _, err := os.Lstat(dst); err == nil {
		return BackupInfo{}, fmt.Errorf("%s already exists: choose a new file name; a backup never overwrites a file", dst)
	}
	if err := isFile(dbPath, "database"); err != nil {
		return BackupInfo{}, fmt.Errorf("%w: check REGISTRAR_DATABASE_URL", err)
	}
	src := openPlain(dbPath)
	defer src.Close()
	if _, err := registrarVersion(ctx, src, dbPath); err != nil {
		return BackupInfo{}, err
	}

	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer removeDB(tmpPath) // gone once linked into place
	// VACUUM INTO writes into an empty file: the one just created.
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, tmpPath); err != nil {
		return BackupInfo{}, fmt.Errorf("backup of %s: %w", dbPath, err)
	}
	info, err := check(ctx, tmpPath, tmpPath)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup of %s: the copy fails its check: %w", dbPath, err)
	}
	if err := syncFile(tmpPath); err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	// A link, unlike a rename, fails if dst appeared in the meantime.
	if err := os.Link(tmpPath, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return BackupInfo{}, fmt.Errorf("%s already exists: choose a new file name; a backup never overwrites a file", dst)
		}
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	st, err := os.Stat(dst)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	info.Path, info.Bytes = dst, st.Size()
	return info, nil
}

// RestoreInfo describes a restored database.
type RestoreInfo struct {
	// Kept is where the database that was in place now is; "" if there
	// was none.
	Kept string
	// BackupVersion is the schema version of the backup, SchemaVersion
	// the one after migrating.
	BackupVersion, SchemaVersion int
	Registrations                int64
}

// Restore puts the backup at src in place of the database at dbPath. It is
// refused while a registrar uses the database (its process lock is taken
// for the whole restore, so none can start meanwhile either), and unless
// src is a registrar database that passes integrity_check and is of a
// schema version this registrar knows. The database in place is kept as
// dbPath.before-restore-TIMESTAMP, never deleted; the restored one is then
// migrated to this registrar's version. On a refusal nothing changes.
func Restore(ctx context.Context, src, dbPath string, now time.Time, log *slog.Logger) (RestoreInfo, error) {
	if err := isFile(src, "backup"); err != nil {
		return RestoreInfo{}, err
	}
	if st, err := os.Stat(dbPath); err == nil {
		if sst, err := os.Stat(src); err == nil && os.SameFile(st, sst) {
			return RestoreInfo{}, fmt.Errorf("%s is the database itself: restore a copy made by registrar backup", src)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o750); err != nil {
		return RestoreInfo{}, fmt.Errorf("create database directory: %w", err)
	}
	lock, err := lockFile(dbPath + ".lock")
	if err != nil {
		var inUse *inUseError
		if errors.As(err, &inUse) {
			return RestoreInfo{}, fmt.Errorf("database %s is in use by a running registrar: stop the service, then restore", dbPath)
		}
		return RestoreInfo{}, err
	}
	unlock := true
	defer func() {
		if unlock {
			lock.Close()
		}
	}()

	// The backup is copied beside the database and checked there: what is
	// checked is what is put in place, and the backup itself is only read.
	tmpPath, err := copyBeside(src, dbPath)
	if err != nil {
		return RestoreInfo{}, err
	}
	defer removeDB(tmpPath) // gone once renamed into place
	checked, err := check(ctx, tmpPath, src)
	if err != nil {
		return RestoreInfo{}, err
	}

	var info RestoreInfo
	info.BackupVersion = checked.SchemaVersion
	if _, err := os.Lstat(dbPath); err == nil {
		info.Kept = dbPath + ".before-restore-" + now.UTC().Format("20060102T150405Z")
		if err := keep(ctx, dbPath, info.Kept); err != nil {
			return RestoreInfo{}, err
		}
	}
	if err := os.Rename(tmpPath, dbPath); err != nil {
		if info.Kept != "" {
			if berr := moveDB(info.Kept, dbPath); berr != nil {
				return RestoreInfo{}, fmt.Errorf("restore: %w; the previous database is at %s", err, info.Kept)
			}
		}
		return RestoreInfo{}, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(dbPath)); err != nil {
		return RestoreInfo{}, fmt.Errorf("restore: %w", err)
	}

	unlock = false // the DB holds the lock now, and releases it on Close
	db, err := openLocked(ctx, dbPath, lock)
	if err != nil {
		return info, err
	}
	defer db.Close()
	if err := db.Migrate(ctx, log); err != nil {
		return info, fmt.Errorf("restored %s but could not migrate it: %w", dbPath, err)
	}
	if info.SchemaVersion, err = db.version(ctx, db.Write); err != nil {
		return info, err
	}
	if err := db.Write.QueryRowContext(ctx, `SELECT count(*) FROM registrations`).Scan(&info.Registrations); err != nil {
		return info, fmt.Errorf("count registrations: %w", err)
	}
	return info, db.Close()
}

// isFile checks that path is an existing regular file.
func isFile(path, what string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s does not exist", what, path)
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s %s is not a regular file", what, path)
	}
	return nil
}

// openPlain opens a database file without registrar's process lock or
// pragmas, on one connection; it never creates the file.
func openPlain(path string) *sql.DB {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("mode", "rw")
	db := sql.OpenDB(connector{driver: &modernc.Driver{}, dsn: fileURI(path, q)})
	db.SetMaxOpenConns(1)
	return db
}

// registrarVersion reads the schema version of a registrar database, which
// name describes in errors.
func registrarVersion(ctx context.Context, db *sql.DB, name string) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n)
	if err != nil {
		if strings.Contains(err.Error(), "not a database") {
			return 0, fmt.Errorf("%s is not a SQLite database", name)
		}
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	var v sql.NullInt64
	if n == 1 {
		if err := db.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
			return 0, fmt.Errorf("read the schema version of %s: %w", name, err)
		}
	}
	if v.Int64 < 1 {
		return 0, fmt.Errorf("%s is a SQLite database but not a registrar database (no schema version)", name)
	}
	return int(v.Int64), nil
}

// check opens the database file at path (which name describes in errors)
// and checks it is a sound registrar database this registrar knows.
func check(ctx context.Context, path, name string) (BackupInfo, error) {
	db := openPlain(path)
	defer db.Close()
	v, err := registrarVersion(ctx, db, name)
	if err != nil {
		return BackupInfo{}, err
	}
	if latest := SchemaVersion(); v > latest {
		return BackupInfo{}, fmt.Errorf("%s is of schema version %d but this registrar knows only up to %d: restore it with the newer registrar", name, v, latest)
	}
	var result string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check(1)`).Scan(&result); err != nil {
		return BackupInfo{}, fmt.Errorf("integrity check of %s: %w", name, err)
	}
	if result != "ok" {
		return BackupInfo{}, fmt.Errorf("%s fails its integrity check (%s): use another copy", name, result)
	}
	info := BackupInfo{SchemaVersion: v}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM registrations`).Scan(&info.Registrations); err != nil {
		return BackupInfo{}, fmt.Errorf("count registrations in %s: %w", name, err)
	}
	return info, db.Close()
}

// copyBeside copies src to a new temporary file in dbPath's directory,
// synced, and returns its path.
func copyBeside(src, dbPath string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dbPath), "."+filepath.Base(dbPath)+".restore-*")
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", fmt.Errorf("restore: copy %s: %w", src, err)
	}
	return out.Name(), nil
}

// keep moves the database at dbPath to kept. Its WAL is checkpointed
// first, so that kept is whole by itself; a WAL that remains (the database
// could not be opened) moves with it, as SQLite names it.
func keep(ctx context.Context, dbPath, kept string) error {
	if _, err := os.Lstat(kept); err == nil {
		return fmt.Errorf("%s already exists: wait a second and restore again", kept)
	}
	db := openPlain(dbPath)
	db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	db.Close()
	if err := moveDB(dbPath, kept); err != nil {
		return fmt.Errorf("restore: keep the database in place: %w", err)
	}
	return nil
}

// moveDB renames a database file and its -wal and -shm files, if any.
func moveDB(from, to string) error {
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Rename(from+suffix, to+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Rename(from, to)
}

// removeDB removes a database file and its -wal and -shm files.
func removeDB(path string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
