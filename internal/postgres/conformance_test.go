package postgres

import (
	"testing"
	"time"

	"github.com/registrar/registrar/internal/storetest"
)

// TestConformance runs the storage conformance suite on PostgreSQL, each
// test in a schema of its own.
func TestConformance(t *testing.T) {
	t.Parallel()
	testURL(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) storetest.Env {
		db := openDB(t)
		s := NewStore(db)
		if now != nil {
			s.now = now
		}
		return storetest.Env{Store: s, DB: db.SQL, Bind: dollars, RiverTime: func(t time.Time) any { return t }}
	})
}
