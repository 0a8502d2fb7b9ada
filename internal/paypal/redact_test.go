package paypal_test

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/logredact"
	"github.com/registrar/registrar/internal/paypal"
	"github.com/registrar/registrar/internal/providertest"
)

var tokenInText = regexp.MustCompile(`A21AA[0-9A-Za-z_-]+`)

// TestRedactWithEchoedCredentials: a PayPal answer quoting the request's
// Authorization header, whether the Basic credentials of a refused token
// request or the Bearer token of an API call, reaches the log (through the
// error the caller logs) with the credential replaced.
func TestRedactWithEchoedCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name, secret string
		echoed       *regexp.Regexp // what the error quotes
		prepare      func(f *providertest.PayPal)
	}{
		{"basic credentials of a refused token request", "wrong-secret-for-this-app", regexp.MustCompile(`Basic [A-Za-z0-9+/=]+`), nil},
		{"bearer token of a failed charge", clientSecret, tokenInText, func(f *providertest.PayPal) { f.FailNext(1, http.StatusUnprocessableEntity) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewPayPal(t, clientID, clientSecret)
			fake.EchoCredentialsInErrors(true)
			if tc.prepare != nil {
				tc.prepare(fake)
			}
			logs := &lockedBuffer{}
			red := logredact.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}), []string{tc.secret})
			log := slog.New(red)
			c := paypal.New(fake.URL(), clientID, tc.secret, &http.Client{Timeout: 5 * time.Second}, log)
			c.RedactWith(red)
			_, err := c.Charge(ctx, chargeRequest())
			if err == nil {
				t.Fatal("charge succeeded; the test needs an error answer")
			}
			if !tc.echoed.MatchString(err.Error()) {
				t.Fatalf("the error does not quote the credential, so the test shows nothing: %v", err)
			}
			log.Error("charge failed", "err", err)
			got := logs.String()
			if !strings.Contains(got, logredact.SecretMark) {
				t.Errorf("nothing redacted in:\n%s", got)
			}
			basic := base64.StdEncoding.EncodeToString([]byte(clientID + ":" + tc.secret))
			if strings.Contains(got, basic[:16]) || tokenInText.MatchString(got) {
				t.Errorf("the log shows a credential:\n%s", got)
			}
			if !strings.Contains(got, "Authorization: Basic "+logredact.SecretMark) && !strings.Contains(got, "Authorization: Bearer "+logredact.SecretMark) {
				t.Errorf("the quoted header is not shown redacted:\n%s", got)
			}
		})
	}
}

// secretsRecorder is a paypal.Secrets that keeps what it was given.
type secretsRecorder struct {
	mu   sync.Mutex
	kept []string
}

func (s *secretsRecorder) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if !slices.Contains(s.kept, v) {
			s.kept = append(s.kept, v)
		}
	}
}

func (s *secretsRecorder) Remove(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kept = slices.DeleteFunc(s.kept, func(v string) bool { return slices.Contains(secrets, v) })
}

func (s *secretsRecorder) tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, v := range s.kept {
		if strings.HasPrefix(v, "A21AA") {
			out = append(out, v)
		}
	}
	return out
}

// TestRedactWithTokenRotation: each access token is given to the
// redaction before it is used, and only the latest two stay there.
func TestRedactWithTokenRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	rec := &secretsRecorder{}
	f.client.RedactWith(rec)
	basic := base64.StdEncoding.EncodeToString([]byte(clientID + ":" + clientSecret))
	if !slices.Contains(rec.kept, basic) || !slices.Contains(rec.kept, strings.TrimRight(basic, "=")) {
		t.Fatalf("the Basic credentials were not given at once: %q", rec.kept)
	}
	var seen []string
	for i := range 4 {
		if i > 0 {
			f.fake.RevokeTokens() // the next call is refused and fetches another
		}
		charge(t, ctx, f, chargeRequest())
		toks := rec.tokens()
		if len(toks) == 0 {
			t.Fatal("no access token given to the redaction")
		}
		latest := toks[len(toks)-1]
		if slices.Contains(seen, latest) {
			t.Fatalf("charge %d: no new token learnt after the old one was revoked", i+1)
		}
		seen = append(seen, latest)
		if want := seen[max(0, len(seen)-2):]; !slices.Equal(toks, want) {
			t.Errorf("after %d tokens the redaction holds %q, want the latest two %q", len(seen), toks, want)
		}
	}
	if n := f.fake.TokenRequests(); n != 4 {
		t.Errorf("%d token requests, want 4", n)
	}
}
