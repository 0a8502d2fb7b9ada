package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
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
	if err := chromedp.Do(ctx); err != nil {
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
	downloads := t.TempDir()
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	must(t, chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: ptr(true)})
			return err
		}),
		chromedp.Click(chromedp.CSS(`a[href^="/admin/export/registrations.csv"]`)),
	), "export")
	var csvPath string
	for ev, err := range progress {
		must(t, err, "download the export")
		if ev.State == browser.DownloadProgressStateCompleted {
			csvPath = filepath.Join(downloads, ev.GUID)
			break
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the browser cancelled the export's download")
		}
	}
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
