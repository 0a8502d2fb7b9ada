package main

import (
	"net"
	"testing"
)

func TestOpenableURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{Port: 8080}, "http://localhost:8080"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "http://localhost:8080"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, "http://localhost:8080"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 43515}, "http://127.0.0.1:43515"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, "http://[::1]:8080"},
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 80}, "http://192.0.2.10:80"},
	}
	for _, tt := range tests {
		if got := openableURL(tt.addr); got != tt.want {
			t.Errorf("openableURL(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
