package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

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
		for _, flag := range []string{"checked", "required"} {
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
		if !strings.Contains(page, tk.Name+" — ") {
			t.Errorf("ticket %s is not shown by name", tk.Name)
		}
	}
	for _, s := range []string{"149.00 EUR", "49.00 EUR", "Community — free", "TestConf 2027", "Hall 1, Berlin"} {
		if !strings.Contains(page, s) {
			t.Errorf("the form does not show %q", s)
		}
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
		{"paid ticket without billing", func() url.Values {
			f := validForm()
			for k := range f {
				if strings.HasPrefix(k, "billing.") {
					f.Del(k)
				}
			}
			return f
		}(), nil, "Billing details are required for a paid ticket."},
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
	page := h.get("/registrations/" + id)
	if page.status != http.StatusOK {
		t.Fatalf("status page: %v", page)
	}
	for _, s := range []string{
		"Order saved", "Confirmation email sent", "Added to the mailing list",
		`<meta http-equiv="refresh"`, "Ada Lovelace · Standard · 149.00 EUR · card ending in 1111",
		`<span class="badge paid">paid</span>`,
	} {
		if !bytes.Contains(page.body, []byte(s)) {
			t.Errorf("status page lacks %q", s)
		}
	}
	if n := bytes.Count(page.body, []byte(`<span class="badge pending">pending</span>`)); n != 3 {
		t.Errorf("%d pending steps shown, want 3", n)
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
	// Submitting the same page again (back button, resubmit) lands on the same registration.
	again := h.postForm(f)
	if again.status != http.StatusSeeOther || again.header.Get("Location") != res.header.Get("Location") {
		t.Errorf("resubmitted: got %d %q, want 303 %q", again.status, again.header.Get("Location"), res.header.Get("Location"))
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
	if n := bytes.Count(page.body, []byte(`<span class="badge succeeded">succeeded</span>`)); n != 3 {
		t.Errorf("%d succeeded steps shown, want 3", n)
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
		{"form", func(t *testing.T, h *harness) ([]byte, map[string]string) {
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
