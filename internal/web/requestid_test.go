package web

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/registration"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// TestRequestID: every answer names its request's id; a client's valid
// X-Request-Id is kept, any other replaced by a new one.
func TestRequestID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	tests := []struct {
		name, method, path, incoming string
		keep                         bool
	}{
		{name: "none sent: one made", method: http.MethodGet, path: "/healthz"},
		{name: "valid kept", method: http.MethodGet, path: "/healthz", incoming: "lb-7f3a.9_X", keep: true},
		{name: "64 characters kept", method: http.MethodGet, path: "/", incoming: strings.Repeat("a", 64), keep: true},
		{name: "on an API error", method: http.MethodPost, path: "/api/registrations", incoming: "api-1", keep: true},
		{name: "on a 404", method: http.MethodGet, path: "/nowhere", incoming: "nf-1", keep: true},
		{name: "65 characters replaced", method: http.MethodGet, path: "/healthz", incoming: strings.Repeat("a", 65)},
		{name: "space replaced", method: http.MethodGet, path: "/healthz", incoming: "a b"},
		{name: "slash replaced", method: http.MethodGet, path: "/healthz", incoming: "a/b"},
		{name: "non-ASCII replaced", method: http.MethodGet, path: "/healthz", incoming: "réq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := h.forTest(t)
			req := h.newRequest(tt.method, tt.path, "application/json", nil)
			if tt.incoming != "" {
				req.Header.Set("X-Request-Id", tt.incoming)
			}
			res := h.do(req)
			got := res.header.Values("X-Request-Id")
			if len(got) != 1 {
				t.Fatalf("X-Request-Id = %q, want one value", got)
			}
			switch {
			case tt.keep && got[0] != tt.incoming:
				t.Errorf("X-Request-Id = %q, want %q echoed", got[0], tt.incoming)
			case !tt.keep && !generatedID.MatchString(got[0]):
				t.Errorf("X-Request-Id = %q, want a new 16-hex-digit id", got[0])
			}
		})
	}
}

// TestRequestIDOnLogLines: the lines a request causes carry its id, in
// the web layer and in the registration service below it.
func TestRequestIDOnLogLines(t *testing.T) {
	t.Parallel()
	fail := &failingRegistrar{}
	h := newHarness(t, harnessOptions{wrapRegistrar: func(r Registrar) Registrar { fail.Registrar = r; return fail }})

	req := h.newRequest(http.MethodPost, "/api/registrations", "application/json", mustJSON(t, validRequest()))
	req.Header.Set("X-Request-Id", "paid-1")
	if res := h.do(req); res.status != http.StatusAccepted {
		t.Fatalf("register: %v", res)
	}
	fail.fail = true
	req = h.newRequest(http.MethodPost, "/api/registrations", "application/json", mustJSON(t, with(validRequest(), "attendee.email", "b@example.org")))
	req.Header.Set("X-Request-Id", "broken-1")
	if res := h.do(req); res.status != http.StatusInternalServerError {
		t.Fatalf("register: %v, want 500", res)
	}

	for msg, id := range map[string]string{`msg="registration paid"`: "paid-1", `msg="request failed"`: "broken-1"} {
		var line string
		for l := range strings.SplitSeq(h.logs.String(), "\n") {
			if strings.Contains(l, msg) {
				line = l
			}
		}
		if !strings.Contains(line, " request_id="+id) {
			t.Errorf("line %s: %q, want request_id=%s; logs:\n%s", msg, line, id, h.logs)
		}
	}
}

// failingRegistrar fails registrations once fail is set.
type failingRegistrar struct {
	Registrar
	fail bool
}

func (f *failingRegistrar) Register(ctx context.Context, req registration.Request, key string) (string, error) {
	if f.fail {
		return "", errors.New("database is on fire")
	}
	return f.Registrar.Register(ctx, req, key)
}
