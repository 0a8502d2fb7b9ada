// Package event provides the event being sold: its name, date, venue,
// currency, sender address and tickets, read from the event file (or the
// built-in demo event) and validated in full before the program starts.
package event

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	neturl "net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxCapacity is the largest capacity a ticket may have.
const maxCapacity = 10_000_000

//go:embed demo.json
var demoJSON []byte

// Address is an email sender: a plain address and an optional display name.
type Address struct {
	Address string `json:"address"`
	Name    string `json:"name"`
}

// Ticket is one kind of ticket on sale.
type Ticket struct {
	ID       string
	Name     string
	Price    int64 // in minor units of the event's currency
	Capacity int
	// MaxPerEmail is how many registrations one email address may hold for
	// this ticket; 0 means no limit. The event file's max_per_email, which
	// defaults to 1 for a free ticket and to no limit for a paid one.
	MaxPerEmail int
}

// Free reports whether the ticket costs nothing.
func (t Ticket) Free() bool { return t.Price == 0 }

// Organiser is who sells the tickets: shown on the form and in the
// confirmation email (its Reply-To).
type Organiser struct {
	Name  string
	Email string
	URL   string
}

// Event is the event being sold.
type Event struct {
	ID          string
	Name        string
	Description string // optional, plain text
	StartsAt    time.Time
	EndsAt      time.Time // optional; zero when the file has none
	Venue       string
	Currency    string // ISO 4217 code
	EmailFrom   Address
	Organiser   Organiser // optional; zero when the file has none
	TermsURL    string    // optional https URL
	PrivacyURL  string    // optional https URL
	// RefundPolicy is optional plain text shown beside the payment.
	RefundPolicy string
	// SalesStart and SalesEnd bound when tickets are sold; zero for none.
	// Sales also close once the event has started.
	SalesStart, SalesEnd time.Time
	Tickets              []Ticket
}

// Sales says whether tickets are on sale at a moment.
type Sales int

// Sales states.
const (
	SalesOpen    Sales = iota
	SalesNotOpen       // before SalesStart
	SalesClosed        // after SalesEnd, or once the event has started
)

// SalesAt reports whether tickets are on sale at now.
func (e *Event) SalesAt(now time.Time) Sales {
	switch {
	case !e.SalesStart.IsZero() && now.Before(e.SalesStart):
		return SalesNotOpen
	case !e.SalesEnd.IsZero() && !now.Before(e.SalesEnd):
		return SalesClosed
	case !e.StartsAt.IsZero() && !now.Before(e.StartsAt):
		return SalesClosed
	}
	return SalesOpen
}

// End is when the event ends: EndsAt, or StartsAt when the file has none.
func (e *Event) End() time.Time {
	if !e.EndsAt.IsZero() {
		return e.EndsAt
	}
	return e.StartsAt
}

// Demo returns the built-in demo event, a fresh copy on every call.
func Demo() *Event {
	e, err := parse(demoJSON, "demo event")
	if err != nil {
		panic(fmt.Sprintf("event: the embedded demo event is invalid: %v", err))
	}
	return e
}

// Load reads and parses the event file at path; an empty path means the
// built-in demo event.
func Load(path string) (*Event, error) {
	if path == "" {
		return Demo(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("event file: %w", err) // a *PathError names the path
	}
	return parse(data, "event file "+path)
}

// Parse parses and validates an event file. Unknown and duplicate fields are
// rejected, and every problem is reported, each naming the field path and the
// reason, joined with errors.Join.
func Parse(data []byte) (*Event, error) {
	return parse(data, "event file")
}

// Ticket returns the ticket with the given id.
func (e *Event) Ticket(id string) (Ticket, bool) {
	for _, t := range e.Tickets {
		if t.ID == id {
			return t, true
		}
	}
	return Ticket{}, false
}

// MinorUnits returns the number of decimals of the event's currency.
func (e *Event) MinorUnits() int {
	exp, ok := exponent(e.Currency)
	if !ok {
		return 2
	}
	return exp
}

func parse(data []byte, source string) (*Event, error) {
	d := &decoder{source: source}
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			line, col := position(data, syn.Offset)
			return nil, fmt.Errorf("%s: invalid JSON at line %d, column %d: %v", source, line, col, err)
		}
		return nil, fmt.Errorf("%s: invalid JSON: %v", source, err)
	}

	obj, ok := d.object(raw, "", "id", "name", "description", "starts_at", "ends_at", "venue", "currency",
		"email_from", "organiser", "terms_url", "privacy_url", "refund_policy", "sales_start", "sales_end", "tickets")
	if !ok {
		return nil, d.err()
	}
	var e Event
	if s, ok := d.str(obj, "", "id", true); ok {
		e.ID = s
		d.slug("id", s)
	}
	if s, ok := d.str(obj, "", "name", true); ok {
		e.Name = s
		d.text("name", s)
	}
	if s, ok := d.str(obj, "", "description", false); ok {
		e.Description = s
		d.longText("description", s, 2000)
	}
	e.StartsAt = d.time(obj, "starts_at", true)
	e.EndsAt = d.time(obj, "ends_at", false)
	if !e.EndsAt.IsZero() && !e.StartsAt.IsZero() && !e.EndsAt.After(e.StartsAt) {
		d.fail("ends_at", "must be after starts_at")
	}
	e.SalesStart = d.time(obj, "sales_start", false)
	e.SalesEnd = d.time(obj, "sales_end", false)
	if !e.SalesStart.IsZero() && !e.SalesEnd.IsZero() && !e.SalesEnd.After(e.SalesStart) {
		d.fail("sales_end", "must be after sales_start")
	}
	if !e.SalesStart.IsZero() && !e.StartsAt.IsZero() && !e.SalesStart.Before(e.StartsAt) {
		d.fail("sales_start", "must be before starts_at: sales close once the event has started")
	}
	if s, ok := d.str(obj, "", "terms_url", false); ok {
		e.TermsURL = s
		d.url("terms_url", s)
	}
	if s, ok := d.str(obj, "", "privacy_url", false); ok {
		e.PrivacyURL = s
		d.url("privacy_url", s)
	}
	if s, ok := d.str(obj, "", "refund_policy", false); ok {
		e.RefundPolicy = s
		d.longText("refund_policy", s, 2000)
	}
	if raw, ok := obj["organiser"]; ok && !isNull(raw) {
		if org, ok := d.object(raw, "organiser", "name", "email", "url"); ok {
			if s, ok := d.str(org, "organiser", "name", true); ok {
				e.Organiser.Name = s
				d.text("organiser.name", s)
				d.line("organiser.name", s)
			}
			if s, ok := d.str(org, "organiser", "email", false); ok {
				e.Organiser.Email = s
				if a, err := mail.ParseAddress(s); err != nil || a.Name != "" || a.Address != s {
					d.fail("organiser.email", "%q is not a valid email address; use a plain address like \"hello@example.org\"", s)
				}
			}
			if s, ok := d.str(org, "organiser", "url", false); ok {
				e.Organiser.URL = s
				d.url("organiser.url", s)
			}
		}
	}
	if s, ok := d.str(obj, "", "venue", true); ok {
		e.Venue = s
		d.text("venue", s)
	}
	currencyOK := false
	if s, ok := d.str(obj, "", "currency", true); ok {
		e.Currency = s
		if _, known := exponent(s); known {
			currencyOK = true
		} else {
			d.fail("currency", "%q is not a supported ISO 4217 currency code; use one of %s", s, strings.Join(currencyCodes(), ", "))
		}
	}
	if raw, ok := obj["email_from"]; !ok || isNull(raw) {
		d.fail("email_from", "is required")
	} else if from, ok := d.object(raw, "email_from", "address", "name"); ok {
		if s, ok := d.str(from, "email_from", "address", true); ok {
			e.EmailFrom.Address = s
			if a, err := mail.ParseAddress(s); err != nil || a.Name != "" || a.Address != s {
				d.fail("email_from.address", "%q is not a valid email address; use a plain address like \"tickets@example.org\"", s)
			}
		}
		if s, ok := d.str(from, "email_from", "name", false); ok {
			e.EmailFrom.Name = s
			if strings.ContainsFunc(s, unicode.IsControl) {
				d.fail("email_from.name", "must not contain line breaks or other control characters")
			}
		}
	}
	e.Tickets = d.tickets(obj, currencyOK, e.Currency)

	if err := d.err(); err != nil {
		return nil, err
	}
	return &e, nil
}

func (d *decoder) tickets(obj fields, currencyOK bool, currency string) []Ticket {
	raw, ok := obj["tickets"]
	if !ok || isNull(raw) {
		d.fail("tickets", "is required; list at least one ticket")
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		d.fail("tickets", "must be an array of tickets")
		return nil
	}
	if len(items) == 0 {
		d.fail("tickets", "must list at least one ticket")
		return nil
	}
	tickets := make([]Ticket, 0, len(items))
	seen := make(map[string]int, len(items))
	for i, item := range items {
		path := "tickets[" + strconv.Itoa(i) + "]"
		obj, ok := d.object(item, path, "id", "name", "price", "capacity", "max_per_email")
		if !ok {
			continue
		}
		var t Ticket
		if s, ok := d.str(obj, path, "id", true); ok {
			t.ID = s
			if d.slug(path+".id", s) {
				if j, dup := seen[s]; dup {
					d.fail(path+".id", "%q is already the id of tickets[%d]; ticket ids must be unique", s, j)
				} else {
					seen[s] = i
				}
			}
		}
		if s, ok := d.str(obj, path, "name", true); ok {
			t.Name = s
			d.text(path+".name", s)
		}
		if s, ok := d.str(obj, path, "price", true); ok && currencyOK {
			p, err := ParseAmount(s, currency)
			if err != nil {
				d.fail(path+".price", "%v", err)
			}
			t.Price = p
		}
		if c, ok := d.capacity(obj, path); ok {
			t.Capacity = c
		}
		if raw, ok := obj["max_per_email"]; ok && !isNull(raw) {
			if n, ok := d.count(raw, path+".max_per_email", 0, 1000); ok {
				t.MaxPerEmail = n
			}
		} else if t.Price == 0 && currencyOK {
			t.MaxPerEmail = 1
		}
		tickets = append(tickets, t)
	}
	return tickets
}

// fields is a decoded JSON object: its members by name.
type fields map[string]json.RawMessage

// decoder collects every problem found in an event file.
type decoder struct {
	source string // "event file" or "event file PATH"
	errs   []error
}

func (d *decoder) fail(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		d.errs = append(d.errs, fmt.Errorf("%s: %s", d.source, msg))
		return
	}
	d.errs = append(d.errs, fmt.Errorf("%s: %s: %s", d.source, path, msg))
}

func (d *decoder) err() error { return errors.Join(d.errs...) }

// object decodes raw as a JSON object whose members must be among allowed,
// each at most once. It reports a wrong type and every unknown or duplicate
// member. ok is false only if raw is not an object.
func (d *decoder) object(raw json.RawMessage, path string, allowed ...string) (obj fields, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		if path == "" {
			d.fail("", "must be a JSON object")
		} else {
			d.fail(path, "must be an object")
		}
		return nil, false
	}
	obj = fields{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			d.fail(path, "invalid JSON: %v", err)
			return nil, false
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			d.fail(path, "invalid JSON: %v", err)
			return nil, false
		}
		member := joinPath(path, key)
		switch {
		case !slices.Contains(allowed, key):
			d.fail(member, "unknown field; the fields are %s", strings.Join(allowed, ", "))
		case has(obj, key):
			d.fail(member, "appears more than once")
		default:
			obj[key] = value
		}
	}
	return obj, true
}

// str returns the string member key of obj. A missing or null member is an
// error if required, and "" otherwise. ok is false if the member is missing or
// is not a string.
func (d *decoder) str(obj fields, parent, key string, required bool) (s string, ok bool) {
	path := joinPath(parent, key)
	raw, present := obj[key]
	if !present || isNull(raw) {
		if required {
			d.fail(path, "is required")
		}
		return "", false
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		d.fail(path, "must be a string")
		return "", false
	}
	return s, true
}

// capacity returns the capacity member of a ticket.
func (d *decoder) capacity(obj fields, parent string) (int, bool) {
	path := joinPath(parent, "capacity")
	raw, present := obj["capacity"]
	if !present || isNull(raw) {
		d.fail(path, "is required")
		return 0, false
	}
	text := string(bytes.TrimSpace(raw))
	if text == "" || (text[0] != '-' && (text[0] < '0' || text[0] > '9')) {
		d.fail(path, "must be a number")
		return 0, false
	}
	n, err := strconv.ParseInt(text, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange) && text[0] == '-':
		d.fail(path, "must be at least 1")
		return 0, false
	case err != nil && errors.Is(err, strconv.ErrRange):
		d.fail(path, "must be at most %d", maxCapacity)
		return 0, false
	case err != nil:
		d.fail(path, "must be a whole number, not %s", text)
		return 0, false
	case n < 1:
		d.fail(path, "must be at least 1")
		return 0, false
	case n > maxCapacity:
		d.fail(path, "must be at most %d", maxCapacity)
		return 0, false
	}
	return int(n), true
}

// time returns the RFC 3339 time member key of obj; zero when it is absent
// (an error if required) or invalid.
func (d *decoder) time(obj fields, key string, required bool) time.Time {
	s, ok := d.str(obj, "", key, required)
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		d.fail(key, "%q is not an RFC 3339 time; use a time like \"2027-06-10T09:00:00+02:00\"", s)
		return time.Time{}
	}
	return t
}

// count returns raw as a whole number in [min, max].
func (d *decoder) count(raw json.RawMessage, path string, min, max int) (int, bool) {
	text := string(bytes.TrimSpace(raw))
	n, err := strconv.Atoi(text)
	switch {
	case err != nil:
		d.fail(path, "must be a whole number from %d to %d, not %s", min, max, text)
		return 0, false
	case n < min || n > max:
		d.fail(path, "must be from %d to %d (0 means no limit)", min, max)
		return 0, false
	}
	return n, true
}

// url checks that s is an absolute https URL (http only for loopback hosts,
// as on a laptop).
func (d *decoder) url(path, s string) {
	u, err := neturl.Parse(s)
	switch {
	case err != nil || u.Host == "" || u.User != nil:
		d.fail(path, "%q is not an absolute URL; use one like \"https://example.org/terms\"", s)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		d.fail(path, "%q must start with https://", s)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// line checks that s holds no control characters (it goes into headers).
func (d *decoder) line(path, s string) {
	if strings.ContainsFunc(s, unicode.IsControl) {
		d.fail(path, "must not contain line breaks or other control characters")
	}
}

// longText checks free text shown to attendees: at most max characters,
// line breaks allowed, no other control characters.
func (d *decoder) longText(path, s string, max int) {
	if utf8.RuneCountInString(s) > max {
		d.fail(path, "is longer than %d characters", max)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }) {
		d.fail(path, "must not contain control characters other than line breaks")
	}
}

// slug checks that s is a non-empty run of [a-z0-9-].
func (d *decoder) slug(path, s string) bool {
	if s == "" {
		d.fail(path, "must not be empty")
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			d.fail(path, "%q is not a slug; use only lower-case letters a-z, digits and '-'", s)
			return false
		}
	}
	return true
}

// text checks that s is not blank.
func (d *decoder) text(path, s string) {
	if strings.TrimSpace(s) == "" {
		d.fail(path, "must not be empty")
	}
}

func has(obj fields, key string) bool {
	_, ok := obj[key]
	return ok
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// position converts a byte offset in data into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return line, col
}

func currencyCodes() []string {
	codes := make([]string, 0, len(exponents))
	for c := range exponents {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}
