package main

import (
	"net/http"
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
