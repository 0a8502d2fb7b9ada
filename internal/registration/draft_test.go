package registration

import (
	"testing"
	"time"

	"github.com/registrar/registrar/internal/payment"
)

// TestDraftKeepsBillingAndConsent checks what a registration keeps from its
// request besides the attendee: the billing address, and when newsletter
// consent was given.
func TestDraftKeepsBillingAndConsent(t *testing.T) {
	t.Parallel()
	now := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		edit        func(*Request)
		wantBilling payment.BillingAddress
		wantConsent time.Time
	}{
		{"paid, with newsletter", nil, payment.BillingAddress{Line1: "12 St James's Square", City: "London",
			PostalCode: "SW1Y 4JH", Country: "GB"}, now},
		{"free, without newsletter", func(r *Request) { r.Ticket, r.Billing, r.Newsletter = "community", nil, false },
			payment.BillingAddress{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t)
			req := validReq()
			if tt.edit != nil {
				tt.edit(&req)
			}
			ticket, _ := f.svc.event.Ticket(req.Ticket)
			d := f.svc.draft("attempt-1", ticket, req, now)
			if d.Billing != tt.wantBilling || !d.NewsletterConsentedAt.Equal(tt.wantConsent) {
				t.Errorf("draft billing %+v consent %v; want %+v %v", d.Billing, d.NewsletterConsentedAt, tt.wantBilling, tt.wantConsent)
			}
		})
	}
}
