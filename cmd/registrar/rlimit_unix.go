//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// openFileLimit is the process's open-file limit (its soft RLIMIT_NOFILE,
// which the Go runtime raises to the hard limit at start).
func openFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("reading the open-file limit: %w", err)
	}
	return uint64(l.Cur), nil
}
