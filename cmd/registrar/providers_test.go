package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/providertest"
)

const (
	ppClientID     = "registrar-client-id"
	ppClientSecret = "pp-S3CRET-do-not-log"
	sgKey          = "SG.key-S3CRET-do-not-log"
	mcKey          = "mc0123456789abcdefS3CRET-us21"
	mcList         = "a1b2c3d4e5"
	smtpPass       = "smtp-S3CRET-do-not-log"
	paypalCard     = "4012888888881881" // a PayPal sandbox Visa
)

type fakes struct {
	paypal    *providertest.PayPal
	sendgrid  *providertest.SendGrid
	mailchimp *providertest.Mailchimp
	smtp      *providertest.SMTP
}

// providerEnv points registrar at strict fakes of every provider.
func providerEnv(t *testing.T, dir, mailer string) (env, fakes) {
	f := fakes{
		paypal:    providertest.NewPayPal(t, ppClientID, ppClientSecret),
		sendgrid:  providertest.NewSendGrid(t, sgKey),
		mailchimp: providertest.NewMailchimp(t, mcKey, mcList),
		smtp:      providertest.NewSMTP(t, "registrar", smtpPass),
	}
	e := baseEnv(dir)
	e["REGISTRAR_PAYMENT"] = "paypal"
	e["PAYPAL_CLIENT_ID"] = ppClientID
	e["PAYPAL_CLIENT_SECRET"] = ppClientSecret
	e["PAYPAL_API_BASE"] = f.paypal.URL()
	e["REGISTRAR_EMAIL"] = mailer
	e["SENDGRID_API_KEY"] = sgKey
	e["SENDGRID_API_BASE"] = f.sendgrid.URL()
	e["SMTP_URL"] = "smtp://registrar:" + url.QueryEscape(smtpPass) + "@" + f.smtp.Addr() + "?starttls=opportunistic"
	e["REGISTRAR_MAILING_LIST"] = "mailchimp"
	e["MAILCHIMP_API_KEY"] = mcKey
	e["MAILCHIMP_LIST_ID"] = mcList
	e["MAILCHIMP_API_BASE"] = f.mailchimp.URL()
	return e, f
}

func paypalBody(i int, newsletter bool, cardName string) string {
	var b map[string]any
	json.Unmarshal([]byte(registrationBody(i, "standard", newsletter, paypalCard)), &b)
	b["billing"].(map[string]any)["card"].(map[string]any)["name"] = cardName
	data, _ := json.Marshal(b)
	return string(data)
}

func assertNoSecrets(t *testing.T, logs string) {
	t.Helper()
	for _, s := range []string{ppClientSecret, sgKey, mcKey, smtpPass, paypalCard} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain a secret or card data: %q", s)
		}
	}
}

// TestProvidersEndToEnd runs 20 registrations through PayPal, SendGrid (or
// SMTP) and Mailchimp fakes that check every request against the official
// specs: each gets exactly one capture, one email and, when consented, one
// member upsert.
func TestProvidersEndToEnd(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, mailer, engine string }{
		{"sendgrid", "sendgrid", "sqlite"},
		{"smtp", "smtp", "sqlite"},
		{"sendgrid on postgres", "sendgrid", "postgres"},
	}
	for _, tc := range cases {
		mailer := tc.mailer
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			e, f := providerEnv(t, dir, mailer)
			if tc.engine == "postgres" {
				e["REGISTRAR_DATABASE_URL"] = postgresURL(t)
			}
			s := startRun(t, e)

			const n = 20
			ids := make([]string, n)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, c, err := post(http.DefaultClient, s.url, paypalBody(i, i%2 == 0, "Ada Lovelace"), fmt.Sprintf("key-%d", i))
					if err != nil || code != http.StatusAccepted {
						errs <- fmt.Errorf("registration %d: %d %v", i, code, err)
						return
					}
					ids[i] = c.ID
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			done := waitCompleted(t, s.url, ids, 90*time.Second)
			s.stop(t)

			if got := f.paypal.Captures(); got != n {
				t.Errorf("PayPal captures = %d, want %d", got, n)
			}
			for _, id := range ids {
				if got := f.paypal.CapturesFor(id); got != 1 {
					t.Errorf("registration %s: %d captures", id, got)
				}
				if st := done[id]; st.Payment == nil || st.Payment.Card.Last4 != "1881" {
					t.Errorf("registration %s: payment %+v", id, st.Payment)
				}
			}
			emails := map[string]int{}
			switch mailer {
			case "sendgrid":
				for _, m := range f.sendgrid.Accepted() {
					emails[m.CustomArgs["registration_id"]]++
				}
			case "smtp":
				for _, m := range f.smtp.Received() {
					emails[m.Msg.Header.Get("X-Registration-ID")]++
				}
			}
			for _, id := range ids {
				if emails[id] != 1 {
					t.Errorf("registration %s: %d emails", id, emails[id])
				}
			}
			if len(emails) != n {
				t.Errorf("%d distinct emails, want %d", len(emails), n)
			}
			if got := f.mailchimp.Upserts(); got != n/2 {
				t.Errorf("Mailchimp upserts = %d, want %d", got, n/2)
			}
			for i := range n {
				_, listed := f.mailchimp.Member(fmt.Sprintf("ada.%d@example.org", i))
				if listed != (i%2 == 0) {
					t.Errorf("attendee %d on the list = %v, consented = %v", i, listed, i%2 == 0)
				}
			}
			assertNoSecrets(t, s.logs.String())
			if tc.engine == "sqlite" {
				assertNoCardData(t, dir, s.logs.String())
			}
		})
	}
}

// TestProviderFailuresAreRetried: SendGrid answers 500 then 429, Mailchimp
// 503; the registration still completes with exactly one email.
func TestProviderFailuresAreRetried(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, f := providerEnv(t, dir, "sendgrid")
	f.sendgrid.FailNext(1, http.StatusInternalServerError)
	f.sendgrid.FailNext(1, http.StatusTooManyRequests)
	f.mailchimp.FailNext(1, http.StatusServiceUnavailable)
	s := startRun(t, e)
	defer s.stop(t)

	code, c, err := post(http.DefaultClient, s.url, paypalBody(1, true, "Ada Lovelace"), "")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, err)
	}
	st := waitCompleted(t, s.url, []string{c.ID}, 60*time.Second)[c.ID]
	if got := len(f.sendgrid.Accepted()); got != 1 {
		t.Errorf("SendGrid accepted %d emails, want 1", got)
	}
	if got := st.Steps["send_confirmation"].Attempts; got < 3 {
		t.Errorf("send_confirmation attempts = %d, want at least 3 (500, 429, success)", got)
	}
	if got := st.Steps["add_to_mailing_list"].Attempts; got < 2 {
		t.Errorf("add_to_mailing_list attempts = %d, want at least 2 (503, success)", got)
	}
	if f.mailchimp.Upserts() != 1 || f.paypal.Captures() != 1 {
		t.Errorf("upserts %d, captures %d; want 1 and 1", f.mailchimp.Upserts(), f.paypal.Captures())
	}
}

// TestPayPalFailures: each decline form is a 402, a PayPal outage a 502, and
// neither leaves a charge, a registration or a held seat behind.
func TestPayPalFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, f := providerEnv(t, dir, "sendgrid")
	s := startRun(t, e)
	defer s.stop(t)

	code, _, err := post(http.DefaultClient, s.url, paypalBody(1, false, "CCREJECT-REFUSED"), "")
	if err != nil || code != http.StatusPaymentRequired {
		t.Errorf("declined card: %d %v, want 402", code, err)
	}
	code, _, err = post(http.DefaultClient, s.url, paypalBody(2, false, "CCREJECT-EC"), "")
	if err != nil || code != http.StatusPaymentRequired {
		t.Errorf("expired card: %d %v, want 402", code, err)
	}
	// PayPal fails the charge; asked right after, it confirms nothing was taken.
	f.paypal.FailNext(1, http.StatusInternalServerError)
	code, _, err = post(http.DefaultClient, s.url, paypalBody(3, false, "Ada Lovelace"), "k-outage")
	if err != nil || code != http.StatusBadGateway {
		t.Errorf("PayPal 500: %d %v, want 502", code, err)
	}
	if got := f.paypal.Captures(); got != 0 {
		t.Errorf("%d completed captures after declines and an outage", got)
	}
	// The outage forgot the key: the same request now goes through, once.
	code, c, err := post(http.DefaultClient, s.url, paypalBody(3, false, "Ada Lovelace"), "k-outage")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("retry after the outage: %d %v", code, err)
	}
	waitCompleted(t, s.url, []string{c.ID}, 60*time.Second)
	db := openDB(t, filepath.Join(dir, "registrar.db"))
	defer db.Close()
	var regs, holds, taken int
	db.QueryRow(`SELECT count(*) FROM registrations`).Scan(&regs)
	db.QueryRow(`SELECT count(*) FROM seat_holds`).Scan(&holds)
	db.QueryRow(`SELECT taken FROM ticket_stock WHERE ticket_id = 'standard'`).Scan(&taken)
	if regs != 1 || holds != 0 || taken != 1 || f.paypal.Captures() != 1 {
		t.Errorf("registrations %d, holds %d, taken %d, captures %d; want 1, 0, 1, 1", regs, holds, taken, f.paypal.Captures())
	}
}

// TestKillBetweenCaptureAndCommit kills registrar after PayPal captured the
// money but before the registration was stored; after the restart the
// payment is reconciled: the registration completes, charged once.
func TestKillBetweenCaptureAndCommit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, f := providerEnv(t, dir, "sendgrid")
	c := startChild(t, e)

	f.paypal.HangNext(1) // PayPal captures, then its answer never arrives
	go post(&http.Client{Timeout: 30 * time.Second}, c.url, paypalBody(7, true, "Ada Lovelace"), "k-crash")
	deadline := time.Now().Add(30 * time.Second)
	for f.paypal.Captures() == 0 {
		if time.Now().After(deadline) {
			c.kill(t)
			t.Fatal("PayPal never captured")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.kill(t)

	db := openDB(t, filepath.Join(dir, "registrar.db"))
	var regs, holds int
	db.QueryRow(`SELECT count(*) FROM registrations`).Scan(&regs)
	db.QueryRow(`SELECT count(*) FROM seat_holds`).Scan(&holds)
	db.Close()
	if regs != 0 || holds != 1 {
		t.Fatalf("at the kill: %d registrations, %d holds; want 0 and 1", regs, holds)
	}

	c = startChild(t, e)
	defer c.kill(t)
	var id string
	deadline = time.Now().Add(60 * time.Second)
	for {
		db := openDB(t, filepath.Join(dir, "registrar.db"))
		db.QueryRow(`SELECT id FROM registrations WHERE status = 'completed'`).Scan(&id)
		db.Close()
		if id != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the captured payment never became a completed registration\n%s", c.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := f.paypal.CapturesFor(id); got != 1 || f.paypal.Captures() != 1 || f.paypal.Refunds() != 0 {
		t.Errorf("captures for %s = %d, total %d, refunds %d; want 1, 1, 0", id, got, f.paypal.Captures(), f.paypal.Refunds())
	}
	// The client's retry with its key now gets the registration, not a charge.
	code, cr, err := post(http.DefaultClient, c.url, paypalBody(7, true, "Ada Lovelace"), "k-crash")
	if err != nil || code != http.StatusAccepted || cr.ID != id {
		t.Errorf("retry with the key: %d %+v %v; want 202 for %s", code, cr, err, id)
	}
	if f.paypal.Captures() != 1 {
		t.Errorf("the retry charged again: %d captures", f.paypal.Captures())
	}
	var incidents int
	db = openDB(t, filepath.Join(dir, "registrar.db"))
	db.QueryRow(`SELECT count(*) FROM payment_incidents WHERE kind = 'resolved_charged'`).Scan(&incidents)
	db.Close()
	if incidents != 1 {
		t.Errorf("%d resolved_charged incidents, want 1 (operators must see it)", incidents)
	}
	assertNoSecrets(t, c.logs.String())
}
