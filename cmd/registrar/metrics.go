package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/registrar/registrar/internal/metrics"
)

// listenMetrics opens the listener of REGISTRAR_METRICS_ADDR.
func listenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("REGISTRAR_METRICS_ADDR: cannot listen on %s: %w; choose a free port, or set it to off", addr, err)
	}
	return ln, nil
}

// serveMetrics serves GET /metrics on its own listener, never the public
// one: the metrics show sales. With a token, a scrape must carry it as a
// bearer token. It returns a function that stops the server.
func serveMetrics(ln net.Listener, m *metrics.Metrics, token string, log *slog.Logger) func() {
	srv := &http.Server{
		Handler:           m.Private(token),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics", "token", token != "")
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	return func() { srv.Close() }
}
