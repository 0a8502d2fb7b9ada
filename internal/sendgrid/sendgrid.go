// Package sendgrid sends the confirmation email through SendGrid's v3 Mail
// Send API (POST /v3/mail/send).
//
// It is a small client of its own rather than the official
// github.com/sendgrid/sendgrid-go: that SDK reports a 4xx or 5xx answer as a
// successful call (only transport failures are Go errors, so every caller has
// to remember to inspect the status), and its default HTTP client has no
// timeout at all. This client returns every failure as an error classified for
// the caller's retry policy:
//
//   - [*Error] with Permanent() == true: retrying cannot help (an invalid
//     message, or SendGrid's 400, 401, 403, 413 and other 4xx answers). Its text
//     carries SendGrid's errors[].message so an operator can act on it.
//   - [*RateLimitError]: SendGrid answered 429; RetryAfter() says how long to
//     wait (from X-RateLimit-Reset, else Retry-After, else one second).
//   - anything else (5xx, timeouts, network errors) is transient.
//
// Mail send has no idempotency key: a retry after an unknown outcome (a
// timeout after SendGrid accepted the request) can send a duplicate. The
// message therefore carries the same Message-ID header as the other mailers
// (so mail clients can collapse a duplicate) and the registration id in
// custom_args (so the Event Webhook data can be deduplicated).
//
// The message's Reply-To becomes the request's reply_to object, and each
// attachment an entry of attachments (base64 content, its bare media type,
// file name, disposition "attachment").
//
// The API key is sent only in the Authorization header; it never appears in
// an error or a log line.
package sendgrid

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/registrar/registrar/internal/email"
)

const (
	// DefaultBaseURL is SendGrid's global API host.
	DefaultBaseURL = "https://api.sendgrid.com"
	// DefaultTimeout bounds a whole request when New is given no client.
	DefaultTimeout = 30 * time.Second

	sendPath          = "/v3/mail/send"
	maxErrorBody      = 64 << 10
	defaultRateWait   = time.Second
	registrationIDArg = "registration_id"
	registrationIDHdr = "X-Registration-ID"
)

// reservedHeaders are the headers SendGrid's Mail Send documentation does
// not let a request set through "headers" (lower case). Those that
// email.Message cannot carry anyway are listed too, for completeness.
var reservedHeaders = map[string]bool{
	"x-sg-id":                   true,
	"x-sg-eid":                  true,
	"received":                  true,
	"dkim-signature":            true,
	"content-type":              true,
	"content-transfer-encoding": true,
	"to":                        true,
	"from":                      true,
	"subject":                   true,
	"reply-to":                  true,
	"cc":                        true,
	"bcc":                       true,
}

// Client sends messages through SendGrid. It is safe for concurrent use.
type Client struct {
	endpoint string
	apiKey   string
	http     *http.Client
	now      func() time.Time // for tests
}

// maxIdleConns is how many idle connections to SendGrid are kept, as many as
// a worker sends at once (net/http keeps 2 per host by default, so every
// other send would open a new TLS connection).
const maxIdleConns = 64

// HTTPClient is the client New uses by default: a DefaultTimeout timeout,
// and connections kept for reuse. Its Transport may be wrapped (tracing).
func HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = maxIdleConns
	tr.MaxIdleConnsPerHost = maxIdleConns
	return &http.Client{Timeout: DefaultTimeout, Transport: tr}
}

// New returns a client for the API at baseURL (e.g. DefaultBaseURL; a
// trailing slash is ignored) authenticating with apiKey. A nil httpClient
// means HTTPClient().
func New(baseURL, apiKey string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = HTTPClient()
	}
	return &Client{
		endpoint: strings.TrimRight(baseURL, "/") + sendPath,
		apiKey:   apiKey,
		http:     httpClient,
		now:      time.Now,
	}
}

// Send submits m and returns SendGrid's X-Message-Id as the reference. A
// message that fails m.Validate is rejected with a permanent error before any
// request is made. If SendGrid accepts the message but omits X-Message-Id
// (seen occasionally), the reference is the message's Message-ID header
// instead, so the send still counts as done.
func (c *Client) Send(ctx context.Context, m email.Message) (string, error) {
	body, messageID, err := requestBody(m)
	if err != nil {
		return "", &Error{permanent: true, msg: err.Error(), err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		// Only a malformed base URL gets here; the error names the URL, not the key.
		return "", &Error{permanent: true, msg: "build request: " + err.Error(), err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "registrar")

	resp, err := c.http.Do(req)
	if err != nil {
		// Transient: a timeout or a network error. The outcome is unknown.
		return "", &Error{msg: "sendgrid: send: " + c.redact(err.Error()), err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	if s := resp.StatusCode; s >= 200 && s < 300 {
		// The status says the message is accepted; the body (empty from
		// SendGrid) is not waited for: a body that stalls after a 202
		// would otherwise turn a sent email into a timeout, and its retry
		// into a second email.
		if ref := strings.TrimSpace(resp.Header.Get("X-Message-Id")); ref != "" {
			return ref, nil
		}
		return messageID, nil
	}
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // allow connection reuse

	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		return "", &RateLimitError{
			Wait:    c.rateLimitWait(resp.Header),
			Message: c.redact(providerMessage(respBody)),
		}
	case s >= 400 && s < 500 && s != http.StatusRequestTimeout:
		return "", &Error{StatusCode: s, permanent: true, msg: c.redact(providerMessage(respBody))}
	default:
		return "", &Error{StatusCode: s, msg: c.redact(providerMessage(respBody))}
	}
}

// redact removes the API key from text that came from elsewhere (a provider
// body or a transport error), in case it was echoed.
func (c *Client) redact(s string) string {
	if c.apiKey == "" {
		return s
	}
	return strings.ReplaceAll(s, c.apiKey, "[redacted]")
}

// rateLimitWait reads how long SendGrid asked us to wait.
func (c *Client) rateLimitWait(h http.Header) time.Duration {
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if sec, err := strconv.ParseInt(v, 10, 64); err == nil {
			return max(time.Unix(sec, 0).Sub(c.now()), 0)
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if sec, err := strconv.ParseInt(v, 10, 64); err == nil && sec >= 0 {
			return time.Duration(sec) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(c.now()), 0)
		}
	}
	return defaultRateWait
}

// Wire format of the request body (the subset this client uses).
type (
	address struct {
		Email string `json:"email"`
		Name  string `json:"name,omitempty"`
	}
	personalization struct {
		To []address `json:"to"`
	}
	content struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	attachment struct {
		Content     string `json:"content"` // base64
		Type        string `json:"type"`
		Filename    string `json:"filename"`
		Disposition string `json:"disposition"`
	}
	request struct {
		Personalizations []personalization `json:"personalizations"`
		From             address           `json:"from"`
		ReplyTo          *address          `json:"reply_to,omitempty"`
		Subject          string            `json:"subject"`
		Content          []content         `json:"content"`
		Attachments      []attachment      `json:"attachments,omitempty"`
		Headers          map[string]string `json:"headers,omitempty"`
		CustomArgs       map[string]string `json:"custom_args"`
	}
)

// requestBody validates m and encodes it as a mail/send body. It also
// returns the Message-ID header value that m.Bytes (the one message builder)
// gives the message, which is sent in "headers" so that every mailer gives a
// message the same Message-ID.
func requestBody(m email.Message) ([]byte, string, error) {
	raw, err := m.Bytes() // validates m
	if err != nil {
		return nil, "", fmt.Errorf("sendgrid: %w", err)
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, "", fmt.Errorf("sendgrid: %w: rendered message does not parse: %v", email.ErrInvalidMessage, err)
	}
	messageID := parsed.Header.Get("Message-ID")

	req := request{
		Personalizations: []personalization{{To: []address{{Email: m.To.Email, Name: recipientName(m.To.Name)}}}},
		From:             address{Email: m.From.Email, Name: m.From.Name},
		Subject:          m.Subject,
		// SendGrid wants text/plain first.
		Content:    []content{{Type: "text/plain", Value: m.Text}, {Type: "text/html", Value: m.HTML}},
		Headers:    map[string]string{"Message-ID": messageID},
		CustomArgs: map[string]string{registrationIDArg: m.ID},
	}
	if m.ReplyTo.Email != "" {
		req.ReplyTo = &address{Email: m.ReplyTo.Email, Name: m.ReplyTo.Name}
	}
	for i, a := range m.Attachments {
		// SendGrid takes a bare media type ("The attachment type cannot
		// contain ';', or CRLF characters"): the parameters are dropped. An
		// invitation still says METHOD:PUBLISH inside the file.
		mediaType, _, err := mime.ParseMediaType(a.ContentType)
		if err != nil { // unreachable: m.Bytes validated it
			return nil, "", fmt.Errorf("sendgrid: %w: Attachments[%d].ContentType: %v", email.ErrInvalidMessage, i, err)
		}
		req.Attachments = append(req.Attachments, attachment{
			Content:     base64.StdEncoding.EncodeToString(a.Data),
			Type:        mediaType,
			Filename:    a.Filename,
			Disposition: "attachment",
		})
	}
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		value := m.Headers[name]
		lower := strings.ToLower(name)
		switch {
		case lower == strings.ToLower(registrationIDHdr):
			req.CustomArgs[registrationIDArg] = value
			req.Headers[name] = value
		case reservedHeaders[lower]:
			return nil, "", fmt.Errorf("sendgrid: %w: Headers[%q]: cannot be set through SendGrid", email.ErrInvalidMessage, name)
		default:
			req.Headers[name] = value
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, "", fmt.Errorf("sendgrid: encode request: %w", err)
	}
	return body, messageID, nil
}

// recipientName makes a display name acceptable to SendGrid, which rejects
// "," and ";" in to.name (its documented limitations): they become spaces,
// and runs of spaces collapse.
func recipientName(name string) string {
	if !strings.ContainsAny(name, ",;") {
		return name
	}
	return strings.Join(strings.Fields(strings.NewReplacer(",", " ", ";", " ").Replace(name)), " ")
}

// providerMessage extracts SendGrid's errors[].message values (with their
// field when there is one) from an error body, or describes the body.
func providerMessage(body []byte) string {
	var parsed struct {
		Errors []struct {
			Message string          `json:"message"`
			Field   json.RawMessage `json:"field"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &parsed) == nil && len(parsed.Errors) > 0 {
		msgs := make([]string, 0, len(parsed.Errors))
		for _, e := range parsed.Errors {
			var field string
			_ = json.Unmarshal(e.Field, &field) // null, absent or not a string: no field
			msg := strings.TrimSpace(e.Message)
			if field != "" && field != "null" {
				msg = field + ": " + msg
			}
			if msg != "" {
				msgs = append(msgs, msg)
			}
		}
		if len(msgs) > 0 {
			return strings.Join(msgs, "; ")
		}
	}
	text := strings.TrimSpace(string(body))
	if text == "" {
		return "(empty body)"
	}
	if len(text) > 200 {
		text = text[:200]
		for !utf8.ValidString(text) {
			text = text[:len(text)-1]
		}
		text += "…"
	}
	return strconv.Quote(text)
}

// Error is a failed send that is not a rate limit. Permanent reports whether
// retrying the same message can help.
type Error struct {
	StatusCode int // SendGrid's HTTP status; 0 when no response was involved
	permanent  bool
	msg        string
	err        error
}

func (e *Error) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("sendgrid: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.msg)
	}
	return e.msg
}

// Permanent reports whether retrying cannot help.
func (e *Error) Permanent() bool { return e.permanent }

// Unwrap returns the underlying error, if any: email.ErrInvalidMessage for an
// invalid message, the transport error (e.g. context.DeadlineExceeded) for a
// request that got no answer.
func (e *Error) Unwrap() error { return e.err }

// RateLimitError is SendGrid's 429: retry after RetryAfter.
type RateLimitError struct {
	Wait    time.Duration
	Message string
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("sendgrid: 429 Too Many Requests (retry after %s): %s", e.Wait, e.Message)
}

// RetryAfter is how long SendGrid asked us to wait before the next request.
func (e *RateLimitError) RetryAfter() time.Duration { return e.Wait }

var (
	_ interface{ Permanent() bool }           = (*Error)(nil)
	_ interface{ RetryAfter() time.Duration } = (*RateLimitError)(nil)
)
