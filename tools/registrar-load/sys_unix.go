//go:build unix

package main

import (
	"syscall"
	"time"
)

// raiseFileLimit lifts the open-file limit as far as allowed and returns
// the limit in force (0 when unknown): a burst opens one connection per
// attempt in flight, and the in-process probe holds both ends of each. A
// started registrar inherits the limit.
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	const want = 1 << 20
	if l.Cur >= want {
		return l.Cur
	}
	// A privileged process may raise the hard limit too; others only up to it.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, l.Max)}); err == nil {
		return want
	}
	l.Cur = l.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}

// selfCPU is the CPU time (user + system) this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
