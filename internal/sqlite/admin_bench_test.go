package sqlite

import (
	"context"
	"testing"

	"github.com/registrar/registrar/internal/storetest"
)

// BenchmarkBackOffice measures the back office's reads on 100,000
// registrations:
//
//	go test -run '^$' -bench BackOffice -benchmem ./internal/sqlite/
func BenchmarkBackOffice(b *testing.B) {
	db, _ := openDB(b)
	s := NewStore(db)
	seedRegistrations(b, db, storetest.BenchRegistrations)
	storetest.BenchmarkBackOffice(b, s)
}

// BenchmarkBackOfficePages measures the back office's pages and CSV export
// over 100,000 registrations:
//
//	go test -run '^$' -bench BackOfficePages ./internal/sqlite/
func BenchmarkBackOfficePages(b *testing.B) {
	db, _ := openDB(b)
	s := NewStore(db)
	seedRegistrations(b, db, storetest.BenchRegistrations)
	storetest.BenchmarkBackOfficePages(b, s)
}

// seedRegistrations stores n registrations shaped as the benchmark expects,
// with one statement.
func seedRegistrations(b *testing.B, db *DB, n int) {
	b.Helper()
	ctx := context.Background()
	start := storetest.BenchStart.Unix()
	step := int64(storetest.BenchStep.Seconds())
	if _, err := db.Write.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
		INSERT INTO registrations (id, event_id, ticket_id, status, amount, currency, first_name, last_name, email, company,
			newsletter, payment_provider, payment_reference, card_brand, card_last4, search, created_at, updated_at)
		SELECT printf('reg%07d', i), ?, CASE WHEN i % 3 = 0 THEN 'community' ELSE 'standard' END,
			CASE WHEN i % 100 = 0 THEN 'needs_attention' WHEN i % 50 = 0 THEN 'cancelled' ELSE 'completed' END,
			CASE WHEN i % 3 = 0 THEN 0 ELSE 14900 END, 'EUR', 'Attendee', 'Number' || i, 'user' || i || '@example.org',
			'Company' || (i % 1000), 0, 'test', 'PAY-' || i, 'visa', '1111',
			'attendee number' || i || char(31) || 'user' || i || '@example.org' || char(31) || 'company' || (i % 1000),
			strftime('%Y-%m-%dT%H:%M:%S.000000Z', ? + i * ?, 'unixepoch'),
			strftime('%Y-%m-%dT%H:%M:%S.000000Z', ? + i * ?, 'unixepoch')
		FROM seq`, n, storetest.BenchEventID, start, step, start, step); err != nil {
		b.Fatalf("seed registrations: %v", err)
	}
	if _, err := db.Write.ExecContext(ctx, `INSERT INTO ticket_stock (event_id, ticket_id, capacity, taken)
		VALUES (?, 'standard', 100000, 66667), (?, 'community', 100000, 33333)`, storetest.BenchEventID, storetest.BenchEventID); err != nil {
		b.Fatalf("seed stock: %v", err)
	}
	if _, err := db.Write.ExecContext(ctx, `ANALYZE`); err != nil {
		b.Fatalf("analyze: %v", err)
	}
}
