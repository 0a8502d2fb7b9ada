package email_test

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/email"
)

const evil = "\r\nBcc: evil@example.org"

func validMessage() email.Message {
	return email.Message{
		ID:      "reg-0123456789abcdef",
		From:    email.Address{Name: "GopherFest", Email: "tickets@gopherfest.example"},
		To:      email.Address{Name: "Ada Lovelace", Email: "ada@example.org"},
		Subject: "Your ticket for GopherFest 2027",
		Date:    time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC),
		Text:    "Hello Ada,\n\nsee you there.\n",
		HTML:    "<p>Hello Ada,</p>\n<p>see you there.</p>\n",
		Headers: map[string]string{"X-Registration-ID": "reg-0123456789abcdef"},
	}
}

// part is one decoded MIME part.
type part struct {
	contentType string
	body        string
}

// parseMessage parses raw with net/mail and mime/multipart, decoding the
// quoted-printable parts.
func parseMessage(t testing.TB, raw []byte) (*mail.Message, []part) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v", err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("parse Content-Type: %v", err)
	}
	if mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type = %q, want multipart/alternative", mediaType)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []part
	for {
		p, err := mr.NextPart() // decodes quoted-printable transparently
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		parts = append(parts, part{contentType: p.Header.Get("Content-Type"), body: string(body)})
	}
	return msg, parts
}

// checkWireFormat asserts CRLF line endings throughout, no line longer than
// maxLine octets, and a pure-ASCII header section. It returns the header
// lines (unfolded lines are kept as they are).
func checkWireFormat(t testing.TB, raw []byte, maxLine int) []string {
	t.Helper()
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			t.Fatalf("bare LF at offset %d", i)
		}
		if c == '\r' && (i+1 == len(raw) || raw[i+1] != '\n') {
			t.Fatalf("bare CR at offset %d", i)
		}
	}
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Fatalf("message does not end with CRLF")
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\r\n"), "\r\n")
	for i, l := range lines {
		if len(l) > maxLine {
			t.Errorf("line %d is %d octets long (max %d): %q", i+1, len(l), maxLine, l)
		}
	}
	end := slices.Index(lines, "")
	if end < 0 {
		t.Fatalf("no blank line between header and body")
	}
	for _, l := range lines[:end] {
		for j := 0; j < len(l); j++ {
			if l[j] >= 0x80 {
				t.Fatalf("non-ASCII byte in header line %q", l)
			}
		}
	}
	return lines[:end]
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mutate    func(m *email.Message)
		wantField string // "" means valid
	}{
		{"valid", func(m *email.Message) {}, ""},
		{"no names and no extra headers", func(m *email.Message) {
			m.From.Name, m.To.Name, m.Headers = "", "", nil
		}, ""},
		{"non-ASCII names and subject", func(m *email.Message) {
			m.To.Name, m.Subject = "Zoë Ünal", "Your ticket for Café Conf"
		}, ""},
		{"tab in subject", func(m *email.Message) { m.Subject = "a\tb" }, ""},
		{"ID with atext specials", func(m *email.Message) { m.ID = "a/b=c.d" }, ""},

		{"missing ID", func(m *email.Message) { m.ID = "" }, "ID"},
		{"ID with space", func(m *email.Message) { m.ID = "reg 1" }, "ID"},
		{"ID with at sign", func(m *email.Message) { m.ID = "reg@1" }, "ID"},
		{"ID with angle bracket", func(m *email.Message) { m.ID = "reg>1" }, "ID"},
		{"ID with double dot", func(m *email.Message) { m.ID = "a..b" }, "ID"},
		{"ID with leading dot", func(m *email.Message) { m.ID = ".ab" }, "ID"},
		{"ID with injection", func(m *email.Message) { m.ID = "reg" + evil }, "ID"},
		{"ID too long", func(m *email.Message) { m.ID = strings.Repeat("a", 201) }, "ID"},

		{"missing From.Email", func(m *email.Message) { m.From.Email = "" }, "From.Email"},
		{"invalid From.Email", func(m *email.Message) { m.From.Email = "not-an-address" }, "From.Email"},
		{"From.Email with display name", func(m *email.Message) { m.From.Email = "GopherFest <tickets@gopherfest.example>" }, "From.Email"},
		{"From.Email with space", func(m *email.Message) { m.From.Email = " tickets@gopherfest.example" }, "From.Email"},
		{"From.Email with comment", func(m *email.Message) { m.From.Email = "tickets@gopherfest.example (x)" }, "From.Email"},
		{"missing To.Email", func(m *email.Message) { m.To.Email = "" }, "To.Email"},
		{"To.Email with injection", func(m *email.Message) { m.To.Email = "ada@example.org" + evil }, "To.Email"},
		{"To.Email list", func(m *email.Message) { m.To.Email = "ada@example.org, evil@example.org" }, "To.Email"},

		{"To.Name with CRLF injection", func(m *email.Message) { m.To.Name = "Ada" + evil }, "To.Name"},
		{"To.Name with LF", func(m *email.Message) { m.To.Name = "Ada\nBcc: evil@example.org" }, "To.Name"},
		{"To.Name with CR", func(m *email.Message) { m.To.Name = "Ada\rBcc: evil@example.org" }, "To.Name"},
		{"To.Name with NUL", func(m *email.Message) { m.To.Name = "Ada\x00" }, "To.Name"},
		{"To.Name invalid UTF-8", func(m *email.Message) { m.To.Name = "Ada\xff" }, "To.Name"},
		{"To.Name too long", func(m *email.Message) { m.To.Name = strings.Repeat("a", 257) }, "To.Name"},
		{"From.Name with injection", func(m *email.Message) { m.From.Name = "GopherFest" + evil }, "From.Name"},

		{"missing Subject", func(m *email.Message) { m.Subject = "" }, "Subject"},
		{"Subject with injection", func(m *email.Message) { m.Subject = "Hi" + evil }, "Subject"},
		{"Subject too long", func(m *email.Message) { m.Subject = strings.Repeat("a", 513) }, "Subject"},

		{"missing Date", func(m *email.Message) { m.Date = time.Time{} }, "Date"},
		{"missing Text", func(m *email.Message) { m.Text = "" }, "Text"},
		{"blank Text", func(m *email.Message) { m.Text = " \n\t" }, "Text"},
		{"Text invalid UTF-8", func(m *email.Message) { m.Text = "\xc3(" }, "Text"},
		{"missing HTML", func(m *email.Message) { m.HTML = "" }, "HTML"},

		{"header name with space", func(m *email.Message) { m.Headers = map[string]string{"X Bad": "v"} }, `Headers["X Bad"]`},
		{"header name with colon", func(m *email.Message) { m.Headers = map[string]string{"Bcc: evil@example.org\r\nX": "v"} }, `Headers["Bcc: evil@example.org\r\nX"]`},
		{"empty header name", func(m *email.Message) { m.Headers = map[string]string{"": "v"} }, `Headers[""]`},
		{"reserved header", func(m *email.Message) { m.Headers = map[string]string{"subject": "other"} }, `Headers["subject"]`},
		{"reserved Content-Type", func(m *email.Message) { m.Headers = map[string]string{"Content-Type": "text/plain"} }, `Headers["Content-Type"]`},
		{"duplicate header", func(m *email.Message) { m.Headers = map[string]string{"X-A": "1", "x-a": "2"} }, `Headers["x-a"]`},
		{"header value with injection", func(m *email.Message) { m.Headers["X-Registration-ID"] = "reg" + evil }, `Headers["X-Registration-ID"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := validMessage()
			tt.mutate(&m)
			err := m.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := m.Bytes(); err != nil {
					t.Fatalf("Bytes() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %s", tt.wantField)
			}
			if !errors.Is(err, email.ErrInvalidMessage) {
				t.Errorf("Validate() = %v, want it to wrap ErrInvalidMessage", err)
			}
			if !strings.Contains(err.Error(), tt.wantField+":") {
				t.Errorf("Validate() = %q, want it to name %s", err, tt.wantField)
			}
			if strings.Contains(err.Error(), "evil@example.org") && !strings.HasPrefix(tt.wantField, "Headers[") {
				t.Errorf("Validate() = %q repeats the rejected content", err)
			}
			if raw, err := m.Bytes(); err == nil || raw != nil {
				t.Errorf("Bytes() = %d bytes, %v; want nil and an error", len(raw), err)
			}
		})
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	t.Parallel()
	m := validMessage()
	m.Subject, m.To.Name, m.HTML = "", "Ada"+evil, ""
	err := m.Validate()
	for _, field := range []string{"Subject:", "To.Name:", "HTML:"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v, want it to name %s", err, field)
		}
	}
}

func TestBytesRoundTrip(t *testing.T) {
	t.Parallel()
	longSubject := "Your ticket for the International Conference on Very Long Names of Conferences and Their Subjects 2027"
	tests := []struct {
		name    string
		mutate  func(m *email.Message)
		maxLine int
	}{
		{"plain", func(m *email.Message) {}, 78},
		{"non-ASCII", func(m *email.Message) {
			m.To.Name, m.Subject = "Zoë Ünal", "Your ticket for Café Conf"
			m.Text, m.HTML = "Grüße, Zoë!\n", "<p>Grüße, Zoë!</p>\n"
		}, 78},
		{"long subject is folded", func(m *email.Message) { m.Subject = longSubject }, 78},
		// mime.QEncoding makes encoded words of up to 75 characters
		// without counting the field name: one per line after folding.
		{"long non-ASCII subject is folded", func(m *email.Message) { m.Subject = strings.Repeat("Ünïcödé ", 30) + "end" }, len("Subject: ") + 75},
		{"long quoted name", func(m *email.Message) {
			m.To.Name = "Dr. Ada Augusta King, Countess of Lovelace, née Byron (mathematician)"
		}, 998},
		{"name needing B encoding", func(m *email.Message) { m.To.Name = `Zoë "Z" Ünal, Ph.D.` }, 78},
		{"name with quotes and backslash", func(m *email.Message) { m.To.Name = `Ada "the Countess" \ Lovelace` }, 78},
		{"no names", func(m *email.Message) { m.From.Name, m.To.Name = "", "" }, 78},
		{"sorted extra headers", func(m *email.Message) {
			m.Headers = map[string]string{"X-B": "2", "X-A": "1", "Reply-To": "help@gopherfest.example", "X-Registration-ID": m.ID}
		}, 78},
		{"awkward bodies", func(m *email.Message) {
			m.Text = "no trailing newline\r\nCRLF line\rlone CR\ntrailing space   \n--=_ boundary-like\n=3D literal\n" +
				"From the start\n.\n" + strings.Repeat("x", 200) + "\nend"
			m.HTML = "<p style=\"color:#000\">a=b</p>" + strings.Repeat("<br>", 50)
		}, 78},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := validMessage()
			tt.mutate(&m)
			raw, err := m.Bytes()
			if err != nil {
				t.Fatalf("Bytes() = %v", err)
			}
			again, err := m.Bytes()
			if err != nil || !bytes.Equal(raw, again) {
				t.Fatalf("Bytes() is not reproducible")
			}
			headerLines := checkWireFormat(t, raw, tt.maxLine)

			msg, parts := parseMessage(t, raw)

			// Exactly the expected headers, each once.
			want := []string{"Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}
			for name := range m.Headers {
				want = append(want, textproto.CanonicalMIMEHeaderKey(name))
			}
			slices.Sort(want)
			if got := slices.Sorted(maps.Keys(msg.Header)); !slices.Equal(got, want) {
				t.Fatalf("header keys = %q, want %q", got, want)
			}
			for k, v := range msg.Header {
				if len(v) != 1 {
					t.Errorf("header %s appears %d times", k, len(v))
				}
			}

			// Order: Date, From, To, Subject, Message-ID, MIME-Version, extras sorted, Content-Type.
			var order []string
			for _, l := range headerLines {
				if l[0] != ' ' && l[0] != '\t' {
					order = append(order, l[:strings.IndexByte(l, ':')])
				}
			}
			wantOrder := append([]string{"Date", "From", "To", "Subject", "Message-ID", "MIME-Version"},
				slices.Sorted(maps.Keys(m.Headers))...)
			wantOrder = append(wantOrder, "Content-Type")
			if !slices.Equal(order, wantOrder) {
				t.Errorf("header order = %q, want %q", order, wantOrder)
			}

			date, err := msg.Header.Date()
			if err != nil || !date.Equal(m.Date) {
				t.Errorf("Date = %v, %v; want %v", date, err, m.Date)
			}
			for _, a := range []struct {
				header string
				want   email.Address
			}{{"From", m.From}, {"To", m.To}} {
				got, err := mail.ParseAddress(msg.Header.Get(a.header))
				if err != nil {
					t.Errorf("%s: %v", a.header, err)
					continue
				}
				if got.Name != a.want.Name || got.Address != a.want.Email {
					t.Errorf("%s = %q <%s>, want %q <%s>", a.header, got.Name, got.Address, a.want.Name, a.want.Email)
				}
			}
			var dec mime.WordDecoder
			if subject, err := dec.DecodeHeader(msg.Header.Get("Subject")); err != nil || subject != m.Subject {
				t.Errorf("Subject = %q, %v; want %q", subject, err, m.Subject)
			}
			if got, want := msg.Header.Get("Message-Id"), "<"+m.ID+"@gopherfest.example>"; got != want {
				t.Errorf("Message-ID = %q, want %q", got, want)
			}
			if got := msg.Header.Get("Mime-Version"); got != "1.0" {
				t.Errorf("MIME-Version = %q, want 1.0", got)
			}
			for name, value := range m.Headers {
				if got := msg.Header.Get(name); got != value {
					t.Errorf("%s = %q, want %q", name, got, value)
				}
			}

			if len(parts) != 2 {
				t.Fatalf("got %d parts, want 2", len(parts))
			}
			for i, want := range []part{
				{"text/plain; charset=utf-8", crlf(m.Text)},
				{"text/html; charset=utf-8", crlf(m.HTML)},
			} {
				if parts[i] != want {
					t.Errorf("part %d = %+v, want %+v", i, parts[i], want)
				}
			}
		})
	}
}

func TestBytesBoundaryFromID(t *testing.T) {
	t.Parallel()
	boundary := func(id string) string {
		m := validMessage()
		m.ID = id
		raw, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		return params["boundary"]
	}
	a1, a2, b := boundary("reg-a"), boundary("reg-a"), boundary("reg-b")
	if a1 == "" || a1 != a2 {
		t.Errorf("boundary for the same ID differs: %q, %q", a1, a2)
	}
	if a1 == b {
		t.Errorf("different IDs share boundary %q", a1)
	}
}

func TestBytesNonASCIIHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		toName   string
		fromName string
		subject  string
	}{
		{"attendee and event", "Zoë Ünal", "GopherFest", "Your ticket for Café Conf"},
		{"organiser", "Ada Lovelace", "Café Conf e.V.", "Your ticket for Café Conf"},
		{"specials force B encoding", `Ünal, Zoë "Z"`, "Café (Conf)", "Grüße"},
		{"CJK", "山田 太郎", "技術会議", "技術会議 2027 のチケット"},
		{"emoji", "Zoë 🎉", "GopherFest", "Your ticket 🎟 for Café Conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := validMessage()
			m.To.Name, m.From.Name, m.Subject = tt.toName, tt.fromName, tt.subject
			raw, err := m.Bytes()
			if err != nil {
				t.Fatalf("Bytes() = %v", err)
			}
			checkWireFormat(t, raw, len("Subject: ")+75) // see TestBytesRoundTrip
			msg, _ := parseMessage(t, raw)

			var dec mime.WordDecoder
			for _, h := range []struct{ header, want string }{
				{"Subject", tt.subject},
				{"To", tt.toName},
				{"From", tt.fromName},
			} {
				rawValue := msg.Header.Get(h.header)
				if isASCII(h.want) {
					if !strings.Contains(rawValue, h.want) {
						t.Errorf("%s = %q, want it to contain %q", h.header, rawValue, h.want)
					}
					continue
				}
				if !strings.Contains(strings.ToLower(rawValue), "=?utf-8?") {
					t.Errorf("%s = %q, want an RFC 2047 encoded word", h.header, rawValue)
				}
				decoded, err := dec.DecodeHeader(rawValue)
				if err != nil {
					t.Fatalf("DecodeHeader(%s): %v", h.header, err)
				}
				if !strings.Contains(decoded, h.want) {
					t.Errorf("decoded %s = %q, want it to contain %q", h.header, decoded, h.want)
				}
			}
			if subject, _ := dec.DecodeHeader(msg.Header.Get("Subject")); subject != tt.subject {
				t.Errorf("Subject = %q, want %q", subject, tt.subject)
			}
			to, err := mail.ParseAddress(msg.Header.Get("To"))
			if err != nil || to.Name != tt.toName {
				t.Errorf("To = %+v, %v; want name %q", to, err, tt.toName)
			}
		})
	}
}

// FuzzMessageBytes feeds arbitrary names, subject, header value and ID: either
// Validate rejects the message, or the output parses and carries exactly the
// expected headers, so nothing can be injected.
func FuzzMessageBytes(f *testing.F) {
	f.Add("GopherFest", "Ada Lovelace", "Your ticket for GopherFest 2027", "reg-1", "reg-1")
	f.Add("", "", "x", "", "a")
	f.Add("GopherFest", "Ada"+evil, "Hi", "v", "reg-1")
	f.Add("GopherFest", "Ada", "Hi\nBcc: evil@example.org", "v", "reg-1")
	f.Add("GopherFest", "Ada", "Hi", "v\r\n\r\n<html>", "reg-1")
	f.Add("Café Conf", "Zoë Ünal", "Your ticket for Café Conf", "Zoë", "reg.ü")
	f.Add(`"quoted" \ name`, `<script>alert(1)</script>`, "=?utf-8?q?encoded?=", "=?x?=", "a/b=c")
	f.Add("a  b", " leading", "trailing ", "\t", "x")
	f.Add(strings.Repeat("ab ", 80), strings.Repeat("é", 120), strings.Repeat("word ", 100), strings.Repeat("v", 500), "id")
	f.Fuzz(func(t *testing.T, fromName, toName, subject, headerValue, id string) {
		m := validMessage()
		m.ID, m.From.Name, m.To.Name, m.Subject = id, fromName, toName, subject
		m.Headers = map[string]string{"X-Registration-ID": headerValue}

		raw, err := m.Bytes()
		if err != nil {
			if !errors.Is(err, email.ErrInvalidMessage) {
				t.Fatalf("Bytes() = %v, want an error wrapping ErrInvalidMessage", err)
			}
			if m.Validate() == nil {
				t.Fatalf("Bytes() failed (%v) but Validate() passed", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Bytes() passed but Validate() = %v", err)
		}
		checkWireFormat(t, raw, 998)
		msg, parts := parseMessage(t, raw)

		want := []string{"Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To", "X-Registration-Id"}
		if got := slices.Sorted(maps.Keys(msg.Header)); !slices.Equal(got, want) {
			t.Fatalf("header keys = %q, want %q", got, want)
		}
		for k, v := range msg.Header {
			if len(v) != 1 {
				t.Fatalf("header %s appears %d times", k, len(v))
			}
		}
		if got, want := msg.Header.Get("Message-Id"), "<"+id+"@gopherfest.example>"; got != want {
			t.Fatalf("Message-ID = %q, want %q", got, want)
		}
		for _, a := range []struct{ header, name, email string }{
			{"From", fromName, m.From.Email}, {"To", toName, m.To.Email},
		} {
			got, err := mail.ParseAddress(msg.Header.Get(a.header))
			if err != nil {
				t.Fatalf("%s %q: %v", a.header, msg.Header.Get(a.header), err)
			}
			if got.Name != a.name || got.Address != a.email {
				t.Fatalf("%s = %q <%s>, want %q <%s>", a.header, got.Name, got.Address, a.name, a.email)
			}
		}
		// Unstructured values round-trip, except that header parsing trims
		// surrounding blanks of unencoded values and decodes ASCII text that
		// merely looks like an encoded word.
		var dec mime.WordDecoder
		for _, h := range []struct{ header, want string }{
			{"Subject", subject}, {"X-Registration-Id", headerValue},
		} {
			if strings.Contains(h.want, "=?") {
				continue
			}
			got, err := dec.DecodeHeader(msg.Header.Get(h.header))
			if err != nil {
				t.Fatalf("DecodeHeader(%s): %v", h.header, err)
			}
			if got != h.want && got != strings.Trim(h.want, " \t") {
				t.Fatalf("%s = %q, want %q", h.header, got, h.want)
			}
		}
		if len(parts) != 2 || parts[0].body != crlf(m.Text) || parts[1].body != crlf(m.HTML) {
			t.Fatalf("parts = %+v", parts)
		}
	})
}
