package web

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// formFields are the names of the form's inputs: the API's field paths, so
// validation errors land next to the input they concern.
var formFields = []string{
	"ticket", "attendee.first_name", "attendee.last_name", "attendee.email", "attendee.company",
	"billing.card.name", "billing.card.number", "billing.card.expiry", "billing.card.cvc",
	"billing.address.line1", "billing.address.line2", "billing.address.city",
	"billing.address.postal_code", "billing.address.region", "billing.address.country",
}

// secretFields are never echoed back into a re-rendered form.
var secretFields = map[string]bool{"billing.card.number": true, "billing.card.cvc": true}

// page is what every page's layout needs.
type page struct {
	Event   *event.Event
	Title   string
	Refresh bool
}

type formView struct {
	page
	Values     map[string]string
	Newsletter bool
	Errors     map[string]string
	Message    string
	Key        string
}

type statusView struct {
	page
	Registration registration.Registration
	TicketName   string
	Steps        []stepView
}

// fieldView is one labelled input of the form.
type fieldView struct {
	Name, Label, Type, Auto, Value, Error string
	Required                              bool
}

func field(v formView, name, label, typ, auto string, required bool) fieldView {
	return fieldView{Name: name, Label: label, Type: typ, Auto: auto, Value: v.Values[name], Error: v.Errors[name], Required: required}
}

type stepView struct {
	Label string
	registration.Step
}

var stepLabels = map[registration.StepName]string{
	registration.StepSaveOrder:        "Order saved",
	registration.StepSendConfirmation: "Confirmation email sent",
	registration.StepAddToMailingList: "Added to the mailing list",
}

func (s *server) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var buf bytes.Buffer
	if err := s.pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.Log.Error("render page", "page", name, "err", err)
		http.Error(w, "Something went wrong on our side. Please try again.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (s *server) newForm() (formView, error) {
	key, err := registration.NewID()
	if err != nil {
		return formView{}, err
	}
	ev := s.Registrar.Event()
	v := formView{page: page{Event: ev, Title: "Register"}, Values: map[string]string{}, Errors: map[string]string{}, Key: key}
	if len(ev.Tickets) > 0 {
		v.Values["ticket"] = ev.Tickets[0].ID
	}
	return v, nil
}

func (s *server) formPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.newForm()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.render(w, r, http.StatusOK, "form.html", v)
	})
}

func requestFromForm(values map[string]string, newsletter bool) registration.Request {
	req := registration.Request{
		Ticket: values["ticket"],
		Attendee: registration.Attendee{
			FirstName: values["attendee.first_name"],
			LastName:  values["attendee.last_name"],
			Email:     values["attendee.email"],
			Company:   values["attendee.company"],
		},
		Newsletter: newsletter,
	}
	b := registration.Billing{
		Card: registration.CardInput{
			Number: values["billing.card.number"],
			Expiry: values["billing.card.expiry"],
			CVC:    values["billing.card.cvc"],
			Name:   values["billing.card.name"],
		},
		Address: registration.Address{
			Line1:      values["billing.address.line1"],
			Line2:      values["billing.address.line2"],
			City:       values["billing.address.city"],
			PostalCode: values["billing.address.postal_code"],
			Region:     values["billing.address.region"],
			Country:    values["billing.address.country"],
		},
	}
	if b != (registration.Billing{}) {
		req.Billing = &b
	}
	return req
}

func (s *server) formSubmit() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				s.formError(w, r, &registration.Error{Code: registration.CodeRequestTooLarge,
					Message: "The form was larger than 64 KiB; shorten what you typed and submit again."})
				return
			}
			s.formError(w, r, &registration.Error{Code: registration.CodeInvalidRequest,
				Message: "The form could not be read; submit it again."})
			return
		}
		values := map[string]string{}
		for _, f := range formFields {
			values[f] = r.PostForm.Get(f)
		}
		newsletter := r.PostForm.Get("newsletter") == "yes"
		key := r.PostForm.Get("submission_key")

		v, err := s.newForm()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for f, val := range values {
			if !secretFields[f] {
				v.Values[f] = val
			}
		}
		v.Newsletter = newsletter
		if !registration.ValidID(key) {
			v.Message = "This form has expired. Check your details and submit it again."
			s.render(w, r, http.StatusBadRequest, "form.html", v)
			return
		}

		id, err := s.registerOnce(r.Context(), requestFromForm(values, newsletter), "form:"+key)
		if err == nil {
			http.Redirect(w, r, "/registrations/"+id, http.StatusSeeOther)
			return
		}
		e := s.asError(r, err)
		switch e.Code {
		case registration.CodeValidationFailed:
			v.Key = key // nothing was stored under the key: keep it
			v.Errors = e.Fields
			v.Message = "Please correct the fields marked below."
			// An error of no input (e.g. "billing" when the whole payment
			// section is empty) would not show inline: say it up front.
			for _, f := range slices.Sorted(maps.Keys(e.Fields)) {
				if !slices.Contains(formFields, f) {
					v.Message += " " + e.Fields[f]
				}
			}
		case registration.CodeIdempotencyKeyReused:
			v.Message = "This form was already submitted with other details. Check your details and submit again."
		default:
			v.Message = e.Message
		}
		s.render(w, r, status(e.Code), "form.html", v)
	})
}

// formError answers a form submission that could not be processed at all
// with a fresh form and the reason on top.
func (s *server) formError(w http.ResponseWriter, r *http.Request, err error) {
	e := s.asError(r, err)
	v, ferr := s.newForm()
	if ferr != nil {
		s.writeError(w, r, ferr)
		return
	}
	v.Message = e.Message
	s.render(w, r, status(e.Code), "form.html", v)
}

// registerOnce submits a form's registration. When the same form is already
// being processed (a double click), it waits for that outcome instead of
// failing, so both clicks end on the same page.
func (s *server) registerOnce(ctx context.Context, req registration.Request, key string) (string, error) {
	deadline := time.Now().Add(45 * time.Second)
	for {
		id, err := s.register(ctx, req, key)
		var e *registration.Error
		if !errors.As(err, &e) || e.Code != registration.CodeIdempotencyInProgress || time.Now().After(deadline) {
			return id, err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *server) statusPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg, err := s.Registrar.Registration(r.Context(), r.PathValue("id"))
		if errors.Is(err, registration.ErrNotFound) {
			s.render(w, r, http.StatusNotFound, "notfound.html", page{Event: s.Registrar.Event(), Title: "Not found"})
			return
		}
		if err != nil {
			e := s.asError(r, err)
			http.Error(w, e.Message, status(e.Code))
			return
		}
		ev := s.Registrar.Event()
		v := statusView{page: page{Event: ev, Title: "Your registration", Refresh: !reg.Status.Terminal()},
			Registration: reg, TicketName: reg.TicketID}
		if t, ok := ev.Ticket(reg.TicketID); ok {
			v.TicketName = t.Name
		}
		for _, st := range reg.Steps {
			v.Steps = append(v.Steps, stepView{Label: stepLabels[st.Name], Step: st})
		}
		s.render(w, r, http.StatusOK, "status.html", v)
	})
}
