package admin

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// flushEvery is how many rows an export writes between flushes to the
// client, so memory stays constant however long the list.
const flushEvery = 200

// bom is the UTF-8 byte order mark, which makes Excel read the file as
// UTF-8.
const bom = "\uFEFF"

// registrationColumns are the registrations export's columns; payment
// marks those only roles with PermExportPayments get.
var registrationColumns = []struct {
	name    string
	payment bool
}{
	{"id", false}, {"created", false}, {"status", false}, {"ticket", false}, {"amount", false},
	{"currency", false}, {"first_name", false}, {"last_name", false}, {"email", false}, {"company", false},
	{"newsletter", false}, {"newsletter_consented_at", false}, {"provider", true}, {"reference", true},
	{"card_brand", true}, {"card_last4", true}, {"refunded", true},
}

// registrationRow is one registration's cells, in registrationColumns'
// order.
func registrationRow(r registration.Registration) []string {
	consented := ""
	if !r.NewsletterConsentedAt.IsZero() {
		consented = r.NewsletterConsentedAt.UTC().Format(time.RFC3339)
	}
	return []string{
		r.ID, r.CreatedAt.UTC().Format(time.RFC3339), string(r.Status), r.TicketID,
		event.FormatAmount(r.Amount, r.Currency), r.Currency, r.FirstName, r.LastName, r.Email, r.Company,
		strconv.FormatBool(r.Newsletter), consented, r.Payment.Provider, r.Payment.Reference,
		r.Payment.Brand, r.Payment.Last4, event.FormatAmount(r.Refunded, r.Currency),
	}
}

func (s *server) exportRegistrations() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		q := r.URL.Query()
		f, errs := s.parseFilter(q, false)
		if len(errs) > 0 {
			s.errorPage(w, r, v, http.StatusBadRequest, "Bad filter",
				"The export's filter is not valid. Open the registrations list, correct the filter and export again.")
			return
		}
		payments := v.Can(PermExportPayments)
		var header []string
		keep := make([]bool, len(registrationColumns))
		for i, c := range registrationColumns {
			if !c.payment || payments {
				header = append(header, c.name)
				keep[i] = true
			}
		}
		cw := s.startCSV(w, r, "registrations")
		cw.Write(header)
		rows := 0
		row := make([]string, 0, len(header))
		err := s.Store.EachRegistration(r.Context(), f, func(reg registration.Registration) error {
			row = row[:0]
			for i, cell := range registrationRow(reg) {
				if keep[i] {
					row = append(row, neutralise(cell))
				}
			}
			if err := cw.Write(row); err != nil {
				return err
			}
			rows++
			if rows%flushEvery == 0 {
				return cw.flush()
			}
			return nil
		})
		if ferr := cw.flush(); err == nil {
			err = ferr
		}
		detail := fmt.Sprintf("registrations.csv%s; %s", describeFilter(q), plural(rows, "row"))
		if !payments {
			detail += "; without payment columns"
		}
		if err != nil {
			detail += "; broken off"
			s.Log.ErrorContext(r.Context(), "export registrations", "err", err, "rows", rows)
		}
		s.audit(r.Context(), registration.AuditEntry{At: s.Now(), Actor: v.Account.Email, Action: "export",
			Detail: detail, Address: v.Address})
	}
}

func (s *server) exportMailingList() authedHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visitor) {
		cw := s.startCSV(w, r, "mailing-list")
		cw.Write([]string{"email", "first_name", "last_name", "consented_at", "confirmed_at"})
		rows := 0
		err := s.Store.EachSubscriber(r.Context(), func(sub Subscriber) error {
			if err := cw.Write([]string{neutralise(sub.Email), neutralise(sub.FirstName), neutralise(sub.LastName),
				csvTime(sub.ConsentedAt), csvTime(sub.ConfirmedAt)}); err != nil {
				return err
			}
			rows++
			if rows%flushEvery == 0 {
				return cw.flush()
			}
			return nil
		})
		if ferr := cw.flush(); err == nil {
			err = ferr
		}
		detail := "mailing-list.csv; " + plural(rows, "row")
		if err != nil {
			detail += "; broken off"
			s.Log.ErrorContext(r.Context(), "export mailing list", "err", err, "rows", rows)
		}
		s.audit(r.Context(), registration.AuditEntry{At: s.Now(), Actor: v.Account.Email, Action: "export",
			Detail: detail, Address: v.Address})
	}
}

// csvTime is a time as exports write it: RFC 3339 in UTC, "" for none.
func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// csvWriter writes CSV straight to the response.
type csvWriter struct {
	*csv.Writer
	rc *http.ResponseController
}

// flush sends what is buffered to the client.
func (c csvWriter) flush() error {
	c.Writer.Flush()
	if err := c.Writer.Error(); err != nil {
		return err
	}
	if err := c.rc.Flush(); err != nil && err != http.ErrNotSupported {
		return err
	}
	return nil
}

// startCSV writes the headers of a CSV download named after what it holds
// and today's date, and the byte order mark when ?bom=1 asks for it.
func (s *server) startCSV(w http.ResponseWriter, r *http.Request, name string) csvWriter {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s-%s.csv"`,
		s.Event.ID, name, s.Now().UTC().Format(time.DateOnly)))
	w.WriteHeader(http.StatusOK)
	if r.URL.Query().Get("bom") == "1" {
		w.Write([]byte(bom))
	}
	return csvWriter{Writer: csv.NewWriter(w), rc: http.NewResponseController(w)}
}

// neutralise keeps a spreadsheet from reading a cell as a formula: a cell
// starting with =, +, -, @, tab, carriage return or line feed gets a
// leading apostrophe.
func neutralise(cell string) string {
	if cell != "" && strings.ContainsRune("=+-@\t\r\n", rune(cell[0])) {
		return "'" + cell
	}
	return cell
}

// describeFilter is an export's filter, for the audit log.
func describeFilter(q map[string][]string) string {
	var parts []string
	keys := []string{"q", "ticket", "status", "from", "to"}
	for _, k := range keys {
		if vs := q[k]; len(vs) > 0 && strings.TrimSpace(vs[0]) != "" {
			parts = append(parts, k+"="+strconv.Quote(strings.TrimSpace(vs[0])))
		}
	}
	if len(parts) == 0 {
		return " (everything)"
	}
	slices.Sort(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}
