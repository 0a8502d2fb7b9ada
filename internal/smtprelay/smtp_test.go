package smtprelay

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/providertest"
)

// ---- a real SMTP server (github.com/emersion/go-smtp) that records sessions

type received struct {
	From string
	To   []string
	Data []byte
	User string // authenticated user, "" if none
	TLS  bool
}

type backend struct {
	user, pass string // required credentials (AUTH PLAIN), if user != ""
	// Replies to inject; nil means accept.
	rcptErr, dataErr *gosmtp.SMTPError

	mu       sync.Mutex
	sessions int
	mails    int // MAIL commands seen, accepted or not
	auths    int // AUTH attempts
	received []received
}

func (b *backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	b.mu.Lock()
	b.sessions++
	b.mu.Unlock()
	_, isTLS := c.TLSConnectionState()
	return &session{b: b, tls: isTLS}, nil
}

func (b *backend) stats() (sessions, mails, auths int, got []received) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions, b.mails, b.auths, append([]received(nil), b.received...)
}

type session struct {
	b    *backend
	tls  bool
	user string
	cur  received
}

func (s *session) AuthMechanisms() []string {
	if s.b.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	s.b.mu.Lock()
	s.b.auths++
	s.b.mu.Unlock()
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.b.user || password != s.b.pass || (identity != "" && identity != username) {
			return gosmtp.ErrAuthFailed // 535 5.7.8
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	s.b.mu.Lock()
	s.b.mails++
	s.b.mu.Unlock()
	if s.b.user != "" && s.user == "" {
		return &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.cur = received{From: from, User: s.user, TLS: s.tls}
	return nil
}

func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.b.rcptErr != nil {
		return s.b.rcptErr
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.b.dataErr != nil {
		return s.b.dataErr
	}
	s.cur.Data = data
	s.b.mu.Lock()
	s.b.received = append(s.b.received, s.cur)
	s.b.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

type tlsMode int

const (
	noTLS tlsMode = iota
	startTLS
	implicitTLS
)

// startServer runs be on 127.0.0.1 and returns its address and a client TLS
// config trusting its self-signed certificate.
func startServer(t *testing.T, be *backend, mode tlsMode) (addr string, clientTLS *tls.Config) {
	t.Helper()
	serverTLS, clientTLS := selfSignedTLS(t)
	srv := gosmtp.NewServer(be)
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case startTLS:
		srv.TLSConfig = serverTLS
	case implicitTLS:
		srv.TLSConfig = serverTLS
		l = tls.NewListener(l, serverTLS)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String(), clientTLS
}

func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "registrar test SMTP server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	return server, &tls.Config{RootCAs: pool}
}

// ---- helpers

func testMessage() email.Message {
	return email.Message{
		ID:      "reg-42",
		From:    email.Address{Name: "GopherFest", Email: "tickets@gopherfest.example"},
		To:      email.Address{Name: "Ada Lovelace", Email: "ada@example.org"},
		Subject: "Your ticket for GopherFest 2027 – confirmed",
		Date:    time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC),
		Text:    "Hello Ada,\nyou are registered for GopherFest 2027.\nTicket: Standard – 149.00 EUR\n",
		HTML:    "<p>Hello Ada,</p>\n<p>you are registered for <b>GopherFest 2027</b>.</p>\n",
		Headers: map[string]string{"X-Registration-ID": "reg-42"},
	}
}

func newSender(t *testing.T, rawURL string, clientTLS *tls.Config) *Sender {
	t.Helper()
	s, err := NewWithOptions(rawURL, Options{Timeout: 10 * time.Second, TLSConfig: clientTLS, HELO: "client.test"})
	if err != nil {
		t.Fatalf("NewWithOptions: %v", err)
	}
	return s
}

func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// ---- tests

func TestSendDeliversTheBuiltMessage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mode   tlsMode
		scheme string
	}{
		{"STARTTLS", startTLS, "smtp"},
		{"implicit TLS", implicitTLS, "smtps"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := &backend{user: "mailer@gopherfest.example", pass: "s3cret:pa ss"}
			addr, clientTLS := startServer(t, be, tc.mode)
			u := url.URL{Scheme: tc.scheme, User: url.UserPassword(be.user, be.pass), Host: addr}
			s := newSender(t, u.String(), clientTLS)

			m := testMessage()
			ref, err := s.Send(t.Context(), m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if ref != "<reg-42@gopherfest.example>" {
				t.Errorf("reference = %q, want the Message-ID", ref)
			}
			_, _, _, got := be.stats()
			if len(got) != 1 {
				t.Fatalf("server received %d messages, want 1", len(got))
			}
			r := got[0]
			if r.From != m.From.Email || len(r.To) != 1 || r.To[0] != m.To.Email {
				t.Errorf("envelope = %q -> %q", r.From, r.To)
			}
			if r.User != be.user || !r.TLS {
				t.Errorf("session user %q, TLS %v; want authenticated over TLS", r.User, r.TLS)
			}
			want, err := m.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Data, want) {
				t.Errorf("DATA differs from m.Bytes():\n got %q\nwant %q", r.Data, want)
			}
			checkParsed(t, r.Data, m)
		})
	}
}

// checkParsed reads DATA as a mail client would.
func checkParsed(t *testing.T, data []byte, m email.Message) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("DATA does not parse: %v", err)
	}
	from, err := msg.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != m.From.Name || from[0].Address != m.From.Email {
		t.Errorf("From = %v (%v)", from, err)
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != m.To.Name || to[0].Address != m.To.Email {
		t.Errorf("To = %v (%v)", to, err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subject != m.Subject {
		t.Errorf("Subject = %q (%v), want %q", subject, err, m.Subject)
	}
	if got := msg.Header.Get("Message-ID"); got != "<reg-42@gopherfest.example>" {
		t.Errorf("Message-ID = %q", got)
	}
	if got := msg.Header.Get("X-Registration-ID"); got != "reg-42" {
		t.Errorf("X-Registration-ID = %q", got)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v)", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	wantParts := []struct{ contentType, body string }{
		{"text/plain", m.Text}, {"text/html", m.HTML},
	}
	for i, want := range wantParts {
		p, err := mr.NextPart() // decodes quoted-printable
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if ct != want.contentType {
			t.Errorf("part %d type = %q, want %q", i, ct, want.contentType)
		}
		if got := strings.ReplaceAll(string(body), "\r\n", "\n"); got != want.body {
			t.Errorf("part %d body = %q, want %q", i, got, want.body)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("more than two parts: %v", err)
	}
}

func TestSendFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		pass      string // password the client uses
		rcptErr   *gosmtp.SMTPError
		dataErr   *gosmtp.SMTPError
		code      int
		permanent bool
		mentions  string
	}{
		{name: "wrong password", pass: "wrong-password", code: 535, permanent: true, mentions: "535"},
		{name: "451 at RCPT", pass: "right-password", code: 451, permanent: false, mentions: "451",
			rcptErr: &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}},
		{name: "550 at RCPT", pass: "right-password", code: 550, permanent: true, mentions: "No such user",
			rcptErr: &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user"}},
		{name: "554 at DATA", pass: "right-password", code: 554, permanent: true, mentions: "Message rejected as spam",
			dataErr: &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Message rejected as spam"}},
		{name: "452 at DATA", pass: "right-password", code: 452, permanent: false, mentions: "452",
			dataErr: &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 3, 1}, Message: "Insufficient storage"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := &backend{user: "mailer", pass: "right-password", rcptErr: tc.rcptErr, dataErr: tc.dataErr}
			addr, clientTLS := startServer(t, be, startTLS)
			s := newSender(t, "smtp://mailer:"+tc.pass+"@"+addr, clientTLS)
			_, err := s.Send(t.Context(), testMessage())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			t.Logf("error: %v", err)
			if got := isPermanent(err); got != tc.permanent {
				t.Errorf("permanent = %v, want %v: %v", got, tc.permanent, err)
			}
			var se *Error
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Errorf("err = %#v, want an *Error with code %d", err, tc.code)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %q does not mention %q", err, tc.mentions)
			}
			if strings.Contains(err.Error(), tc.pass) {
				t.Errorf("error contains the password: %v", err)
			}
			if _, _, _, got := be.stats(); len(got) != 0 {
				t.Errorf("server stored %d messages", len(got))
			}
		})
	}
}

func TestSendRequiresSTARTTLS(t *testing.T) {
	t.Parallel()
	be := &backend{}
	addr, _ := startServer(t, be, noTLS)

	_, err := newSender(t, "smtp://mailer:secret@"+addr, nil).Send(t.Context(), testMessage())
	t.Logf("error: %v", err)
	if err == nil || isPermanent(err) {
		t.Fatalf("err = %v, want a transient error (no STARTTLS offered)", err)
	}
	if _, mails, auths, _ := be.stats(); mails != 0 || auths != 0 {
		t.Errorf("server saw %d MAIL and %d AUTH commands, want none", mails, auths)
	}

	// The documented opt-out for a local test relay.
	if _, err := newSender(t, "smtp://"+addr+"?starttls=opportunistic", nil).Send(t.Context(), testMessage()); err != nil {
		t.Fatalf("opportunistic Send: %v", err)
	}
	if _, _, _, got := be.stats(); len(got) != 1 || got[0].TLS {
		t.Errorf("received %+v, want one message over plain text", got)
	}
}

func TestSendRejectsUntrustedCertificate(t *testing.T) {
	t.Parallel()
	be := &backend{}
	addr, _ := startServer(t, be, implicitTLS)
	_, err := newSender(t, "smtps://"+addr, nil).Send(t.Context(), testMessage())
	t.Logf("error: %v", err)
	if err == nil || isPermanent(err) {
		t.Fatalf("err = %v, want a transient TLS error", err)
	}
	if _, mails, _, _ := be.stats(); mails != 0 {
		t.Errorf("server saw %d MAIL commands", mails)
	}
}

func TestSendRejectsHeaderInjection(t *testing.T) {
	t.Parallel()
	be := &backend{}
	addr, clientTLS := startServer(t, be, startTLS)
	s := newSender(t, "smtp://"+addr, clientTLS)
	cases := map[string]func(*email.Message){
		"CRLF in subject":       func(m *email.Message) { m.Subject = "Hi\r\nBcc: victim@example.net" },
		"LF in recipient name":  func(m *email.Message) { m.To.Name = "Ada\nBcc: victim@example.net" },
		"CR in sender name":     func(m *email.Message) { m.From.Name = "GopherFest\rX-Evil: 1" },
		"CRLF in address":       func(m *email.Message) { m.To.Email = "ada@example.org\r\nRCPT TO:<victim@example.net>" },
		"CRLF in header value":  func(m *email.Message) { m.Headers["X-Registration-ID"] = "reg-42\r\nBcc: x@example.net" },
		"CRLF in header name":   func(m *email.Message) { m.Headers["X-A\r\nBcc"] = "x@example.net" },
		"overridden Message-ID": func(m *email.Message) { m.Headers["Message-Id"] = "<other@example.net>" },
	}
	for name, mutate := range cases {
		m := testMessage()
		mutate(&m)
		_, err := s.Send(t.Context(), m)
		if !isPermanent(err) || !errors.Is(err, email.ErrInvalidMessage) {
			t.Errorf("%s: err = %v, want a permanent ErrInvalidMessage", name, err)
		}
	}
	if sessions, mails, _, _ := be.stats(); sessions != 0 || mails != 0 {
		t.Errorf("server saw %d sessions and %d MAIL commands, want none", sessions, mails)
	}
}

func TestSendHonoursContext(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never greets.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	s := newSender(t, "smtp://"+l.Addr().String(), nil)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Send(ctx, testMessage())
	t.Logf("error: %v", err)
	if err == nil || isPermanent(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v after its context expired", d)
	}
}

func TestNewParsesURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		url                 string
		host                string
		port                int
		implicit, opportun  bool
		user, pass, wantErr string
	}{
		{url: "smtp://mail.example.org", host: "mail.example.org", port: 587},
		{url: "smtp://u%40x:p%3Aw@mail.example.org:2525", host: "mail.example.org", port: 2525, user: "u@x", pass: "p:w"},
		{url: "smtps://apikey:SG.secret@smtp.sendgrid.net", host: "smtp.sendgrid.net", port: 465, implicit: true, user: "apikey", pass: "SG.secret"},
		{url: "smtp://[::1]:25/?starttls=opportunistic", host: "::1", port: 25, opportun: true},
		{url: "http://mail.example.org", wantErr: "scheme"},
		{url: "smtp://", wantErr: "no host"},
		{url: "smtp://mail.example.org:99999", wantErr: "port"},
		{url: "smtp://mail.example.org/path", wantErr: "path"},
		{url: "smtp://mail.example.org?starttls=no", wantErr: "starttls"},
		{url: "smtps://mail.example.org?starttls=opportunistic", wantErr: "smtp://"},
		{url: "smtp://mail.example.org?tls=0", wantErr: "unknown URL parameter"},
		{url: "smtp://:hunter2-secret@mail.example.org", wantErr: "no user"},
		{url: "smtp://u:hunter2-secret@mail.example.org:bad", wantErr: "does not parse"},
	}
	for _, tc := range cases {
		s, err := New(tc.url)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New(%q) err = %v, want %q", tc.url, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("New(%q) error reveals the password: %v", tc.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q): %v", tc.url, err)
			continue
		}
		got := fmt.Sprint(s.host, s.port, s.implicitTLS, s.opportunistic, s.user, s.pass)
		want := fmt.Sprint(tc.host, tc.port, tc.implicit, tc.opportun, tc.user, tc.pass)
		if got != want {
			t.Errorf("New(%q) = %s, want %s", tc.url, got, want)
		}
	}
}

// TestSendReceiptThroughStrictRelay: the rendered confirmation reaches a
// relay as one multipart/mixed message: the text and HTML alternatives, the
// .ics invitation attached, and the organiser as Reply-To.
func TestSendReceiptThroughStrictRelay(t *testing.T) {
	t.Parallel()
	relay := providertest.NewSMTP(t, "registrar", "relay-pass")
	r, err := email.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Render(email.Confirmation{
		RegistrationID: "7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10", AttendeeFirstName: "Zoë", AttendeeLastName: "Ünal",
		AttendeeEmail: "zoe@example.org", TicketName: "Standard", Amount: "149.00", Currency: "EUR",
		EventName: "Café Conf 2027", EventStart: time.Date(2027, 6, 10, 9, 0, 0, 0, time.FixedZone("", 2*60*60)),
		EventEnd: time.Date(2027, 6, 10, 18, 0, 0, 0, time.FixedZone("", 2*60*60)),
		Venue:    "Zürich", StatusURL: "http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
		CardBrand: "visa", CardLast4: "1111", PaymentReference: "8MC585209K746392H",
		Billing:   email.PostalAddress{Line1: "Bahnhofstrasse 1", City: "Zürich", PostalCode: "8001", Country: "CH"},
		Organiser: email.Organiser{Name: "Café Conf, e.V.", Email: "hallo@cafe.example", URL: "https://cafe.example"},
	}, email.Address{Name: "Café Conf", Email: "tickets@cafe.example"}, time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "smtp", User: url.UserPassword("registrar", "relay-pass"), Host: relay.Addr(), RawQuery: "starttls=opportunistic"}
	ref, err := newSender(t, u.String(), nil).Send(t.Context(), m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := relay.Received()
	if len(got) != 1 {
		t.Fatalf("relay received %d messages, want 1", len(got))
	}
	rcv := got[0]
	if ref != rcv.Msg.Header.Get("Message-Id") || rcv.From != "tickets@cafe.example" || len(rcv.To) != 1 || rcv.To[0] != "zoe@example.org" {
		t.Errorf("reference %q, envelope %q -> %q", ref, rcv.From, rcv.To)
	}
	replyTo, err := rcv.Msg.Header.AddressList("Reply-To")
	if err != nil || len(replyTo) != 1 || replyTo[0].Address != "hallo@cafe.example" || replyTo[0].Name != "Café Conf, e.V." {
		t.Errorf("Reply-To = %v (%v)", replyTo, err)
	}
	if mt, _, _ := mime.ParseMediaType(rcv.Msg.Header.Get("Content-Type")); mt != "multipart/mixed" {
		t.Errorf("Content-Type = %q", rcv.Msg.Header.Get("Content-Type"))
	}
	// Quoted-printable carries line ends as CRLF; the templates write LF.
	crlf := strings.NewReplacer("\n", "\r\n")
	if rcv.Text != crlf.Replace(m.Text) || rcv.HTML != crlf.Replace(m.HTML) {
		t.Errorf("the relay decoded other alternatives than were rendered:\n%s", rcv.Text)
	}
	if !strings.Contains(rcv.Text, "€149.00") || !strings.Contains(rcv.Text, "8001 Zürich") {
		t.Errorf("the receipt is not in the text:\n%s", rcv.Text)
	}
	if len(rcv.Attachments) != 1 {
		t.Fatalf("attachments = %+v", rcv.Attachments)
	}
	a := rcv.Attachments[0]
	if a.Filename != "café-conf-2027.ics" || a.ContentType != "text/calendar; charset=utf-8; method=PUBLISH" || !bytes.Equal(a.Data, m.Attachments[0].Data) {
		t.Errorf("attachment %q %q (%d bytes)", a.Filename, a.ContentType, len(a.Data))
	}
	if want, _ := m.Bytes(); !bytes.Equal(rcv.Data, want) {
		t.Errorf("DATA differs from m.Bytes()")
	}
}
