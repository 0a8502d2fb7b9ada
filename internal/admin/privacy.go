package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// Audit action names of data protection.
const (
	ActionExportData = "export_data"
	ActionErase      = "erase"
	ActionRetention  = "retention"
)

// DataExport is everything registrar keeps about one or more
// registrations, as an attendee asking for their data gets it: the command
// line's "registrar attendee export" and the back office's "Export data"
// write the same JSON.
type DataExport struct {
	ExportedAt    time.Time            `json:"exported_at"`
	Registrations []RegistrationExport `json:"registrations"`
}

// RegistrationExport is one registration's data.
type RegistrationExport struct {
	ID         string           `json:"id"`
	EventID    string           `json:"event_id"`
	Status     string           `json:"status"`
	Ticket     TicketExport     `json:"ticket"`
	Amount     string           `json:"amount"`
	Currency   string           `json:"currency"`
	Refunded   string           `json:"refunded"`
	Attendee   AttendeeExport   `json:"attendee"`
	Billing    *BillingExport   `json:"billing_address"`
	Payment    *PaymentExport   `json:"payment"`
	Newsletter NewsletterExport `json:"newsletter"`
	Steps      []StepExport     `json:"steps"`
	Emails     []EmailExport    `json:"emails"`
	Refunds    []RefundExport   `json:"refunds"`
	Audit      []AuditExport    `json:"audit"`
	CreatedAt  time.Time        `json:"created_at"`
	UpdatedAt  time.Time        `json:"updated_at"`
	// CancelledAt and AnonymisedAt are absent when it was not cancelled,
	// or its personal data not erased.
	CancelledAt  *time.Time `json:"cancelled_at,omitempty"`
	AnonymisedAt *time.Time `json:"anonymised_at,omitempty"`
}

// TicketExport names a registration's ticket.
type TicketExport struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// AttendeeExport is who registered.
type AttendeeExport struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Email     string `json:"email"`
	Company   string `json:"company"`
}

// BillingExport is the cardholder's address.
type BillingExport struct {
	Line1      string `json:"line1"`
	Line2      string `json:"line2"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Region     string `json:"region"`
	Country    string `json:"country"`
}

// PaymentExport is the charge, without card data beyond brand and last
// four digits.
type PaymentExport struct {
	Provider  string `json:"provider"`
	Reference string `json:"reference"`
	CardBrand string `json:"card_brand"`
	CardLast4 string `json:"card_last4"`
}

// NewsletterExport is the newsletter consent: when it was given and the
// exact text it was given under.
type NewsletterExport struct {
	Consented   bool       `json:"consented"`
	ConsentedAt *time.Time `json:"consented_at,omitempty"`
	ConsentText string     `json:"consent_text,omitempty"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
}

// StepExport is one pipeline step.
type StepExport struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
}

// EmailExport is one email sent (or to be sent) to the attendee.
type EmailExport struct {
	Kind      string    `json:"kind"`
	To        string    `json:"to"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
}

// RefundExport is one refund.
type RefundExport struct {
	Amount    string    `json:"amount"`
	State     string    `json:"state"`
	Reference string    `json:"reference,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// AuditExport is one back-office action about the registration.
type AuditExport struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
}

// maxExportRegistrations bounds how many registrations one email address's
// export holds.
const maxExportRegistrations = 1000

// ExportData exports the registration with id idOrEmail or, when it holds
// an '@', every registration with that email address (compared as limits
// compare it), newest first. Nothing found is registration.ErrNotFound.
func ExportData(ctx context.Context, st Store, ev *event.Event, idOrEmail string, now time.Time) (DataExport, error) {
	out := DataExport{ExportedAt: now.UTC().Truncate(time.Second), Registrations: []RegistrationExport{}}
	q := strings.TrimSpace(idOrEmail)
	var ids []string
	if strings.Contains(q, "@") {
		key := registration.EmailKey(q)
		err := st.EachRegistration(ctx, Filter{Query: q}, func(r registration.Registration) error {
			if registration.EmailKey(r.Email) == key {
				if len(ids) == maxExportRegistrations {
					return fmt.Errorf("more than %d registrations have the address %s", maxExportRegistrations, q)
				}
				ids = append(ids, r.ID)
			}
			return nil
		})
		if err != nil {
			return out, err
		}
	} else if validID(q) {
		ids = []string{q}
	}
	for _, id := range ids {
		r, err := exportRegistration(ctx, st, ev, id)
		if err != nil {
			return out, err
		}
		out.Registrations = append(out.Registrations, r)
	}
	if len(out.Registrations) == 0 {
		return out, registration.ErrNotFound
	}
	return out, nil
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func exportRegistration(ctx context.Context, st Store, ev *event.Event, id string) (RegistrationExport, error) {
	r, err := st.Registration(ctx, id)
	if err != nil {
		return RegistrationExport{}, err
	}
	money := func(v int64) string { return event.FormatAmount(v, r.Currency) }
	x := RegistrationExport{
		ID: r.ID, EventID: r.EventID, Status: string(r.Status),
		Ticket: TicketExport{ID: r.TicketID, Name: r.TicketID},
		Amount: money(r.Amount), Currency: r.Currency, Refunded: money(r.Refunded),
		Attendee: AttendeeExport{FirstName: r.FirstName, LastName: r.LastName, Email: r.Email, Company: r.Company},
		Newsletter: NewsletterExport{Consented: r.Newsletter, ConsentedAt: optTime(r.NewsletterConsentedAt),
			ConsentText: r.NewsletterConsentText},
		Steps: []StepExport{}, Emails: []EmailExport{}, Refunds: []RefundExport{}, Audit: []AuditExport{},
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		CancelledAt: optTime(r.CancelledAt), AnonymisedAt: optTime(r.AnonymisedAt),
	}
	if t, ok := ev.Ticket(r.TicketID); ok && t.Name != "" {
		x.Ticket.Name = t.Name
	}
	if b := r.Billing; b != (registration.Registration{}).Billing {
		x.Billing = &BillingExport{Line1: b.Line1, Line2: b.Line2, City: b.City, PostalCode: b.PostalCode,
			Region: b.Region, Country: b.Country}
	}
	if p := r.Payment; p.Provider != "" {
		x.Payment = &PaymentExport{Provider: p.Provider, Reference: p.Reference, CardBrand: p.Brand, CardLast4: p.Last4}
	}
	if r.Newsletter {
		ns, err := st.NewsletterState(ctx, id)
		if err != nil {
			return x, err
		}
		x.Newsletter.ConfirmedAt = optTime(ns.ConfirmedAt)
	}
	for _, s := range r.Steps {
		x.Steps = append(x.Steps, StepExport{Name: string(s.Name), Status: string(s.Status), Attempts: s.Attempts,
			LastError: s.LastError})
	}
	msgs, err := st.Messages(ctx, id)
	if err != nil {
		return x, err
	}
	for _, m := range msgs {
		to := m.To
		if to == "" {
			to = r.Email
		}
		kind := string(m.Kind)
		if kind == "" {
			kind = string(registration.MessageConfirmation)
		}
		x.Emails = append(x.Emails, EmailExport{Kind: kind, To: to, State: string(m.State), CreatedAt: m.CreatedAt.UTC()})
	}
	refunds, err := st.Refunds(ctx, id)
	if err != nil {
		return x, err
	}
	for _, rf := range refunds {
		x.Refunds = append(x.Refunds, RefundExport{Amount: money(rf.Amount), State: string(rf.State),
			Reference: rf.Reference, CreatedAt: rf.CreatedAt.UTC()})
	}
	audit, err := st.AuditLog(ctx, AuditFilter{RegistrationID: id, Limit: 1000})
	if err != nil {
		return x, err
	}
	// Oldest first, as a history reads; the organisers' client addresses
	// are theirs, not the attendee's, and stay out.
	for i := len(audit) - 1; i >= 0; i-- {
		e := audit[i]
		x.Audit = append(x.Audit, AuditExport{At: e.At.UTC(), Actor: e.Actor, Action: e.Action, Detail: e.Detail})
	}
	return x, nil
}

// WriteJSON writes the export as indented JSON.
func (x DataExport) WriteJSON(w interface{ Write([]byte) (int, error) }) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(x)
}

// exportData downloads one registration's data as JSON, and records who
// took it.
func (s *server) exportData() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		id := r.PathValue("id")
		if !validID(id) {
			s.errorPage(w, r, v, http.StatusNotFound, "Registration not found", "There is no registration with this id.")
			return
		}
		x, err := ExportData(r.Context(), s.Store, s.Event, id, s.Now())
		if errors.Is(err, registration.ErrNotFound) {
			s.errorPage(w, r, v, http.StatusNotFound, "Registration not found", "There is no registration with this id.")
			return
		}
		if err != nil {
			s.fail(w, r, v, "export data", err)
			return
		}
		a := v.actor()
		if err := s.Store.Audit(detached(r.Context()), registration.AuditEntry{At: s.Now().UTC(), Actor: a.Email,
			Action: ActionExportData, RegistrationID: id, Detail: "personal data exported", Address: a.Address}); err != nil {
			s.fail(w, r, v, "export data", err)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="registration-`+id+`.json"`)
		x.WriteJSON(w)
	}
}
