package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeClock is a settable time for the listener's log interval.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// closedByServer reports whether the server closed c: a read ends with EOF
// or a reset instead of waiting.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// refusedDial reports whether a connection to addr is closed by the
// server at once: reset before the dial returned, or right after.
func refusedDial(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return closedByServer(t, c)
}

// stillOpen reports whether the server kept c open: a short read times out.
func stillOpen(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestCapPerClient checks on real TCP that a client holding the cap's 3
// connections has its 4th closed at once without the server seeing it,
// that closing one of the 3 lets a new one in, that refusals are logged
// once per interval with their count, and that a client with nothing open
// is forgotten.
func TestCapPerClient(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ln := capPerClient(inner, 3, slog.New(slog.NewTextHandler(&logs, nil)))
	defer ln.Close()
	clock := &fakeClock{t: time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)}
	capped := ln.(*clientCapListener)
	capped.now = clock.now
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("connection under the cap not accepted within 10s")
			return nil
		}
	}
	var clients, servers []net.Conn
	for range 3 {
		clients = append(clients, dial())
		servers = append(servers, accept())
	}
	for i := range 4 {
		if !refusedDial(t, inner.Addr().String()) {
			t.Fatalf("connection %d beyond the cap was kept open", 4+i)
		}
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection beyond the cap was handed to the server: %v", c.RemoteAddr())
	default:
	}
	for i, c := range clients {
		if !stillOpen(c) {
			t.Errorf("connection %d under the cap was closed", i+1)
		}
	}
	if n := strings.Count(logs.String(), "closed connections of a client"); n != 1 {
		t.Errorf("%d log lines for 4 refusals within a minute, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "client=127.0.0.1 refused=1 max_conns_per_client=3") {
		t.Errorf("the log line does not name the client, the count and the cap:\n%s", logs.String())
	}

	// One closed (by the server, as http.Server does when its client goes):
	// a new connection is accepted in its place, and a further one refused.
	servers[0].Close()
	servers[0].Close() // a second Close frees nothing more
	servers[0] = nil
	c := dial()
	s := accept()
	defer s.Close()
	if !stillOpen(c) {
		t.Error("the connection in the freed place was closed")
	}
	clock.advance(refusedLogEvery)
	if !refusedDial(t, inner.Addr().String()) {
		t.Fatal("connection beyond the cap kept open after one was replaced")
	}
	if got := logs.String(); strings.Count(got, "closed connections of a client") != 2 ||
		!strings.Contains(got, "client=127.0.0.1 refused=4 ") {
		t.Errorf("a minute later, want a second line counting the 3 unlogged refusals and this one:\n%s", got)
	}

	// Everything closed and a minute gone: the client is forgotten.
	s.Close()
	for _, s := range servers[1:] {
		s.Close()
	}
	clock.advance(refusedLogEvery)
	dial()
	accept().Close()
	capped.mu.Lock()
	n := len(capped.clients)
	capped.mu.Unlock()
	if n != 0 {
		t.Errorf("%d clients remembered after every connection closed, want 0", n)
	}
}

func TestClientOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7:443", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7/32"},
		{"[2001:db8:1:2:aaaa::1]:5000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb:cccc:dddd:eeee]:5001", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:5000", "2001:db8:1:3::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
	} {
		ap := netip.MustParseAddrPort(tc.addr)
		for _, addr := range []net.Addr{net.TCPAddrFromAddrPort(ap), stringAddr(tc.addr)} {
			got, ok := clientOf(addr)
			if !ok || got.String() != tc.want {
				t.Errorf("clientOf(%T %s) = %v, %v; want %s", addr, tc.addr, got, ok, tc.want)
			}
		}
	}
	if p, ok := clientOf(stringAddr("/run/registrar.sock")); ok {
		t.Errorf("clientOf of a Unix socket = %v, want none", p)
	}
}

// stringAddr is a net.Addr of another kind than TCP's.
type stringAddr string

func (a stringAddr) Network() string { return "other" }
func (a stringAddr) String() string  { return string(a) }

// TestCapPerClientServes: with a cap of 4, a client from 127.0.0.1 holding
// 4 connections that trickle a request's headers has its 5th closed, and
// an ordinary request from another address (127.0.0.2) still answers.
func TestCapPerClientServes(t *testing.T) {
	t.Parallel()
	if c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).Dial("tcp", "127.0.0.1:1"); err != nil &&
		strings.Contains(err.Error(), "assign requested address") {
		t.Skip("127.0.0.2 is not a local address here")
	} else if c != nil {
		c.Close()
	}
	e := baseEnv(t.TempDir())
	e["REGISTRAR_MAX_CONNS_PER_CLIENT"] = "4"
	s := startRun(t, e)
	defer s.stop(t)
	addr := strings.TrimPrefix(s.url, "http://")

	var slow []net.Conn
	for i := range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Part of a request's headers, the rest never coming.
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Slow-%d: ", addr, i); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	// The server takes connections in the order they came: the 4 are
	// counted before the 5th is looked at.
	// (The reset may come before the dial has returned.)
	if c, err := net.Dial("tcp", addr); err == nil {
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Fatalf("a 5th connection from 127.0.0.1 was served while 4 were held:\n%s", b)
		}
		c.Close()
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	other := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	resp, err := other.Get(s.url + "/healthz")
	if err != nil {
		t.Fatalf("a request from 127.0.0.2 while 127.0.0.1 holds its cap: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz from 127.0.0.2 = %d %s", resp.StatusCode, body)
	}
	for i, c := range slow {
		if !stillOpen(c) {
			t.Fatalf("slow connection %d was closed by the server (the machine took longer than the header timeout?)", i+1)
		}
	}
	if !strings.Contains(s.logs.String(), "closed connections of a client holding the most it may") {
		t.Errorf("no log line for the refused connection:\n%s", s.logs)
	}
	if strings.Contains(s.logs.String(), "client=127.0.0.2") {
		t.Errorf("the other client was refused:\n%s", s.logs)
	}
}
