package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/strictjson"
)

type inner struct {
	Number string `json:"number"`
	CVC    string `json:"cvc"`
}

type outer struct {
	Ticket string            `json:"ticket"`
	Card   *inner            `json:"card,omitempty"`
	Items  []inner           `json:"items"`
	Labels map[string]string `json:"labels"`
	Any    any               `json:"any"`
	Flag   bool              `json:"flag"`
}

func TestRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body, want string
	}{
		{"duplicate key", `{"ticket":"standard","ticket":"community"}`, `"ticket" appears twice`},
		{"duplicate nested", `{"card":{"number":"1","number":"2"}}`, `"card.number" appears twice`},
		{"duplicate in array element", `{"items":[{"cvc":"1"},{"cvc":"1","cvc":"2"}]}`, `"items[1].cvc" appears twice`},
		{"duplicate in map", `{"labels":{"a":"1","a":"2"}}`, `"labels.a" appears twice`},
		{"duplicate in any", `{"any":{"x":{"y":1,"y":2}}}`, `"any.x.y" appears twice`},
		{"duplicate spelled with an escape", `{"ticket":"a","tick\u0065t":"b"}`, `appears twice`},
		{"other case", `{"TICKET":"standard"}`, `"TICKET" is spelled "ticket"`},
		{"other case nested", `{"card":{"Number":"1"}}`, `"card.Number" is spelled "card.number"`},
		{"unknown", `{"price":0}`, `"price" is not part`},
		{"invalid UTF-8 in a value", "{\"ticket\":\"st\xffandard\"}", "not valid UTF-8"},
		{"invalid UTF-8 in a key", "{\"tick\xc3et\":\"x\"}", "not valid UTF-8"},
		{"overlong encoding", "{\"ticket\":\"\xc0\xaf\"}", "not valid UTF-8"},
		{"lone high surrogate", `{"ticket":"\ud800"}`, "surrogate"},
		{"lone low surrogate", `{"ticket":"\udc00x"}`, "surrogate"},
		{"high surrogate then text", `{"ticket":"\ud83dx\ude00"}`, "surrogate"},
		{"trailing value", `{"ticket":"a"} {}`, "nothing after it"},
		{"trailing garbage", `{"ticket":"a"}x`, "nothing after it"},
		{"cut short", `{"ticket":"a"`, "cut short"},
		{"empty", ``, "cut short"},
		{"raw control in string", "{\"ticket\":\"a\tb\"}", "control character"},
		{"bad escape", `{"ticket":"\x41"}`, "not valid JSON"},
		{"bad number", `{"flag":01}`, "not valid JSON"},
		{"too deep", `{"any":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "deeper than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var v outer
			err := strictjson.Unmarshal([]byte(tc.body), &v)
			var e *strictjson.Error
			if !errors.As(err, &e) || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("Unmarshal(%q) = %v; want a refusal containing %q", tc.body, err, tc.want)
			}
			if v.Ticket != "" || v.Card != nil {
				t.Errorf("a refused body changed the value: %+v", v)
			}
		})
	}
}

func TestAccepts(t *testing.T) {
	t.Parallel()
	body := `{ "ticket" : "st\u00e9ndard \ud83d\ude00 é", "card": {"number":"4111","cvc":"123"},
		"items": [{"number":"1"}, {"number":"1"}], "labels": {"a":"1","A":"2"},
		"any": {"x": [1, -2.5e3, true, null, "y"]}, "flag": false }`
	var got outer
	if err := strictjson.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	var want outer
	if err := json.Unmarshal([]byte(body), &want); err != nil {
		t.Fatal(err)
	}
	if got.Ticket != "sténdard 😀 é" || got.Card == nil || got.Card.CVC != "123" || len(got.Items) != 2 || got.Labels["A"] != "2" {
		t.Errorf("Unmarshal = %+v", got)
	}
	if g, w := must(json.Marshal(got)), must(json.Marshal(want)); g != w {
		t.Errorf("strict decode %s differs from encoding/json's %s", g, w)
	}
	for _, b := range []string{`null`, `{}`, `[]`, `"x"`, `0`, `-0.5E+2`, " \n{\"flag\":true}\r\n\t"} {
		var v any
		if err := strictjson.Check([]byte(b), nil); err != nil {
			t.Errorf("Check(%q) = %v", b, err)
		}
		if err := json.Unmarshal([]byte(b), &v); err != nil {
			t.Errorf("encoding/json refuses %q: %v", b, err)
		}
	}
}

// A value of the wrong type is encoding/json's own error.
func TestTypeErrorsComeFromEncodingJSON(t *testing.T) {
	t.Parallel()
	var v outer
	var typ *json.UnmarshalTypeError
	if err := strictjson.Unmarshal([]byte(`{"flag":"yes"}`), &v); !errors.As(err, &typ) {
		t.Errorf("Unmarshal of a string into a bool: %v; want *json.UnmarshalTypeError", err)
	}
	if err := strictjson.Unmarshal([]byte(`{}`), v); err == nil {
		t.Error("Unmarshal into a non-pointer succeeded")
	}
}

func must(b []byte, err error) string {
	if err != nil {
		panic(err)
	}
	return string(b)
}

// FuzzCheck: Check never panics, and whatever it accepts encoding/json
// reads too, to the same value as a generic decode.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"ticket":"a"}`, `{"a":1,"a":2}`, `[1,{"b":[null]}]`, `"\ud800"`, "\xff", `{"x":"\u00e9"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := strictjson.Check(data, nil); err != nil {
			return
		}
		// Numbers as written: a valid one may not fit a float64.
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("Check accepted %q, encoding/json refuses it: %v", data, err)
		}
		// Re-encoded, it is accepted again (no duplicates, valid UTF-8).
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := strictjson.Check(again, nil); err != nil {
			t.Fatalf("Check refuses the re-encoding %q of %q: %v", again, data, err)
		}
	})
}
