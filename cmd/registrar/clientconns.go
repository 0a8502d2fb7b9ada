package main

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// refusedLogEvery is how often, at most, the refusals of one client are
// logged: a client opening connections in a loop gets one line per
// interval with the count, not one per connection.
const refusedLogEvery = time.Minute

// capPerClient lets each client hold at most n of ln's connections open at
// once (n <= 0: no cap). A client is an IPv4 address, or an IPv6 /64 (the
// smallest network one subscriber usually gets, so stepping through the
// addresses of one's own network gives no more). A connection beyond the
// cap is closed as soon as it is accepted, before a byte is read: a client
// trickling its requests byte by byte, each connection waiting out the
// server's header and body timeouts, holds at most n of the process's
// connection slots instead of all of them.
func capPerClient(ln net.Listener, n int, log *slog.Logger) net.Listener {
	if n <= 0 {
		return ln
	}
	return &clientCapListener{Listener: ln, max: n, log: log, now: time.Now, clients: map[netip.Prefix]*clientConns{}}
}

// clientCapListener is a net.Listener counting each client's open
// connections.
type clientCapListener struct {
	net.Listener
	max int
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	clients map[netip.Prefix]*clientConns
	swept   time.Time
}

// clientConns is what is known of one client.
type clientConns struct {
	open    int
	refused int       // connections closed since the last log line
	logged  time.Time // when its refusals were last logged
}

// Accept returns the next connection of a client under its cap, closing
// those of clients at theirs on the way.
func (l *clientCapListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, ok := clientOf(c.RemoteAddr())
		if !ok {
			return c, nil // not an IP connection: nothing to count by
		}
		if l.admit(key) {
			return &clientConn{Conn: c, release: func() { l.release(key) }}, nil
		}
		// A reset rather than a graceful close: nothing of the connection
		// lingers in the kernel either.
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// admit counts a new connection of key, or reports that key is at the cap.
func (l *clientCapListener) admit(key netip.Prefix) bool {
	now := l.now()
	l.mu.Lock()
	l.sweep(now)
	cl := l.clients[key]
	if cl == nil {
		cl = &clientConns{}
		l.clients[key] = cl
	}
	if cl.open < l.max {
		cl.open++
		l.mu.Unlock()
		return true
	}
	cl.refused++
	refused := 0
	if now.Sub(cl.logged) >= refusedLogEvery {
		refused, cl.refused, cl.logged = cl.refused, 0, now
	}
	l.mu.Unlock()
	if refused > 0 {
		client := key.String()
		if key.Addr().Is4() {
			client = key.Addr().String()
		}
		l.log.Warn("closed connections of a client holding the most it may",
			"client", client, "refused", refused, "max_conns_per_client", l.max,
			"fix", "REGISTRAR_MAX_CONNS_PER_CLIENT=0 when registrar is behind a proxy, which is then the one limiting")
	}
	return false
}

// release counts the end of a connection of key.
func (l *clientCapListener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cl := l.clients[key]
	if cl == nil {
		return
	}
	if cl.open--; cl.open <= 0 && cl.refused == 0 && l.now().Sub(cl.logged) >= refusedLogEvery {
		delete(l.clients, key)
	}
}

// sweep forgets, once per refusedLogEvery, the clients without open
// connections whose refusals are logged and old; l.mu is held.
func (l *clientCapListener) sweep(now time.Time) {
	if now.Sub(l.swept) < refusedLogEvery {
		return
	}
	l.swept = now
	for key, cl := range l.clients {
		if cl.open <= 0 && now.Sub(cl.logged) >= refusedLogEvery {
			delete(l.clients, key)
		}
	}
}

// clientOf is the client an address belongs to: the IPv4 address (an
// IPv4-mapped IPv6 one included), or the /64 of an IPv6 address.
func clientOf(addr net.Addr) (netip.Prefix, bool) {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(addr.String()); err != nil {
			return netip.Prefix{}, false
		}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// clientConn gives its client's count back on its first Close.
type clientConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite passes the TCP half-close through, as limitedConn does.
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
