package providertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// recordingTB records Errorf calls instead of failing the test, so that a
// test can check that the fake reports a bad request.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

const sendGridTestKey = "SG.fake-key.abc"

const validSendGridBody = `{"personalizations":[{"to":[{"email":"ada@example.org","name":"Ada Lovelace"}]}],
 "from":{"email":"tickets@gopherfest.example","name":"GopherFest"},"subject":"Confirmed",
 "content":[{"type":"text/plain","value":"hi"},{"type":"text/html","value":"<p>hi</p>"}],
 "custom_args":{"registration_id":"reg-1"}}`

// withExtras adds fields to validSendGridBody, before custom_args.
func withExtras(extras string) string {
	return strings.Replace(validSendGridBody, `"custom_args"`, extras+`,"custom_args"`, 1)
}

// icsBase64 is "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", base64-encoded.
const icsBase64 = "QkVHSU46VkNBTEVOREFSDQpFTkQ6VkNBTEVOREFSDQo="

func postSendGrid(t *testing.T, url, method, path, key, contentType, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestSendGridFakeStrictness(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, path, key, contentType, body string
		status                                     int
		testFails                                  bool   // the fake must report the request through tb.Errorf
		message                                    string // part of errors[0].message
	}{
		{"valid", "POST", "/v3/mail/send", sendGridTestKey, "application/json", validSendGridBody, 202, false, ""},
		{"missing from", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			`{"personalizations":[{"to":[{"email":"ada@example.org"}]}],"subject":"x","content":[{"type":"text/plain","value":"x"}]}`,
			400, true, "from"},
		{"custom_args not strings", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			strings.Replace(validSendGridBody, `"reg-1"`, `42`, 1), 400, true, "custom_args"},
		{"empty to", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			strings.Replace(validSendGridBody, `[{"email":"ada@example.org","name":"Ada Lovelace"}]`, `[]`, 1), 400, true, "to array"},
		{"comma in to.name", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			strings.Replace(validSendGridBody, `"Ada Lovelace"`, `"Lovelace, Ada"`, 1), 400, true, "cannot contain"},
		{"html before text", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			strings.Replace(strings.Replace(validSendGridBody, `"text/plain"`, `"text/TMP"`, 1), `"text/html"`, `"text/plain"`, 1),
			400, true, "text/plain content must be first"},
		{"reserved header", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			strings.Replace(validSendGridBody, `"custom_args"`, `"headers":{"Reply-To":"x@example.org"},"custom_args"`, 1), 400, true, "reserved"},
		{"reply_to and attachment", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"reply_to":{"email":"hello@gopherfest.example","name":"GopherFest e.V."},` +
				`"attachments":[{"content":"` + icsBase64 + `","type":"text/calendar","filename":"gopherfest-2027.ics","disposition":"attachment"}]`),
			202, false, ""},
		{"reply_to and reply_to_list", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"reply_to":{"email":"a@example.org"},"reply_to_list":[{"email":"b@example.org"}]`), 400, true, "cannot be used together"},
		{"reply_to without email", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"reply_to":{"name":"GopherFest"}`), 400, true, "email"},
		{"reply_to not an address", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"reply_to":{"email":"GopherFest <hello@gopherfest.example>"}`), 400, true, "reply_to email"},
		{"reply_to as a string", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"reply_to":"hello@gopherfest.example"`), 400, true, "reply_to"},
		{"attachment content not base64", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"attachments":[{"content":"BEGIN:VCALENDAR","type":"text/calendar","filename":"a.ics"}]`), 400, true, "base64"},
		{"attachment content empty", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"attachments":[{"content":"","type":"text/calendar","filename":"a.ics"}]`), 400, true, "content"},
		{"attachment without filename", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"attachments":[{"content":"` + icsBase64 + `","type":"text/calendar"}]`), 400, true, "filename"},
		{"attachment type with parameters", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"attachments":[{"content":"` + icsBase64 + `","type":"text/calendar; method=PUBLISH","filename":"a.ics"}]`),
			400, true, "cannot contain ';'"},
		{"attachment type not a media type", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"attachments":[{"content":"` + icsBase64 + `","type":"calendar","filename":"a.ics"}]`), 400, true, "MIME type"},
		{"attachment disposition unknown", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"attachments":[{"content":"` + icsBase64 + `","filename":"a.ics","disposition":"download"}]`), 400, true, "disposition"},
		{"attachments not an array", "POST", "/v3/mail/send", sendGridTestKey, "application/json",
			withExtras(`"attachments":{"content":"` + icsBase64 + `","filename":"a.ics"}`), 400, true, "attachments"},
		{"wrong key", "POST", "/v3/mail/send", "SG.other", "application/json", validSendGridBody, 401, false,
			"The provided authorization grant is invalid, expired, or revoked"},
		{"no key", "POST", "/v3/mail/send", "", "application/json", validSendGridBody, 401, false, "authorization grant"},
		{"form content type", "POST", "/v3/mail/send", sendGridTestKey, "application/x-www-form-urlencoded", validSendGridBody, 400, true, "Content-Type"},
		{"wrong path", "POST", "/v3/mail/sendx", sendGridTestKey, "application/json", validSendGridBody, 404, true, "not found"},
		{"wrong method", "PUT", "/v3/mail/send", sendGridTestKey, "application/json", validSendGridBody, 405, true, "method not allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recordingTB{TB: t}
			fake := NewSendGrid(rec, sendGridTestKey)
			resp, body := postSendGrid(t, fake.URL(), tc.method, tc.path, tc.key, tc.contentType, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			if got := len(rec.errors()) > 0; got != tc.testFails {
				t.Errorf("test failure reported = %v (%q), want %v", got, rec.errors(), tc.testFails)
			}
			if tc.status == 202 {
				if len(body) != 0 || resp.Header.Get("X-Message-Id") == "" {
					t.Errorf("202 with body %q and X-Message-Id %q", body, resp.Header.Get("X-Message-Id"))
				}
				if n := len(fake.Accepted()); n != 1 {
					t.Errorf("accepted %d", n)
				}
				return
			}
			var e struct {
				Errors []struct {
					Message string          `json:"message"`
					Field   json.RawMessage `json:"field"`
					Help    json.RawMessage `json:"help"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
				t.Fatalf("error body %s is not SendGrid's shape: %v", body, err)
			}
			if !strings.Contains(e.Errors[0].Message, tc.message) {
				t.Errorf("message %q lacks %q", e.Errors[0].Message, tc.message)
			}
			if tc.status == 401 && string(body) != `{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]}` {
				t.Errorf("401 body = %s", body)
			}
			if n := len(fake.Accepted()); n != 0 {
				t.Errorf("accepted %d", n)
			}
			if fake.Requests() != 1 {
				t.Errorf("requests = %d, want 1", fake.Requests())
			}
		})
	}
}

func TestSendGridFakeFaults(t *testing.T) {
	t.Parallel()
	fake := NewSendGrid(t, sendGridTestKey)
	fake.FailNext(1, http.StatusTooManyRequests)
	fake.FailNext(1, http.StatusServiceUnavailable)

	resp, _ := postSendGrid(t, fake.URL(), "POST", "/v3/mail/send", sendGridTestKey, "application/json", validSendGridBody)
	if resp.StatusCode != 429 || resp.Header.Get("X-RateLimit-Remaining") != "0" || resp.Header.Get("X-RateLimit-Limit") == "" {
		t.Errorf("429 answer: %d %v", resp.StatusCode, resp.Header)
	}
	if want := fmt.Sprint(fake.LastRateLimitReset().Unix()); resp.Header.Get("X-RateLimit-Reset") != want {
		t.Errorf("X-RateLimit-Reset = %q, want %q", resp.Header.Get("X-RateLimit-Reset"), want)
	}
	if resp, _ := postSendGrid(t, fake.URL(), "POST", "/v3/mail/send", sendGridTestKey, "application/json", validSendGridBody); resp.StatusCode != 503 {
		t.Errorf("second status = %d, want 503", resp.StatusCode)
	}
	fake.Reject(http.StatusForbidden, "access forbidden")
	if resp, body := postSendGrid(t, fake.URL(), "POST", "/v3/mail/send", sendGridTestKey, "application/json", validSendGridBody); resp.StatusCode != 403 || !strings.Contains(string(body), "access forbidden") {
		t.Errorf("rejected answer: %d %s", resp.StatusCode, body)
	}
	fake.Reject(0, "")
	resp, _ = postSendGrid(t, fake.URL(), "POST", "/v3/mail/send", sendGridTestKey, "application/json", validSendGridBody)
	if resp.StatusCode != 202 {
		t.Errorf("after faults: %d, want 202", resp.StatusCode)
	}
	mails := fake.Accepted()
	if len(mails) != 1 || fake.Requests() != 4 {
		t.Fatalf("accepted %d of %d requests, want 1 of 4", len(mails), fake.Requests())
	}
	m := mails[0]
	if m.Subject != "Confirmed" || m.Text != "hi" || m.HTML != "<p>hi</p>" || m.CustomArgs["registration_id"] != "reg-1" ||
		len(m.To) != 1 || m.To[0].Email != "ada@example.org" || m.From.Name != "GopherFest" {
		t.Errorf("recorded %+v", m)
	}
}

func TestSendGridFakeRecordsReplyToAndAttachments(t *testing.T) {
	t.Parallel()
	fake := NewSendGrid(t, sendGridTestKey)
	body := withExtras(`"reply_to":{"email":"hello@gopherfest.example","name":"GopherFest e.V."},` +
		`"attachments":[{"content":"` + icsBase64 + `","type":"text/calendar","filename":"gopherfest-2027.ics"}]`)
	if resp, b := postSendGrid(t, fake.URL(), "POST", "/v3/mail/send", sendGridTestKey, "application/json", body); resp.StatusCode != 202 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	mails := fake.Accepted()
	if len(mails) != 1 {
		t.Fatalf("accepted %d", len(mails))
	}
	m := mails[0]
	if m.ReplyTo == nil || *m.ReplyTo != (SendGridAddress{Email: "hello@gopherfest.example", Name: "GopherFest e.V."}) {
		t.Errorf("reply_to = %+v", m.ReplyTo)
	}
	want := SendGridAttachment{Filename: "gopherfest-2027.ics", Type: "text/calendar", Disposition: "attachment",
		Content: []byte("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")}
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != want.Filename || m.Attachments[0].Type != want.Type ||
		m.Attachments[0].Disposition != want.Disposition || string(m.Attachments[0].Content) != string(want.Content) {
		t.Errorf("attachments = %+v, want [%+v]", m.Attachments, want)
	}
}
