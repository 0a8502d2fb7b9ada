package registration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
)

// Request is the body of POST /api/registrations.
type Request struct {
	Ticket     string   `json:"ticket"`
	Attendee   Attendee `json:"attendee"`
	Billing    *Billing `json:"billing,omitempty"`
	Newsletter bool     `json:"newsletter"`
}

// Attendee is the person who attends.
type Attendee struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Email     string `json:"email"`
	Company   string `json:"company,omitempty"`
}

// Billing is the payer's card and address.
type Billing struct {
	Card    CardInput `json:"card"`
	Address Address   `json:"address"`
}

// CardInput is the card as submitted.
type CardInput struct {
	Number string `json:"number"`
	Expiry string `json:"expiry"` // YYYY-MM
	CVC    string `json:"cvc"`
	Name   string `json:"name"`
}

// String keeps card data out of logs.
func (c CardInput) String() string { return "card(redacted)" }

// Address is a postal address.
type Address struct {
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Region     string `json:"region,omitempty"`
	Country    string `json:"country"`
}

var (
	expiryPattern  = regexp.MustCompile(`^(\d{4})-(\d{2})$`)
	countryPattern = regexp.MustCompile(`^[A-Z]{2}$`)
	cvcPattern     = regexp.MustCompile(`^\d{3,4}$`)
)

// Normalize trims surrounding space from every text field and canonicalises
// the card number and country, so validation, hashing and storage agree.
func (r *Request) Normalize() {
	t := strings.TrimSpace
	r.Ticket = t(r.Ticket)
	r.Attendee.FirstName = t(r.Attendee.FirstName)
	r.Attendee.LastName = t(r.Attendee.LastName)
	r.Attendee.Email = t(r.Attendee.Email)
	r.Attendee.Company = t(r.Attendee.Company)
	if b := r.Billing; b != nil {
		// Trim again: removing dashes can uncover space (e.g. "-\u00a04111..."),
		// and normalising twice must change nothing.
		b.Card.Number = t(payment.NormalizeNumber(t(b.Card.Number)))
		b.Card.Expiry = NormalizeExpiry(t(b.Card.Expiry))
		b.Card.CVC = t(b.Card.CVC)
		b.Card.Name = t(b.Card.Name)
		b.Address.Line1 = t(b.Address.Line1)
		b.Address.Line2 = t(b.Address.Line2)
		b.Address.City = t(b.Address.City)
		b.Address.PostalCode = t(b.Address.PostalCode)
		b.Address.Region = t(b.Address.Region)
		b.Address.Country = strings.ToUpper(t(b.Address.Country))
	}
}

// Validate checks a normalised request against the event and returns the
// problems by field path (empty when valid). now decides card expiry.
func (r *Request) Validate(ev *event.Event, now time.Time) map[string]string {
	f := map[string]string{}
	ticket, ok := ev.Ticket(r.Ticket)
	switch {
	case r.Ticket == "":
		f["ticket"] = "Choose a ticket."
	case !ok:
		f["ticket"] = fmt.Sprintf("There is no ticket %q for this event.", r.Ticket)
	}
	name(f, "attendee.first_name", "first name", r.Attendee.FirstName)
	name(f, "attendee.last_name", "last name", r.Attendee.LastName)
	text(f, "attendee.company", "company", r.Attendee.Company, false, 200)
	if msg := checkEmail(r.Attendee.Email); msg != "" {
		f["attendee.email"] = msg
	}
	if ok && ticket.Price == 0 {
		return f // a free ticket needs no billing details; any given are ignored
	}
	b := r.Billing
	if b == nil {
		if ok {
			f["billing"] = "Billing details are required for a paid ticket."
		}
		return f
	}
	switch {
	case b.Card.Number == "":
		f["billing.card.number"] = "Enter the card number."
	case !allDigits(b.Card.Number) || !payment.Luhn(b.Card.Number):
		f["billing.card.number"] = "This card number is not valid; check it for typing errors."
	}
	if msg := checkExpiry(b.Card.Expiry, now); msg != "" {
		f["billing.card.expiry"] = msg
	}
	switch {
	case b.Card.CVC == "":
		f["billing.card.cvc"] = "Enter the security code from the back of the card."
	case !cvcPattern.MatchString(b.Card.CVC):
		f["billing.card.cvc"] = "The security code is 3 or 4 digits."
	case payment.Brand(b.Card.Number) == "amex" && len(b.Card.CVC) != 4:
		f["billing.card.cvc"] = "The security code of an American Express card is the 4 digits on its front."
	case payment.Brand(b.Card.Number) != "amex" && payment.Brand(b.Card.Number) != "card" && len(b.Card.CVC) != 3:
		f["billing.card.cvc"] = "The security code is the 3 digits on the back of the card."
	}
	name(f, "billing.card.name", "name on the card", b.Card.Name)
	text(f, "billing.address.line1", "address", b.Address.Line1, true, 200)
	text(f, "billing.address.line2", "address line 2", b.Address.Line2, false, 200)
	text(f, "billing.address.city", "city", b.Address.City, true, 100)
	text(f, "billing.address.postal_code", "postal code", b.Address.PostalCode, false, 20)
	text(f, "billing.address.region", "region", b.Address.Region, false, 100)
	if !countryPattern.MatchString(b.Address.Country) {
		f["billing.address.country"] = "Enter the two-letter country code, e.g. GB or DE."
	}
	return f
}

func text(f map[string]string, key, label, v string, required bool, max int) {
	switch {
	case v == "" && required:
		f[key] = "Enter the " + label + "."
	case !utf8.ValidString(v):
		f[key] = "The " + label + " is not valid text."
	case utf8.RuneCountInString(v) > max:
		f[key] = fmt.Sprintf("The %s is longer than %d characters.", label, max)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		f[key] = "The " + label + " contains control characters."
	case hiddenFormatting(v):
		f[key] = "The " + label + " contains invisible characters (direction overrides, zero-width spaces or the like); type it again without them."
	}
}

// name checks a person's name: text as for any field, and nothing that reads
// as a link or an address. A name is printed in the greeting of emails sent
// from the organiser's address, so a "name" carrying a link would turn them
// into phishing.
func name(f map[string]string, key, label, v string) {
	text(f, key, label, v, true, 100)
	if _, bad := f[key]; !bad && looksLikeLink(v) {
		f[key] = "The " + label + " looks like a web or email address; enter the name only."
	}
}

// linkPattern finds what mail clients and people read as a link: a scheme,
// "www.", an email address, or a host name with a common top-level domain.
var linkPattern = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://|www\.|[^\s@]@[^\s@]+\.|[\pL\pN-]{2,}\.(com|net|org|info|biz|io|co|app|dev|xyz|top|site|online|shop|link|click|ru|cn|example|me|ly|gl|to|tk)\b)`)

func looksLikeLink(v string) bool { return linkPattern.MatchString(v) }

// hiddenFormatting reports characters that change how text is shown
// without being seen: Unicode format characters (bidirectional overrides
// and isolates, direction marks, the Arabic letter mark, zero-width spaces,
// the byte order mark), line and paragraph separators, and private-use or
// unassigned code points. The zero-width joiner and non-joiner are allowed
// between two letters, where scripts such as Persian and Devanagari need
// them.
func hiddenFormatting(v string) bool {
	runes := []rune(v)
	for i, r := range runes {
		switch {
		case r == '\u200c' || r == '\u200d':
			if i == 0 || i == len(runes)-1 || !unicode.IsLetter(runes[i-1]) && !unicode.IsMark(runes[i-1]) || !unicode.IsLetter(runes[i+1]) {
				return true
			}
		case unicode.In(r, unicode.Cf, unicode.Co, unicode.Cn, unicode.Zl, unicode.Zp):
			return true
		}
	}
	return false
}

func checkEmail(v string) string {
	if v == "" {
		return "Enter an email address."
	}
	if len(v) > 254 {
		return "The email address is too long."
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" || !strings.Contains(v[strings.LastIndexByte(v, '@')+1:], ".") {
		return "Enter an email address like name@example.org."
	}
	return ""
}

// expiryTyped matches an expiry as people type it: MM/YY, MM / YY, MMYY,
// MM/YYYY or M/YY (a slash, dash, dot or spaces between), and YYYY-MM.
var (
	expiryMonthFirst = regexp.MustCompile(`^(\d{1,2})\s*[/.\-]?\s*(\d{2}|\d{4})$`)
	expiryYearFirst  = regexp.MustCompile(`^(\d{4})\s*[/.\-]\s*(\d{1,2})$`)
)

// NormalizeExpiry turns an expiry typed as 12/30, 12 / 30, 1230, 12/2030 or
// 2030-12 into YYYY-MM. Anything else is returned unchanged (validation
// then names the problem).
func NormalizeExpiry(v string) string {
	var month, year string
	if m := expiryYearFirst.FindStringSubmatch(v); m != nil {
		year, month = m[1], m[2]
	} else if m := expiryMonthFirst.FindStringSubmatch(v); m != nil {
		month, year = m[1], m[2]
		if len(m[1])+len(m[2]) == 3 && !strings.ContainsAny(v, "/.- ") {
			return v // "123": no telling 1/23 from 12/3
		}
	} else {
		return v
	}
	if len(year) == 2 {
		year = "20" + year
	}
	if len(month) == 1 {
		month = "0" + month
	}
	return year + "-" + month
}

func checkExpiry(v string, now time.Time) string {
	m := expiryPattern.FindStringSubmatch(v)
	if m == nil {
		if v == "" {
			return "Enter the card's expiry date as MM / YY, e.g. 12 / 30."
		}
		return "Enter the expiry as MM / YY, e.g. 12 / 30."
	}
	year, _ := strconv.Atoi(m[1])
	month, _ := strconv.Atoi(m[2])
	if month < 1 || month > 12 {
		return "The expiry month must be 01 to 12."
	}
	y, mo, _ := now.UTC().Date()
	if year < y || (year == y && month < int(mo)) {
		return "This card has expired."
	}
	if year > y+25 {
		return "The expiry year is too far in the future."
	}
	return ""
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Card returns the payment card of a validated request.
func (r *Request) Card() payment.Card {
	if r.Billing == nil {
		return payment.Card{}
	}
	m := expiryPattern.FindStringSubmatch(r.Billing.Card.Expiry)
	year, _ := strconv.Atoi(m[1])
	month, _ := strconv.Atoi(m[2])
	return payment.Card{
		Number:       r.Billing.Card.Number,
		ExpiryYear:   year,
		ExpiryMonth:  month,
		SecurityCode: r.Billing.Card.CVC,
		Name:         r.Billing.Card.Name,
	}
}

// Hash fingerprints a normalised request for idempotency: the same key must
// come with the same request. Card number and security code never enter the
// fingerprint (invariant 1): only the card's brand and last four digits do.
func (r *Request) Hash() string {
	c := *r
	if r.Billing != nil {
		b := *r.Billing
		b.Card.Number = payment.Brand(b.Card.Number) + ":" + payment.Last4(b.Card.Number)
		b.Card.CVC = ""
		c.Billing = &b
	}
	data, err := json.Marshal(c)
	if err != nil {
		panic(err) // a struct of strings and bools always marshals
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
