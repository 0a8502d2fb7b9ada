package providertest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// SMTP is a real SMTP server (no TLS) that requires AUTH PLAIN with the
// given credentials and records every message it accepts. It is strict
// about the message's MIME structure, as a mail client reading it would
// need: a message that does not parse (a multipart without its boundary or
// closing delimiter, a base64 part that does not decode, an attachment
// without a file name, raw 8-bit header bytes) fails the test through
// tb.Errorf and is refused with 554.
type SMTP struct {
	tb         testing.TB
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
	// The decoded content: the first text/plain and text/html parts that
	// are not attachments, and the attachments in order.
	Text, HTML  string
	Attachments []SMTPAttachment
}

// SMTPAttachment is a part sent with Content-Disposition: attachment.
type SMTPAttachment struct {
	Filename    string
	ContentType string
	Data        []byte // decoded
}

// NewSMTP starts the server on a loopback port; tb.Cleanup stops it.
func NewSMTP(tb testing.TB, user, pass string) *SMTP {
	tb.Helper()
	s := &SMTP{tb: tb, user: user, pass: pass}
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
	if err == nil {
		err = readMIME(&ss.cur, textproto.MIMEHeader(msg.Header), msg.Body, 0)
	}
	if err == nil {
		err = checkHeaderBytes(data)
	}
	if err != nil {
		ss.s.tb.Errorf("fake SMTP: malformed message: %v", err)
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

// maxMIMEDepth bounds nested multiparts.
const maxMIMEDepth = 5

// readMIME decodes one MIME entity into m: a multipart recursively, a leaf
// by its Content-Transfer-Encoding.
func readMIME(m *SMTPMessage, h textproto.MIMEHeader, body io.Reader, depth int) error {
	if depth > maxMIMEDepth {
		return errors.New("multiparts nested too deep")
	}
	contentType := h.Get("Content-Type")
	if contentType == "" {
		contentType = "text/plain; charset=us-ascii"
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		if params["boundary"] == "" {
			return fmt.Errorf("%s without a boundary", mediaType)
		}
		mr := multipart.NewReader(body, params["boundary"])
		parts := 0
		for {
			p, err := mr.NextRawPart() // the encoding is checked here
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", mediaType, err)
			}
			if err := readMIME(m, p.Header, p, depth+1); err != nil {
				return err
			}
			parts++
		}
		if parts == 0 {
			return fmt.Errorf("%s without parts", mediaType)
		}
		return nil
	}
	var decoded []byte
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
		decoded, err = io.ReadAll(body)
	case "quoted-printable":
		decoded, err = io.ReadAll(quotedprintable.NewReader(body))
	case "base64":
		var raw []byte
		if raw, err = io.ReadAll(body); err == nil {
			decoded, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
		}
	default:
		return fmt.Errorf("unknown Content-Transfer-Encoding %q", cte)
	}
	if err != nil {
		return fmt.Errorf("%s part does not decode: %w", mediaType, err)
	}
	if cd := h.Get("Content-Disposition"); cd != "" {
		disposition, dparams, err := mime.ParseMediaType(cd)
		if err != nil {
			return fmt.Errorf("Content-Disposition %q: %w", cd, err)
		}
		if disposition == "attachment" {
			if dparams["filename"] == "" {
				return errors.New("attachment without a file name")
			}
			m.Attachments = append(m.Attachments, SMTPAttachment{Filename: dparams["filename"], ContentType: contentType, Data: decoded})
			return nil
		}
	}
	switch {
	case mediaType == "text/plain" && m.Text == "":
		m.Text = string(decoded)
	case mediaType == "text/html" && m.HTML == "":
		m.HTML = string(decoded)
	}
	return nil
}

// checkHeaderBytes reports raw 8-bit bytes in the header section, which
// needs SMTPUTF8 (not offered) or RFC 2047 encoded words.
func checkHeaderBytes(data []byte) error {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		end = bytes.Index(data, []byte("\n\n"))
	}
	if end < 0 {
		return errors.New("no blank line after the header")
	}
	for _, c := range data[:end] {
		if c >= 0x80 {
			return errors.New("8-bit byte in the header section")
		}
	}
	return nil
}

func (ss *smtpSession) Reset()        { ss.cur = SMTPMessage{} }
func (ss *smtpSession) Logout() error { return nil }
