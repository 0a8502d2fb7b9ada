package paypal

import (
	"context"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/providertest"
)

// A caller whose request was refused with an old token must not throw away
// the new token another caller has already fetched.
func TestStaleInvalidationKeepsNewToken(t *testing.T) {
	t.Parallel()
	fake := providertest.NewPayPal(t, "id", "secret")
	c := New(fake.URL(), "id", "secret", nil, nil)
	ctx := context.Background()
	old, err := c.accessToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.invalidate(old) // the first caller refused with it
	fresh, err := c.accessToken(ctx)
	if err != nil || fresh == old {
		t.Fatalf("fresh token %q, %v", fresh, err)
	}
	c.invalidate(old) // a later caller refused with the same old token
	again, err := c.accessToken(ctx)
	if err != nil || again != fresh {
		t.Errorf("token after a stale invalidation: %q, %v; want the fresh one", again, err)
	}
	if n := fake.TokenRequests(); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
}

func TestRefreshMargin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ttl, want time.Duration }{
		{32400 * time.Second, 60 * time.Second},
		{300 * time.Second, 30 * time.Second},
		{time.Second, 100 * time.Millisecond},
		{0, 0},
	} {
		if got := refreshMargin(tc.ttl); got != tc.want {
			t.Errorf("refreshMargin(%v) = %v, want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestCaptureRequestID(t *testing.T) {
	t.Parallel()
	if got := captureRequestID("abc"); got != "abc-capture" {
		t.Errorf("captureRequestID(abc) = %q", got)
	}
	long := string(make([]byte, maxRequestID))
	if got := captureRequestID(long); len(got) > maxRequestID || got == captureRequestID(long+"x") {
		t.Errorf("captureRequestID of a long id = %q", got)
	}
}
