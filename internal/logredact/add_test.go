package logredact

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestAddRemove: a secret learnt at run time is removed from the records
// that follow, by the handler and by those derived from it before and
// after; a shorter secret inside it does not split it; Remove forgets it.
func TestAddRemove(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	h := New(slog.NewTextHandler(&buf, nil), []string{secret})
	derived := slog.New(h.WithGroup("paypal").WithAttrs([]slog.Attr{slog.String("component", "paypal")}))
	log := slog.New(h)
	const token = "A21AAFEpH4PsADK7qSS7pSRsgzfENtu-Q1ysgEDVDESseMHBYXVJYE8ovjj68elIDy8nF26AwPhfXTIeWAZHSLIsQkSYz9ifg"
	log.Info("before", "token", token)
	if !strings.Contains(buf.String(), token) {
		t.Fatal("a token not yet added was redacted: the test shows nothing")
	}
	h.Add(token, token[:20], "", "abc")
	buf.Reset()
	log.Info("token echoed", "error", fmt.Errorf("paypal answered 401: Bearer %s is invalid", token))
	derived.Warn("in the message: " + token)
	slog.New(h.WithAttrs(nil)).Info("derived after", "header", "Authorization: Bearer "+token)
	slog.New(h).Info("the short one alone", "prefix", token[:20], "short", "abc")
	got := buf.String()
	if strings.Contains(got, token[:20]) {
		t.Errorf("an added secret survived:\n%s", got)
	}
	if n := strings.Count(got, SecretMark); n != 4 {
		t.Errorf("%d marks, want 4 (one per line, the long secret replaced whole):\n%s", n, got)
	}
	if !strings.Contains(got, "is invalid") || !strings.Contains(got, "abc") {
		t.Errorf("text around the secret lost, or a secret under %d characters was added:\n%s", MinSecretLen, got)
	}

	h.Remove(token, token[:20])
	buf.Reset()
	log.Info("removed", "token", token, "config", secret)
	if got := buf.String(); !strings.Contains(got, token) || strings.Contains(got, secret) {
		t.Errorf("after Remove, want the token kept and the configured secret still removed:\n%s", got)
	}
}

// TestAddConcurrent adds secrets while records are handled (run with
// -race): every record logged after its secret was added has it removed.
func TestAddConcurrent(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	h := New(slog.NewTextHandler(&buf, nil), nil)
	log := slog.New(h)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				tok := fmt.Sprintf("token-%d-%03d-secret", g, i)
				h.Add(tok)
				log.Info("issued", "token", tok)
				if i%10 == 9 {
					h.Remove(fmt.Sprintf("token-%d-%03d-secret", g, i-5))
				}
			}
		}()
	}
	wg.Wait()
	if got := buf.String(); strings.Contains(got, "token-") || strings.Count(got, SecretMark) != 200 {
		t.Errorf("a token survived, or not every line was redacted:\n%s", got)
	}
}

// syncBuffer is a strings.Builder safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}
