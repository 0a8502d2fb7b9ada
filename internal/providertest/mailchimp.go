package providertest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/routers"
)

// MailchimpConcurrencyLimit is how many requests Mailchimp serves at once
// for one user; more get 429 "Too Many Requests".
const MailchimpConcurrencyLimit = 10

const mailchimpErrorType = "https://mailchimp.com/developer/marketing/docs/errors/"

// Mailchimp is a strict fake of the Mailchimp Marketing API v3 (batch
// subscribe, the member upsert, create, read and tag endpoints, and ping),
// served under /3.0.
//
// Every request is validated against Mailchimp's OpenAPI description; a
// violation fails the test (tb.Errorf) and is answered 400. So is a
// subscriber hash that is not the MD5 of the lower-cased email_address in
// the body. It checks the API key (HTTP Basic with any user name, or
// Bearer) and the audience id, and enforces Mailchimp's limit of 10
// simultaneous requests with a 429.
type Mailchimp struct {
	tb     testing.TB
	spec   *Spec
	srv    *httptest.Server
	apiKey string
	listID string

	mu          sync.Mutex
	members     map[string]*mailchimpMember // by subscriber hash
	forgotten   map[string]bool             // hashes
	compliance  map[string]bool
	invalid     map[string]bool
	failN       int
	failStatus  int
	failAfter   time.Duration
	latency     time.Duration
	inFlight    int
	maxInFlight int
	requests    int
	upserts     int
	throttled   int
	batches     []int        // members of each batch subscribe call answered 200
	deletions   int          // members deleted for good
	seq         atomic.Int64 // problem instance ids
}

// MailchimpMember is an audience member as the fake stores it.
type MailchimpMember struct {
	ID           string // the subscriber hash
	EmailAddress string
	Status       string // subscribed, pending, unsubscribed, cleaned, transactional
	MergeFields  map[string]any
	Tags         []string // active tags, sorted
}

type mailchimpMember struct {
	email       string
	status      string
	merge       map[string]any
	tags        map[string]bool
	lastChanged time.Time
}

func (m *mailchimpMember) export(hash string) MailchimpMember {
	tags := slices.Sorted(maps.Keys(m.tags))
	return MailchimpMember{ID: hash, EmailAddress: m.email, Status: m.status, MergeFields: maps.Clone(m.merge), Tags: tags}
}

// NewMailchimp starts a fake serving one audience, listID, for one API key.
// The server stops when the test ends.
func NewMailchimp(tb testing.TB, apiKey, listID string) *Mailchimp {
	tb.Helper()
	spec, err := MailchimpSpec()
	if err != nil {
		tb.Fatalf("mailchimp fake: %v", err)
	}
	m := &Mailchimp{
		tb: tb, spec: spec, apiKey: apiKey, listID: listID,
		members:    map[string]*mailchimpMember{},
		forgotten:  map[string]bool{},
		compliance: map[string]bool{},
		invalid:    map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /3.0/ping", m.ping)
	mux.HandleFunc("POST /3.0/lists/{list}", m.batchSubscribe)
	mux.HandleFunc("POST /3.0/lists/{list}/members", m.createMember)
	mux.HandleFunc("GET /3.0/lists/{list}/members/{hash}", m.getMember)
	mux.HandleFunc("PUT /3.0/lists/{list}/members/{hash}", m.putMember)
	mux.HandleFunc("POST /3.0/lists/{list}/members/{hash}/tags", m.postTags)
	mux.HandleFunc("POST /3.0/lists/{list}/members/{hash}/actions/delete-permanent", m.deletePermanent)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		m.tb.Errorf("mailchimp fake: %s %s is in the spec but not implemented by the fake", r.Method, r.URL.Path)
		m.problem(w, http.StatusNotImplemented, "Not Implemented", "The fake does not implement this operation.")
	})
	m.srv = httptest.NewServer(m.middleware(mux))
	tb.Cleanup(m.srv.Close)
	return m
}

// URL is the API base including /3.0, as MAILCHIMP_API_BASE takes it.
func (m *Mailchimp) URL() string { return m.srv.URL + "/3.0" }

// SetLatency delays every authenticated answer by d (the request counts as
// in flight meanwhile).
func (m *Mailchimp) SetLatency(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.latency = d
}

// FailNext answers the next n authenticated, valid requests with status and
// Mailchimp's problem document for it (a 502 gets a CDN's HTML page), and
// no Retry-After header, as Mailchimp sends none.
func (m *Mailchimp) FailNext(n, status int) { m.FailNextRetryAfter(n, status, 0) }

// FailNextRetryAfter is FailNext with a Retry-After header of after
// (whole seconds) when after > 0.
func (m *Mailchimp) FailNextRetryAfter(n, status int, after time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failN, m.failStatus, m.failAfter = n, status, after
}

// Forget deletes email permanently (GDPR): later upserts of it get 400
// "Forgotten Email Not Subscribed".
func (m *Mailchimp) Forget(email string) {
	h := mailchimpHash(email)
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.members, h)
	m.forgotten[h] = true
}

// Deletions counts the members deleted for good through the API.
func (m *Mailchimp) Deletions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deletions
}

// Compliance puts email in a compliance state: upserts of it get 400
// "Member In Compliance State".
func (m *Mailchimp) Compliance(email string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.compliance[mailchimpHash(email)] = true
}

// InvalidResource makes Mailchimp call email fake or invalid: upserts of it
// get 400 "Invalid Resource".
func (m *Mailchimp) InvalidResource(email string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.invalid[mailchimpHash(email)] = true
}

// Unsubscribe marks email as an unsubscribed member, adding it if needed:
// what a person clicking "unsubscribe" in a campaign leaves behind.
func (m *Mailchimp) Unsubscribe(email string) {
	h := mailchimpHash(email)
	m.mu.Lock()
	defer m.mu.Unlock()
	mem := m.members[h]
	if mem == nil {
		mem = &mailchimpMember{email: email, merge: map[string]any{}, tags: map[string]bool{}}
		m.members[h] = mem
	}
	mem.status = "unsubscribed"
	mem.lastChanged = time.Now()
}

// Confirm is the person clicking the double opt-in link: a pending member
// becomes subscribed. It reports whether email was pending.
func (m *Mailchimp) Confirm(email string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem := m.members[mailchimpHash(email)]
	if mem == nil || mem.status != "pending" {
		return false
	}
	mem.status = "subscribed"
	mem.lastChanged = time.Now()
	return true
}

// Member returns the member with this address (any case).
func (m *Mailchimp) Member(email string) (MailchimpMember, bool) {
	h := mailchimpHash(email)
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[h]
	if !ok {
		return MailchimpMember{}, false
	}
	return mem.export(h), true
}

// Members returns all members, ordered by address.
func (m *Mailchimp) Members() []MailchimpMember {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]MailchimpMember, 0, len(m.members))
	for h, mem := range m.members {
		out = append(out, mem.export(h))
	}
	slices.SortFunc(out, func(a, b MailchimpMember) int { return strings.Compare(a.EmailAddress, b.EmailAddress) })
	return out
}

// Upserts counts the effective member writes: creations, and updates that
// changed something. An identical repeat of a PUT does not count.
func (m *Mailchimp) Upserts() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.upserts
}

// Batches returns the member count of each batch subscribe call that was
// answered 200, in order.
func (m *Mailchimp) Batches() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.batches)
}

// Requests counts every request received, valid or not.
func (m *Mailchimp) Requests() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests
}

// MaxInFlight is the most authenticated requests seen in flight at once,
// including any beyond the limit that were refused.
func (m *Mailchimp) MaxInFlight() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.maxInFlight
}

// Throttled counts the requests refused with 429 for exceeding the
// concurrency limit (injected failures not included).
func (m *Mailchimp) Throttled() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.throttled
}

func mailchimpHash(email string) string {
	sum := md5.Sum([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

// middleware does what every endpoint shares, in this order: spec
// validation, authentication, the concurrency limit, latency, injected
// failures.
func (m *Mailchimp) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.requests++
		m.mu.Unlock()

		if err := m.spec.Validate(r); err != nil {
			m.tb.Errorf("mailchimp fake: %v", err)
			switch {
			case errors.Is(err, routers.ErrPathNotFound):
				m.problem(w, http.StatusNotFound, "Resource Not Found", "The requested resource could not be found.")
			case errors.Is(err, routers.ErrMethodNotAllowed):
				m.problem(w, http.StatusMethodNotAllowed, "Method Not Allowed",
					"The requested method and resource are not compatible. See the Allow header for this resource's available methods.")
			default:
				m.problem(w, http.StatusBadRequest, "Invalid Resource", err.Error())
			}
			return
		}
		if title, ok := m.authenticate(r); !ok {
			m.problem(w, http.StatusUnauthorized, title,
				"Your API key may be invalid, or you've attempted to access the wrong datacenter.")
			return
		}

		m.mu.Lock()
		m.inFlight++
		m.maxInFlight = max(m.maxInFlight, m.inFlight)
		over := m.inFlight > MailchimpConcurrencyLimit
		if over {
			m.throttled++
		}
		latency := m.latency
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			m.inFlight--
			m.mu.Unlock()
		}()
		if over {
			m.problem(w, http.StatusTooManyRequests, "Too Many Requests",
				"You have exceeded the limit of 10 simultaneous connections.")
			return
		}
		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-r.Context().Done():
				return
			}
		}

		m.mu.Lock()
		var fail int
		var after time.Duration
		if m.failN > 0 {
			m.failN--
			fail, after = m.failStatus, m.failAfter
		}
		m.mu.Unlock()
		if fail != 0 {
			m.fault(w, fail, after)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate accepts HTTP Basic with any user name and the key as
// password, or a Bearer key. On failure it returns Mailchimp's title.
func (m *Mailchimp) authenticate(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "API Key Missing", false
	}
	var key string
	if _, pass, ok := r.BasicAuth(); ok {
		key = pass
	} else if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		key = tok
	}
	if key == "" || key != m.apiKey {
		return "API Key Invalid", false
	}
	return "", true
}

func (m *Mailchimp) fault(w http.ResponseWriter, status int, after time.Duration) {
	if after > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((after+time.Second-1)/time.Second)))
	}
	switch status {
	case http.StatusBadGateway: // a CDN timeout: HTML, not problem+json
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		fmt.Fprint(w, "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n")
	case http.StatusTooManyRequests:
		m.problem(w, status, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.")
	case http.StatusUnauthorized:
		m.problem(w, status, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter.")
	case http.StatusNotFound:
		m.problem(w, status, "Resource Not Found", "The requested resource could not be found.")
	case http.StatusInternalServerError:
		m.problem(w, status, "Internal Server Error", "An unexpected internal error has occurred. Please contact Support for more information.")
	default:
		m.problem(w, status, http.StatusText(status), "Injected failure.")
	}
}

type mailchimpFieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// problem writes Mailchimp's RFC 7807 error document.
func (m *Mailchimp) problem(w http.ResponseWriter, status int, title, detail string, fields ...mailchimpFieldError) {
	instance := fmt.Sprintf("00000000-0000-4000-8000-%012d", m.seq.Add(1))
	body := map[string]any{"type": mailchimpErrorType, "title": title, "status": status, "detail": detail, "instance": instance}
	if len(fields) > 0 {
		body["errors"] = fields
	}
	w.Header().Set("Content-Type", "application/problem+json; charset=utf-8")
	w.Header().Set("X-Request-Id", instance)
	w.Header().Set("Link", `<https://us1.api.mailchimp.com/schema/3.0/ProblemDetailDocument.json>; rel="describedBy"`)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (m *Mailchimp) notFound(w http.ResponseWriter) {
	m.problem(w, http.StatusNotFound, "Resource Not Found", "The requested resource could not be found.")
}

func writeMailchimpJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func (m *Mailchimp) ping(w http.ResponseWriter, _ *http.Request) {
	writeMailchimpJSON(w, map[string]string{"health_status": "Everything's Chimpy!"})
}

// mailchimpMemberBody is the union of the create (POST) and upsert (PUT)
// bodies; the spec has already checked which fields each allows.
type mailchimpMemberBody struct {
	EmailAddress string         `json:"email_address"`
	Status       string         `json:"status"`
	StatusIfNew  string         `json:"status_if_new"`
	MergeFields  map[string]any `json:"merge_fields"`
	Tags         []string       `json:"tags"`
}

func (m *Mailchimp) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		m.problem(w, http.StatusBadRequest, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.")
		return false
	}
	return true
}

// rejectAddress answers the per-address refusals of a member write, and
// reports whether it did. Call with m.mu held.
func (m *Mailchimp) rejectAddress(w http.ResponseWriter, hash, email string) bool {
	title, detail := m.refusalProblem(hash, email)
	if title == "" {
		return false
	}
	m.problem(w, http.StatusBadRequest, title, detail)
	return true
}

// refusalProblem is the title and detail of Mailchimp's refusal of a write
// of this address, or "" when there is none. Call with m.mu held.
func (m *Mailchimp) refusalProblem(hash, email string) (title, detail string) {
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || a.Name != "" || m.invalid[hash] {
		return "Invalid Resource", email + " looks fake or invalid, please enter a real email address."
	}
	if m.forgotten[hash] {
		return "Forgotten Email Not Subscribed",
			email + " was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list."
	}
	if m.compliance[hash] {
		return "Member In Compliance State",
			email + " is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed."
	}
	return "", ""
}

// refusal is refusalProblem as a batch error: the message, and the field
// at fault when it is the address itself. Call with m.mu held.
func (m *Mailchimp) refusal(hash, email string) (msg, field string) {
	title, detail := m.refusalProblem(hash, email)
	if title == "Invalid Resource" {
		return detail, "email_address"
	}
	return detail, ""
}

func (m *Mailchimp) putMember(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("list") != m.listID {
		m.notFound(w)
		return
	}
	var b mailchimpMemberBody
	if !m.decode(w, r, &b) {
		return
	}
	hash := r.PathValue("hash")
	if want := mailchimpHash(b.EmailAddress); hash != want {
		m.tb.Errorf("mailchimp fake: PUT member hash %s is not md5(lower(%q)) = %s", hash, b.EmailAddress, want)
		m.problem(w, http.StatusBadRequest, "Invalid Resource",
			"The subscriber hash in the URL does not match the email_address in the request body.")
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rejectAddress(w, hash, b.EmailAddress) {
		return
	}
	mem, exists := m.members[hash]
	if !exists {
		status := b.StatusIfNew
		if b.Status != "" {
			status = b.Status
		}
		mem = &mailchimpMember{email: b.EmailAddress, status: status, merge: map[string]any{}, tags: map[string]bool{}}
		maps.Copy(mem.merge, b.MergeFields)
		mem.lastChanged = time.Now()
		m.members[hash] = mem
		m.upserts++
	} else {
		before := mem.export(hash)
		if !strings.EqualFold(mem.email, b.EmailAddress) { // same hash: same address
			mem.email = b.EmailAddress
		}
		if b.Status != "" { // status_if_new never changes an existing member
			mem.status = b.Status
		}
		maps.Copy(mem.merge, b.MergeFields)
		if !reflect.DeepEqual(before, mem.export(hash)) {
			mem.lastChanged = time.Now()
			m.upserts++
		}
	}
	writeMailchimpJSON(w, m.memberJSON(hash, mem))
}

func (m *Mailchimp) createMember(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("list") != m.listID {
		m.notFound(w)
		return
	}
	var b mailchimpMemberBody
	if !m.decode(w, r, &b) {
		return
	}
	hash := mailchimpHash(b.EmailAddress)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rejectAddress(w, hash, b.EmailAddress) {
		return
	}
	if _, exists := m.members[hash]; exists {
		m.problem(w, http.StatusBadRequest, "Member Exists",
			b.EmailAddress+" is already a list member. Use PUT to insert or update list members.")
		return
	}
	mem := &mailchimpMember{email: b.EmailAddress, status: b.Status, merge: map[string]any{}, tags: map[string]bool{}, lastChanged: time.Now()}
	maps.Copy(mem.merge, b.MergeFields)
	for _, t := range b.Tags {
		mem.tags[t] = true
	}
	m.members[hash] = mem
	m.upserts++
	writeMailchimpJSON(w, m.memberJSON(hash, mem))
}

// lookup finds a member by hash or, as Mailchimp also allows, by address.
// Call with m.mu held.
func (m *Mailchimp) lookup(idOrEmail string) (string, *mailchimpMember) {
	if mem, ok := m.members[idOrEmail]; ok {
		return idOrEmail, mem
	}
	if strings.Contains(idOrEmail, "@") {
		h := mailchimpHash(idOrEmail)
		return h, m.members[h]
	}
	return idOrEmail, nil
}

func (m *Mailchimp) getMember(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("list") != m.listID {
		m.notFound(w)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	hash, mem := m.lookup(r.PathValue("hash"))
	if mem == nil {
		m.notFound(w)
		return
	}
	writeMailchimpJSON(w, m.memberJSON(hash, mem))
}

// deletePermanent deletes a member for good, as Mailchimp does: 204 with
// no body; later upserts of the address are refused ("Forgotten Email Not
// Subscribed"). The call takes no body; an unknown member is a 404.
func (m *Mailchimp) deletePermanent(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("list") != m.listID {
		m.notFound(w)
		return
	}
	if body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10)); len(body) > 0 {
		m.tb.Errorf("mailchimp fake: delete-permanent takes no body, got %q", body)
		m.problem(w, http.StatusBadRequest, "Invalid Resource", "The resource submitted could not be validated.")
		return
	}
	hash := r.PathValue("hash")
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.members[hash]; !ok {
		m.notFound(w)
		return
	}
	delete(m.members, hash)
	m.forgotten[hash] = true
	m.deletions++
	w.WriteHeader(http.StatusNoContent)
}

func (m *Mailchimp) postTags(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("list") != m.listID {
		m.notFound(w)
		return
	}
	var b struct {
		Tags []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"tags"`
	}
	if !m.decode(w, r, &b) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, mem := m.lookup(r.PathValue("hash"))
	if mem == nil {
		m.notFound(w)
		return
	}
	for _, t := range b.Tags {
		if strings.TrimSpace(t.Name) == "" {
			m.problem(w, http.StatusBadRequest, "Invalid Resource", "The resource submitted could not be validated.",
				mailchimpFieldError{Field: "tags.name", Message: "A tag name is required."})
			return
		}
	}
	for _, t := range b.Tags {
		switch t.Status {
		case "inactive":
			delete(mem.tags, t.Name)
		default: // "active"; Mailchimp treats a missing status as active
			mem.tags[t.Name] = true
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// memberJSON is the member as Mailchimp returns it (ListMembers2, trimmed).
// Call with m.mu held.
func (m *Mailchimp) memberJSON(hash string, mem *mailchimpMember) map[string]any {
	tags := []map[string]any{}
	for i, name := range slices.Sorted(maps.Keys(mem.tags)) {
		tags = append(tags, map[string]any{"id": i + 1, "name": name})
	}
	merge := maps.Clone(mem.merge)
	for _, k := range []string{"FNAME", "LNAME", "ADDRESS", "PHONE"} {
		if _, ok := merge[k]; !ok {
			merge[k] = ""
		}
	}
	full := strings.TrimSpace(fmt.Sprint(merge["FNAME"]) + " " + fmt.Sprint(merge["LNAME"]))
	return map[string]any{
		"id":              hash,
		"email_address":   mem.email,
		"unique_email_id": hash[:10],
		"contact_id":      hash,
		"full_name":       full,
		"email_type":      "html",
		"status":          mem.status,
		"merge_fields":    merge,
		"last_changed":    mem.lastChanged.UTC().Format(time.RFC3339),
		"source":          "API - Generic",
		"tags_count":      len(tags),
		"tags":            tags,
		"list_id":         m.listID,
	}
}

// MailchimpMaxBatch is the most members one batch subscribe call takes.
const MailchimpMaxBatch = 500

type mailchimpBatchBody struct {
	Members []struct {
		EmailAddress string         `json:"email_address"`
		Status       string         `json:"status"`
		MergeFields  map[string]any `json:"merge_fields"`
		// Not in the saved spec's AddListMembers, but taken by the API
		// (hence sync_tags): tag names, created on first use.
		Tags []string `json:"tags"`
	} `json:"members"`
	UpdateExisting bool `json:"update_existing"`
	SyncTags       bool `json:"sync_tags"`
}

type mailchimpBatchError struct {
	EmailAddress string `json:"email_address"`
	Error        string `json:"error"`
	ErrorCode    string `json:"error_code"`
	Field        string `json:"field,omitempty"`
	FieldMessage string `json:"field_message,omitempty"`
}

// batchSubscribe is POST /lists/{list_id}: each member is created with its
// status, or, when it exists, refused with ERROR_CONTACT_EXISTS unless
// update_existing is true, which overwrites its status (resubscribing an
// unsubscribed member) and merge fields and adds its tags (sync_tags:
// replaces them). Per-address refusals are entries of errors; the call
// itself answers 200.
func (m *Mailchimp) batchSubscribe(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("list") != m.listID {
		m.notFound(w)
		return
	}
	var b mailchimpBatchBody
	if !m.decode(w, r, &b) {
		return
	}
	if n := len(b.Members); n > MailchimpMaxBatch {
		m.tb.Errorf("mailchimp fake: batch subscribe of %d members; at most %d are allowed", n, MailchimpMaxBatch)
		m.problem(w, http.StatusBadRequest, "Invalid Resource", "The resource submitted could not be validated.",
			mailchimpFieldError{Field: "members", Message: fmt.Sprintf("At most %d members may be added or updated with each call.", MailchimpMaxBatch)})
		return
	}
	for i, mb := range b.Members {
		if mb.Status == "" {
			m.tb.Errorf("mailchimp fake: batch subscribe member %d (%s) has no status", i, mb.EmailAddress)
			m.problem(w, http.StatusBadRequest, "Invalid Resource", "The resource submitted could not be validated.",
				mailchimpFieldError{Field: fmt.Sprintf("members.%d.status", i), Message: "This value should not be blank."})
			return
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	created, updated := []map[string]any{}, []map[string]any{}
	errs := []mailchimpBatchError{}
	seen := map[string]bool{}
	for _, mb := range b.Members {
		email, hash := mb.EmailAddress, mailchimpHash(mb.EmailAddress)
		if reason, field := m.refusal(hash, email); reason != "" {
			be := mailchimpBatchError{EmailAddress: email, Error: reason, ErrorCode: "ERROR_GENERIC"}
			if field != "" {
				be.Field, be.FieldMessage = field, "Please enter a real email address."
			}
			errs = append(errs, be)
			continue
		}
		if seen[hash] {
			errs = append(errs, mailchimpBatchError{EmailAddress: email, ErrorCode: "ERROR_GENERIC",
				Error: email + " is in the request more than once; send each address once or set skip_duplicate_check."})
			continue
		}
		seen[hash] = true
		mem, exists := m.members[hash]
		switch {
		case !exists:
			mem = &mailchimpMember{email: email, status: mb.Status, merge: map[string]any{}, tags: map[string]bool{}, lastChanged: time.Now()}
			maps.Copy(mem.merge, mb.MergeFields)
			for _, t := range mb.Tags {
				mem.tags[t] = true
			}
			m.members[hash] = mem
			m.upserts++
			created = append(created, m.memberJSON(hash, mem))
		case !b.UpdateExisting:
			errs = append(errs, mailchimpBatchError{EmailAddress: email, ErrorCode: "ERROR_CONTACT_EXISTS",
				Error: email + " is already a list member, do you want to update? please provide update_existing:true in the request body"})
		default:
			before := mem.export(hash)
			mem.email, mem.status = email, mb.Status
			maps.Copy(mem.merge, mb.MergeFields)
			if b.SyncTags {
				clear(mem.tags)
			}
			for _, t := range mb.Tags {
				mem.tags[t] = true
			}
			if !reflect.DeepEqual(before, mem.export(hash)) {
				mem.lastChanged = time.Now()
				m.upserts++
			}
			updated = append(updated, m.memberJSON(hash, mem))
		}
	}
	m.batches = append(m.batches, len(b.Members))
	writeMailchimpJSON(w, map[string]any{
		"new_members":     created,
		"updated_members": updated,
		"errors":          errs,
		"total_created":   len(created),
		"total_updated":   len(updated),
		"error_count":     len(errs),
		"_links":          []any{},
	})
}
