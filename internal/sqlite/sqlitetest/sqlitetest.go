// Package sqlitetest gives other packages' tests a migrated SQLite database
// quickly: migrating from scratch is slow under the race detector, so the
// migrated file is built once per test binary and copied.
package sqlitetest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/sqlite"
)

// Template is a migrated database built on first use.
type Template struct {
	once sync.Once
	data []byte
	err  error
}

// Bytes returns the content of a freshly migrated database file.
func (tp *Template) Bytes(t testing.TB) []byte {
	t.Helper()
	tp.once.Do(func() { tp.data, tp.err = build() })
	if tp.err != nil {
		t.Fatalf("migrated template database: %v", tp.err)
	}
	return tp.data
}

// Open copies the template into a file of the test's own, opens it, and
// returns it with a store whose stock follows ev; both are closed when the
// test ends.
func (tp *Template) Open(t testing.TB, ev *event.Event) (*sqlite.DB, *sqlite.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registrar.db")
	if err := os.WriteFile(path, tp.Bytes(t), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	store := sqlite.NewStore(db)
	if err := store.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	return db, store
}

func build() ([]byte, error) {
	dir, err := os.MkdirTemp("", "registrar-template-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "template.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		return nil, err
	}
	err = db.Migrate(context.Background(), slog.New(slog.DiscardHandler))
	// Closing the last connection checkpoints the WAL into the file.
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}
