package email

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// maxFileStem bounds the file name, well under the usual 255-byte limit.
const maxFileStem = 120

// Outbox is the default mailer: it writes one .eml file per message under Dir.
type Outbox struct {
	Dir string
}

// NewOutbox returns an Outbox writing to dir, creating it (mode 0o750) if
// needed.
func NewOutbox(dir string) (*Outbox, error) {
	if dir == "" {
		return nil, errors.New("email: outbox directory is empty")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("email: create outbox: %w", err)
	}
	// A process killed mid-write leaves its temp file behind; the message it
	// held is written again when its job is retried.
	stale, err := filepath.Glob(filepath.Join(dir, ".outbox-*.tmp"))
	if err != nil {
		return nil, fmt.Errorf("email: scan outbox: %w", err)
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("email: remove stale temp file: %w", err)
		}
	}
	return &Outbox{Dir: dir}, nil
}

// Send writes Dir/<sanitised ID>.eml atomically (temp file in Dir, fsync,
// rename, fsync dir) and returns the Message-ID header value as the provider
// reference. Sending the same message again overwrites the same file, so
// Send is idempotent. An invalid message (see Message.Validate) writes
// nothing and returns an error wrapping ErrInvalidMessage.
func (o *Outbox) Send(ctx context.Context, m Message) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if o.Dir == "" {
		return "", errors.New("email: outbox directory is empty")
	}
	name, err := outboxFileName(m.ID)
	if err != nil {
		return "", err
	}
	raw, err := m.Bytes()
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(ctx, o.Dir, name, raw); err != nil {
		return "", fmt.Errorf("email: outbox: %w", err)
	}
	return m.messageID(), nil
}

// outboxFileName maps a message ID to a file name made of [A-Za-z0-9._-]
// ending in ".eml". A clean ID maps to itself; any other ID is rewritten and
// given a suffix from its hash, so that two different IDs never share a file
// (which would silently drop an email).
func outboxFileName(id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("%w: ID: is required", ErrInvalidMessage)
	}
	stem := []byte(id)
	for i, c := range stem {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			stem[i] = '_'
		}
	}
	clean := strings.TrimLeft(string(stem), ".") // no hidden files
	if clean != id || len(clean) > maxFileStem {
		sum := sha256.Sum256([]byte(id))
		clean = clean[:min(len(clean), maxFileStem-17)] + "-" + hex.EncodeToString(sum[:8])
	}
	return clean + ".eml", nil
}

// writeFileAtomic replaces dir/name with data so that a reader (or a crash)
// sees either the old file or the complete new one, never a partial file.
func writeFileAtomic(ctx context.Context, dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, ".outbox-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // may already be closed; the write error matters
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o640); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = ctx.Err(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes the rename durable. Windows cannot fsync a directory (and
// does not need to).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}

// Erase removes a registration's messages from the outbox: its first
// confirmation (named after the registration id), its newsletter
// confirmation requests ("newsletter-<id>-…") and the messages whose ids
// are messageIDs (resent confirmations, cancellation notices). It returns
// how many files it removed; files already gone are no error.
func (o *Outbox) Erase(registrationID string, messageIDs []string) (int, error) {
	if o.Dir == "" {
		return 0, errors.New("email: outbox directory is empty")
	}
	var names []string
	for _, id := range append([]string{registrationID}, messageIDs...) {
		name, err := outboxFileName(id)
		if err != nil {
			return 0, err
		}
		names = append(names, name)
	}
	if stem, err := outboxFileName("newsletter-" + registrationID); err == nil {
		// Only clean ids name their file after themselves; a registration
		// id always is one.
		matches, err := filepath.Glob(filepath.Join(o.Dir, strings.TrimSuffix(stem, ".eml")+"-*.eml"))
		if err != nil {
			return 0, fmt.Errorf("email: scan outbox: %w", err)
		}
		for _, m := range matches {
			names = append(names, filepath.Base(m))
		}
	}
	removed := 0
	for _, name := range names {
		err := os.Remove(filepath.Join(o.Dir, name))
		switch {
		case err == nil:
			removed++
		case !errors.Is(err, fs.ErrNotExist):
			return removed, fmt.Errorf("email: erase from outbox: %w", err)
		}
	}
	if removed > 0 {
		if err := syncDir(o.Dir); err != nil {
			return removed, fmt.Errorf("email: erase from outbox: %w", err)
		}
	}
	return removed, nil
}
