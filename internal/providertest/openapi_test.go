package providertest

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSpecsValidateRequests(t *testing.T) {
	t.Parallel()
	load := map[string]func() (*Spec, error){
		"orders": PayPalOrdersSpec, "payments": PayPalPaymentsSpec, "sendgrid": SendGridSpec, "mailchimp": MailchimpSpec,
	}
	cases := []struct {
		name, spec, method, path, body string
		ok                             bool
	}{
		{"paypal create order", "orders", "POST", "/v2/checkout/orders",
			`{"intent":"CAPTURE","purchase_units":[{"amount":{"currency_code":"EUR","value":"149.00"}}]}`, true},
		{"paypal create order without intent", "orders", "POST", "/v2/checkout/orders",
			`{"purchase_units":[{"amount":{"currency_code":"EUR","value":"149.00"}}]}`, false},
		{"paypal refund", "payments", "POST", "/v2/payments/captures/3C679366HH908993F/refund",
			`{"amount":{"value":"149.00","currency_code":"EUR"}}`, true},
		{"sendgrid send with object custom_args", "sendgrid", "POST", "/v3/mail/send",
			`{"personalizations":[{"to":[{"email":"a@example.org"}]}],"from":{"email":"t@example.org"},"subject":"Hi",
			 "content":[{"type":"text/plain","value":"x"}],"custom_args":{"registration_id":"abc"}}`, true},
		{"sendgrid send without from", "sendgrid", "POST", "/v3/mail/send",
			`{"personalizations":[{"to":[{"email":"a@example.org"}]}],"subject":"Hi","content":[{"type":"text/plain","value":"x"}]}`, false},
		{"mailchimp put member", "mailchimp", "PUT", "/3.0/lists/abc123/members/0cc175b9c0f1b6a831c399e269772661",
			`{"email_address":"a@example.org","status_if_new":"subscribed","merge_fields":{"FNAME":"Ada","LNAME":"Lovelace"}}`, true},
		{"mailchimp put member bad status", "mailchimp", "PUT", "/3.0/lists/abc123/members/0cc175b9c0f1b6a831c399e269772661",
			`{"email_address":"a@example.org","status_if_new":"maybe"}`, false},
		{"unknown path", "sendgrid", "POST", "/v3/mail/sendx", `{}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec, err := load[tc.spec]()
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(tc.method, "http://127.0.0.1:1234"+tc.path, strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			err = spec.Validate(r)
			if tc.ok && err != nil {
				t.Fatalf("valid request refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("invalid request accepted")
			}
		})
	}
}
