package main

import (
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// apiAnswer posts a registration and returns the status and the error body.
func apiAnswer(t *testing.T, base, body, key string) (int, errorAnswer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/registrations", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var a errorAnswer
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatalf("error body %q: %v", data, err)
		}
	}
	return resp.StatusCode, a
}

type errorAnswer struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Retryable bool   `json:"retryable"`
	} `json:"error"`
}

// engines are the databases the PayPal failure tests run on: SQLite in a
// directory, and PostgreSQL when TEST_DATABASE_URL is set.
var engines = []string{"sqlite", "postgres"}

// useEngine points e at a fresh database of the engine; it returns where
// seatsHeld reads.
func useEngine(t *testing.T, e env, engine, dir string) string {
	t.Helper()
	if engine == "postgres" {
		u := postgresURL(t)
		e["REGISTRAR_DATABASE_URL"] = u
		return u
	}
	return dir
}

// seatsHeld reads the ticket's taken count and its held seats, from the
// SQLite file in a directory or the PostgreSQL database at a URL.
func seatsHeld(t *testing.T, where string) (taken, holds int) {
	t.Helper()
	db := openWhere(t, where)
	defer db.Close()
	if err := db.QueryRow(`SELECT taken FROM ticket_stock WHERE ticket_id = 'standard'`).Scan(&taken); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM seat_holds`).Scan(&holds); err != nil {
		t.Fatal(err)
	}
	return taken, holds
}

// openWhere opens the database useEngine returned: the SQLite file in a
// directory, or the PostgreSQL database at a URL.
func openWhere(t *testing.T, where string) *sql.DB {
	t.Helper()
	if strings.HasPrefix(where, "postgres") {
		db, err := sql.Open("pgx", where)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	return openDB(t, filepath.Join(where, "registrar.db"))
}

// When PayPal certainly charged nothing — its token refused, its address
// refused, the order refused before charging — the answer is 502 "nothing
// was charged" and the seat and the key are free again at once, not held
// for hours until PayPal answers.
func TestPayPalCertainlyNotCharged(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	cases := []struct {
		name  string
		setup func(e env, f fakes)
		// later succeeds: the same key goes through once PayPal accepts.
		later bool
	}{
		{"token refused", func(e env, f fakes) { e["PAYPAL_CLIENT_SECRET"] = "not-the-secret" }, false},
		{"connection refused", func(e env, f fakes) { e["PAYPAL_API_BASE"] = closed }, false},
		{"order refused before charging", func(e env, f fakes) { f.paypal.FailNext(1, http.StatusForbidden) }, true},
	}
	for _, engine := range engines {
		for _, tc := range cases {
			t.Run(engine+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				e, f := providerEnv(t, dir, "outbox")
				e["REGISTRAR_MAILING_LIST"] = "local"
				dir = useEngine(t, e, engine, dir)
				tc.setup(e, f)
				s := startRun(t, e)
				defer s.stop(t)

				requestsBefore := f.paypal.Requests()
				code, a := apiAnswer(t, s.url, paypalBody(1, false, "Ada Lovelace"), "k-not-charged")
				if code != http.StatusBadGateway || a.Error.Code != "payment_unavailable" || !strings.Contains(a.Error.Message, "Nothing was charged") {
					t.Fatalf("answer %d %+v; want 502 payment_unavailable, nothing was charged", code, a.Error)
				}
				if taken, holds := seatsHeld(t, dir); taken != 0 || holds != 0 {
					t.Errorf("right after the answer: taken %d, held %d; want the seat back at once", taken, holds)
				}
				if f.paypal.Captures() != 0 {
					t.Errorf("%d captures", f.paypal.Captures())
				}
				if tc.later {
					// PayPal was not asked again whether the refused order charged.
					if n := f.paypal.Requests() - requestsBefore; n != 2 {
						t.Errorf("PayPal saw %d requests (token and order); want 2, no resolve", n)
					}
					code, c, err := post(http.DefaultClient, s.url, paypalBody(1, false, "Ada Lovelace"), "k-not-charged")
					if err != nil || code != http.StatusAccepted {
						t.Fatalf("the same key once PayPal accepts: %d %v; want 202", code, err)
					}
					waitCompleted(t, s.url, []string{c.ID}, 60*time.Second)
					if f.paypal.CapturesFor(c.ID) != 1 {
						t.Errorf("captures for %s = %d; want 1", c.ID, f.paypal.CapturesFor(c.ID))
					}
					return
				}
				// The key is not left in progress: the same request answers the
				// same way again instead of 409 idempotency_in_progress.
				if code, a := apiAnswer(t, s.url, paypalBody(1, false, "Ada Lovelace"), "k-not-charged"); code != http.StatusBadGateway {
					t.Errorf("the same key again: %d %+v; want 502 again", code, a.Error)
				}
				if taken, holds := seatsHeld(t, dir); taken != 0 || holds != 0 {
					t.Errorf("after the retry: taken %d, held %d; want 0 and 0", taken, holds)
				}
			})
		}
	}
}
