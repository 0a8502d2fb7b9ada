package admin_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
)

// TestExportAndErase downloads a registration's data, then erases it with
// the pipeline's real actions: the confirmation is required, the audit
// entry names who and when but none of the data, and erasing twice changes
// nothing more.
func TestExportAndErase(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		e.office()
		reg := e.seed(seedReg{First: "Ada", Last: "Lovelace", Email: "ada@example.org", Company: "Analytical Engines", Newsletter: true})[0]
		other := e.seed(seedReg{First: "Grace", Last: "Hopper", Email: "grace@example.org"})[0]
		owner, ownerCk := e.account(admin.RoleOwner)
		_, financeCk := e.account(admin.RoleFinance)
		_, staffCk := e.account(admin.RoleStaff)
		page := "/admin/registrations/" + reg.ID

		for _, c := range []struct {
			name          string
			cookie        string
			export, erase bool
		}{{"owner", ownerCk, true, true}, {"finance", financeCk, true, false}, {"staff", staffCk, false, false}} {
			body := e.get(page, c.cookie).Body.String()
			if got := strings.Contains(body, `href="`+page+`/export.json"`); got != c.export {
				t.Errorf("%s: Export data link shown %v; want %v", c.name, got, c.export)
			}
			if got := strings.Contains(body, `action="`+page+`/erase"`); got != c.erase {
				t.Errorf("%s: erase form shown %v; want %v", c.name, got, c.erase)
			}
		}

		w := e.get(page+"/export.json", financeCk)
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") ||
			w.Header().Get("Content-Disposition") != `attachment; filename="registration-`+reg.ID+`.json"` {
			t.Fatalf("export: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Header().Get("Content-Disposition"))
		}
		var x admin.DataExport
		if err := json.Unmarshal(w.Body.Bytes(), &x); err != nil {
			t.Fatalf("export is not JSON: %v\n%s", err, w.Body)
		}
		if len(x.Registrations) != 1 {
			t.Fatalf("export holds %d registrations; want 1", len(x.Registrations))
		}
		got := x.Registrations[0]
		if got.ID != reg.ID || got.Attendee.Email != "ada@example.org" || got.Attendee.Company != "Analytical Engines" ||
			got.Amount != "149.00" || got.Currency != "EUR" || got.Ticket.Name != "Standard" || got.Billing == nil ||
			got.Billing.City != "London" || got.Payment == nil || got.Payment.Reference != reg.Payment.Reference ||
			len(got.Steps) != 3 || !got.Newsletter.Consented || got.Newsletter.ConsentText != registration.NewsletterConsentText ||
			got.Newsletter.ConsentedAt == nil || got.AnonymisedAt != nil {
			t.Errorf("export: %s", w.Body)
		}
		if n := len(e.audit(admin.AuditFilter{Action: admin.ActionExportData, RegistrationID: reg.ID})); n != 1 {
			t.Errorf("export audit entries = %d; want 1", n)
		}

		key := url.Values{"key": {"k0123456789abcdefghij"}}
		// Without the confirmation nothing happens.
		w = e.post(page+"/erase", ownerCk, key)
		if w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), "Tick the box to confirm") ||
			!strings.Contains(w.Body.String(), `aria-invalid="true"`) {
			t.Errorf("erase without confirming: %d", w.Code)
		}
		if r, _ := e.store.Registration(t.Context(), reg.ID); r.Anonymised() {
			t.Fatal("erased without confirmation")
		}
		confirmed := url.Values{"key": key["key"], "confirm": {"yes"}}
		for range 2 {
			if w := e.post(page+"/erase", ownerCk, confirmed); w.Code != http.StatusSeeOther || w.Header().Get("Location") != page+"?done=erase" {
				t.Fatalf("erase: %d to %q: %s", w.Code, w.Header().Get("Location"), w.Body)
			}
		}
		r, err := e.store.Registration(t.Context(), reg.ID)
		if err != nil || !r.Anonymised() || r.Email != registration.ErasedEmail(reg.ID) || r.Payment != reg.Payment || r.Amount != reg.Amount {
			t.Fatalf("after the erasure: %+v, %v", r, err)
		}
		entries := e.audit(admin.AuditFilter{Action: admin.ActionErase})
		if len(entries) != 1 || entries[0].Actor != owner.Email || entries[0].RegistrationID != reg.ID || entries[0].At.IsZero() {
			t.Fatalf("erase audit entries: %+v; want one by %s", entries, owner.Email)
		}
		if d := entries[0].Detail; strings.Contains(d, "ada") || strings.Contains(d, "Lovelace") {
			t.Errorf("the audit entry quotes the erased data: %q", d)
		}
		body := e.get(page+"?done=erase", ownerCk).Body.String()
		if !strings.Contains(body, "personal data is erased") || strings.Contains(body, "Lovelace") ||
			strings.Contains(body, `action="`+page+`/erase"`) || strings.Contains(body, `action="`+page+`/resend"`) {
			t.Errorf("the page after the erasure still shows the data or its actions:\n%s", body)
		}
		if r, _ := e.store.Registration(t.Context(), other.ID); r.Anonymised() || r.Email != "grace@example.org" {
			t.Errorf("the other registration changed: %+v", r)
		}
		// An unknown registration is a 404.
		if w := e.post("/admin/registrations/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz/erase", ownerCk, confirmed); w.Code != http.StatusNotFound {
			t.Errorf("erase of an unknown registration: %d", w.Code)
		}
		if w := e.get("/admin/registrations/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz/export.json", ownerCk); w.Code != http.StatusNotFound {
			t.Errorf("export of an unknown registration: %d", w.Code)
		}
	})
}
