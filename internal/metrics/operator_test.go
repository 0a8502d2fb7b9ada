package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/buildinfo"
)

// fakeSource answers OperatorStats with stats or err and counts the calls.
type fakeSource struct {
	mu    sync.Mutex
	calls int
	stats OperatorStats
	err   error
}

func (f *fakeSource) OperatorStats(ctx context.Context, eventID string) (OperatorStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if eventID != "conf" {
		return OperatorStats{}, errors.New("wrong event " + eventID)
	}
	return f.stats, f.err
}

func (f *fakeSource) set(st OperatorStats, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats, f.err = st, err
}

func (f *fakeSource) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func scrape(t *testing.T, h http.Handler, header string) (int, http.Header, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if header != "" {
		req.Header.Set("Authorization", header)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func lines(text string) map[string]bool {
	out := map[string]bool{}
	for l := range strings.SplitSeq(text, "\n") {
		out[l] = true
	}
	return out
}

func TestOperatorMetrics(t *testing.T) {
	t.Parallel()
	src := &fakeSource{stats: OperatorStats{
		Tickets:       []TicketSeats{{Ticket: "standard", Capacity: 10, Sold: 7, Held: 2, Left: 1}, {Ticket: "student", Capacity: 5, Sold: 5}},
		Registrations: map[string]int64{"paid": 3, "completed": 4, "needs_attention": 1},
		Jobs: map[JobKey]int64{{Queue: "default", State: "available"}: 5, {Queue: "default", State: "discarded"}: 2,
			{Queue: "custom", State: "running"}: 1},
		OldestAvailable: map[string]time.Duration{"default": 90*time.Second + 500*time.Millisecond},
		Incidents:       map[string]int64{"unresolved": 2},
		Refunds:         map[string]int64{"failed": 1, "succeeded": 3},
	}}
	clk := &clock{t: time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)}
	m := New()
	m.AddOperator(Operator{Source: src, EventID: "conf", Queues: []string{"default", "mailing_list"}, Now: clk.now})
	code, _, text := scrape(t, m.Private(""), "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	got := lines(text)
	version, revision := buildLabels(buildinfo.Read())
	for _, want := range []string{
		"registrar_stats_up 1",
		`registrar_build_info{revision="` + revision + `",version="` + version + `"} 1`,
		`registrar_seats_sold{ticket="standard"} 7`,
		`registrar_seats_held{ticket="standard"} 2`,
		`registrar_seats_left{ticket="standard"} 1`,
		`registrar_seats_capacity{ticket="standard"} 10`,
		`registrar_seats_sold{ticket="student"} 5`,
		`registrar_seats_left{ticket="student"} 0`,
		`registrar_registrations{status="paid"} 3`,
		`registrar_registrations{status="completed"} 4`,
		`registrar_registrations{status="needs_attention"} 1`,
		`registrar_registrations{status="processing"} 0`,
		`registrar_registrations{status="cancelled"} 0`,
		`registrar_jobs{queue="default",state="available"} 5`,
		`registrar_jobs{queue="default",state="discarded"} 2`,
		`registrar_jobs{queue="default",state="running"} 0`,
		`registrar_jobs{queue="mailing_list",state="scheduled"} 0`,
		`registrar_jobs{queue="custom",state="running"} 1`,
		`registrar_job_oldest_available_seconds{queue="default"} 90.5`,
		`registrar_job_oldest_available_seconds{queue="mailing_list"} 0`,
		`registrar_payment_incidents{kind="unresolved"} 2`,
		`registrar_payment_incidents{kind="refund_failed"} 0`,
		`registrar_refunds{outcome="failed"} 1`,
		`registrar_refunds{outcome="succeeded"} 3`,
		`registrar_refunds{outcome="pending"} 0`,
	} {
		if !got[want] {
			t.Errorf("metrics lack the line %s", want)
		}
	}
	if src.count() != 1 {
		t.Fatalf("one scrape read the database %d times", src.count())
	}

	// Scrapes within the cache time are answered from the last reading.
	src.set(OperatorStats{Registrations: map[string]int64{"needs_attention": 2}}, nil)
	clk.add(4 * time.Second)
	for range 3 {
		_, _, text = scrape(t, m.Private(""), "")
	}
	if src.count() != 1 || !lines(text)[`registrar_registrations{status="needs_attention"} 1`] {
		t.Errorf("scrapes within 5 s read the database %d times in all; metrics:\n%s", src.count(), text)
	}
	clk.add(2 * time.Second)
	_, _, text = scrape(t, m.Private(""), "")
	if src.count() != 2 || !lines(text)[`registrar_registrations{status="needs_attention"} 2`] {
		t.Errorf("a scrape after 6 s did not read again (%d readings); metrics:\n%s", src.count(), text)
	}

	// A failed reading answers registrar_stats_up 0 and no stale figure;
	// the rest of the metrics are still served.
	src.set(OperatorStats{}, errors.New("database is locked"))
	clk.add(6 * time.Second)
	code, _, text = scrape(t, m.Private(""), "")
	got = lines(text)
	if code != http.StatusOK || !got["registrar_stats_up 0"] || strings.Contains(text, "registrar_registrations{") ||
		strings.Contains(text, "registrar_seats_sold{") || !strings.Contains(text, "registrar_build_info{") ||
		!strings.Contains(text, "go_goroutines") {
		t.Errorf("after a failed reading: %d\n%s", code, text)
	}
	// The failure is cached too; the database back, figures return.
	src.set(OperatorStats{}, nil)
	scrape(t, m.Private(""), "")
	if src.count() != 3 {
		t.Errorf("a scrape right after a failed reading read again (%d readings)", src.count())
	}
	clk.add(6 * time.Second)
	_, _, text = scrape(t, m.Private(""), "")
	if !lines(text)["registrar_stats_up 1"] || !lines(text)[`registrar_registrations{status="needs_attention"} 0`] {
		t.Errorf("after the database came back:\n%s", text)
	}
}

func TestPrivateHandlerToken(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef-token"
	h := New().Private(token)
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer 0123456789abcdef-tokeN", http.StatusUnauthorized},
		{"token prefix", "Bearer 0123456789abcdef", http.StatusUnauthorized},
		{"token with more", "Bearer " + token + "x", http.StatusUnauthorized},
		{"basic scheme", "Basic " + token, http.StatusUnauthorized},
		{"token alone", token, http.StatusUnauthorized},
		{"bearer", "Bearer " + token, http.StatusOK},
		{"scheme in lower case", "bearer " + token, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, header, body := scrape(t, h, tc.header)
			if code != tc.want {
				t.Fatalf("GET /metrics with %q = %d, want %d", tc.header, code, tc.want)
			}
			if code == http.StatusUnauthorized {
				if !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer") || strings.Contains(body, "registrar_") {
					t.Errorf("401 with WWW-Authenticate %q and body %q", header.Get("WWW-Authenticate"), body)
				}
			} else if !strings.Contains(body, "registrar_build_info{") {
				t.Errorf("200 without the metrics:\n%s", body)
			}
		})
	}
}

func TestPrivateHandlerServesOnlyMetrics(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(New().Private(""))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/healthz", http.StatusNotFound},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestBuildLabels(t *testing.T) {
	t.Parallel()
	const rev = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name              string
		info              *debug.BuildInfo
		version, revision string
	}{
		{"no build information", nil, "(devel)", "unknown"},
		{"work tree without VCS stamp", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)", "unknown"},
		{"released module with revision", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.2"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"},
		}}, "v1.4.2", rev},
		{"modified work tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"},
		}}, "(devel)", rev + "-dirty"},
	}
	for _, tt := range tests {
		if v, r := buildLabels(buildinfo.From(tt.info)); v != tt.version || r != tt.revision {
			t.Errorf("%s: buildLabels = %q, %q; want %q, %q", tt.name, v, r, tt.version, tt.revision)
		}
	}
}
