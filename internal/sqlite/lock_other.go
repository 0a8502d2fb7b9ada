//go:build !unix

package sqlite

import (
	"fmt"
	"os"
)

// lockFile opens path; on systems without flock the single-process rule is
// the operator's to keep.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}

// inUseError is the refusal of a database another process holds; never
// returned here.
type inUseError struct{ path string }

func (e *inUseError) Error() string {
	return "database " + e.path + " is in use by another registrar process"
}
