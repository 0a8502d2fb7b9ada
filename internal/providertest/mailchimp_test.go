package providertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
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

// mcBatchAnswer is the part of a batch subscribe answer the tests read.
type mcBatchAnswer struct {
	NewMembers     []struct{ ID, EmailAddress, Status string } `json:"new_members"`
	UpdatedMembers []struct{ ID, EmailAddress, Status string } `json:"updated_members"`
	Errors         []struct {
		EmailAddress string `json:"email_address"`
		Error        string `json:"error"`
		ErrorCode    string `json:"error_code"`
		Field        string `json:"field"`
	} `json:"errors"`
	TotalCreated int `json:"total_created"`
	TotalUpdated int `json:"total_updated"`
	ErrorCount   int `json:"error_count"`
}

func mcBatch(t *testing.T, m *Mailchimp, list, body string) (int, mcProblem, mcBatchAnswer) {
	t.Helper()
	req, err := http.NewRequest("POST", m.URL()+"/lists/"+list, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("anystring", mcKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var p mcProblem
	var a mcBatchAnswer
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatalf("answer %q: %v", data, err)
		}
	} else if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("problem %q: %v", data, err)
	}
	return resp.StatusCode, p, a
}

func mcMembers(members ...string) string {
	return "[" + strings.Join(members, ",") + "]"
}

func mcMember(email, status string, tags ...string) string {
	tj, _ := json.Marshal(tags)
	if tags == nil {
		tj = []byte("[]")
	}
	return fmt.Sprintf(`{"email_address":%q,"status":%q,"merge_fields":{"FNAME":"Ada","LNAME":"Lovelace"},"tags":%s}`, email, status, tj)
}

func TestMailchimpFakeBatch(t *testing.T) {
	t.Parallel()
	t.Run("new, existing, refused", func(t *testing.T) {
		t.Parallel()
		m := NewMailchimp(t, mcKey, mcList)
		m.Unsubscribe("left@example.org")
		m.Forget("gone@example.org")
		m.Compliance("held@example.org")
		m.InvalidResource("fake@example.org")
		body := `{"update_existing":false,"members":` + mcMembers(
			mcMember("Ada@Example.org", "pending", "gopherfest-2027"),
			mcMember("left@example.org", "subscribed", "gopherfest-2027"),
			mcMember("gone@example.org", "subscribed"),
			mcMember("held@example.org", "subscribed"),
			mcMember("fake@example.org", "subscribed"),
			mcMember("ada@example.org", "pending"),
		) + `}`
		status, p, a := mcBatch(t, m, mcList, body)
		if status != 200 {
			t.Fatalf("status %d %+v", status, p)
		}
		if len(a.NewMembers) != 1 || a.NewMembers[0].ID != mailchimpHash("ada@example.org") || a.NewMembers[0].Status != "pending" ||
			a.TotalCreated != 1 || a.TotalUpdated != 0 || len(a.UpdatedMembers) != 0 || a.ErrorCount != 5 || len(a.Errors) != 5 {
			t.Fatalf("answer %+v", a)
		}
		want := []struct{ email, code, msg, field string }{
			{"left@example.org", "ERROR_CONTACT_EXISTS", "is already a list member", ""},
			{"gone@example.org", "ERROR_GENERIC", "was permanently deleted", ""},
			{"held@example.org", "ERROR_GENERIC", "is in a compliance state", ""},
			{"fake@example.org", "ERROR_GENERIC", "looks fake or invalid", "email_address"},
			{"ada@example.org", "ERROR_GENERIC", "more than once", ""},
		}
		for i, w := range want {
			e := a.Errors[i]
			if e.EmailAddress != w.email || e.ErrorCode != w.code || !strings.Contains(e.Error, w.msg) || e.Field != w.field {
				t.Errorf("error %d = %+v, want %+v", i, e, w)
			}
		}
		if got, _ := m.Member("left@example.org"); got.Status != "unsubscribed" || len(got.Tags) != 0 || len(got.MergeFields) != 0 {
			t.Errorf("the existing member was changed: %+v", got)
		}
		if got, _ := m.Member("ada@example.org"); got.Status != "pending" || got.MergeFields["FNAME"] != "Ada" ||
			len(got.Tags) != 1 || got.Tags[0] != "gopherfest-2027" {
			t.Errorf("new member %+v", got)
		}
		if m.Upserts() != 1 || len(m.Members()) != 2 || !slices.Equal(m.Batches(), []int{6}) {
			t.Errorf("upserts %d, members %d, batches %v", m.Upserts(), len(m.Members()), m.Batches())
		}
	})
	t.Run("update_existing overwrites the status", func(t *testing.T) {
		t.Parallel()
		m := NewMailchimp(t, mcKey, mcList)
		m.Unsubscribe("left@example.org")
		status, _, a := mcBatch(t, m, mcList, `{"update_existing":true,"members":`+
			mcMembers(mcMember("left@example.org", "subscribed", "a"))+`}`)
		if status != 200 || len(a.UpdatedMembers) != 1 || a.TotalUpdated != 1 || len(a.NewMembers) != 0 {
			t.Fatalf("%d %+v", status, a)
		}
		if got, _ := m.Member("left@example.org"); got.Status != "subscribed" || !slices.Equal(got.Tags, []string{"a"}) {
			t.Errorf("member %+v", got)
		}
		// sync_tags replaces the tags; without it they are added.
		mcBatch(t, m, mcList, `{"update_existing":true,"members":`+mcMembers(mcMember("left@example.org", "subscribed", "b"))+`}`)
		if got, _ := m.Member("left@example.org"); !slices.Equal(got.Tags, []string{"a", "b"}) {
			t.Errorf("tags %v", got.Tags)
		}
		mcBatch(t, m, mcList, `{"update_existing":true,"sync_tags":true,"members":`+mcMembers(mcMember("left@example.org", "subscribed", "c"))+`}`)
		if got, _ := m.Member("left@example.org"); !slices.Equal(got.Tags, []string{"c"}) {
			t.Errorf("tags %v", got.Tags)
		}
	})
	t.Run("500 members", func(t *testing.T) {
		t.Parallel()
		m := NewMailchimp(t, mcKey, mcList)
		members := make([]string, MailchimpMaxBatch)
		for i := range members {
			members[i] = mcMember(fmt.Sprintf("a%d@example.org", i), "subscribed")
		}
		if status, p, a := mcBatch(t, m, mcList, `{"members":`+mcMembers(members...)+`}`); status != 200 || a.TotalCreated != MailchimpMaxBatch {
			t.Errorf("%d %+v, created %d", status, p, a.TotalCreated)
		}
	})
	t.Run("wrong list", func(t *testing.T) {
		t.Parallel()
		m := NewMailchimp(t, mcKey, mcList)
		if status, p, _ := mcBatch(t, m, "nope", `{"members":`+mcMembers(mcMember("a@example.org", "subscribed"))+`}`); status != 404 || p.Title != "Resource Not Found" {
			t.Errorf("%d %+v", status, p)
		}
	})
	violations := []struct{ name, body string }{
		{"501 members", func() string {
			members := make([]string, MailchimpMaxBatch+1)
			for i := range members {
				members[i] = mcMember(fmt.Sprintf("a%d@example.org", i), "subscribed")
			}
			return `{"members":` + mcMembers(members...) + `}`
		}()},
		{"no members", `{"update_existing":false}`},
		{"member without status", `{"members":[{"email_address":"a@example.org"}]}`},
		{"bad status", `{"members":[{"email_address":"a@example.org","status":"maybe"}]}`},
		{"update_existing is not a boolean", `{"update_existing":"yes","members":[{"email_address":"a@example.org","status":"subscribed"}]}`},
	}
	for _, v := range violations {
		t.Run("spec violation: "+v.name, func(t *testing.T) {
			t.Parallel()
			rec := &mailchimpRecTB{TB: t}
			m := NewMailchimp(rec, mcKey, mcList)
			status, p, _ := mcBatch(t, m, mcList, v.body)
			if status != 400 || p.Title != "Invalid Resource" || len(rec.errors()) == 0 {
				t.Errorf("%d %q, fake reported %q", status, p.Title, rec.errors())
			}
			if len(m.Members()) != 0 || len(m.Batches()) != 0 {
				t.Errorf("members %d, batches %v", len(m.Members()), m.Batches())
			}
		})
	}
}
