package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/registrar/registrar/internal/providertest"
)

// browserPath finds Debian's chromium (or another Chrome) for the browser
// tests: REGISTRAR_TEST_CHROME, else the usual names on PATH.
func browserPath() string {
	if p := os.Getenv("REGISTRAR_TEST_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless browser of its own for one test, at the
// given window width, and returns its context; everything is closed when
// the test ends. Without a browser the test is skipped.
func newBrowser(t *testing.T, width int) context.Context {
	t.Helper()
	path := browserPath()
	if path == "" {
		t.Skip("skipping the browser tests: no chromium on PATH (apt-get install chromium, or set REGISTRAR_TEST_CHROME)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	// Headless chromium keeps windows at least 500 px wide: emulate the
	// viewport for a phone's width.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), 900)); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// fill types each value into the input named by its key.
func fill(values map[string]string) []chromedp.Action[chromedp.Void] {
	var ts []chromedp.Action[chromedp.Void]
	for name, v := range values {
		sel := chromedp.CSS(`[name="` + name + `"]`)
		ts = append(ts, chromedp.Clear(sel), chromedp.SendKeys(sel, v))
	}
	return ts
}

// registerInBrowser fills in and submits the public form as an attendee
// would, and returns the status page's URL once the browser is on it.
func registerInBrowser(t *testing.T, ctx context.Context, base, first, last, mail string) string {
	t.Helper()
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/"),
		chromedp.Click(chromedp.ID("ticket-standard")),
	}
	steps = append(steps, fill(map[string]string{
		"attendee.first_name":         first,
		"attendee.last_name":          last,
		"attendee.email":              mail,
		"billing.card.name":           first + " " + last,
		"billing.card.number":         "4111 1111 1111 1111",
		"billing.card.cvc":            "737",
		"billing.address.line1":       "12 St James's Square",
		"billing.address.postal_code": "SW1Y 4JH",
		"billing.address.city":        "London",
		"billing.address.country":     "GB",
	})...)
	steps = append(steps,
		chromedp.SetValue(chromedp.CSS(`[name="billing.card.expiry"]`), "2031-08"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`ul.steps`)),
	)
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("register %s in the browser: %v", mail, err)
	}
	statusURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(statusURL, "/registrations/") {
		t.Fatalf("after submitting the form the browser is on %s, want a status page", statusURL)
	}
	return statusURL
}

// waitText reloads url until the text of the element sel selects contains
// want.
func waitText(t *testing.T, ctx context.Context, url, sel, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got string
	for time.Now().Before(deadline) {
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		var err error
		if got, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel))); err != nil {
			t.Fatalf("read %s of %s: %v", sel, url, err)
		}
		if strings.Contains(got, want) {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("%s of %s is %q after %s, want it to contain %q", sel, url, got, within, want)
}

func TestBrowserAttendeeRegisters(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 390)
	srv := startRun(t, baseEnv(t.TempDir()))
	defer srv.stop(t)

	status := registerInBrowser(t, ctx, srv.url, "Ada", "Lovelace", "ada@example.org")
	waitText(t, ctx, status, "h1", "You're registered", 30*time.Second)
}

// The organiser's day in the back office, in a real browser against the
// whole process: log in, find an attendee by email, open the detail, export
// the list as CSV, refund half, cancel (the seat is on sale again), retry a
// step made to fail, log out; a wrong password is throttled.
func TestBrowserOrganiserBackOffice(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 1280)
	dir := t.TempDir()
	const owner, password = "owner@example.org", "correct horse battery staple"
	sendgrid := providertest.NewSendGrid(t, sgKey)
	e := baseEnv(dir)
	e["REGISTRAR_EVENT_FILE"] = eventFile(t, dir, 2, 10) // two standard seats
	e["REGISTRAR_ADMIN_EMAIL"] = owner
	e["REGISTRAR_ADMIN_PASSWORD"] = password
	e["REGISTRAR_EMAIL"] = "sendgrid"
	e["SENDGRID_API_KEY"] = sgKey
	e["SENDGRID_API_BASE"] = sendgrid.URL()
	srv := startRun(t, e)
	defer srv.stop(t)

	// Two attendees take both seats; SendGrid refuses the second one's
	// confirmation, so that registration needs attention.
	ada := registerInBrowser(t, ctx, srv.url, "Ada", "Lovelace", "ada@example.org")
	waitText(t, ctx, ada, "h1", "You're registered", 30*time.Second)
	sendgrid.Reject(http.StatusBadRequest, "The from address does not match a verified Sender Identity.")
	grace := registerInBrowser(t, ctx, srv.url, "Grace", "Hopper", "grace@example.org")
	waitText(t, ctx, grace, "h1", "needs our attention", 30*time.Second)
	sendgrid.Reject(0, "")
	if code, _, err := post(http.DefaultClient, srv.url, ticketBody(3, "standard", false), ""); err != nil || code != http.StatusConflict {
		t.Fatalf("a third standard registration: %d, %v; want 409 sold out", code, err)
	}

	// Log in: the back office sends a visitor without a session to the login.
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.url+"/admin/registrations"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("email"), owner),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`form[action="/admin/login"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("q")),
	), "log in")

	// Find Ada by email and open her registration.
	must(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("q"), "ADA@example.org"),
		chromedp.Submit(chromedp.ID("q")),
		waitURL("q=ADA%40example.org"),
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/admin/registrations/"]`)),
	), "search by email")
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('tbody tr').length`))
	must(t, err, "count rows")
	if rows != 1 {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("searching for Ada's email lists %d registrations, want 1:\n%s", rows, html)
	}

	// Export exactly this list.
	csvPath := download(t, ctx, chromedp.Click(chromedp.CSS(`a[href^="/admin/export/registrations.csv"]`)), "export")
	records := readCSV(t, csvPath)
	if len(records) != 2 {
		t.Fatalf("the export has %d lines, want a header and Ada's row:\n%v", len(records), records)
	}
	col := map[string]int{}
	for i, h := range records[0] {
		col[h] = i
	}
	row := records[1]
	for name, want := range map[string]string{"email": "ada@example.org", "first_name": "Ada", "last_name": "Lovelace",
		"ticket": "standard", "amount": "149.00", "currency": "EUR", "card_last4": "1111", "status": "completed"} {
		i, ok := col[name]
		if !ok {
			t.Fatalf("the export has no %s column: %v", name, records[0])
		}
		if row[i] != want {
			t.Errorf("export %s = %q, want %q", name, row[i], want)
		}
	}

	// Refund half of Ada's ticket.
	must(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tbody a[href^="/admin/registrations/"]`)),
		chromedp.WaitVisible(chromedp.ID("att-h")),
	), "open the detail")
	adaAdmin, err := chromedp.Run(ctx, chromedp.Location())
	must(t, err, "detail address")
	must(t, chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('form[action$="/refund"]').closest('details').open = true`),
		chromedp.SendKeys(chromedp.ID("refund-amount"), "74.50"),
		chromedp.SendKeys(chromedp.ID("refund-reason"), "Half price for a speaker"),
		press(`form[action$="/refund"] button[type=submit]`),
		chromedp.WaitVisible(chromedp.CSS(`.banner`)),
	), "refund half")
	waitAPI(t, srv.url, idOf(ada), func(s map[string]any) bool { return s["refunded"] == "74.50" }, 30*time.Second, "refunded 74.50")
	waitText(t, ctx, adaAdmin, "main", "succeeded", 10*time.Second)

	// Cancel Ada's registration: her seat goes back on sale.
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(adaAdmin),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('form[action$="/cancel"]').closest('details').open = true`),
		press("#cancel-none"),
		press("#cancel-notify"),
		press(`form[action$="/cancel"] button[type=submit]`),
	), "cancel")
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`.banner`))), "cancelled")
	waitText(t, ctx, ada, "h1", "cancelled", 10*time.Second)
	if code, _, err := post(http.DefaultClient, srv.url, ticketBody(4, "standard", false), ""); err != nil || code != http.StatusAccepted {
		t.Fatalf("a standard registration after the cancellation: %d, %v; want 202 (the seat is on sale again)", code, err)
	}

	// Retry Grace's failed step: SendGrid accepts again, so she completes.
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.url+"/admin/registrations?status=needs_attention"),
		chromedp.Click(chromedp.CSS(`tbody a[href^="/admin/registrations/"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/retry"]`)),
		press(`form[action$="/retry"] button[type=submit]`),
		chromedp.WaitVisible(chromedp.CSS(`.banner`)),
	), "retry")
	waitText(t, ctx, grace, "h1", "You're registered", 30*time.Second)

	// Log out: the back office asks for a login again.
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.url+"/admin"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('details.account').open = true`),
		chromedp.Click(chromedp.CSS(`form[action="/admin/logout"] button`)),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.Navigate(srv.url+"/admin"),
		chromedp.WaitVisible(chromedp.ID("password")),
	), "log out")

	// Wrong passwords: after a few, the login is refused for a while, even
	// with the right password.
	var msg string
	for i := 0; i < 6 && !strings.Contains(msg, "Too many"); i++ {
		pw := "wrong password " + strconv.Itoa(i)
		if i == 5 {
			pw = password
		}
		must(t, chromedp.Do(ctx,
			chromedp.Navigate(srv.url+"/admin/login"),
			chromedp.SendKeys(chromedp.ID("email"), owner),
			chromedp.SendKeys(chromedp.ID("password"), pw),
			chromedp.Click(chromedp.CSS(`form[action="/admin/login"] button[type=submit]`)),
			chromedp.WaitVisible(chromedp.ID("login-error")),
		), "wrong password")
		msg, err = chromedp.Run(ctx, chromedp.Text(chromedp.ID("login-error")))
		must(t, err, "read the login error")
	}
	if !strings.Contains(msg, "Too many") {
		t.Fatalf("after five wrong passwords the login says %q, want it throttled", msg)
	}
}

// press clicks the element sel selects as a person would, once it is in the
// middle of the window: scrolled to the top, it would sit under the back
// office's sticky navigation, which would take the click.
func press(sel string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		js := `document.querySelector(` + strconv.Quote(sel) + `).scrollIntoView({block: "center"})`
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Evaluate[chromedp.Void](js),
			chromedp.Click(chromedp.CSS(sel))); err != nil {
			return chromedp.Void{}, err
		}
		return chromedp.Void{}, nil
	}
}

// waitURL waits until the browser's address contains want.
func waitURL(want string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			loc, err := chromedp.Run(ctx, chromedp.Location())
			if err != nil {
				return chromedp.Void{}, err
			}
			if strings.Contains(loc, want) {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("the address is %s, want it to contain %q: %w", loc, want, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func ptr[T any](v T) *T { return &v }

func idOf(statusURL string) string { return statusURL[strings.LastIndex(statusURL, "/")+1:] }

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err, "open the export")
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	must(t, err, "parse the export")
	return records
}

// waitAPI polls the registration's JSON until ok says yes.
func waitAPI(t *testing.T, base, id string, ok func(map[string]any) bool, within time.Duration, want string) {
	t.Helper()
	var last map[string]any
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(base + "/api/registrations/" + id)
		must(t, err, "get registration")
		last = nil
		err = json.NewDecoder(resp.Body).Decode(&last)
		resp.Body.Close()
		must(t, err, "decode registration")
		if ok(last) {
			return
		}
	}
	t.Fatalf("registration %s is %v after %s, want %s", id, last, within, want)
}

// pageProblems records, from now on, what goes wrong in the browser's
// pages: uncaught exceptions, policy violations (seen by the page itself),
// the console's security and script errors, and failed loads of the job
// console's files and API. It returns a func listing them so far.
//
// River UI's validation library probes once whether eval works (its
// allowsEval: Function("") in a try) and, refused, validates without it;
// that one refusal is expected under a policy without 'unsafe-eval' and is
// left out. Any other eval would be reported.
func pageProblems(t *testing.T, ctx context.Context) func() []string {
	t.Helper()
	var (
		mu       sync.Mutex
		problems []string
	)
	add := func(p string) { mu.Lock(); problems = append(problems, p); mu.Unlock() }
	violations := chromedp.Events(ctx, runtime.BindingCalled)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	entries := chromedp.Events(ctx, cdplog.EntryAdded)
	must(t, chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, runtime.AddBinding, runtime.AddBindingParams{Name: "registrarViolation"}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
document.addEventListener("securitypolicyviolation", e => registrarViolation(JSON.stringify({
	directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber, sample: e.sample})));`})
		return err
	})), "watch the pages")
	go func() {
		for ev, err := range violations {
			if err != nil {
				return
			}
			var v struct{ Directive, Blocked, Source, Sample string }
			if json.Unmarshal([]byte(ev.Payload), &v) == nil && strings.HasPrefix(v.Directive, "script-src") &&
				v.Blocked == "eval" && strings.Contains(v.Source, "/admin/jobs/assets/main-") {
				continue // the validation library's probe
			}
			add("policy violation: " + ev.Payload)
		}
	}()
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			add(fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		}
	}()
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			e := ev.Entry
			switch {
			case e.Source == cdplog.EntrySourceSecurity, e.Source == cdplog.EntrySourceJavascript && e.Level == cdplog.EntryLevelError,
				e.Source == cdplog.EntrySourceNetwork && strings.Contains(e.URL, "/admin/jobs/"):
				add(fmt.Sprintf("console %s %s: %s %s", e.Source, e.Level, e.Text, e.URL))
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(problems)
	}
}

// pageText waits until the page's text contains every one of want, and
// returns it.
func pageText(t *testing.T, ctx context.Context, what string, want ...string) string {
	t.Helper()
	js := `(() => { const s = document.body ? document.body.innerText : ""; return ` +
		strings.Repeat("s.includes(%s) && ", len(want)) + `s; })()`
	args := make([]any, len(want))
	for i, w := range want {
		args[i] = strconv.Quote(w)
	}
	text, err := chromedp.Run(ctx, chromedp.Poll[string](fmt.Sprintf(js, args...), chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: the page never showed %q: %v\n%.3000s", what, want, err, got)
	}
	return text
}

// logIn logs in at the back office's login page.
func logIn(t *testing.T, ctx context.Context, base, email, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/admin/login"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`form[action="/admin/login"] button[type=submit]`)),
		waitURL("/admin"),
		chromedp.WaitVisible(chromedp.CSS("nav")),
	), "log in as "+email)
}

// The job console in a real browser behind the back office's login and
// policy: an owner opens it and River UI renders the pipeline's jobs and
// queues, at desktop and phone widths, without a policy violation or a
// script error; its retry, a write from its script, goes through from the
// same origin, and the same write from a page of another origin on the
// same host is refused although the browser sends the session cookie. A
// staff account gets the 403 page.
func TestBrowserJobConsole(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 1280)
	dir := t.TempDir()
	const owner, password = "owner@example.org", "correct horse battery staple"
	e := baseEnv(dir)
	// The accounts, added while no server holds the SQLite database.
	const staff, staffPassword = "staff@example.org", "a staff password of some length"
	for _, a := range []struct{ email, password, role string }{{owner, password, "owner"}, {staff, staffPassword, "staff"}} {
		if _, stderr, err := runAdmin(t, e, a.password+"\n", "add", a.email, "--role", a.role); err != nil {
			t.Fatalf("admin add %s: %v\n%s", a.email, err, stderr)
		}
	}
	srv := startRun(t, e)
	defer srv.stop(t)

	var ids []string
	for i := 1; i <= 2; i++ {
		code, c, err := post(http.DefaultClient, srv.url, registrationBody(i, "standard", true, "4111 1111 1111 1111"), "")
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("registration %d: %d, %v", i, code, err)
		}
		ids = append(ids, c.ID)
	}
	waitCompleted(t, srv.url, ids, 30*time.Second)

	problems := pageProblems(t, ctx)
	logIn(t, ctx, srv.url, owner, password)

	// River UI starts on its list of running jobs; the completed ones
	// include both registrations' pipelines (one register job each, and the
	// mailing list's own), their arguments hidden.
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/admin/jobs/"), waitURL("/admin/jobs/jobs")), "open the job console")
	pageText(t, ctx, "job console", "Running", "Completed", "Queues")
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/admin/jobs/jobs?state=completed")), "completed jobs")
	list := pageText(t, ctx, "completed jobs", "register", "default", "add_to_mailing_list", "mailing_list")
	if strings.Contains(list, "registration_id") {
		t.Errorf("the job list shows the jobs' arguments, want them hidden by default:\n%s", list)
	}
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/admin/jobs/queues")), "queues")
	pageText(t, ctx, "queues", "default", "mailing_list", "payments")

	// At a phone's width the list still renders, without sideways scrolling.
	must(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 900),
		chromedp.Navigate(srv.url+"/admin/jobs/jobs?state=completed"),
	), "phone width")
	pageText(t, ctx, "completed jobs at 390 px", "register", "mailing_list")
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); err != nil || w > 390 {
		t.Errorf("at 390 px the job list is %d px wide (%v)", w, err)
	}
	must(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)), "desktop width")

	// Retry a register job from its page: River UI posts to its API.
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll('a[href^="/admin/jobs/jobs/"]')].find(a => a.innerText.trim() === "register").getAttribute("href")`))
	must(t, err, "find a register job")
	jobID := href[strings.LastIndex(href, "/")+1:]
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+href)), "open the job")
	pageText(t, ctx, "the register job", "register", "(Attempt 1)")
	must(t, chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](
		`[...document.querySelectorAll("button")].find(b => b.innerText.trim() === "Retry").click()`)), "retry")
	pageText(t, ctx, "the retried job", "(Attempt 2)")

	if p := problems(); len(p) > 0 {
		t.Errorf("the job console reported problems:\n%s", strings.Join(p, "\n"))
	}

	// A page of another origin on the same host (same site, so the browser
	// sends the session cookie) makes the same write: it is refused.
	target := srv.url + "/admin/jobs/api/jobs/retry"
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>other</title><script>
fetch(%q, {method: "POST", mode: "no-cors", credentials: "include", body: JSON.stringify({ids: [%q]})})
  .then(() => { document.title = "sent"; }, e => { document.title = "failed " + e; });
</script>`, target, jobID)
	}))
	defer other.Close()
	requests := chromedp.Events(ctx, network.RequestWillBeSent)
	sent := chromedp.Events(ctx, network.RequestWillBeSentExtraInfo)
	answers := chromedp.Events(ctx, network.ResponseReceived)
	must(t, chromedp.Do(ctx, chromedp.Navigate(other.URL)), "open the other origin's page")
	var request network.RequestID
	for ev, err := range requests {
		must(t, err, "the other origin's request")
		if ev.Request.URL == target && ev.Request.Method == http.MethodPost {
			request = ev.RequestID
			break
		}
	}
	for ev, err := range sent {
		must(t, err, "the other origin's request headers")
		if ev.RequestID != request {
			continue
		}
		if cookie := headerValue(ev.Headers, "Cookie"); !strings.Contains(cookie, "__Host-registrar_session=") {
			t.Fatalf("the other origin's request carries no session cookie (%q): it proves nothing", cookie)
		}
		if site := headerValue(ev.Headers, "Sec-Fetch-Site"); site != "same-site" {
			t.Fatalf("the other origin's request has Sec-Fetch-Site %q, want same-site", site)
		}
		break
	}
	for ev, err := range answers {
		must(t, err, "the answer to the other origin")
		if ev.RequestID == request {
			if ev.Response.Status != http.StatusForbidden {
				t.Fatalf("the other origin's retry: %d, want 403", ev.Response.Status)
			}
			break
		}
	}
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+href)), "back to the job")
	pageText(t, ctx, "the job after the refused retry", "(Attempt 2)")
	time.Sleep(time.Second)
	if text := pageText(t, ctx, "the job after the refused retry", "(Attempt 2)"); strings.Contains(text, "(Attempt 3)") {
		t.Fatal("the other origin's retry was carried out")
	}
	// It is the origin that is refused: the same request with the same
	// cookie, sent as from the job console's own page, goes through.
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{srv.url}})
	must(t, err, "read the session cookie")
	var session string
	for _, c := range cookies.Cookies {
		if c.Name == "__Host-registrar_session" {
			session = c.Value
		}
	}
	for _, c := range []struct {
		site string
		want int
	}{{"same-site", http.StatusForbidden}, {"cross-site", http.StatusForbidden}, {"same-origin", http.StatusOK}} {
		req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(`{"ids":["`+jobID+`"]}`))
		must(t, err, "build a retry")
		req.Header.Set("Cookie", "__Host-registrar_session="+session)
		req.Header.Set("Sec-Fetch-Site", c.site)
		resp, err := http.DefaultClient.Do(req)
		must(t, err, "retry as "+c.site)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("a retry with Sec-Fetch-Site %s: %d, want %d", c.site, resp.StatusCode, c.want)
		}
	}
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+href)), "back to the job")
	pageText(t, ctx, "the job after the same-origin retry", "(Attempt 3)")

	// A staff account may not open the job console.
	must(t, chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{})
		return err
	})), "forget the owner's session")
	logIn(t, ctx, srv.url, staff, staffPassword)
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(srv.url+"/admin/jobs/"))
	must(t, err, "staff opens the job console")
	if resp.Status != http.StatusForbidden {
		t.Errorf("staff at /admin/jobs/: %d, want 403", resp.Status)
	}
	h1, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	must(t, err, "read the 403 page")
	if !strings.Contains(h1, "Not allowed") {
		t.Errorf("staff at /admin/jobs/ sees %q, want the 403 page", h1)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.scripts.length + document.querySelectorAll("#root").length`)); err != nil || n != 0 {
		t.Errorf("the 403 page carries River UI (%d scripts or roots, %v)", n, err)
	}
}

// headerValue is the value of the header name in a raw header map, in any
// case.
func headerValue(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// download runs action, which starts a download in the browser, and returns
// the path of the downloaded file once the browser has it.
func download(t *testing.T, ctx context.Context, action chromedp.Action[chromedp.Void], what string) string {
	t.Helper()
	downloads := t.TempDir()
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	must(t, chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: ptr(true)})
			return err
		}),
		action,
	), what)
	for ev, err := range progress {
		must(t, err, "download the "+what)
		if ev.State == browser.DownloadProgressStateCompleted {
			return filepath.Join(downloads, ev.GUID)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatalf("the browser cancelled the %s's download", what)
		}
	}
	t.Fatalf("the browser stopped before the %s was downloaded", what)
	return ""
}
