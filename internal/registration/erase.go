package registration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Erasure replaces an attendee's personal data: names become ErasedName,
// the email ErasedEmail, the address lines and company are emptied. The
// amount, currency, payment reference, card brand and last four, ticket,
// billing country and dates are kept for the accounts.
const (
	ErasedName = "erased"
	// ErasedDetail replaces the free text of the audit entries that quote
	// the attendee's details (edits and resends).
	ErasedDetail = "details erased"
	// ErasedStepNotice is the notice of an email or mailing-list step that
	// had not run when the personal data was erased: it is skipped.
	ErasedStepNotice = "Skipped: the attendee's personal data was erased."
	// ErasedMessageError is the error of an email to the attendee that was
	// still to be sent when the personal data was erased.
	ErasedMessageError = "Not sent: the attendee's personal data was erased."
)

// ErasedEmail is the address an erased registration keeps: unique per
// registration and undeliverable (the .invalid domain never resolves).
func ErasedEmail(id string) string { return "erased-" + id + "@invalid" }

// ErrAlreadyAnonymised reports a registration whose personal data was
// erased before: nothing changes.
var ErrAlreadyAnonymised = errors.New("the registration's personal data was already erased")

// PersonalTerms are the values of r that free text elsewhere (audit
// details, refund reasons, provider errors) may quote, longest first:
// names of fewer than 3 letters are left out, as replacing them would
// mangle ordinary words.
func PersonalTerms(r Registration) []string {
	var terms []string
	add := func(s string) {
		s = strings.TrimSpace(s)
		if utf8.RuneCountInString(s) >= 3 && !slices.Contains(terms, s) {
			terms = append(terms, s)
		}
	}
	add(r.Email)
	add(r.FirstName + " " + r.LastName)
	add(r.FirstName)
	add(r.LastName)
	add(r.Company)
	b := r.Billing
	add(b.Line1)
	add(b.Line2)
	add(b.City)
	add(b.PostalCode)
	slices.SortStableFunc(terms, func(a, b string) int { return len(b) - len(a) })
	return terms
}

// Scrub replaces every occurrence of terms in text, in any letter case,
// with "[erased]".
func Scrub(text string, terms []string) string {
	for _, t := range terms {
		if t == "" {
			continue
		}
		lower, lt := strings.ToLower(text), strings.ToLower(t)
		if len(lower) != len(text) || len(lt) != len(t) {
			// Case folding changed byte offsets: replace exact matches only.
			text = strings.ReplaceAll(text, t, "[erased]")
			continue
		}
		if !strings.Contains(lower, lt) {
			continue
		}
		var b strings.Builder
		for {
			i := strings.Index(lower, lt)
			if i < 0 {
				b.WriteString(text)
				break
			}
			b.WriteString(text[:i])
			b.WriteString("[erased]")
			text, lower = text[i+len(lt):], lower[i+len(lt):]
		}
		text = b.String()
	}
	return text
}

// ScrubRows replaces terms in free text kept in a store, in tx: read (with
// args) selects a key and a text per row; each text Scrub changes is
// written back with update, whose arguments are the new text and the key.
// what names the rows in errors. Both engines' erasures use it, with their
// own SQL.
func ScrubRows(ctx context.Context, tx *sql.Tx, what, read string, args []any, update string, terms []string) error {
	rows, err := tx.QueryContext(ctx, read, args...)
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	type change struct {
		key  any
		text string
	}
	var changes []change
	for rows.Next() {
		var key any
		var text string
		if err := rows.Scan(&key, &text); err != nil {
			rows.Close()
			return fmt.Errorf("read %s: %w", what, err)
		}
		if scrubbed := Scrub(text, terms); scrubbed != text {
			changes = append(changes, change{key, scrubbed})
		}
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, update, c.text, c.key); err != nil {
			return fmt.Errorf("erase %s: %w", what, err)
		}
	}
	return nil
}
