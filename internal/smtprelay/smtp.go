// Package smtprelay sends the confirmation email to an SMTP relay, using
// github.com/wneessen/go-mail for the transport (dial, implicit TLS or
// STARTTLS, EHLO, SMTP AUTH).
//
// The message on the wire is exactly email.Message.Bytes(), the one message
// builder shared with the outbox and SendGrid: go-mail's own message
// composer is not used. The envelope is MAIL FROM:<From.Email> and
// RCPT TO:<To.Email>; the reference returned is the Message-ID header.
//
// The relay is configured by a URL (SMTP_URL):
//
//	smtp://user:pass@host:port   STARTTLS, required (default port 587)
//	smtps://user:pass@host:port  implicit TLS (default port 465)
//
// User and password are optional and percent-decoded; with a user, the
// sender authenticates with PLAIN or LOGIN (whichever the server offers),
// never over an unencrypted connection to a remote host. An smtp:// URL may
// add ?starttls=opportunistic to use STARTTLS only when the server offers
// it; that is meant for local relays and test servers (e.g. mailpit), never
// for a relay across a network.
//
// Errors: a message that fails Validate, and a 5xx reply (e.g. 535 bad
// credentials, 550 unknown mailbox, 554 rejected), are [*Error] with
// Permanent() == true. 4xx replies, TLS and network failures, and timeouts
// are transient. The password never appears in an error.
package smtprelay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/registrar/registrar/internal/email"
)

// DefaultTimeout bounds one whole SMTP session (connect, TLS, AUTH and the
// mail transaction) unless Options.Timeout says otherwise. The context passed
// to Send can cut it shorter.
const DefaultTimeout = 30 * time.Second

// Options are the settings that do not belong in the URL.
type Options struct {
	// Timeout bounds one SMTP session; zero means DefaultTimeout.
	Timeout time.Duration
	// TLSConfig, if set, is used (cloned) for STARTTLS and implicit TLS, e.g.
	// to trust a test server's self-signed certificate. ServerName defaults
	// to the URL's host and MinVersion to TLS 1.2.
	TLSConfig *tls.Config
	// HELO is the name announced in EHLO; empty means the machine's host name.
	HELO string
}

// Sender delivers messages to one SMTP relay. It is safe for concurrent use;
// each Send opens its own connection.
type Sender struct {
	host          string
	port          int
	implicitTLS   bool
	opportunistic bool
	user, pass    string
	timeout       time.Duration
	tlsConfig     *tls.Config
	helo          string
}

// New parses rawURL (see the package documentation) with default Options.
func New(rawURL string) (*Sender, error) {
	return NewWithOptions(rawURL, Options{})
}

// NewWithOptions parses rawURL and applies opts. Errors never repeat the URL,
// which may hold a password.
func NewWithOptions(rawURL string, opts Options) (*Sender, error) {
	const form = "expected smtp://user:pass@host:port or smtps://user:pass@host:port"
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("smtp: the URL does not parse (%s)", form)
	}
	s := &Sender{timeout: opts.Timeout, helo: opts.HELO}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	switch strings.ToLower(u.Scheme) {
	case "smtp":
		s.port = 587
	case "smtps":
		s.port, s.implicitTLS = 465, true
	default:
		return nil, fmt.Errorf("smtp: unsupported URL scheme %q (%s)", u.Scheme, form)
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return nil, fmt.Errorf("smtp: the URL must not have a path (%s)", form)
	}
	s.host = u.Hostname()
	if s.host == "" {
		return nil, fmt.Errorf("smtp: the URL has no host (%s)", form)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("smtp: invalid port %q", p)
		}
		s.port = n
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
		if s.user == "" {
			return nil, errors.New("smtp: the URL has a password but no user name")
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, errors.New("smtp: the URL query does not parse")
	}
	for key, values := range q {
		switch {
		case key == "starttls" && len(values) == 1 && values[0] == "opportunistic":
			if s.implicitTLS {
				return nil, errors.New("smtp: starttls=opportunistic only applies to smtp:// URLs")
			}
			s.opportunistic = true
		case key == "starttls":
			return nil, errors.New(`smtp: the only starttls setting is "opportunistic" (STARTTLS is required by default)`)
		default:
			return nil, fmt.Errorf("smtp: unknown URL parameter %q", key)
		}
	}

	if opts.TLSConfig != nil {
		s.tlsConfig = opts.TLSConfig.Clone()
	} else {
		s.tlsConfig = &tls.Config{}
	}
	if s.tlsConfig.ServerName == "" {
		s.tlsConfig.ServerName = s.host
	}
	if s.tlsConfig.MinVersion == 0 {
		s.tlsConfig.MinVersion = tls.VersionTLS12
	}
	return s, nil
}

// Send delivers m (as m.Bytes()) and returns its Message-ID header value. An
// invalid message is rejected before any connection is made.
func (s *Sender) Send(ctx context.Context, m email.Message) (string, error) {
	raw, err := m.Bytes() // validates m: no CR/LF can reach a header or the envelope
	if err != nil {
		return "", &Error{permanent: true, msg: "smtp: " + err.Error(), err: err}
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		err = fmt.Errorf("%w: rendered message does not parse: %v", email.ErrInvalidMessage, err)
		return "", &Error{permanent: true, msg: "smtp: " + err.Error(), err: err}
	}
	messageID := parsed.Header.Get("Message-ID")
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("smtp: %w", err)
	}

	// One go-mail client per send: it holds per-connection state, and its
	// options are not meant to be shared between concurrent dials.
	var (
		mu      sync.Mutex
		conn    net.Conn
		stopCtx func() bool
	)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if stopCtx != nil {
			stopCtx()
		}
		if conn != nil {
			_ = conn.Close()
		}
	}()
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{}
		var c net.Conn
		var err error
		if s.implicitTLS {
			c, err = (&tls.Dialer{NetDialer: d, Config: s.tlsConfig}).DialContext(dctx, network, addr)
		} else {
			c, err = d.DialContext(dctx, network, addr)
		}
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		conn = c
		// go-mail only watches the context while dialling; from here on a
		// cancelled Send unblocks any read or write by expiring the deadline.
		stopCtx = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		return c, nil
	}

	opts := []gomail.Option{
		gomail.WithPort(s.port),
		gomail.WithTimeout(s.timeout),
		gomail.WithTLSConfig(s.tlsConfig),
		gomail.WithDialContextFunc(dial),
	}
	switch {
	case s.implicitTLS:
		opts = append(opts, gomail.WithSSL()) // tells go-mail the connection is already TLS: no STARTTLS
	case s.opportunistic:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.user != "" {
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthPlain, gomail.SMTPAuthLogin),
			gomail.WithUsername(s.user), gomail.WithPassword(s.pass))
	}
	if s.helo != "" {
		opts = append(opts, gomail.WithHELO(s.helo))
	}
	client, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return "", s.classify(ctx, "configure client", err)
	}
	c, err := client.DialToSMTPClientWithContext(ctx)
	if err == nil {
		err = ctx.Err() // cancelled while go-mail reset the deadline
	}
	if err != nil {
		return "", s.classify(ctx, "connect", err)
	}
	if err := c.Mail(m.From.Email); err != nil {
		return "", s.classify(ctx, "MAIL FROM", err)
	}
	if err := c.Rcpt(m.To.Email); err != nil {
		return "", s.classify(ctx, "RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return "", s.classify(ctx, "DATA", err)
	}
	if _, err := w.Write(raw); err != nil {
		return "", s.classify(ctx, "DATA", err)
	}
	if err := w.Close(); err != nil {
		// The final reply to DATA: the server refused the message, or we do
		// not know whether it took it (a retry may then duplicate it).
		return "", s.classify(ctx, "DATA", err)
	}
	_ = c.Quit() // the message is accepted; a failing QUIT changes nothing
	return messageID, nil
}

// classify turns a failure at step into an *Error: a 5xx reply is permanent,
// anything else transient.
func (s *Sender) classify(ctx context.Context, step string, err error) error {
	e := &Error{err: err, msg: fmt.Sprintf("smtp: %s %s: %v", step, net.JoinHostPort(s.host, strconv.Itoa(s.port)), err)}
	var reply *textproto.Error
	if errors.As(err, &reply) {
		e.Code = reply.Code
		e.permanent = reply.Code >= 500 && reply.Code < 600
	} else if ctxErr := ctx.Err(); ctxErr != nil {
		e.msg += " (" + ctxErr.Error() + ")"
		e.err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	if len(s.pass) >= 4 { // a shorter one would blank out ordinary text
		e.msg = strings.ReplaceAll(e.msg, s.pass, "[redacted]")
	}
	return e
}

// Error is a failed send. Permanent reports whether retrying cannot help.
type Error struct {
	Code      int // the SMTP reply code, or 0 if the failure was not a reply
	permanent bool
	msg       string
	err       error
}

func (e *Error) Error() string { return e.msg }

// Permanent reports whether retrying the same message cannot help.
func (e *Error) Permanent() bool { return e.permanent }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.err }
