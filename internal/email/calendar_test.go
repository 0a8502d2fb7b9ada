package email_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/registrar/registrar/internal/email"
)

// icsProp is one content line of an iCalendar object, unfolded.
type icsProp struct {
	name   string
	params map[string]string // values with RFC 6868 escapes decoded
	value  string            // as written (TEXT escapes not decoded)
}

// parseICS checks the wire format of an iCalendar object (CRLF line ends,
// no physical line over 75 octets, each one valid UTF-8, continuations
// starting with one blank) and parses its content lines.
func parseICS(t testing.TB, data []byte) []icsProp {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		t.Fatalf("calendar does not end with CRLF")
	}
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			t.Fatalf("bare LF at offset %d", i)
		}
		if c == '\r' && (i+1 == len(data) || data[i+1] != '\n') {
			t.Fatalf("bare CR at offset %d", i)
		}
	}
	var logical []string
	for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\r\n"), "\r\n") {
		if len(line) > 75 {
			t.Errorf("line of %d octets (max 75): %q", len(line), line)
		}
		if !utf8.ValidString(line) {
			t.Errorf("line is not valid UTF-8 on its own (folded inside a character): %q", line)
		}
		if line == "" {
			t.Fatalf("empty line in the calendar")
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(logical) == 0 {
				t.Fatalf("continuation line first")
			}
			logical[len(logical)-1] += line[1:]
			continue
		}
		logical = append(logical, line)
	}
	props := make([]icsProp, 0, len(logical))
	for _, l := range logical {
		props = append(props, parseContentLine(t, l))
	}
	return props
}

// parseContentLine splits name *(";" param) ":" value, with quoted
// parameter values.
func parseContentLine(t testing.TB, l string) icsProp {
	t.Helper()
	p := icsProp{params: map[string]string{}}
	i := strings.IndexAny(l, ";:")
	if i <= 0 {
		t.Fatalf("content line without a name: %q", l)
	}
	p.name = l[:i]
	for l[i] == ';' {
		rest := l[i+1:]
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			t.Fatalf("parameter without a value in %q", l)
		}
		name := rest[:eq]
		rest = rest[eq+1:]
		var value string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				t.Fatalf("unterminated quoted parameter in %q", l)
			}
			value = rest[1 : end+1]
			rest = rest[end+2:]
		} else {
			end := strings.IndexAny(rest, ";:")
			if end < 0 {
				t.Fatalf("no value in %q", l)
			}
			value, rest = rest[:end], rest[end:]
			if strings.ContainsAny(value, `",`) {
				t.Errorf("unquoted parameter value %q needs quotes", value)
			}
		}
		p.params[name] = strings.NewReplacer("^^", "^", "^n", "\n", "^'", `"`).Replace(value)
		i = len(l) - len(rest)
		if i >= len(l) {
			t.Fatalf("no value in %q", l)
		}
	}
	p.value = l[i+1:]
	return p
}

// unescapeText decodes an iCalendar TEXT value, failing on an unescaped
// comma or semicolon (which would split the value).
func unescapeText(t testing.TB, v string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v):
			i++
			switch v[i] {
			case 'n', 'N':
				b.WriteByte('\n')
			case '\\', ';', ',':
				b.WriteByte(v[i])
			default:
				t.Errorf("unknown escape \\%c in %q", v[i], v)
			}
		case c == '\\':
			t.Errorf("dangling backslash in %q", v)
		case c == ',' || c == ';':
			t.Errorf("unescaped %q in TEXT value %q", c, v)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// vevent checks the calendar's frame and returns the event's properties by
// name (each present once).
func vevent(t testing.TB, props []icsProp) map[string]icsProp {
	t.Helper()
	var names []string
	for _, p := range props {
		names = append(names, p.name+":"+map[bool]string{true: p.value}[p.name == "BEGIN" || p.name == "END"])
	}
	if len(props) < 9 {
		t.Fatalf("calendar too short: %q", names)
	}
	head := []string{"BEGIN:VCALENDAR", "PRODID:", "VERSION:", "CALSCALE:", "METHOD:", "BEGIN:VEVENT"}
	if !slices.Equal(names[:6], head) {
		t.Fatalf("calendar starts %q, want %q", names[:6], head)
	}
	if tail := names[len(names)-2:]; !slices.Equal(tail, []string{"END:VEVENT", "END:VCALENDAR"}) {
		t.Fatalf("calendar ends %q", tail)
	}
	for _, want := range []struct{ name, value string }{
		{"PRODID", "-//registrar//registrar//EN"}, {"VERSION", "2.0"}, {"CALSCALE", "GREGORIAN"}, {"METHOD", "PUBLISH"},
	} {
		if got := props[slices.IndexFunc(props, func(p icsProp) bool { return p.name == want.name })].value; got != want.value {
			t.Errorf("%s = %q, want %q", want.name, got, want.value)
		}
	}
	event := map[string]icsProp{}
	for _, p := range props[6 : len(props)-2] {
		if p.name == "BEGIN" || p.name == "END" {
			t.Fatalf("nested component %s:%s; want one VEVENT", p.name, p.value)
		}
		if _, dup := event[p.name]; dup {
			t.Errorf("%s appears twice", p.name)
		}
		event[p.name] = p
	}
	for _, required := range []string{"UID", "DTSTAMP", "DTSTART", "SUMMARY"} {
		if _, ok := event[required]; !ok {
			t.Errorf("VEVENT lacks %s", required)
		}
	}
	return event
}

// invitation renders c and returns its calendar attachment.
func invitation(t testing.TB, c email.Confirmation, now time.Time) (email.Message, email.Attachment) {
	t.Helper()
	m, err := newRenderer(t).Render(c, organiser, now)
	if err != nil {
		t.Fatalf("Render() = %v", err)
	}
	if len(m.Attachments) != 1 {
		t.Fatalf("%d attachments, want 1", len(m.Attachments))
	}
	return m, m.Attachments[0]
}

func TestCalendarInvitation(t *testing.T) {
	t.Parallel()
	_, a := invitation(t, paidConfirmation(), sentAt)
	if a.Filename != "gopherfest-2027.ics" || a.ContentType != "text/calendar; charset=utf-8; method=PUBLISH" {
		t.Errorf("attachment %q, %q", a.Filename, a.ContentType)
	}
	ev := vevent(t, parseICS(t, a.Data))
	for name, want := range map[string]string{
		"UID":     "7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10@localhost",
		"DTSTAMP": "20270105T100000Z",
		"DTSTART": "20270610T070000Z", // 09:00 at UTC+02:00
		"DTEND":   "20270611T160000Z",
		"URL":     "http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
	} {
		if got := ev[name].value; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]string{
		"SUMMARY":     "GopherFest 2027",
		"LOCATION":    "Kulturbrauerei, Berlin",
		"DESCRIPTION": "Two days of talks and workshops about Go.\n\nYour registration: http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
	} {
		if got := unescapeText(t, ev[name].value); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	org := ev["ORGANIZER"]
	if org.value != "mailto:hello@gopherfest.example" || org.params["CN"] != "GopherFest e.V." {
		t.Errorf("ORGANIZER = %+v", org)
	}
	if strings.Contains(strings.ToLower(string(a.Data)), "paid") || strings.Contains(string(a.Data), "1111") {
		t.Errorf("the invitation carries payment details:\n%s", a.Data)
	}
}

func TestCalendarWithoutEndOrOrganiser(t *testing.T) {
	t.Parallel()
	_, a := invitation(t, bareConfirmation(), sentAt)
	ev := vevent(t, parseICS(t, a.Data))
	if _, ok := ev["DTEND"]; ok {
		t.Errorf("DTEND = %q for an event without an end", ev["DTEND"].value)
	}
	if _, ok := ev["ORGANIZER"]; ok {
		t.Errorf("ORGANIZER = %+v without an organiser email", ev["ORGANIZER"])
	}
	if got, want := unescapeText(t, ev["DESCRIPTION"].value), "Your registration: http://localhost:8080/registrations/5e7a9c1b3d5f7a9c1e3b5d7f9a1c3e5b"; got != want {
		t.Errorf("DESCRIPTION = %q, want %q", got, want)
	}
}

func TestCalendarEscapingAndFolding(t *testing.T) {
	t.Parallel()
	c := paidConfirmation()
	c.EventName = strings.Repeat("Zoë’s Café; Grüße, Ünal \\ ", 6) + "日本語カンファレンス 🎉"
	c.Venue = "Kulturbrauerei, Schönhauser Allee 36; Berlin\nHaus 8, Eingang C\r\nZürich-Saal"
	c.EventDescription = "Zeile eins, mit Komma;\r\nZeile zwei\\mit Backslash\rZeile drei " + strings.Repeat("ö", 80)
	c.Organiser.Name = `Ünal, "Zoë" ^ Söhne; GmbH`
	_, a := invitation(t, c, sentAt)
	ev := vevent(t, parseICS(t, a.Data))

	if got := unescapeText(t, ev["SUMMARY"].value); got != c.EventName {
		t.Errorf("SUMMARY = %q, want %q", got, c.EventName)
	}
	if got, want := unescapeText(t, ev["LOCATION"].value), "Kulturbrauerei, Schönhauser Allee 36; Berlin\nHaus 8, Eingang C\nZürich-Saal"; got != want {
		t.Errorf("LOCATION = %q, want %q", got, want)
	}
	wantDesc := "Zeile eins, mit Komma;\nZeile zwei\\mit Backslash\nZeile drei " + strings.Repeat("ö", 80) +
		"\n\nYour registration: " + c.StatusURL
	if got := unescapeText(t, ev["DESCRIPTION"].value); got != wantDesc {
		t.Errorf("DESCRIPTION = %q, want %q", got, wantDesc)
	}
	if got := ev["ORGANIZER"].params["CN"]; got != c.Organiser.Name {
		t.Errorf("ORGANIZER CN = %q, want %q", got, c.Organiser.Name)
	}
	// Long values really were folded.
	if n := bytes.Count(a.Data, []byte("\r\n ")); n < 5 {
		t.Errorf("%d folds, want the long values folded:\n%s", n, a.Data)
	}
}

func TestCalendarFoldsOnCharacterBoundaries(t *testing.T) {
	t.Parallel()
	// "SUMMARY:" and 66 letters fill 74 octets: a two-octet "é" does not fit
	// in the 75th, so the line breaks before it.
	for _, tail := range []string{"é", "€", "🎉", "a"} {
		c := paidConfirmation()
		c.EventName = strings.Repeat("a", 66) + tail + strings.Repeat(tail, 40)
		_, a := invitation(t, c, sentAt)
		lines := strings.Split(string(a.Data), "\r\n")
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "SUMMARY:") })
		wantFirst := "SUMMARY:" + strings.Repeat("a", 66)
		if tail == "a" {
			wantFirst += "a"
		}
		if lines[i] != wantFirst {
			t.Errorf("%s: first SUMMARY line = %q, want %q", tail, lines[i], wantFirst)
		}
		if !strings.HasPrefix(lines[i+1], " "+tail) {
			t.Errorf("%s: continuation = %q", tail, lines[i+1])
		}
		// parseICS checks every line's length and UTF-8.
		if got := unescapeText(t, vevent(t, parseICS(t, a.Data))["SUMMARY"].value); got != c.EventName {
			t.Errorf("%s: SUMMARY = %q, want %q", tail, got, c.EventName)
		}
	}
}

func TestCalendarDropsControlCharacters(t *testing.T) {
	t.Parallel()
	c := paidConfirmation()
	c.EventDescription = "a\x00b\x07c\x1bd\te"
	_, a := invitation(t, c, sentAt)
	ev := vevent(t, parseICS(t, a.Data))
	if got := unescapeText(t, ev["DESCRIPTION"].value); !strings.HasPrefix(got, "abcd\te\n\n") {
		t.Errorf("DESCRIPTION = %q", got)
	}
}

// TestCalendarUIDStableAcrossResends: a confirmation sent again (another
// message id, another day) carries the same UID, so the attendee's calendar
// updates its entry instead of adding one.
func TestCalendarUIDStableAcrossResends(t *testing.T) {
	t.Parallel()
	first, a1 := invitation(t, paidConfirmation(), sentAt)
	c := paidConfirmation()
	c.MessageID = "resend-k-1"
	c.AttendeeEmail = "ada@example.net"
	again, a2 := invitation(t, c, sentAt.Add(48*time.Hour))
	if first.ID == again.ID {
		t.Fatalf("both messages have id %q", first.ID)
	}
	ev1, ev2 := vevent(t, parseICS(t, a1.Data)), vevent(t, parseICS(t, a2.Data))
	if ev1["UID"].value != ev2["UID"].value || ev1["UID"].value == "" {
		t.Errorf("UID %q, then %q on resending", ev1["UID"].value, ev2["UID"].value)
	}
	if ev2["DTSTAMP"].value != "20270107T100000Z" {
		t.Errorf("DTSTAMP of the resent invitation = %q", ev2["DTSTAMP"].value)
	}
	// Another registration has another UID; the host comes from the status URL.
	other := paidConfirmation()
	other.RegistrationID = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
	other.StatusURL = "https://Tickets.GopherFest.example:8443/registrations/" + other.RegistrationID
	_, a3 := invitation(t, other, sentAt)
	if got := vevent(t, parseICS(t, a3.Data))["UID"].value; got != "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d@tickets.gopherfest.example" {
		t.Errorf("UID = %q", got)
	}
}

func TestCalendarFilename(t *testing.T) {
	t.Parallel()
	tests := []struct{ event, want string }{
		{"GopherFest 2027", "gopherfest-2027.ics"},
		{"  Café Conf: Zürich!  ", "café-conf-zürich.ics"},
		{"技術会議 2027", "技術会議-2027.ics"},
		{"!!! ???", "event.ics"},
		{strings.Repeat("Very Long Conference Name ", 10), "very-long-conference-name-very-long-conference-name-very-lon.ics"},
		{strings.Repeat("技", 40), strings.Repeat("技", 20) + ".ics"},
	}
	for _, tt := range tests {
		c := paidConfirmation()
		c.EventName = tt.event
		m, a := invitation(t, c, sentAt)
		if a.Filename != tt.want {
			t.Errorf("%q: file name %q, want %q", tt.event, a.Filename, tt.want)
		}
		if !strings.Contains(m.Text, tt.want) {
			t.Errorf("%q: the text does not name the attachment %q", tt.event, tt.want)
		}
	}
}

// FuzzCalendarText: whatever the event's names, the invitation either is
// refused with the rest of the email or parses back to the same text (line
// breaks as \n, other control characters dropped), folded within 75 octets.
func FuzzCalendarText(f *testing.F) {
	f.Add("GopherFest 2027", "Kulturbrauerei, Berlin", "GopherFest e.V.", "Two days.")
	f.Add(strings.Repeat("Zoë’s Café; Grüße, ", 8), "a\\b;c,d\ne", `"Ünal" ^ Söhne`, "line\r\nline\rline")
	f.Add("技術会議 🎉", "\x00\x01", "^n^'", strings.Repeat("€", 200))
	r := newRenderer(f)
	f.Fuzz(func(t *testing.T, name, venue, organiserName, description string) {
		c := paidConfirmation()
		c.EventName, c.Venue, c.Organiser.Name, c.EventDescription = name, venue, organiserName, description
		m, err := r.Render(c, organiser, sentAt)
		if err != nil {
			return
		}
		ev := vevent(t, parseICS(t, m.Attachments[0].Data))
		clean := func(s string) string {
			s = strings.ToValidUTF8(s, "\uFFFD")
			s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
			return strings.Map(func(r rune) rune {
				if (r < ' ' && r != '\n' && r != '\t') || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
		if got := unescapeText(t, ev["SUMMARY"].value); got != clean(name) {
			t.Fatalf("SUMMARY = %q, want %q", got, clean(name))
		}
		if venue != "" {
			if got := unescapeText(t, ev["LOCATION"].value); got != clean(venue) {
				t.Fatalf("LOCATION = %q, want %q", got, clean(venue))
			}
		}
		if organiserName != "" {
			if got := ev["ORGANIZER"].params["CN"]; got != clean(organiserName) {
				t.Fatalf("CN = %q, want %q", got, clean(organiserName))
			}
		}
	})
}
