package paypal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/paypal"
	"github.com/registrar/registrar/internal/providertest"
)

const (
	clientID     = "AcL1ent-Id-For-Tests"
	clientSecret = "EKs3cr3t-Never-In-Logs-9q8w7e"
	cardNumber   = "4012888888881881"
	cardCVC      = "987"
)

// lockedBuffer is a log sink that goroutines may share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	fake   *providertest.PayPal
	client *paypal.Client
	logs   *lockedBuffer
}

// newFixture starts a fake PayPal and a client for it whose log is kept and,
// when the test ends, checked for secrets. hc nil means a 5 s timeout.
func newFixture(t *testing.T, hc *http.Client) *fixture {
	t.Helper()
	fake := providertest.NewPayPal(t, clientID, clientSecret)
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := &fixture{fake: fake, client: paypal.New(fake.URL()+"/", clientID, clientSecret, hc, log), logs: logs}
	t.Cleanup(func() { assertNoSecrets(t, logs.String()) })
	return f
}

var cvcInLog = regexp.MustCompile(`(^|[^0-9A-Za-z])` + cardCVC + `([^0-9A-Za-z]|$)`)

// assertNoSecrets fails when a log holds card data, the client secret or an
// access token (the fake's tokens start with A21AA).
func assertNoSecrets(t *testing.T, log string) {
	t.Helper()
	for what, s := range map[string]string{
		"card number": cardNumber, "card number prefix": cardNumber[:12], "client secret": clientSecret,
		"access token": "A21AA", "Basic credentials": "Basic ", "Bearer token": "Bearer ",
	} {
		if strings.Contains(log, s) {
			t.Errorf("log contains the %s:\n%s", what, log)
		}
	}
	if cvcInLog.MatchString(log) {
		t.Errorf("log contains the security code:\n%s", log)
	}
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func chargeRequest() payment.ChargeRequest {
	return payment.ChargeRequest{
		RequestID:   newRequestID(),
		Amount:      14900,
		Currency:    "EUR",
		Description: "GopherFest 2027 — Standard ticket",
		Card: payment.Card{
			Number: cardNumber, ExpiryYear: 2030, ExpiryMonth: 12, SecurityCode: cardCVC, Name: "Ada Lovelace",
		},
		Address: payment.BillingAddress{
			Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "gb",
		},
		Email: "ada@example.org",
	}
}

// mockTransport adds PayPal's sandbox negative-testing header to every API
// call, as a test against the real sandbox would.
type mockTransport struct{ code string }

func (m mockTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path != "/v1/oauth2/token" {
		r = r.Clone(r.Context())
		r.Header.Set("PayPal-Mock-Response", fmt.Sprintf(`{"mock_application_codes":%q}`, m.code))
	}
	return http.DefaultTransport.RoundTrip(r)
}

const (
	reasonDeclined = "Your card was declined"
	reasonExpired  = "Your card has expired"
	reasonCVC      = "security code"
	reasonVerify   = "could not be verified"
	reasonGeneric  = "Your payment was not accepted"
)

func TestCharge(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		mock     string                       // PayPal-Mock-Response code
		setup    func(*providertest.PayPal)   // faults
		edit     func(*payment.ChargeRequest) // request changes
		decline  string                       // want a *DeclinedError containing this
		unavail  bool                         // want ErrUnavailable
		errorLog bool                         // want an ERROR line in the log
		captures int
	}{
		{name: "success", captures: 1},
		{name: "yen has no decimals", edit: func(r *payment.ChargeRequest) { r.Amount, r.Currency = 500, "JPY" }, captures: 1},
		{name: "forint is whole at PayPal", edit: func(r *payment.ChargeRequest) { r.Amount, r.Currency = 1500000, "HUF" }, captures: 1},
		{name: "forint with fillér", edit: func(r *payment.ChargeRequest) { r.Amount, r.Currency = 1500050, "HUF" }, unavail: true, errorLog: true},
		{name: "no billing address", edit: func(r *payment.ChargeRequest) { r.Address = payment.BillingAddress{} }, captures: 1},
		{name: "long description is cut", edit: func(r *payment.ChargeRequest) { r.Description = strings.Repeat("é", 300) }, captures: 1},
		{name: "capture after approval", setup: func(p *providertest.PayPal) { p.RequireApproval(true) }, captures: 1},
		{name: "form 1 refused", edit: func(r *payment.ChargeRequest) { r.Card.Name = "CCREJECT-REFUSED" }, decline: reasonDeclined},
		{name: "form 1 insufficient funds", edit: func(r *payment.ChargeRequest) { r.Card.Name = "CCREJECT-IF" }, decline: reasonDeclined},
		{name: "form 1 expired card", edit: func(r *payment.ChargeRequest) { r.Card.Name = "CCREJECT-EC" }, decline: reasonExpired},
		{name: "form 1 CVV failure", edit: func(r *payment.ChargeRequest) { r.Card.Name = "CCREJECT-CVV_F" }, decline: reasonCVC},
		{name: "form 1 after approval", setup: func(p *providertest.PayPal) { p.RequireApproval(true) },
			edit: func(r *payment.ChargeRequest) { r.Card.Name = "CCREJECT-SF" }, decline: reasonDeclined},
		{name: "form 2 instrument declined", mock: "INSTRUMENT_DECLINED", decline: reasonDeclined},
		{name: "form 2 transaction refused", mock: "TRANSACTION_REFUSED", decline: reasonDeclined},
		{name: "form 2 declined by processor", mock: "PAYMENT_SOURCE_DECLINED_BY_PROCESSOR", decline: reasonDeclined},
		{name: "form 2 card expired", mock: "CARD_EXPIRED", decline: reasonExpired},
		{name: "form 2 invalid expiry", mock: "INVALID_EXPIRY_DATE", decline: reasonExpired},
		{name: "form 2 security code", mock: "INVALID_SECURITY_CODE_LENGTH", decline: reasonCVC},
		{name: "form 2 not verified", mock: "PAYMENT_SOURCE_INFO_CANNOT_BE_VERIFIED", decline: reasonVerify},
		{name: "form 2 other card issue", mock: "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED", decline: reasonGeneric},
		{name: "expiry in the past", edit: func(r *payment.ChargeRequest) { r.Card.ExpiryYear = 2020 }, decline: reasonExpired},
		{name: "amex with three digits", edit: func(r *payment.ChargeRequest) { r.Card.Number = "371449635398431" }, decline: reasonCVC},
		{name: "our 422 is not a decline", mock: "DECIMAL_PRECISION", unavail: true, errorLog: true},
		{name: "our 400", mock: "INVALID_PARAMETER_VALUE", unavail: true, errorLog: true},
		{name: "forbidden", mock: "PERMISSION_DENIED", unavail: true, errorLog: true},
		{name: "500", setup: func(p *providertest.PayPal) { p.FailNext(1, 500) }, unavail: true},
		{name: "503", setup: func(p *providertest.PayPal) { p.FailNext(1, 503) }, unavail: true},
		{name: "429", setup: func(p *providertest.PayPal) { p.FailNext(1, 429) }, unavail: true},
		{name: "mocked 500", mock: "INTERNAL_SERVER_ERROR", unavail: true},
		{name: "in progress", mock: "PREVIOUS_REQUEST_IN_PROGRESS", unavail: true},
		{name: "pending capture", setup: func(p *providertest.PayPal) { p.PendCaptures(true) }, unavail: true},
		{name: "empty request id", edit: func(r *payment.ChargeRequest) { r.RequestID = "" }, unavail: true, errorLog: true},
		{name: "zero amount", edit: func(r *payment.ChargeRequest) { r.Amount = 0 }, unavail: true, errorLog: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var hc *http.Client
			if tc.mock != "" {
				hc = &http.Client{Timeout: 5 * time.Second, Transport: mockTransport{tc.mock}}
			}
			f := newFixture(t, hc)
			if tc.setup != nil {
				tc.setup(f.fake)
			}
			req := chargeRequest()
			if tc.edit != nil {
				tc.edit(&req)
			}
			ch, err := f.client.Charge(context.Background(), req)
			var de *payment.DeclinedError
			switch {
			case tc.decline != "":
				if !errors.As(err, &de) {
					t.Fatalf("Charge = %+v, %v; want a decline", ch, err)
				}
				if !strings.Contains(de.Reason, tc.decline) {
					t.Errorf("decline reason %q, want it to say %q", de.Reason, tc.decline)
				}
				if strings.Contains(de.Reason, "_") || strings.Contains(strings.ToLower(de.Reason), "paypal") {
					t.Errorf("decline reason %q is not written for an attendee", de.Reason)
				}
			case tc.unavail:
				if !errors.Is(err, payment.ErrUnavailable) || errors.As(err, &de) {
					t.Fatalf("Charge = %+v, %v; want ErrUnavailable", ch, err)
				}
			default:
				if err != nil {
					t.Fatalf("Charge: %v", err)
				}
				if ch.Provider != "paypal" || ch.Brand != payment.Brand(req.Card.Number) || ch.Last4 != payment.Last4(req.Card.Number) {
					t.Errorf("Charge = %+v", ch)
				}
				if st := f.fake.CaptureStatus(ch.Reference); st != "COMPLETED" {
					t.Errorf("reference %q is not a COMPLETED capture at PayPal (status %q)", ch.Reference, st)
				}
			}
			if got := f.fake.Captures(); got != tc.captures {
				t.Errorf("PayPal holds %d captures, want %d", got, tc.captures)
			}
			if got := f.fake.CapturesFor(req.RequestID); got != tc.captures {
				t.Errorf("PayPal holds %d captures for the request id, want %d", got, tc.captures)
			}
			if hasError := strings.Contains(f.logs.String(), "level=ERROR"); hasError != tc.errorLog {
				t.Errorf("error-level log = %v, want %v:\n%s", hasError, tc.errorLog, f.logs.String())
			}
			if tc.mock != "" || tc.setup != nil {
				if !strings.Contains(f.logs.String(), "debug_id=") {
					t.Errorf("log has no debug_id:\n%s", f.logs.String())
				}
			}
		})
	}
}

func TestChargeSameRequestIDChargesOnce(t *testing.T) {
	t.Parallel()
	for _, approval := range []bool{false, true} {
		t.Run(fmt.Sprintf("approval=%v", approval), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.fake.RequireApproval(approval)
			req := chargeRequest()
			first, err := f.client.Charge(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			req.Amount = 99 // a retry's body is ignored
			second, err := f.client.Charge(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if first != second {
				t.Errorf("retry gave %+v, first %+v", second, first)
			}
			var wg sync.WaitGroup
			for range 10 {
				wg.Go(func() {
					if ch, err := f.client.Charge(context.Background(), req); err != nil || ch != first {
						t.Errorf("concurrent retry: %+v, %v", ch, err)
					}
				})
			}
			wg.Wait()
			if n := f.fake.CapturesFor(req.RequestID); n != 1 {
				t.Errorf("%d captures for one request id, want 1", n)
			}
		})
	}
}

func TestTimeoutThenResolve(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &http.Client{Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	req := chargeRequest()
	if _, err := f.client.Resolve(ctx, payment.ChargeRequest{RequestID: newRequestID(), Amount: 1, Currency: "EUR"}); !errors.Is(err, payment.ErrNotCharged) {
		t.Fatalf("warm-up Resolve: %v", err) // fetches the token, so the hang hits the create call
	}
	f.fake.HangNext(1)
	start := time.Now()
	_, err := f.client.Charge(ctx, req)
	if !errors.Is(err, payment.ErrUnavailable) {
		t.Fatalf("Charge with a lost answer: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Charge gave up after %v", d)
	}
	if n := f.fake.CapturesFor(req.RequestID); n != 1 {
		t.Fatalf("the fake took %d captures for the lost answer, want 1", n)
	}
	resolved, err := f.client.Resolve(ctx, payment.ChargeRequest{
		RequestID: req.RequestID, Amount: req.Amount, Currency: req.Currency, Description: req.Description,
	})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if resolved.Provider != "paypal" || resolved.Brand != "visa" || resolved.Last4 != "1881" ||
		f.fake.CaptureStatus(resolved.Reference) != "COMPLETED" {
		t.Errorf("Resolve = %+v", resolved)
	}
	again, err := f.client.Charge(ctx, req)
	if err != nil || again != resolved {
		t.Errorf("Charge retry = %+v, %v; want %+v", again, err, resolved)
	}
	if n := f.fake.Captures(); n != 1 {
		t.Errorf("%d captures, want 1", n)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		before  func(*testing.T, context.Context, *fixture, payment.ChargeRequest) // the earlier attempt
		setup   func(*providertest.PayPal)                                         // before Resolve
		paid    bool
		notPaid bool // want ErrNotCharged; else ErrUnavailable
		bare    bool // Resolve knows only the request id
	}{
		{name: "paid", before: chargeOnly, paid: true},
		{name: "paid after approval", setup: nil, before: func(t *testing.T, ctx context.Context, f *fixture, r payment.ChargeRequest) {
			f.fake.RequireApproval(true)
			charge(t, ctx, f, r)
		}, paid: true},
		{name: "nothing happened", notPaid: true},
		{name: "nothing happened, no amount given", notPaid: true, bare: true},
		{name: "declined form 1", before: func(t *testing.T, ctx context.Context, f *fixture, r payment.ChargeRequest) {
			r.Card.Name = "CCREJECT-REFUSED"
			_, _ = f.client.Charge(ctx, r)
		}, notPaid: true},
		{name: "failed with 500", before: func(t *testing.T, ctx context.Context, f *fixture, r payment.ChargeRequest) {
			f.fake.FailNext(1, 500)
			_, _ = f.client.Charge(ctx, r)
		}, notPaid: true},
		{name: "refunded", before: func(t *testing.T, ctx context.Context, f *fixture, r payment.ChargeRequest) {
			ch := charge(t, ctx, f, r)
			if _, err := f.client.Refund(ctx, ch, r.Amount, r.Currency, newRequestID()); err != nil {
				t.Fatal(err)
			}
		}, notPaid: true},
		{name: "pending", before: func(t *testing.T, ctx context.Context, f *fixture, r payment.ChargeRequest) {
			f.fake.PendCaptures(true)
			_, _ = f.client.Charge(ctx, r)
		}},
		{name: "pending then settled", before: func(t *testing.T, ctx context.Context, f *fixture, r payment.ChargeRequest) {
			f.fake.PendCaptures(true)
			_, _ = f.client.Charge(ctx, r)
			f.fake.SettlePending()
		}, paid: true},
		{name: "paypal down", before: chargeOnly, setup: func(p *providertest.PayPal) { p.FailNext(1, 503) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			ctx := context.Background()
			req := chargeRequest()
			if tc.before != nil {
				tc.before(t, ctx, f, req)
			}
			if tc.setup != nil {
				tc.setup(f.fake)
			}
			before := f.fake.Captures()
			rr := payment.ChargeRequest{RequestID: req.RequestID, Amount: req.Amount, Currency: req.Currency}
			if tc.bare {
				rr = payment.ChargeRequest{RequestID: req.RequestID}
			}
			ch, err := f.client.Resolve(ctx, rr)
			switch {
			case tc.paid:
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if ch.Provider != "paypal" || ch.Last4 != "1881" || ch.Brand != "visa" || f.fake.CaptureStatus(ch.Reference) != "COMPLETED" {
					t.Errorf("Resolve = %+v", ch)
				}
			case tc.notPaid:
				if !errors.Is(err, payment.ErrNotCharged) {
					t.Fatalf("Resolve = %+v, %v; want ErrNotCharged", ch, err)
				}
			default:
				if !errors.Is(err, payment.ErrUnavailable) || errors.Is(err, payment.ErrNotCharged) {
					t.Fatalf("Resolve = %+v, %v; want ErrUnavailable", ch, err)
				}
			}
			if after := f.fake.Captures(); after != before {
				t.Errorf("Resolve changed the captures from %d to %d", before, after)
			}
			if tc.notPaid {
				// The request id is spent: charging with it again takes nothing.
				if ch, err := f.client.Charge(ctx, req); err == nil {
					t.Errorf("Charge after ErrNotCharged = %+v", ch)
				}
				if after := f.fake.Captures(); after != before {
					t.Errorf("Charge after ErrNotCharged captured: %d → %d", before, after)
				}
			}
		})
	}
}

func chargeOnly(t *testing.T, ctx context.Context, f *fixture, r payment.ChargeRequest) {
	charge(t, ctx, f, r)
}

// charge charges r and fails the test if that does not succeed.
func charge(t *testing.T, ctx context.Context, f *fixture, r payment.ChargeRequest) payment.Charge {
	t.Helper()
	ch, err := f.client.Charge(ctx, r)
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	return ch
}

func TestTokenRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("expired at PayPal", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		charge(t, ctx, f, chargeRequest())
		f.fake.ExpireTokens() // PayPal's view; the client still counts on 9 hours
		req := chargeRequest()
		if _, err := f.client.Charge(ctx, req); err != nil {
			t.Fatalf("Charge with an expired token: %v", err)
		}
		if n := f.fake.TokenRequests(); n != 2 {
			t.Errorf("%d token requests, want 2", n)
		}
		if n := f.fake.CapturesFor(req.RequestID); n != 1 {
			t.Errorf("%d captures after the retry, want 1", n)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		charge(t, ctx, f, chargeRequest())
		f.fake.RevokeTokens() // OAuth-shaped 401 invalid_token
		charge(t, ctx, f, chargeRequest())
		if n := f.fake.TokenRequests(); n != 2 {
			t.Errorf("%d token requests, want 2", n)
		}
	})
	t.Run("refreshed before expiry", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		f.fake.SetTokenTTL(time.Second) // refreshed 100 ms before its end
		charge(t, ctx, f, chargeRequest())
		time.Sleep(950 * time.Millisecond)
		before := f.fake.Requests()
		charge(t, ctx, f, chargeRequest())
		if n := f.fake.TokenRequests(); n != 2 {
			t.Errorf("%d token requests, want 2", n)
		}
		if n := f.fake.Requests() - before; n != 2 {
			t.Errorf("%d requests for one charge, want 2 (token, order): the token ran out first", n)
		}
	})
	t.Run("cached", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		for range 5 {
			charge(t, ctx, f, chargeRequest())
		}
		if n := f.fake.TokenRequests(); n != 1 {
			t.Errorf("%d token requests, want 1", n)
		}
	})
	t.Run("bad credentials", func(t *testing.T) {
		t.Parallel()
		fake := providertest.NewPayPal(t, clientID, clientSecret)
		logs := &lockedBuffer{}
		c := paypal.New(fake.URL(), clientID, clientSecret+"x", nil, slog.New(slog.NewTextHandler(logs, nil)))
		_, err := c.Charge(ctx, chargeRequest())
		if !errors.Is(err, payment.ErrUnavailable) {
			t.Fatalf("Charge with bad credentials: %v", err)
		}
		if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "invalid_client") {
			t.Errorf("log does not report the credentials:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), clientSecret) || strings.Contains(err.Error(), clientSecret) {
			t.Errorf("secret leaked: %v\n%s", err, logs.String())
		}
	})
}

func TestConcurrentChargesFetchOneToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	chargeAll := func(t *testing.T, f *fixture) {
		t.Helper()
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if _, err := f.client.Charge(ctx, chargeRequest()); err != nil {
					t.Errorf("Charge: %v", err)
				}
			})
		}
		wg.Wait()
	}
	t.Run("no token yet", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		f.fake.SetLatency(20 * time.Millisecond)
		chargeAll(t, f)
		if n := f.fake.TokenRequests(); n != 1 {
			t.Errorf("%d token requests, want 1", n)
		}
		if n := f.fake.Captures(); n != 50 {
			t.Errorf("%d captures, want 50", n)
		}
	})
	t.Run("expired token", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		charge(t, ctx, f, chargeRequest())
		f.fake.ExpireTokens()
		f.fake.SetLatency(20 * time.Millisecond)
		chargeAll(t, f)
		if n := f.fake.TokenRequests(); n != 2 {
			t.Errorf("%d token requests, want 2 (one refresh for 50 callers)", n)
		}
		if n := f.fake.Captures(); n != 51 {
			t.Errorf("%d captures, want 51", n)
		}
	})
}

func TestRefund(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	req := chargeRequest()
	ch := charge(t, ctx, f, req)

	partial := newRequestID()
	var first payment.RefundOutcome
	for i := range 2 { // the repeat is a replay
		out, err := f.client.Refund(ctx, ch, 4900, "EUR", partial)
		if err != nil || out.Reference == "" || out.Pending {
			t.Fatalf("partial refund: %+v, %v", out, err)
		}
		if i == 0 {
			first = out
		} else if out != first {
			t.Errorf("replay = %+v, want %+v", out, first)
		}
	}
	if got := f.fake.RefundRequestID(first.Reference); got != partial {
		t.Errorf("refund made with PayPal-Request-Id %q, want %q", got, partial)
	}
	if n, st := f.fake.Refunds(), f.fake.CaptureStatus(ch.Reference); n != 1 || st != "PARTIALLY_REFUNDED" {
		t.Fatalf("after a partial refund and its replay: %d refunds, capture %s", n, st)
	}
	var refused *payment.RefundRefusedError
	_, err := f.client.Refund(ctx, ch, 20000, "EUR", newRequestID())
	if !errors.As(err, &refused) || refused.Issue != "REFUND_AMOUNT_EXCEEDED" || errors.Is(err, payment.ErrAlreadyRefunded) {
		t.Errorf("refund of too much: %v", err)
	}
	f.fake.FailNext(1, 500)
	rest := newRequestID()
	if _, err := f.client.Refund(ctx, ch, 10000, "EUR", rest); !errors.Is(err, payment.ErrUnavailable) || errors.As(err, &refused) {
		t.Errorf("refund during an outage: %v, want ErrUnavailable", err)
	}
	if _, err := f.client.Refund(ctx, ch, 10000, "EUR", rest); err != nil {
		t.Fatalf("refund of the rest: %v", err)
	}
	if _, err := f.client.Refund(ctx, ch, 10000, "EUR", rest); err != nil {
		t.Fatalf("replayed refund: %v", err)
	}
	// A new request id on a capture refunded in full: refunded by other
	// means than this refund, which therefore failed.
	_, err = f.client.Refund(ctx, ch, 10000, "EUR", newRequestID())
	if !errors.As(err, &refused) || !errors.Is(err, payment.ErrAlreadyRefunded) || !strings.Contains(refused.Reason, "other means") {
		t.Fatalf("refund of a fully refunded capture: %v", err)
	}
	if n, st := f.fake.Refunds(), f.fake.CaptureStatus(ch.Reference); n != 2 || st != "REFUNDED" {
		t.Errorf("%d refunds, capture %s; want 2, REFUNDED", n, st)
	}
	if _, err := f.client.Refund(ctx, payment.Charge{Provider: "paypal", Reference: "NOSUCHCAPTURE0000"}, 100, "EUR", newRequestID()); !errors.As(err, &refused) {
		t.Errorf("refund of an unknown capture: %v, want a refusal", err)
	}
	if _, err := f.client.Refund(ctx, payment.Charge{Provider: "test", Reference: "test_1"}, 100, "EUR", newRequestID()); !errors.As(err, &refused) {
		t.Errorf("refund of another provider's charge: %v, want a refusal", err)
	}
}

func TestRefundOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(f *fixture)
		pending  bool
		issue    string // "" when accepted
		mentions string
	}{
		{name: "completed"},
		{name: "pending", setup: func(f *fixture) { f.fake.PendRefunds(true) }, pending: true},
		{name: "time limit exceeded", setup: func(f *fixture) { f.fake.RefuseRefunds("REFUND_TIME_LIMIT_EXCEEDED") },
			issue: "REFUND_TIME_LIMIT_EXCEEDED", mentions: "too old"},
		{name: "amount exceeded", setup: func(f *fixture) { f.fake.RefuseRefunds("REFUND_AMOUNT_EXCEEDED") },
			issue: "REFUND_AMOUNT_EXCEEDED", mentions: "more than what is left"},
		{name: "fully refunded", setup: func(f *fixture) { f.fake.RefuseRefunds("CAPTURE_FULLY_REFUNDED") },
			issue: "CAPTURE_FULLY_REFUNDED", mentions: "other means"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, nil)
			ch := charge(t, ctx, f, chargeRequest())
			if tt.setup != nil {
				tt.setup(f)
			}
			out, err := f.client.Refund(ctx, ch, 5000, "EUR", newRequestID())
			if tt.issue == "" {
				if err != nil || out.Reference == "" || out.Pending != tt.pending {
					t.Fatalf("Refund = %+v, %v; want accepted, pending %v", out, err, tt.pending)
				}
				return
			}
			var refused *payment.RefundRefusedError
			if !errors.As(err, &refused) || refused.Issue != tt.issue || !strings.Contains(refused.Reason, tt.mentions) {
				t.Fatalf("Refund = %+v, %v; want refused with %s", out, err, tt.issue)
			}
			if errors.Is(err, payment.ErrUnavailable) {
				t.Errorf("a refusal is not a provider failure: %v", err)
			}
			var perm interface{ Permanent() bool }
			if !errors.As(err, &perm) || !perm.Permanent() {
				t.Errorf("a refusal is not marked permanent: %v", err)
			}
		})
	}
}

// TestLogsKeepSecrets runs every kind of outcome through one client with a
// debug-level log and checks that the log is useful and holds no secret
// (newFixture's cleanup checks the same for every test).
func TestLogsKeepSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	ch := charge(t, ctx, f, chargeRequest())
	declined := chargeRequest()
	declined.Card.Name = "CCREJECT-REFUSED"
	_, _ = f.client.Charge(ctx, declined)
	f.fake.FailNext(1, 500)
	_, _ = f.client.Charge(ctx, chargeRequest())
	f.fake.RevokeTokens()
	_, _ = f.client.Resolve(ctx, chargeRequest())
	_, _ = f.client.Refund(ctx, ch, 100, "EUR", newRequestID())
	log := f.logs.String()
	for _, want := range []string{"debug_id=", "capture_status=DECLINED", "response_code=0500", "status=500", "capture completed", "refund accepted"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	assertNoSecrets(t, log)
}

// TestMalformedAnswers uses a server that is not PayPal at all.
func TestMalformedAnswers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		status int
		body   string
	}{
		{"not JSON", 201, "<html>gateway</html>"},
		{"no id", 201, `{"status":"COMPLETED"}`},
		{"completed without capture", 201, `{"id":"5O190127TN364715T","status":"COMPLETED"}`},
		{"unknown status", 201, `{"id":"5O190127TN364715T","status":"SAVED"}`},
		{"html 502", 502, "<html>bad gateway</html>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v1/oauth2/token" {
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, `{"access_token":"A21AAtoken","token_type":"Bearer","expires_in":32400}`)
					return
				}
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			}))
			t.Cleanup(srv.Close)
			c := paypal.New(srv.URL, clientID, clientSecret, nil, nil)
			if _, err := c.Charge(context.Background(), chargeRequest()); !errors.Is(err, payment.ErrUnavailable) {
				t.Errorf("Charge: %v, want ErrUnavailable", err)
			}
		})
	}
}

// Charges in flight together reuse their connections afterwards: the next
// wave opens none (net/http's default keeps only 2 idle per host).
func TestConnectionsAreReused(t *testing.T) {
	t.Parallel()
	fake := providertest.NewPayPal(t, clientID, clientSecret)
	fake.SetLatency(20 * time.Millisecond)
	client := paypal.New(fake.URL(), clientID, clientSecret, nil, nil)
	const inFlight = 40
	wave := func() {
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				if _, err := client.Charge(t.Context(), chargeRequest()); err != nil {
					t.Errorf("Charge: %v", err)
				}
			})
		}
		wg.Wait()
	}
	wave()
	first := fake.Connections()
	if first < 2 || first > inFlight+1 {
		t.Fatalf("first wave opened %d connections; want from 2 to %d", first, inFlight+1)
	}
	wave()
	wave()
	// A connection goes back to the idle pool just after its answer is
	// read, so a charge of the next wave may now and then dial before the
	// last one is back. Without reuse each wave would open about inFlight-2
	// new ones; a handful is that race, not a lost pool.
	if got := fake.Connections(); got-first > inFlight/8 {
		t.Errorf("%d connections after three waves, %d more than the first wave's; want them reused", got, got-first)
	}
}
