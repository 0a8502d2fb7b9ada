package mailchimp_test

import (
	"testing"

	"github.com/registrar/registrar/internal/mailchimp"
	"github.com/registrar/registrar/internal/providertest"
)

// TestForgetMember deletes a member for good through the strict fake:
// Mailchimp then refuses the address; deleting again, or an address never
// added, is done; throttling and outages are retried, a wrong key is not.
func TestForgetMember(t *testing.T) {
	t.Parallel()
	m := providertest.NewMailchimp(t, key, listID)
	c := mailchimp.New(m.URL(), key, listID, mailchimp.Options{BatchWindow: 1})
	if err := c.Subscribe(t.Context(), ada()); err != nil {
		t.Fatal(err)
	}
	id := c.MemberID(ada().Email)
	if id != mailchimp.SubscriberHash("ada.lovelace@example.com") {
		t.Fatalf("MemberID = %s; want the subscriber hash", id)
	}
	for range 2 {
		if err := c.ForgetMember(t.Context(), id); err != nil {
			t.Fatalf("ForgetMember: %v", err)
		}
	}
	if _, ok := m.Member(ada().Email); ok || m.Deletions() != 1 {
		t.Errorf("member still there, or %d deletions; want gone, 1", m.Deletions())
	}
	if err := c.Subscribe(t.Context(), ada()); err == nil || !isPermanent(err) {
		t.Errorf("subscribing a deleted member: %v; want Mailchimp's permanent refusal", err)
	}
	if err := c.ForgetMember(t.Context(), mailchimp.SubscriberHash("never@example.org")); err != nil {
		t.Errorf("ForgetMember of an address never added: %v; want done", err)
	}

	for _, status := range []int{429, 503} {
		m.FailNext(1, status)
		if err := c.ForgetMember(t.Context(), id); err == nil || isPermanent(err) {
			t.Errorf("ForgetMember answered %d: %v; want a transient error", status, err)
		}
	}
	wrong := mailchimp.New(m.URL(), "ffffffffffffffffffffffffffffffff-us21", listID, mailchimp.Options{})
	if err := wrong.ForgetMember(t.Context(), id); err == nil || !isPermanent(err) {
		t.Errorf("ForgetMember with a wrong key: %v; want a permanent error", err)
	}
	if err := c.ForgetMember(t.Context(), "ada@example.org"); err == nil || !isPermanent(err) {
		t.Errorf("ForgetMember of an address instead of a hash: %v; want a permanent error", err)
	}
}
