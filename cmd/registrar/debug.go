package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// listenDebug opens the listener of REGISTRAR_DEBUG_ADDR.
func listenDebug(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("REGISTRAR_DEBUG_ADDR: cannot listen on %s: %w", addr, err)
	}
	return ln, nil
}

// serveDebug serves the Go runtime profiles (/debug/pprof/) on their own
// listener, which operators bind to a private address. It returns a function
// that stops the server.
func serveDebug(ln net.Listener, log *slog.Logger) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving profiles", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	return func() { srv.Close() }
}
