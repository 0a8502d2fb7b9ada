package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestConnLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{
		{0, 0},                  // unknown: no cap
		{^uint64(0), 0},         // RLIM_INFINITY: no cap
		{1 << 40, 0},            // practically unlimited
		{20_000, 9_500},         // (20,000 - 1,000) / 2
		{1 << 20, 523_788},      // (1,048,576 - 1,000) / 2
		{2_000, 500},            // the whole reserve fits
		{1_024, 256},            // half the limit kept back
		{100, 25},               //
		{1, 1},                  // never 0, which would mean no cap
		{2, 1},                  //
		{2_001, 500},            // rounds down
		{1<<31 - 1, 1073741323}, // the largest limit still capped
	} {
		if got := connLimit(tc.nofile); got != tc.want {
			t.Errorf("connLimit(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
	}
}

// TestLimitConns checks on real TCP that a listener limited to 2 accepts a
// third client only once one of the first two is closed, that a second
// Close of the same connection frees nothing more, that a half-close gets
// through the wrapper, and that closing the listener ends an Accept waiting
// for a slot.
func TestLimitConns(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitConns(inner, 2)
	accepted := make(chan net.Conn)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()

	// Each client sends one byte naming itself; the kernel completes its
	// connection whether or not it is accepted.
	dial := func(name byte) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatalf("dial client %c: %v", name, err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte{name}); err != nil {
			t.Fatalf("client %c writes: %v", name, err)
		}
		return c
	}
	byName := map[byte]net.Conn{}
	next := func() byte {
		t.Helper()
		select {
		case c := <-accepted:
			var b [1]byte
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, b[:]); err != nil {
				t.Fatalf("reading an accepted client's name: %v", err)
			}
			t.Cleanup(func() { c.Close() })
			byName[b[0]] = c
			return b[0]
		case <-time.After(10 * time.Second):
			t.Fatal("no connection accepted within 10s")
			return 0
		}
	}
	none := func(when string) {
		t.Helper()
		select {
		case <-accepted:
			t.Fatalf("a connection was accepted %s", when)
		case <-time.After(200 * time.Millisecond):
		}
	}

	dial('a')
	dial('b')
	got := map[byte]bool{next(): true, next(): true}
	if !got['a'] || !got['b'] {
		t.Fatalf("accepted %v, want a and b", got)
	}
	dial('c')
	none("while two were open")

	byName['a'].Close()
	if name := next(); name != 'c' {
		t.Fatalf("accepted %c after a closed, want c", name)
	}
	byName['a'].Close() // a second Close frees no second slot
	d := dial('d')
	none("after a closed twice and c took its slot")

	byName['b'].Close()
	if name := next(); name != 'd' {
		t.Fatalf("accepted %c after b closed, want d", name)
	}
	// The half-close http.Server sends before closing after an error answer
	// gets through the wrapper.
	cw, ok := byName['d'].(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("accepted connection has no CloseWrite")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	d.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := d.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client d read %d, %v after the server's CloseWrite, want EOF", n, err)
	}

	// Both slots are taken (c, d): Accept is waiting for one; Close ends it.
	ln.Close()
	select {
	case err := <-acceptErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still waiting 10s after Close")
	}
}

// When the connections run short, the server stops keeping served
// clients' connections alive: a new client is served even though the slots
// fill up with keep-alive connections, which would otherwise each hold one
// for the server's whole IdleTimeout.
func TestLimitConnsLetsServedClientsGo(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const slots = 4
	ln := limitConns(inner, slots)
	srv := &http.Server{
		Handler:     closeWhenCrowded(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), ln),
		IdleTimeout: time.Hour,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + inner.Addr().String() + "/"
	closed := 0
	for i := range 3 * slots {
		// A client of its own each: a kept-alive connection stays open.
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("client %d: %v", i+1, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("client %d: status %d", i+1, resp.StatusCode)
		}
		if resp.Close {
			closed++
		}
	}
	if closed < 2*slots {
		t.Errorf("%d of %d answers closed their connection; want every one once the slots ran short", closed, 3*slots)
	}
}
