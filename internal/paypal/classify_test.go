package paypal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/paypal"
	"github.com/registrar/registrar/internal/providertest"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Failures before the order reached PayPal certainly charged nothing: the
// error says so (payment.ErrNotCharged), so the seat goes back at once.
func TestChargeNotSentIsNotCharged(t *testing.T) {
	t.Parallel()
	t.Run("token refused", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		c := paypal.New(f.fake.URL(), clientID, "wrong-secret", &http.Client{Timeout: 5 * time.Second}, nil)
		_, err := c.Charge(context.Background(), chargeRequest())
		if !errors.Is(err, payment.ErrNotCharged) || !errors.Is(err, payment.ErrUnavailable) {
			t.Errorf("Charge with refused credentials: %v; want ErrNotCharged and ErrUnavailable", err)
		}
		if n := f.fake.Requests(); n != 1 {
			t.Errorf("the fake saw %d requests; want only the refused token request", n)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		c := paypal.New("http://"+closedAddr(t), clientID, clientSecret, &http.Client{Timeout: 5 * time.Second}, nil)
		if _, err := c.Charge(context.Background(), chargeRequest()); !errors.Is(err, payment.ErrNotCharged) {
			t.Errorf("Charge to a closed port: %v; want ErrNotCharged", err)
		}
	})
	t.Run("TLS handshake fails", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		// The default transport does not trust the test server's certificate.
		c := paypal.New(srv.URL, clientID, clientSecret, &http.Client{Timeout: 5 * time.Second}, nil)
		if _, err := c.Charge(context.Background(), chargeRequest()); !errors.Is(err, payment.ErrNotCharged) {
			t.Errorf("Charge over an untrusted TLS connection: %v; want ErrNotCharged", err)
		}
	})
	t.Run("order connection refused after the token", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		// The first connection (the token request) reaches the fake; every
		// later one is refused.
		var dials atomic.Int32
		refused := closedAddr(t)
		tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) > 1 {
				addr = refused
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
		c := paypal.New(f.fake.URL(), clientID, clientSecret, &http.Client{Timeout: 5 * time.Second, Transport: tr}, nil)
		_, err := c.Charge(context.Background(), chargeRequest())
		if !errors.Is(err, payment.ErrNotCharged) {
			t.Errorf("Charge whose order connection was refused: %v; want ErrNotCharged", err)
		}
		if f.fake.TokenRequests() != 1 || f.fake.Requests() != 1 {
			t.Errorf("tokens issued %d, requests %d; want 1 and 1 (the token request only)", f.fake.TokenRequests(), f.fake.Requests())
		}
	})
	t.Run("cancelled before sending", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := f.client.Charge(ctx, chargeRequest()); !errors.Is(err, payment.ErrNotCharged) {
			t.Errorf("Charge with a cancelled context: %v; want ErrNotCharged", err)
		}
	})
}

// A failure after the order was sent leaves the outcome unknown: never
// ErrNotCharged, whatever the fake did with it.
func TestChargeSentIsUnknown(t *testing.T) {
	t.Parallel()
	t.Run("timeout after the charge", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, &http.Client{Timeout: 300 * time.Millisecond})
		if _, err := f.client.Resolve(context.Background(), payment.ChargeRequest{RequestID: newRequestID(), Amount: 1, Currency: "EUR"}); !errors.Is(err, payment.ErrNotCharged) {
			t.Fatalf("warm-up Resolve: %v", err)
		}
		f.fake.HangNext(1)
		req := chargeRequest()
		_, err := f.client.Charge(context.Background(), req)
		if !errors.Is(err, payment.ErrUnavailable) || errors.Is(err, payment.ErrNotCharged) {
			t.Errorf("Charge whose answer never came: %v; want ErrUnavailable without ErrNotCharged", err)
		}
		if n := f.fake.CapturesFor(req.RequestID); n != 1 {
			t.Errorf("the fake captured %d times; want 1 (the lost answer charged)", n)
		}
	})
	t.Run("5xx after the charge", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		f.fake.FailAfterNext(1, http.StatusInternalServerError)
		req := chargeRequest()
		_, err := f.client.Charge(context.Background(), req)
		if !errors.Is(err, payment.ErrUnavailable) || errors.Is(err, payment.ErrNotCharged) {
			t.Errorf("Charge answered 500 after charging: %v; want ErrUnavailable without ErrNotCharged", err)
		}
		if n := f.fake.CapturesFor(req.RequestID); n != 1 {
			t.Errorf("the fake captured %d times; want 1", n)
		}
	})
}

// Error answers to create order: PayPal's refusals take nothing, a conflict
// or a server error may hide a charge.
func TestChargeRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status     int
		name       string
		issue      string
		notCharged bool
	}{
		{400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE", true},
		{401, "AUTHENTICATION_FAILURE", "", true},
		{403, "NOT_AUTHORIZED", "PERMISSION_DENIED", true},
		{404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", true},
		{415, "UNSUPPORTED_MEDIA_TYPE", "", true},
		{422, "UNPROCESSABLE_ENTITY", "CURRENCY_NOT_SUPPORTED", true},
		{429, "RATE_LIMIT_REACHED", "", true},
		{409, "RESOURCE_CONFLICT", "PREVIOUS_REQUEST_IN_PROGRESS", false},
		{422, "UNPROCESSABLE_ENTITY", "ORDER_COMPLETION_IN_PROGRESS", false},
		{500, "INTERNAL_SERVER_ERROR", "", false},
		{502, "", "", false},
		{503, "SERVICE_UNAVAILABLE", "", false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.issue), func(t *testing.T) {
			t.Parallel()
			var orders atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if r.URL.Path == "/v1/oauth2/token" {
					fmt.Fprint(w, `{"access_token":"A21AAtoken","token_type":"Bearer","expires_in":32400}`)
					return
				}
				orders.Add(1)
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, `{"name":%q,"message":"refused","debug_id":"f00","details":[{"issue":%q}]}`, tc.name, tc.issue)
			}))
			t.Cleanup(srv.Close)
			c := paypal.New(srv.URL, clientID, clientSecret, nil, nil)
			_, err := c.Charge(context.Background(), chargeRequest())
			var declined *payment.DeclinedError
			if errors.As(err, &declined) {
				t.Fatalf("Charge: a decline (%v); want a failure", err)
			}
			if !errors.Is(err, payment.ErrUnavailable) || errors.Is(err, payment.ErrNotCharged) != tc.notCharged {
				t.Errorf("Charge: %v; want ErrUnavailable, ErrNotCharged %v", err, tc.notCharged)
			}
			if orders.Load() == 0 {
				t.Error("the order was never sent")
			}
		})
	}
}

// A decline stays a decline, not a failure.
func TestDeclineIsNotAFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &http.Client{Timeout: 5 * time.Second, Transport: mockTransport{code: "INSTRUMENT_DECLINED"}})
	_, err := f.client.Charge(context.Background(), chargeRequest())
	var declined *payment.DeclinedError
	if !errors.As(err, &declined) || errors.Is(err, payment.ErrNotCharged) {
		t.Errorf("declined Charge: %v; want a *DeclinedError only", err)
	}
}

// Resolve answers for an earlier attempt: failing to ask says nothing
// about it, so a refused token or connection is never ErrNotCharged there.
func TestResolveFailureIsNotNotCharged(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	wrong := paypal.New(f.fake.URL(), clientID, "wrong-secret", &http.Client{Timeout: 5 * time.Second}, nil)
	req := payment.ChargeRequest{RequestID: newRequestID(), Amount: 14900, Currency: "EUR"}
	if _, err := wrong.Resolve(context.Background(), req); !errors.Is(err, payment.ErrUnavailable) || errors.Is(err, payment.ErrNotCharged) {
		t.Errorf("Resolve with refused credentials: %v; want ErrUnavailable without ErrNotCharged", err)
	}
	closed := paypal.New("http://"+closedAddr(t), clientID, clientSecret, &http.Client{Timeout: 5 * time.Second}, nil)
	if _, err := closed.Resolve(context.Background(), req); errors.Is(err, payment.ErrNotCharged) {
		t.Errorf("Resolve to a closed port: %v; want no ErrNotCharged", err)
	}
	f.fake.FailNext(1, http.StatusForbidden)
	if _, err := f.client.Resolve(context.Background(), req); errors.Is(err, payment.ErrNotCharged) {
		t.Errorf("Resolve answered 403: %v; want no ErrNotCharged", err)
	}
}

// A 429's Retry-After is logged as the wait it asks for, in either of the
// forms RFC 9110 allows: delay-seconds or an HTTP-date. The refusal took no
// money.
func TestRateLimitRetryAfterLogged(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, header string
		want         *regexp.Regexp
		wait         time.Duration
	}{
		{"seconds", "120", regexp.MustCompile(`retry_after=2m0s`), 2 * time.Minute},
		{"HTTP-date", time.Now().Add(10 * time.Minute).UTC().Format(http.TimeFormat), regexp.MustCompile(`retry_after=(9m5\ds|10m0s)`), 10 * time.Minute},
		{"unreadable", "soon", regexp.MustCompile(`^[^\n]*paypal rate limit reached[^\n]*$`), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			proxy := providertest.NewFaults(t, f.fake.URL())
			logs := &lockedBuffer{}
			log := slog.New(slog.NewTextHandler(logs, nil))
			c := paypal.New(proxy.URL(), clientID, clientSecret, &http.Client{Timeout: 5 * time.Second}, log)
			proxy.Schedule("POST /v2/checkout/orders", providertest.RateLimited(tc.header,
				`{"name":"RATE_LIMIT_REACHED","message":"Too many requests.","debug_id":"d1"}`))
			_, err := c.Charge(context.Background(), chargeRequest())
			if !errors.Is(err, payment.ErrNotCharged) {
				t.Fatalf("Charge after a 429: %v; want ErrNotCharged", err)
			}
			// The wait reaches the caller too, to tell the attendee.
			if got, want := payment.RetryAfter(err), tc.wait; got < want-6*time.Second || got > want {
				t.Errorf("payment.RetryAfter = %v; want %v", got, want)
			}
			var line string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "paypal rate limit reached") {
					line = l
				}
			}
			if !tc.want.MatchString(line) {
				t.Errorf("log line %q; want it to match %s", line, tc.want)
			}
			if tc.name == "unreadable" && strings.Contains(line, "retry_after") {
				t.Errorf("log line %q names a wait PayPal did not give", line)
			}
			assertNoSecrets(t, logs.String())
		})
	}
}
