package main

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
)

// An owner exports an attendee's data and erases it from the detail page
// in a real browser, at a phone's width and a desktop's: the actions fit
// without sideways scrolling, as tall as the page's other actions, the download is the
// JSON export, the erase form refuses to go on without its confirmation,
// and afterwards the page shows no personal data and no way to email it.
func TestBrowserDataProtection(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 390)
	dir := t.TempDir()
	const owner, password = "owner@example.org", "correct horse battery staple"
	e := baseEnv(dir)
	e["REGISTRAR_ADMIN_EMAIL"] = owner
	e["REGISTRAR_ADMIN_PASSWORD"] = password
	srv := startRun(t, e)
	defer srv.stop(t)
	code, c, err := post(http.DefaultClient, srv.url, registrationBody(7, "standard", true, "4111 1111 1111 1111"), "")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("register: %d, %v", code, err)
	}
	waitCompleted(t, srv.url, []string{c.ID}, 30*time.Second)

	problems := pageProblems(t, ctx)
	logIn(t, ctx, srv.url, owner, password)
	detail := srv.url + "/admin/registrations/" + c.ID
	openErase := chromedp.Evaluate[chromedp.Void](`document.querySelector('form[action$="/erase"]').closest('details').open = true`)
	for _, width := range []int{390, 1280} {
		must(t, chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), 900), chromedp.Navigate(detail), openErase), "open the detail")
		pageText(t, ctx, "detail at "+strconv.Itoa(width), "Export data", "Erase personal data", "Lovelace-7")
		if w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); err != nil || w > width {
			t.Errorf("at %d px the detail page is %d px wide (%v)", width, w, err)
		}
		height := func(sel string) float64 {
			h, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector(`+strconv.Quote(sel)+`).getBoundingClientRect().height`))
			must(t, err, "measure "+sel)
			return h
		}
		// As tall as the page's other action buttons.
		want := height(`form[action$="/resend"] button[type=submit]`)
		for _, sel := range []string{`a[href$="/export.json"]`, `form[action$="/erase"] button[type=submit]`} {
			if h := height(sel); h < want || h < 40 {
				t.Errorf("at %d px %s is %.0f px tall; want the %.0f px of the other actions", width, sel, h, want)
			}
		}
		shoot(t, ctx, "detail-data-protection", width)
	}

	// The export downloads as the JSON the command line prints.
	jsonPath := download(t, ctx, press(`a[href$="/export.json"]`), "export")
	raw, err := os.ReadFile(jsonPath)
	must(t, err, "read the export")
	var x admin.DataExport
	if err := json.Unmarshal(raw, &x); err != nil || len(x.Registrations) != 1 || x.Registrations[0].Attendee.Email != "Ada.7@Example.org" ||
		x.Registrations[0].Newsletter.ConsentText != registration.NewsletterConsentText {
		t.Fatalf("the downloaded export: %v\n%s", err, raw)
	}

	// Without the confirmation: the form comes back with its error.
	must(t, chromedp.Do(ctx, chromedp.Navigate(detail), openErase, press(`form[action$="/erase"] button[type=submit]`),
		waitURL("/erase"), chromedp.WaitVisible(chromedp.ID("erase-confirm-error"))), "erase unconfirmed")
	pageText(t, ctx, "the unconfirmed erase", "Tick the box to confirm", "Lovelace-7")
	shoot(t, ctx, "detail-erase-unconfirmed", 390, 1280)
	must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 900)), "phone width")

	// Confirmed: erased, and the page says so.
	must(t, chromedp.Do(ctx, press(`#erase-confirm`), press(`form[action$="/erase"] button[type=submit]`), waitURL("done=erase")), "erase")
	text := pageText(t, ctx, "the erased registration", "personal data is erased", "Erased")
	if strings.Contains(text, "Lovelace-7") || strings.Contains(strings.ToLower(text), "ada.7@example.org") {
		t.Errorf("the erased registration's page still shows her data:\n%s", text)
	}
	for _, sel := range []string{`form[action$="/erase"]`, `form[action$="/resend"]`, `form[action$="/edit"]`} {
		if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(sel)+`).length`)); err != nil || n != 0 {
			t.Errorf("the erased registration's page still has %s (%d, %v)", sel, n, err)
		}
	}
	shoot(t, ctx, "detail-erased", 390, 1280)
	if p := problems(); len(p) > 0 {
		t.Errorf("the pages reported problems:\n%s", strings.Join(p, "\n"))
	}
}
