package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

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
