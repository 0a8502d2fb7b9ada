package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

// fixedRegistrar serves one registration as the store has it.
type fixedRegistrar struct {
	ev  *event.Event
	reg registration.Registration
}

func (f fixedRegistrar) Register(ctx context.Context, req registration.Request, key string) (string, error) {
	return "", &registration.Error{Code: registration.CodeInternal}
}

func (f fixedRegistrar) Registration(ctx context.Context, id string) (registration.Registration, error) {
	if id != f.reg.ID {
		return registration.Registration{}, registration.ErrNotFound
	}
	return f.reg, nil
}

func (f fixedRegistrar) Event() *event.Event { return f.ev }

const officeRegID = "abcdefghijklmnopqrstuvwxyz234567"

// internalError is what a step's error looks like inside: it must never
// reach the attendee.
const internalError = "send confirmation: sendgrid: 550 5.1.1 relay.internal:25 rejected ada@example.org (/var/lib/registrar)"

func officeRegistration(status registration.Status, refunded int64, steps ...registration.Step) registration.Registration {
	at := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	return registration.Registration{
		ID: officeRegID, EventID: "testconf-2027", TicketID: "standard", Status: status,
		Amount: 14900, Currency: "EUR", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.org",
		Payment:  payment.Charge{Provider: "test", Reference: "test_abc", Brand: "visa", Last4: "1111"},
		Refunded: refunded, Steps: steps, CreatedAt: at, UpdatedAt: at,
	}
}

func officeHandler(t *testing.T, reg registration.Registration, adminHandler http.Handler) http.Handler {
	t.Helper()
	ev, err := event.Parse(fmt.Appendf(nil, testEventJSON, 100))
	if err != nil {
		t.Fatal(err)
	}
	h, err := Handler(Deps{Registrar: fixedRegistrar{ev: ev, reg: reg}, Ready: func(context.Context) error { return nil },
		Log: slog.New(slog.DiscardHandler), BaseURL: testBaseURL, Admin: adminHandler})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serveOnce(h http.Handler, r *http.Request) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

// TestAPIPublicStateOfTheBackOffice checks what the status API tells an
// attendee of a cancelled or refunded registration, and that a step's
// internal error becomes a short message for people.
func TestAPIPublicStateOfTheBackOffice(t *testing.T) {
	t.Parallel()
	step := func(name registration.StepName, st registration.StepStatus, attempts int, lastErr string) registration.Step {
		return registration.Step{Name: name, Status: st, Attempts: attempts, LastError: lastErr}
	}
	tests := []struct {
		name         string
		reg          registration.Registration
		wantStatus   string
		wantRefunded any // nil: absent
		wantErrors   map[string]string
	}{
		{"cancelled and half refunded", officeRegistration(registration.StatusCancelled, 7450,
			step(registration.StepSaveOrder, registration.StepSucceeded, 1, ""),
			step(registration.StepSendConfirmation, registration.StepRetrying, 3, internalError),
			step(registration.StepAddToMailingList, registration.StepSkipped, 0, "")),
			"cancelled", "74.50", map[string]string{"send_confirmation": "The registration was cancelled before this step was finished."}},
		{"refunded without cancelling", officeRegistration(registration.StatusCompleted, 14900,
			step(registration.StepSaveOrder, registration.StepSucceeded, 1, ""),
			step(registration.StepSendConfirmation, registration.StepSucceeded, 2, internalError),
			step(registration.StepAddToMailingList, registration.StepSkipped, 0, "")),
			"completed", "149.00", map[string]string{"send_confirmation": "This step needed more than one try; it is done."}},
		{"needs attention, nothing refunded", officeRegistration(registration.StatusNeedsAttention, 0,
			step(registration.StepSaveOrder, registration.StepSucceeded, 1, ""),
			step(registration.StepSendConfirmation, registration.StepFailed, 15, internalError),
			step(registration.StepAddToMailingList, registration.StepRetrying, 2, "mailchimp: 503 from us21.api.mailchimp.com")),
			"needs_attention", nil, map[string]string{
				"send_confirmation":   "The organisers will finish this step.",
				"add_to_mailing_list": "We are retrying this step.",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, body := serveOnce(officeHandler(t, tt.reg, nil), httptest.NewRequest(http.MethodGet, "/api/registrations/"+officeRegID, nil))
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if got["status"] != tt.wantStatus {
				t.Errorf("status %v, want %s", got["status"], tt.wantStatus)
			}
			if refunded, ok := got["refunded"]; tt.wantRefunded == nil && ok || tt.wantRefunded != nil && refunded != tt.wantRefunded {
				t.Errorf("refunded %v (present %v), want %v", refunded, ok, tt.wantRefunded)
			}
			steps := got["steps"].(map[string]any)
			for name, raw := range steps {
				st := raw.(map[string]any)
				want, has := tt.wantErrors[name]
				if msg, ok := st["last_error"]; ok != has || has && msg != want {
					t.Errorf("step %s last_error %v, want %q", name, msg, want)
				}
			}
			for _, secret := range []string{"relay.internal", "/var/lib", "sendgrid", "mailchimp.com", "550"} {
				if strings.Contains(body, secret) {
					t.Errorf("the public resource shows internal detail %q: %s", secret, body)
				}
			}
		})
	}
}

// TestStatusPageCancelled is the golden status page of a cancelled,
// half-refunded registration.
func TestStatusPageCancelled(t *testing.T) {
	t.Parallel()
	reg := officeRegistration(registration.StatusCancelled, 7450,
		registration.Step{Name: registration.StepSaveOrder, Status: registration.StepSucceeded, Attempts: 1},
		registration.Step{Name: registration.StepSendConfirmation, Status: registration.StepSucceeded, Attempts: 1},
		registration.Step{Name: registration.StepAddToMailingList, Status: registration.StepSkipped})
	code, body := serveOnce(officeHandler(t, reg, nil), httptest.NewRequest(http.MethodGet, "/registrations/"+officeRegID, nil))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	for _, want := range []string{"Your registration was cancelled", "€74.50 refunded to Visa •••• 1111", `class="status cancelled"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "Refresh") || strings.Contains(body, "<script") {
		t.Error("a cancelled registration's page keeps refreshing")
	}
	checkGolden(t, filepath.Join("testdata", "status_cancelled.golden"), []byte(body))
}

// TestAdminMounted checks that the back office gets /admin and everything
// under it, and that the outer cross-origin protection covers its POSTs.
func TestAdminMounted(t *testing.T) {
	t.Parallel()
	var seen []string
	backOffice := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	h := officeHandler(t, officeRegistration(registration.StatusCompleted, 0), backOffice)
	for _, path := range []string{"/admin", "/admin/", "/admin/registrations/" + officeRegID, "/admin/jobs/"} {
		if code, _ := serveOnce(h, httptest.NewRequest(http.MethodGet, path, nil)); code != http.StatusTeapot {
			t.Errorf("GET %s: %d, want the back office's answer", path, code)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/admin/registrations/"+officeRegID+"/refund", strings.NewReader("amount=1"))
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if code, _ := serveOnce(h, r); code != http.StatusForbidden {
		t.Errorf("cross-site POST to the back office: %d, want 403", code)
	}
	if len(seen) != 4 {
		t.Errorf("the back office saw %q", seen)
	}
	// Without a back office, /admin is not found.
	if code, _ := serveOnce(officeHandler(t, officeRegistration(registration.StatusCompleted, 0), nil),
		httptest.NewRequest(http.MethodGet, "/admin", nil)); code != http.StatusNotFound {
		t.Errorf("GET /admin without a back office: %d", code)
	}
}
