package postgres

import (
	"bytes"
	"context"
	"io"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

// resolverFunc adapts a function to pipeline.Resolver.
type resolverFunc func(ctx context.Context, now time.Time) (int, error)

func (f resolverFunc) ResolveAbandoned(ctx context.Context, now time.Time) (int, error) {
	return f(ctx, now)
}

// TestPipeline runs the whole pipeline on PostgreSQL: River through
// RiverDriver (database/sql for queries, pgx for LISTEN), the same job and
// worker code as on SQLite, a registration through the service, and its
// three activities to completed.
func TestPipeline(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	log := discardLog()
	db := openDB(t)
	store := NewStore(db)
	ev := event.Demo()
	if err := store.SyncTickets(ctx, ev); err != nil {
		t.Fatal(err)
	}
	outboxDir := filepath.Join(t.TempDir(), "outbox")
	outbox, err := email.NewOutbox(outboxDir)
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := email.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	var svc *registration.Service
	deps := pipeline.Deps{
		Store:    store,
		Mailer:   outbox,
		List:     store,
		Renderer: renderer,
		Payments: resolverFunc(func(ctx context.Context, now time.Time) (int, error) { return svc.ResolveAbandoned(ctx, now) }),
		Event:    ev,
		BaseURL:  "http://registrar.test",
		Log:      log,
	}
	cfg, err := pipeline.Config(deps, pipeline.Options{
		MaxAttempts:       4,
		RetryBase:         10 * time.Millisecond,
		RetryCap:          50 * time.Millisecond,
		Workers:           10,
		RescueAfter:       time.Minute,
		JobTimeout:        30 * time.Second,
		FetchPollInterval: time.Second, // LISTEN/NOTIFY wakes the workers sooner
	}, true, log)
	if err != nil {
		t.Fatalf("pipeline.Config: %v", err)
	}
	client, err := river.NewClient(db.RiverDriver(), cfg)
	if err != nil {
		t.Fatalf("river.NewClient: %v", err)
	}
	proc := payment.NewTestProcessor()
	svc = registration.NewService(store, proc, pipeline.Enqueue(client), ev, log)
	if err := client.Start(ctx); err != nil {
		t.Fatalf("start River: %v", err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Stop(stopCtx); err != nil {
			t.Errorf("stop River: %v", err)
		}
	})

	req := registration.Request{
		Ticket:   "standard",
		Attendee: registration.Attendee{FirstName: "Ada", LastName: "Lovelace", Email: "Ada@Example.org", Company: "Analytical Engines"},
		Billing: &registration.Billing{
			Card: registration.CardInput{Number: "4111 1111 1111 1111", Expiry: time.Now().AddDate(2, 0, 0).Format("2006-01"),
				CVC: "123", Name: "Ada Lovelace"},
			Address: registration.Address{Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"},
		},
		Newsletter: true,
	}
	id, err := svc.Register(ctx, req, "key-1")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if again, err := svc.Register(ctx, req, "key-1"); err != nil || again != id {
		t.Errorf("Register with the same key = %q, %v; want the first registration %s", again, err, id)
	}

	deadline := time.Now().Add(30 * time.Second)
	var r registration.Registration
	for {
		if r, err = store.Registration(ctx, id); err != nil {
			t.Fatal(err)
		}
		// River marks each job completed shortly after the activity's own
		// commit: wait for those too.
		finished := queryInt(t, db.SQL, `SELECT count(*) FROM river_job WHERE state IN ('available', 'running', 'retryable', 'scheduled') AND kind <> $1`,
			pipeline.KindResolvePayments) == 0
		if (r.Status.Terminal() && finished) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Status != registration.StatusCompleted {
		t.Fatalf("registration is %s with steps %+v; want completed", r.Status, r.Steps)
	}
	for _, st := range r.Steps {
		if st.Status != registration.StepSucceeded || st.Attempts != 1 {
			t.Errorf("step %s = %s after %d attempts; want succeeded after 1", st.Name, st.Status, st.Attempts)
		}
	}
	if r.Payment.Provider != "test" || r.Payment.Last4 != "1111" {
		t.Errorf("payment = %+v; want the test processor's charge of card 1111", r.Payment)
	}
	if got := queryInt(t, db.SQL, `SELECT count(*) FROM orders WHERE registration_id = $1`, id); got != 1 {
		t.Errorf("%d orders; want 1", got)
	}
	if got := queryInt(t, db.SQL, `SELECT count(*) FROM mailing_list WHERE email = 'ada@example.org' AND registration_id = $1`, id); got != 1 {
		t.Errorf("%d mailing list entries; want 1", got)
	}
	if sent, err := store.EmailSent(ctx, id); err != nil || !sent {
		t.Errorf("EmailSent = %v, %v; want true", sent, err)
	}
	// The confirmation, and the newsletter's request to confirm the address,
	// whose link confirms it.
	files, err := os.ReadDir(outboxDir)
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	// ReadDir sorts by name, and the id may sort before or after "newsletter-".
	var confirmation, newsletter int
	var newsletterFile string
	for _, n := range names {
		switch {
		case n == id+".eml":
			confirmation++
		case strings.HasPrefix(n, "newsletter-"+id+"-"):
			newsletter++
			newsletterFile = n
		}
	}
	if err != nil || len(names) != 2 || confirmation != 1 || newsletter != 1 {
		t.Fatalf("outbox holds %v (%v); want %s.eml and one newsletter-%s-….eml", names, err, id, id)
	}
	raw, err := os.ReadFile(filepath.Join(outboxDir, newsletterFile))
	if err != nil {
		t.Fatal(err)
	}
	// The bodies are quoted-printable: decoded, the link is whole again.
	text, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	token := regexp.MustCompile(`http://registrar\.test/newsletter/confirm/([A-Za-z0-9_-]{43})`).FindSubmatch(text)
	if token == nil {
		t.Fatalf("the newsletter email has no confirmation link:\n%s", raw)
	}
	hash, _ := email.ConfirmTokenHash(string(token[1]))
	if sub, err := store.ConfirmSubscription(ctx, hash); err != nil || sub.RegistrationID != id {
		t.Errorf("ConfirmSubscription by the emailed link = %+v, %v; want registration %s", sub, err, id)
	}
	// Every job of the registration completed; none was left to retry.
	if got := queryInt(t, db.SQL, `SELECT count(*) FROM river_job WHERE state <> 'completed' AND kind <> $1`, pipeline.KindResolvePayments); got != 0 {
		t.Errorf("%d jobs not completed", got)
	}
	if got := queryInt(t, db.SQL, `SELECT count(*) FROM river_job WHERE args->>'registration_id' = $1 AND state = 'completed'`, id); got != 2 {
		t.Errorf("%d completed jobs for the registration; want 2 (register, and the mailing list's own)", got)
	}
}
