package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/registrar/registrar/internal/providertest"
)

// mailGate stands in front of the fake SendGrid and holds every request
// until it is opened, so that a registration stays unfinished for as long
// as a test needs.
type mailGate struct {
	url      string
	held     chan struct{} // closed when the first request arrives
	open     chan struct{}
	heldOnce sync.Once
	openOnce sync.Once
}

func newMailGate(t *testing.T, target string) *mailGate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &mailGate{held: make(chan struct{}), open: make(chan struct{})}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.heldOnce.Do(func() { close(g.held) })
		select {
		case <-g.open:
		case <-r.Context().Done():
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	g.url = srv.URL
	t.Cleanup(func() { g.release(); srv.Close() })
	return g
}

func (g *mailGate) release() { g.openOnce.Do(func() { close(g.open) }) }

// shoot saves screenshots of the whole page at each width, as
// name-WIDTH.png in the directory REGISTRAR_TEST_SHOTS names; without it,
// it does nothing. The page is not reloaded.
func shoot(t *testing.T, ctx context.Context, name string, widths ...int) {
	t.Helper()
	dir := os.Getenv("REGISTRAR_TEST_SHOTS")
	if dir == "" {
		return
	}
	must(t, os.MkdirAll(dir, 0o755), "make the screenshot directory")
	for _, w := range widths {
		must(t, chromedp.Do(ctx, chromedp.EmulateViewport(int64(w), 900)), "resize")
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		must(t, err, "screenshot "+name)
		must(t, os.WriteFile(filepath.Join(dir, name+"-"+strconv.Itoa(w)+".png"), png, 0o644), "save screenshot "+name)
	}
}

// An attendee pays through the form while their confirmation email is held
// back. Their status page says so, and once the email is sent it says they
// are registered without being reloaded: the same document (a mark left on
// it survives), and never a refresh element in it.
func TestBrowserStatusPageUpdates(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 390)
	sendgrid := providertest.NewSendGrid(t, sgKey)
	gate := newMailGate(t, sendgrid.URL())
	e := baseEnv(t.TempDir())
	e["REGISTRAR_EMAIL"] = "sendgrid"
	e["SENDGRID_API_KEY"] = sgKey
	e["SENDGRID_API_BASE"] = gate.url
	srv := startRun(t, e)
	defer srv.stop(t)
	problems := pageProblems(t, ctx)

	registerInBrowser(t, ctx, srv.url, "Ada", "Lovelace", "ada@example.org")
	select {
	case <-gate.held:
	case <-time.After(60 * time.Second):
		t.Fatal("the confirmation email was never sent")
	}
	pageText(t, ctx, "the unfinished page", "You're in", "Your confirmation is on its way to a•••@example.org.",
		"Sending your confirmation email", "This page updates by itself.")
	state, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`(() => {
		window.registrarMark = {};
		return {
			live: document.documentElement.dataset.statusLive || "",
			refresh: document.querySelectorAll('meta[http-equiv="refresh" i]').length,
			link: document.querySelectorAll("#status-refresh a").length,
			script: [...document.scripts].filter(s => s.src).map(s => new URL(s.src).origin === location.origin ? "same-origin" : s.src).join(),
		};
	})()`))
	must(t, err, "read the unfinished page")
	if state["live"] != "on" || state["refresh"] != 0.0 || state["link"] != 0.0 || state["script"] != "same-origin" {
		t.Errorf("the unfinished page with its script running: %v; want it live, without a refresh element or link, its script from its own origin", state)
	}
	shoot(t, ctx, "status-processing", 390, 1280)
	must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 900)), "back to a phone's width")

	gate.release()
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("h1").innerText === "You're registered"`,
		chromedp.WithPollingTimeout(90*time.Second)))
	if err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("the page never said the registration is done: %v\n%s", err, text)
	}
	state, err = chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`({
		same: window.registrarMark !== undefined,
		live: document.documentElement.dataset.statusLive || "",
		refresh: document.querySelectorAll('meta[http-equiv="refresh" i]').length,
		note: document.querySelectorAll("#status-refresh").length,
		text: document.body.innerText,
	})`))
	must(t, err, "read the finished page")
	if state["same"] != true {
		t.Error("the page was reloaded to show the finished registration")
	}
	if state["live"] != "done" || state["refresh"] != 0.0 || state["note"] != 0.0 {
		t.Errorf("the finished page: %v; want its script stopped, no refresh element and no refresh note", state)
	}
	text, _ := state["text"].(string)
	for _, want := range []string{"Confirmation email sent", "Booking saved", "Your confirmation was sent to a•••@example.org.",
		"€149.00 paid with Visa •••• 1111"} {
		if !strings.Contains(text, want) {
			t.Errorf("the finished page does not say %q:\n%s", want, text)
		}
	}
	for _, internal := range []string{"pending", "running", "succeeded", "completed", "skipped"} {
		if strings.Contains(text, internal) {
			t.Errorf("the finished page says %q:\n%s", internal, text)
		}
	}
	if n := len(sendgrid.Accepted()); n != 1 {
		t.Errorf("SendGrid accepted %d emails, want the one confirmation", n)
	}
	shoot(t, ctx, "status-done", 390, 1280)
	if p := problems(); len(p) > 0 {
		t.Errorf("the status page reported problems:\n%s", strings.Join(p, "\n"))
	}
}

// The finished states and the error page, at a phone's and a desktop's
// width: a free ticket never called paid, a step the organisers will
// finish, a page that is not there; none scrolls sideways, none polls.
func TestBrowserStatusPageStates(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 390)
	sendgrid := providertest.NewSendGrid(t, sgKey)
	e := baseEnv(t.TempDir())
	e["REGISTRAR_EMAIL"] = "sendgrid"
	e["SENDGRID_API_KEY"] = sgKey
	e["SENDGRID_API_BASE"] = sendgrid.URL()
	srv := startRun(t, e)
	defer srv.stop(t)
	problems := pageProblems(t, ctx)

	code, free, err := post(http.DefaultClient, srv.url, registrationBody(1, "community", false, ""), "")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("a free registration: %d, %v", code, err)
	}
	waitCompleted(t, srv.url, []string{free.ID}, 30*time.Second)
	sendgrid.Reject(http.StatusBadRequest, "The from address does not match a verified Sender Identity.")
	code, failed, err := post(http.DefaultClient, srv.url, registrationBody(2, "standard", false, "4111 1111 1111 1111"), "")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("a paid registration: %d, %v", code, err)
	}
	waitAPI(t, srv.url, failed.ID, func(s map[string]any) bool { return s["status"] == "needs_attention" }, 30*time.Second, "needs_attention")

	for _, p := range []struct {
		name, path string
		status     int
		want       []string
		notWant    []string
	}{
		{"status-free", "/registrations/" + free.ID, http.StatusOK,
			[]string{"You're registered", "Registered — free ticket", "Community", "A•••@Example.org", "hello@gopherfest.example"},
			[]string{"paid", "Paid", "€"}},
		{"status-failed-step", "/registrations/" + failed.ID, http.StatusOK,
			[]string{"You're in — one step needs our attention", "Your confirmation email: the organisers will finish this",
				"€149.00 paid with Visa •••• 1111"},
			[]string{"failed", "Sender Identity", "attempt"}},
		{"not-found", "/no-such-page", http.StatusNotFound,
			[]string{"Page not found", "Register for GopherFest 2027"}, nil},
	} {
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(srv.url+p.path))
		must(t, err, "open "+p.path)
		if resp.Status != int64(p.status) {
			t.Errorf("%s: %d, want %d", p.path, resp.Status, p.status)
		}
		text := pageText(t, ctx, p.name, p.want...)
		for _, w := range p.notWant {
			if strings.Contains(text, w) {
				t.Errorf("%s says %q:\n%s", p.name, w, text)
			}
		}
		for _, width := range []int{390, 1280} {
			must(t, chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), 900)), "resize")
			got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](`({
				wide: document.documentElement.scrollWidth,
				scripts: document.scripts.length,
				refresh: document.querySelectorAll('meta[http-equiv="refresh" i]').length})`))
			must(t, err, "measure "+p.name)
			if got["wide"] > float64(width) || got["scripts"] != 0 || got["refresh"] != 0 {
				t.Errorf("%s at %d px: %v; want no sideways scrolling, no script and no refresh", p.name, width, got)
			}
		}
		shoot(t, ctx, p.name, 390, 1280)
		must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 900)), "back to a phone's width")
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the pages reported problems:\n%s", strings.Join(p, "\n"))
	}
}
