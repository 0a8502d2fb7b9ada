package postgres

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// TestEmailLimitRaceAcrossTransactions: 20 attempts for one address with
// limit 1, each in a transaction of its own and without the writers' lock
// (as processes would be if nothing but the stock row ordered them): the
// address is counted after the seat's UPDATE, so exactly one holds a seat.
// Counting before the UPDATE lets most of them through.
func TestEmailLimitRaceAcrossTransactions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openDB(t)
	db.SQL.SetMaxOpenConns(40)
	s := NewStore(db)
	ev := &event.Event{ID: "testconf", Currency: "EUR", Tickets: []event.Ticket{{ID: "standard", Price: 100, Capacity: 100}}}
	if err := s.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	const rounds, copies = 5, 20
	for round := range rounds {
		email := fmt.Sprintf("r%d@example.org", round)
		var mu sync.Mutex
		won, refused := 0, 0
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range copies {
			wg.Go(func() {
				id, err := registration.NewID()
				if err != nil {
					t.Error(err)
					return
				}
				now := time.Now().UTC()
				a := registration.Attempt{ID: id, EventID: "testconf", TicketID: "standard", Email: email, MaxPerEmail: 1,
					CreatedAt: now, ResolveAfter: now.Add(time.Hour)}
				tx, err := db.SQL.BeginTx(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				defer tx.Rollback()
				<-start
				var replay *registration.Outcome
				var ref error
				if err := beginAttempt(ctx, tx, a, registration.Outcome{}, &replay, &ref); err != nil {
					t.Error(err)
					return
				}
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case ref == nil:
					won++
				case errors.Is(ref, registration.ErrEmailLimit):
					refused++
				default:
					t.Error(ref)
				}
			})
		}
		close(start)
		wg.Wait()
		if won != 1 || refused != copies-1 {
			t.Errorf("round %d: %d held a seat, %d refused; want 1 and %d", round, won, refused, copies-1)
		}
	}
	if got := queryInt(t, db.SQL, `SELECT taken FROM ticket_stock`); got != rounds {
		t.Errorf("taken = %d; want %d", got, rounds)
	}
}
