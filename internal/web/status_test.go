package web

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

// statusRegistrar serves the registrations a test made up; it answers
// nothing else.
type statusRegistrar struct {
	Registrar
	ev   *event.Event
	regs map[string]registration.Registration
}

func (f statusRegistrar) Registration(ctx context.Context, id string) (registration.Registration, error) {
	reg, ok := f.regs[id]
	if !ok {
		return registration.Registration{}, registration.ErrNotFound
	}
	return reg, nil
}

func (f statusRegistrar) Event() *event.Event { return f.ev }

// statusServer serves regs with the whole route table.
func statusServer(t *testing.T, regs ...registration.Registration) *httptest.Server {
	t.Helper()
	ev, err := event.Parse(fmt.Appendf(nil, testEventJSON, 100))
	if err != nil {
		t.Fatal(err)
	}
	f := statusRegistrar{ev: ev, regs: map[string]registration.Registration{}}
	for _, r := range regs {
		f.regs[r.ID] = r
	}
	h, err := Handler(Deps{Registrar: f, Ready: func(context.Context) error { return nil },
		Log: slog.New(slog.DiscardHandler), BaseURL: testBaseURL})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// statusFetch sends one request and reads the whole answer, without following
// redirects.
func statusFetch(t *testing.T, srv *httptest.Server, method, path string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c := *srv.Client() // a copy: the server's client is shared by parallel tests
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

var (
	textHidden  = regexp.MustCompile(`(?s)<head>.*?</head>|<script.*?</script>|<style.*?</style>`)
	textTags    = regexp.MustCompile(`<[^>]*>`)
	textSpaces  = regexp.MustCompile(`\s+`)
	metaRefresh = regexp.MustCompile(`<meta http-equiv="refresh"[^>]*>`)
	scriptTags  = regexp.MustCompile(`<script[^>]*>`)
	wordsBlock  = regexp.MustCompile(`(?s)<script type="application/json" id="status-words">(.*?)</script>`)
)

// visibleText is the text a person sees on a page: no head, scripts,
// styles or tags, entities decoded, spaces collapsed.
func visibleText(page []byte) string {
	s := textHidden.ReplaceAllString(string(page), " ")
	s = textTags.ReplaceAllString(s, " ")
	return strings.TrimSpace(textSpaces.ReplaceAllString(html.UnescapeString(s), " "))
}

const (
	liveID = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	newID  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	doneID = "cccccccccccccccccccccccccccccccc"
	freeID = "dddddddddddddddddddddddddddddddd"
	failID = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
	goneID = "ffffffffffffffffffffffffffffffff"
)

// statusFixture is a registration of the "standard" ticket paid by Visa,
// made at made, with the steps given as name=status.
func statusFixture(id string, st registration.Status, made time.Time, steps ...registration.Step) registration.Registration {
	return registration.Registration{
		ID: id, EventID: "testconf-2027", TicketID: "standard", Status: st,
		Amount: 14900, Currency: "EUR", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.org",
		Payment: payment.Charge{Provider: "test", Reference: "test_abc", Brand: "visa", Last4: "1111"},
		Steps:   steps, CreatedAt: made, UpdatedAt: made,
	}
}

func statusStep(name registration.StepName, st registration.StepStatus, attempts int, lastErr string) registration.Step {
	return registration.Step{Name: name, Status: st, Attempts: attempts, LastError: lastErr}
}

// statusFixtures are one registration in each state a status page shows.
func statusFixtures() []registration.Registration {
	long := time.Now().Add(-time.Hour)
	live := statusFixture(liveID, registration.StatusProcessing, long,
		statusStep(registration.StepSaveOrder, registration.StepSucceeded, 1, ""),
		statusStep(registration.StepSendConfirmation, registration.StepRetrying, 3, internalError),
		statusStep(registration.StepAddToMailingList, registration.StepSkipped, 0, ""))
	fresh := statusFixture(newID, registration.StatusPaid, time.Now().Add(-5*time.Second),
		statusStep(registration.StepSaveOrder, registration.StepPending, 0, ""),
		statusStep(registration.StepSendConfirmation, registration.StepPending, 0, ""),
		statusStep(registration.StepAddToMailingList, registration.StepPending, 0, ""))
	fresh.Newsletter = true
	done := statusFixture(doneID, registration.StatusCompleted, time.Now().Add(-5*time.Second),
		statusStep(registration.StepSaveOrder, registration.StepSucceeded, 1, ""),
		statusStep(registration.StepSendConfirmation, registration.StepSucceeded, 2, internalError),
		statusStep(registration.StepAddToMailingList, registration.StepSucceeded, 1, ""))
	done.Newsletter = true
	free := statusFixture(freeID, registration.StatusCompleted, long,
		statusStep(registration.StepSaveOrder, registration.StepSucceeded, 1, ""),
		statusStep(registration.StepSendConfirmation, registration.StepSucceeded, 1, ""),
		statusStep(registration.StepAddToMailingList, registration.StepSkipped, 0, ""))
	free.TicketID, free.Amount, free.Payment, free.Email = "community", 0, payment.Charge{}, "Émile@exämple.org"
	fail := statusFixture(failID, registration.StatusNeedsAttention, long,
		statusStep(registration.StepSaveOrder, registration.StepSucceeded, 1, ""),
		statusStep(registration.StepSendConfirmation, registration.StepFailed, 15, internalError),
		statusStep(registration.StepAddToMailingList, registration.StepSkipped, 0, ""))
	gone := statusFixture(goneID, registration.StatusCancelled, long,
		statusStep(registration.StepSaveOrder, registration.StepSucceeded, 1, ""),
		statusStep(registration.StepSendConfirmation, registration.StepRetrying, 3, internalError),
		statusStep(registration.StepAddToMailingList, registration.StepSkipped, 0, ""))
	gone.Refunded = 7450
	return []registration.Registration{live, fresh, done, free, fail, gone}
}

// TestStatusPageWords checks what each state's page says: words for
// people (amounts, card, a masked address), never the internal states or a
// step's error, and a refresh only while the registration is young and
// unfinished.
func TestStatusPageWords(t *testing.T) {
	t.Parallel()
	srv := statusServer(t, statusFixtures()...)
	tests := []struct {
		id      string
		want    []string
		notWant []string
		// refresh: the slow reload for browsers without JavaScript; live:
		// the refresh link and the script.
		refresh, live bool
	}{
		{liveID, []string{"You're in", "Your confirmation is on its way to a•••@example.org.",
			"Booking saved", "We're still sending your confirmation email — no need to do anything",
			"Refresh to see the latest", "€149.00 paid with Visa •••• 1111", "Standard", "Ada Lovelace"},
			[]string{"newsletter", "Newsletter"}, false, true},
		{newID, []string{"You're in", "Saving your booking", "Sending your confirmation email",
			"Signing you up for the newsletter", "Refresh to see the latest"}, nil, true, true},
		{doneID, []string{"You're registered", "Your confirmation was sent to a•••@example.org. See you at TestConf 2027!",
			"Booking saved", "Confirmation email sent", "Newsletter sign-up received", "€149.00 paid with Visa •••• 1111"},
			[]string{"Refresh", "updates by itself"}, false, false},
		{freeID, []string{"You're registered", "É•••@exämple.org", "Registered — free ticket", "Community"},
			[]string{"paid", "Paid", "€", "Visa"}, false, false},
		{failID, []string{"You're in — one step needs our attention", "the organisers have been told and will finish it",
			"Your confirmation email: the organisers will finish this"}, []string{"Refresh"}, false, false},
		{goneID, []string{"Your registration was cancelled", "the ticket is no longer valid",
			"Confirmation email not sent: the registration was cancelled", "€74.50 refunded to Visa •••• 1111"},
			[]string{"Refresh", "on its way"}, false, false},
	}
	// The subtests run one after the other, at once: a parallel one could
	// wait for the package's other tests past the fresh registration's
	// minute of refreshing.
	for _, tt := range tests {
		t.Run(tt.id[:1], func(t *testing.T) {
			res := statusFetch(t, srv, http.MethodGet, "/registrations/"+tt.id, nil)
			if res.status != http.StatusOK || !strings.HasPrefix(res.header.Get("Content-Type"), "text/html") {
				t.Fatalf("got %d %s, want 200 HTML", res.status, res.header.Get("Content-Type"))
			}
			text := visibleText(res.body)
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("the page does not say %q:\n%s", w, text)
				}
			}
			internal := []string{"pending", "running", "retrying", "succeeded", "failed", "skipped", "processing",
				"needs_attention", "completed", "attempt", "save_order", "send_confirmation", "add_to_mailing_list",
				"ada@example.org", "Émile@", "relay.internal", "sendgrid", "550", "EUR", "Status:"}
			for _, w := range append(internal, tt.notWant...) {
				if strings.Contains(text, w) {
					t.Errorf("the page says %q:\n%s", w, text)
				}
			}
			if strings.Contains(string(res.body), "ada@example.org") || strings.Contains(string(res.body), internalError) {
				t.Error("the page's source holds the whole email address or a step's internal error")
			}
			metas := metaRefresh.FindAllString(string(res.body), -1)
			switch {
			case tt.refresh && (len(metas) != 1 || !strings.Contains(string(res.body), `<noscript><meta http-equiv="refresh" content="10"></noscript>`)):
				t.Errorf("want one slow refresh for browsers without JavaScript, got %q", metas)
			case !tt.refresh && len(metas) != 0:
				t.Errorf("want no refresh, got %q", metas)
			}
			link := `<a href="/registrations/` + tt.id + `">Refresh</a>`
			scripts := scriptTags.FindAllString(string(res.body), -1)
			if tt.live != strings.Contains(string(res.body), link) {
				t.Errorf("refresh link shown: %v, want %v", !tt.live, tt.live)
			}
			if tt.live != (len(scripts) == 2) {
				t.Errorf("scripts %q; want the words and the script exactly while live (%v)", scripts, tt.live)
			}
		})
	}
}

// TestStatusPageScript checks the script's tag and its file: same origin,
// no inline code, a policy that allows exactly that, the right content
// type and a long cache only under the file's current version.
func TestStatusPageScript(t *testing.T) {
	t.Parallel()
	srv := statusServer(t, statusFixtures()...)
	res := statusFetch(t, srv, http.MethodGet, "/registrations/"+liveID, nil)
	csp := res.header.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	if directives["script-src"] != "'self'" || directives["connect-src"] != "'self'" || directives["default-src"] != "'none'" {
		t.Errorf("Content-Security-Policy %q: want default-src 'none', script-src 'self' and connect-src 'self' only", csp)
	}
	var src string
	for _, tag := range scriptTags.FindAllString(string(res.body), -1) {
		switch {
		case tag == `<script type="application/json" id="status-words">`:
		case strings.HasPrefix(tag, `<script src="/static/status.js?v=`) && strings.HasSuffix(tag, `" defer>`):
			src = html.UnescapeString(strings.TrimSuffix(strings.TrimPrefix(tag, `<script src="`), `" defer>`))
		default:
			t.Errorf("unexpected script tag %s: want data or a same-origin file only", tag)
		}
	}
	if src == "" {
		t.Fatalf("no status.js script tag in:\n%s", res.body)
	}
	if n := strings.Count(string(res.body), "<script"); n != 2 {
		t.Errorf("%d script elements, want the words and the file", n)
	}

	want, err := staticFS.ReadFile("static/status.js")
	if err != nil {
		t.Fatal(err)
	}
	js := statusFetch(t, srv, http.MethodGet, src, nil)
	if js.status != http.StatusOK || string(js.body) != string(want) {
		t.Fatalf("GET %s: %d, %d bytes; want 200 and status.js", src, js.status, len(js.body))
	}
	if got := js.header.Get("Content-Type"); got != "text/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	if got := js.header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
		t.Errorf("Cache-Control %q under the current version, want a year", got)
	}
	if js.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("the script is served without nosniff")
	}
	etag := js.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	old := statusFetch(t, srv, http.MethodGet, "/static/status.js?v=000000000000", nil)
	if old.status != http.StatusOK || old.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("under another version: %d, Cache-Control %q; want 200 and no-cache", old.status, old.header.Get("Cache-Control"))
	}
	if same := statusFetch(t, srv, http.MethodGet, "/static/status.js", http.Header{"If-None-Match": {etag}}); same.status != http.StatusNotModified || len(same.body) != 0 {
		t.Errorf("revalidated with its ETag: %d with %d bytes, want 304", same.status, len(same.body))
	}
	if missing := statusFetch(t, srv, http.MethodGet, "/static/nothing.js", nil); missing.status != http.StatusNotFound ||
		!strings.Contains(visibleText(missing.body), "Page not found") {
		t.Errorf("an unknown static file: %d %s, want the 404 page", missing.status, visibleText(missing.body))
	}
}

// TestStatusPageWordsForTheScript checks the words the page hands its
// script: the server's words for every state the registration may reach,
// and which states are final.
func TestStatusPageWordsForTheScript(t *testing.T) {
	t.Parallel()
	srv := statusServer(t, statusFixtures()...)
	res := statusFetch(t, srv, http.MethodGet, "/registrations/"+newID, nil)
	m := wordsBlock.FindSubmatch(res.body)
	if m == nil {
		t.Fatalf("no words for the script in:\n%s", res.body)
	}
	var words struct {
		Statuses map[string]struct{ Heading, Lead, Tone string }
		Steps    map[string]map[string]struct{ Text, State string }
		Final    []string
		Done     []string
		Updating string
	}
	if err := json.Unmarshal(m[1], &words); err != nil {
		t.Fatalf("the words are not JSON: %v\n%s", err, m[1])
	}
	if h := words.Statuses["completed"]; h.Heading != "You're registered" || h.Tone != "done" ||
		!strings.Contains(h.Lead, "a•••@example.org") {
		t.Errorf("completed: %+v", h)
	}
	if h := words.Statuses["needs_attention"]; h.Heading != "You're in — one step needs our attention" {
		t.Errorf("needs_attention: %+v", h)
	}
	if got := strings.Join(words.Final, ","); got != "completed,needs_attention,cancelled" {
		t.Errorf("final states %s", got)
	}
	if got := strings.Join(words.Done, ","); got != "succeeded,skipped" {
		t.Errorf("finished step states %s", got)
	}
	for name, want := range map[string]map[string]string{
		"save_order":          {"succeeded": "Booking saved", "stopped": "Booking not saved: the registration was cancelled"},
		"send_confirmation":   {"succeeded": "Confirmation email sent", "retrying": "We're still sending your confirmation email — no need to do anything", "failed": "Your confirmation email: the organisers will finish this"},
		"add_to_mailing_list": {"running": "Signing you up for the newsletter", "skipped": ""},
	} {
		for st, text := range want {
			if got := words.Steps[name][st].Text; got != text {
				t.Errorf("%s %s: %q, want %q", name, st, got, text)
			}
		}
	}
	if got := words.Steps["add_to_mailing_list"]["skipped"].State; got != "skipped" {
		t.Errorf("a skipped step's state is %q, want skipped (hidden)", got)
	}
	if words.Updating != "This page updates by itself." {
		t.Errorf("the words replacing the refresh link: %q", words.Updating)
	}
}

// TestStatusPageWordsCannotBreakOut: whatever an address holds, the words
// for the script stay data.
func TestStatusPageWordsCannotBreakOut(t *testing.T) {
	t.Parallel()
	const domain = `@x.org</script><script src="/static/status.js"></script><!--`
	reg := statusFixture(liveID, registration.StatusPaid, time.Now(),
		statusStep(registration.StepSendConfirmation, registration.StepPending, 0, ""))
	reg.Email = "a" + domain
	res := statusFetch(t, statusServer(t, reg), http.MethodGet, "/registrations/"+liveID, nil)
	if n := strings.Count(string(res.body), "<script"); n != 2 || strings.Contains(string(res.body), domain) {
		t.Fatalf("the address broke out of the words (%d script elements):\n%s", n, res.body)
	}
	m := wordsBlock.FindSubmatch(res.body)
	if m == nil {
		t.Fatalf("no words for the script in:\n%s", res.body)
	}
	var words struct {
		Statuses map[string]struct{ Lead string }
	}
	if err := json.Unmarshal(m[1], &words); err != nil {
		t.Fatal(err)
	}
	if got := words.Statuses["completed"].Lead; !strings.Contains(got, "a•••"+domain) {
		t.Errorf("the lead lost the address: %q", got)
	}
}

// TestStatusPageOfARealRegistration follows one registration through the
// pipeline: its page refreshes slowly and carries the script while young
// and unfinished, and neither once it completed.
func TestStatusPageOfARealRegistration(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{workers: true})
	id := h.register(mustJSON(t, with(validRequest(), "newsletter", true)))
	// The first answer may come before or after the pipeline finished: a
	// young page refreshes exactly when it is unfinished.
	first := h.get("/registrations/" + id)
	unfinished := !strings.Contains(visibleText(first.body), "You're registered")
	if got := len(metaRefresh.FindAll(first.body, -1)) == 1; got != unfinished {
		t.Errorf("unfinished %v, refreshes %v", unfinished, got)
	}
	waitFor(t, "the registration to complete", 60*time.Second, func() bool {
		return decodeObject(t, h.get("/api/registrations/"+id).body)["status"] == "completed"
	})
	page := h.get("/registrations/" + id)
	text := visibleText(page.body)
	for _, w := range []string{"You're registered", "Booking saved", "Confirmation email sent", "Newsletter sign-up received",
		"€149.00 paid with Visa •••• 1111"} {
		if !strings.Contains(text, w) {
			t.Errorf("the completed page does not say %q:\n%s", w, text)
		}
	}
	if metaRefresh.Match(page.body) || strings.Contains(string(page.body), "<script") {
		t.Errorf("a completed registration's page refreshes or polls:\n%s", page.body)
	}
}

// TestRouteErrorPages checks that a page route answers an unknown path or
// method with the site's page and ServeMux's status and Allow header, while
// the API keeps answering JSON.
func TestRouteErrorPages(t *testing.T) {
	t.Parallel()
	srv := statusServer(t, statusFixtures()...)
	tests := []struct {
		method, path string
		status       int
		allow        string
		want         string // in the page's text; "" for JSON
	}{
		{http.MethodGet, "/nowhere", http.StatusNotFound, "", "Page not found"},
		{http.MethodGet, "/registrations/" + liveID + "/more", http.StatusNotFound, "", "Page not found"},
		{http.MethodGet, "/registrations/unknown", http.StatusNotFound, "", "Registration not found"},
		{http.MethodPost, "/nowhere", http.StatusNotFound, "", "Page not found"},
		{http.MethodPost, "/", http.StatusMethodNotAllowed, "GET, HEAD", "This page can't be used that way"},
		{http.MethodPut, "/registrations/x", http.StatusMethodNotAllowed, "GET, HEAD", "takes GET, HEAD only"},
		{http.MethodDelete, "/register", http.StatusMethodNotAllowed, "GET, HEAD, POST", "sent a DELETE request"},
		{http.MethodPost, "/static/status.js", http.StatusMethodNotAllowed, "GET, HEAD", "This page can't be used that way"},
		{http.MethodGet, "/api/nowhere", http.StatusNotFound, "", ""},
		{http.MethodPut, "/api/registrations", http.StatusMethodNotAllowed, "POST", ""},
		{http.MethodDelete, "/api/registrations/" + liveID, http.StatusMethodNotAllowed, "GET, HEAD", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			t.Parallel()
			res := statusFetch(t, srv, tt.method, tt.path, nil)
			if res.status != tt.status || res.header.Get("Allow") != tt.allow {
				t.Fatalf("got %d Allow %q, want %d Allow %q: %s", res.status, res.header.Get("Allow"), tt.status, tt.allow, res.body)
			}
			if tt.want == "" {
				var e errorBody
				if err := json.Unmarshal(res.body, &e); err != nil || e.Error.Code == "" || res.header.Get("Content-Type") != "application/json" {
					t.Errorf("an API path answered %s %q, want the JSON error envelope", res.header.Get("Content-Type"), res.body)
				}
				return
			}
			text := visibleText(res.body)
			if res.header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(text, tt.want) ||
				!strings.Contains(string(res.body), "<title>") || !strings.Contains(text, "Register for TestConf 2027") {
				t.Errorf("want the site's page saying %q, got %s:\n%s", tt.want, res.header.Get("Content-Type"), res.body)
			}
			if res.header.Get("Content-Security-Policy") == "" {
				t.Error("the error page has no Content-Security-Policy")
			}
		})
	}
	if res := statusFetch(t, srv, http.MethodHead, "/nowhere", nil); res.status != http.StatusNotFound || len(res.body) != 0 {
		t.Errorf("HEAD of an unknown path: %d with %d bytes, want 404 and no body", res.status, len(res.body))
	}
	// A path to clean is still redirected, not refused.
	if res := statusFetch(t, srv, http.MethodGet, "/static/../nowhere", nil); res.status != http.StatusTemporaryRedirect ||
		res.header.Get("Location") != "/nowhere" {
		t.Errorf("GET /static/../nowhere: %d Location %q", res.status, res.header.Get("Location"))
	}
}

// TestRegisterRedirectsToTheForm: the form's POST address, opened as a
// link, leads to the form.
func TestRegisterRedirectsToTheForm(t *testing.T) {
	t.Parallel()
	srv := statusServer(t)
	res := statusFetch(t, srv, http.MethodGet, "/register", nil)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/" {
		t.Errorf("GET /register: %d Location %q, want 303 to /", res.status, res.header.Get("Location"))
	}
}

func TestMaskEmail(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ada@example.org":   "a•••@example.org",
		"Émile@exämple.org": "É•••@exämple.org",
		"a@b@example.org":   "a•••@example.org",
		"x@y":               "x•••@y",
		"@example.org":      "•••",
		"no address":        "•••",
		"":                  "•••",
	} {
		if got := maskEmail(in); got != want {
			t.Errorf("maskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStatusGoldenPages compares the status page in its main states, and
// the error pages, with testdata/*.golden; run with -update to rewrite
// them. The script's version is replaced by a placeholder.
func TestStatusGoldenPages(t *testing.T) {
	t.Parallel()
	srv := statusServer(t, statusFixtures()...)
	version := regexp.MustCompile(`status\.js\?v=[0-9a-f]+`)
	for name, path := range map[string]string{
		"status_live":      "/registrations/" + liveID,
		"status_free":      "/registrations/" + freeID,
		"status_attention": "/registrations/" + failID,
		"error_404":        "/nowhere",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body := version.ReplaceAll(statusFetch(t, srv, http.MethodGet, path, nil).body, []byte("status.js?v=VERSION"))
			checkGolden(t, filepath.Join("testdata", name+".golden"), body)
		})
	}
}
