package sqlite

import (
	"testing"
	"time"

	"github.com/registrar/registrar/internal/storetest"
)

// TestConformance runs the storage conformance suite on SQLite.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, now func() time.Time) storetest.Env {
		db, _ := openDB(t)
		s := NewStore(db)
		if now != nil {
			s.now = now
		}
		// The writer: the suite also writes, and it sees every commit.
		return storetest.Env{Store: s, DB: db.Write, Bind: func(q string) string { return q },
			RiverTime: func(t time.Time) any { return t.UTC().Format("2006-01-02 15:04:05.000") }}
	})
}
