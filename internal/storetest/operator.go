package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/metrics"
	"github.com/registrar/registrar/internal/registration"
)

// insertJob writes one row of River's job table as River would: a job of
// queue in state, scheduled at at (finished states carry finalized_at).
func (e Env) insertJob(t *testing.T, queue, state string, at time.Time) {
	t.Helper()
	var finalized any
	if state == "completed" || state == "discarded" || state == "cancelled" {
		finalized = e.RiverTime(at)
	}
	if _, err := e.DB.ExecContext(t.Context(), e.Bind(`INSERT INTO river_job (kind, queue, state, scheduled_at, finalized_at, args, max_attempts)
		VALUES ('register', ?, ?, ?, ?, '{}', 15)`), queue, state, e.RiverTime(at), finalized); err != nil {
		t.Fatalf("insert %s job: %v", state, err)
	}
}

func testOperatorStats(t *testing.T, h Harness) {
	ctx := t.Context()
	now := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	e := h(t, func() time.Time { return now })
	s := e.Store
	if err := s.SyncTickets(ctx, testEvent(10)); err != nil {
		t.Fatal(err)
	}

	empty, err := s.OperatorStats(ctx, testEventID)
	if err != nil {
		t.Fatalf("OperatorStats of an empty database: %v", err)
	}
	wantEmpty := []metrics.TicketSeats{
		{Ticket: "community", Capacity: 50, Left: 50},
		{Ticket: "standard", Capacity: 10, Left: 10},
	}
	if !slices.Equal(empty.Tickets, wantEmpty) || len(empty.Registrations) != 0 || len(empty.Jobs) != 0 ||
		len(empty.OldestAvailable) != 0 || len(empty.Incidents) != 0 || len(empty.Refunds) != 0 {
		t.Errorf("OperatorStats of an empty database = %+v; want tickets %+v and nothing else", empty, wantEmpty)
	}

	// One registration in each status, and a free one.
	paid := registerAs(t, s, "standard", nil)
	registerAs(t, s, "community", nil)
	processing := registerAs(t, s, "standard", nil)
	if err := s.StepStarted(ctx, processing.ID, registration.StepSaveOrder); err != nil {
		t.Fatal(err)
	}
	completed := registerAs(t, s, "standard", nil)
	for _, step := range []registration.StepName{registration.StepSaveOrder, registration.StepSendConfirmation} {
		if err := s.StepStarted(ctx, completed.ID, step); err != nil {
			t.Fatal(err)
		}
		if err := inTx(ctx, s, func(tx *sql.Tx) error { return s.FinishStepTx(ctx, tx, completed.ID, step) }); err != nil {
			t.Fatal(err)
		}
	}
	attention := registerAs(t, s, "standard", nil)
	if err := s.StepFailed(ctx, attention.ID, registration.StepSendConfirmation, "rejected", true); err != nil {
		t.Fatal(err)
	}
	cancelled := registerAs(t, s, "standard", nil)
	if err := s.CancelRegistration(ctx, cancelled.ID, &registration.Refund{ID: "op-1", Amount: 14900, RequestedBy: "x"},
		auditEntry("cancel", cancelled.ID), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRefund(ctx, "op-1", registration.RefundSucceeded, "RF", "", now); err != nil {
		t.Fatal(err)
	}
	for i, state := range []registration.RefundState{registration.RefundFailed, ""} {
		id := fmt.Sprintf("op-r%d", i)
		if err := s.RequestRefund(ctx, registration.Refund{ID: id, RegistrationID: paid.ID, Amount: 100, RequestedBy: "x"},
			auditEntry("refund", paid.ID), nil); err != nil {
			t.Fatal(err)
		}
		if state != "" {
			if err := s.FinishRefund(ctx, id, state, "", "no", now); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Two seats held by payments in progress.
	for range 2 {
		if _, err := s.StartAttempt(ctx, newAttempt(t, "", "h"), registration.Outcome{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range []registration.IncidentKind{registration.IncidentRefunded, registration.IncidentRefunded, registration.IncidentUnresolved} {
		if err := s.RecordIncident(ctx, registration.Incident{AttemptID: "x", Kind: kind, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	e.insertJob(t, "default", "available", now.Add(-90*time.Second))
	e.insertJob(t, "default", "available", now.Add(-30*time.Second))
	e.insertJob(t, "default", "running", now.Add(-time.Hour))
	e.insertJob(t, "default", "discarded", now.Add(-time.Hour))
	e.insertJob(t, "default", "completed", now.Add(-2*time.Hour))
	e.insertJob(t, "mailing_list", "retryable", now.Add(time.Minute))
	e.insertJob(t, "mailing_list", "available", now.Add(-1500*time.Millisecond))
	e.insertJob(t, "payments", "scheduled", now.Add(30*time.Second))
	e.insertJob(t, "payments", "cancelled", now.Add(-time.Hour))

	st, err := s.OperatorStats(ctx, testEventID)
	if err != nil {
		t.Fatalf("OperatorStats: %v", err)
	}
	// standard: paid, processing, completed and attention sold, the
	// cancelled seat back on sale, two held.
	wantTickets := []metrics.TicketSeats{
		{Ticket: "community", Capacity: 50, Sold: 1, Left: 49},
		{Ticket: "standard", Capacity: 10, Sold: 4, Held: 2, Left: 4},
	}
	if !slices.Equal(st.Tickets, wantTickets) {
		t.Errorf("Tickets = %+v; want %+v", st.Tickets, wantTickets)
	}
	wantRegs := map[string]int64{"paid": 2, "processing": 1, "completed": 1, "needs_attention": 1, "cancelled": 1}
	if !maps.Equal(st.Registrations, wantRegs) {
		t.Errorf("Registrations = %v; want %v", st.Registrations, wantRegs)
	}
	job := func(queue, state string) metrics.JobKey { return metrics.JobKey{Queue: queue, State: state} }
	wantJobs := map[metrics.JobKey]int64{
		job("default", "available"): 2, job("default", "running"): 1, job("default", "discarded"): 1,
		job("mailing_list", "retryable"): 1, job("mailing_list", "available"): 1, job("payments", "scheduled"): 1,
	}
	if !maps.Equal(st.Jobs, wantJobs) {
		t.Errorf("Jobs = %v; want %v", st.Jobs, wantJobs)
	}
	wantOldest := map[string]time.Duration{"default": 90 * time.Second, "mailing_list": 1500 * time.Millisecond}
	if !maps.Equal(st.OldestAvailable, wantOldest) {
		t.Errorf("OldestAvailable = %v; want %v", st.OldestAvailable, wantOldest)
	}
	wantIncidents := map[string]int64{"refunded": 2, "unresolved": 1}
	if !maps.Equal(st.Incidents, wantIncidents) {
		t.Errorf("Incidents = %v; want %v", st.Incidents, wantIncidents)
	}
	wantRefunds := map[string]int64{"succeeded": 1, "failed": 1, "requested": 1}
	if !maps.Equal(st.Refunds, wantRefunds) {
		t.Errorf("Refunds = %v; want %v", st.Refunds, wantRefunds)
	}

	// Another event has no tickets, registrations or refunds here; the
	// job queue and the payment incidents are the database's.
	other, err := s.OperatorStats(ctx, "no-such-event")
	if err != nil {
		t.Fatal(err)
	}
	if len(other.Tickets) != 0 || len(other.Registrations) != 0 || len(other.Refunds) != 0 ||
		!maps.Equal(other.Jobs, wantJobs) || !maps.Equal(other.Incidents, wantIncidents) {
		t.Errorf("OperatorStats of another event = %+v", other)
	}

	// A cancelled context is an error, not zeros.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.OperatorStats(cctx, testEventID); err == nil {
		t.Error("OperatorStats with a cancelled context succeeded")
	}
}
