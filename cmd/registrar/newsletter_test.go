package main

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// confirmLinkPath finds a confirmation link's path in a decoded email.
var confirmLinkPath = regexp.MustCompile(`https?://[^/\s"]+(/newsletter/confirm/[A-Za-z0-9_-]{43})`)

// newsletterLinks returns, by registration id, the paths of the
// confirmation links the outbox's newsletter emails carry, one per email.
func newsletterLinks(t *testing.T, outbox string) map[string][]string {
	t.Helper()
	entries, err := os.ReadDir(outbox)
	if err != nil {
		t.Fatal(err)
	}
	links := map[string][]string{}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "newsletter-")
		if !ok || !strings.HasSuffix(rest, ".eml") {
			continue
		}
		id := rest[:strings.LastIndexByte(rest, '-')] // newsletter-<registration>-<link>.eml
		raw, err := os.ReadFile(filepath.Join(outbox, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		text, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		m := confirmLinkPath.FindSubmatch(text)
		if m == nil {
			t.Fatalf("%s has no confirmation link", e.Name())
		}
		links[id] = append(links[id], string(m[1]))
	}
	return links
}

// confirmNewsletter follows a confirmation link as its owner does: the
// page (which changes nothing), then its button.
func confirmNewsletter(t *testing.T, base, path string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(`<form method="post" action="`+path+`">`)) {
		t.Fatalf("GET %s = %d without its form:\n%s", path, resp.StatusCode, page)
	}
	resp, err = http.Post(base+path, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte("You're subscribed")) {
		t.Fatalf("POST %s ended at %s with %d:\n%s", path, resp.Request.URL, resp.StatusCode, page)
	}
}

// TestNewsletterThroughSendGrid: with the local list, the request to
// confirm goes out through the configured mailer (here SendGrid's strict
// fake) beside the confirmation, and its link subscribes the attendee.
func TestNewsletterThroughSendGrid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, f := providerEnv(t, dir, "sendgrid")
	e["REGISTRAR_MAILING_LIST"] = "local"
	s := startRun(t, e)
	defer s.stop(t)

	code, c, err := post(http.DefaultClient, s.url, paypalBody(1, true, "Ada Lovelace"), "")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, err)
	}
	waitCompleted(t, s.url, []string{c.ID}, 60*time.Second)
	var subjects []string
	var link string
	for _, m := range f.sendgrid.Accepted() {
		if m.CustomArgs["registration_id"] != c.ID {
			t.Errorf("SendGrid sent %q for registration %q; want only %s's emails", m.Subject, m.CustomArgs["registration_id"], c.ID)
		}
		subjects = append(subjects, m.Subject)
		if l := confirmLinkPath.FindStringSubmatch(m.Text); l != nil {
			link = l[1]
		}
	}
	slices.Sort(subjects)
	if want := []string{"Confirm your subscription to GopherFest 2027 news", "Your ticket for GopherFest 2027"}; !slices.Equal(subjects, want) {
		t.Fatalf("SendGrid sent %q; want %q", subjects, want)
	}
	if f.mailchimp.Requests() != 0 {
		t.Errorf("Mailchimp got %d requests with the local list", f.mailchimp.Requests())
	}
	if link == "" {
		t.Fatal("the request to confirm has no link")
	}
	confirmNewsletter(t, s.url, link)
}

// TestNewsletterMailchimpDoubleOptIn: with Mailchimp's double opt-in, new
// members are sent as pending and Mailchimp asks them itself: registrar
// sends no request to confirm and serves no confirmation links.
func TestNewsletterMailchimpDoubleOptIn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, f := providerEnv(t, dir, "sendgrid")
	e["MAILCHIMP_DOUBLE_OPT_IN"] = "true"
	s := startRun(t, e)
	defer s.stop(t)

	code, c, err := post(http.DefaultClient, s.url, paypalBody(1, true, "Ada Lovelace"), "")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, err)
	}
	waitCompleted(t, s.url, []string{c.ID}, 60*time.Second)
	if m, ok := f.mailchimp.Member("ada.1@example.org"); !ok || m.Status != "pending" {
		t.Errorf("Mailchimp member = %+v, %v; want pending until they confirm", m, ok)
	}
	if got := f.sendgrid.Accepted(); len(got) != 1 || got[0].Subject != "Your ticket for GopherFest 2027" {
		t.Errorf("SendGrid sent %d emails; want only the confirmation", len(got))
	}
	resp, err := http.Get(s.url + "/newsletter/confirm/q3Z7mL0v4Xc2NfR9sT1uW6yB8dE5gH0jK3lM7nP9rQw")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a confirmation link with Mailchimp's list = %d; want 404", resp.StatusCode)
	}

	// Confirmed at Mailchimp, the member stays subscribed when they
	// register again.
	if !f.mailchimp.Confirm("ada.1@example.org") {
		t.Fatal("the member was not pending at Mailchimp")
	}
	code, c, err = post(http.DefaultClient, s.url, paypalBody(1, true, "Ada Lovelace"), "again")
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("POST again: %d %v", code, err)
	}
	waitCompleted(t, s.url, []string{c.ID}, 60*time.Second)
	if m, _ := f.mailchimp.Member("ada.1@example.org"); m.Status != "subscribed" {
		t.Errorf("after a second registration the member is %q; want still subscribed", m.Status)
	}
}
