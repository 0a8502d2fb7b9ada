package providertest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SendGrid's documented limits.
const (
	sendGridMaxBody       = 30 << 20
	sendGridMaxRecipients = 1000
	sendGridRateLimit     = 600
	sendGridAuthMessage   = "The provided authorization grant is invalid, expired, or revoked"
)

// sendGridReservedHeaders may not be set through "headers" (lower case).
var sendGridReservedHeaders = map[string]bool{
	"x-sg-id": true, "x-sg-eid": true, "received": true, "dkim-signature": true,
	"content-type": true, "content-transfer-encoding": true, "to": true, "from": true,
	"subject": true, "reply-to": true, "cc": true, "bcc": true,
}

// SendGridAddress is an email object of a mail/send request.
type SendGridAddress struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Mail is a message the fake SendGrid accepted (answered 202).
type Mail struct {
	MessageID   string // the X-Message-Id the fake answered with
	From        SendGridAddress
	ReplyTo     *SendGridAddress
	To          []SendGridAddress // of every personalization, in order
	Subject     string
	Text, HTML  string // the text/plain and text/html content values
	Attachments []SendGridAttachment
	Headers     map[string]string
	CustomArgs  map[string]string // message level
	Body        []byte            // the raw request body
}

// SendGridAttachment is an entry of a mail/send request's attachments, its
// content decoded.
type SendGridAttachment struct {
	Filename    string
	Type        string
	Disposition string // "attachment" when the request left it out
	ContentID   string
	Content     []byte
}

// SendGrid is a strict fake of SendGrid's v3 Mail Send API. Every request is
// checked against the official OpenAPI description, the documented limits
// and rules that the spec does not express (reply_to or reply_to_list, not
// both; each attachment's content base64, its filename set, its type a bare
// media type without ";"), the method, the path, the API key and the
// Content-Type. A request that a correct client would never send (a spec
// violation, a wrong path or content type) fails the test through tb.Errorf
// and is answered as SendGrid would (400 with its error shape, 404, 405); a
// wrong or missing key is answered 401 without failing the test, since
// testing that is legitimate.
//
// Faults can be injected: FailNext (429 with rate-limit headers, or 5xx),
// SetLatency, and Reject (a standing 4xx answer).
type SendGrid struct {
	tb     testing.TB
	apiKey string
	spec   *Spec
	srv    *httptest.Server
	conns  atomic.Int64 // connections accepted

	mu        sync.Mutex
	requests  int
	accepted  []Mail
	failNext  []int
	latency   time.Duration
	reject    int
	rejectMsg string
	lastReset time.Time
}

// NewSendGrid starts a fake SendGrid accepting apiKey. It is closed when the
// test ends.
func NewSendGrid(tb testing.TB, apiKey string) *SendGrid {
	tb.Helper()
	spec, err := SendGridSpec()
	if err != nil {
		tb.Fatalf("providertest: load SendGrid spec: %v", err)
	}
	s := &SendGrid{tb: tb, apiKey: apiKey, spec: spec}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.Start()
	tb.Cleanup(s.srv.Close)
	return s
}

// Connections is how many connections clients opened to the fake.
func (s *SendGrid) Connections() int { return int(s.conns.Load()) }

// URL is the base URL to configure the client with (SENDGRID_API_BASE).
func (s *SendGrid) URL() string { return s.srv.URL }

// Accepted returns a copy of the messages accepted so far, in order.
func (s *SendGrid) Accepted() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.accepted...)
}

// Requests is the number of requests received, whatever their outcome.
func (s *SendGrid) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// FailNext makes the next n well-formed, authorised requests fail with
// status: 429 comes with X-RateLimit-Limit/Remaining/Reset (reset two to three
// seconds ahead, see LastRateLimitReset); 5xx with SendGrid's error body.
func (s *SendGrid) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, status)
	}
}

// LastRateLimitReset is the X-RateLimit-Reset time of the latest 429 sent.
func (s *SendGrid) LastRateLimitReset() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReset
}

// SetLatency delays every answer by d (the wait ends early if the client
// goes away; such a request is not accepted).
func (s *SendGrid) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Reject makes every following well-formed request fail with status (400,
// 401, 403, 413, ...) and message in SendGrid's error shape, until
// Reject(0, "") lifts it.
func (s *SendGrid) Reject(status int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject, s.rejectMsg = status, message
}

func (s *SendGrid) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	latency := s.latency
	s.mu.Unlock()

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}

	w.Header().Set("Server", "nginx")
	switch {
	case r.URL.Path != "/v3/mail/send":
		s.tb.Errorf("fake SendGrid: %s %s: unknown path", r.Method, r.URL.Path)
		sendGridError(w, http.StatusNotFound, "not found", "")
		return
	case r.Method != http.MethodPost:
		s.tb.Errorf("fake SendGrid: %s %s: method not allowed", r.Method, r.URL.Path)
		sendGridError(w, http.StatusMethodNotAllowed, "method not allowed", "")
		return
	case r.Header.Get("Authorization") != "Bearer "+s.apiKey || s.apiKey == "":
		sendGridError(w, http.StatusUnauthorized, sendGridAuthMessage, "")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.tb.Errorf("fake SendGrid: Content-Type %q, want application/json", r.Header.Get("Content-Type"))
		sendGridError(w, http.StatusBadRequest, "Content-Type should be application/json.", "")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, sendGridMaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			sendGridError(w, http.StatusRequestEntityTooLarge, "content too large", "null")
			return
		}
		s.tb.Errorf("fake SendGrid: read body: %v", err)
		sendGridError(w, http.StatusBadRequest, "could not read body", "")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := s.spec.Validate(r); err != nil {
		s.tb.Errorf("fake SendGrid: %v", err)
		sendGridError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	mail, field, problem := decodeSendGridMail(body)
	if problem != "" {
		s.tb.Errorf("fake SendGrid: %s: %s", field, problem)
		sendGridError(w, http.StatusBadRequest, problem, field)
		return
	}

	s.mu.Lock()
	if s.reject != 0 {
		status, msg := s.reject, s.rejectMsg
		s.mu.Unlock()
		field := ""
		if status == http.StatusForbidden {
			field = "from"
		}
		sendGridError(w, status, msg, field)
		return
	}
	if len(s.failNext) > 0 {
		status := s.failNext[0]
		s.failNext = s.failNext[1:]
		reset := time.Unix(time.Now().Unix()+3, 0) // 2–3 s ahead, whole seconds like SendGrid's
		if status == http.StatusTooManyRequests {
			s.lastReset = reset
		}
		s.mu.Unlock()
		if status == http.StatusTooManyRequests {
			w.Header().Set("X-RateLimit-Limit", strconv.Itoa(sendGridRateLimit))
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
			sendGridError(w, status, "too many requests", "")
			return
		}
		msg := "internal server error"
		if t := http.StatusText(status); status != http.StatusInternalServerError && t != "" {
			msg = strings.ToLower(t)
		}
		sendGridError(w, status, msg, "")
		return
	}
	mail.MessageID = newSendGridMessageID()
	mail.Body = body
	s.accepted = append(s.accepted, mail)
	remaining := max(sendGridRateLimit-len(s.accepted), 0)
	s.mu.Unlock()

	w.Header().Set("X-Message-Id", mail.MessageID)
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(sendGridRateLimit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// decodeSendGridMail checks what the spec cannot express (documented
// limits and rules) and extracts the message. A problem is reported with the
// field SendGrid would name.
func decodeSendGridMail(body []byte) (m Mail, field, problem string) {
	var req struct {
		Personalizations []struct {
			To      []SendGridAddress `json:"to"`
			Cc      []SendGridAddress `json:"cc"`
			Bcc     []SendGridAddress `json:"bcc"`
			Subject string            `json:"subject"`
		} `json:"personalizations"`
		From        SendGridAddress                `json:"from"`
		ReplyTo     *SendGridAddress               `json:"reply_to"`
		ReplyToList []SendGridAddress              `json:"reply_to_list"`
		Subject     string                         `json:"subject"`
		Content     []struct{ Type, Value string } `json:"content"`
		Attachments []struct {
			Content     string `json:"content"`
			Type        string `json:"type"`
			Filename    string `json:"filename"`
			Disposition string `json:"disposition"`
			ContentID   string `json:"content_id"`
		} `json:"attachments"`
		TemplateID string         `json:"template_id"`
		Headers    map[string]any `json:"headers"`
		CustomArgs map[string]any `json:"custom_args"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return m, "", "Bad Request: " + err.Error()
	}
	if len(req.Personalizations) == 0 {
		return m, "personalizations", "The personalizations field is required and must have at least one personalization."
	}
	seen := map[string]bool{}
	recipients := 0
	for i, p := range req.Personalizations {
		if len(p.To) == 0 {
			return m, fmt.Sprintf("personalizations.%d.to", i),
				"The to array is required for all personalization objects, and must have at least one email object with a valid email address."
		}
		for kind, list := range map[string][]SendGridAddress{"to": p.To, "cc": p.Cc, "bcc": p.Bcc} {
			for j, a := range list {
				f := fmt.Sprintf("personalizations.%d.%s.%d", i, kind, j)
				if a.Email == "" {
					return m, f + ".email", "The " + kind + " email parameter is required."
				}
				if strings.ContainsAny(a.Name, ";,") {
					return m, f + ".name", "The " + kind + " name parameter cannot contain ; or ,."
				}
				key := strings.ToLower(a.Email)
				if seen[key] {
					return m, f + ".email", "Each email address in the personalization block should be unique between to, cc, and bcc."
				}
				seen[key] = true
				recipients++
			}
		}
		if req.Subject == "" && p.Subject == "" && req.TemplateID == "" {
			return m, "subject", "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined."
		}
		m.To = append(m.To, p.To...)
	}
	if recipients > sendGridMaxRecipients {
		return m, "personalizations", "The total number of recipients must be less than 1000."
	}
	if req.From.Email == "" {
		return m, "from.email", "The from email does not contain a valid address."
	}
	if req.ReplyTo != nil && req.ReplyToList != nil {
		return m, "reply_to", "The reply_to and reply_to_list parameters cannot be used together."
	}
	if r := req.ReplyTo; r != nil {
		if a, err := mail.ParseAddress(r.Email); err != nil || a.Address != r.Email {
			return m, "reply_to.email", "The reply_to email does not contain a valid address."
		}
		if strings.ContainsAny(r.Name, "\r\n") {
			return m, "reply_to.name", "The reply_to name cannot contain CRLF characters."
		}
	}
	for i, a := range req.Attachments {
		f := fmt.Sprintf("attachments.%d", i)
		content, err := base64.StdEncoding.Strict().DecodeString(a.Content)
		switch {
		case a.Content == "":
			return m, f + ".content", "The attachment content is required."
		case err != nil || len(content) == 0:
			return m, f + ".content", "The attachment content must be base64 encoded."
		case a.Filename == "":
			return m, f + ".filename", "The attachment filename parameter is required."
		case strings.ContainsAny(a.Filename, "\r\n"):
			return m, f + ".filename", "The attachment filename cannot contain CRLF characters."
		case strings.ContainsAny(a.Type, ";\r\n"):
			return m, f + ".type", "The attachment type cannot contain ';', or CRLF characters."
		}
		if a.Type != "" {
			if mt, _, err := mime.ParseMediaType(a.Type); err != nil || !strings.Contains(mt, "/") {
				return m, f + ".type", "The attachment type must be a MIME type, e.g. text/calendar."
			}
		}
		disposition := a.Disposition
		if disposition == "" {
			disposition = "attachment"
		}
		m.Attachments = append(m.Attachments, SendGridAttachment{
			Filename: a.Filename, Type: a.Type, Disposition: disposition, ContentID: a.ContentID, Content: content,
		})
	}
	if req.TemplateID == "" && len(req.Content) == 0 {
		return m, "content", "Unless a valid template_id is provided, the content parameter is required."
	}
	for i, c := range req.Content {
		if c.Type == "" || c.Value == "" {
			return m, fmt.Sprintf("content.%d", i), "The content value must be a string at least one character in length."
		}
		if c.Type == "text/plain" && i != 0 {
			return m, "content", "If present, text/plain content must be first, followed by any other content."
		}
		switch c.Type {
		case "text/plain":
			m.Text = c.Value
		case "text/html":
			m.HTML = c.Value
		}
	}
	m.Headers = map[string]string{}
	for name, v := range req.Headers {
		s, ok := v.(string)
		if !ok {
			return m, "headers", "Invalid type. Expected: string, given: " + fmt.Sprintf("%T", v) + "."
		}
		if sendGridReservedHeaders[strings.ToLower(name)] {
			return m, "headers", fmt.Sprintf("The %s header is reserved and cannot be set.", name)
		}
		m.Headers[name] = s
	}
	m.CustomArgs = map[string]string{}
	size := 0
	for name, v := range req.CustomArgs {
		s, ok := v.(string)
		if !ok {
			return m, "custom_args", "Invalid type. Expected: string, given: " + fmt.Sprintf("%T", v) + "."
		}
		size += len(name) + len(s)
		m.CustomArgs[name] = s
	}
	if size >= 10000 {
		return m, "custom_args", "The custom_args must total less than 10,000 bytes."
	}
	m.From, m.ReplyTo, m.Subject = req.From, req.ReplyTo, req.Subject
	return m, "", ""
}

// sendGridError writes SendGrid's error shape. An empty field is null.
func sendGridError(w http.ResponseWriter, status int, message, field string) {
	type item struct {
		Message string  `json:"message"`
		Field   *string `json:"field"`
		Help    *string `json:"help"`
	}
	it := item{Message: message}
	if field != "" {
		it.Field = &field
	}
	body, _ := json.Marshal(struct {
		Errors []item `json:"errors"`
	}{[]item{it}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// newSendGridMessageID returns a 22-character URL-safe id like SendGrid's.
func newSendGridMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
