package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var restoreTime = time.Date(2026, 12, 3, 15, 4, 5, 0, time.UTC)

// dirState is every file of a directory with its content.
func dirState(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "registrar.db.lock" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = data
	}
	return m
}

func sameState(t *testing.T, before, after map[string][]byte) {
	t.Helper()
	for name, data := range after {
		if b, ok := before[name]; !ok {
			t.Errorf("%s was created", name)
		} else if !bytes.Equal(b, data) {
			t.Errorf("%s was changed", name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			t.Errorf("%s was removed", name)
		}
	}
}

// closedDB is a migrated database file in dir, closed, with one audit row.
func closedDB(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "registrar.db")
	if err := os.WriteFile(path, migratedTemplate(t), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// plainSQLite is a SQLite database that is not a registrar database.
func plainSQLite(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE notes (body TEXT)`); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBackupAndRestore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := closedDB(t, t.TempDir())
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Write.ExecContext(ctx, `INSERT INTO audit_log (at, actor, action, detail) VALUES ('2026-12-03T00:00:00.000000Z', 'a@example.org', 'test', 'before the backup')`); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	var info BackupInfo
	info, err = Backup(ctx, path, dst)
	if err != nil {
		t.Fatalf("Backup while the database is open: %v", err)
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != dst || info.Bytes != st.Size() || info.SchemaVersion != SchemaVersion() || info.Registrations != 0 {
		t.Errorf("Backup = %+v; want %s, %d bytes, version %d, 0 registrations", info, dst, st.Size(), SchemaVersion())
	}
	if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 1 {
		t.Errorf("backup directory holds %d files; want only the copy", len(entries))
	}
	if _, err := db.Write.ExecContext(ctx, `INSERT INTO audit_log (at, actor, action, detail) VALUES ('2026-12-03T00:00:01.000000Z', 'a@example.org', 'test', 'after the backup')`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	restored, err := Restore(ctx, dst, path, restoreTime, discardLog())
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	kept := path + ".before-restore-20261203T150405Z"
	if restored.Kept != kept || restored.BackupVersion != SchemaVersion() || restored.SchemaVersion != SchemaVersion() {
		t.Errorf("Restore = %+v; want the old file kept as %s, version %d", restored, kept, SchemaVersion())
	}
	details := func(p string) []string {
		t.Helper()
		d, err := Open(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		rows, err := d.Read.QueryContext(ctx, `SELECT detail FROM audit_log ORDER BY at`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	if got := details(path); !slices.Equal(got, []string{"before the backup"}) {
		t.Errorf("restored database holds %q; want only the row written before the backup", got)
	}
	if got := details(kept); !slices.Equal(got, []string{"before the backup", "after the backup"}) {
		t.Errorf("kept database holds %q; want both rows", got)
	}
}

func TestBackupRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) (db, dst string)
		want  string
	}{
		{"existing target", func(t *testing.T, dir string) (string, string) {
			return closedDB(t, dir), writeFile(t, filepath.Join(dir, "copy.db"), "keep me")
		}, "already exists: choose a new file name"},
		{"missing database", func(t *testing.T, dir string) (string, string) {
			return filepath.Join(dir, "registrar.db"), filepath.Join(dir, "copy.db")
		}, "does not exist"},
		{"not a database", func(t *testing.T, dir string) (string, string) {
			return writeFile(t, filepath.Join(dir, "registrar.db"), strings.Repeat("not sqlite\n", 100)), filepath.Join(dir, "copy.db")
		}, "is not a SQLite database"},
		{"not a registrar database", func(t *testing.T, dir string) (string, string) {
			return plainSQLite(t, filepath.Join(dir, "registrar.db")), filepath.Join(dir, "copy.db")
		}, "not a registrar database"},
		{"missing target directory", func(t *testing.T, dir string) (string, string) {
			return closedDB(t, dir), filepath.Join(dir, "nowhere", "copy.db")
		}, "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			db, dst := tc.setup(t, dir)
			before := dirState(t, dir)
			_, err := Backup(t.Context(), db, dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Backup error = %v; want it to say %q", err, tc.want)
			}
			sameState(t, before, dirState(t, dir))
		})
	}
}

func TestRestoreRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, db string) (backup string)
		want  string
	}{
		{"missing backup", func(t *testing.T, dir, db string) string {
			return filepath.Join(dir, "missing.db")
		}, "backup " + "%DIR%/missing.db does not exist"},
		{"a directory", func(t *testing.T, dir, db string) string {
			return dir
		}, "is not a regular file"},
		{"not a database", func(t *testing.T, dir, db string) string {
			return writeFile(t, filepath.Join(dir, "copy.db"), strings.Repeat("not sqlite\n", 100))
		}, "copy.db is not a SQLite database"},
		{"not a registrar database", func(t *testing.T, dir, db string) string {
			return plainSQLite(t, filepath.Join(dir, "copy.db"))
		}, "not a registrar database"},
		{"newer schema", func(t *testing.T, dir, db string) string {
			p := filepath.Join(dir, "copy.db")
			if err := os.WriteFile(p, migratedTemplate(t), 0o600); err != nil {
				t.Fatal(err)
			}
			d := openPlain(p)
			defer d.Close()
			if _, err := d.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future.sql', '2030-01-01T00:00:00.000000Z')`, SchemaVersion()+1); err != nil {
				t.Fatal(err)
			}
			return p
		}, "restore it with the newer registrar"},
		{"the database itself", func(t *testing.T, dir, db string) string {
			return db
		}, "is the database itself"},
		{"database in use", func(t *testing.T, dir, db string) string {
			d, err := Open(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			p := filepath.Join(dir, "copy.db")
			if err := os.WriteFile(p, migratedTemplate(t), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is in use by a running registrar: stop the service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dbDir, dir := t.TempDir(), t.TempDir()
			db := closedDB(t, dbDir)
			backup := tc.setup(t, dir, db)
			before, beforeBackup := dirState(t, dbDir), dirState(t, dir)
			_, err := Restore(t.Context(), backup, db, restoreTime, discardLog())
			want := strings.ReplaceAll(tc.want, "%DIR%", dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Restore error = %v; want it to say %q", err, want)
			}
			if tc.name != "database in use" { // the open database writes its own WAL
				sameState(t, before, dirState(t, dbDir))
			} else if _, err := os.Stat(db + ".before-restore-20261203T150405Z"); err == nil {
				t.Error("the database in use was moved aside")
			}
			sameState(t, beforeBackup, dirState(t, dir))
		})
	}
}
