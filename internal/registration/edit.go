package registration

import "strings"

// Normalize trims surrounding space from every field, as Request.Normalize
// does for the form.
func (e *AttendeeEdit) Normalize() {
	e.FirstName = strings.TrimSpace(e.FirstName)
	e.LastName = strings.TrimSpace(e.LastName)
	e.Email = strings.TrimSpace(e.Email)
	e.Company = strings.TrimSpace(e.Company)
}

// Validate checks a normalised edit with the rules of the registration form
// and returns the problems by field ("first_name", "last_name", "email",
// "company"); empty when valid.
func (e AttendeeEdit) Validate() map[string]string {
	f := map[string]string{}
	name(f, "first_name", "first name", e.FirstName)
	name(f, "last_name", "last name", e.LastName)
	text(f, "company", "company", e.Company, false, 200)
	if msg := checkEmail(e.Email); msg != "" {
		f["email"] = msg
	}
	return f
}

// CheckEmail returns what is wrong with an email address under the rules of
// the registration form, or "" when it is fine.
func CheckEmail(v string) string { return checkEmail(v) }
