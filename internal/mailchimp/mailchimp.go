// Package mailchimp adds consenting attendees to a Mailchimp audience through
// the Marketing API v3: concurrent subscriptions are batched into one batch
// subscribe call (POST /lists/{list_id}, up to 500 members) that creates new
// members with a tag naming the event; an address already on the list gets
// the idempotent upsert (PUT by subscriber hash) and tag call of its own.
// Mailchimp has no official Go SDK the module proxy serves, so this is a
// small net/http client of its own.
package mailchimp

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxConns is the default cap on concurrent requests per Client.
// Mailchimp answers 429 beyond 10 simultaneous connections per user.
const DefaultMaxConns = 10

const (
	defaultTimeout = 30 * time.Second
	maxErrorBody   = 64 << 10
	maxRetryAfter  = 24 * time.Hour
)

// Options tune a Client.
type Options struct {
	// DoubleOptIn creates new members as "pending": Mailchimp then emails
	// them a confirmation link. Otherwise they are "subscribed" at once.
	DoubleOptIn bool
	// MaxConns caps the requests in flight at once (default 10).
	MaxConns int
	// HTTPClient replaces the default client (30 s timeout, MaxConns
	// connections per host).
	HTTPClient *http.Client
	// BatchWindow is how long a batch waits for more members after its
	// first (default 25 ms); a full batch is sent at once.
	BatchWindow time.Duration
	// BatchSize caps the members of one batch (default and at most 500).
	BatchSize int
}

// Client talks to one Mailchimp audience. It is safe for concurrent use.
type Client struct {
	base        string // e.g. https://us21.api.mailchimp.com/3.0
	listID      string
	auth        string // the Authorization header value; never logged
	statusIfNew string
	hc          *http.Client
	sem         chan struct{}
	window      time.Duration
	batchSize   int

	mu   sync.Mutex
	open *batch // the batch new members join; nil when none is open
}

// HTTPClient is the client New uses by default: a 30 s timeout and at
// most maxConns connections to the API. Its Transport may be wrapped
// (tracing).
func HTTPClient(maxConns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = maxConns
	tr.MaxIdleConnsPerHost = maxConns
	return &http.Client{Timeout: defaultTimeout, Transport: tr}
}

// New returns a client for the audience listID. apiBase is the API root
// including /3.0, e.g. https://us21.api.mailchimp.com/3.0.
func New(apiBase, apiKey, listID string, o Options) *Client {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = HTTPClient(o.MaxConns)
	}
	if o.BatchWindow <= 0 {
		o.BatchWindow = DefaultBatchWindow
	}
	if o.BatchSize <= 0 || o.BatchSize > MaxBatch {
		o.BatchSize = MaxBatch
	}
	status := "subscribed"
	if o.DoubleOptIn {
		status = "pending"
	}
	return &Client{
		base:        strings.TrimRight(apiBase, "/"),
		listID:      listID,
		auth:        "Basic " + base64.StdEncoding.EncodeToString([]byte("registrar:"+apiKey)),
		statusIfNew: status,
		hc:          hc,
		sem:         make(chan struct{}, o.MaxConns),
		window:      o.BatchWindow,
		batchSize:   o.BatchSize,
	}
}

// String describes the client without its credentials.
func (c *Client) String() string {
	return fmt.Sprintf("mailchimp.Client{base: %s, list: %s}", c.base, c.listID)
}

// SubscriberHash is Mailchimp's member id: the hex MD5 of the lower-cased
// address.
func SubscriberHash(email string) string {
	sum := md5.Sum([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

// MemberID is the member id of email at Mailchimp (the subscriber hash):
// what a job deleting the member carries instead of the address.
func (c *Client) MemberID(email string) string { return SubscriberHash(email) }

// ForgetMember deletes a member and all of their personal data from the
// audience for good (POST .../members/{hash}/actions/delete-permanent):
// Mailchimp then refuses to add the address again. A member Mailchimp does
// not know (404: never added, or deleted before) counts as deleted.
func (c *Client) ForgetMember(ctx context.Context, memberID string) error {
	if len(memberID) != 32 || strings.Trim(memberID, "0123456789abcdef") != "" {
		return &Error{Op: "delete member", Err: fmt.Errorf("%q is not a subscriber hash", memberID), permanent: true}
	}
	target := c.base + "/lists/" + url.PathEscape(c.listID) + "/members/" + memberID + "/actions/delete-permanent"
	err := c.do(ctx, "delete member", http.MethodPost, target, nil)
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound && e.Title == "Resource Not Found" {
		return nil
	}
	return err
}

type memberBody struct {
	EmailAddress string            `json:"email_address"`
	StatusIfNew  string            `json:"status_if_new"`
	MergeFields  map[string]string `json:"merge_fields,omitempty"`
}

type tagsBody struct {
	Tags []tag `json:"tags"`
}

type tag struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// do sends one JSON request, holding a slot of the client's semaphore until
// the response is fully read.
func (c *Client) do(ctx context.Context, op, method, target string, in any) error {
	var payload []byte
	if in != nil {
		var err error
		if payload, err = json.Marshal(in); err != nil {
			return &Error{Op: op, Err: err, permanent: true}
		}
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return &Error{Op: op, Err: ctx.Err()}
	}
	defer func() { <-c.sem }()

	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return &Error{Op: op, Err: err, permanent: true}
	}
	c.setHeaders(req)
	if payload == nil {
		req.Header.Del("Content-Type") // a call without a body
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// Network failures and timeouts are transient. The URL in the error
		// holds the list id and hash, never the key (it is in a header).
		return &Error{Op: op, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
		return nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return responseError(op, resp, data)
}

func (c *Client) setHeaders(req *http.Request) {
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "registrar")
}

// Error is a failed Mailchimp call. When Mailchimp answered, StatusCode,
// Title and Detail come from its problem document; otherwise Err is the
// transport failure. A member refused inside a successful batch call has
// Code and Detail from its entry in the answer's errors, and no StatusCode.
type Error struct {
	Op         string // "batch subscribe", "upsert member" or "tag member"
	StatusCode int    // 0 when no response arrived, or for a member's batch error
	Code       string // a batch error's error_code, e.g. ERROR_GENERIC
	Title      string // e.g. "Forgotten Email Not Subscribed"
	Detail     string
	Fields     []FieldError // per-field problems of an "Invalid Resource"
	Instance   string       // Mailchimp's request id, for its support
	Err        error

	retryAfter time.Duration
	permanent  bool
}

// FieldError is one entry of a problem document's errors array.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("mailchimp: ")
	b.WriteString(e.Op)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": %d", e.StatusCode)
		if e.Title != "" {
			b.WriteString(" " + e.Title)
		}
	} else if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(" (")
		} else {
			b.WriteString("; ")
		}
		if f.Field != "" {
			b.WriteString(f.Field + ": ")
		}
		b.WriteString(f.Message)
		if i == len(e.Fields)-1 {
			b.WriteString(")")
		}
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.Instance != "" {
		b.WriteString(" [request " + e.Instance + "]")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether retrying the same request cannot succeed.
func (e *Error) Permanent() bool { return e.permanent }

// Temporary reports whether a later retry may succeed (429, 5xx, timeouts,
// network failures).
func (e *Error) Temporary() bool { return !e.permanent }

// RetryAfter is the wait Mailchimp asked for in a Retry-After header, or 0
// when it sent none (its 429s usually carry none).
func (e *Error) RetryAfter() time.Duration { return e.retryAfter }

type problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail"`
	Instance string       `json:"instance"`
	Errors   []FieldError `json:"errors"`
}

// responseError classifies a non-2xx answer. Mailchimp's errors are RFC 7807
// documents; key on status + title (type varies and is sometimes absent).
func responseError(op string, resp *http.Response, data []byte) *Error {
	e := &Error{Op: op, StatusCode: resp.StatusCode}
	var p problem
	parsed := json.Unmarshal(data, &p) == nil && (p.Title != "" || p.Detail != "")
	if parsed {
		e.Title, e.Detail, e.Instance, e.Fields = p.Title, p.Detail, p.Instance, p.Errors
	} else {
		e.Title = http.StatusText(resp.StatusCode) // e.g. a CDN's HTML 502
	}
	e.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	code := resp.StatusCode
	switch {
	case code == http.StatusTooManyRequests, code == http.StatusRequestTimeout, code >= 500:
		e.permanent = false
	case code == http.StatusForbidden && !parsed:
		// "At exceptionally high volumes, you may receive an HTTP 429 or 403
		// without a JSON body": throttling, not a configuration error.
		e.permanent = false
	default:
		// 400 (Forgotten Email Not Subscribed, Member In Compliance State,
		// Invalid Resource, ...), 401/403 (key), 404 (list), 405, 3xx.
		e.permanent = true
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent, bad
// or past. It is capped at a day.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(min(max(secs, 0), int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// Compile-time checks of the small interfaces a worker asserts with errors.As.
var (
	_ interface{ Permanent() bool }           = (*Error)(nil)
	_ interface{ RetryAfter() time.Duration } = (*Error)(nil)
)
