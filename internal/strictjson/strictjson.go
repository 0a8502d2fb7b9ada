// Package strictjson decodes JSON the way an API that takes money must: it
// refuses what encoding/json quietly accepts. A body is refused when it is
// not valid UTF-8 (also a lone surrogate escaped as \ud800), when an object
// holds the same key twice at any depth (encoding/json keeps the last one:
// "ticket":"standard","ticket":"community" would book the second), when a
// key matches a field only in another case ("TICKET"), when a key names no
// field, or when anything follows the value.
package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is how deeply arrays and objects may nest.
const MaxDepth = 32

// Error is a body refused for its shape. Message is written for the client.
type Error struct {
	Message string
	Offset  int // byte offset in the body where the problem was found
}

func (e *Error) Error() string { return e.Message }

// Unmarshal checks data strictly against v's type and decodes it into v (a
// non-nil pointer). A refusal is an *Error; a value of the wrong type is
// encoding/json's *json.UnmarshalTypeError, as from json.Unmarshal.
func Unmarshal(data []byte, v any) error {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return fmt.Errorf("strictjson: Unmarshal needs a non-nil pointer, not %T", v)
	}
	if err := Check(data, t.Elem()); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Check reports whether data is one JSON value that decodes into a value of
// type t without anything being dropped, guessed or replaced.
func Check(data []byte, t reflect.Type) error {
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return &Error{Message: "The body is not valid UTF-8 text.", Offset: i}
	}
	s := &scanner{data: data}
	s.space()
	if err := s.value(t, "", 0); err != nil {
		return err
	}
	s.space()
	if s.pos < len(s.data) {
		return s.fail("The body must hold one JSON value and nothing after it.")
	}
	return nil
}

type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) fail(msg string) *Error { return &Error{Message: msg, Offset: s.pos} }

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) syntax() *Error {
	if s.pos >= len(s.data) {
		return s.fail("The body is empty or cut short.")
	}
	return s.fail("The body is not valid JSON (at byte " + strconv.Itoa(s.pos) + ").")
}

// value scans one value meant for type t (nil: anything) at path.
func (s *scanner) value(t reflect.Type, path string, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s.pos >= len(s.data) {
		return s.syntax()
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		if depth >= MaxDepth {
			return s.fail(fmt.Sprintf("The body nests deeper than %d levels.", MaxDepth))
		}
		return s.object(t, path, depth+1)
	case c == '[':
		if depth >= MaxDepth {
			return s.fail(fmt.Sprintf("The body nests deeper than %d levels.", MaxDepth))
		}
		return s.array(t, path, depth+1)
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
				s.pos += len(lit)
				return nil
			}
		}
		return s.syntax()
	}
}

func (s *scanner) object(t reflect.Type, path string, depth int) error {
	s.pos++ // {
	var fields map[string]reflect.Type
	var folded map[string]string
	structured := t != nil && t.Kind() == reflect.Struct
	if structured {
		fields, folded = fieldsOf(t)
	}
	seen := map[string]bool{}
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.syntax()
		}
		at := s.pos
		key, err := s.str()
		if err != nil {
			return err
		}
		where := join(path, key)
		if seen[key] {
			return &Error{Message: fmt.Sprintf("The field %q appears twice; give each field once.", where), Offset: at}
		}
		seen[key] = true
		var ft reflect.Type
		if structured {
			var ok bool
			if ft, ok = fields[key]; !ok {
				if want, ok := folded[strings.ToLower(key)]; ok {
					return &Error{Message: fmt.Sprintf("The field %q is spelled %q: field names are case-sensitive.", where, join(path, want)), Offset: at}
				}
				return &Error{Message: fmt.Sprintf("The field %q is not part of the registration format.", where), Offset: at}
			}
		} else if t != nil && t.Kind() == reflect.Map {
			ft = t.Elem()
		}
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.syntax()
		}
		s.pos++
		s.space()
		if err := s.value(ft, where, depth); err != nil {
			return err
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.syntax()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.syntax()
		}
	}
}

func (s *scanner) array(t reflect.Type, path string, depth int) error {
	s.pos++ // [
	var et reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		et = t.Elem()
	}
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		s.space()
		if err := s.value(et, path+"["+strconv.Itoa(i)+"]", depth); err != nil {
			return err
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.syntax()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.syntax()
		}
	}
}

// str scans a string and returns it unescaped. A lone surrogate (an
// escaped half of a UTF-16 pair) is refused: encoding/json would replace
// it with U+FFFD.
func (s *scanner) str() (string, error) {
	s.pos++ // "
	var b strings.Builder
	for {
		if s.pos >= len(s.data) {
			return "", s.syntax()
		}
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return b.String(), nil
		case c < 0x20:
			return "", s.fail("The body is not valid JSON: a string holds a raw control character (at byte " + strconv.Itoa(s.pos) + ").")
		case c == '\\':
			if s.pos+1 >= len(s.data) {
				return "", s.syntax()
			}
			e := s.data[s.pos+1]
			s.pos += 2
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, ok := s.hex4()
				if !ok {
					return "", s.syntax()
				}
				if utf16.IsSurrogate(r) {
					lo, ok := rune(0), false
					if r < 0xDC00 && s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
						s.pos += 2
						lo, ok = s.hex4()
					}
					if !ok || utf16.DecodeRune(r, lo) == utf8.RuneError {
						return "", s.fail("The body is not valid UTF-8 text: it escapes half of a surrogate pair.")
					}
					r = utf16.DecodeRune(r, lo)
				}
				b.WriteRune(r)
			default:
				return "", s.syntax()
			}
		default:
			_, n := utf8.DecodeRune(s.data[s.pos:])
			b.Write(s.data[s.pos : s.pos+n])
			s.pos += n
		}
	}
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	s.pos += 4
	return rune(v), true
}

// number scans a JSON number (RFC 8259 grammar).
func (s *scanner) number() error {
	start := s.pos
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.data[s.pos] == '-' {
		s.pos++
	}
	if s.pos < len(s.data) && s.data[s.pos] == '0' {
		s.pos++
	} else if digits() == 0 {
		s.pos = start
		return s.syntax()
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return s.syntax()
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.syntax()
		}
	}
	return nil
}

// fieldsOf lists a struct's JSON field names (as encoding/json names them,
// embedded structs flattened) with their types, and the lower-cased names.
func fieldsOf(t reflect.Type) (map[string]reflect.Type, map[string]string) {
	fields := map[string]reflect.Type{}
	folded := map[string]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[name] = f.Type
			folded[strings.ToLower(name)] = name
		}
	}
	walk(t)
	return fields, folded
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
