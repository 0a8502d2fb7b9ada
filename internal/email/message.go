// Package email builds and delivers the registration confirmation email.
//
// A [Message] renders itself as a reproducible RFC 5322 / MIME message: a
// multipart/alternative with a plain-text and an HTML part, wrapped in a
// multipart/mixed with its attachments when it has any. [Renderer] turns a
// [Confirmation] into a Message from embedded templates (the receipt and an
// iCalendar invitation), and [Outbox] is the default mailer, which writes one
// .eml file per message.
package email

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalidMessage is returned (wrapped) when a message or confirmation
// cannot be rendered because of its content. Such an error is permanent:
// retrying the same input fails the same way.
var ErrInvalidMessage = errors.New("email: invalid message")

// Limits keep every header line well under the 998-octet limit of RFC 5322,
// whatever the content.
const (
	maxIDLen          = 200 // Message-ID local part
	maxEmailLen       = 254 // RFC 5321 path limit
	maxNameLen        = 256 // display names
	maxHeaderValueLen = 512 // subject and extra header values
	maxHeaderNameLen  = 76
	foldWidth         = 78 // RFC 5322 recommended line length

	maxAttachments        = 10
	maxAttachmentSize     = 5 << 20  // one attachment's data
	maxAttachmentsSize    = 10 << 20 // all attachments' data; base64 makes it a third larger
	maxFilenameLen        = 100      // bytes; percent-encoded it stays well under 998
	maxContentTypeLen     = 200
	base64LineLen         = 76 // RFC 2045 limit for encoded lines
	attachmentDisposition = "attachment"
)

// reservedHeaders are the headers that Bytes writes itself; Message.Headers
// must not set them.
var reservedHeaders = map[string]bool{
	"date":                      true,
	"from":                      true,
	"to":                        true,
	"reply-to":                  true,
	"subject":                   true,
	"message-id":                true,
	"mime-version":              true,
	"content-type":              true,
	"content-transfer-encoding": true,
}

// Address is a mailbox: an optional display name and an email address.
type Address struct {
	Name, Email string
}

// Message is an email with a plain-text and an HTML alternative, and
// optional attachments.
type Message struct {
	ID      string // stable Message-ID local part, e.g. the registration id; the header becomes <ID@domain-of-From>
	From    Address
	To      Address
	ReplyTo Address // optional: where answers go (the zero Address means From)
	Subject string
	Date    time.Time
	Text    string            // plain-text part
	HTML    string            // HTML part
	Headers map[string]string // extra headers, e.g. "X-Registration-ID"; names must be valid header field names
	// Attachments follow the text and HTML parts, in order.
	Attachments []Attachment
}

// Attachment is a file sent with a message, e.g. an .ics invitation.
type Attachment struct {
	// Filename is the name a mail client offers to save it as: no path
	// separators, quotes, line breaks or other control characters.
	Filename string
	// ContentType is its media type with parameters, e.g.
	// "text/calendar; charset=utf-8; method=PUBLISH".
	ContentType string
	Data        []byte
}

// Validate reports whether m can be rendered safely. The error wraps
// ErrInvalidMessage and names every offending field; it never repeats the
// field's content, which may be personal data.
func (m Message) Validate() error {
	var problems []string
	add := func(field, problem string) { problems = append(problems, field+": "+problem) }

	switch {
	case m.ID == "":
		add("ID", "is required")
	case len(m.ID) > maxIDLen:
		add("ID", fmt.Sprintf("is longer than %d bytes", maxIDLen))
	case !isDotAtom(m.ID):
		add("ID", "is not a valid Message-ID local part (letters, digits and !#$%&'*+-/=?^_`{|}~, separated by single dots)")
	}
	checkAddress(add, "From", m.From)
	checkAddress(add, "To", m.To)
	switch {
	case m.ReplyTo.Email != "":
		checkAddress(add, "ReplyTo", m.ReplyTo)
	case m.ReplyTo.Name != "":
		add("ReplyTo.Email", "is required when ReplyTo.Name is set")
	}

	if m.Subject == "" {
		add("Subject", "is required")
	} else if p := checkHeaderText(m.Subject, maxHeaderValueLen); p != "" {
		add("Subject", p)
	}

	if m.Date.IsZero() {
		add("Date", "is required")
	} else if y := m.Date.Year(); y < 1900 || y > 9999 {
		add("Date", "year must be between 1900 and 9999")
	}

	for _, part := range []struct{ field, body string }{{"Text", m.Text}, {"HTML", m.HTML}} {
		switch {
		case strings.TrimSpace(part.body) == "":
			add(part.field, "is required")
		case !utf8.ValidString(part.body):
			add(part.field, "is not valid UTF-8")
		}
	}

	seen := make(map[string]string, len(m.Headers))
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		field := fmt.Sprintf("Headers[%q]", name)
		if !isFieldName(name) {
			add(field, "is not a valid header field name")
			continue
		}
		lower := strings.ToLower(name)
		if reservedHeaders[lower] {
			add(field, "is set by the message itself and cannot be overridden")
			continue
		}
		if other, dup := seen[lower]; dup {
			add(field, fmt.Sprintf("duplicates %q", other))
			continue
		}
		seen[lower] = name
		if p := checkHeaderText(m.Headers[name], maxHeaderValueLen); p != "" {
			add(field, p)
		}
	}

	checkAttachments(add, m.Attachments)

	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, strings.Join(problems, "; "))
	}
	return nil
}

// checkAttachments reports what is wrong with each attachment, and with
// their number and total size.
func checkAttachments(add func(field, problem string), attachments []Attachment) {
	if len(attachments) > maxAttachments {
		add("Attachments", fmt.Sprintf("has %d attachments, more than %d", len(attachments), maxAttachments))
	}
	total := 0
	names := make(map[string]int, len(attachments))
	for i, a := range attachments {
		field := fmt.Sprintf("Attachments[%d]", i)
		if p := checkFilename(a.Filename); p != "" {
			add(field+".Filename", p)
		} else if j, dup := names[strings.ToLower(a.Filename)]; dup {
			add(field+".Filename", fmt.Sprintf("is the file name of Attachments[%d] too; give each a name of its own", j))
		} else {
			names[strings.ToLower(a.Filename)] = i
		}
		if _, p := attachmentType(a.ContentType); p != "" {
			add(field+".ContentType", p)
		}
		switch {
		case len(a.Data) == 0:
			add(field+".Data", "is empty")
		case len(a.Data) > maxAttachmentSize:
			add(field+".Data", fmt.Sprintf("is %d bytes, more than %d", len(a.Data), maxAttachmentSize))
		}
		total += len(a.Data)
	}
	if total > maxAttachmentsSize {
		add("Attachments", fmt.Sprintf("hold %d bytes together, more than %d", total, maxAttachmentsSize))
	}
}

// checkFilename returns what is wrong with name as an attachment's file
// name, or "".
func checkFilename(name string) string {
	switch {
	case name == "":
		return "is required"
	case !utf8.ValidString(name):
		return "is not valid UTF-8"
	case len(name) > maxFilenameLen:
		return fmt.Sprintf("is longer than %d bytes", maxFilenameLen)
	case strings.ContainsAny(name, "\r\n"):
		return "must not contain CR or LF"
	case hasControl(name) || strings.ContainsRune(name, '\t'):
		return "must not contain control characters"
	case strings.ContainsAny(name, `"'`):
		return "must not contain quotes"
	case strings.ContainsAny(name, `/\`):
		return "must not contain path separators (/ or \\)"
	case name == "." || name == ".." || strings.TrimSpace(name) != name:
		return "must be a plain file name without surrounding spaces"
	}
	return ""
}

// attachmentType parses a content type and returns it normalised, or what is
// wrong with it.
func attachmentType(contentType string) (string, string) {
	switch {
	case contentType == "":
		return "", "is required"
	case len(contentType) > maxContentTypeLen:
		return "", fmt.Sprintf("is longer than %d bytes", maxContentTypeLen)
	case strings.ContainsAny(contentType, "\r\n") || hasControl(contentType):
		return "", "must not contain line breaks or control characters"
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.Contains(mediaType, "/") {
		return "", `is not a media type like "text/calendar; charset=utf-8"`
	}
	if strings.HasPrefix(mediaType, "multipart/") || strings.HasPrefix(mediaType, "message/") {
		return "", "must not be a multipart or message type: attach a single file"
	}
	formatted := mime.FormatMediaType(mediaType, params)
	if formatted == "" {
		return "", `is not a media type like "text/calendar; charset=utf-8"`
	}
	return formatted, ""
}

// Bytes validates m and renders it as an RFC 5322 message with CRLF line
// endings: a multipart/alternative (text, then HTML) or, with attachments, a
// multipart/mixed whose first part is that multipart/alternative and whose
// other parts are the attachments, base64-encoded. The output depends only on
// m: the MIME boundaries are derived from m.ID, so rendering the same message
// twice gives the same bytes.
func (m Message) Bytes() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	boundary := boundaryFor(m.ID)

	var b bytes.Buffer
	writeHeader(&b, "Date", m.Date.Format(time.RFC1123Z), false)
	writeHeader(&b, "From", formatAddress(m.From), true)
	writeHeader(&b, "To", formatAddress(m.To), true)
	if m.ReplyTo.Email != "" {
		writeHeader(&b, "Reply-To", formatAddress(m.ReplyTo), true)
	}
	writeHeader(&b, "Subject", mime.QEncoding.Encode("utf-8", m.Subject), false)
	writeHeader(&b, "Message-ID", m.messageID(), false)
	writeHeader(&b, "MIME-Version", "1.0", false)
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		writeHeader(&b, name, mime.QEncoding.Encode("utf-8", m.Headers[name]), false)
	}
	alternative := mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": boundary})
	if len(m.Attachments) == 0 {
		writeHeader(&b, "Content-Type", alternative, false)
		b.WriteString("\r\n")
		if err := m.writeAlternatives(&b, boundary); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}

	mixed := mixedBoundaryFor(m.ID)
	writeHeader(&b, "Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mixed}), false)
	b.WriteString("\r\n")
	b.WriteString("--" + mixed + "\r\n")
	b.WriteString("Content-Type: " + alternative + "\r\n")
	b.WriteString("\r\n")
	if err := m.writeAlternatives(&b, boundary); err != nil {
		return nil, err
	}
	for _, a := range m.Attachments {
		contentType, _ := attachmentType(a.ContentType) // valid: checked by Validate
		b.WriteString("\r\n--" + mixed + "\r\n")
		writeHeader(&b, "Content-Type", contentType, true)
		b.WriteString("Content-Transfer-Encoding: base64\r\n")
		writeHeader(&b, "Content-Disposition",
			mime.FormatMediaType(attachmentDisposition, map[string]string{"filename": a.Filename}), true)
		b.WriteString("\r\n")
		// Base64 never contains "=_", the start of both boundaries.
		encoded := base64.StdEncoding.EncodeToString(a.Data)
		for len(encoded) > base64LineLen {
			b.WriteString(encoded[:base64LineLen] + "\r\n")
			encoded = encoded[base64LineLen:]
		}
		b.WriteString(encoded + "\r\n")
	}
	b.WriteString("\r\n--" + mixed + "--\r\n")
	return b.Bytes(), nil
}

// writeAlternatives writes the text and HTML parts of m, delimited by
// boundary, and the closing delimiter.
func (m Message) writeAlternatives(b *bytes.Buffer, boundary string) error {
	for _, part := range []struct{ contentType, body string }{
		{"text/plain; charset=utf-8", m.Text},
		{"text/html; charset=utf-8", m.HTML},
	} {
		b.WriteString("--" + boundary + "\r\n")
		b.WriteString("Content-Type: " + part.contentType + "\r\n")
		b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
		b.WriteString("\r\n")
		// The writer turns every line ending (LF, CR or CRLF) into CRLF and
		// escapes '=', so the boundary (which starts with "=_") cannot occur
		// in the encoded body.
		qp := quotedprintable.NewWriter(b)
		if _, err := qp.Write([]byte(part.body)); err != nil {
			return fmt.Errorf("email: encode body: %w", err)
		}
		if err := qp.Close(); err != nil {
			return fmt.Errorf("email: encode body: %w", err)
		}
		b.WriteString("\r\n") // belongs to the delimiter that follows
	}
	b.WriteString("--" + boundary + "--\r\n")
	return nil
}

// messageID returns the Message-ID header value of a validated message.
func (m Message) messageID() string {
	domain := m.From.Email[strings.LastIndexByte(m.From.Email, '@')+1:]
	return "<" + m.ID + "@" + domain + ">"
}

// boundaryFor derives the multipart/alternative boundary from the message
// ID. It starts with "=_", a sequence that neither quoted-printable nor
// base64 output ever contains.
func boundaryFor(id string) string {
	sum := sha256.Sum256([]byte("registrar/email boundary\x00" + id))
	return "=_" + hex.EncodeToString(sum[:12])
}

// mixedBoundaryFor derives the multipart/mixed boundary from the message ID:
// "=_m" and a hash of its own, so that it differs from boundaryFor(id) and
// neither is a prefix of the other.
func mixedBoundaryFor(id string) string {
	sum := sha256.Sum256([]byte("registrar/email mixed boundary\x00" + id))
	return "=_m" + hex.EncodeToString(sum[:12])
}

func formatAddress(a Address) string {
	return (&mail.Address{Name: a.Name, Address: a.Email}).String()
}

func checkAddress(add func(field, problem string), field string, a Address) {
	switch {
	case a.Email == "":
		add(field+".Email", "is required")
	case len(a.Email) > maxEmailLen:
		add(field+".Email", fmt.Sprintf("is longer than %d bytes", maxEmailLen))
	case strings.ContainsAny(a.Email, "\r\n"):
		add(field+".Email", "must not contain CR or LF")
	default:
		// Only a bare addr-spec is accepted: no display name, no angle
		// brackets, no comments, no surrounding space.
		parsed, err := mail.ParseAddress(a.Email)
		if err != nil || parsed.Name != "" || parsed.Address != a.Email || hasControl(a.Email) {
			add(field+".Email", "is not a valid email address")
		}
	}
	if p := checkHeaderText(a.Name, maxNameLen); p != "" {
		add(field+".Name", p)
	}
}

// checkHeaderText returns what is wrong with s as header content, or "".
func checkHeaderText(s string, maxLen int) string {
	switch {
	case strings.ContainsAny(s, "\r\n"):
		return "must not contain CR or LF"
	case hasControl(s):
		return "must not contain control characters"
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case len(s) > maxLen:
		return fmt.Sprintf("is longer than %d bytes", maxLen)
	}
	return ""
}

// hasControl reports whether s contains an ASCII control character other
// than horizontal tab.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

// isFieldName reports whether s is an RFC 5322 field name: printable ASCII
// except colon.
func isFieldName(s string) bool {
	if s == "" || len(s) > maxHeaderNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// isDotAtom reports whether s is an RFC 5322 dot-atom-text.
func isDotAtom(s string) bool {
	for atom := range strings.SplitSeq(s, ".") {
		if atom == "" {
			return false
		}
		for i := 0; i < len(atom); i++ {
			if !isAtext(atom[i]) {
				return false
			}
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// writeHeader writes "name: value" CRLF, folding the value at single spaces
// so that lines stay within foldWidth where possible. Folding only at a space
// between two non-blank characters means that unfolding (which replaces the
// line break and the continuation's leading blank by one space) restores the
// value exactly, and that no continuation line is blank. In structured
// (address) headers, spaces inside quoted strings are not fold points.
func writeHeader(b *bytes.Buffer, name, value string, structured bool) {
	b.WriteString(name)
	b.WriteString(":")
	col := len(name) + 1
	start := 0
	inQuote, escaped := false, false
	emit := func(seg string) {
		if start > 0 && col+len(seg) > foldWidth {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteString(seg)
		col += len(seg)
	}
	for i := 0; i < len(value); i++ {
		c := value[i]
		if structured {
			switch {
			case escaped:
				escaped = false
				continue
			case inQuote && c == '\\':
				escaped = true
				continue
			case c == '"':
				inQuote = !inQuote
				continue
			}
		}
		if c != ' ' || inQuote || i == 0 || i+1 == len(value) || isBlank(value[i-1]) || isBlank(value[i+1]) {
			continue
		}
		if start == 0 {
			// The first segment follows "name:" and its separating space.
			emit(" " + value[:i])
		} else {
			emit(value[start:i])
		}
		start = i
	}
	if start == 0 {
		b.WriteString(" " + value)
	} else {
		emit(value[start:])
	}
	b.WriteString("\r\n")
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }
