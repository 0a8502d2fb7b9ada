// Package providertest holds strict local fakes of the payment, email and
// mailing-list providers, for tests only. Every request a fake receives is
// validated against the provider's official OpenAPI description (copied
// unmodified under apispecs/, see apispecs/SOURCES.md); the known schema bugs
// are patched in memory when the file is loaded.
package providertest

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

//go:embed apispecs/paypal/*.json apispecs/sendgrid/*.json apispecs/mailchimp/*.json
var specFS embed.FS

// Spec validates HTTP requests against one OpenAPI document.
type Spec struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	specMu    sync.Mutex
	specCache = map[string]*openapi3.T{}
)

// loadDoc parses an embedded spec once per test binary (the Mailchimp file
// is 3 MB) and applies patch to the parsed document.
func loadDoc(name string, patch func(*openapi3.T)) (*openapi3.T, error) {
	specMu.Lock()
	defer specMu.Unlock()
	if doc, ok := specCache[name]; ok {
		return doc, nil
	}
	data, err := specFS.ReadFile("apispecs/" + name)
	if err != nil {
		return nil, fmt.Errorf("read spec %s: %w", name, err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load spec %s: %w", name, err)
	}
	if patch != nil {
		patch(doc)
	}
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("spec %s is invalid: %w", name, err)
	}
	specCache[name] = doc
	return doc, nil
}

// newSpec loads the named spec (relative to apispecs/) with its paths served
// under basePath (e.g. "" for PayPal, "/3.0" for Mailchimp).
func newSpec(name, basePath string, patch func(*openapi3.T)) (*Spec, error) {
	shared, err := loadDoc(name, patch)
	if err != nil {
		return nil, err
	}
	doc := *shared // shallow copy: only Servers differs per fake
	doc.Servers = openapi3.Servers{{URL: "http://fake.invalid" + basePath}}
	router, err := gorillamux.NewRouter(&doc)
	if err != nil {
		return nil, fmt.Errorf("router for %s: %w", name, err)
	}
	return &Spec{doc: &doc, router: router}, nil
}

// Validate checks a request (method, path, parameters, headers declared by
// the spec, and body) against the spec. The body is read and restored.
func (s *Spec) Validate(r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	// Route on the fake's own host name, whatever address the test server has.
	probe := r.Clone(r.Context())
	probe.URL = &url.URL{Scheme: "http", Host: "fake.invalid", Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	probe.Host = "fake.invalid"
	probe.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := s.router.FindRoute(probe)
	if err != nil {
		return fmt.Errorf("%s %s is not an operation of the spec: %w", r.Method, r.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    probe,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			// Auth is checked by each fake itself, with the exact scheme.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		return fmt.Errorf("%s %s violates the spec: %s", r.Method, r.URL.Path, strings.TrimSpace(err.Error()))
	}
	return nil
}

// PayPalOrdersSpec is PayPal's Orders v2 description.
func PayPalOrdersSpec() (*Spec, error) {
	return newSpec("paypal/checkout_orders_v2.json", "", nil)
}

// PayPalPaymentsSpec is PayPal's Payments v2 description (captures, refunds).
func PayPalPaymentsSpec() (*Spec, error) {
	return newSpec("paypal/payments_payment_v2.json", "", nil)
}

// SendGridSpec is SendGrid's Mail Send v3 description, with the
// message-level custom_args typed as the object the API really takes.
func SendGridSpec() (*Spec, error) {
	return newSpec("sendgrid/tsg_mail_v3.json", "", func(doc *openapi3.T) {
		rb := doc.Components.RequestBodies["PostMailSend"]
		if rb == nil || rb.Value == nil {
			return
		}
		schema := rb.Value.Content.Get("application/json").Schema.Value
		if p := schema.Properties["custom_args"]; p != nil && p.Value != nil {
			p.Value.Type = &openapi3.Types{openapi3.TypeObject}
			p.Value.AdditionalProperties = openapi3.AdditionalProperties{Schema: openapi3.NewStringSchema().NewRef()}
		}
	})
}

// MailchimpSpec is the Mailchimp Marketing API description served under
// /3.0, with merge field values allowed to be strings or numbers (in the
// batch subscribe, create and upsert member bodies).
func MailchimpSpec() (*Spec, error) {
	return newSpec("mailchimp/openapi.json", "/3.0", func(doc *openapi3.T) {
		for _, name := range []string{"AddListMembers", "AddListMembers1", "AddListMembers2"} {
			s := doc.Components.Schemas[name]
			if s == nil || s.Value == nil {
				continue
			}
			if mf := s.Value.Properties["merge_fields"]; mf != nil && mf.Value != nil {
				mf.Value.AdditionalProperties = openapi3.AdditionalProperties{Schema: &openapi3.SchemaRef{Value: &openapi3.Schema{
					OneOf: openapi3.SchemaRefs{openapi3.NewStringSchema().NewRef(), openapi3.NewFloat64Schema().NewRef()},
				}}}
			}
		}
	})
}
