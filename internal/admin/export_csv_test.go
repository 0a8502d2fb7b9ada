package admin_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

func TestNeutralise(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"},
		{"+1+1", "'+1+1"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1:A2)", "'@SUM(A1:A2)"},
		{"\tcmd", "'\tcmd"},
		{"\rcmd", "'\rcmd"},
		{"\ncmd", "'\ncmd"},
		{"Ada", "Ada"},
		{"", ""},
		{"a=b", "a=b"},
		{"O'Brien", "O'Brien"},
	}
	for _, c := range cases {
		if got := admin.Neutralise(c.in); got != c.want {
			t.Errorf("neutralise(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func readCSV(t *testing.T, body string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v\n%s", err, body)
	}
	return rows
}

func TestExportRegistrations(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		regs := e.seed(
			seedReg{First: "=cmd|' /C calc'!A0", Last: "@Evil", Email: "evil@example.org", Company: "+Formula", Created: t0.AddDate(0, 0, -2)},
			seedReg{First: "Grace", Last: "Hopper", Email: "grace@navy.example", Company: "-Navy", Newsletter: true, Created: t0.AddDate(0, 0, -1)},
			seedReg{First: "Alan", Last: "Turing", Email: "alan@example.org", Ticket: "student", Created: t0},
		)
		_, finance := e.account(admin.RoleFinance)
		_, staff := e.account(admin.RoleStaff)

		w := e.get("/admin/export/registrations.csv?ticket=standard", finance)
		if w.Code != http.StatusOK {
			t.Fatalf("export: %d %s", w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		if cd := w.Header().Get("Content-Disposition"); cd != `attachment; filename="gopherfest-2027-registrations-2027-03-15.csv"` {
			t.Errorf("Content-Disposition %q", cd)
		}
		if strings.HasPrefix(w.Body.String(), "\uFEFF") {
			t.Error("a byte order mark without ?bom=1")
		}
		rows := readCSV(t, w.Body.String())
		wantHeader := "id,created,status,ticket,amount,currency,first_name,last_name,email,company,newsletter,newsletter_consented_at,provider,reference,card_brand,card_last4,refunded"
		if got := strings.Join(rows[0], ","); got != wantHeader {
			t.Errorf("header\n %s\nwant\n %s", got, wantHeader)
		}
		if len(rows) != 3 {
			t.Fatalf("%d rows, want the header and the 2 standard tickets: %v", len(rows), rows)
		}
		grace := strings.Join(rows[1], "|")
		wantGrace := regs[1].ID + "|2027-03-14T10:00:00Z|processing|standard|149.00|EUR|Grace|Hopper|grace@navy.example|'-Navy|true|2027-03-14T10:00:00Z|test|" +
			regs[1].Payment.Reference + "|visa|1111|0.00"
		if grace != wantGrace {
			t.Errorf("row\n %s\nwant\n %s", grace, wantGrace)
		}
		evil := rows[2]
		if evil[6] != "'=cmd|' /C calc'!A0" || evil[7] != "'@Evil" || evil[9] != "'+Formula" || evil[10] != "false" || evil[11] != "" {
			t.Errorf("formula cells not neutralised: %q", evil)
		}

		// Staff get the same rows without the payment columns.
		w = e.get("/admin/export/registrations.csv?ticket=standard", staff)
		rows = readCSV(t, w.Body.String())
		if got := strings.Join(rows[0], ","); got != "id,created,status,ticket,amount,currency,first_name,last_name,email,company,newsletter,newsletter_consented_at" {
			t.Errorf("staff header %s", got)
		}
		if len(rows) != 3 || strings.Contains(w.Body.String(), regs[1].Payment.Reference) || strings.Contains(w.Body.String(), "visa") {
			t.Errorf("staff export has payment details or wrong rows: %v", rows)
		}

		// ?bom=1 starts with the byte order mark; the filter still applies.
		w = e.get("/admin/export/registrations.csv?bom=1&q=alan", finance)
		if !strings.HasPrefix(w.Body.String(), "\uFEFFid,created,") {
			t.Errorf("no byte order mark: %q", w.Body.String()[:20])
		}
		rows = readCSV(t, strings.TrimPrefix(w.Body.String(), "\uFEFF"))
		if len(rows) != 2 || rows[1][0] != regs[2].ID {
			t.Errorf("filtered export: %v", rows)
		}

		// Every export is audited with what was exported.
		got := e.audit(admin.AuditFilter{Action: "export"})
		if len(got) != 3 {
			t.Fatalf("%d export entries, want 3", len(got))
		}
		if got[0].Actor != "finance@example.org" || got[0].Detail != `registrations.csv (q="alan"); 1 row` || got[0].Address != "192.0.2.1" {
			t.Errorf("newest export entry %+v", got[0])
		}
		if got[1].Detail != `registrations.csv (ticket="standard"); 2 rows; without payment columns` {
			t.Errorf("staff export entry %+v", got[1])
		}
	})
}

// TestExportStreams checks a list longer than one flush, page after page
// of the store.
func TestExportStreams(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnvWith(t, eng, func(ev *event.Event) { ev.Tickets[0].Capacity = 5000 })
		seeds := make([]seedReg, 1234)
		e.seed(seeds...)
		_, ck := e.account(admin.RoleOwner)
		w := e.get("/admin/export/registrations.csv", ck)
		rows := readCSV(t, w.Body.String())
		if len(rows) != 1235 {
			t.Fatalf("%d rows, want 1235", len(rows))
		}
		if !w.Flushed {
			t.Error("the export was not flushed while it was written")
		}
		seen := map[string]bool{}
		for _, r := range rows[1:] {
			if seen[r[0]] {
				t.Fatalf("%s exported twice", r[0])
			}
			seen[r[0]] = true
		}
	})
}

func TestExportMailingList(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		ctx := context.Background()
		for i, sub := range []registration.Subscriber{
			{Email: "grace@navy.example", FirstName: "Grace", LastName: "Hopper"},
			{Email: "evil@example.org", FirstName: "=1+1", LastName: "-x"},
		} {
			sub.EventID, sub.RegistrationID = e.ev.ID, fmt.Sprintf("reg%d", i)
			if err := e.store.Subscribe(ctx, sub); err != nil {
				t.Fatal(err)
			}
		}
		_, ck := e.account(admin.RoleStaff)
		w := e.get("/admin/export/mailing-list.csv", ck)
		if w.Code != http.StatusOK {
			t.Fatalf("mailing list: %d", w.Code)
		}
		if cd := w.Header().Get("Content-Disposition"); !strings.Contains(cd, `filename="gopherfest-2027-mailing-list-`) {
			t.Errorf("Content-Disposition %q", cd)
		}
		rows := readCSV(t, w.Body.String())
		if len(rows) != 3 || strings.Join(rows[0], ",") != "email,first_name,last_name,consented_at,confirmed_at" {
			t.Fatalf("rows %v", rows)
		}
		if rows[1][0] != "evil@example.org" || rows[1][1] != "'=1+1" || rows[1][2] != "'-x" || rows[2][1] != "Grace" || rows[2][3] == "" {
			t.Errorf("rows %v", rows)
		}
		if got := e.audit(admin.AuditFilter{Action: "export"}); len(got) != 1 || got[0].Detail != "mailing-list.csv; 2 rows" {
			t.Errorf("audit %+v", got)
		}
	})
}
