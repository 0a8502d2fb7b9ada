package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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
