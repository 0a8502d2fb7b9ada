package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestDebugServesProfilesOnly(t *testing.T) {
	t.Parallel()
	ln, err := listenDebug("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveDebug(ln, slog.New(slog.DiscardHandler))
	defer stop()
	base := "http://" + ln.Addr().String()
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/debug/pprof/", http.StatusOK, "goroutine"},
		{"GET", "/debug/pprof/heap?debug=1", http.StatusOK, "heap profile"},
		{"GET", "/debug/pprof/cmdline", http.StatusOK, ""},
		{"POST", "/debug/pprof/cmdline", http.StatusMethodNotAllowed, ""},
		{"GET", "/api/registrations", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, base+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
		if !strings.Contains(string(body), tt.body) {
			t.Errorf("%s %s: body lacks %q", tt.method, tt.path, tt.body)
		}
	}
	if _, err := listenDebug(ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "REGISTRAR_DEBUG_ADDR") {
		t.Errorf("listening twice on %s: err %v, want one naming REGISTRAR_DEBUG_ADDR", ln.Addr(), err)
	}
}
