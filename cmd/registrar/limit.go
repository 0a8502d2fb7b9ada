package main

import (
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
)

// fileReserve is how many open files are kept back from the HTTP connections
// for everything else the process opens: the SQLite database, its WAL and
// lock files (or PostgreSQL's pool), River's connections, the email and
// mailing-list providers, the outbox files and the debug listener.
const fileReserve = 1000

// connLimit is how many HTTP connections may be open at once under an
// open-file limit of nofile (0: unknown), or 0 for no limit. Each
// registration attempt in flight holds two descriptors, its client's
// connection and one to the payment provider, so the connections get half of
// what the reserve leaves: (nofile - 1000) / 2, e.g. 9,500 under 20,000. A
// limit too small for the whole reserve keeps half of it back instead
// (1,024 gives 256). An unknown or practically unlimited limit (RLIM_INFINITY
// included) gives no cap.
func connLimit(nofile uint64) int {
	if nofile == 0 || nofile > math.MaxInt32 {
		return 0
	}
	reserve := min(fileReserve, nofile/2)
	return max(1, int((nofile-reserve)/2))
}

// maxConns reads the process's open-file limit and logs the connection cap
// it implies; 0 means no cap.
func maxConns(log *slog.Logger) int {
	nofile, err := openFileLimit()
	if err != nil {
		log.Warn("open connections not limited", "err", err)
		return 0
	}
	n := connLimit(nofile)
	if n == 0 {
		log.Info("open connections not limited", "open_file_limit", "unknown or unlimited")
		return 0
	}
	log.Info("limiting open connections", "max_conns", n, "open_file_limit", nofile)
	return n
}

// limitConns lets ln hand out at most n connections at once (n <= 0: no
// limit). Past that, Accept waits for one of them to close, and new clients
// wait in the kernel's accept queue: running out of file descriptors instead
// would fail accepts, the payment provider's dials and, worst, the database's
// file opens after a charge was taken.
//
// Served clients keep their connections open (keep-alive) and would hold
// the slots while others wait: from 90% of the slots taken until half are
// free again, the listener reports itself crowded, and closeWhenCrowded
// then answers with "Connection: close", so each answer frees its slot.
func limitConns(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), closed: make(chan struct{}),
		high: max(1, n*9/10), low: n / 2}
}

// limitListener is a net.Listener whose connections each hold one of the
// slots until closed.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	closed    chan struct{}
	closeOnce sync.Once

	high, low int // slots taken at which it turns crowded, and no longer
	mu        sync.Mutex
	crowded   bool
}

// Crowded reports whether the connections run short.
func (l *limitListener) Crowded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.crowded
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	l.check()
	c, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	return &limitedConn{Conn: c, release: l.release}, nil
}

func (l *limitListener) release() {
	<-l.slots
	l.check()
}

// check notes when the slots taken cross the high or low mark.
func (l *limitListener) check() {
	taken := len(l.slots)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !l.crowded && taken >= l.high:
		l.crowded = true
	case l.crowded && taken <= l.low:
		l.crowded = false
	}
}

// closeWhenCrowded closes each connection after its answer while ln's
// connections run short, instead of keeping it alive for the client's next
// request: the slot goes to a client waiting to be accepted. (Closing idle
// connections at once would race with requests clients are sending on
// them.)
func closeWhenCrowded(h http.Handler, ln net.Listener) http.Handler {
	l, ok := ln.(*limitListener)
	if !ok {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.Crowded() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// Close also ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.closed) })
	return err
}

// limitedConn gives its slot back on its first Close (http.Server may close a
// connection more than once).
type limitedConn struct {
	net.Conn
	releaseOnce sync.Once
	release     func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}

// CloseWrite passes the TCP half-close through the wrapper: http.Server uses
// it, when it finds it, to let a client read an error answer (a 413 to a body
// it did not read) before the connection is closed.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
