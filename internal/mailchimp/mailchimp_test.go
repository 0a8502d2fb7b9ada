package mailchimp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/mailchimp"
	"github.com/registrar/registrar/internal/providertest"
	"github.com/registrar/registrar/internal/registration"
)

const (
	key    = "0123456789abcdef0123456789abcdef-us21"
	listID = "a1b2c3d4e5"
	event  = "gopherfest-2027"
)

// The small interfaces the worker asserts with errors.As.
type (
	permanent  interface{ Permanent() bool }
	retryAfter interface{ RetryAfter() time.Duration }
)

func ada() registration.Subscriber {
	return registration.Subscriber{Email: "Ada.Lovelace@Example.com", FirstName: "Ada", LastName: "Lovelace",
		EventID: event, RegistrationID: "r1"}
}

func isPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) && p.Permanent()
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		opts   mailchimp.Options
		key    string // default: the right one
		list   string // default: the right one
		setup  func(*providertest.Mailchimp)
		subs   []registration.Subscriber
		status string // the member's status afterwards; "" when there must be none
		// the error of the last call: "" for none, else a substring
		wantErr     string
		permanent   bool
		retryAfter  time.Duration
		wantUpserts int
	}{
		{name: "subscribed and tagged", subs: []registration.Subscriber{ada()}, status: "subscribed", wantUpserts: 1},
		{name: "double opt-in is pending", opts: mailchimp.Options{DoubleOptIn: true},
			subs: []registration.Subscriber{ada()}, status: "pending", wantUpserts: 1},
		{name: "twice, different case: one member", subs: []registration.Subscriber{ada(), func() registration.Subscriber {
			s := ada()
			s.Email = "  ada.LOVELACE@example.COM "
			return s
		}()}, status: "subscribed", wantUpserts: 1},
		{name: "an unsubscribed member stays unsubscribed",
			setup: func(m *providertest.Mailchimp) { m.Unsubscribe("ada.lovelace@example.com") },
			subs:  []registration.Subscriber{ada()}, status: "unsubscribed", wantUpserts: 1},
		{name: "503 is transient", setup: func(m *providertest.Mailchimp) { m.FailNext(1, 503) },
			subs: []registration.Subscriber{ada()}, wantErr: "503 Service Unavailable"},
		{name: "500 is transient", setup: func(m *providertest.Mailchimp) { m.FailNext(1, 500) },
			subs: []registration.Subscriber{ada()}, wantErr: "500 Internal Server Error"},
		{name: "502 with an HTML body is transient", setup: func(m *providertest.Mailchimp) { m.FailNext(1, 502) },
			subs: []registration.Subscriber{ada()}, wantErr: "502 Bad Gateway"},
		{name: "429 without Retry-After", setup: func(m *providertest.Mailchimp) { m.FailNext(1, 429) },
			subs: []registration.Subscriber{ada()}, wantErr: "429 Too Many Requests: You have exceeded the limit of 10 simultaneous connections."},
		{name: "429 with Retry-After", setup: func(m *providertest.Mailchimp) { m.FailNextRetryAfter(1, 429, 7*time.Second) },
			subs: []registration.Subscriber{ada()}, wantErr: "429 Too Many Requests", retryAfter: 7 * time.Second},
		{name: "forgotten", setup: func(m *providertest.Mailchimp) { m.Forget("ada.lovelace@example.com") },
			subs:    []registration.Subscriber{ada()},
			wantErr: "400 Forgotten Email Not Subscribed: Ada.Lovelace@Example.com was permanently deleted", permanent: true},
		{name: "compliance state", setup: func(m *providertest.Mailchimp) { m.Compliance("ada.lovelace@example.com") },
			subs:    []registration.Subscriber{ada()},
			wantErr: "400 Member In Compliance State: Ada.Lovelace@Example.com is in a compliance state", permanent: true},
		{name: "fake or invalid address", setup: func(m *providertest.Mailchimp) { m.InvalidResource("ada.lovelace@example.com") },
			subs:    []registration.Subscriber{ada()},
			wantErr: "400 Invalid Resource: Ada.Lovelace@Example.com looks fake or invalid", permanent: true},
		{name: "wrong key", key: "ffffffffffffffffffffffffffffffff-us21", subs: []registration.Subscriber{ada()},
			wantErr: "401 API Key Invalid: Your API key may be invalid", permanent: true},
		{name: "wrong list", list: "0000000000", subs: []registration.Subscriber{ada()},
			wantErr: "404 Resource Not Found", permanent: true},
		{name: "no address", subs: []registration.Subscriber{{FirstName: "Ada", EventID: event}},
			wantErr: "no email address", permanent: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := providertest.NewMailchimp(t, key, listID)
			if tc.setup != nil {
				tc.setup(m)
			}
			k, l := key, listID
			if tc.key != "" {
				k = tc.key
			}
			if tc.list != "" {
				l = tc.list
			}
			c := mailchimp.New(m.URL(), k, l, tc.opts)
			var err error
			for _, s := range tc.subs {
				if err = c.Subscribe(t.Context(), s); err != nil {
					break
				}
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Subscribe: %v", err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				if got := isPermanent(err); got != tc.permanent {
					t.Errorf("permanent = %v, want %v (%v)", got, tc.permanent, err)
				}
				var ra retryAfter
				if !errors.As(err, &ra) || ra.RetryAfter() != tc.retryAfter {
					t.Errorf("RetryAfter = %v, want %v", ra, tc.retryAfter)
				}
				for _, secret := range []string{key, tc.key} {
					if secret != "" && strings.Contains(err.Error(), secret) {
						t.Errorf("the API key is in the error: %v", err)
					}
				}
			}
			got, ok := m.Member("ada.lovelace@example.com")
			if tc.status == "" {
				if ok && tc.setup == nil {
					t.Errorf("unexpected member %+v", got)
				}
				return
			}
			if !ok {
				t.Fatal("no member")
			}
			if got.Status != tc.status || got.MergeFields["FNAME"] != "Ada" || got.MergeFields["LNAME"] != "Lovelace" {
				t.Errorf("member = %+v", got)
			}
			if len(got.Tags) != 1 || got.Tags[0] != event {
				t.Errorf("tags = %v", got.Tags)
			}
			if n := len(m.Members()); n != 1 {
				t.Errorf("%d members", n)
			}
			if m.Upserts() != tc.wantUpserts {
				t.Errorf("upserts = %d, want %d", m.Upserts(), tc.wantUpserts)
			}
		})
	}
}

// failTags fails the first n tag calls at the transport, after the PUT
// went through.
type failTags struct {
	mu sync.Mutex
	n  int
}

func (f *failTags) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	fail := strings.HasSuffix(r.URL.Path, "/tags") && f.n > 0
	if fail {
		f.n--
	}
	f.mu.Unlock()
	if fail {
		return nil, errors.New("connection reset by peer")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// A retry after a failure repeats nothing: the PUT is idempotent, and the
// tag is set once the retry gets through.
func TestSubscribeRetryIsIdempotent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(*providertest.Mailchimp)
		rt    http.RoundTripper
	}{
		{name: "upsert answered 503", setup: func(m *providertest.Mailchimp) { m.FailNext(1, 503) }},
		{name: "upsert done, tag call lost", rt: &failTags{n: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := providertest.NewMailchimp(t, key, listID)
			if tc.setup != nil {
				tc.setup(m)
			}
			var o mailchimp.Options
			if tc.rt != nil {
				o.HTTPClient = &http.Client{Transport: tc.rt}
			}
			c := mailchimp.New(m.URL(), key, listID, o)
			if err := c.Subscribe(t.Context(), ada()); err == nil || isPermanent(err) {
				t.Fatalf("err = %v, want transient", err)
			}
			for range 2 {
				if err := c.Subscribe(t.Context(), ada()); err != nil {
					t.Fatal(err)
				}
			}
			got, _ := m.Member(ada().Email)
			if m.Upserts() != 1 || len(m.Members()) != 1 || len(got.Tags) != 1 || got.Tags[0] != event {
				t.Errorf("upserts = %d, members = %d, member = %+v", m.Upserts(), len(m.Members()), got)
			}
		})
	}
}

func TestSubscribeTransportFailures(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/3.0"
	ln.Close()

	slow := providertest.NewMailchimp(t, key, listID)
	slow.SetLatency(2 * time.Second)

	canceled, cancel := context.WithCancel(t.Context())
	cancel()

	cases := []struct {
		name    string
		base    string
		opts    mailchimp.Options
		ctx     context.Context
		timeout time.Duration // of the call's context
		target  error
	}{
		{name: "connection refused", base: closed, ctx: t.Context()},
		{name: "client timeout", base: slow.URL(), ctx: t.Context(),
			opts: mailchimp.Options{HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}}},
		{name: "context deadline", base: slow.URL(), ctx: t.Context(), timeout: 100 * time.Millisecond,
			target: context.DeadlineExceeded},
		{name: "context canceled", base: slow.URL(), ctx: canceled, target: context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mailchimp.New(tc.base, key, listID, tc.opts)
			ctx := tc.ctx
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			err := c.Subscribe(ctx, ada())
			if err == nil || isPermanent(err) {
				t.Fatalf("err = %v, want transient", err)
			}
			var e *mailchimp.Error
			if !errors.As(err, &e) || e.StatusCode != 0 || e.Err == nil {
				t.Errorf("err = %#v", err)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("err = %v, want %v", err, tc.target)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("the API key is in the error: %v", err)
			}
		})
	}
}

// Many concurrent Subscribe calls never exceed MaxConns requests in flight,
// so Mailchimp's 10-connection limit is never hit.
func TestSubscribeConcurrency(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		maxConns int
		want     int
	}{
		{"default", 0, mailchimp.DefaultMaxConns},
		{"three", 3, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := providertest.NewMailchimp(t, key, listID)
			m.SetLatency(5 * time.Millisecond)
			c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{MaxConns: tc.maxConns})
			const n = 200
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					s := ada()
					s.Email = fmt.Sprintf("attendee%03d@example.org", i)
					errs <- c.Subscribe(t.Context(), s)
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if got := m.MaxInFlight(); got > tc.want || got < 2 {
				t.Errorf("max in flight = %d, want 2..%d", got, tc.want)
			}
			if m.Throttled() != 0 {
				t.Errorf("%d requests got 429", m.Throttled())
			}
			if len(m.Members()) != n || m.Upserts() != n {
				t.Errorf("members = %d, upserts = %d", len(m.Members()), m.Upserts())
			}
		})
	}
}

func TestClientStringHidesKey(t *testing.T) {
	t.Parallel()
	c := mailchimp.New("https://us21.api.mailchimp.com/3.0", key, listID, mailchimp.Options{})
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%s", c)} {
		if strings.Contains(s, key) || strings.Contains(s, "Basic") {
			t.Errorf("client formats as %q", s)
		}
	}
}

func TestSubscriberHash(t *testing.T) {
	t.Parallel()
	cases := []struct{ email, want string }{
		{"Ada.Lovelace@Example.com", "2b9150605ac374d671a306b5fcee60a0"}, // Mailchimp: the MD5 of the lower-cased address
		{"ada.lovelace@example.com", "2b9150605ac374d671a306b5fcee60a0"},
		{" ada.lovelace@example.com\n", "2b9150605ac374d671a306b5fcee60a0"},
	}
	for _, tc := range cases {
		if got := mailchimp.SubscriberHash(tc.email); got != tc.want {
			t.Errorf("SubscriberHash(%q) = %s, want %s", tc.email, got, tc.want)
		}
	}
}
