package mailchimp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
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
		// the requests of a success: one batch call for a new member; batch,
		// PUT and tag call for each repeat or existing member
		wantRequests int
	}{
		{name: "subscribed and tagged", subs: []registration.Subscriber{ada()}, status: "subscribed", wantUpserts: 1, wantRequests: 1},
		{name: "double opt-in is pending", opts: mailchimp.Options{DoubleOptIn: true},
			subs: []registration.Subscriber{ada()}, status: "pending", wantUpserts: 1, wantRequests: 1},
		{name: "twice, different case: one member", subs: []registration.Subscriber{ada(), func() registration.Subscriber {
			s := ada()
			s.Email = "  ada.LOVELACE@example.COM "
			return s
		}()}, status: "subscribed", wantUpserts: 1, wantRequests: 4},
		{name: "an unsubscribed member stays unsubscribed",
			setup: func(m *providertest.Mailchimp) { m.Unsubscribe("ada.lovelace@example.com") },
			subs:  []registration.Subscriber{ada()}, status: "unsubscribed", wantUpserts: 1, wantRequests: 3},
		{name: "an unsubscribed member stays unsubscribed with double opt-in", opts: mailchimp.Options{DoubleOptIn: true},
			setup: func(m *providertest.Mailchimp) { m.Unsubscribe("ada.lovelace@example.com") },
			subs:  []registration.Subscriber{ada()}, status: "unsubscribed", wantUpserts: 1, wantRequests: 3},
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
			wantErr: "batch subscribe: ERROR_GENERIC: Ada.Lovelace@Example.com was permanently deleted", permanent: true},
		{name: "compliance state", setup: func(m *providertest.Mailchimp) { m.Compliance("ada.lovelace@example.com") },
			subs:    []registration.Subscriber{ada()},
			wantErr: "batch subscribe: ERROR_GENERIC: Ada.Lovelace@Example.com is in a compliance state", permanent: true},
		{name: "fake or invalid address", setup: func(m *providertest.Mailchimp) { m.InvalidResource("ada.lovelace@example.com") },
			subs:    []registration.Subscriber{ada()},
			wantErr: "batch subscribe: ERROR_GENERIC: Ada.Lovelace@Example.com looks fake or invalid", permanent: true},
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
			if m.Requests() != tc.wantRequests {
				t.Errorf("requests = %d, want %d", m.Requests(), tc.wantRequests)
			}
			if b := m.Batches(); len(b) != len(tc.subs) || b[0] != 1 {
				t.Errorf("batches = %v, want one member each", b)
			}
		})
	}
}

// loseAnswers loses the answers to the first n requests whose path ends in
// suffix at the transport, after Mailchimp handled them.
type loseAnswers struct {
	mu     sync.Mutex
	suffix string
	n      int
}

func (f *loseAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	f.mu.Lock()
	lose := err == nil && strings.HasSuffix(r.URL.Path, f.suffix) && f.n > 0
	if lose {
		f.n--
	}
	f.mu.Unlock()
	if lose {
		resp.Body.Close()
		return nil, errors.New("connection reset by peer")
	}
	return resp, err
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
		{name: "batch answered 503", setup: func(m *providertest.Mailchimp) { m.FailNext(1, 503) }},
		{name: "batch done, its answer lost", rt: &loseAnswers{suffix: "/lists/" + listID, n: 1}},
		{name: "existing member: upsert done, tag answer lost",
			setup: func(m *providertest.Mailchimp) { m.Unsubscribe(ada().Email) },
			rt:    &loseAnswers{suffix: "/tags", n: 1}},
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

// subscribeAll runs Subscribe for every subscriber at once and returns the
// errors in the same order.
func subscribeAll(ctx context.Context, c *mailchimp.Client, subs []registration.Subscriber) []error {
	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() { errs[i] = c.Subscribe(ctx, s) })
	}
	wg.Wait()
	return errs
}

func attendees(n int) []registration.Subscriber {
	subs := make([]registration.Subscriber, n)
	for i := range subs {
		subs[i] = registration.Subscriber{Email: fmt.Sprintf("attendee%04d@example.org", i),
			FirstName: "Grace", LastName: fmt.Sprint("Hopper", i), EventID: event, RegistrationID: fmt.Sprint("r", i)}
	}
	return subs
}

// Concurrent calls share batch subscribe calls of at most 500 members, and
// every member is created with the opt-in status, names and tag.
func TestSubscribeBatches(t *testing.T) {
	t.Parallel()
	m := providertest.NewMailchimp(t, key, listID)
	// A window long enough for every call to join: the count of requests
	// does not depend on how fast the goroutines start.
	c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{DoubleOptIn: true, BatchWindow: time.Second})
	const n = 1200
	subs := attendees(n)
	for i, err := range subscribeAll(t.Context(), c, subs) {
		if err != nil {
			t.Errorf("attendee %d: %v", i, err)
		}
	}
	batches, total := m.Batches(), 0
	for _, b := range batches {
		if b > mailchimp.MaxBatch {
			t.Errorf("a batch of %d members", b)
		}
		total += b
	}
	if total != n || len(batches) < 3 || len(batches) > 6 || m.Requests() != len(batches) {
		t.Errorf("batches %v (%d members), %d requests; want 3 to 6 batch calls and nothing else", batches, total, m.Requests())
	}
	if m.Throttled() != 0 || m.Upserts() != n {
		t.Errorf("throttled %d, upserts %d", m.Throttled(), m.Upserts())
	}
	members := m.Members()
	if len(members) != n {
		t.Fatalf("%d members", len(members))
	}
	for i, got := range members {
		want := subs[i]
		if got.Status != "pending" || got.EmailAddress != want.Email || got.MergeFields["FNAME"] != "Grace" ||
			got.MergeFields["LNAME"] != want.LastName || len(got.Tags) != 1 || got.Tags[0] != event {
			t.Fatalf("member %d = %+v", i, got)
		}
	}
}

// Each caller of a batch gets its own outcome: members the answer refuses
// get their own permanent error, the others succeed, and an existing member
// is updated on its own without its status changing.
func TestSubscribeBatchMemberErrors(t *testing.T) {
	t.Parallel()
	m := providertest.NewMailchimp(t, key, listID)
	m.Forget("forgotten@example.org")
	m.Compliance("compliance@example.org")
	m.InvalidResource("fake@example.org")
	m.Unsubscribe("left@example.org")
	cases := []struct {
		email, wantErr, status string
	}{
		{"forgotten@example.org", "ERROR_GENERIC: forgotten@example.org was permanently deleted", ""},
		{"compliance@example.org", "ERROR_GENERIC: compliance@example.org is in a compliance state", ""},
		{"fake@example.org", "ERROR_GENERIC: fake@example.org looks fake or invalid, please enter a real email address. (email_address: ", ""},
		{"not an address", "ERROR_GENERIC: not an address looks fake or invalid", ""},
		{"left@example.org", "", "unsubscribed"},
		{"new@example.org", "", "subscribed"},
	}
	subs := make([]registration.Subscriber, len(cases))
	for i, tc := range cases {
		subs[i] = registration.Subscriber{Email: tc.email, FirstName: "Ada", EventID: event}
	}
	// A batch exactly as large as the calls: it is sent when the last joins.
	c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{BatchSize: len(subs), BatchWindow: time.Hour})
	errs := subscribeAll(t.Context(), c, subs)
	for i, tc := range cases {
		err := errs[i]
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.email, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !isPermanent(err) {
			t.Errorf("%s: err = %v, want a permanent error containing %q", tc.email, err, tc.wantErr)
		} else {
			var e *mailchimp.Error
			if !errors.As(err, &e) || e.Code != "ERROR_GENERIC" || e.Op != "batch subscribe" || e.StatusCode != 0 {
				t.Errorf("%s: err = %#v", tc.email, err)
			}
		}
		got, ok := m.Member(tc.email)
		if tc.status == "" {
			if ok {
				t.Errorf("%s is a member: %+v", tc.email, got)
			}
			continue
		}
		if !ok || got.Status != tc.status || got.MergeFields["FNAME"] != "Ada" || len(got.Tags) != 1 || got.Tags[0] != event {
			t.Errorf("%s: member = %+v, %v", tc.email, got, ok)
		}
	}
	// One batch call, then PUT and tag call for the existing member.
	if b := m.Batches(); len(b) != 1 || b[0] != len(subs) || m.Requests() != 3 {
		t.Errorf("batches %v, %d requests", b, m.Requests())
	}
}

// A failure of the whole batch call is every caller's transient error; a
// retry then succeeds.
func TestSubscribeBatchFails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		status     int
		after      time.Duration
		wantErr    string
		permanent  bool
		retryAfter time.Duration
	}{
		{"429 with Retry-After", 429, 7 * time.Second, "batch subscribe: 429 Too Many Requests", false, 7 * time.Second},
		{"429", 429, 0, "batch subscribe: 429 Too Many Requests", false, 0},
		{"500", 500, 0, "batch subscribe: 500 Internal Server Error", false, 0},
		{"502 HTML", 502, 0, "batch subscribe: 502 Bad Gateway", false, 0},
		{"503", 503, 0, "batch subscribe: 503 Service Unavailable", false, 0},
		{"401", 401, 0, "batch subscribe: 401 API Key Invalid", true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := providertest.NewMailchimp(t, key, listID)
			m.FailNextRetryAfter(1, tc.status, tc.after)
			subs := attendees(4)
			c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{BatchSize: len(subs), BatchWindow: time.Hour})
			for i, err := range subscribeAll(t.Context(), c, subs) {
				var ra retryAfter
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || isPermanent(err) != tc.permanent ||
					!errors.As(err, &ra) || ra.RetryAfter() != tc.retryAfter {
					t.Errorf("attendee %d: err = %v, want %q, permanent %v, retry after %v", i, err, tc.wantErr, tc.permanent, tc.retryAfter)
				}
			}
			if m.Requests() != 1 || len(m.Members()) != 0 {
				t.Fatalf("%d requests, %d members", m.Requests(), len(m.Members()))
			}
			for i, err := range subscribeAll(t.Context(), c, subs) {
				if err != nil {
					t.Errorf("retry of attendee %d: %v", i, err)
				}
			}
			if len(m.Members()) != len(subs) || m.Requests() != 2 {
				t.Errorf("after the retry: %d members, %d requests", len(m.Members()), m.Requests())
			}
		})
	}
}

// A caller that gives up fails alone; the others of its batch succeed.
func TestSubscribeBatchCallerCanceled(t *testing.T) {
	t.Parallel()
	t.Run("while the batch is in flight", func(t *testing.T) {
		t.Parallel()
		m := providertest.NewMailchimp(t, key, listID)
		m.SetLatency(300 * time.Millisecond)
		subs := attendees(3)
		c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{BatchSize: len(subs), BatchWindow: time.Hour})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		errs := make([]error, len(subs))
		var wg sync.WaitGroup
		for i, s := range subs {
			wg.Go(func() {
				if i == 0 {
					errs[i] = c.Subscribe(ctx, s)
					return
				}
				errs[i] = c.Subscribe(t.Context(), s)
			})
		}
		for m.Requests() == 0 { // the batch is sealed and sent
			time.Sleep(time.Millisecond)
		}
		cancel()
		wg.Wait()
		if !errors.Is(errs[0], context.Canceled) || isPermanent(errs[0]) {
			t.Errorf("the canceled caller: %v", errs[0])
		}
		for i, err := range errs[1:] {
			if err != nil {
				t.Errorf("attendee %d: %v", i+1, err)
			}
		}
		for _, s := range subs[1:] {
			if _, ok := m.Member(s.Email); !ok {
				t.Errorf("%s is not a member", s.Email)
			}
		}
	})
	t.Run("before the batch is sent", func(t *testing.T) {
		t.Parallel()
		m := providertest.NewMailchimp(t, key, listID)
		c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{BatchSize: 2, BatchWindow: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		alone := ada()
		if err := c.Subscribe(ctx, alone); !errors.Is(err, context.DeadlineExceeded) || isPermanent(err) {
			t.Fatalf("err = %v, want a transient deadline error", err)
		}
		// The abandoned batch sends nothing; the next callers get one of
		// their own, without the member who left.
		subs := attendees(2)
		for i, err := range subscribeAll(t.Context(), c, subs) {
			if err != nil {
				t.Errorf("attendee %d: %v", i, err)
			}
		}
		if b := m.Batches(); len(b) != 1 || b[0] != 2 || m.Requests() != 1 {
			t.Errorf("batches %v, %d requests", b, m.Requests())
		}
		if _, ok := m.Member(alone.Email); ok {
			t.Error("the abandoned member was sent")
		}
	})
}

// The same address twice at once (two events) is not sent twice in one
// batch; both calls succeed and the member has both tags.
func TestSubscribeSameAddressAtOnce(t *testing.T) {
	t.Parallel()
	m := providertest.NewMailchimp(t, key, listID)
	c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{})
	a, b := ada(), ada()
	b.Email, b.EventID = "ADA.lovelace@example.com", "gopherfest-2028"
	for i, err := range subscribeAll(t.Context(), c, []registration.Subscriber{a, b}) {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	got, ok := m.Member(a.Email)
	if !ok || got.Status != "subscribed" || len(m.Members()) != 1 || !slices.Equal(got.Tags, []string{event, "gopherfest-2028"}) {
		t.Errorf("member = %+v, %d members", got, len(m.Members()))
	}
	for _, n := range m.Batches() {
		if n != 1 {
			t.Errorf("batches %v", m.Batches())
		}
	}
}

// The member-by-member upserts of existing members never exceed MaxConns
// requests in flight, so Mailchimp's 10-connection limit is never hit.
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
			const n = 200
			subs := attendees(n)
			for _, s := range subs {
				m.Unsubscribe(s.Email)
			}
			m.SetLatency(5 * time.Millisecond)
			c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{MaxConns: tc.maxConns})
			for _, err := range subscribeAll(t.Context(), c, subs) {
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
			for _, got := range m.Members() {
				if got.Status != "unsubscribed" || len(got.Tags) != 1 || got.MergeFields["FNAME"] != "Grace" {
					t.Fatalf("member = %+v", got)
				}
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
