// Package logredact provides a slog.Handler that removes card numbers and
// configured secrets from every record before the handler it wraps writes
// it: from the message, the attribute keys and every attribute value at any
// depth (groups, WithAttrs, WithGroup, errors, fmt.Stringer, LogValuer, and
// any other value as the text handler renders it).
//
// A card number is a run of 13 to 19 digits, possibly separated by single
// spaces or dashes, that passes the Luhn check. Numbers that fail it (ids,
// amounts, timestamps) are kept, and so is a run of more than 19 digits
// with no separator, which no card number is.
package logredact

import (
	"cmp"
	"context"
	"encoding"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// The replacements written in place of what is removed.
const (
	CardMark   = "[card redacted]"
	SecretMark = "[secret redacted]"
)

// MinSecretLen is the length under which a secret is not searched for: a
// short value would redact common words and numbers all over the log.
const MinSecretLen = 6

// Handler redacts records and passes them to the handler it wraps. The
// handlers derived from it (WithAttrs, WithGroup) share its secrets: one
// added to any of them is removed by all.
type Handler struct {
	next slog.Handler
	r    *redactor
}

// New wraps next. secrets are the values to remove wherever they appear;
// empty ones and those shorter than MinSecretLen are ignored.
func New(next slog.Handler, secrets []string) *Handler {
	r := &redactor{}
	r.Add(secrets...)
	return &Handler{next: next, r: r}
}

// Add makes the handler, and every handler derived from it, remove
// secrets from the records to come: for secrets learnt while running,
// such as an access token a provider issues. It is safe to call while
// records are handled. Empty secrets, those shorter than MinSecretLen and
// those already known are ignored. (Attributes a derived handler was
// given by WithAttrs before are not looked at again.)
func (h *Handler) Add(secrets ...string) { h.r.Add(secrets...) }

// Remove stops removing secrets, e.g. an access token long replaced, so
// that the list does not grow without end.
func (h *Handler) Remove(secrets ...string) { h.r.Remove(secrets...) }

// Enabled reports whether the wrapped handler handles records at l.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle redacts r and passes it on. A record with nothing to redact is
// passed on as it is.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	msg, changed := h.r.str(r.Message)
	var small [8]slog.Attr
	attrs := small[:0]
	r.Attrs(func(a slog.Attr) bool {
		ra, ch := h.r.attr(a)
		changed = changed || ch
		attrs = append(attrs, ra)
		return true
	})
	if !changed {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	out.AddAttrs(attrs...)
	return h.next.Handle(ctx, out)
}

// WithAttrs redacts attrs once, for every record to come.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i], _ = h.r.attr(a)
	}
	return &Handler{next: h.next.WithAttrs(red), r: h.r}
}

// WithGroup redacts the group's name too.
func (h *Handler) WithGroup(name string) slog.Handler {
	name, _ = h.r.str(name)
	return &Handler{next: h.next.WithGroup(name), r: h.r}
}

// String redacts s as the handler does the strings of a record, for text
// that is written elsewhere than to the log.
func (h *Handler) String(s string) string {
	out, _ := h.r.str(s)
	return out
}

// redactor holds the secrets. Records read the list without a lock; Add
// and Remove replace it whole, one at a time.
type redactor struct {
	mu      sync.Mutex
	secrets atomic.Pointer[[]string] // longest first
}

func (r *redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.list()
	changed := false
	for _, s := range secrets {
		if len(s) >= MinSecretLen && !slices.Contains(kept, s) {
			if !changed {
				kept = slices.Clone(kept)
				changed = true
			}
			kept = append(kept, s)
		}
	}
	if !changed {
		return
	}
	// Longest first: a secret that contains another is replaced whole.
	slices.SortStableFunc(kept, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	r.secrets.Store(&kept)
}

func (r *redactor) Remove(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.list()
	kept := slices.DeleteFunc(slices.Clone(old), func(s string) bool { return slices.Contains(secrets, s) })
	if len(kept) != len(old) {
		r.secrets.Store(&kept)
	}
}

// list is the current secrets, longest first; never modified in place.
func (r *redactor) list() []string {
	if p := r.secrets.Load(); p != nil {
		return *p
	}
	return nil
}

func (r *redactor) attr(a slog.Attr) (slog.Attr, bool) {
	key, kch := r.str(a.Key)
	v, vch := r.value(a.Value)
	if !kch && !vch {
		return a, false
	}
	return slog.Attr{Key: key, Value: v}, true
}

// minCardNumber is the smallest integer of 13 digits.
const minCardNumber = 1_000_000_000_000

func (r *redactor) value(v slog.Value) (slog.Value, bool) {
	switch v.Kind() {
	case slog.KindString:
		if s, ch := r.str(v.String()); ch {
			return slog.StringValue(s), true
		}
	case slog.KindInt64:
		if n := v.Int64(); n >= minCardNumber || n <= -minCardNumber {
			if s, ch := r.str(strconv.FormatInt(n, 10)); ch {
				return slog.StringValue(s), true
			}
		}
	case slog.KindUint64:
		if n := v.Uint64(); n >= minCardNumber {
			if s, ch := r.str(strconv.FormatUint(n, 10)); ch {
				return slog.StringValue(s), true
			}
		}
	case slog.KindGroup:
		attrs := v.Group()
		var out []slog.Attr
		for i, a := range attrs {
			ra, ch := r.attr(a)
			if ch && out == nil {
				out = slices.Clone(attrs)
			}
			if out != nil {
				out[i] = ra
			}
		}
		if out != nil {
			return slog.GroupValue(out...), true
		}
	case slog.KindLogValuer:
		// Resolved once here; the wrapped handler gets the resolved value.
		rv, _ := r.value(v.Resolve())
		return rv, true
	case slog.KindAny:
		if s, ch := r.str(render(v.Any())); ch {
			return slog.StringValue(s), true
		}
	}
	return v, false
}

// render writes x as slog's text handler does.
func render(x any) string {
	switch t := x.(type) {
	case encoding.TextMarshaler:
		b, err := t.MarshalText()
		if err != nil {
			return fmt.Sprintf("!ERROR:%v", err)
		}
		return string(b)
	case []byte:
		return string(t)
	}
	return fmt.Sprintf("%+v", x)
}

// str removes the secrets, then the card numbers, from s. Secrets go first
// so that a secret holding digits is removed whole. Characters a handler
// would escape with digits (\x01, \u00ad, invalid UTF-8) become U+FFFD
// first: their escapes would otherwise add digits to a number beside them.
func (r *redactor) str(s string) (string, bool) {
	s, changed := printable(s)
	for _, secret := range r.list() {
		if strings.Contains(s, secret) {
			s = strings.ReplaceAll(s, secret, SecretMark)
			changed = true
		}
	}
	if out, ch := cards(s); ch {
		return out, true
	}
	return s, changed
}

// printable replaces with U+FFFD what slog's handlers write as an escape
// holding digits: invalid UTF-8 and non-printable characters other than
// tab, newline and carriage return.
func printable(s string) (string, bool) {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c >= 0x7f {
			break
		}
	}
	if i == len(s) {
		return s, false // ASCII, printable: the common case
	}
	changed := false
	var b strings.Builder
	for j, c := range s {
		ok := c == '\t' || c == '\n' || c == '\r' || strconv.IsPrint(c)
		if c == utf8.RuneError {
			_, size := utf8.DecodeRuneInString(s[j:])
			ok = size > 1 // a U+FFFD written as such
		}
		if !ok && !changed {
			changed = true
			b.Grow(len(s) + 2)
			b.WriteString(s[:j])
		}
		if changed {
			if ok {
				b.WriteRune(c)
			} else {
				b.WriteRune(utf8.RuneError)
			}
		}
	}
	if !changed {
		return s, false
	}
	return b.String(), true
}

// Card number lengths.
const (
	minDigits = 13
	maxDigits = 19
)

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// span is a run of digits s[start:end].
type span struct{ start, end int }

// cards replaces every card number in s with CardMark. A stretch of digit
// groups joined by single spaces or dashes is looked at group by group:
// every sequence of whole, consecutive groups holding 13 to 19 digits that
// passes the Luhn check is replaced, so a card number written next to other
// numbers ("order 12345 4111 1111 1111 1111") is found too.
func cards(s string) (string, bool) {
	digits := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			digits++
		}
	}
	if digits < minDigits {
		return s, false
	}
	var (
		b      strings.Builder
		copied int // s[:copied] is in b
		groups []span
		found  []span // ranges to replace, in order, merged
	)
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		groups = groups[:0]
		j := i
		for {
			start := j
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			groups = append(groups, span{start, j})
			if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		i = j
		found = found[:0]
		for a := range groups {
			n := 0
			for z := a; z < len(groups); z++ {
				n += groups[z].end - groups[z].start
				if n > maxDigits {
					break
				}
				if n >= minDigits && luhn(s[groups[a].start:groups[z].end]) {
					r := span{groups[a].start, groups[z].end}
					if k := len(found) - 1; k >= 0 && r.start <= found[k].end {
						found[k].end = max(found[k].end, r.end)
					} else {
						found = append(found, r)
					}
				}
			}
		}
		for _, r := range found {
			if b.Len() == 0 && copied == 0 {
				b.Grow(len(s))
			}
			b.WriteString(s[copied:r.start])
			b.WriteString(CardMark)
			copied = r.end
		}
	}
	if copied == 0 {
		return s, false
	}
	b.WriteString(s[copied:])
	return b.String(), true
}

// luhn reports whether the digits of s (separators skipped) pass the Luhn
// check.
func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
