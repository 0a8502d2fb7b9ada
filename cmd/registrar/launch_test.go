package main

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLaunch is the launch-day scenario at a small scale: 1,000 attempts in
// a burst for 50 seats, every client retrying up to 3 times with its own
// Idempotency-Key on errors, against real PayPal/SendGrid/Mailchimp fakes.
// Exactly 50 are paid, the rest sold out; nothing is charged twice, nothing
// oversold, no 5xx, and every 202 completes. It runs on SQLite, and on
// PostgreSQL when TEST_DATABASE_URL is set.
func TestLaunch(t *testing.T) {
	t.Parallel()
	engines := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "" },
		"postgres": postgresURL,
	}
	for name, dbURL := range engines {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := dbURL(t)
			dir := t.TempDir()
			e, f := providerEnv(t, dir, "sendgrid")
			if url != "" {
				e["REGISTRAR_DATABASE_URL"] = url
			}
			const attempts, seats = 1000, 50
			e["REGISTRAR_EVENT_FILE"] = eventFile(t, dir, 10, seats)
			s := startRun(t, e)
			defer s.stop(t)

			client := &http.Client{
				Timeout:   30 * time.Second,
				Transport: &http.Transport{MaxIdleConnsPerHost: 200, DialContext: (&net.Dialer{}).DialContext},
			}
			var accepted, soldOut, other, fivexx atomic.Int32
			var mu sync.Mutex
			var ids []string
			var wg sync.WaitGroup
			sem := make(chan struct{}, 200)
			start := time.Now()
			for i := range attempts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					body, key := ticketBody(10000+i, "limited", false), fmt.Sprintf("launch-%d", i)
					for try := 0; try < 3; try++ {
						code, c, err := post(client, s.url, body, key)
						switch {
						case err != nil:
							continue
						case code == http.StatusAccepted:
							accepted.Add(1)
							mu.Lock()
							ids = append(ids, c.ID)
							mu.Unlock()
							return
						case code == http.StatusConflict:
							soldOut.Add(1) // sold_out: each key is sent by one client at a time, so never in progress
							return
						case code >= 500:
							fivexx.Add(1)
							continue
						default:
							other.Add(1)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			if accepted.Load() != seats || soldOut.Load() != attempts-seats || other.Load() != 0 || fivexx.Load() != 0 {
				t.Errorf("accepted %d, sold out %d, other %d, 5xx %d; want %d, %d, 0, 0",
					accepted.Load(), soldOut.Load(), other.Load(), fivexx.Load(), seats, attempts-seats)
			}
			if got := f.paypal.Captures(); got != seats {
				t.Errorf("%d captures for %d seats", got, seats)
			}
			for _, id := range ids {
				if n := f.paypal.CapturesFor(id); n != 1 {
					t.Errorf("registration %s captured %d times", id, n)
				}
			}
			waitCompleted(t, s.url, ids, 90*time.Second)
			t.Logf("%s: %d attempts in %s (%.0f/s): %d paid, %d sold out",
				name, attempts, elapsed.Round(time.Millisecond), float64(attempts)/elapsed.Seconds(), accepted.Load(), soldOut.Load())
		})
	}
}
