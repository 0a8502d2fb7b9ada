package providertest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/mail"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// SMTP is a real SMTP server (no TLS) that requires AUTH PLAIN with the
// given credentials and records every message it accepts.
type SMTP struct {
	addr       string
	user, pass string

	mu       sync.Mutex
	received []SMTPMessage
}

// SMTPMessage is one accepted message.
type SMTPMessage struct {
	From string
	To   []string
	Data []byte
	Msg  *mail.Message // parsed headers; Msg.Body is spent
}

// NewSMTP starts the server on a loopback port; tb.Cleanup stops it.
func NewSMTP(tb testing.TB, user, pass string) *SMTP {
	tb.Helper()
	s := &SMTP{user: user, pass: pass}
	srv := gosmtp.NewServer(smtpBackend{s})
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("smtp listen: %v", err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return s
}

// Addr is host:port of the server.
func (s *SMTP) Addr() string { return s.addr }

// Received returns the accepted messages.
func (s *SMTP) Received() []SMTPMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SMTPMessage(nil), s.received...)
}

type smtpBackend struct{ s *SMTP }

func (b smtpBackend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) {
	return &smtpSession{s: b.s}, nil
}

type smtpSession struct {
	s      *SMTP
	authed bool
	cur    SMTPMessage
}

func (ss *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, gosmtp.ErrAuthUnsupported
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != ss.s.user || pass != ss.s.pass {
			return gosmtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *smtpSession) Mail(from string, _ *gosmtp.MailOptions) error {
	if !ss.authed {
		return gosmtp.ErrAuthRequired
	}
	ss.cur = SMTPMessage{From: from}
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	ss.cur.To = append(ss.cur.To, to)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "malformed message: " + err.Error()}
	}
	if len(ss.cur.To) == 0 {
		return errors.New("no recipients")
	}
	ss.cur.Data, ss.cur.Msg = data, msg
	ss.s.mu.Lock()
	ss.s.received = append(ss.s.received, ss.cur)
	ss.s.mu.Unlock()
	return nil
}

func (ss *smtpSession) Reset()        { ss.cur = SMTPMessage{} }
func (ss *smtpSession) Logout() error { return nil }
