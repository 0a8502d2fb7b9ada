package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/mailchimp"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/paypal"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/sendgrid"
)

func newFakeServer(t *testing.T, latency time.Duration) (*fakes, string) {
	t.Helper()
	f := newFakes(latency)
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func chargeRequest(id, name string) payment.ChargeRequest {
	return payment.ChargeRequest{
		RequestID: id, Amount: 14900, Currency: "EUR", Description: "LoadFest — Standard",
		Card:    payment.Card{Number: "4111111111111111", ExpiryYear: 2031, ExpiryMonth: 12, SecurityCode: "123", Name: name},
		Address: payment.BillingAddress{Line1: "1 Road", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"},
	}
}

// TestFakePayPalIdempotent drives the fake with registrar's own PayPal
// client: a repeated PayPal-Request-Id, even while the first is in flight,
// is answered with the first capture and charges nothing more.
func TestFakePayPalIdempotent(t *testing.T) {
	t.Parallel()
	f, url := newFakeServer(t, 20*time.Millisecond)
	pp := paypal.New(url, "id", "secret", nil, nil)
	ctx := context.Background()

	var wg sync.WaitGroup
	refs := make([]string, 5)
	errs := make([]error, 5)
	for i := range refs {
		wg.Go(func() {
			ch, err := pp.Charge(ctx, chargeRequest("reg-1", "Ada One"))
			refs[i], errs[i] = ch.Reference, err
		})
	}
	wg.Wait()
	for i := range refs {
		if errs[i] != nil {
			t.Fatalf("charge %d: %v", i, errs[i])
		}
		if refs[i] == "" || refs[i] != refs[0] {
			t.Fatalf("charge %d: reference %q, want the first one %q", i, refs[i], refs[0])
		}
	}
	if _, err := pp.Charge(ctx, chargeRequest("reg-2", "Bea Two")); err != nil {
		t.Fatal(err)
	}
	c := f.counts(map[string]bool{"reg-1": true, "reg-2": true})
	want := ProviderCounts{Captures: 2, CaptureReplays: 4, NetCaptures: 2, TokenRequests: 1}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("counts = %+v, want %+v", c, want)
	}
}

func TestFakePayPalCountsDoubleCharges(t *testing.T) {
	t.Parallel()
	f, url := newFakeServer(t, 0)
	pp := paypal.New(url, "id", "secret", nil, nil)
	ctx := context.Background()

	// The same attendee charged under two request ids (a client retry
	// that became a second attempt) is charged twice.
	first, err := pp.Charge(ctx, chargeRequest("reg-a", "Ada Twice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pp.Charge(ctx, chargeRequest("reg-b", "Ada Twice")); err != nil {
		t.Fatal(err)
	}
	c := f.counts(map[string]bool{"reg-a": true})
	if c.Captures != 2 || c.AttendeesChargedTwice != 1 || c.DoubleCapturedRequestIDs != 0 || c.CapturedWithoutAcceptance != 1 {
		t.Fatalf("counts = %+v, want 2 captures, 1 attendee charged twice, 1 captured without a 202", c)
	}

	// Refunding one of them (twice, with one refund request id) undoes the
	// double charge.
	for range 2 {
		if _, err := pp.Refund(ctx, first, 14900, "EUR", "refund-reg-a"); err != nil {
			t.Fatal(err)
		}
	}
	c = f.counts(map[string]bool{"reg-a": true})
	if c.Refunds != 1 || c.NetCaptures != 1 || c.AttendeesChargedTwice != 0 || c.CapturedWithoutAcceptance != 1 {
		t.Fatalf("after refund counts = %+v, want 1 refund, 1 net capture, no double charge", c)
	}

	// Resolve of an unknown request id takes no money.
	if _, err := pp.Resolve(ctx, payment.ChargeRequest{RequestID: "reg-c", Amount: 14900, Currency: "EUR"}); !errors.Is(err, payment.ErrNotCharged) {
		t.Fatalf("Resolve of an unknown id: %v, want ErrNotCharged", err)
	}
	// Resolve of a charged one finds the charge and takes nothing more.
	ch, err := pp.Resolve(ctx, payment.ChargeRequest{RequestID: "reg-a", Amount: 14900, Currency: "EUR"})
	if err != nil || ch.Reference != first.Reference {
		t.Fatalf("Resolve of reg-a = %+v, %v; want %s", ch, err, first.Reference)
	}
	if c := f.counts(nil); c.Captures != 2 {
		t.Fatalf("captures after resolves = %d, want 2", c.Captures)
	}
}

func TestFakeSendGridCountsPerRegistration(t *testing.T) {
	t.Parallel()
	f, url := newFakeServer(t, time.Millisecond)
	sg := sendgrid.New(url, "SG.key", nil)
	msg := func(id string) email.Message {
		return email.Message{
			ID:      id,
			From:    email.Address{Email: "tickets@loadfest.example", Name: "LoadFest"},
			To:      email.Address{Email: "ada@example.org", Name: "Ada"},
			Subject: "Your ticket",
			Date:    time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
			Text:    "hello",
			HTML:    "<p>hello</p>",
			Headers: map[string]string{"X-Registration-ID": id},
		}
	}
	for _, id := range []string{"reg1", "reg2", "reg1"} {
		ref, err := sg.Send(context.Background(), msg(id))
		if err != nil {
			t.Fatal(err)
		}
		if ref == "" {
			t.Fatal("empty message reference")
		}
	}
	c := f.counts(nil)
	if c.Emails != 3 || c.DuplicateEmails != 1 {
		t.Fatalf("emails %d, duplicates %d; want 3 and 1", c.Emails, c.DuplicateEmails)
	}
}

func TestFakeMailchimpCountsUpserts(t *testing.T) {
	t.Parallel()
	f, url := newFakeServer(t, time.Millisecond)
	mc := mailchimp.New(url+"/3.0", "key-us21", "loadlist", mailchimp.Options{})
	sub := registration.Subscriber{Email: "Ada@Example.org", FirstName: "Ada", LastName: "L", EventID: "loadfest", RegistrationID: "r1"}
	for range 2 {
		if err := mc.Subscribe(context.Background(), sub); err != nil {
			t.Fatal(err)
		}
	}
	sub.Email = "bea@example.org"
	if err := mc.Subscribe(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	c := f.counts(nil)
	if c.MailchimpUpserts != 3 || c.MailchimpTags != 3 || c.RepeatedUpserts != 1 {
		t.Fatalf("upserts %d, tags %d, repeated %d; want 3, 3, 1", c.MailchimpUpserts, c.MailchimpTags, c.RepeatedUpserts)
	}
}
