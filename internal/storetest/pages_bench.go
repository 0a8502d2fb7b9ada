package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/registration"
)

// BenchmarkBackOfficePages measures the back office's pages as an organiser
// gets them, through its HTTP handler (session check, query, template), on
// s seeded as BenchmarkBackOffice describes: each page's median and 99th
// percentile, and the CSV export of every registration with the heap it
// needed while streaming.
func BenchmarkBackOfficePages(b *testing.B, s Store) {
	ctx := context.Background()
	ev := testEvent(BenchRegistrations)
	acct, err := s.CreateAccount(ctx, admin.Account{Email: "owner@example.org", PasswordHash: "$argon2id$unused", Role: admin.RoleOwner, CreatedAt: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	const token = "benchmark-session-token-0123456789abcdefghijk"
	sum := sha256.Sum256([]byte(token))
	now := time.Now()
	if err := s.CreateSession(ctx, admin.Session{TokenHash: hex.EncodeToString(sum[:]), AccountID: acct.ID,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(24 * time.Hour)}); err != nil {
		b.Fatal(err)
	}
	h, err := admin.New(admin.Deps{Store: s, Actions: noActions{}, Preview: noActions{}, Event: ev,
		IdleTimeout: 24 * time.Hour, Lifetime: 48 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	get := func(path string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.AddCookie(&http.Cookie{Name: admin.CookieName, Value: token})
		return r
	}
	midID := fmt.Sprintf("reg%07d", BenchRegistrations/2)
	pages := []struct{ name, path, want string }{
		{"List", "/admin/registrations", "reg0100000"},
		{"SearchOneEmail", "/admin/registrations?q=user4242%40example.org", "reg0004242"},
		{"SearchName", "/admin/registrations?q=number9999", "reg0099999"},
		{"SearchID", "/admin/registrations?q=" + midID, midID},
		{"SearchNoMatch", "/admin/registrations?q=nobody-at-all", "No registrations"},
		{"Status", "/admin/registrations?status=needs_attention", "reg0100000"},
		{"TicketStatusDates", "/admin/registrations?ticket=community&status=completed&from=2027-01-05&to=2027-01-20", "community"},
		{"Detail", "/admin/registrations/" + midID, "Attendee"},
		{"Dashboard", "/admin", "Dashboard"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, get(p.path))
				took = append(took, time.Since(start))
				if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(p.want)) {
					b.Fatalf("GET %s: %d, want 200 with %q:\n%.2000s", p.path, w.Code, p.want, w.Body)
				}
			}
			slices.Sort(took)
			b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
			b.ReportMetric(ms(took[min(len(took)-1, len(took)*99/100)]), "p99-ms")
		})
	}
	b.Run("ExportCSV", func(b *testing.B) {
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() { // the heap in use while streaming, sampled every 20 ms
			defer close(sampled)
			var m runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					runtime.ReadMemStats(&m)
					if m.HeapAlloc > peak.Load() {
						peak.Store(m.HeapAlloc)
					}
				}
			}
		}()
		for b.Loop() {
			w := &countingWriter{header: http.Header{}}
			h.ServeHTTP(w, get("/admin/export/registrations.csv"))
			if w.code != http.StatusOK || w.lines != BenchRegistrations+1 {
				b.Fatalf("export: %d with %d lines, want 200 with a header and %d rows", w.code, w.lines, BenchRegistrations)
			}
		}
		close(stop)
		<-sampled
		b.ReportMetric(float64(peak.Load())/(1<<20), "MB-heap-peak")
	})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// countingWriter is a response writer that keeps nothing but the status
// and the number of lines, as a client saving the file to disk would.
type countingWriter struct {
	header http.Header
	code   int
	lines  int
}

func (w *countingWriter) Header() http.Header { return w.header }
func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *countingWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.lines += bytes.Count(p, []byte("\n"))
	return len(p), nil
}
func (w *countingWriter) Flush() {}

// noActions stands in for the actions and previews the benchmarked pages
// never call.
type noActions struct{}

func (noActions) Retry(context.Context, admin.Actor, string) error                  { return nil }
func (noActions) Resend(context.Context, admin.Actor, string, string, string) error { return nil }
func (noActions) Edit(context.Context, admin.Actor, string, registration.AttendeeEdit) error {
	return nil
}
func (noActions) Cancel(context.Context, admin.Actor, string, admin.Cancellation) error { return nil }
func (noActions) Refund(context.Context, admin.Actor, string, int64, string, string) error {
	return nil
}
func (noActions) Erase(context.Context, admin.Actor, string) error { return nil }
func (noActions) Preview(context.Context, registration.Registration, registration.Message) (email.Message, error) {
	return email.Message{}, nil
}
