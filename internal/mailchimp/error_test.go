package mailchimp

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2027, 6, 10, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{"999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), 24 * time.Hour},
	}
	for _, tc := range cases {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestResponseError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		status    int
		body      string
		permanent bool
		msg       string
	}{
		{"invalid resource with fields", 400,
			`{"type":"https://mailchimp.com/developer/marketing/docs/errors/","title":"Invalid Resource","status":400,
			  "detail":"The resource submitted could not be validated.","instance":"b8f3",
			  "errors":[{"field":"merge_fields.FNAME","message":"Data did not match"}]}`,
			true, "mailchimp: upsert member: 400 Invalid Resource: The resource submitted could not be validated. (merge_fields.FNAME: Data did not match) [request b8f3]"},
		{"compliance without type", 400,
			`{"title":"Member In Compliance State","status":400,"detail":"x is in a compliance state","instance":""}`,
			true, "mailchimp: upsert member: 400 Member In Compliance State: x is in a compliance state"},
		{"403 with a body is configuration", 403, `{"title":"User Disabled","status":403,"detail":"This account has been disabled."}`,
			true, "403 User Disabled"},
		{"403 without a body is throttling", 403, ``, false, "mailchimp: upsert member: 403 Forbidden"},
		{"405", 405, `{"title":"Method Not Allowed","status":405,"detail":"no"}`, true, "405 Method Not Allowed"},
		{"408", 408, ``, false, "408 Request Timeout"},
		{"500 garbage", 500, `<html>oops</html>`, false, "500 Internal Server Error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := responseError("upsert member", &http.Response{StatusCode: tc.status, Header: http.Header{}}, []byte(tc.body))
			if e.Permanent() != tc.permanent || e.Temporary() == tc.permanent {
				t.Errorf("permanent = %v, want %v", e.Permanent(), tc.permanent)
			}
			if !strings.Contains(e.Error(), tc.msg) {
				t.Errorf("Error() = %q, want it to contain %q", e.Error(), tc.msg)
			}
		})
	}
}

func FuzzResponseError(f *testing.F) {
	f.Add(400, []byte(`{"title":"Invalid Resource","status":400,"detail":"d","errors":[{"field":"f","message":"m"}]}`), "3")
	f.Add(502, []byte(`<html></html>`), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Fuzz(func(t *testing.T, status int, body []byte, retry string) {
		h := http.Header{}
		h.Set("Retry-After", retry)
		e := responseError("op", &http.Response{StatusCode: status, Header: h}, body)
		if e.RetryAfter() < 0 || e.RetryAfter() > 24*time.Hour {
			t.Errorf("RetryAfter = %v for %q", e.RetryAfter(), retry)
		}
		_ = e.Error()
		if status == 429 || status >= 500 {
			if e.Permanent() {
				t.Errorf("%d is permanent", status)
			}
		}
	})
}
