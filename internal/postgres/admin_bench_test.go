package postgres

import (
	"context"
	"testing"

	"github.com/registrar/registrar/internal/storetest"
)

// BenchmarkBackOffice measures the back office's reads on 100,000
// registrations:
//
//	TEST_DATABASE_URL=postgres://... go test -run '^$' -bench BackOffice -benchmem ./internal/postgres/
func BenchmarkBackOffice(b *testing.B) {
	db := openDB(b)
	s := NewStore(db)
	seedRegistrations(b, db, storetest.BenchRegistrations)
	storetest.BenchmarkBackOffice(b, s)
}

// BenchmarkBackOfficePages measures the back office's pages and CSV export
// over 100,000 registrations:
//
//	go test -run '^$' -bench BackOfficePages ./internal/postgres/
func BenchmarkBackOfficePages(b *testing.B) {
	db := openDB(b)
	s := NewStore(db)
	seedRegistrations(b, db, storetest.BenchRegistrations)
	storetest.BenchmarkBackOfficePages(b, s)
}

// seedRegistrations stores n registrations shaped as the benchmark expects,
// with one statement.
func seedRegistrations(b *testing.B, db *DB, n int) {
	b.Helper()
	ctx := context.Background()
	if _, err := db.SQL.ExecContext(ctx, `INSERT INTO registrations (id, event_id, ticket_id, status, amount, currency,
			first_name, last_name, email, company, newsletter, payment_provider, payment_reference, card_brand, card_last4,
			search, created_at, updated_at)
		SELECT 'reg' || lpad(i::text, 7, '0'), $2, CASE WHEN i % 3 = 0 THEN 'community' ELSE 'standard' END,
			CASE WHEN i % 100 = 0 THEN 'needs_attention' WHEN i % 50 = 0 THEN 'cancelled' ELSE 'completed' END,
			CASE WHEN i % 3 = 0 THEN 0 ELSE 14900 END, 'EUR', 'Attendee', 'Number' || i, 'user' || i || '@example.org',
			'Company' || (i % 1000), false, 'test', 'PAY-' || i, 'visa', '1111',
			'attendee number' || i || chr(31) || 'user' || i || '@example.org' || chr(31) || 'company' || (i % 1000),
			$3::timestamptz + i * $4::interval, $3::timestamptz + i * $4::interval
		FROM generate_series(1, $1) AS i`, n, storetest.BenchEventID, storetest.BenchStart,
		storetest.BenchStep.String()); err != nil {
		b.Fatalf("seed registrations: %v", err)
	}
	if _, err := db.SQL.ExecContext(ctx, `INSERT INTO ticket_stock (event_id, ticket_id, capacity, taken)
		VALUES ($1, 'standard', 100000, 66667), ($1, 'community', 100000, 33333)`, storetest.BenchEventID); err != nil {
		b.Fatalf("seed stock: %v", err)
	}
	if _, err := db.SQL.ExecContext(ctx, `VACUUM ANALYZE registrations`); err != nil {
		b.Fatalf("vacuum: %v", err)
	}
}
