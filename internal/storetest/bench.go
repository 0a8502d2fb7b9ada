package storetest

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
)

// The back office's benchmark runs on a store that an engine's seeder has
// filled with BenchRegistrations registrations in one statement, following
// this shape (each engine writes the statement in its own SQL):
//
//   - id "reg" and i zero-padded to seven digits, for i in 1..n;
//   - created at BenchStart plus i times BenchStep, so the newest is i = n;
//   - event testconf, ticket community when i is divisible by 3, else
//     standard;
//   - status needs_attention when i is divisible by 100, else cancelled
//     when divisible by 50, else completed;
//   - first name "Attendee", last name "Number" and i, email
//     "user" and i "@example.org", company "Company" and i mod 1000;
//   - payment provider test, reference "PAY-" and i.
const (
	BenchRegistrations = 100_000
	BenchStep          = 26 * time.Second
)

// BenchStart is when the first seeded registration was created.
var BenchStart = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

// BenchEventID is the event the seeded registrations belong to.
const BenchEventID = testEventID

// BenchmarkBackOffice measures the back office's reads on s, seeded as
// described above: the list's first page, searches, a filtered page, a
// page deep in the list, the dashboard, the operator metrics' reading, and
// the export's stream over every registration.
func BenchmarkBackOffice(b *testing.B, s Store) {
	ctx := context.Background()
	mid := BenchRegistrations / 2
	cases := []struct {
		name string
		f    admin.Filter
		want int // rows on the page
	}{
		{"FirstPage", admin.Filter{Limit: 50}, 50},
		{"SearchCommonName", admin.Filter{Query: "attendee", Limit: 50}, 50},
		{"SearchOneEmail", admin.Filter{Query: "user4242@example", Limit: 50}, 1},
		{"SearchNoMatch", admin.Filter{Query: "nobody-at-all", Limit: 50}, 0},
		{"SearchID", admin.Filter{Query: fmt.Sprintf("reg%07d", mid), Limit: 50}, 1},
		{"SearchReference", admin.Filter{Query: fmt.Sprintf("PAY-%d", mid), Limit: 50}, 1},
		{"StatusNeedsAttention", admin.Filter{Status: registration.StatusNeedsAttention, Limit: 50}, 50},
		{"TicketAndStatus", admin.Filter{Ticket: "community", Status: registration.StatusCompleted, Limit: 50}, 50},
		{"DateRange", admin.Filter{From: BenchStart.Add(time.Duration(mid) * BenchStep),
			To: BenchStart.Add(time.Duration(mid+10) * BenchStep), Limit: 50}, 10},
		{"DeepPage", admin.Filter{Limit: 50, After: admin.Cursor{CreatedAt: BenchStart.Add(time.Duration(mid) * BenchStep),
			ID: fmt.Sprintf("reg%07d", mid)}}, 50},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, err := s.SearchRegistrations(ctx, c.f)
				if err != nil {
					b.Fatal(err)
				}
				if len(page) != c.want {
					b.Fatalf("%d rows; want %d", len(page), c.want)
				}
			}
		})
	}
	b.Run("Dashboard", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d, err := s.Dashboard(ctx, BenchEventID, BenchStart)
			if err != nil {
				b.Fatal(err)
			}
			if d.Gross == 0 {
				b.Fatal("empty dashboard")
			}
		}
	})
	b.Run("OperatorStats", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			st, err := s.OperatorStats(ctx, BenchEventID)
			if err != nil {
				b.Fatal(err)
			}
			if st.Registrations["completed"] != BenchRegistrations*98/100 || st.Registrations["needs_attention"] != BenchRegistrations/100 {
				b.Fatalf("registrations %v", st.Registrations)
			}
		}
	})
	b.Run("EachRegistration", func(b *testing.B) {
		b.ReportAllocs()
		// The heap in use, sampled while streaming: it stays that of a page,
		// not of every registration.
		var peak uint64
		var ms runtime.MemStats
		for b.Loop() {
			n := 0
			if err := s.EachRegistration(ctx, admin.Filter{}, func(registration.Registration) error {
				n++
				if n%10_000 == 0 {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapAlloc)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if n != BenchRegistrations {
				b.Fatalf("%d registrations streamed; want %d", n, BenchRegistrations)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/BenchRegistrations, "ns/row")
		b.ReportMetric(float64(peak)/(1<<20), "MB-heap-peak")
	})
}
