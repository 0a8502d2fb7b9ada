package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// formEventFile writes an event with everything a seller tells on the
// form: a paid ticket with plenty of seats, one with a single seat, and a
// free one. salesStart, when not empty, is when sales open.
func formEventFile(t *testing.T, dir, salesStart string) string {
	t.Helper()
	sales := ""
	if salesStart != "" {
		sales = fmt.Sprintf(`"sales_start": %q,`, salesStart)
	}
	data := fmt.Sprintf(`{
  "id": "formconf-2031", "name": "FormConf 2031",
  "description": "Two days of talks about forms people trust.\nWorkshops on the second day.",
  "starts_at": "2031-06-10T09:00:00+02:00", "ends_at": "2031-06-11T18:00:00+02:00", %s
  "venue": "Kulturbrauerei, Berlin", "currency": "EUR",
  "email_from": {"address": "tickets@formconf.example", "name": "FormConf"},
  "organiser": {"name": "FormConf e.V.", "email": "hello@formconf.example", "url": "https://formconf.example"},
  "terms_url": "https://formconf.example/terms", "privacy_url": "https://formconf.example/privacy",
  "refund_policy": "Full refund until 10 May 2031; after that, tickets can be passed on to a colleague.",
  "tickets": [
    {"id": "standard", "name": "Standard", "price": "149.00", "capacity": 400},
    {"id": "last-seat", "name": "Last seat", "price": "99.00", "capacity": 1},
    {"id": "community", "name": "Community", "price": "0.00", "capacity": 50}
  ]
}`, sales)
	path := filepath.Join(dir, "event.json")
	must(t, os.WriteFile(path, []byte(data), 0o600), "write the event file")
	return path
}

// formDetails are an attendee's details as typed into the form, the card
// number and security code aside.
func formDetails(mail string) map[string]string {
	return map[string]string{
		"attendee.first_name":         "Ada",
		"attendee.last_name":          "Lovelace",
		"attendee.email":              mail,
		"billing.card.name":           "Ada Lovelace",
		"billing.card.expiry":         "12/30",
		"billing.address.line1":       "12 St James's Square",
		"billing.address.postal_code": "SW1Y 4JH",
		"billing.address.city":        "London",
		"billing.address.country":     "GB",
	}
}

// The helpers below find elements with the page's own DOM and act with
// the keyboard and the mouse, rather than through chromedp's copy of the
// DOM, which goes stale when Back shows a page from the back-forward
// cache.

// typeIn types each value into the input named by its key, key by key,
// replacing what the input held.
func typeIn(t *testing.T, ctx context.Context, values map[string]string) {
	t.Helper()
	for name, v := range values {
		js := fmt.Sprintf(`(() => { const el = document.querySelector('[name=%q]'); el.focus(); el.value = ""; })()`, name)
		must(t, chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](js), chromedp.KeyEvent(v)), "type into "+name)
	}
}

// tap clicks with the mouse the middle of the element sel selects, once
// scrolled into the middle of the window.
func tap(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	at, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		el.scrollIntoView({block: "center"});
		const r = el.getBoundingClientRect();
		return [r.left + r.width / 2, r.top + r.height / 2];
	})()`, sel)))
	must(t, err, "find "+sel)
	must(t, chromedp.Do(ctx, chromedp.MouseClickXY(at[0], at[1])), "click "+sel)
}

// typeCard types the card number and security code.
func typeCard(t *testing.T, ctx context.Context) {
	t.Helper()
	typeIn(t, ctx, map[string]string{"billing.card.number": "4111 1111 1111 1111", "billing.card.cvc": "737"})
}

// value is the current value of the input named name.
func value(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('[name=%q]').value`, name)))
	must(t, err, "read "+name)
	return v
}

// submitForm clicks the form's button and waits for the next page.
func submitForm(t *testing.T, ctx context.Context) {
	t.Helper()
	must(t, chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`window.registrarSubmitted = true`),
	), "mark the page")
	tap(t, ctx, `button.pay`)
	// The page being left answers until the next one replaces it; while
	// it does, the browser may refuse to evaluate.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		done, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.registrarSubmitted !== true && document.readyState === "complete"`))
		if err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer to the form within a minute (%v)", err)
		}
	}
}

// goBack goes back one page, as the browser's Back button does, and waits
// for the form. It reports whether the browser showed the form kept in its
// back-forward cache: the very document submitted (submitForm marks it),
// not one loaded again.
func goBack(t *testing.T, ctx context.Context) (cached bool) {
	t.Helper()
	must(t, chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		h, err := chromedp.Call(ctx, page.GetNavigationHistory, cdp.Empty{})
		if err != nil {
			return err
		}
		if h.CurrentIndex < 1 {
			return fmt.Errorf("no page to go back to")
		}
		_, err = chromedp.Call(ctx, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: h.Entries[h.CurrentIndex-1].ID})
		return err
	})), "go back")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[[]any](`[location.pathname, document.readyState, !!document.querySelector("button.pay"), window.registrarSubmitted === true]`))
		if err == nil && s[0] == "/" && s[1] == "complete" && s[2] == true {
			return s[3] == true
		}
		if time.Now().After(deadline) {
			t.Fatalf("Back did not show the form within 30 s: %v, %v", s, err)
		}
	}
}

// registrations counts the registrations in the server's database.
func registrations(t *testing.T, dir string) int {
	t.Helper()
	db := openDB(t, filepath.Join(dir, "registrar.db"))
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM registrations`).Scan(&n); err != nil && err != sql.ErrNoRows {
		t.Fatalf("count registrations: %v", err)
	}
	return n
}

// newBrowserWithoutCache is newBrowser with the back-forward cache turned
// off, as when the browser evicted the page: Back then loads it again and
// the browser fills in what it kept of the inputs.
func newBrowserWithoutCache(t *testing.T, width int) context.Context {
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
		chromedp.Flag("disable-features", "BackForwardCache"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), 900)); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// An attendee pays, goes Back and submits the form again: the card number
// and security code are not brought back, the form does not charge again
// but shows the registration made, and charges only once the attendee
// ticks that they want a second ticket. The expiry is typed as on the card,
// "12/30". Back shows the page kept in the back-forward cache, or, once the
// browser evicted it, loads it again.
func TestBrowserFormBackAfterPaying(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		browser func(*testing.T, int) context.Context
		cached  bool
	}{
		{"from the back-forward cache", newBrowser, true},
		{"loaded again", newBrowserWithoutCache, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			backAfterPaying(t, tt.browser(t, 390), tt.cached)
		})
	}
}

func backAfterPaying(t *testing.T, ctx context.Context, wantCached bool) {
	dir := t.TempDir()
	e := baseEnv(dir)
	e["REGISTRAR_EVENT_FILE"] = formEventFile(t, dir, "")
	srv := startRun(t, e)
	defer srv.stop(t)
	problems := pageProblems(t, ctx)

	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/"), chromedp.WaitVisible(chromedp.CSS(`button.pay`))), "open the form")
	typeIn(t, ctx, formDetails("ada@example.org"))
	typeCard(t, ctx)
	submitForm(t, ctx)
	first, err := chromedp.Run(ctx, chromedp.Location())
	must(t, err, "address after paying")
	if !strings.Contains(first, "/registrations/") {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("after paying with the expiry typed as 12/30 the browser is on %s, want the status page:\n%s", first, text)
	}
	if n := registrations(t, dir); n != 1 {
		t.Fatalf("%d registrations after paying, want 1", n)
	}

	// Back: the form again, without the card number and security code.
	if cached := goBack(t, ctx); cached != wantCached {
		t.Fatalf("Back showed the page from the back-forward cache: %v, want %v", cached, wantCached)
	}
	t.Logf("after Back the browser shows first name %q, expiry %q, submission key %q",
		value(t, ctx, "attendee.first_name"), value(t, ctx, "billing.card.expiry"), value(t, ctx, "submission_key"))
	for _, name := range []string{"billing.card.number", "billing.card.cvc"} {
		if v := value(t, ctx, name); v != "" {
			t.Errorf("after Back the input %s holds %q, want it empty", name, v)
		}
	}

	// Submitted again, with the card typed again: nothing is charged, the
	// registration made is shown.
	typeIn(t, ctx, formDetails("ada@example.org"))
	typeCard(t, ctx)
	submitForm(t, ctx)
	if n := registrations(t, dir); n != 1 {
		t.Fatalf("%d registrations after submitting the form again, want still 1", n)
	}
	notice := pageText(t, ctx, "the form submitted again", "You already have a Standard ticket", "Yes, register and pay again")
	if !strings.Contains(notice, "Nothing was charged this time.") {
		t.Errorf("the notice does not say nothing was charged:\n%s", notice)
	}
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector(".notice a").getAttribute("href")`))
	must(t, err, "the link to the registration")
	if href != "/registrations/"+idOf(first) {
		t.Errorf("the notice links to %q, want /registrations/%s", href, idOf(first))
	}

	// Said yes: a second registration.
	typeCard(t, ctx)
	tap(t, ctx, `#confirm_duplicate`)
	submitForm(t, ctx)
	second, err := chromedp.Run(ctx, chromedp.Location())
	must(t, err, "address after paying again")
	if !strings.Contains(second, "/registrations/") || second == first {
		t.Fatalf("after confirming the browser is on %s, want a new status page (the first was %s)", second, first)
	}
	if n := registrations(t, dir); n != 2 {
		t.Errorf("%d registrations after confirming, want 2", n)
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the pages reported problems:\n%s", strings.Join(p, "\n"))
	}
	assertNoCardData(t, dir, srv.logs.String())
}

// Without JavaScript the browser may bring the card back on Back; the
// server still does not charge twice.
func TestBrowserFormBackWithoutScript(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 1280)
	dir := t.TempDir()
	e := baseEnv(dir)
	e["REGISTRAR_EVENT_FILE"] = formEventFile(t, dir, "")
	srv := startRun(t, e)
	defer srv.stop(t)
	must(t, chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	})), "turn JavaScript off")

	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/"), chromedp.WaitVisible(chromedp.CSS(`button.pay`))), "open the form")
	// A free ticket hides the payment section without the script.
	tap(t, ctx, `#ticket-community`)
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`getComputedStyle(document.querySelector(".pay-fields")).display === "none" &&
		getComputedStyle(document.querySelector(".no-payment")).display !== "none"`))
	if must(t, err, "look at the payment section"); !hidden {
		t.Error("without JavaScript, choosing the free ticket does not hide the payment section")
	}
	tap(t, ctx, `#ticket-standard`)
	typeIn(t, ctx, formDetails("ada@example.org"))
	typeCard(t, ctx)
	submitForm(t, ctx)
	if n := registrations(t, dir); n != 1 {
		t.Fatalf("%d registrations after paying, want 1", n)
	}
	cached := goBack(t, ctx)
	t.Logf("without JavaScript, Back (from the back-forward cache %v) brings back card number %q and first name %q",
		cached, value(t, ctx, "billing.card.number"), value(t, ctx, "attendee.first_name"))
	typeIn(t, ctx, formDetails("ada@example.org"))
	typeCard(t, ctx)
	submitForm(t, ctx)
	pageText(t, ctx, "the form submitted again", "You already have a Standard ticket")
	if n := registrations(t, dir); n != 1 {
		t.Errorf("%d registrations after submitting again without JavaScript, want still 1", n)
	}
}

// The tickets in the browser: a sold-out ticket cannot be chosen, the
// button names the chosen ticket's price, and a free ticket switches the
// payment section off.
func TestBrowserFormTickets(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 390)
	dir := t.TempDir()
	e := baseEnv(dir)
	e["REGISTRAR_EVENT_FILE"] = formEventFile(t, dir, "")
	srv := startRun(t, e)
	defer srv.stop(t)
	if code, _, err := post(http.DefaultClient, srv.url, strings.Replace(registrationBody(1, "last-seat", false, cardNumber), "2031-12", "12/31", 1), ""); err != nil || code != http.StatusAccepted {
		t.Fatalf("sell the last seat: %d, %v", code, err)
	}
	problems := pageProblems(t, ctx)
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.url+"/"), chromedp.WaitVisible(chromedp.CSS(`button.pay`))), "open the form")

	state := func() (chosen, button string, paymentOff bool) {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[
			(document.querySelector('input[name="ticket"]:checked') || {}).value || "",
			document.querySelector("button.pay").innerText,
			String(document.querySelector("fieldset.payment").disabled)]`))
		must(t, err, "read the form")
		return s[0], s[1], s[2] == "true"
	}
	if chosen, button, off := state(); chosen != "standard" || button != "Pay €149.00" || off {
		t.Errorf("at first: chosen %q, button %q, payment off %v", chosen, button, off)
	}
	soldOut := pageText(t, ctx, "the sold-out ticket", "Sold out")
	if !strings.Contains(soldOut, "€99.00") {
		t.Errorf("the sold-out ticket's price is not shown:\n%s", soldOut)
	}
	// Clicked, tapped or given the keyboard, the sold-out ticket is not taken.
	tap(t, ctx, `label[for="ticket-last-seat"]`)
	must(t, chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById("ticket-last-seat").click()`)), "click the sold-out radio")
	if chosen, _, _ := state(); chosen != "standard" {
		t.Errorf("after clicking the sold-out ticket, %q is chosen", chosen)
	}

	tap(t, ctx, `label[for="ticket-community"]`)
	chosen, button, off := state()
	if chosen != "community" || button != "Register for free" || !off {
		t.Errorf("with the free ticket: chosen %q, button %q, payment off %v", chosen, button, off)
	}
	pageText(t, ctx, "the free ticket", "No payment needed")
	if visible, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector(".pay-fields").offsetParent !== null`)); err != nil || visible {
		t.Errorf("the card inputs are visible for a free ticket (%v)", err)
	}
	tap(t, ctx, `label[for="ticket-standard"]`)
	if chosen, button, off := state(); chosen != "standard" || button != "Pay €149.00" || off {
		t.Errorf("back on standard: chosen %q, button %q, payment off %v", chosen, button, off)
	}

	// Registered for free, whatever was typed in the payment section.
	typeIn(t, ctx, formDetails("grace@example.org"))
	tap(t, ctx, `label[for="ticket-community"]`)
	submitForm(t, ctx)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	must(t, err, "address after registering")
	if !strings.Contains(loc, "/registrations/") {
		t.Fatalf("after registering for free the browser is on %s", loc)
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the pages reported problems:\n%s", strings.Join(p, "\n"))
	}
}

// layoutJS reports how the form is laid out: its width against the
// window's, whether two inputs of one row sit side by side, and every
// control smaller than a finger.
const layoutJS = `(() => {
	const box = (sel) => document.querySelector(sel).getBoundingClientRect();
	const small = [];
	for (const el of document.querySelectorAll("input:not([type=hidden]), button, .ticket, .check")) {
		const r = el.getBoundingClientRect();
		const target = el.matches("input[type=radio], input[type=checkbox]") ? el.closest(".ticket, .check").getBoundingClientRect() : r;
		if (r.width > 0 && target.height < 44) small.push((el.name || el.id || el.className) + ": " + Math.round(target.height) + "px");
	}
	const first = box('[name="attendee.first_name"]'), last = box('[name="attendee.last_name"]');
	const font = (sel) => getComputedStyle(document.querySelector(sel)).fontFamily;
	return {scroll: document.documentElement.scrollWidth, width: window.innerWidth,
		sideBySide: Math.abs(first.top - last.top) < 1, small: small,
		inherits: font("button.pay") === font("body") && font('[name="attendee.email"]') === font("body")};
})()`

type layout struct {
	Scroll, Width int
	SideBySide    bool
	Small         []string
	Inherits      bool
}

// The form on a phone and on a desktop: no sideways scrolling, two-column
// rows stacked on a phone, every control big enough to touch, inputs and
// buttons in the page's font. With REGISTRAR_TEST_SHOTS set, screenshots
// of the form, its errors, the duplicate notice, a sold-out ticket and
// sales not yet open are saved there.
func TestBrowserFormLayout(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t, 390)
	dir := t.TempDir()
	e := baseEnv(dir)
	e["REGISTRAR_EVENT_FILE"] = formEventFile(t, dir, "")
	srv := startRun(t, e)
	defer srv.stop(t)

	for _, w := range []int{390, 1280} {
		must(t, chromedp.Do(ctx, chromedp.EmulateViewport(int64(w), 900), chromedp.Navigate(srv.url+"/"), chromedp.WaitVisible(chromedp.CSS(`button.pay`))), "open the form")
		l, err := chromedp.Run(ctx, chromedp.Evaluate[layout](layoutJS))
		must(t, err, "measure the form")
		if l.Scroll > l.Width {
			t.Errorf("at %d px the page is %d px wide", w, l.Scroll)
		}
		if phone := w < 480; l.SideBySide == phone {
			t.Errorf("at %d px first and last name side by side: %v", w, l.SideBySide)
		}
		if len(l.Small) > 0 {
			t.Errorf("at %d px controls smaller than 44 px: %v", w, l.Small)
		}
		if !l.Inherits {
			t.Errorf("at %d px inputs or buttons do not use the page's font", w)
		}
	}
	must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(srv.url+"/")), "open the form")
	shoot(t, ctx, "form", 390, 1280)

	// Errors: the whole payment section empty.
	must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(srv.url+"/")), "open the form")
	typeIn(t, ctx, map[string]string{"attendee.first_name": "Ada", "attendee.email": "ada@"})
	submitForm(t, ctx)
	pageText(t, ctx, "the form's errors", "Please correct the fields marked below.", "Enter the card number.", "MM / YY")
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[aria-invalid="true"]').length`)); err != nil || n != 9 {
		t.Errorf("%d inputs marked invalid, want 9: the last name, email and each required payment input (%v)", n, err)
	}
	shoot(t, ctx, "form-errors", 390, 1280)

	// The duplicate notice (a sold-out ticket shows on the same page).
	if code, _, err := post(http.DefaultClient, srv.url, registrationBody(1, "last-seat", false, cardNumber), ""); err != nil || code != http.StatusAccepted {
		t.Fatalf("sell the last seat: %d, %v", code, err)
	}
	for range 2 {
		must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(srv.url+"/"), chromedp.WaitVisible(chromedp.CSS(`button.pay`))), "open the form")
		typeIn(t, ctx, formDetails("ada@example.org"))
		typeCard(t, ctx)
		submitForm(t, ctx)
	}
	pageText(t, ctx, "the duplicate notice", "You already have a Standard ticket", "Sold out")
	shoot(t, ctx, "form-duplicate", 390, 1280)
	must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(srv.url+"/")), "open the form")
	shoot(t, ctx, "form-sold-out", 390, 1280)

	// Sales not open yet: no form, the date they open.
	dir2 := t.TempDir()
	e2 := baseEnv(dir2)
	e2["REGISTRAR_EVENT_FILE"] = formEventFile(t, dir2, "2031-03-01T10:00:00+01:00")
	later := startRun(t, e2)
	defer later.stop(t)
	must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(later.url+"/")), "open the form before sales")
	text := pageText(t, ctx, "sales not open", "Tickets are not on sale yet", "Ticket sales open on Sat 1 March 2031, 11:00 UTC+02:00.")
	if strings.Contains(text, "Pay €") {
		t.Errorf("before sales open the page offers to pay:\n%s", text)
	}
	shoot(t, ctx, "form-not-open", 390, 1280)
}
