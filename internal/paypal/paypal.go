// Package paypal charges cards through PayPal's REST API (OAuth2
// client credentials, Orders v2, Payments v2) with a small net/http client.
// It implements payment.Processor.
//
// Card data is sent to PayPal and nowhere else: it is never logged, never
// kept after a call, and never part of an error. Log lines carry PayPal's
// debug_id, the HTTP status and the error issue, so that PayPal support can
// trace a call.
package paypal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/registrar/registrar/internal/payment"
)

// Provider is the value of payment.Charge.Provider for PayPal charges.
const Provider = "paypal"

const (
	defaultTimeout = 30 * time.Second
	// tokenTimeout bounds one token request. The request runs detached from
	// the callers waiting for it, so one caller giving up does not fail the
	// others.
	tokenTimeout = 30 * time.Second
	// maxRefreshMargin is how long before expiry a token is replaced.
	maxRefreshMargin = 60 * time.Second
	// maxResponse caps how much of a response body is read.
	maxResponse = 1 << 20
)

// Client is a PayPal REST client. It is safe for concurrent use; all callers
// share one cached access token.
type Client struct {
	base         string
	clientID     string
	clientSecret string
	hc           *http.Client
	log          *slog.Logger
	now          func() time.Time

	// secrets, when set, learns the credentials as sent and each access
	// token issued, so that the log never shows them.
	secrets Secrets

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	inflight  *tokenCall // the one token request under way, if any
	learnt    []string   // the access tokens given to secrets, oldest first
}

// Secrets is what learns the secrets the client comes to hold: the log's
// redaction (logredact.Handler).
type Secrets interface {
	Add(secrets ...string)
	Remove(secrets ...string)
}

// keptTokens is how many of the latest access tokens stay with Secrets: the
// one in use and the one before, which calls in flight may still carry.
const keptTokens = 2

// RedactWith gives s the secrets the client sends that are not in the
// configuration as such: the Basic credentials of the token request
// (base64 of id:secret) at once, and each access token as it is issued,
// before any use; the tokens long replaced are removed again. Call it
// before the client's first use.
func (c *Client) RedactWith(s Secrets) {
	c.secrets = s
	basic := base64.StdEncoding.EncodeToString([]byte(c.clientID + ":" + c.clientSecret))
	s.Add(basic, strings.TrimRight(basic, "="))
}

// tokenCall is one token request that concurrent callers wait for.
type tokenCall struct {
	done  chan struct{}
	token string
	err   error
}

// maxIdleConns is how many idle connections to PayPal are kept: during a
// launch thousands of charges are in flight at once, and a connection closed
// after each (net/http keeps 2 per host by default) costs a new TCP and TLS
// handshake for the next. Over HTTP/2, which PayPal speaks, one connection
// carries them all anyway.
const maxIdleConns = 1024

// HTTPClient is the client New uses by default: a 30 s timeout, and
// connections kept for reuse. Its Transport may be wrapped (tracing).
func HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = maxIdleConns
	tr.MaxIdleConnsPerHost = maxIdleConns
	return &http.Client{Timeout: defaultTimeout, Transport: tr}
}

// New returns a client for the PayPal REST API at baseURL (e.g.
// https://api-m.sandbox.paypal.com). A nil httpClient is replaced by
// HTTPClient(); a nil log discards.
func New(baseURL, clientID, clientSecret string, httpClient *http.Client, log *slog.Logger) *Client {
	if httpClient == nil {
		httpClient = HTTPClient()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		base:         strings.TrimRight(baseURL, "/"),
		clientID:     clientID,
		clientSecret: clientSecret,
		hc:           httpClient,
		log:          log,
		now:          time.Now,
	}
}

var _ payment.Processor = (*Client)(nil)

// accessToken returns a valid access token, fetching one when none is cached
// or the cached one is about to expire. Only one token request is in flight
// at a time: concurrent callers wait for it.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.token != "" && c.now().Before(c.refreshAt) {
		tok := c.token
		c.mu.Unlock()
		return tok, nil
	}
	call := c.inflight
	if call == nil {
		call = &tokenCall{done: make(chan struct{})}
		c.inflight = call
		go c.fetchToken(call)
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.token, call.err
	case <-ctx.Done():
		return "", fmt.Errorf("%w: paypal: waiting for an access token: %w", payment.ErrUnavailable, ctx.Err())
	}
}

func (c *Client) fetchToken(call *tokenCall) {
	ctx, cancel := context.WithTimeout(context.Background(), tokenTimeout)
	defer cancel()
	tok, ttl, err := c.requestToken(ctx)
	c.mu.Lock()
	if err == nil {
		c.learn(tok)
		c.token = tok
		c.refreshAt = c.now().Add(ttl - refreshMargin(ttl))
	}
	c.inflight = nil
	c.mu.Unlock()
	call.token, call.err = tok, err
	close(call.done)
}

// learn gives a new access token to c.secrets, and removes from it the
// tokens older than the keptTokens latest; c.mu is held.
func (c *Client) learn(tok string) {
	if c.secrets == nil {
		return
	}
	c.secrets.Add(tok)
	// PayPal may issue a token still valid again: it is the latest then.
	c.learnt = append(slices.DeleteFunc(c.learnt, func(t string) bool { return t == tok }), tok)
	if n := len(c.learnt) - keptTokens; n > 0 {
		c.secrets.Remove(c.learnt[:n]...)
		c.learnt = append(c.learnt[:0], c.learnt[n:]...)
	}
}

// refreshMargin is how long before its expiry a token of lifetime ttl is
// replaced: 10% of its lifetime, at most 60 s.
func refreshMargin(ttl time.Duration) time.Duration {
	return min(ttl/10, maxRefreshMargin)
}

// invalidate forgets the cached token if it is still used, the one PayPal
// has just refused. Callers that were refused with an older token find the
// new one cached and do not ask for yet another.
func (c *Client) invalidate(used string) {
	c.mu.Lock()
	if c.token == used {
		c.token = ""
	}
	c.mu.Unlock()
}

// requestToken asks PayPal for an access token (OAuth2 client credentials).
func (c *Client) requestToken(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/oauth2/token", strings.NewReader(form))
	if err != nil {
		return "", 0, fmt.Errorf("%w: paypal token request: %w", payment.ErrUnavailable, err)
	}
	req.SetBasicAuth(c.clientID, c.clientSecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "paypal token request failed", slog.String("error", err.Error()))
		return "", 0, fmt.Errorf("%w: paypal token request: %w", payment.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return "", 0, fmt.Errorf("%w: paypal token response: %w", payment.ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := parseError(resp, body)
		level := slog.LevelWarn
		if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			level = slog.LevelError // bad credentials or a malformed request: ours to fix
		}
		c.log.LogAttrs(ctx, level, "paypal refused the token request", e.attrs()...)
		return "", 0, fmt.Errorf("%w: paypal token request: %w", payment.ErrUnavailable, e)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		c.log.LogAttrs(ctx, slog.LevelError, "paypal token response is malformed",
			slog.String("debug_id", resp.Header.Get("Paypal-Debug-Id")))
		return "", 0, fmt.Errorf("%w: paypal token response is malformed", payment.ErrUnavailable)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		c.log.LogAttrs(ctx, slog.LevelError, "paypal issued a token of an unexpected type", slog.String("token_type", tr.TokenType))
		return "", 0, fmt.Errorf("%w: paypal token type %q", payment.ErrUnavailable, tr.TokenType)
	}
	ttl := time.Duration(max(tr.ExpiresIn, 0)) * time.Second
	c.log.LogAttrs(ctx, slog.LevelDebug, "paypal access token issued", slog.Int64("expires_in", tr.ExpiresIn))
	return tr.AccessToken, ttl, nil
}

// response is a PayPal API response, read whole.
type response struct {
	status  int
	body    []byte
	debugID string
	header  http.Header
}

// notSentError is a failure before a request reached PayPal whole: no
// access token, a refused connection, a DNS or TLS failure, a request not
// fully written. PayPal cannot have acted on it.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// call sends one API request with a Bearer token. A 401 invalidates the token
// and the request is sent once more with a fresh one (same body, same
// PayPal-Request-Id). Transport failures wrap payment.ErrUnavailable, and
// also *notSentError when the request never reached PayPal whole; any HTTP
// status is returned as a response for the caller to interpret.
func (c *Client) call(ctx context.Context, op, method, path, requestID string, body any) (*response, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, &notSentError{fmt.Errorf("%w: paypal %s: encode request: %w", payment.ErrUnavailable, op, err)}
		}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.accessToken(ctx)
		if err != nil {
			return nil, &notSentError{err}
		}
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		// wrote records whether the whole request was written to a
		// connection; until then PayPal has nothing it could act on.
		var wrote atomic.Bool
		trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, c.base+path, rd)
		if err != nil {
			return nil, &notSentError{fmt.Errorf("%w: paypal %s: %w", payment.ErrUnavailable, op, err)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if requestID != "" {
			req.Header.Set("PayPal-Request-Id", requestID)
		}
		req.Header.Set("Prefer", "return=representation")
		resp, err := c.hc.Do(req)
		if err != nil {
			sent := wrote.Load()
			c.log.LogAttrs(ctx, slog.LevelWarn, "paypal request failed",
				slog.String("op", op), slog.String("paypal_request_id", requestID),
				slog.Bool("sent", sent), slog.String("error", transportError(err)))
			err = fmt.Errorf("%w: paypal %s: %w", payment.ErrUnavailable, op, err)
			if !sent {
				err = &notSentError{err}
			}
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
		if err != nil {
			c.log.LogAttrs(ctx, slog.LevelWarn, "paypal response could not be read",
				slog.String("op", op), slog.String("paypal_request_id", requestID),
				slog.Int("status", resp.StatusCode), slog.String("debug_id", resp.Header.Get("Paypal-Debug-Id")),
				slog.String("error", transportError(err)))
			return nil, fmt.Errorf("%w: paypal %s: read response: %w", payment.ErrUnavailable, op, err)
		}
		r := &response{status: resp.StatusCode, body: data, debugID: resp.Header.Get("Paypal-Debug-Id"), header: resp.Header}
		if r.status == http.StatusUnauthorized && attempt == 0 {
			c.log.LogAttrs(ctx, slog.LevelInfo, "paypal refused the access token; fetching a new one",
				slog.String("op", op), slog.String("debug_id", r.debugID))
			c.invalidate(tok)
			continue
		}
		return r, nil
	}
}

// transportError describes a transport error without the request URL's
// query (there is none today, but the URL is not ours to print in full).
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// apiError is an error answer from PayPal, in either of its shapes:
// {name, message, debug_id, details[{issue, description}]} or OAuth's
// {error, error_description}.
type apiError struct {
	Status      int
	Name        string
	Message     string
	Issue       string
	Field       string // JSON pointer of the field at fault, if given
	Description string
	DebugID     string
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "paypal answered %d", e.Status)
	if e.Name != "" {
		b.WriteString(" " + e.Name)
	}
	if e.Issue != "" {
		b.WriteString(" " + e.Issue)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	} else if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.DebugID != "" {
		b.WriteString(" (debug_id " + e.DebugID + ")")
	}
	return b.String()
}

func (e *apiError) attrs() []slog.Attr {
	a := []slog.Attr{slog.Int("status", e.Status)}
	if e.Name != "" {
		a = append(a, slog.String("name", e.Name))
	}
	if e.Issue != "" {
		a = append(a, slog.String("issue", e.Issue))
	}
	if e.Field != "" {
		a = append(a, slog.String("field", e.Field))
	}
	a = append(a, slog.String("debug_id", e.DebugID))
	return a
}

// parseError reads an error body. An unreadable body still gives the status
// and the debug id of the header.
func parseError(resp *http.Response, body []byte) *apiError {
	return parseErrorBody(resp.StatusCode, resp.Header.Get("Paypal-Debug-Id"), body)
}

func parseErrorBody(status int, debugID string, body []byte) *apiError {
	e := &apiError{Status: status, DebugID: debugID}
	var v struct {
		Name    string `json:"name"`
		Message string `json:"message"`
		DebugID string `json:"debug_id"`
		Details []struct {
			Issue       string `json:"issue"`
			Field       string `json:"field"` // its "value" is never read: it may echo card data
			Description string `json:"description"`
		} `json:"details"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &v) != nil {
		return e
	}
	e.Name, e.Message = v.Name, v.Message
	if e.DebugID == "" {
		e.DebugID = v.DebugID
	}
	for _, d := range v.Details {
		if d.Issue != "" {
			e.Issue, e.Field, e.Description = d.Issue, d.Field, d.Description
			break
		}
	}
	if e.Issue == "" && v.Error != "" {
		e.Issue, e.Description = v.Error, v.ErrorDescription
	}
	return e
}

func (r *response) apiError() *apiError { return parseErrorBody(r.status, r.debugID, r.body) }

// retryAfter is the wait a 429's Retry-After header asks for, for the log
// and the attendee: delay-seconds or an HTTP-date, the two forms RFC 9110
// allows; 0 when the header is absent, unreadable or in the past.
func (r *response) retryAfter(now time.Time) time.Duration {
	s := strings.TrimSpace(r.header.Get("Retry-After"))
	if s == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(min(max(secs, 0), int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil {
		return min(max(t.Sub(now), 0), 24*time.Hour).Round(time.Second)
	}
	return 0
}
