package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// validForm is a fresh, valid form submission for the "standard" ticket,
// without its submission key.
func validForm() url.Values {
	return url.Values{
		"ticket":                      {"standard"},
		"attendee.first_name":         {"Ada"},
		"attendee.last_name":          {"Lovelace"},
		"attendee.email":              {"ada@example.org"},
		"attendee.company":            {"Analytical Engines"},
		"newsletter":                  {"yes"},
		"billing.card.name":           {"Ada Lovelace"},
		"billing.card.number":         {"4111 1111 1111 1111"},
		"billing.card.expiry":         {"2030-12"},
		"billing.card.cvc":            {"731"},
		"billing.address.line1":       {"12 St James's Square"},
		"billing.address.city":        {"London"},
		"billing.address.postal_code": {"SW1Y 4JH"},
		"billing.address.country":     {"gb"},
	}
}

func (h *harness) postForm(form url.Values) response {
	h.t.Helper()
	return h.do(h.newRequest(http.MethodPost, "/register", "application/x-www-form-urlencoded", []byte(form.Encode())))
}

var (
	keyInput  = regexp.MustCompile(`<input type="hidden" name="submission_key" value="([^"]*)">`)
	anyInput  = regexp.MustCompile(`<input [^>]*>`)
	attribute = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
)

// submissionKey is the form's hidden submission key.
func submissionKey(t *testing.T, page []byte) string {
	t.Helper()
	m := keyInput.FindAllSubmatch(page, -1)
	if len(m) != 1 {
		t.Fatalf("want one submission_key input, found %d in:\n%s", len(m), page)
	}
	return string(m[0][1])
}

// inputs returns the attributes of every input of a page, by name (radio
// buttons by name=value).
func inputs(page []byte) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, tag := range anyInput.FindAll(page, -1) {
		attrs := map[string]string{}
		for _, a := range attribute.FindAllSubmatch(tag, -1) {
			attrs[string(a[1])] = html.UnescapeString(string(a[2]))
		}
		for _, flag := range []string{"checked", "required", "disabled"} {
			if bytes.Contains(tag, []byte(" "+flag)) {
				attrs[flag] = "true"
			}
		}
		name := attrs["name"]
		if attrs["type"] == "radio" {
			name += "=" + attrs["value"]
		}
		out[name] = attrs
	}
	return out
}

// fetchKey loads the form and returns its submission key.
func (h *harness) fetchKey() string {
	h.t.Helper()
	res := h.get("/")
	if res.status != http.StatusOK {
		h.t.Fatalf("GET /: %v", res)
	}
	return submissionKey(h.t, res.body)
}

func TestFormPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	res := h.get("/")
	if res.status != http.StatusOK {
		t.Fatalf("GET /: %v", res)
	}
	for k, v := range map[string]string{
		"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
		"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
	} {
		if got := res.header.Get(k); got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
	if csp := res.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("Content-Security-Policy %q does not restrict form-action", csp)
	}
	page := string(res.body)
	key := submissionKey(t, res.body)
	if !registration.ValidID(key) {
		t.Errorf("submission key %q does not have the shape of an id", key)
	}
	if other := h.fetchKey(); other == key {
		t.Errorf("two loads of the form share the submission key %q", key)
	}
	for name, in := range inputs(res.body) {
		if in["type"] == "hidden" {
			continue
		}
		id := in["id"]
		if id == "" {
			t.Errorf("input %s has no id", name)
			continue
		}
		if !strings.Contains(page, `<label for="`+id+`">`) {
			t.Errorf("input %s (id %s) has no label", name, id)
		}
	}
	in := inputs(res.body)
	for _, f := range append(formFields, "newsletter") {
		if f == "ticket" {
			continue // radio buttons, checked below
		}
		if _, ok := in[f]; !ok {
			t.Errorf("the form has no input %s", f)
		}
	}
	if in["newsletter"]["checked"] != "" {
		t.Error("the newsletter box is ticked by default; consent must be explicit")
	}
	for _, tk := range h.event.Tickets {
		radio, ok := in["ticket="+tk.ID]
		if !ok {
			t.Errorf("no radio button for ticket %s", tk.ID)
		}
		if want := tk.ID == h.event.Tickets[0].ID; (radio["checked"] != "") != want {
			t.Errorf("ticket %s checked = %v, want %v", tk.ID, radio["checked"] != "", want)
		}
		if radio["disabled"] != "" {
			t.Errorf("ticket %s is disabled with every seat free", tk.ID)
		}
		if !strings.Contains(page, `<span class="name">`+tk.Name) {
			t.Errorf("ticket %s is not shown by name", tk.Name)
		}
	}
	for _, s := range []string{
		`<span class="price">€149.00</span>`, `<span class="price">€49.00</span>`, `<span class="price">Free</span>`,
		"TestConf 2027", "Hall 1, Berlin", "Thu 10 June 2027, 09:00 UTC+02:00",
		`<button type="submit" class="pay">Pay €149.00</button>`,
	} {
		if !strings.Contains(html.UnescapeString(page), s) {
			t.Errorf("the form does not show %q", s)
		}
	}
	// The API keeps its amounts; only the page is written for people.
	if strings.Contains(page, "149.00 EUR") {
		t.Error("the form shows the API's amount format")
	}
}

func TestFormErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		form   url.Values
		errors []string // inputs marked invalid
		// message is shown above the form, for errors that belong to no input.
		message string
	}{
		{"bad email and missing name", func() url.Values {
			f := validForm()
			f.Set("attendee.email", "ada@")
			f.Set("attendee.last_name", "")
			return f
		}(), []string{"attendee.email", "attendee.last_name"}, ""},
		{"bad card number", func() url.Values {
			f := validForm()
			f.Set("billing.card.number", "4111 1111 1111 1112")
			f.Set("billing.card.expiry", "2001-01")
			return f
		}(), []string{"billing.card.number", "billing.card.expiry"}, ""},
		{"bad cvc", func() url.Values {
			f := validForm()
			f.Set("billing.card.cvc", "73199")
			f.Set("billing.address.country", "Great Britain")
			return f
		}(), []string{"billing.card.cvc", "billing.address.country"}, ""},
		// Every missing input of the payment section is marked at once.
		{"paid ticket without billing", func() url.Values {
			f := validForm()
			for k := range f {
				if strings.HasPrefix(k, "billing.") {
					f.Del(k)
				}
			}
			return f
		}(), []string{"billing.card.name", "billing.card.number", "billing.card.expiry", "billing.card.cvc",
			"billing.address.line1", "billing.address.city", "billing.address.country"}, ""},
		{"expiry not as people write it", func() url.Values {
			f := validForm()
			f.Set("billing.card.expiry", "December 30")
			return f
		}(), []string{"billing.card.expiry"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			key := h.fetchKey()
			tt.form.Set("submission_key", key)
			res := h.postForm(tt.form)
			if res.status != http.StatusUnprocessableEntity {
				t.Fatalf("got %v, want 422", res)
			}
			if ct := res.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type: got %q", ct)
			}
			if got := submissionKey(t, res.body); got != key {
				t.Errorf("submission key: got %q, want the same %q", got, key)
			}
			if !bytes.Contains(res.body, []byte("Please correct the fields marked below.")) {
				t.Error("no summary message")
			}
			if tt.message != "" && !bytes.Contains(res.body, []byte(tt.message)) {
				t.Errorf("the page does not say %q", tt.message)
			}
			in := inputs(res.body)
			for _, f := range formFields {
				marked := in[f]["aria-invalid"] == "true"
				want := false
				for _, e := range tt.errors {
					want = want || e == f
				}
				if marked != want {
					t.Errorf("input %s marked invalid = %v, want %v", f, marked, want)
				}
				if want {
					// The message sits right after its input and is tied to it.
					if in[f]["aria-describedby"] != f+"-error" {
						t.Errorf("input %s: aria-describedby %q", f, in[f]["aria-describedby"])
					}
					re := regexp.MustCompile(`id="` + regexp.QuoteMeta(f) + `"[^>]*>\n<p class="err" id="` + regexp.QuoteMeta(f) + `-error">[^<]+</p>`)
					if !re.Match(res.body) {
						t.Errorf("no inline error right after input %s", f)
					}
				}
				switch {
				case secretFields[f]:
					if v := in[f]["value"]; v != "" {
						t.Errorf("secret input %s re-rendered with %q", f, v)
					}
				case f == "ticket":
				default:
					if got, want := in[f]["value"], strings.TrimSpace(tt.form.Get(f)); got != want && got != tt.form.Get(f) {
						t.Errorf("input %s: value %q, want what was typed, %q", f, got, tt.form.Get(f))
					}
				}
			}
			if in["newsletter"]["checked"] != "true" {
				t.Error("the newsletter box lost its tick")
			}
			if in["ticket=standard"]["checked"] != "true" {
				t.Error("the chosen ticket is not checked")
			}
			number := tt.form.Get("billing.card.number")
			for _, secret := range []string{number, payment.NormalizeNumber(number), tt.form.Get("billing.card.cvc")} {
				if secret != "" && bytes.Contains(res.body, []byte(secret)) {
					t.Errorf("the page contains the secret %q", secret)
				}
			}
			if got := h.counts("standard"); got != (counts{}) {
				t.Errorf("a form with errors changed the database: %+v", got)
			}
			// Corrected, the same form (same key) goes through.
			fixed := validForm()
			fixed.Set("submission_key", key)
			if res := h.postForm(fixed); res.status != http.StatusSeeOther {
				t.Errorf("corrected form: got %v, want 303", res)
			}
		})
	}
}

func TestFormExpiredKey(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "not-a-key", strings.Repeat("A", 32)} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			f := validForm()
			if key != "" {
				f.Set("submission_key", key)
			}
			res := h.postForm(f)
			if res.status != http.StatusBadRequest || !bytes.Contains(res.body, []byte("This form has expired.")) {
				t.Fatalf("got %v, want 400 with the form", res)
			}
			if got := submissionKey(t, res.body); !registration.ValidID(got) {
				t.Errorf("the re-rendered form has no fresh key: %q", got)
			}
			if got := h.counts("standard"); got != (counts{}) || h.calls.Calls() != 0 {
				t.Errorf("changed the database (%+v) or charged (%d calls)", got, h.calls.Calls())
			}
		})
	}
}

var locationPattern = regexp.MustCompile(`^/registrations/([a-z2-7]{32})$`)

func TestFormRegister(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	f := validForm()
	f.Set("submission_key", h.fetchKey())
	res := h.postForm(f)
	if res.status != http.StatusSeeOther {
		t.Fatalf("got %v, want 303", res)
	}
	m := locationPattern.FindStringSubmatch(res.header.Get("Location"))
	if m == nil {
		t.Fatalf("Location %q is not a status page", res.header.Get("Location"))
	}
	id := m[1]
	// The status page's words are tested with the status page.
	if page := h.get("/registrations/" + id); page.status != http.StatusOK || !bytes.Contains(page.body, []byte("Ada Lovelace")) {
		t.Fatalf("status page: %v", page)
	}
	reg, err := h.store.Registration(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if reg.FirstName != "Ada" || reg.Email != "ada@example.org" || !reg.Newsletter || reg.Payment.Last4 != "1111" {
		t.Errorf("stored registration: %+v", reg)
	}
	if n := h.count(`SELECT count(*) FROM idempotency_keys WHERE key = ?`, "form:"+f.Get("submission_key")); n != 1 {
		t.Errorf("the form's submission key is not the idempotency key")
	}
	// Submitting the same page again (back button, resubmit) charges
	// nothing more: the form points to the registration made.
	again := h.postForm(f)
	if again.status != http.StatusConflict || !bytes.Contains(again.body, []byte(`href="/registrations/`+id+`"`)) {
		t.Errorf("resubmitted: got %v, want 409 with a link to the registration", again)
	}
	if c, _ := h.proc.Charges(); c != 1 {
		t.Errorf("charges: got %d, want 1", c)
	}
}

func TestStatusPageCompleted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{workers: true})
	id := h.register(mustJSON(t, with(validRequest(), "newsletter", true)))
	var reg map[string]any
	waitFor(t, "the registration to complete", 60*time.Second, func() bool {
		res := h.get("/api/registrations/" + id)
		reg = decodeObject(t, res.body)
		return reg["status"] == "completed"
	})
	want := map[string]any{
		"save_order":          map[string]any{"status": "succeeded", "attempts": 1.0},
		"send_confirmation":   map[string]any{"status": "succeeded", "attempts": 1.0},
		"add_to_mailing_list": map[string]any{"status": "succeeded", "attempts": 1.0},
	}
	if got := reg["steps"]; !equalJSON(got, want) {
		t.Errorf("steps: got %v, want %v", got, want)
	}
	page := h.get("/registrations/" + id)
	if page.status != http.StatusOK {
		t.Fatalf("status page: %v", page)
	}
	if bytes.Contains(page.body, []byte(`http-equiv="refresh"`)) {
		t.Error("a completed registration's page still refreshes itself")
	}
	if !bytes.Contains(page.body, []byte("You're registered")) && !bytes.Contains(page.body, []byte("You&#39;re registered")) {
		t.Error("the completed page does not say so")
	}
	if n := bytes.Count(page.body, []byte(`class="step done"`)); n != 3 {
		t.Errorf("%d succeeded steps shown, want 3", n)
	}
}

// TestFormStillInProgress: a submission that finds the same form's payment
// still without an outcome after its wait (another process charging, or
// one that died charging) says so in words an attendee understands, keeps
// what was typed and the form's key; submitted again once the payment
// ended, the form links that registration and nothing is charged twice.
func TestFormStillInProgress(t *testing.T) {
	t.Parallel()
	var blocker *blockingProcessor
	h := newHarness(t, harnessOptions{
		formWait: 300 * time.Millisecond,
		wrapProcessor: func(p payment.Processor) payment.Processor {
			blocker = newBlockingProcessor(p)
			return blocker
		},
	})
	f := validForm()
	key := h.fetchKey()
	f.Set("submission_key", key)
	request := func() *http.Request {
		return h.newRequest(http.MethodPost, "/register", "application/x-www-form-urlencoded", []byte(f.Encode()))
	}
	submit := func() response {
		t.Helper()
		res, err := h.send(request())
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := h.sendAsync(request())
	wait(t, "the first submission's charge", blocker.entered)

	again := submit()
	if again.status != http.StatusConflict {
		t.Fatalf("while the payment is in progress: got %v, want 409", again)
	}
	page := string(again.body)
	for _, want := range []string{"still being confirmed", "you will not be charged twice", "Type the card number and security code again."} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "Idempotency-Key") {
		t.Error("the page speaks of the API's Idempotency-Key to an attendee")
	}
	if got := submissionKey(t, again.body); got != key {
		t.Errorf("the form's key: got %q, want the submitted %q", got, key)
	}
	in := inputs(again.body)
	if got := in["attendee.email"]["value"]; got != f.Get("attendee.email") {
		t.Errorf("email kept as %q, want %q", got, f.Get("attendee.email"))
	}
	for _, name := range []string{"billing.card.number", "billing.card.cvc"} {
		if _, ok := in[name]; !ok {
			t.Fatalf("the page has no input %s", name)
		}
		if got := in[name]["value"]; got != "" {
			t.Errorf("%s was put back in the page: %q", name, got)
		}
	}

	close(blocker.release)
	done := wait(t, "the first response", first)
	if done.status != http.StatusSeeOther {
		t.Fatalf("first submission: got %v, want 303", done)
	}
	// Submitted again, the form shows the registration that payment made
	// (as it does after Back) and charges nothing.
	last := submit()
	if last.status != http.StatusConflict || !bytes.Contains(last.body, []byte("You already have a")) ||
		!bytes.Contains(last.body, []byte(`href="`+done.header.Get("Location")+`"`)) {
		t.Fatalf("submitted again: got %v, want the notice linking %s", last, done.header.Get("Location"))
	}
	if c, r := h.proc.Charges(); c != 1 || r != 0 || h.calls.Calls() != 1 {
		t.Errorf("charges: %d (%d refunded, %d processor calls); want exactly one", c, r, h.calls.Calls())
	}
}

// equalJSON compares two values by their JSON encoding.
func equalJSON(a, b any) bool {
	x, errA := json.Marshal(a)
	y, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(x, y)
}

// spyRegistrar reports each Register call that found its key in progress.
type spyRegistrar struct {
	Registrar
	inProgress chan struct{}
}

func (s *spyRegistrar) Register(ctx context.Context, req registration.Request, key string) (string, error) {
	id, err := s.Registrar.Register(ctx, req, key)
	var e *registration.Error
	if errors.As(err, &e) && e.Code == registration.CodeIdempotencyInProgress {
		select {
		case s.inProgress <- struct{}{}:
		default:
		}
	}
	return id, err
}

func TestFormDoubleSubmit(t *testing.T) {
	t.Parallel()
	var blocker *blockingProcessor
	spy := &spyRegistrar{inProgress: make(chan struct{}, 1)}
	h := newHarness(t, harnessOptions{
		wrapProcessor: func(p payment.Processor) payment.Processor {
			blocker = newBlockingProcessor(p)
			return blocker
		},
		wrapRegistrar: func(r Registrar) Registrar { spy.Registrar = r; return spy },
	})
	f := validForm()
	f.Set("submission_key", h.fetchKey())
	click := func() <-chan response {
		return h.sendAsync(h.newRequest(http.MethodPost, "/register", "application/x-www-form-urlencoded", []byte(f.Encode())))
	}
	first := click()
	wait(t, "the first click's charge", blocker.entered)
	second := click()
	wait(t, "the second click to find the first in progress", spy.inProgress)
	close(blocker.release)

	a, b := wait(t, "a response", first), wait(t, "another response", second)
	for _, res := range []response{a, b} {
		if res.status != http.StatusSeeOther || !locationPattern.MatchString(res.header.Get("Location")) {
			t.Fatalf("got %v (Location %q), want 303 to a status page", res, res.header.Get("Location"))
		}
	}
	if a.header.Get("Location") != b.header.Get("Location") {
		t.Errorf("the two clicks went to %q and %q", a.header.Get("Location"), b.header.Get("Location"))
	}
	if got, want := h.counts("standard"), (counts{Registrations: 1, Taken: 1, IdempotencyKeys: 1, RegisterJobs: 1}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if c, r := h.proc.Charges(); c != 1 || r != 0 || h.calls.Calls() != 1 {
		t.Errorf("charges: %d (%d refunded, %d processor calls); want exactly one", c, r, h.calls.Calls())
	}
}

func TestFormDeclined(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	oldKey := h.fetchKey()
	f := validForm()
	f.Set("submission_key", oldKey)
	f.Set("billing.card.number", "4000 0000 0000 0002")
	res := h.postForm(f)
	if res.status != http.StatusPaymentRequired {
		t.Fatalf("got %v, want 402", res)
	}
	if !bytes.Contains(res.body, []byte("Your card was declined. Please use another card or contact your bank.")) {
		t.Error("the page does not show the decline")
	}
	newKey := submissionKey(t, res.body)
	if newKey == oldKey || !registration.ValidID(newKey) {
		t.Errorf("submission key after a decline: %q (was %q), want a new one", newKey, oldKey)
	}
	in := inputs(res.body)
	if in["billing.card.number"]["value"] != "" || in["billing.card.cvc"]["value"] != "" {
		t.Error("card number or CVC re-rendered")
	}
	if in["attendee.email"]["value"] != "ada@example.org" {
		t.Errorf("email not kept: %q", in["attendee.email"]["value"])
	}
	if bytes.Contains(res.body, []byte("4000000000000002")) || bytes.Contains(res.body, []byte("4000 0000 0000 0002")) {
		t.Error("the page contains the card number")
	}
	if got := h.counts("standard"); got.Registrations != 0 || got.SeatHolds != 0 || got.Taken != 0 {
		t.Errorf("a decline left something behind: %+v", got)
	}

	// The old page's key keeps its outcome; with another card it is refused.
	f.Set("billing.card.number", "4242 4242 4242 4242")
	if res := h.postForm(f); res.status != http.StatusUnprocessableEntity ||
		!bytes.Contains(res.body, []byte("already submitted with other details")) {
		t.Errorf("old key, new card: got %v, want 422", res)
	}
	// The new page's key takes the new card.
	f.Set("submission_key", newKey)
	if res := h.postForm(f); res.status != http.StatusSeeOther {
		t.Errorf("new key, new card: got %v, want 303", res)
	}
}

func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		status  int
	}{
		{"form cross-site", "/register", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"form same-site", "/register", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"form foreign origin", "/register", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"api cross-site", "/api/registrations", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"form same-origin", "/register", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusSeeOther},
		{"api without browser headers", "/api/registrations", nil, http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			var req *http.Request
			if tt.path == "/register" {
				f := validForm()
				f.Set("submission_key", h.fetchKey())
				req = h.newRequest(http.MethodPost, tt.path, "application/x-www-form-urlencoded", []byte(f.Encode()))
			} else {
				req = h.newRequest(http.MethodPost, tt.path, "application/json", mustJSON(t, validRequest()))
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			res := h.do(req)
			if res.status != tt.status {
				t.Fatalf("got %v, want %d", res, tt.status)
			}
			if tt.status == http.StatusForbidden {
				if got := h.counts("standard"); got != (counts{}) || h.calls.Calls() != 0 {
					t.Errorf("a refused request changed the database (%+v) or charged (%d)", got, h.calls.Calls())
				}
			}
		})
	}
}

// TestGoldenPages compares the key pages with testdata/*.golden; run with
// -update to rewrite them. Random keys and ids are replaced by placeholders.
func TestGoldenPages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		page func(t *testing.T, h *harness) (body []byte, randoms map[string]string)
	}{
		{"status", func(t *testing.T, h *harness) ([]byte, map[string]string) {
			id := h.register(mustJSON(t, validRequest()))
			res := h.get("/registrations/" + id)
			if res.status != http.StatusOK {
				t.Fatalf("got %v", res)
			}
			return res.body, map[string]string{id: "REGISTRATION-ID"}
		}},
		{"not_found", func(t *testing.T, h *harness) ([]byte, map[string]string) {
			return h.get("/registrations/unknown").body, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			body, randoms := tt.page(t, h)
			got := string(body)
			for random, placeholder := range randoms {
				got = strings.ReplaceAll(got, random, placeholder)
			}
			checkGolden(t, filepath.Join("testdata", tt.name+".golden"), []byte(got))
		})
	}
}

var goldenMu sync.Mutex

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		goldenMu.Lock()
		defer goldenMu.Unlock()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the page (run go test -update if the change is intended)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Answers for the back office test's fixed registrar, which the form asks
// as well: every seat free, no earlier registration.
func (f fixedRegistrar) Availability(context.Context) (map[string]registration.Availability, error) {
	return nil, nil
}

func (f fixedRegistrar) RecentDuplicate(context.Context, string, string) (registration.Registration, bool, error) {
	return registration.Registration{}, false, nil
}

// showingEvent is a Registrar whose pages show ev, a changed copy of the
// event it sells (the same tickets): trust fields, dates, sales window.
type showingEvent struct {
	Registrar
	ev *event.Event
}

func (s showingEvent) Event() *event.Event { return s.ev }

// trustedEvent is the harness's event with everything a seller tells.
func trustedEvent(ev *event.Event) *event.Event {
	c := *ev
	c.Description = "Two days of talks about testing.\nWorkshops on the second day."
	c.EndsAt = c.StartsAt.Add(33 * time.Hour)
	c.Organiser = event.Organiser{Name: "TestConf e.V.", Email: "hello@testconf.example", URL: "https://www.testconf.example/about"}
	c.TermsURL = "https://testconf.example/terms"
	c.PrivacyURL = "https://testconf.example/privacy"
	c.RefundPolicy = "Full refund until 10 May 2027."
	return &c
}

// serve returns the harness served by a handler of its own, built from the
// harness's service with the form showing ev (nil: the harness's event)
// and deps changed by change (nil: as they are).
func (h *harness) serve(ev *event.Event, change func(*Deps)) *harness {
	h.t.Helper()
	var reg Registrar = h.svc
	if ev != nil {
		reg = showingEvent{Registrar: h.svc, ev: ev}
	}
	d := Deps{Registrar: reg, Ready: h.db.Ready, Log: slog.New(slog.NewTextHandler(h.logs, nil)), BaseURL: testBaseURL}
	if change != nil {
		change(&d)
	}
	handler, err := Handler(d)
	if err != nil {
		h.t.Fatalf("web handler: %v", err)
	}
	c := *h
	c.srv = httptest.NewServer(handler)
	h.t.Cleanup(c.srv.Close)
	return &c
}

// formButton is the form's submit button and its words.
var formButton = regexp.MustCompile(`<button type="submit" class="pay">([^<]*)</button>`)

func buttonText(t *testing.T, page []byte) string {
	t.Helper()
	m := formButton.FindSubmatch(page)
	if m == nil {
		t.Fatalf("the page has no submit button:\n%s", page)
	}
	return html.UnescapeString(string(m[1]))
}

// TestFormInputs checks how each input asks for what it wants: numeric
// keyboards and autocomplete for the card, an expiry typed as on the card,
// and the marks the form's script finds the secret inputs by.
func TestFormInputs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	in := inputs(h.get("/").body)
	for name, want := range map[string]map[string]string{
		"billing.card.number": {"type": "text", "inputmode": "numeric", "autocomplete": "cc-number", "data-secret": "true"},
		"billing.card.cvc":    {"type": "text", "inputmode": "numeric", "autocomplete": "cc-csc", "data-secret": "true"},
		"billing.card.expiry": {"type": "text", "inputmode": "numeric", "autocomplete": "cc-exp", "placeholder": "MM / YY"},
		"billing.card.name":   {"type": "text", "autocomplete": "cc-name"},
		"attendee.email":      {"type": "email", "autocomplete": "email"},
	} {
		for attr, v := range want {
			if got := in[name][attr]; got != v {
				t.Errorf("input %s: %s=%q, want %q", name, attr, got, v)
			}
		}
	}
	for name, attrs := range in {
		if attrs["data-secret"] != "" && !secretFields[name] {
			t.Errorf("input %s is marked secret but is echoed back", name)
		}
	}
}

// TestFormExpiry registers with the expiry written each way people write
// it, and asks for MM / YY when it cannot be read.
func TestFormExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	for i, expiry := range []string{"12/30", "12 / 30", "1230", "12/2030", "2030-12", " 8/31 "} {
		f := validForm()
		f.Set("submission_key", h.fetchKey())
		f.Set("attendee.email", fmt.Sprintf("ada.%d@example.org", i))
		f.Set("billing.card.expiry", expiry)
		if res := h.postForm(f); res.status != http.StatusSeeOther {
			t.Errorf("expiry %q: got %v, want 303", expiry, res)
		}
	}
	for _, expiry := range []string{"", "December", "123"} {
		f := validForm()
		f.Set("submission_key", h.fetchKey())
		f.Set("billing.card.expiry", expiry)
		res := h.postForm(f)
		if res.status != http.StatusUnprocessableEntity {
			t.Errorf("expiry %q: got %v, want 422", expiry, res)
			continue
		}
		if !bytes.Contains(res.body, []byte(`<p class="err" id="billing.card.expiry-error">`)) || !bytes.Contains(res.body, []byte("MM / YY")) {
			t.Errorf("expiry %q: the page does not ask for MM / YY", expiry)
		}
	}
	if c, _ := h.proc.Charges(); c != 6 {
		t.Errorf("charges: %d, want 6", c)
	}
}

// TestFormTickets: prices for people, the last seats counted, a sold-out
// ticket offered but disabled and never chosen, and the button naming the
// price of the chosen ticket.
func TestFormTickets(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{capacity: 2})
	page := h.get("/").body
	in := inputs(page)
	if !bytes.Contains(page, []byte(`<span class="name">Standard <span class="note">Only 2 left</span></span>`)) {
		t.Error("the standard ticket does not say only 2 are left")
	}
	if !bytes.Contains(page, []byte(`<span class="name">Last seat <span class="note">Only 1 left</span></span>`)) {
		t.Error("the last seat does not say it is the last")
	}
	if bytes.Contains(page, []byte(`Student <span class="note">`)) {
		t.Error("the student ticket, with every seat free, has a note")
	}
	if in["ticket=standard"]["checked"] == "" || buttonText(t, page) != "Pay €149.00" {
		t.Errorf("with the first ticket available: checked %q, button %q", in["ticket=standard"]["checked"], buttonText(t, page))
	}
	if in["ticket=community"]["data-free"] != "true" || in["ticket=student"]["data-pay"] != "Pay €49.00" ||
		in["ticket=community"]["data-pay"] != "Register for free" {
		t.Errorf("the radios do not carry what the script shows: %v %v", in["ticket=community"], in["ticket=student"])
	}

	// Both standard seats and the last seat sold: those are disabled, and
	// the first ticket that can be had is chosen.
	for i, ticket := range []string{"standard", "standard", "last-seat"} {
		h.register(mustJSON(t, with(with(validRequest(), "ticket", ticket), "attendee.email", fmt.Sprintf("a%d@example.org", i))))
	}
	page = h.get("/").body
	in = inputs(page)
	for _, id := range []string{"standard", "last-seat"} {
		if r := in["ticket="+id]; r["disabled"] != "true" || r["checked"] != "" {
			t.Errorf("sold-out ticket %s: disabled %q, checked %q", id, r["disabled"], r["checked"])
		}
	}
	if in["ticket=student"]["checked"] != "true" {
		t.Error("the first available ticket (student) is not chosen")
	}
	if n := bytes.Count(page, []byte(`<span class="note gone">Sold out</span>`)); n != 2 {
		t.Errorf("%d tickets say sold out, want 2", n)
	}
	if got := buttonText(t, page); got != "Pay €49.00" {
		t.Errorf("button: %q, want Pay €49.00", got)
	}

	// A form sent for a sold-out ticket says so and offers another.
	f := validForm()
	f.Set("submission_key", h.fetchKey())
	f.Set("attendee.email", "late@example.org")
	res := h.postForm(f)
	if res.status != http.StatusConflict || !bytes.Contains(res.body, []byte("The Standard ticket is sold out.")) {
		t.Fatalf("a sold-out ticket: got %v, want 409 saying so", res)
	}
	if in := inputs(res.body); in["ticket=standard"]["checked"] != "" || in["ticket=student"]["checked"] != "true" {
		t.Error("after a sold-out answer the sold-out ticket is still chosen")
	}
	if in := inputs(res.body); in["attendee.email"]["value"] != "late@example.org" {
		t.Error("after a sold-out answer the email is lost")
	}
}

// TestFormSeatsHeld: a ticket whose seats are only held by payments in
// progress is disabled for now, and offered again once they fail.
func TestFormSeatsHeld(t *testing.T) {
	t.Parallel()
	var blocker *blockingProcessor
	h := newHarness(t, harnessOptions{wrapProcessor: func(p payment.Processor) payment.Processor {
		blocker = newBlockingProcessor(p)
		return blocker
	}})
	body := with(with(validRequest(), "ticket", "last-seat"), "billing.card.number", payment.TestCardDeclined)
	paying := h.sendAsync(h.newRequest(http.MethodPost, "/api/registrations", "application/json", mustJSON(t, body)))
	wait(t, "the charge", blocker.entered)
	page := h.get("/").body
	if r := inputs(page)["ticket=last-seat"]; r["disabled"] != "true" || !bytes.Contains(page, []byte("Sold out for now")) {
		t.Errorf("a ticket held by a payment in progress: disabled %q; page says sold out for now: %v", r["disabled"], bytes.Contains(page, []byte("Sold out for now")))
	}
	close(blocker.release)
	if res := wait(t, "the declined payment", paying); res.status != http.StatusPaymentRequired {
		t.Fatalf("declined payment: %v", res)
	}
	if r := inputs(h.get("/").body)["ticket=last-seat"]; r["disabled"] != "" {
		t.Error("the seat released by a declined payment is not offered again")
	}
}

// TestFormAllSoldOut: with no seat left anywhere there is nothing to fill
// in; the page says so and shows what there was.
func TestFormAllSoldOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{capacity: 1})
	ev := *h.event
	ev.Tickets = h.event.Tickets[:1]
	h = h.serve(&ev, nil)
	h.register(mustJSON(t, validRequest()))
	page := h.get("/").body
	if !bytes.Contains(page, []byte(`<h2 id="closed-h">Sold out</h2>`)) || bytes.Contains(page, []byte("<form")) {
		t.Errorf("with every seat sold the page is not a sold-out notice:\n%s", page)
	}
	// Every seat paid: nothing will come back.
	if !bytes.Contains(page, []byte("<p>Every ticket is taken.</p>")) {
		t.Error("a final sell-out is not told as final")
	}
}

// TestFormFreeTicket: the button says so, and the server takes nothing of
// the payment section, even filled in with nonsense.
func TestFormFreeTicket(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	f := validForm()
	f.Set("ticket", "community")
	f.Set("attendee.email", "ada@")
	f.Set("submission_key", h.fetchKey())
	res := h.postForm(f)
	if res.status != http.StatusUnprocessableEntity {
		t.Fatalf("got %v, want 422", res)
	}
	if got := buttonText(t, res.body); got != "Register for free" {
		t.Errorf("button with the free ticket chosen: %q", got)
	}
	if !bytes.Contains(res.body, []byte(`<p class="no-payment">No payment needed: this ticket is free.</p>`)) {
		t.Error("the page has no word for a free ticket's payment section")
	}
	for _, f := range []string{"billing.card.number", "billing.card.expiry", "billing.address.country"} {
		if inputs(res.body)[f]["aria-invalid"] != "" {
			t.Errorf("input %s marked invalid for a free ticket", f)
		}
	}

	f.Set("attendee.email", "ada@example.org")
	f.Set("billing.card.number", "1234")
	f.Set("billing.card.expiry", "soon")
	f.Set("billing.address.country", "Neverland")
	res = h.postForm(f)
	m := locationPattern.FindStringSubmatch(res.header.Get("Location"))
	if res.status != http.StatusSeeOther || m == nil {
		t.Fatalf("free ticket with a filled-in payment section: got %v, want 303", res)
	}
	reg, err := h.store.Registration(context.Background(), m[1])
	if err != nil {
		t.Fatal(err)
	}
	if reg.Amount != 0 || reg.Billing != (payment.BillingAddress{}) || reg.Payment.Provider != "" {
		t.Errorf("free registration kept payment details: amount %d, billing %+v, payment %+v", reg.Amount, reg.Billing, reg.Payment)
	}
	if h.calls.Calls() != 0 {
		t.Errorf("%d charges for a free ticket", h.calls.Calls())
	}
}

// TestFormDuplicate: the same email registering the same paid ticket again
// within a day (the Back button, a second tab) is not charged until the
// attendee says so, on the form only.
func TestFormDuplicate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	f := validForm()
	f.Set("submission_key", h.fetchKey())
	res := h.postForm(f)
	m := locationPattern.FindStringSubmatch(res.header.Get("Location"))
	if res.status != http.StatusSeeOther || m == nil {
		t.Fatalf("first registration: %v", res)
	}
	first := m[1]

	// A fresh form (what Back shows), the address typed in other case.
	page2 := h.fetchKey()
	f.Set("submission_key", page2)
	f.Set("attendee.email", "  ADA@Example.ORG ")
	res = h.postForm(f)
	if res.status != http.StatusConflict {
		t.Fatalf("second registration: got %v, want 409 asking first", res)
	}
	for _, want := range []string{
		"You already have a Standard ticket",
		`<a class="go" href="/registrations/` + first + `">See that registration</a>`,
		"Nothing was charged this time.",
		"Yes, register and pay again",
	} {
		if !bytes.Contains(res.body, []byte(want)) {
			t.Errorf("the notice lacks %q", want)
		}
	}
	in := inputs(res.body)
	if c := in["confirm_duplicate"]; c["type"] != "checkbox" || c["value"] != first || c["checked"] != "" {
		t.Errorf("the confirmation: %v, want an unticked checkbox tied to %s", c, first)
	}
	if in["billing.card.number"]["value"] != "" || in["attendee.email"]["value"] != "  ADA@Example.ORG " {
		t.Errorf("the notice's form: card %q, email %q", in["billing.card.number"]["value"], in["attendee.email"]["value"])
	}
	page3 := submissionKey(t, res.body)
	if page3 == page2 {
		t.Error("the notice's form keeps the key; a yes would replay")
	}
	if got := h.counts("standard"); got.Registrations != 1 || h.calls.Calls() != 1 {
		t.Fatalf("the duplicate was registered or charged: %+v, %d charges", got, h.calls.Calls())
	}

	// A confirmation tied to another registration is no confirmation.
	f.Set("submission_key", page3)
	f.Set("confirm_duplicate", strings.Repeat("a", 32))
	if res := h.postForm(f); res.status != http.StatusConflict || h.calls.Calls() != 1 {
		t.Errorf("confirmed for another registration: got %d, %d charges; want 409 and no charge", res.status, h.calls.Calls())
	}

	// Said yes: a second registration, charged.
	f.Set("confirm_duplicate", first)
	res = h.postForm(f)
	m = locationPattern.FindStringSubmatch(res.header.Get("Location"))
	if res.status != http.StatusSeeOther || m == nil || m[1] == first {
		t.Fatalf("confirmed: got %v, want 303 to a new registration", res)
	}
	if c, _ := h.proc.Charges(); c != 2 {
		t.Errorf("charges after the yes: %d, want 2", c)
	}

	// The next one asks about the newest registration.
	f.Set("submission_key", h.fetchKey())
	f.Del("confirm_duplicate")
	res = h.postForm(f)
	if res.status != http.StatusConflict || inputs(res.body)["confirm_duplicate"]["value"] != m[1] {
		t.Errorf("third: got %d, confirmation for %q; want 409 for %s", res.status, inputs(res.body)["confirm_duplicate"]["value"], m[1])
	}

	// Another ticket is no duplicate; nor is anything through the API.
	f.Set("submission_key", h.fetchKey())
	f.Set("ticket", "student")
	if res := h.postForm(f); res.status != http.StatusSeeOther {
		t.Errorf("another ticket: got %v, want 303", res)
	}
	h.register(mustJSON(t, validRequest()))
	if c, _ := h.proc.Charges(); c != 4 {
		t.Errorf("charges: %d, want 4", c)
	}
}

// TestFormTrust: who sells, the terms, privacy and refunds, the event's
// description and dates, and who processes card payments, named by the
// configuration.
func TestFormTrust(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	for _, tt := range []struct {
		processor, want string
	}{
		{"paypal", "Card payments are processed by PayPal."},
		{"test", "Card payments are processed by the built-in test processor — no real money is taken."},
		{"", ""},
	} {
		page := html.UnescapeString(string(h.serve(trustedEvent(h.event), func(d *Deps) { d.PaymentProcessor = tt.processor }).get("/").body))
		for _, want := range []string{
			`Tickets are sold by <strong>TestConf e.V.</strong> · <a href="https://www.testconf.example/about">testconf.example</a> · <a href="mailto:hello@testconf.example">hello@testconf.example</a>`,
			`<a href="https://testconf.example/terms" target="_blank" rel="noopener">terms of sale</a>`,
			`<a href="https://testconf.example/privacy" target="_blank" rel="noopener">privacy notice</a>`,
			"<strong>Refunds.</strong> Full refund until 10 May 2027.",
			"Two days of talks about testing.\nWorkshops on the second day.",
			"Thu 10 June 2027, 09:00 – Fri 11 June 2027, 18:00 UTC+02:00",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("processor %q: the form lacks %q", tt.processor, want)
			}
		}
		if tt.want == "" && strings.Contains(page, "processed by") {
			t.Errorf("with no processor named the form still names one")
		}
		if tt.want != "" && !strings.Contains(page, tt.want) {
			t.Errorf("processor %q: the form does not say %q", tt.processor, tt.want)
		}
	}
	// Without trust fields nothing empty is shown.
	page := string(h.get("/").body)
	for _, s := range []string{"Tickets are sold by", "terms of sale", "Refunds.", `class="desc"`} {
		if strings.Contains(page, s) {
			t.Errorf("an event without trust fields shows %q", s)
		}
	}
}

// TestFormSales: before sales open the form says when they open and takes
// nothing; after they close, or once the event started, it says so.
func TestFormSales(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	cet := time.FixedZone("", 3600)
	notYet := trustedEvent(h.event)
	notYet.StartsAt = time.Date(2099, 6, 10, 9, 0, 0, 0, time.FixedZone("", 7200))
	notYet.EndsAt = time.Time{}
	notYet.SalesStart = time.Date(2099, 3, 1, 10, 0, 0, 0, cet)
	closed := trustedEvent(h.event)
	closed.SalesEnd = time.Date(2020, 1, 31, 23, 59, 0, 0, cet)
	started := trustedEvent(h.event)
	started.StartsAt = time.Date(2020, 6, 10, 9, 0, 0, 0, time.UTC)
	started.EndsAt = time.Time{}
	open := trustedEvent(h.event)
	open.SalesEnd = time.Date(2027, 6, 1, 0, 0, 0, 0, time.FixedZone("", 7200))
	for _, tt := range []struct {
		name string
		ev   *event.Event
		want []string
		form bool
	}{
		{"not yet", notYet, []string{"Tickets are not on sale yet", "Ticket sales open on Sun 1 March 2099, 11:00 UTC+02:00.", "€149.00", "Tickets are sold by"}, false},
		{"closed", closed, []string{"Ticket sales have closed", "Ticket sales closed on Sat 1 February 2020, 00:59 UTC+02:00."}, false},
		{"started", started, []string{"Ticket sales have closed", "the event has started"}, false},
		{"open until", open, []string{"On sale until Tue 1 June 2027, 00:00 UTC+02:00."}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			page := []byte(html.UnescapeString(string(h.forTest(t).serve(tt.ev, nil).get("/").body)))
			for _, want := range tt.want {
				if !bytes.Contains(page, []byte(want)) {
					t.Errorf("the page lacks %q", want)
				}
			}
			if got := bytes.Contains(page, []byte(`name="attendee.email"`)); got != tt.form {
				t.Errorf("form fields shown: %v, want %v", got, tt.form)
			}
		})
	}
}

// TestFormRateLimited: refused for its rate, the form keeps everything
// typed but the card number and security code, and its key, and says how
// long to wait.
func TestFormRateLimited(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{rateLimit: 1})
	key := h.fetchKey()
	f := validForm()
	f.Set("attendee.email", "ada@") // refused by validation: nothing charged
	f.Set("submission_key", key)
	if res := h.postForm(f); res.status != http.StatusUnprocessableEntity {
		t.Fatalf("first: %v", res)
	}
	f.Set("attendee.email", "ada@example.org")
	res := h.postForm(f)
	if res.status != http.StatusTooManyRequests {
		t.Fatalf("second: got %v, want 429", res)
	}
	if !regexp.MustCompile(`wait (1 second|[0-9]+ seconds) and try again`).Match(res.body) ||
		!bytes.Contains(res.body, []byte("wait "+res.header.Get("Retry-After")+" seconds")) {
		t.Errorf("the page does not say how long to wait (Retry-After %s)", res.header.Get("Retry-After"))
	}
	in := inputs(res.body)
	for name, v := range f {
		switch {
		case name == "submission_key" || name == "newsletter" || name == "ticket":
		case secretFields[name]:
			if in[name]["value"] != "" {
				t.Errorf("secret input %s kept", name)
			}
		case in[name]["value"] != v[0]:
			t.Errorf("input %s: %q, want %q", name, in[name]["value"], v[0])
		}
	}
	if in["newsletter"]["checked"] != "true" || in["ticket=standard"]["checked"] != "true" {
		t.Error("the newsletter tick or the ticket was lost")
	}
	if got := submissionKey(t, res.body); got != key {
		t.Errorf("key: %q, want the unused %q", got, key)
	}
	for _, secret := range []string{"4111 1111 1111 1111", "4111111111111111", `value="731"`} {
		if bytes.Contains(res.body, []byte(secret)) {
			t.Errorf("the page holds %q", secret)
		}
	}
	if h.calls.Calls() != 0 {
		t.Error("charged")
	}
}

func TestSeconds(t *testing.T) {
	for n, want := range map[int]string{1: "1 second", 2: "2 seconds", 60: "60 seconds"} {
		if got := seconds(n); got != want {
			t.Errorf("seconds(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestEventDates(t *testing.T) {
	cest := time.FixedZone("", 2*3600)
	named := time.FixedZone("CEST", 2*3600)
	start := time.Date(2026, 6, 12, 9, 0, 0, 0, cest)
	for _, tt := range []struct {
		start, end time.Time
		want       string
	}{
		{start, time.Time{}, "Fri 12 June 2026, 09:00 UTC+02:00"},
		{start, start.Add(9 * time.Hour), "Fri 12 June 2026, 09:00–18:00 UTC+02:00"},
		{start, start.Add(33 * time.Hour), "Fri 12 June 2026, 09:00 – Sat 13 June 2026, 18:00 UTC+02:00"},
		{start.In(named), start.Add(time.Hour), "Fri 12 June 2026, 09:00–10:00 CEST"},
		{start.UTC(), time.Time{}, "Fri 12 June 2026, 07:00 UTC"},
		{time.Date(2026, 10, 24, 9, 0, 0, 0, time.FixedZone("", -4*3600-1800)), time.Time{}, "Sat 24 October 2026, 09:00 UTC-04:30"},
	} {
		ev := &event.Event{StartsAt: tt.start, EndsAt: tt.end}
		if got := eventDates(ev); got != tt.want {
			t.Errorf("eventDates(%v, %v) = %q, want %q", tt.start, tt.end, got, tt.want)
		}
	}
	// A time read with an offset that matches the server's zone carries
	// the server's abbreviation: not used, so every server says the same.
	if local := time.Date(2026, 6, 12, 9, 0, 0, 0, time.Local); !strings.Contains(when(local), "UTC") {
		t.Errorf("when(%v) = %q, want the offset from UTC", local, when(local))
	}
}

// TestFormScript: the form loads its script from this origin, which the
// policy allows, and no inline script.
func TestFormScript(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	res := h.get("/")
	m := regexp.MustCompile(`<script src="(/static/form\.js\?v=[0-9a-f]+)" defer></script>`).FindSubmatch(res.body)
	if m == nil || bytes.Count(res.body, []byte("<script")) != 1 {
		t.Fatalf("the form does not load its one script from /static/form.js:\n%s", res.body)
	}
	csp := res.header.Get("Content-Security-Policy")
	if !slices.Contains(strings.Split(csp, "; "), "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q does not allow exactly this origin's scripts", csp)
	}
	js := h.get(string(m[1]))
	if js.status != http.StatusOK || !strings.HasPrefix(js.header.Get("Content-Type"), "text/javascript") ||
		!bytes.Contains(js.body, []byte(`"pageshow"`)) {
		t.Errorf("GET %s: %d %q", m[1], js.status, js.header.Get("Content-Type"))
	}
}

// TestFormGoldenPages compares the form's pages with testdata/*.golden;
// run with -update to rewrite them. Random keys and ids are replaced by
// placeholders.
func TestFormGoldenPages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		page func(t *testing.T, h *harness) (body []byte, randoms map[string]string)
	}{
		{"form", func(t *testing.T, h *harness) ([]byte, map[string]string) {
			h.register(mustJSON(t, with(validRequest(), "ticket", "last-seat")))
			res := h.get("/")
			return res.body, map[string]string{submissionKey(t, res.body): "SUBMISSION-KEY"}
		}},
		{"form_errors", func(t *testing.T, h *harness) ([]byte, map[string]string) {
			key := h.fetchKey()
			f := validForm()
			f.Set("submission_key", key)
			f.Set("attendee.email", "ada@")
			f.Set("attendee.first_name", `<script>alert("x")</script>`)
			f.Set("billing.card.number", "4111 1111 1111 1112")
			res := h.postForm(f)
			if res.status != http.StatusUnprocessableEntity {
				t.Fatalf("got %v, want 422", res)
			}
			return res.body, map[string]string{key: "SUBMISSION-KEY"}
		}},
		{"form_duplicate", func(t *testing.T, h *harness) ([]byte, map[string]string) {
			f := validForm()
			f.Set("submission_key", h.fetchKey())
			first := h.postForm(f)
			m := locationPattern.FindStringSubmatch(first.header.Get("Location"))
			if m == nil {
				t.Fatalf("first: %v", first)
			}
			reg, err := h.store.Registration(context.Background(), m[1])
			if err != nil {
				t.Fatal(err)
			}
			f.Set("submission_key", h.fetchKey())
			res := h.postForm(f)
			if res.status != http.StatusConflict {
				t.Fatalf("got %v, want 409", res)
			}
			return res.body, map[string]string{submissionKey(t, res.body): "SUBMISSION-KEY", m[1]: "REGISTRATION-ID",
				strings.ReplaceAll(when(inEventZone(h.event, reg.CreatedAt)), "+", "&#43;"): "CREATED-AT"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			h = h.serve(trustedEvent(h.event), func(d *Deps) { d.PaymentProcessor = "test" })
			body, randoms := tt.page(t, h)
			got := string(body)
			for random, placeholder := range randoms {
				got = strings.ReplaceAll(got, random, placeholder)
			}
			got = regexp.MustCompile(`form\.js\?v=[0-9a-f]+`).ReplaceAllString(got, "form.js?v=VERSION")
			checkGolden(t, filepath.Join("testdata", tt.name+".golden"), []byte(got))
		})
	}
}
