package sendgrid

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/providertest"
)

const testKey = "SG.test-key.0123456789abcdefghij"

func testMessage() email.Message {
	return email.Message{
		ID:      "reg-42",
		From:    email.Address{Name: "GopherFest", Email: "tickets@gopherfest.example"},
		To:      email.Address{Name: "Ada Lovelace", Email: "ada@example.org"},
		Subject: "Your ticket for GopherFest 2027 – confirmed",
		Date:    time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC),
		Text:    "Hello Ada,\nyou are registered. Größe: L\n",
		HTML:    "<p>Hello Ada,</p><p>you are registered.</p>",
		Headers: map[string]string{"X-Registration-ID": "reg-42"},
	}
}

type permanent interface{ Permanent() bool }
type retryAfter interface{ RetryAfter() time.Duration }

func isPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) && p.Permanent()
}

func checkNoKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testKey) {
		t.Errorf("error text contains the API key: %v", err)
	}
}

func TestSendSuccess(t *testing.T) {
	t.Parallel()
	fake := providertest.NewSendGrid(t, testKey)
	c := New(fake.URL(), testKey, nil)

	ref, err := c.Send(t.Context(), testMessage())
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := fake.Accepted()
	if len(got) != 1 {
		t.Fatalf("accepted %d messages, want 1", len(got))
	}
	mail := got[0]
	if ref == "" || ref != mail.MessageID {
		t.Errorf("reference = %q, want the X-Message-Id %q", ref, mail.MessageID)
	}
	m := testMessage()
	if mail.From != (providertest.SendGridAddress{Email: m.From.Email, Name: m.From.Name}) {
		t.Errorf("from = %+v", mail.From)
	}
	if len(mail.To) != 1 || mail.To[0] != (providertest.SendGridAddress{Email: m.To.Email, Name: m.To.Name}) {
		t.Errorf("to = %+v", mail.To)
	}
	if mail.Subject != m.Subject {
		t.Errorf("subject = %q, want %q", mail.Subject, m.Subject)
	}
	if mail.Text != m.Text || mail.HTML != m.HTML {
		t.Errorf("content = %q / %q, want %q / %q", mail.Text, mail.HTML, m.Text, m.HTML)
	}
	if got := mail.CustomArgs["registration_id"]; got != "reg-42" {
		t.Errorf("custom_args.registration_id = %q, want reg-42 (custom_args %v)", got, mail.CustomArgs)
	}
	if got := mail.Headers["Message-ID"]; got != "<reg-42@gopherfest.example>" {
		t.Errorf("Message-ID header = %q", got)
	}
	if got := mail.Headers["X-Registration-ID"]; got != "reg-42" {
		t.Errorf("X-Registration-ID header = %q", got)
	}
	if strings.Index(string(mail.Body), `"text/plain"`) > strings.Index(string(mail.Body), `"text/html"`) {
		t.Errorf("text/plain is not the first content: %s", mail.Body)
	}
}

func TestSendRecipientNameAndRegistrationID(t *testing.T) {
	t.Parallel()
	fake := providertest.NewSendGrid(t, testKey)
	c := New(fake.URL(), testKey, nil)
	m := testMessage()
	m.ID = "message-7"
	m.To.Name = "Lovelace, Ada; Countess"
	m.Headers = map[string]string{"X-Registration-Id": "reg-7"}
	m.ReplyTo = email.Address{Name: "Help", Email: "help@gopherfest.example"}
	if _, err := c.Send(t.Context(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	mail := fake.Accepted()[0]
	if got := mail.To[0].Name; got != "Lovelace Ada Countess" {
		t.Errorf("to.name = %q", got)
	}
	if got := mail.CustomArgs["registration_id"]; got != "reg-7" {
		t.Errorf("custom_args.registration_id = %q, want the header's reg-7", got)
	}
	if mail.ReplyTo == nil || mail.ReplyTo.Email != "help@gopherfest.example" || mail.ReplyTo.Name != "Help" {
		t.Errorf("reply_to = %+v", mail.ReplyTo)
	}
	if _, ok := mail.Headers["Reply-To"]; ok {
		t.Error("Reply-To was sent as a header")
	}
}

// TestSendReceipt: the rendered confirmation goes out with its Reply-To as
// reply_to and its invitation as an attachment, and the strict fake accepts
// the request.
func TestSendReceipt(t *testing.T) {
	t.Parallel()
	fake := providertest.NewSendGrid(t, testKey)
	r, err := email.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Render(email.Confirmation{
		RegistrationID: "7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10", AttendeeFirstName: "Ada", AttendeeLastName: "Lovelace",
		AttendeeEmail: "ada@example.org", TicketName: "Standard", Amount: "149.00", Currency: "EUR",
		EventName: "GopherFest 2027", EventStart: time.Date(2027, 6, 10, 9, 0, 0, 0, time.FixedZone("", 2*60*60)),
		Venue: "Kulturbrauerei, Berlin", StatusURL: "http://localhost:8080/registrations/7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f10",
		CardBrand: "visa", CardLast4: "1111", PaymentReference: "8MC585209K746392H",
		Organiser: email.Organiser{Name: "GopherFest e.V.", Email: "hello@gopherfest.example"},
	}, email.Address{Name: "GopherFest", Email: "tickets@gopherfest.example"}, time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(fake.URL(), testKey, nil).Send(t.Context(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := fake.Accepted()
	if len(got) != 1 {
		t.Fatalf("accepted %d messages", len(got))
	}
	mail := got[0]
	if mail.ReplyTo == nil || *mail.ReplyTo != (providertest.SendGridAddress{Email: "hello@gopherfest.example", Name: "GopherFest e.V."}) {
		t.Errorf("reply_to = %+v", mail.ReplyTo)
	}
	if len(mail.Attachments) != 1 {
		t.Fatalf("attachments = %+v, want the invitation", mail.Attachments)
	}
	a := mail.Attachments[0]
	if a.Filename != "gopherfest-2027.ics" || a.Type != "text/calendar" || a.Disposition != "attachment" ||
		!bytes.Equal(a.Content, m.Attachments[0].Data) {
		t.Errorf("attachment = %q %q %q (%d bytes)", a.Filename, a.Type, a.Disposition, len(a.Content))
	}
	if !strings.Contains(string(a.Content), "METHOD:PUBLISH\r\n") {
		t.Errorf("the invitation lost its method:\n%s", a.Content)
	}
	if !strings.Contains(mail.Text, "€149.00") || !strings.Contains(mail.HTML, "8MC585209K746392H") {
		t.Errorf("the receipt is not in the content")
	}
	if _, ok := mail.Headers["Reply-To"]; ok {
		t.Error("Reply-To was sent as a header")
	}
}

func TestSendRetriesUntilAccepted(t *testing.T) {
	t.Parallel()
	fake := providertest.NewSendGrid(t, testKey)
	fake.FailNext(1, http.StatusInternalServerError)
	fake.FailNext(1, http.StatusTooManyRequests)
	c := New(fake.URL(), testKey, nil)

	var errs []error
	var ref string
	for attempt := 0; attempt < 5; attempt++ {
		var err error
		ref, err = c.Send(t.Context(), testMessage())
		if err == nil {
			break
		}
		checkNoKey(t, err)
		if isPermanent(err) {
			t.Fatalf("attempt %d: permanent error %v", attempt, err)
		}
		errs = append(errs, err)
		// A real caller would wait (RetryAfter or backoff); the fake does
		// not enforce the wait.
	}
	if len(errs) != 2 {
		t.Fatalf("errors = %v, want a 500 then a 429", errs)
	}
	var ra retryAfter
	if errors.As(errs[0], &ra) {
		t.Errorf("500 looks like a rate limit: %v", errs[0])
	}
	if !errors.As(errs[1], &ra) {
		t.Errorf("429 has no RetryAfter: %v", errs[1])
	}
	if got := fake.Accepted(); len(got) != 1 || got[0].MessageID != ref {
		t.Fatalf("accepted %+v with reference %q, want exactly one message", got, ref)
	}
	if got := fake.Requests(); got != 3 {
		t.Errorf("requests = %d, want 3", got)
	}
}

func TestSendRateLimitWaitsForReset(t *testing.T) {
	t.Parallel()
	fake := providertest.NewSendGrid(t, testKey)
	fake.FailNext(1, http.StatusTooManyRequests)
	c := New(fake.URL(), testKey, nil)
	now := time.Now().Truncate(time.Second)
	c.now = func() time.Time { return now }

	_, err := c.Send(t.Context(), testMessage())
	var ra retryAfter
	if !errors.As(err, &ra) {
		t.Fatalf("err = %v, want a RetryAfter error", err)
	}
	if isPermanent(err) {
		t.Errorf("429 is permanent: %v", err)
	}
	want := fake.LastRateLimitReset().Sub(now)
	if got := ra.RetryAfter(); got != want || got <= 0 {
		t.Errorf("RetryAfter = %v, want %v (X-RateLimit-Reset %v)", got, want, fake.LastRateLimitReset())
	}
	if !strings.Contains(err.Error(), "too many requests") {
		t.Errorf("error %q lacks the provider message", err)
	}
}

func TestRateLimitWaitHeaders(t *testing.T) {
	t.Parallel()
	now := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	c := New("http://unused.invalid", testKey, nil)
	c.now = func() time.Time { return now }
	cases := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"reset", http.Header{"X-Ratelimit-Reset": {"1799143205"}}, time.Unix(1799143205, 0).Sub(now)},
		{"reset in the past", http.Header{"X-Ratelimit-Reset": {"1"}}, 0},
		{"retry-after seconds", http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{"retry-after date", http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"nothing", http.Header{}, time.Second},
	}
	for _, tc := range cases {
		if got := c.rateLimitWait(tc.header); got != tc.want {
			t.Errorf("%s: wait = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSendPermanentRejections(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		status  int
		message string
		key     string
	}{
		{"400 validation", http.StatusBadRequest, "The to email parameter is required.", testKey},
		{"401 revoked key", http.StatusUnauthorized, "The provided authorization grant is invalid, expired, or revoked", testKey},
		{"401 wrong key", 0, "The provided authorization grant is invalid, expired, or revoked", "SG.wrong-key.zzzzzz"},
		{"403 unverified sender", http.StatusForbidden, "The from address does not match a verified Sender Identity.", testKey},
		{"413 too large", http.StatusRequestEntityTooLarge, "content too large", testKey},
		{"400 echoing the key", http.StatusBadRequest, "bad key " + testKey, testKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewSendGrid(t, testKey)
			if tc.status != 0 {
				fake.Reject(tc.status, tc.message)
			}
			c := New(fake.URL(), tc.key, nil)
			_, err := c.Send(t.Context(), testMessage())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if !isPermanent(err) {
				t.Errorf("error is not permanent: %v", err)
			}
			var ra retryAfter
			if errors.As(err, &ra) {
				t.Errorf("permanent error has RetryAfter: %v", err)
			}
			wantMsg := strings.ReplaceAll(tc.message, testKey, "[redacted]")
			if !strings.Contains(err.Error(), wantMsg) {
				t.Errorf("error %q lacks the provider message %q", err, wantMsg)
			}
			checkNoKey(t, err)
			if strings.Contains(err.Error(), tc.key) {
				t.Errorf("error text contains the key used: %v", err)
			}
			if n := len(fake.Accepted()); n != 0 {
				t.Errorf("accepted %d messages", n)
			}
		})
	}
}

func TestSendTransientFailures(t *testing.T) {
	t.Parallel()
	t.Run("5xx", func(t *testing.T) {
		t.Parallel()
		for _, status := range []int{500, 502, 503} {
			fake := providertest.NewSendGrid(t, testKey)
			fake.FailNext(1, status)
			_, err := New(fake.URL(), testKey, nil).Send(t.Context(), testMessage())
			if err == nil || isPermanent(err) {
				t.Errorf("%d: err = %v, want a transient error", status, err)
			}
			checkNoKey(t, err)
		}
	})
	t.Run("client timeout", func(t *testing.T) {
		t.Parallel()
		fake := providertest.NewSendGrid(t, testKey)
		fake.SetLatency(2 * time.Second)
		c := New(fake.URL(), testKey, &http.Client{Timeout: 100 * time.Millisecond})
		_, err := c.Send(t.Context(), testMessage())
		if err == nil || isPermanent(err) {
			t.Fatalf("err = %v, want a transient error", err)
		}
		var ra retryAfter
		if errors.As(err, &ra) {
			t.Errorf("timeout has RetryAfter: %v", err)
		}
		checkNoKey(t, err)
	})
	t.Run("context deadline", func(t *testing.T) {
		t.Parallel()
		fake := providertest.NewSendGrid(t, testKey)
		fake.SetLatency(2 * time.Second)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := New(fake.URL(), testKey, nil).Send(ctx, testMessage())
		if err == nil || isPermanent(err) {
			t.Fatalf("err = %v, want a transient error", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, err := New(url, testKey, nil).Send(t.Context(), testMessage())
		if err == nil || isPermanent(err) {
			t.Fatalf("err = %v, want a transient error", err)
		}
		checkNoKey(t, err)
	})
}

func TestSendWithoutMessageIDHeader(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	ref, err := New(srv.URL, testKey, nil).Send(t.Context(), testMessage())
	if err != nil {
		t.Fatal(err)
	}
	if ref != "<reg-42@gopherfest.example>" {
		t.Errorf("reference = %q, want the Message-ID", ref)
	}
}

// A 202 whose body then stalls is a sent message at once: the send does not
// wait for the body (to time out, be retried and send the email twice).
func TestSendAcceptedWithStalledBody(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Message-Id", "stalled-202")
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusAccepted)
		w.(http.Flusher).Flush()
		<-release // the body never comes while the send waits
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	type result struct {
		ref string
		err error
	}
	done := make(chan result, 1)
	go func() {
		ref, err := New(srv.URL, testKey, nil).Send(t.Context(), testMessage())
		done <- result{ref, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.ref != "stalled-202" {
			t.Errorf("Send = %q, %v; want the message id of the 202", r.ref, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Send waited for the body of a 202")
	}
}

func TestSendRejectsInvalidMessageWithoutRequest(t *testing.T) {
	t.Parallel()
	cases := map[string]func(*email.Message){
		"CRLF in subject":      func(m *email.Message) { m.Subject = "Hi\r\nBcc: victim@example.net" },
		"LF in recipient name": func(m *email.Message) { m.To.Name = "Ada\nBcc: victim@example.net" },
		"CR in sender name":    func(m *email.Message) { m.From.Name = "GopherFest\rX-Evil: 1" },
		"CRLF in header value": func(m *email.Message) { m.Headers["X-Registration-ID"] = "reg-42\r\nBcc: x@example.net" },
		"missing text":         func(m *email.Message) { m.Text = "" },
		"reserved header":      func(m *email.Message) { m.Headers["DKIM-Signature"] = "v=1" },
		"Reply-To as a header": func(m *email.Message) { m.Headers["Reply-To"] = "help@gopherfest.example" },
		"invalid reply-to":     func(m *email.Message) { m.ReplyTo = email.Address{Email: "help"} },
		"attachment name with a path": func(m *email.Message) {
			m.Attachments = []email.Attachment{{Filename: "../a.ics", ContentType: "text/calendar", Data: []byte("x")}}
		},
		"empty attachment": func(m *email.Message) {
			m.Attachments = []email.Attachment{{Filename: "a.ics", ContentType: "text/calendar"}}
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewSendGrid(t, testKey)
			m := testMessage()
			mutate(&m)
			_, err := New(fake.URL(), testKey, nil).Send(t.Context(), m)
			if !isPermanent(err) {
				t.Fatalf("err = %v, want a permanent error", err)
			}
			if !errors.Is(err, email.ErrInvalidMessage) {
				t.Errorf("err = %v, want it to wrap email.ErrInvalidMessage", err)
			}
			if n := fake.Requests(); n != 0 {
				t.Errorf("the fake received %d requests, want 0", n)
			}
		})
	}
}

// Sends in flight together reuse their connections afterwards: later waves
// open none beyond what a wave needs at once (net/http's default keeps only 2
// idle per host).
func TestConnectionsAreReused(t *testing.T) {
	t.Parallel()
	fake := providertest.NewSendGrid(t, testKey)
	fake.SetLatency(20 * time.Millisecond)
	c := New(fake.URL(), testKey, nil)
	const inFlight = 40
	wave := func() {
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				if _, err := c.Send(t.Context(), testMessage()); err != nil {
					t.Errorf("Send: %v", err)
				}
			})
		}
		wg.Wait()
	}
	wave()
	first := fake.Connections()
	if first < 2 || first > inFlight {
		t.Fatalf("first wave opened %d connections; want from 2 to %d", first, inFlight)
	}
	wave()
	wave()
	// Kept connections serve the later waves: however the sends of a wave
	// overlap on a busy machine, no more are ever open than are in flight
	// at once (a pool of 2 would open dozens more per wave).
	if got := fake.Connections(); got > inFlight {
		t.Errorf("%d connections after three waves of %d sends (the first opened %d); want at most %d", got, inFlight, first, inFlight)
	}
}
