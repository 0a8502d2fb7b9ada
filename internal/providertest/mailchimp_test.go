package providertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	mcKey  = "0123456789abcdef0123456789abcdef-us21"
	mcList = "a1b2c3d4e5"
)

// mailchimpRecTB records the errors a fake reports instead of failing the
// test, for the cases that check the fake's own strictness.
type mailchimpRecTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *mailchimpRecTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *mailchimpRecTB) Helper() {}

func (r *mailchimpRecTB) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

type mcProblem struct {
	Type, Title, Detail, Instance string
	Status                        int
}

// mcCall sends one request with Basic auth (when key is not empty) and
// decodes a problem document if one came back.
func mcCall(t *testing.T, method, url, key, body string) (int, http.Header, mcProblem) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.SetBasicAuth("anystring", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var p mcProblem
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatalf("problem body %q: %v", data, err)
		}
		if p.Status != resp.StatusCode || p.Title == "" || p.Detail == "" || p.Instance == "" || p.Type == "" {
			t.Errorf("incomplete problem document %s", data)
		}
	}
	return resp.StatusCode, resp.Header, p
}

func mcPut(email, statusIfNew string) string {
	return fmt.Sprintf(`{"email_address":%q,"status_if_new":%q,"merge_fields":{"FNAME":"Ada","LNAME":"Lovelace"}}`, email, statusIfNew)
}

func TestMailchimpFake(t *testing.T) {
	t.Parallel()
	ada := "Ada.Lovelace@Example.com"
	adaHash := "2b9150605ac374d671a306b5fcee60a0" // the MD5 of the lower-cased address
	member := "/lists/" + mcList + "/members/" + adaHash
	type step struct {
		method, path, key, body string
		status                  int
		title                   string
	}
	cases := []struct {
		name       string
		setup      func(*Mailchimp)
		steps      []step
		specErrors bool // the fake must report the client as broken
		check      func(*testing.T, *Mailchimp)
	}{
		{name: "upsert creates a member with status_if_new",
			steps: []step{{"PUT", member, mcKey, mcPut(ada, "subscribed"), 200, ""}},
			check: func(t *testing.T, m *Mailchimp) {
				got, ok := m.Member("ada.lovelace@example.com")
				if !ok || got.Status != "subscribed" || got.MergeFields["FNAME"] != "Ada" || got.ID != adaHash {
					t.Errorf("member = %+v, %v", got, ok)
				}
				if m.Upserts() != 1 {
					t.Errorf("upserts = %d", m.Upserts())
				}
			}},
		{name: "identical repeat is not an effective upsert; a change is",
			steps: []step{
				{"PUT", member, mcKey, mcPut(ada, "subscribed"), 200, ""},
				{"PUT", member, mcKey, mcPut(ada, "subscribed"), 200, ""},
				{"PUT", member, mcKey, `{"email_address":"ada.lovelace@example.com","status_if_new":"subscribed","merge_fields":{"LNAME":"King"}}`, 200, ""},
			},
			check: func(t *testing.T, m *Mailchimp) {
				got, _ := m.Member(ada)
				if m.Upserts() != 2 || got.MergeFields["FNAME"] != "Ada" || got.MergeFields["LNAME"] != "King" || got.EmailAddress != ada {
					t.Errorf("upserts = %d, member = %+v", m.Upserts(), got)
				}
			}},
		{name: "status_if_new does not resubscribe an unsubscribed member",
			setup: func(m *Mailchimp) { m.Unsubscribe(ada) },
			steps: []step{{"PUT", member, mcKey, mcPut(ada, "subscribed"), 200, ""}},
			check: func(t *testing.T, m *Mailchimp) {
				if got, _ := m.Member(ada); got.Status != "unsubscribed" {
					t.Errorf("status = %q", got.Status)
				}
			}},
		{name: "pending until confirmed",
			steps: []step{{"PUT", member, mcKey, mcPut(ada, "pending"), 200, ""}},
			check: func(t *testing.T, m *Mailchimp) {
				if got, _ := m.Member(ada); got.Status != "pending" {
					t.Errorf("status = %q", got.Status)
				}
				if !m.Confirm(ada) {
					t.Error("Confirm = false")
				}
				if got, _ := m.Member(ada); got.Status != "subscribed" {
					t.Errorf("status after confirm = %q", got.Status)
				}
			}},
		{name: "tags add and remove; 204",
			steps: []step{
				{"PUT", member, mcKey, mcPut(ada, "subscribed"), 200, ""},
				{"POST", member + "/tags", mcKey, `{"tags":[{"name":"gopherfest-2027","status":"active"},{"name":"old","status":"active"}]}`, 204, ""},
				{"POST", member + "/tags", mcKey, `{"tags":[{"name":"old","status":"inactive"}],"is_syncing":false}`, 204, ""},
			},
			check: func(t *testing.T, m *Mailchimp) {
				if got, _ := m.Member(ada); len(got.Tags) != 1 || got.Tags[0] != "gopherfest-2027" {
					t.Errorf("tags = %v", got.Tags)
				}
			}},
		{name: "tags of an unknown member",
			steps: []step{{"POST", member + "/tags", mcKey, `{"tags":[{"name":"x","status":"active"}]}`, 404, "Resource Not Found"}}},
		{name: "get member by hash and by address, ping",
			steps: []step{
				{"GET", member, mcKey, "", 404, "Resource Not Found"},
				{"PUT", member, mcKey, mcPut(ada, "subscribed"), 200, ""},
				{"GET", member, mcKey, "", 200, ""},
				{"GET", "/lists/" + mcList + "/members/" + ada, mcKey, "", 200, ""},
				{"GET", "/ping", mcKey, "", 200, ""},
			}},
		{name: "POST create, then Member Exists",
			steps: []step{
				{"POST", "/lists/" + mcList + "/members", mcKey, `{"email_address":"ada@example.org","status":"subscribed","tags":["a"]}`, 200, ""},
				{"POST", "/lists/" + mcList + "/members", mcKey, `{"email_address":"ADA@example.org","status":"subscribed"}`, 400, "Member Exists"},
			},
			check: func(t *testing.T, m *Mailchimp) {
				if got, _ := m.Member("ada@example.org"); len(got.Tags) != 1 {
					t.Errorf("member = %+v", got)
				}
			}},
		{name: "wrong key",
			steps: []step{{"PUT", member, "wrong-us21", mcPut(ada, "subscribed"), 401, "API Key Invalid"}}},
		{name: "no key",
			steps: []step{{"PUT", member, "", mcPut(ada, "subscribed"), 401, "API Key Missing"}}},
		{name: "wrong list",
			steps: []step{{"PUT", "/lists/nope/members/" + adaHash, mcKey, mcPut(ada, "subscribed"), 404, "Resource Not Found"}}},
		{name: "forgotten address",
			setup: func(m *Mailchimp) { m.Forget(ada) },
			steps: []step{{"PUT", member, mcKey, mcPut(ada, "subscribed"), 400, "Forgotten Email Not Subscribed"}}},
		{name: "compliance state",
			setup: func(m *Mailchimp) { m.Compliance(ada) },
			steps: []step{{"PUT", member, mcKey, mcPut(ada, "subscribed"), 400, "Member In Compliance State"}}},
		{name: "invalid resource",
			setup: func(m *Mailchimp) { m.InvalidResource(ada) },
			steps: []step{{"PUT", member, mcKey, mcPut(ada, "subscribed"), 400, "Invalid Resource"}}},
		{name: "injected failures, then success",
			setup: func(m *Mailchimp) { m.FailNext(2, 503) },
			steps: []step{
				{"PUT", member, mcKey, mcPut(ada, "subscribed"), 503, "Service Unavailable"},
				{"PUT", member, mcKey, mcPut(ada, "subscribed"), 503, "Service Unavailable"},
				{"PUT", member, mcKey, mcPut(ada, "subscribed"), 200, ""},
			},
			check: func(t *testing.T, m *Mailchimp) {
				if m.Requests() != 3 || m.Upserts() != 1 {
					t.Errorf("requests = %d, upserts = %d", m.Requests(), m.Upserts())
				}
			}},
		{name: "spec violation: bad enum",
			steps:      []step{{"PUT", member, mcKey, mcPut(ada, "maybe"), 400, "Invalid Resource"}},
			specErrors: true},
		{name: "spec violation: missing email_address",
			steps:      []step{{"PUT", member, mcKey, `{"status_if_new":"subscribed"}`, 400, "Invalid Resource"}},
			specErrors: true},
		{name: "spec violation: tags is not an array",
			steps:      []step{{"POST", member + "/tags", mcKey, `{"tags":"gopherfest"}`, 400, "Invalid Resource"}},
			specErrors: true},
		{name: "hash mismatch",
			steps:      []step{{"PUT", member, mcKey, mcPut("someone.else@example.com", "subscribed"), 400, "Invalid Resource"}},
			specErrors: true},
		{name: "raw address instead of hash on PUT",
			steps:      []step{{"PUT", "/lists/" + mcList + "/members/" + ada, mcKey, mcPut(ada, "subscribed"), 400, "Invalid Resource"}},
			specErrors: true},
		{name: "not an operation of the API",
			steps:      []step{{"PUT", "/lists/" + mcList + "/subscribers", mcKey, `{}`, 404, "Resource Not Found"}},
			specErrors: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &mailchimpRecTB{TB: t}
			m := NewMailchimp(rec, mcKey, mcList)
			if tc.setup != nil {
				tc.setup(m)
			}
			for i, s := range tc.steps {
				status, _, p := mcCall(t, s.method, m.URL()+s.path, s.key, s.body)
				if status != s.status || p.Title != s.title {
					t.Fatalf("step %d %s %s: %d %q, want %d %q (%s)", i, s.method, s.path, status, p.Title, s.status, s.title, p.Detail)
				}
				if s.key != mcKey && strings.Contains(p.Detail, s.key) && s.key != "" {
					t.Errorf("the key is echoed: %q", p.Detail)
				}
			}
			if errs := rec.errors(); tc.specErrors != (len(errs) > 0) {
				t.Errorf("fake reported %q, want errors: %v", errs, tc.specErrors)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

func TestMailchimpFakeRetryAfterAndHTML502(t *testing.T) {
	t.Parallel()
	m := NewMailchimp(t, mcKey, mcList)
	m.FailNextRetryAfter(1, 429, 1500*time.Millisecond)
	status, h, p := mcCall(t, "GET", m.URL()+"/ping", mcKey, "")
	if status != 429 || p.Title != "Too Many Requests" || h.Get("Retry-After") != "2" {
		t.Errorf("got %d %q Retry-After %q", status, p.Title, h.Get("Retry-After"))
	}
	m.FailNext(1, 502)
	status, h, _ = mcCall(t, "GET", m.URL()+"/ping", mcKey, "")
	if status != 502 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || h.Get("Retry-After") != "" {
		t.Errorf("got %d %q", status, h.Get("Content-Type"))
	}
}

func TestMailchimpFakeBearerAuth(t *testing.T) {
	t.Parallel()
	m := NewMailchimp(t, mcKey, mcList)
	req, _ := http.NewRequest("GET", m.URL()+"/ping", nil)
	req.Header.Set("Authorization", "Bearer "+mcKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// The fake enforces Mailchimp's 10 simultaneous connections with a 429.
func TestMailchimpFakeConcurrencyLimit(t *testing.T) {
	t.Parallel()
	m := NewMailchimp(t, mcKey, mcList)
	m.SetLatency(500 * time.Millisecond)
	const n = 30
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() {
			status, _, _ := mcCall(t, "GET", m.URL()+"/ping", mcKey, "")
			codes <- status
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[429] == 0 || count[429] != m.Throttled() || count[200]+count[429] != n || count[200] > MailchimpConcurrencyLimit {
		t.Errorf("statuses %v, throttled %d", count, m.Throttled())
	}
	if m.MaxInFlight() <= MailchimpConcurrencyLimit {
		t.Errorf("max in flight %d", m.MaxInFlight())
	}
}
