package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/logredact"
)

// A PayPal error echoing the card number, digits only and in groups of
// four, reaches registrar's log (the charge failed but was taken) with the
// number replaced: it appears nowhere in the output.
func TestLogsNeverShowEchoedCardNumbers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, f := providerEnv(t, dir, "outbox")
	e["REGISTRAR_MAILING_LIST"] = "local"
	f.paypal.EchoCardInErrors(true)
	s := startRun(t, e)
	f.paypal.FailAfterNext(1, http.StatusInternalServerError)
	code, c, err := post(http.DefaultClient, s.url, paypalBody(1, false, "Ada Lovelace"), "k-echo")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("answer %d %v; want 202 once the charge is found", code, err)
	}
	waitCompleted(t, s.url, []string{c.ID}, 60*time.Second)
	s.stop(t)
	if err := f.paypal.Err(); err != nil {
		t.Fatal(err)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, logredact.CardMark) {
		t.Fatalf("no log line held the echoed card number, so nothing was shown redacted; logs:\n%s", logs)
	}
	spaced := paypalCard[:4] + " " + paypalCard[4:8] + " " + paypalCard[8:12] + " " + paypalCard[12:]
	for _, form := range []string{paypalCard, spaced, paypalCard[:12]} {
		if strings.Contains(logs, form) {
			t.Errorf("logs contain the card number as %q:\n%s", form, logs)
		}
	}
	assertNoSecrets(t, logs)
}

// A PayPal answer quoting the Authorization header (the Basic credentials
// of the token request; the Bearer access token of a charge) reaches
// registrar's log with the credential replaced: the access token, learnt
// at run time, is redacted as the configured secrets are.
func TestLogsNeverShowEchoedPayPalCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		secret string // the PAYPAL_CLIENT_SECRET registrar is given
		fail   func(f fakes)
		want   string
	}{
		{"bearer token", ppClientSecret, func(f fakes) { f.paypal.FailNext(1, http.StatusUnprocessableEntity) }, "Authorization: Bearer " + logredact.SecretMark},
		{"basic credentials", "pp-WRONG-secret-for-this-app", func(fakes) {}, "Authorization: Basic " + logredact.SecretMark},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			e, f := providerEnv(t, dir, "outbox")
			e["REGISTRAR_MAILING_LIST"] = "local"
			e["PAYPAL_CLIENT_SECRET"] = tc.secret
			f.paypal.EchoCredentialsInErrors(true)
			s := startRun(t, e)
			tc.fail(f)
			code, _, err := post(http.DefaultClient, s.url, paypalBody(1, false, "Ada Lovelace"), "k-echo-creds")
			if err != nil || code != http.StatusBadGateway {
				t.Fatalf("answer %d %v; want 502, nothing charged", code, err)
			}
			s.stop(t)
			logs := s.logs.String()
			if !strings.Contains(logs, tc.want) {
				t.Fatalf("no log line shows the echoed credential redacted (%q); logs:\n%s", tc.want, logs)
			}
			basic := base64.StdEncoding.EncodeToString([]byte(ppClientID + ":" + tc.secret))
			if strings.Contains(logs, basic[:16]) || strings.Contains(logs, "A21AA") {
				t.Errorf("logs show a PayPal credential:\n%s", logs)
			}
			assertNoSecrets(t, logs)
		})
	}
}

// TestRunErrorRedacted: the error run returns, which main prints to stderr,
// is redacted as the log is: a configured secret in it (here in a file
// path) and a card number (here before the configuration is read) are
// replaced, and the error still is what it wraps.
func TestRunErrorRedacted(t *testing.T) {
	t.Parallel()
	const password = "correct-horse-battery-staple"
	e := baseEnv(t.TempDir())
	e["REGISTRAR_ADMIN_PASSWORD"] = password
	e["REGISTRAR_EVENT_FILE"] = filepath.Join(t.TempDir(), password+".json")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve"}, e.get, strings.NewReader(""), &out, &errOut)
	if err == nil {
		t.Fatal("run with a missing event file succeeded")
	}
	if strings.Contains(err.Error(), password) || !strings.Contains(err.Error(), logredact.SecretMark+".json") {
		t.Errorf("run's error = %q, want the password redacted", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run's error %q no longer wraps fs.ErrNotExist", err)
	}

	err = run(context.Background(), []string{cardNumber}, e.get, strings.NewReader(""), &out, &errOut)
	if err == nil || strings.Contains(err.Error(), cardNumber) || !strings.Contains(err.Error(), logredact.CardMark) {
		t.Errorf("run's error for an unknown command = %v, want the card number redacted", err)
	}
	if strings.Contains(out.String()+errOut.String(), password) {
		t.Errorf("the output shows the password:\n%s%s", &out, &errOut)
	}
}
