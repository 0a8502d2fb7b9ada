package admin

import (
	"context"
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// Field limits of the action forms.
const (
	maxNameLen    = 100
	maxEmailLen   = 254
	maxCompanyLen = 200
	maxReasonLen  = 500
)

// detailView is a registration's page with its action forms.
type detailView struct {
	R          registration.Registration
	TicketName string
	Failed     bool  // some step failed: retry is offered
	Refundable int64 // what is left to refund: the charge less refunds not failed
	Messages   []messageView
	Refunds    []registration.Refund
	Incidents  []registration.Incident
	Audit      []registration.AuditEntry
	// Newsletter is where the attendee's newsletter consent stands.
	Newsletter NewsletterState
	// Keys holds a fresh one-time key per form.
	Keys map[string]string
	// Values keeps what was typed into a form that failed validation;
	// Errors has its messages, by "form.field" (or "form" for the form as
	// a whole).
	Values map[string]string
	Errors map[string]string
	// Open names the form to show unfolded.
	Open string
}

type messageView struct {
	Index   int
	M       registration.Message
	Preview email.Message
	// PreviewError is set when the email could not be rendered.
	PreviewError bool
}

// Err returns the error message of a form's field.
func (d detailView) Err(key string) string { return d.Errors[key] }

// Val returns what was typed into a form's field, or its default.
func (d detailView) Val(key, def string) string {
	if v, ok := d.Values[key]; ok {
		return v
	}
	return def
}

// Checked reports whether a form's checkbox is ticked: as sent when the
// form came back with problems, ticked by default otherwise.
func (d detailView) Checked(form, key string) bool {
	if d.Open == form {
		return d.Values[form+"."+key] != ""
	}
	return true
}

// inputView is one labelled input of an action form.
type inputView struct {
	ID, Name, Label, Type, Value, Error string
}

// inputField is the input name of form, showing what was typed (or def)
// and its problem.
func inputField(d detailView, form, name, label, typ, def string) inputView {
	key := form + "." + name
	return inputView{ID: form + "-" + strings.ReplaceAll(name, "_", "-"), Name: name, Label: label, Type: typ,
		Value: d.Val(key, def), Error: d.Err(key)}
}

func (s *server) detail() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		dv, err := s.loadDetail(r.Context(), r.PathValue("id"))
		if errors.Is(err, registration.ErrNotFound) {
			s.errorPage(w, r, v, http.StatusNotFound, "Registration not found", "There is no registration with this id.")
			return
		}
		if err != nil {
			s.fail(w, r, v, "registration detail", err)
			return
		}
		s.render(w, r, http.StatusOK, "detail", v, dv.R.FirstName+" "+dv.R.LastName, dv)
	}
}

// loadDetail reads everything the detail page shows.
func (s *server) loadDetail(ctx context.Context, id string) (detailView, error) {
	var dv detailView
	if !validID(id) {
		return dv, registration.ErrNotFound
	}
	reg, err := s.Store.Registration(ctx, id)
	if err != nil {
		return dv, err
	}
	dv = detailView{R: reg, TicketName: s.ticketName(reg.TicketID), Values: map[string]string{}, Errors: map[string]string{},
		Keys: map[string]string{}}
	for _, st := range reg.Steps {
		if st.Status == registration.StepFailed {
			dv.Failed = true
		}
	}
	if reg.Newsletter {
		if dv.Newsletter, err = s.Store.NewsletterState(ctx, id); err != nil {
			return dv, err
		}
	}
	if dv.Refunds, err = s.Store.Refunds(ctx, id); err != nil {
		return dv, err
	}
	dv.Refundable = reg.Amount
	for _, rf := range dv.Refunds {
		if rf.State != registration.RefundFailed {
			dv.Refundable -= rf.Amount
		}
	}
	dv.Refundable = max(dv.Refundable, 0)
	msgs, err := s.Store.Messages(ctx, id)
	if err != nil {
		return dv, err
	}
	for i, m := range msgs {
		mv := messageView{Index: i, M: m}
		if mv.Preview, err = s.Preview.Preview(ctx, reg, m); err != nil {
			s.Log.WarnContext(ctx, "preview email", "err", err, "registration", id, "message", m.ID)
			mv.PreviewError = true
		}
		dv.Messages = append(dv.Messages, mv)
	}
	if dv.Incidents, err = s.Store.Incidents(ctx, id); err != nil {
		return dv, err
	}
	if dv.Audit, err = s.Store.AuditLog(ctx, AuditFilter{RegistrationID: id, Limit: 200}); err != nil {
		return dv, err
	}
	for _, form := range []string{"retry", "resend", "edit", "refund", "cancel", "erase"} {
		dv.Keys[form] = newKey()
	}
	return dv, nil
}

// formErrors are validation problems of one form, by field ("" for the
// form as a whole).
type formErrors map[string]string

// action is the common course of an action form: read the form and the
// registration, validate and carry out with do, then redirect back with a
// banner, or show the page again with the problems (422), or an error.
func (s *server) action(form string, do func(ctx context.Context, r *http.Request, v *visitor, dv *detailView) (formErrors, error)) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		if !s.parseForm(w, r, v) {
			return
		}
		ctx := r.Context()
		id := r.PathValue("id")
		dv, err := s.loadDetail(ctx, id)
		if errors.Is(err, registration.ErrNotFound) {
			s.errorPage(w, r, v, http.StatusNotFound, "Registration not found", "There is no registration with this id.")
			return
		}
		if err != nil {
			s.fail(w, r, v, "registration detail", err)
			return
		}
		errs := formErrors{}
		if !validKey(r.PostForm.Get("key")) {
			errs[""] = "The form is incomplete. Reload the page and try again."
		} else {
			errs, err = do(ctx, r, v, &dv)
			errs, err = actionError(form, errs, err)
		}
		var notFound *registration.Error
		switch {
		case errors.As(err, &notFound) && notFound.Code == registration.CodeNotFound, errors.Is(err, registration.ErrNotFound):
			s.errorPage(w, r, v, http.StatusNotFound, "Registration not found", "There is no registration with this id.")
			return
		case err != nil:
			s.fail(w, r, v, form, err)
			return
		}
		if len(errs) > 0 {
			for k := range r.PostForm {
				dv.Values[form+"."+k] = r.PostForm.Get(k)
			}
			for k, msg := range errs {
				if k == "" {
					dv.Errors[form] = msg
				} else {
					dv.Errors[form+"."+k] = msg
				}
			}
			dv.Open = form
			s.render(w, r, http.StatusUnprocessableEntity, "detail", v, dv.R.FirstName+" "+dv.R.LastName, dv)
			return
		}
		http.Redirect(w, r, "/admin/registrations/"+id+"?done="+form, http.StatusSeeOther)
	}
}

// actionError turns the errors of an action an organiser can act on into
// form problems; what remains is unexpected.
func actionError(form string, errs formErrors, err error) (formErrors, error) {
	if err == nil {
		return errs, nil
	}
	if errs == nil {
		errs = formErrors{}
	}
	var re *registration.Error
	switch {
	case errors.As(err, &re) && re.Code == registration.CodeValidationFailed:
		for field, msg := range re.Fields {
			errs[strings.TrimPrefix(field, "attendee.")] = msg
		}
		if len(re.Fields) == 0 {
			errs[""] = re.Message
		}
		return errs, nil
	case errors.Is(err, registration.ErrRefundExceedsCharge):
		errs["amount"] = "Refunds would add up to more than was charged. Another refund may have been asked for meanwhile: check the refunds below."
		return errs, nil
	case errors.Is(err, registration.ErrNothingToRefund):
		errs[""] = "This registration was not charged: there is nothing to refund."
		return errs, nil
	case errors.Is(err, registration.ErrAlreadyCancelled) && form == "cancel":
		return nil, nil // done already: a repeated submit
	case errors.Is(err, registration.ErrDuplicate):
		return nil, nil // the same form sent twice
	case errors.Is(err, registration.ErrAlreadyAnonymised) && form == "erase":
		return nil, nil // done already: a repeated submit
	}
	return nil, err
}

func (s *server) erase() authedHandler {
	return s.action("erase", func(ctx context.Context, r *http.Request, v *visitor, dv *detailView) (formErrors, error) {
		if dv.R.Anonymised() {
			return nil, nil // a repeated submit: it is done
		}
		if r.PostForm.Get("confirm") != "yes" {
			return formErrors{"confirm": "Tick the box to confirm: erasing cannot be undone."}, nil
		}
		return nil, s.Actions.Erase(ctx, v.actor(), dv.R.ID)
	})
}

func (s *server) retry() authedHandler {
	return s.action("retry", func(ctx context.Context, r *http.Request, v *visitor, dv *detailView) (formErrors, error) {
		return nil, s.Actions.Retry(ctx, v.actor(), dv.R.ID)
	})
}

func (s *server) resend() authedHandler {
	return s.action("resend", func(ctx context.Context, r *http.Request, v *visitor, dv *detailView) (formErrors, error) {
		to := strings.TrimSpace(r.PostForm.Get("to"))
		if to != "" {
			if msg := checkEmail(to); msg != "" {
				return formErrors{"to": msg}, nil
			}
		}
		return nil, s.Actions.Resend(ctx, v.actor(), dv.R.ID, to, r.PostForm.Get("key"))
	})
}

func (s *server) edit() authedHandler {
	return s.action("edit", func(ctx context.Context, r *http.Request, v *visitor, dv *detailView) (formErrors, error) {
		e := registration.AttendeeEdit{
			FirstName: strings.TrimSpace(r.PostForm.Get("first_name")),
			LastName:  strings.TrimSpace(r.PostForm.Get("last_name")),
			Email:     strings.TrimSpace(r.PostForm.Get("email")),
			Company:   strings.TrimSpace(r.PostForm.Get("company")),
		}
		errs := formErrors{}
		for _, f := range []struct{ name, value, label string }{
			{"first_name", e.FirstName, "first name"}, {"last_name", e.LastName, "last name"},
		} {
			switch {
			case f.value == "":
				errs[f.name] = "Enter the attendee's " + f.label + "."
			case utf8.RuneCountInString(f.value) > maxNameLen:
				errs[f.name] = "Use at most 100 characters."
			}
		}
		if msg := checkEmail(e.Email); msg != "" {
			errs["email"] = msg
		}
		if utf8.RuneCountInString(e.Company) > maxCompanyLen {
			errs["company"] = "Use at most 200 characters."
		}
		if len(errs) > 0 {
			return errs, nil
		}
		return nil, s.Actions.Edit(ctx, v.actor(), dv.R.ID, e)
	})
}

func (s *server) refund() authedHandler {
	return s.action("refund", func(ctx context.Context, r *http.Request, v *visitor, dv *detailView) (formErrors, error) {
		errs := formErrors{}
		amount, msg := s.parseRefund(r.PostForm.Get("amount"), dv.Refundable)
		if msg != "" {
			errs["amount"] = msg
		}
		reason := strings.TrimSpace(r.PostForm.Get("reason"))
		if utf8.RuneCountInString(reason) > maxReasonLen {
			errs["reason"] = "Use at most 500 characters."
		}
		if len(errs) > 0 {
			return errs, nil
		}
		return nil, s.Actions.Refund(ctx, v.actor(), dv.R.ID, amount, reason, r.PostForm.Get("key"))
	})
}

func (s *server) cancel() authedHandler {
	return s.action("cancel", func(ctx context.Context, r *http.Request, v *visitor, dv *detailView) (formErrors, error) {
		if dv.R.Status == registration.StatusCancelled {
			return nil, nil // a repeated submit: it is done
		}
		errs := formErrors{}
		c := Cancellation{Notify: r.PostForm.Get("notify") == "1", Key: r.PostForm.Get("key"),
			Reason: strings.TrimSpace(r.PostForm.Get("reason"))}
		switch r.PostForm.Get("refund") {
		case "none":
		case "full":
			c.Refund = dv.Refundable
		case "part":
			amount, msg := s.parseRefund(r.PostForm.Get("amount"), dv.Refundable)
			if msg != "" {
				errs["amount"] = msg
			}
			c.Refund = amount
		default:
			errs["refund"] = "Choose whether to refund nothing, everything or a part."
		}
		if utf8.RuneCountInString(c.Reason) > maxReasonLen {
			errs["reason"] = "Use at most 500 characters."
		}
		if len(errs) > 0 {
			return errs, nil
		}
		return nil, s.Actions.Cancel(ctx, v.actor(), dv.R.ID, c)
	})
}

// parseRefund reads a refund amount in the event's currency: more than
// zero and at most what is left to refund. It returns a message for the
// organiser when it is not.
func (s *server) parseRefund(in string, refundable int64) (int64, string) {
	in = strings.TrimSpace(in)
	if in == "" {
		return 0, "Enter the amount to refund."
	}
	amount, err := event.ParseAmount(in, s.currency)
	switch {
	case err != nil:
		msg := err.Error() // e.g. amount "12,50" is not a decimal number; ...
		return 0, strings.ToUpper(msg[:1]) + msg[1:] + "."
	case amount == 0:
		return 0, "The amount must be more than zero."
	case refundable == 0:
		return 0, "Nothing is left to refund."
	case amount > refundable:
		return 0, "At most " + s.money(refundable) + " is left to refund."
	}
	return amount, ""
}

// checkEmail returns why addr is not a plain email address, or "".
func checkEmail(addr string) string {
	if addr == "" {
		return "Enter an email address."
	}
	if len(addr) > maxEmailLen {
		return "That is longer than any email address."
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" || !strings.Contains(addr, "@") {
		return "That is not an email address; write it like ada@example.org."
	}
	local, domain, _ := strings.Cut(addr, "@")
	if local == "" || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "That is not an email address; write it like ada@example.org."
	}
	return ""
}

// validKey reports whether a form's one-time key has the shape newKey
// gives it.
func validKey(k string) bool {
	if len(k) < 16 || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
