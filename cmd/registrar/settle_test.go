package main

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// TestStartSettlesDeadHolds: on SQLite a process that died mid-charge
// leaves its attempt holding the last seat, with its idempotency key in
// progress. The next start asks the provider before it listens (the test
// processor, restarted, knows no charge: nothing was taken), so the very
// first request, the dead attempt's own retry, takes the seat instead of
// being told the ticket is sold out or its key in progress.
func TestStartSettlesDeadHolds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := baseEnv(dir)
	e["REGISTRAR_EVENT_FILE"] = eventFile(t, dir, 10, 1)
	// A first run creates the database and the ticket stock.
	startRun(t, e).stop(t)

	body := registrationBody(1, "limited", false, "4111111111111111")
	var req registration.Request
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Fatal(err)
	}
	req.Normalize()
	id, err := registration.NewID()
	if err != nil {
		t.Fatal(err)
	}
	// What a process killed during the charge leaves: the seat taken, the
	// hold with its draft, not yet due by its own clock, and the key in
	// progress.
	created := time.Now().UTC()
	draft, err := json.Marshal(registration.Registration{ID: id, EventID: "scaleconf-2027", TicketID: "limited",
		Status: registration.StatusPaid, Amount: 9900, Currency: "EUR", FirstName: req.Attendee.FirstName,
		LastName: req.Attendee.LastName, Email: req.Attendee.Email, CreatedAt: created, UpdatedAt: created,
		Steps: []registration.Step{{Name: registration.StepSaveOrder, Status: registration.StepPending},
			{Name: registration.StepSendConfirmation, Status: registration.StepPending},
			{Name: registration.StepAddToMailingList, Status: registration.StepSkipped}}})
	if err != nil {
		t.Fatal(err)
	}
	const layout = "2006-01-02T15:04:05.000000Z"
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "registrar.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		query string
		args  []any
	}{
		{`UPDATE ticket_stock SET taken = taken + 1 WHERE event_id = 'scaleconf-2027' AND ticket_id = 'limited' AND taken < capacity`, nil},
		{`INSERT INTO idempotency_keys (key, request_hash, attempt_id, state, created_at, updated_at)
			VALUES ('dead-key', ?, ?, 'in_progress', ?, ?)`, []any{req.Hash(), id, created.Format(layout), created.Format(layout)}},
		{`INSERT INTO seat_holds (id, event_id, ticket_id, idempotency_key, email, created_at, expires_at, draft)
			VALUES (?, 'scaleconf-2027', 'limited', 'dead-key', ?, ?, ?, ?)`,
			[]any{id, strings.ToLower(req.Attendee.Email), created.Format(layout), created.Add(90 * time.Second).Format(layout), string(draft)}},
	} {
		res, err := db.Exec(q.query, q.args...)
		if err != nil {
			t.Fatalf("%s: %v", q.query, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("%s: %d rows; want 1", q.query, n)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := startRun(t, e)
	defer s.stop(t)
	// The first request after the listener opened.
	code, c, err := post(http.DefaultClient, s.url, body, "dead-key")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("the dead attempt's retry, first request after the start: %d, %v; want 202\nlogs:\n%s", code, err, s.logs)
	}
	if c.ID == id {
		t.Errorf("the retry got the dead attempt's id %s; want a new attempt (nothing was charged)", id)
	}
	logs := s.logs.String()
	settled := strings.Index(logs, "settled payment attempts left by a stopped process before serving")
	listening := strings.Index(logs, "msg=listening")
	if settled < 0 || listening < 0 || settled > listening {
		t.Errorf("settled at %d, listening at %d in the logs; want settled first\n%s", settled, listening, logs)
	}
	waitCompleted(t, s.url, []string{c.ID}, 60*time.Second)

	ro := openDB(t, filepath.Join(dir, "registrar.db"))
	defer ro.Close()
	var incidents, holds, taken int
	if err := ro.QueryRow(`SELECT count(*) FROM payment_incidents WHERE attempt_id = ? AND kind = 'resolved_not_charged'`, id).Scan(&incidents); err != nil {
		t.Fatal(err)
	}
	if err := ro.QueryRow(`SELECT count(*) FROM seat_holds`).Scan(&holds); err != nil {
		t.Fatal(err)
	}
	if err := ro.QueryRow(`SELECT taken FROM ticket_stock WHERE ticket_id = 'limited'`).Scan(&taken); err != nil {
		t.Fatal(err)
	}
	if incidents != 1 || holds != 0 || taken != 1 {
		t.Errorf("incidents %d, holds %d, taken %d; want 1 resolved_not_charged, 0, 1 (the retry's registration)", incidents, holds, taken)
	}
}
