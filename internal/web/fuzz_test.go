package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
)

// jsonKeysOnce reports whether every object in data names each key once,
// exactly as spelled — found with encoding/json's tokenizer, independently
// of the strict decoder.
func jsonKeysOnce(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return errors.Is(err, io.EOF)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{object: d == '{', keys: map[string]bool{}, key: d == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].key = true
				}
			}
			continue
		}
		if top != nil && top.object {
			if top.key {
				s := tok.(string)
				if top.keys[s] {
					return false
				}
				top.keys[s] = true
			}
			top.key = !top.key
		}
	}
}

// FuzzDecodeRequest: the API's decoder never panics; what it accepts is
// valid UTF-8, names each key once in its exact spelling, and survives a
// round trip unchanged; what it refuses is a 400 (or 413) with a message.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"ticket":"standard","attendee":{"first_name":"Ada","last_name":"Lovelace","email":"ada@example.org"},"billing":{"card":{"number":"4242424242424242","expiry":"12/30","cvc":"123","name":"Ada Lovelace"},"address":{"line1":"1 Main St","city":"London","country":"GB"}},"newsletter":true}`,
		`{"ticket":"standard","ticket":"community"}`,
		`{"TICKET":"community"}`,
		"{\"ticket\":\"st\xffandard\"}",
		`{"ticket":"\ud800"}`,
		`null`, `[]`, `""`, `{}`, `{"billing":null}`, `{"billing":{}}`, `{"newsletter":"yes"}`, `{"x":1}`,
		`{} {}`, `  {"newsletter":true}  `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeRequest(bytes.NewReader(data))
		if err != nil {
			var re *registration.Error
			if !errors.As(err, &re) || re.Code != registration.CodeInvalidRequest && re.Code != registration.CodeRequestTooLarge || re.Message == "" {
				t.Fatalf("decodeRequest(%q) refused with %#v; want a 400 with a message", data, err)
			}
			return
		}
		if !utf8.Valid(data) {
			t.Fatalf("decodeRequest accepted invalid UTF-8 %q", data)
		}
		if !jsonKeysOnce(data) {
			t.Fatalf("decodeRequest accepted a repeated key: %q", data)
		}
		for _, k := range []string{`"TICKET"`, `"Ticket"`, `"Attendee"`, `"EMAIL"`, `"Billing"`} {
			if bytes.Contains(data, []byte(k+":")) || bytes.Contains(data, []byte(k+" :")) {
				t.Fatalf("decodeRequest accepted the miscased key %s in %q", k, data)
			}
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeRequest(bytes.NewReader(again))
		if err != nil {
			t.Fatalf("the re-encoding %s of an accepted body is refused: %v", again, err)
		}
		if !reflect.DeepEqual(back, req) {
			t.Fatalf("round trip changed the request: %+v, then %+v", req, back)
		}
	})
}

// The decoder's refusals, one by one, with what the client reads.
func TestDecodeRequestRefusesAmbiguity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		{"duplicate ticket", `{"ticket":"standard","ticket":"community"}`, `"ticket" appears twice`},
		{"duplicate nested", `{"ticket":"standard","attendee":{"email":"a@example.org","email":"b@example.org"}}`, `"attendee.email" appears twice`},
		{"upper case", `{"TICKET":"community"}`, `"TICKET" is spelled "ticket"`},
		{"mixed case nested", `{"ticket":"standard","billing":{"Card":{}}}`, `"billing.Card" is spelled "billing.card"`},
		{"invalid UTF-8", "{\"ticket\":\"standard\",\"attendee\":{\"first_name\":\"Ad\xe9\"}}", "not valid UTF-8"},
		{"lone surrogate", `{"ticket":"standard","attendee":{"first_name":"\udead"}}`, "surrogate"},
		{"unknown", `{"ticket":"standard","price":"0.00"}`, `"price" is not part`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeRequest(strings.NewReader(tc.body))
			var re *registration.Error
			if !errors.As(err, &re) || re.Code != registration.CodeInvalidRequest || !strings.Contains(re.Message, tc.want) {
				t.Errorf("decodeRequest(%q) = %v; want invalid_request with %q", tc.body, err, tc.want)
			}
		})
	}
}

// FuzzFormRequest: the form's reader never panics; a field sent twice is
// refused; a form it accepts and finds valid is the same registration the
// API would take (the same request, the same verdict); the card number never
// appears in what the attendee is told; a free ticket carries no billing.
func FuzzFormRequest(f *testing.F) {
	ev, err := event.Parse(fmt.Appendf(nil, testEventJSON, 100))
	if err != nil {
		f.Fatal(err)
	}
	valid := url.Values{
		"ticket": {"standard"}, "attendee.first_name": {"Ada"}, "attendee.last_name": {"Lovelace"},
		"attendee.email": {"ada@example.org"}, "billing.card.name": {"Ada Lovelace"},
		"billing.card.number": {"4242 4242 4242 4242"}, "billing.card.expiry": {"12 / 30"}, "billing.card.cvc": {"123"},
		"billing.address.line1": {"1 Main St"}, "billing.address.city": {"London"}, "billing.address.country": {"GB"},
		"newsletter": {"yes"}, "submission_key": {"01J0000000000000000000000"},
	}
	for _, s := range []string{
		valid.Encode(),
		"ticket=community&attendee.first_name=Ada&attendee.last_name=L&attendee.email=a%40example.org",
		"ticket=standard&ticket=community",
		"attendee.first_name=Ada+%E2%80%AEgnp.exe&ticket=community",
		"attendee.first_name=%FF%FE&billing.card.number=4242424242424242",
		"billing.card.expiry=2030-12&billing.card.cvc=12345",
		"%zz=1", "", "&&&=",
	} {
		f.Add(s)
	}
	now := time.Date(2026, time.June, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if r.ParseForm() != nil {
			return
		}
		if f := repeatedField(r); f != "" {
			if len(r.PostForm[f]) < 2 {
				t.Fatalf("repeatedField named %s, sent %d times", f, len(r.PostForm[f]))
			}
			return
		}
		values, newsletter, _ := typed(r)
		req := requestFromForm(ev, values, newsletter)
		if tk, ok := ev.Ticket(req.Ticket); ok && tk.Free() && req.Billing != nil {
			t.Fatalf("a free ticket's form carries billing: %+v", req.Billing)
		}
		req.Normalize()
		fields := req.Validate(ev, now)
		// A card number (12 digits or more) is never quoted; a security
		// code is too short to be told apart from a message's own digits.
		if b := req.Billing; b != nil && len(b.Card.Number) >= 12 {
			for k, msg := range fields {
				if strings.Contains(msg, b.Card.Number) {
					t.Fatalf("the message for %s quotes the card number: %q", k, msg)
				}
			}
		}
		if len(fields) > 0 {
			return
		}
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		api, err := decodeRequest(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("the API refuses %s, which the form accepted: %v", data, err)
		}
		api.Normalize()
		if got := api.Validate(ev, now); len(got) > 0 {
			t.Fatalf("the API finds %v in %s, which the form accepted", got, data)
		}
		if !reflect.DeepEqual(api, req) {
			t.Fatalf("the API reads %+v; the form %+v", api, req)
		}
	})
}

// A form field sent twice is refused before anything is charged, as a JSON
// key given twice is: which copy counts would be a guess.
func TestFormRepeatedFieldRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	form := validForm()
	form.Set("submission_key", h.fetchKey())
	form.Add("ticket", "community")
	res := h.postForm(form)
	if res.status != http.StatusBadRequest || !bytes.Contains(res.body, []byte("the field ticket more than once")) {
		t.Fatalf("got %v; want 400 naming the ticket field", res)
	}
	if c := h.counts("standard"); c.Registrations != 0 || c.SeatHolds != 0 || c.Taken != 0 || h.calls.Calls() != 0 {
		t.Errorf("after the refusal: %+v, %d charges; want nothing", c, h.calls.Calls())
	}
}
