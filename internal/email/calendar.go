package email

import (
	"bytes"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// CalendarContentType is the media type of the invitation attached to a
// confirmation.
const CalendarContentType = "text/calendar; charset=utf-8; method=PUBLISH"

const (
	calendarProdID    = "-//registrar//registrar//EN"
	calendarTimeUTC   = "20060102T150405Z"
	calendarLineLimit = 75 // octets per line, CRLF excluded (RFC 5545 §3.1)
	maxCalendarStem   = 60 // bytes of the invitation's file name before ".ics"
)

// calendarEvent is one event published to an attendee as an iCalendar
// object (RFC 5545, METHOD:PUBLISH).
type calendarEvent struct {
	UID         string // stable: a calendar replaces the entry with the same UID
	Stamp       time.Time
	Start       time.Time
	End         time.Time // zero: no DTEND (the entry lasts no time, RFC 5545 §3.6.1)
	Summary     string
	Location    string
	Description string
	URL         string // absolute http(s) URL, or ""
	// OrganizerName and OrganizerEmail make the ORGANIZER property when the
	// email is set.
	OrganizerName, OrganizerEmail string
}

// ics renders e as a VCALENDAR with one VEVENT: UTF-8, CRLF line endings,
// lines folded at 75 octets without splitting a character.
func (e calendarEvent) ics() []byte {
	var b bytes.Buffer
	line := func(s string) { writeFolded(&b, s) }
	line("BEGIN:VCALENDAR")
	line("PRODID:" + calendarProdID)
	line("VERSION:2.0")
	line("CALSCALE:GREGORIAN")
	line("METHOD:PUBLISH")
	line("BEGIN:VEVENT")
	line("UID:" + icsText(e.UID))
	line("DTSTAMP:" + e.Stamp.UTC().Format(calendarTimeUTC))
	line("DTSTART:" + e.Start.UTC().Format(calendarTimeUTC))
	if !e.End.IsZero() {
		line("DTEND:" + e.End.UTC().Format(calendarTimeUTC))
	}
	line("SUMMARY:" + icsText(e.Summary))
	if e.Location != "" {
		line("LOCATION:" + icsText(e.Location))
	}
	if e.Description != "" {
		line("DESCRIPTION:" + icsText(e.Description))
	}
	if e.OrganizerEmail != "" {
		organizer := "ORGANIZER"
		if e.OrganizerName != "" {
			organizer += ";CN=" + icsParam(e.OrganizerName)
		}
		line(organizer + ":mailto:" + e.OrganizerEmail)
	}
	if e.URL != "" {
		line("URL:" + e.URL)
	}
	line("STATUS:CONFIRMED")
	line("TRANSP:OPAQUE")
	line("END:VEVENT")
	line("END:VCALENDAR")
	return b.Bytes()
}

// icsText escapes s as an iCalendar TEXT value: backslash, semicolon and
// comma get a backslash, a line break becomes \n, and other control
// characters (which TEXT cannot hold) are dropped.
func icsText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == ';':
			b.WriteString(`\;`)
		case r == ',':
			b.WriteString(`\,`)
		case r == '\n' || r == '\r':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteRune(r)
		case r < ' ' || r == 0x7f:
			// dropped
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// icsParam quotes s as a parameter value. A quoted parameter value cannot
// hold a double quote or a line break; RFC 6868 writes them as ^' and ^n
// (and ^ itself as ^^). Other control characters are dropped.
func icsParam(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '^':
			b.WriteString("^^")
		case r == '"':
			b.WriteString("^'")
		case r == '\n' || r == '\r':
			b.WriteString("^n")
		case r == '\t':
			b.WriteRune(r)
		case r < ' ' || r == 0x7f:
			// dropped
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeFolded writes one content line, folded so that no line is longer
// than 75 octets: each continuation starts with a space, and a cut never
// falls inside a UTF-8 sequence.
func writeFolded(b *bytes.Buffer, s string) {
	limit := calendarLineLimit
	for len(s) > limit {
		cut := limit
		for cut > limit-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
			cut--
		}
		b.WriteString(s[:cut])
		b.WriteString("\r\n ")
		s = s[cut:]
		limit = calendarLineLimit - 1 // the leading space counts
	}
	b.WriteString(s)
	b.WriteString("\r\n")
}

// calendarFilename names the invitation after the event: lower-case
// letters and digits, other runs of characters as one hyphen, e.g.
// "gopherfest-2027.ics"; "event.ics" when nothing is left.
func calendarFilename(eventName string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range eventName {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			hyphen = true
			continue
		}
		r = unicode.ToLower(r)
		hyphen = hyphen && b.Len() > 0
		need := utf8.RuneLen(r)
		if hyphen {
			need++
		}
		if b.Len()+need > maxCalendarStem {
			break
		}
		if hyphen {
			b.WriteByte('-')
		}
		hyphen = false
		b.WriteRune(r)
	}
	stem := b.String()
	if stem == "" {
		stem = "event"
	}
	return stem + ".ics"
}
