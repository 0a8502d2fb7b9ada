// Package telemetry provides registrar's tracing (OpenTelemetry, exported
// over OTLP/HTTP when configured, off otherwise) and the request and job
// attributes every log line carries.
package telemetry

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Config is the tracing configuration, read from the standard OTEL_*
// variables.
type Config struct {
	// Endpoint is the full URL spans are posted to (…/v1/traces); "" turns
	// tracing off.
	Endpoint string
	// Headers are sent with every export (e.g. an API key); secret.
	Headers map[string]string
	// ServiceName is the service.name of every span's resource.
	ServiceName string
	// Sampler is OTEL_TRACES_SAMPLER's value and SamplerArg its argument
	// (the ratio of the ratio samplers).
	Sampler    string
	SamplerArg float64
}

// Enabled reports whether spans are exported.
func (c Config) Enabled() bool { return c.Endpoint != "" }

// String is the configuration's log form, without the headers' values.
func (c Config) String() string {
	if !c.Enabled() {
		return "off"
	}
	return fmt.Sprintf("%s service=%s sampler=%s", c.Endpoint, c.ServiceName, c.Sampler)
}

// The samplers of OTEL_TRACES_SAMPLER.
var samplers = []string{"always_on", "always_off", "traceidratio",
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// FromEnv reads the configuration through getenv: tracing is on when
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (with /v1/traces appended) is set, unless
// OTEL_SDK_DISABLED is true. Every problem is reported, one line each,
// naming the variable.
func FromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	bad := func(variable, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", variable, fmt.Sprintf(format, args...)))
	}
	c := Config{ServiceName: "registrar", Sampler: "parentbased_always_on", SamplerArg: 1}
	if v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			bad("OTEL_SDK_DISABLED", "%q is not true or false", v)
		} else if disabled {
			return c, errors.Join(errs...)
		}
	}
	if v := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); v != "" {
		c.ServiceName = v
	}

	if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); v != "" {
		if err := checkEndpoint(v); err != nil {
			bad("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "%v", err)
		} else {
			c.Endpoint = v
		}
	} else if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); v != "" {
		if err := checkEndpoint(v); err != nil {
			bad("OTEL_EXPORTER_OTLP_ENDPOINT", "%v", err)
		} else {
			c.Endpoint = strings.TrimRight(v, "/") + "/v1/traces"
		}
	}
	for _, variable := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(getenv(variable)); v != "" {
			if v != "http/protobuf" {
				bad(variable, "%q is not supported; unset it or set http/protobuf (OTLP over HTTP is the only protocol)", v)
			}
			break
		}
	}
	for _, variable := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		h, err := parseHeaders(getenv(variable))
		if err != nil {
			bad(variable, "%v", err)
			continue
		}
		for k, v := range h {
			if c.Headers == nil {
				c.Headers = map[string]string{}
			}
			c.Headers[k] = v // the traces' own headers win
		}
	}
	if v := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")); v != "" {
		found := false
		for _, s := range samplers {
			found = found || v == s
		}
		if !found {
			bad("OTEL_TRACES_SAMPLER", "%q is not a sampler; use one of %s", v, strings.Join(samplers, ", "))
		} else {
			c.Sampler = v
		}
	}
	if v := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")); v != "" && strings.HasSuffix(c.Sampler, "traceidratio") {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			bad("OTEL_TRACES_SAMPLER_ARG", "%q is not a ratio between 0 and 1, e.g. 0.25", v)
		} else {
			c.SamplerArg = r
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// checkEndpoint accepts an absolute http or https URL.
func checkEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL, e.g. http://127.0.0.1:4318", v)
	}
	return nil
}

// parseHeaders reads a list of key=value pairs separated by commas, the
// values URL-encoded, as the OTLP exporter specification writes them.
func parseHeaders(v string) (map[string]string, error) {
	h := map[string]string{}
	for pair := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			// The pair may hold a secret: name its position, not its text.
			return nil, errors.New("each entry must be key=value, separated by commas, e.g. x-api-key=abc123")
		}
		dec, err := url.QueryUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("the value of %s is not URL-encoded", k)
		}
		h[k] = dec
	}
	return h, nil
}
