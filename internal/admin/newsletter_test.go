package admin_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
)

// optInStore is the local mailing list's double opt-in, which both
// engines' stores provide.
type optInStore interface {
	SubscribePending(ctx context.Context, s registration.Subscriber, tokenHash string) (bool, error)
	ConfirmSubscription(ctx context.Context, tokenHash string) (registration.Subscriber, error)
}

func subscriberOf(r registration.Registration) registration.Subscriber {
	return registration.Subscriber{Email: r.Email, FirstName: r.FirstName, LastName: r.LastName,
		EventID: r.EventID, RegistrationID: r.ID}
}

// TestNewsletterConfirmation: the detail page shows when an attendee
// consented and when they confirmed, or that confirmation is awaited; the
// mailing list export holds confirmed addresses only.
func TestNewsletterConfirmation(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		ctx := context.Background()
		list, ok := e.store.(optInStore)
		if !ok {
			t.Fatalf("the %s store has no double opt-in", eng.name)
		}
		regs := e.seed(
			seedReg{First: "Grace", Last: "Hopper", Email: "grace@navy.example", Newsletter: true,
				Created: time.Date(2027, 3, 14, 9, 30, 0, 0, time.UTC)},
			seedReg{First: "Ada", Last: "Lovelace", Email: "ada@example.org", Newsletter: true,
				Created: time.Date(2027, 3, 14, 11, 45, 0, 0, time.UTC)},
			seedReg{First: "Alan", Last: "Turing", Email: "alan@example.org", Newsletter: true},
			seedReg{First: "Edsger", Last: "Dijkstra", Email: "edsger@example.org"},
		)
		confirmed, pending, notYet, without := regs[0], regs[1], regs[2], regs[3]
		// Each registration's own token hash: two ids may begin alike.
		tokenHash := func(r registration.Registration) string {
			sum := sha256.Sum256([]byte(r.ID))
			return hex.EncodeToString(sum[:])
		}
		for _, r := range []registration.Registration{confirmed, pending} {
			if _, err := list.SubscribePending(ctx, subscriberOf(r), tokenHash(r)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := list.ConfirmSubscription(ctx, tokenHash(confirmed)); err != nil {
			t.Fatal(err)
		}
		state, err := e.store.NewsletterState(ctx, confirmed.ID)
		if err != nil || state.ConfirmedAt.IsZero() {
			t.Fatalf("NewsletterState = %+v, %v; want confirmed", state, err)
		}
		confirmedAt := state.ConfirmedAt.UTC().Format("2006-01-02 15:04 UTC")

		_, staff := e.account(admin.RoleStaff)
		for _, c := range []struct {
			name      string
			id        string
			want, not []string
		}{
			{"confirmed", confirmed.ID, []string{"Consented 2027-03-14 09:30 UTC", "Confirmed " + confirmedAt}, []string{"Awaiting confirmation"}},
			{"pending", pending.ID, []string{"Consented 2027-03-14 11:45 UTC", "Awaiting confirmation"}, []string{"Confirmed "}},
			{"not yet asked", notYet.ID, []string{"Consented "}, []string{"Awaiting confirmation", "Confirmed "}},
			{"without consent", without.ID, []string{"No consent"}, []string{"Consented ", "Awaiting confirmation", "Confirmed "}},
		} {
			w := e.get("/admin/registrations/"+c.id, staff)
			if w.Code != http.StatusOK {
				t.Fatalf("%s: detail %d", c.name, w.Code)
			}
			body := w.Body.String()
			for _, s := range c.want {
				if !strings.Contains(body, s) {
					t.Errorf("%s: detail lacks %q", c.name, s)
				}
			}
			for _, s := range c.not {
				if strings.Contains(body, s) {
					t.Errorf("%s: detail shows %q", c.name, s)
				}
			}
		}

		w := e.get("/admin/export/mailing-list.csv", staff)
		if w.Code != http.StatusOK {
			t.Fatalf("mailing list export: %d", w.Code)
		}
		rows := readCSV(t, w.Body.String())
		want := "email,first_name,last_name,consented_at,confirmed_at|grace@navy.example,Grace,Hopper,2027-03-14T09:30:00Z," +
			state.ConfirmedAt.UTC().Format(time.RFC3339)
		var got []string
		for _, r := range rows {
			got = append(got, strings.Join(r, ","))
		}
		if strings.Join(got, "|") != want {
			t.Errorf("mailing list export:\n%s\nwant (the pending address left out):\n%s", strings.Join(got, "\n"),
				strings.ReplaceAll(want, "|", "\n"))
		}
	})
}
