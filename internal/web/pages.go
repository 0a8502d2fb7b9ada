package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
	Event *event.Event
	Title string
	// Refresh makes a browser without JavaScript reload the page every 10
	// seconds (the status page sets it in its first minute only).
	Refresh bool
}

// formView is what the registration form shows.
type formView struct {
	page
	Values     map[string]string
	Newsletter bool
	Errors     map[string]string
	Message    string
	Key        string
	// When is the event's dates with their time zone.
	When string
	// Sales says whether tickets are on sale; SalesNote says until when,
	// when they open, or that they closed.
	Sales     event.Sales
	SalesNote string
	Tickets   []ticketView
	// Processor is who processes card payments, in words ("" when not
	// known).
	Processor string
	// Duplicate is the attendee's recent registration of the same paid
	// ticket, when the form asks before charging again.
	Duplicate *duplicateView
	// Script is the address of the form's script.
	Script string
}

// ticketView is one ticket as the form offers it.
type ticketView struct {
	ID, Name string
	Price    string // for people: "€149.00", "Free"
	Pay      string // the submit button's words with this ticket chosen
	Free     bool
	// Unavailable marks a ticket with no seat free now; Note says so
	// ("Sold out"), or that few seats are left ("Only 3 left"). Held
	// marks one whose last seats are only held by payments in progress.
	Unavailable, Held bool
	Note              string
	Checked           bool
}

// duplicateView is a registration the attendee made lately with the same
// email address for the same paid ticket.
type duplicateView struct {
	ID, TicketName, Email, Made, Price string
}

// Chosen is the ticket checked on the form.
func (v formView) Chosen() (ticketView, bool) {
	for _, t := range v.Tickets {
		if t.Checked {
			return t, true
		}
	}
	return ticketView{}, false
}

// Button is what the submit button says for the chosen ticket.
func (v formView) Button() string {
	if t, ok := v.Chosen(); ok {
		return t.Pay
	}
	return "Register"
}

// Open reports whether tickets are on sale; NotYet whether they will be.
func (v formView) Open() bool   { return v.Sales == event.SalesOpen }
func (v formView) NotYet() bool { return v.Sales == event.SalesNotOpen }

// OrganiserSite is the organiser's website as people read it: its host.
func (v formView) OrganiserSite() string {
	u, err := url.Parse(v.Event.Organiser.URL)
	if err != nil || u.Host == "" {
		return v.Event.Organiser.URL
	}
	return strings.TrimPrefix(u.Host, "www.")
}

// Available reports whether any ticket has a seat free.
func (v formView) Available() bool {
	for _, t := range v.Tickets {
		if !t.Unavailable {
			return true
		}
	}
	return false
}

// Held reports whether a ticket's last seats are only held by payments in
// progress, and may come back on sale.
func (v formView) Held() bool {
	return slices.ContainsFunc(v.Tickets, func(t ticketView) bool { return t.Held })
}

// choose checks the ticket id if it can be had, else the first that can:
// a ticket without a free seat is never chosen.
func (v *formView) choose(id string) {
	pick := slices.IndexFunc(v.Tickets, func(t ticketView) bool { return t.ID == id && !t.Unavailable })
	if pick < 0 {
		pick = slices.IndexFunc(v.Tickets, func(t ticketView) bool { return !t.Unavailable })
	}
	for i := range v.Tickets {
		v.Tickets[i].Checked = i == pick
	}
	if pick >= 0 {
		v.Values["ticket"] = v.Tickets[pick].ID
	} else {
		delete(v.Values, "ticket")
	}
}

// inputSpec is how one input of the form is shown.
type inputSpec struct {
	Label, Type string
	// Auto is the autocomplete token, Mode the inputmode.
	Auto, Mode, Placeholder string
	Required                bool
}

// formInputs are the form's text inputs, by name.
var formInputs = map[string]inputSpec{
	"attendee.first_name": {Label: "First name", Type: "text", Auto: "given-name", Required: true},
	"attendee.last_name":  {Label: "Last name", Type: "text", Auto: "family-name", Required: true},
	"attendee.email":      {Label: "Email", Type: "email", Auto: "email", Placeholder: "name@example.org", Required: true},
	"attendee.company":    {Label: "Company (optional)", Type: "text", Auto: "organization"},
	"billing.card.name":   {Label: "Name on card", Type: "text", Auto: "cc-name", Required: true},
	// Card number and security code: numeric keyboards, and never put back
	// into a page (secretFields); the form's script clears them when the
	// browser brings the page back.
	"billing.card.number":         {Label: "Card number", Type: "text", Auto: "cc-number", Mode: "numeric", Placeholder: "1234 1234 1234 1234", Required: true},
	"billing.card.expiry":         {Label: "Expiry date", Type: "text", Auto: "cc-exp", Mode: "numeric", Placeholder: "MM / YY", Required: true},
	"billing.card.cvc":            {Label: "Security code", Type: "text", Auto: "cc-csc", Mode: "numeric", Placeholder: "CVC", Required: true},
	"billing.address.line1":       {Label: "Billing address", Type: "text", Auto: "billing address-line1", Required: true},
	"billing.address.line2":       {Label: "Address line 2 (optional)", Type: "text", Auto: "billing address-line2"},
	"billing.address.postal_code": {Label: "Postal code", Type: "text", Auto: "billing postal-code"},
	"billing.address.city":        {Label: "City", Type: "text", Auto: "billing address-level2", Required: true},
	"billing.address.region":      {Label: "Region (optional)", Type: "text", Auto: "billing address-level1"},
	"billing.address.country":     {Label: "Country code", Type: "text", Auto: "billing country", Placeholder: "e.g. DE", Required: true},
}

// fieldView is one labelled input of the form.
type fieldView struct {
	inputSpec
	Name, Value, Error string
	// Secret marks the card number and security code.
	Secret bool
}

func field(v formView, name string) (fieldView, error) {
	spec, ok := formInputs[name]
	if !ok {
		return fieldView{}, fmt.Errorf("the form has no input %q; add it to formInputs", name)
	}
	return fieldView{inputSpec: spec, Name: name, Value: v.Values[name], Error: v.Errors[name], Secret: secretFields[name]}, nil
}

func (s *server) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var buf bytes.Buffer
	if err := s.pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.Log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		http.Error(w, "Something went wrong on our side. Please try again.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// newForm is an empty form with a fresh submission key, its tickets as
// they can be had now and the first of them that can be chosen.
func (s *server) newForm(ctx context.Context) (formView, error) {
	key, err := registration.NewID()
	if err != nil {
		return formView{}, err
	}
	ev := s.Registrar.Event()
	now := time.Now()
	v := formView{page: page{Event: ev, Title: "Register"}, Values: map[string]string{}, Errors: map[string]string{}, Key: key,
		When: eventDates(ev), Sales: ev.SalesAt(now), Processor: processorName(s.PaymentProcessor), Script: staticURL("form.js")}
	v.SalesNote = salesNote(ev, v.Sales, now)
	seats, err := s.Registrar.Availability(ctx)
	if err != nil {
		// The form still works without: registering checks the seats.
		s.Log.WarnContext(ctx, "reading seats for the form", "err", err)
		seats = nil
	}
	for _, t := range ev.Tickets {
		v.Tickets = append(v.Tickets, newTicketView(t, ev.Currency, seats))
	}
	v.choose("")
	return v, nil
}

// fewLeft is how many free seats count as few: at most 10, or a tenth of
// the capacity.
func fewLeft(a registration.Availability) bool {
	left := a.Left()
	return left > 0 && (left <= 10 || left*10 <= a.Capacity)
}

func newTicketView(t event.Ticket, currency string, seats map[string]registration.Availability) ticketView {
	tv := ticketView{ID: t.ID, Name: t.Name, Free: t.Free(), Price: "Free", Pay: "Register for free"}
	if !t.Free() {
		tv.Price = price(t.Price, currency)
		tv.Pay = "Pay " + tv.Price
	}
	if a, ok := seats[t.ID]; ok {
		switch {
		case a.SoldOut():
			tv.Unavailable, tv.Note = true, "Sold out"
		case a.Left() == 0:
			// Every seat is taken, some only by payments in progress.
			tv.Unavailable, tv.Held, tv.Note = true, true, "Sold out for now"
		case fewLeft(a):
			tv.Note = fmt.Sprintf("Only %d left", a.Left())
		}
	}
	return tv
}

// price writes an amount in minor units for people (event.FormatPrice).
func price(minor int64, currency string) string { return event.FormatPrice(minor, currency) }

// zone names t's time zone for people (event.ZoneName).
func zone(t time.Time) string { return event.ZoneName(t) }

// when writes a moment for people, with its zone: "Thu 10 June 2027,
// 09:00 UTC+02:00".
func when(t time.Time) string {
	return t.Format("Mon 2 January 2006, 15:04") + " " + zone(t)
}

// eventDates writes when the event runs, in the zone of its start:
// "Thu 10 June 2027, 09:00–18:00 UTC+02:00", or across days "Thu 10 June
// 2027, 09:00 – Fri 11 June 2027, 18:00 UTC+02:00".
func eventDates(ev *event.Event) string {
	start := ev.StartsAt
	if ev.EndsAt.IsZero() {
		return when(start)
	}
	end := ev.EndsAt.In(start.Location())
	switch {
	case zone(start) != zone(end):
		return when(start) + " – " + when(end)
	case start.YearDay() == end.YearDay() && start.Year() == end.Year():
		return start.Format("Mon 2 January 2006, 15:04") + "–" + end.Format("15:04") + " " + zone(start)
	}
	return start.Format("Mon 2 January 2006, 15:04") + " – " + when(end)
}

// inEventZone is t in the zone of the event's start, as the page shows
// every time.
func inEventZone(ev *event.Event, t time.Time) time.Time {
	if ev.StartsAt.IsZero() {
		return t
	}
	return t.In(ev.StartsAt.Location())
}

// salesNote says until when tickets are on sale, when they go on sale, or
// that sales have closed, as they are at now.
func salesNote(ev *event.Event, sales event.Sales, now time.Time) string {
	switch sales {
	case event.SalesNotOpen:
		return "Ticket sales open on " + when(inEventZone(ev, ev.SalesStart)) + "."
	case event.SalesClosed:
		if !ev.SalesEnd.IsZero() && now.Before(ev.StartsAt) {
			return "Ticket sales closed on " + when(inEventZone(ev, ev.SalesEnd)) + "."
		}
		return "Ticket sales have closed: the event has started."
	}
	if !ev.SalesEnd.IsZero() {
		return "On sale until " + when(inEventZone(ev, ev.SalesEnd)) + "."
	}
	return ""
}

// processorName says who processes card payments, from the configured
// processor's name.
func processorName(name string) string {
	switch name {
	case "paypal":
		return "PayPal"
	case "test":
		return "the built-in test processor — no real money is taken"
	}
	return ""
}

func (s *server) formPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.newForm(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.render(w, r, http.StatusOK, "form.html", v)
	})
}

// requestFromForm is the registration a form asks for. The payment section
// is always passed on, so that a paid ticket's empty section marks every
// missing input; for a free ticket it is ignored, even when filled in.
func requestFromForm(ev *event.Event, values map[string]string, newsletter bool) registration.Request {
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
	if t, ok := ev.Ticket(strings.TrimSpace(req.Ticket)); !ok || !t.Free() {
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
		if f := repeatedField(r); f != "" {
			s.formError(w, r, &registration.Error{Code: registration.CodeInvalidRequest,
				Message: "The form sent the field " + f + " more than once; reload the page and submit it again."})
			return
		}
		values, newsletter, key := typed(r)

		v, err := s.newForm(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		v.keep(values, newsletter)
		if !registration.ValidID(key) {
			v.Message = "This form has expired. Check your details and submit it again."
			s.render(w, r, http.StatusBadRequest, "form.html", v)
			return
		}

		ev := s.Registrar.Event()
		req := requestFromForm(ev, values, newsletter)
		dup, found, err := s.duplicate(r.Context(), values, newsletter)
		if err != nil {
			v.Key = key // nothing was stored under the key: keep it
			v.Message = s.asError(r, err).Message
			s.render(w, r, http.StatusInternalServerError, "form.html", v)
			return
		}
		if found && r.PostForm.Get("confirm_duplicate") != dup.ID {
			// Most likely the Back button or a second tab: charge only once
			// the attendee says so. The page gets a fresh key, so that a yes
			// is a new registration rather than the replay of an old one.
			v.Duplicate = &duplicateView{ID: dup.ID, TicketName: dup.TicketID, Email: dup.Email,
				Made: when(inEventZone(ev, dup.CreatedAt)), Price: price(dup.Amount, dup.Currency)}
			if t, ok := ev.Ticket(dup.TicketID); ok {
				v.Duplicate.TicketName = t.Name
			}
			s.render(w, r, http.StatusConflict, "form.html", v)
			return
		}

		id, err := s.registerOnce(r.Context(), req, "form:"+key)
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
			// An error of no input would not show inline: say it up front.
			for _, f := range slices.Sorted(maps.Keys(e.Fields)) {
				if !slices.Contains(formFields, f) {
					v.Message += " " + e.Fields[f]
				}
			}
		case registration.CodeIdempotencyKeyReused:
			v.Message = "This form was already submitted with other details. Check your details and submit again."
		case registration.CodeIdempotencyInProgress:
			// The payment made with this form has no outcome yet. The form
			// keeps its key: submitted again, it shows that payment's
			// outcome instead of making another.
			v.Key = key
			if t, ok := ev.Ticket(values["ticket"]); ok && t.Free() {
				v.Message = "Your registration from this form is still being processed. " +
					"Submit this form again in a minute to see how it went."
			} else {
				v.Message = "Your payment from this form is still being confirmed. Please don't start over: " +
					"submit this form again in a minute to see how it went, and you will not be charged twice. " +
					"Type the card number and security code again."
			}
		default:
			v.Message = e.Message
		}
		s.render(w, r, status(e.Code), "form.html", v)
	})
}

// typed is what a submitted form holds: its inputs by name, the newsletter
// tick and the submission key.
func typed(r *http.Request) (values map[string]string, newsletter bool, key string) {
	values = map[string]string{}
	for _, f := range formFields {
		values[f] = r.PostForm.Get(f)
	}
	return values, r.PostForm.Get("newsletter") == "yes", r.PostForm.Get("submission_key")
}

// repeatedField names a field of the form sent more than once, "" when
// none is: a browser sends each once, and which copy counts would be a
// guess (as with a JSON key given twice).
func repeatedField(r *http.Request) string {
	for _, f := range slices.Concat(formFields, []string{"newsletter", "submission_key", "confirm_duplicate"}) {
		if len(r.PostForm[f]) > 1 {
			return f
		}
	}
	return ""
}

// keep puts what was typed back into the form, but the card number and
// security code, and checks the chosen ticket if it can still be had.
func (v *formView) keep(values map[string]string, newsletter bool) {
	for f, val := range values {
		if !secretFields[f] {
			v.Values[f] = val
		}
	}
	v.Newsletter = newsletter
	v.choose(values["ticket"])
}

// duplicate finds the registration the attendee made lately for the same
// paid ticket with the same email address (compared as registration limits
// compare them), when the form is otherwise ready to charge. Only the form
// asks: the API's clients say what they mean with their Idempotency-Key.
func (s *server) duplicate(ctx context.Context, values map[string]string, newsletter bool) (registration.Registration, bool, error) {
	ev := s.Registrar.Event()
	req := requestFromForm(ev, values, newsletter)
	req.Normalize()
	t, ok := ev.Ticket(req.Ticket)
	if !ok || t.Free() || ev.SalesAt(time.Now()) != event.SalesOpen || len(req.Validate(ev, time.Now())) > 0 {
		return registration.Registration{}, false, nil
	}
	reg, found, err := s.Registrar.RecentDuplicate(ctx, t.ID, req.Attendee.Email)
	if err != nil {
		return registration.Registration{}, false, fmt.Errorf("look for a recent registration: %w", err)
	}
	return reg, found, nil
}

// formError answers a form submission that could not be processed at all
// with the form and the reason on top. Refused for its rate, the form keeps
// what was typed but the card number and security code, and its key: no
// attempt was made with it.
func (s *server) formError(w http.ResponseWriter, r *http.Request, err error) {
	e := s.asError(r, err)
	v, ferr := s.newForm(r.Context())
	if ferr != nil {
		s.writeError(w, r, ferr)
		return
	}
	v.Message = e.Message
	if e.Code == registration.CodeRateLimited {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if r.ParseForm() == nil {
			values, newsletter, key := typed(r)
			v.keep(values, newsletter)
			if registration.ValidID(key) {
				v.Key = key
			}
			v.Message += " Your details are kept; type the card number and security code again."
		}
	}
	s.render(w, r, status(e.Code), "form.html", v)
}

// registerOnce submits a form's registration. When the same form is already
// being processed (a double click), it waits for that outcome instead of
// failing, so both clicks end on the same page.
func (s *server) registerOnce(ctx context.Context, req registration.Request, key string) (string, error) {
	wait := s.FormWait
	if wait <= 0 {
		wait = 45 * time.Second
	}
	deadline := time.Now().Add(wait)
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
