package email_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
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

// attachment is one decoded attachment part.
type attachment struct {
	contentType string
	filename    string
	data        []byte
}

// parseMessage parses raw with net/mail and mime/multipart, decoding the
// quoted-printable parts, and returns the text and HTML alternatives.
func parseMessage(t testing.TB, raw []byte) (*mail.Message, []part) {
	t.Helper()
	msg, parts, _ := parseMIME(t, raw)
	return msg, parts
}

// parseMIME parses raw as either a multipart/alternative, or a
// multipart/mixed made of a multipart/alternative and attachments (each
// base64 with Content-Disposition: attachment), and checks the structure.
func parseMIME(t testing.TB, raw []byte) (*mail.Message, []part, []attachment) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v", err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("parse Content-Type: %v", err)
	}
	switch mediaType {
	case "multipart/alternative":
		return msg, readAlternatives(t, msg.Body, params["boundary"]), nil
	case "multipart/mixed":
	default:
		t.Fatalf("Content-Type = %q, want multipart/alternative or multipart/mixed", mediaType)
	}
	mixed := params["boundary"]
	mr := multipart.NewReader(msg.Body, mixed)
	first, err := mr.NextPart()
	if err != nil {
		t.Fatalf("first part of multipart/mixed: %v", err)
	}
	altType, altParams, err := mime.ParseMediaType(first.Header.Get("Content-Type"))
	if err != nil || altType != "multipart/alternative" {
		t.Fatalf("first part is %q (%v), want multipart/alternative", first.Header.Get("Content-Type"), err)
	}
	if altParams["boundary"] == mixed || strings.HasPrefix(altParams["boundary"], mixed) || strings.HasPrefix(mixed, altParams["boundary"]) {
		t.Fatalf("boundaries %q and %q are not distinct", mixed, altParams["boundary"])
	}
	parts := readAlternatives(t, first, altParams["boundary"])
	var attachments []attachment
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		if cte := p.Header.Get("Content-Transfer-Encoding"); cte != "base64" {
			t.Fatalf("attachment Content-Transfer-Encoding = %q, want base64", cte)
		}
		disposition, dparams, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err != nil || disposition != "attachment" {
			t.Fatalf("Content-Disposition = %q (%v), want attachment", p.Header.Get("Content-Disposition"), err)
		}
		encoded, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read attachment: %v", err)
		}
		for _, line := range strings.Split(strings.TrimRight(string(encoded), "\r\n"), "\r\n") {
			if len(line) > 76 {
				t.Errorf("base64 line of %d characters, more than 76", len(line))
			}
		}
		data, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(encoded), "\r\n", ""))
		if err != nil {
			t.Fatalf("attachment is not base64: %v", err)
		}
		attachments = append(attachments, attachment{contentType: p.Header.Get("Content-Type"), filename: dparams["filename"], data: data})
	}
	return msg, parts, attachments
}

// readAlternatives reads the parts of a multipart/alternative body.
func readAlternatives(t testing.TB, body io.Reader, boundary string) []part {
	t.Helper()
	mr := multipart.NewReader(body, boundary)
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
	return parts
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
		{"Reply-To as an extra header", func(m *email.Message) { m.Headers = map[string]string{"Reply-To": "help@gopherfest.example"} }, `Headers["Reply-To"]`},

		{"reply-to", func(m *email.Message) {
			m.ReplyTo = email.Address{Name: "GopherFest e.V.", Email: "hello@gopherfest.example"}
		}, ""},
		{"reply-to without a name", func(m *email.Message) { m.ReplyTo = email.Address{Email: "hello@gopherfest.example"} }, ""},
		{"reply-to name without an address", func(m *email.Message) { m.ReplyTo = email.Address{Name: "GopherFest e.V."} }, "ReplyTo.Email"},
		{"invalid ReplyTo.Email", func(m *email.Message) { m.ReplyTo = email.Address{Email: "hello"} }, "ReplyTo.Email"},
		{"ReplyTo.Email list", func(m *email.Message) { m.ReplyTo = email.Address{Email: "a@example.org, b@example.org"} }, "ReplyTo.Email"},
		{"ReplyTo.Email with injection", func(m *email.Message) { m.ReplyTo = email.Address{Email: "hello@gopherfest.example" + evil} }, "ReplyTo.Email"},
		{"ReplyTo.Name with injection", func(m *email.Message) {
			m.ReplyTo = email.Address{Name: "GopherFest" + evil, Email: "hello@gopherfest.example"}
		}, "ReplyTo.Name"},

		{"attachment", func(m *email.Message) { m.Attachments = []email.Attachment{calendarAttachment()} }, ""},
		{"attachment with a non-ASCII name and spaces", func(m *email.Message) {
			a := calendarAttachment()
			a.Filename = "Café Conf 2027.ics"
			m.Attachments = []email.Attachment{a}
		}, ""},
		{"attachment without a name", attach(func(a *email.Attachment) { a.Filename = "" }), "Attachments[0].Filename"},
		{"attachment name with CRLF", attach(func(a *email.Attachment) { a.Filename = "a.ics" + evil }), "Attachments[0].Filename"},
		{"attachment name with LF", attach(func(a *email.Attachment) { a.Filename = "a\n.ics" }), "Attachments[0].Filename"},
		{"attachment name with NUL", attach(func(a *email.Attachment) { a.Filename = "a\x00.ics" }), "Attachments[0].Filename"},
		{"attachment name with a tab", attach(func(a *email.Attachment) { a.Filename = "a\t.ics" }), "Attachments[0].Filename"},
		{"attachment name with a double quote", attach(func(a *email.Attachment) { a.Filename = `a".ics` }), "Attachments[0].Filename"},
		{"attachment name with a single quote", attach(func(a *email.Attachment) { a.Filename = `a'.ics` }), "Attachments[0].Filename"},
		{"attachment name with a slash", attach(func(a *email.Attachment) { a.Filename = "../../etc/passwd" }), "Attachments[0].Filename"},
		{"attachment name with a backslash", attach(func(a *email.Attachment) { a.Filename = `..\a.ics` }), "Attachments[0].Filename"},
		{"attachment name dot-dot", attach(func(a *email.Attachment) { a.Filename = ".." }), "Attachments[0].Filename"},
		{"attachment name with a leading space", attach(func(a *email.Attachment) { a.Filename = " a.ics" }), "Attachments[0].Filename"},
		{"attachment name invalid UTF-8", attach(func(a *email.Attachment) { a.Filename = "a\xff.ics" }), "Attachments[0].Filename"},
		{"attachment name too long", attach(func(a *email.Attachment) { a.Filename = strings.Repeat("a", 97) + ".ics" }), "Attachments[0].Filename"},
		{"attachment without a type", attach(func(a *email.Attachment) { a.ContentType = "" }), "Attachments[0].ContentType"},
		{"attachment type not a media type", attach(func(a *email.Attachment) { a.ContentType = "calendar" }), "Attachments[0].ContentType"},
		{"attachment type with injection", attach(func(a *email.Attachment) { a.ContentType = "text/calendar" + evil }), "Attachments[0].ContentType"},
		{"attachment type multipart", attach(func(a *email.Attachment) { a.ContentType = "multipart/mixed; boundary=x" }), "Attachments[0].ContentType"},
		{"attachment type message", attach(func(a *email.Attachment) { a.ContentType = "message/rfc822" }), "Attachments[0].ContentType"},
		{"empty attachment", attach(func(a *email.Attachment) { a.Data = nil }), "Attachments[0].Data"},
		{"attachment too large", attach(func(a *email.Attachment) { a.Data = make([]byte, 5<<20+1) }), "Attachments[0].Data"},
		{"attachments too large together", func(m *email.Message) {
			for i := range 3 {
				m.Attachments = append(m.Attachments, email.Attachment{Filename: fmt.Sprintf("%d.bin", i), ContentType: "application/octet-stream", Data: make([]byte, 4<<20)})
			}
		}, "Attachments"},
		{"too many attachments", func(m *email.Message) {
			for i := range 11 {
				m.Attachments = append(m.Attachments, email.Attachment{Filename: fmt.Sprintf("%d.txt", i), ContentType: "text/plain", Data: []byte("x")})
			}
		}, "Attachments"},
		{"two attachments with one name", func(m *email.Message) {
			a, b := calendarAttachment(), calendarAttachment()
			b.Filename = strings.ToUpper(b.Filename)
			m.Attachments = []email.Attachment{a, b}
		}, "Attachments[1].Filename"},
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

// calendarAttachment is a small valid invitation.
func calendarAttachment() email.Attachment {
	return email.Attachment{
		Filename:    "gopherfest-2027.ics",
		ContentType: "text/calendar; charset=utf-8; method=PUBLISH",
		Data:        []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"),
	}
}

// attach returns a mutation that gives the message one calendar attachment
// changed by f.
func attach(f func(a *email.Attachment)) func(m *email.Message) {
	return func(m *email.Message) {
		a := calendarAttachment()
		f(&a)
		m.Attachments = []email.Attachment{a}
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
			m.Headers = map[string]string{"X-B": "2", "X-A": "1", "X-Registration-ID": m.ID}
		}, 78},
		{"reply-to", func(m *email.Message) {
			m.ReplyTo = email.Address{Name: "GopherFest e.V.", Email: "hello@gopherfest.example"}
		}, 78},
		{"non-ASCII reply-to", func(m *email.Message) {
			m.ReplyTo = email.Address{Name: "Café Conf, Zürich", Email: "hallo@cafe.example"}
		}, 78},
		{"attachment", func(m *email.Message) { m.Attachments = []email.Attachment{calendarAttachment()} }, 78},
		{"attachments and reply-to", func(m *email.Message) {
			m.ReplyTo = email.Address{Email: "hello@gopherfest.example"}
			big := make([]byte, 10000)
			for i := range big {
				big[i] = byte(i * 7)
			}
			m.Attachments = []email.Attachment{calendarAttachment(),
				{Filename: "Programm für Zoë.pdf", ContentType: "application/pdf", Data: big},
				{Filename: "notes (1).txt", ContentType: "text/plain; charset=utf-8", Data: []byte("--=_ not a boundary\n")}}
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

			msg, parts, attachments := parseMIME(t, raw)

			// Exactly the expected headers, each once.
			want := []string{"Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}
			if m.ReplyTo.Email != "" {
				want = append(want, "Reply-To")
			}
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

			// Order: Date, From, To, Reply-To, Subject, Message-ID, MIME-Version, extras sorted, Content-Type.
			var order []string
			for _, l := range headerLines {
				if l[0] != ' ' && l[0] != '\t' {
					order = append(order, l[:strings.IndexByte(l, ':')])
				}
			}
			wantOrder := []string{"Date", "From", "To"}
			if m.ReplyTo.Email != "" {
				wantOrder = append(wantOrder, "Reply-To")
			}
			wantOrder = append(wantOrder, "Subject", "Message-ID", "MIME-Version")
			wantOrder = append(wantOrder, slices.Sorted(maps.Keys(m.Headers))...)
			wantOrder = append(wantOrder, "Content-Type")
			if !slices.Equal(order, wantOrder) {
				t.Errorf("header order = %q, want %q", order, wantOrder)
			}

			date, err := msg.Header.Date()
			if err != nil || !date.Equal(m.Date) {
				t.Errorf("Date = %v, %v; want %v", date, err, m.Date)
			}
			addresses := []struct {
				header string
				want   email.Address
			}{{"From", m.From}, {"To", m.To}}
			if m.ReplyTo.Email != "" {
				addresses = append(addresses, struct {
					header string
					want   email.Address
				}{"Reply-To", m.ReplyTo})
			}
			for _, a := range addresses {
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
			if wantMixed := len(m.Attachments) > 0; strings.HasPrefix(msg.Header.Get("Content-Type"), "multipart/mixed") != wantMixed {
				t.Errorf("Content-Type = %q with %d attachments", msg.Header.Get("Content-Type"), len(m.Attachments))
			}
			if len(attachments) != len(m.Attachments) {
				t.Fatalf("got %d attachments, want %d", len(attachments), len(m.Attachments))
			}
			for i, a := range m.Attachments {
				got := attachments[i]
				if got.filename != a.Filename || !bytes.Equal(got.data, a.Data) {
					t.Errorf("attachment %d = %q (%d bytes), want %q (%d bytes)", i, got.filename, len(got.data), a.Filename, len(a.Data))
				}
				gotType, gotParams, err1 := mime.ParseMediaType(got.contentType)
				wantType, wantParams, err2 := mime.ParseMediaType(a.ContentType)
				if err1 != nil || err2 != nil || gotType != wantType || !maps.Equal(gotParams, wantParams) {
					t.Errorf("attachment %d Content-Type = %q, want %q", i, got.contentType, a.ContentType)
				}
			}
		})
	}
}

func TestBytesAttachmentLayout(t *testing.T) {
	t.Parallel()
	m := validMessage()
	m.Attachments = []email.Attachment{calendarAttachment()}
	raw, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	mixed := params["boundary"]
	body := string(raw[bytes.Index(raw, []byte("\r\n\r\n"))+4:])
	// The attachment part as a mail client sees it.
	wantPart := "\r\n--" + mixed + "\r\n" +
		"Content-Type: text/calendar; charset=utf-8; method=PUBLISH\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=gopherfest-2027.ics\r\n\r\n" +
		base64.StdEncoding.EncodeToString(calendarAttachment().Data) + "\r\n" +
		"\r\n--" + mixed + "--\r\n"
	if !strings.HasSuffix(body, wantPart) {
		t.Errorf("message does not end with the attachment part %q:\n%s", wantPart, body)
	}
	if !strings.HasPrefix(body, "--"+mixed+"\r\nContent-Type: multipart/alternative; boundary=") {
		t.Errorf("message does not start with the alternatives:\n%s", body)
	}
	// Every delimiter line is one of the two boundaries, opened and closed once.
	var delimiters []string
	for line := range strings.SplitSeq(body, "\r\n") {
		if strings.HasPrefix(line, "--") {
			delimiters = append(delimiters, line)
		}
	}
	_, altParams, _ := mime.ParseMediaType(strings.TrimPrefix(strings.Split(body, "\r\n")[1], "Content-Type: "))
	alt := altParams["boundary"]
	want := []string{"--" + mixed, "--" + alt, "--" + alt, "--" + alt + "--", "--" + mixed, "--" + mixed + "--"}
	if !slices.Equal(delimiters, want) {
		t.Errorf("delimiters = %q, want %q", delimiters, want)
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

// FuzzAttachmentFilename: either Validate rejects the file name, or the
// message parses with exactly one attachment carrying that name, and nothing
// reaches the headers.
func FuzzAttachmentFilename(f *testing.F) {
	for _, seed := range []string{"gopherfest-2027.ics", "Café Conf 2027.ics", "a;b=c.ics", `a"b.ics`, "a\r\nBcc: x@example.org",
		"../x", `..\x`, "=?utf-8?q?x?=", "notes (1).txt", "技術会議.ics", " lead", "a\tb", strings.Repeat("ü", 60)} {
		f.Add(seed, "text/calendar; charset=utf-8; method=PUBLISH")
	}
	f.Add("a.bin", "application/octet-stream")
	f.Add("a.txt", "text/plain; charset=\"utf-8\"; format=flowed")
	f.Add("a.txt", "text/plain;\r\nBcc: x@example.org")
	f.Fuzz(func(t *testing.T, filename, contentType string) {
		m := validMessage()
		m.Attachments = []email.Attachment{{Filename: filename, ContentType: contentType, Data: []byte("data")}}
		raw, err := m.Bytes()
		if err != nil {
			if !errors.Is(err, email.ErrInvalidMessage) {
				t.Fatalf("Bytes() = %v, want ErrInvalidMessage", err)
			}
			return
		}
		checkWireFormat(t, raw, 998)
		msg, parts, attachments := parseMIME(t, raw)
		want := []string{"Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To", "X-Registration-Id"}
		if got := slices.Sorted(maps.Keys(msg.Header)); !slices.Equal(got, want) {
			t.Fatalf("header keys = %q, want %q", got, want)
		}
		if len(parts) != 2 || len(attachments) != 1 {
			t.Fatalf("%d parts and %d attachments", len(parts), len(attachments))
		}
		if a := attachments[0]; a.filename != filename || string(a.data) != "data" {
			t.Fatalf("attachment %q (%q), want %q", a.filename, a.data, filename)
		}
	})
}
