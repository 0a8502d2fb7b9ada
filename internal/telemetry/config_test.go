package telemetry

import (
	"maps"
	"strings"
	"testing"
)

func TestFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr []string // each a line of the error
	}{
		{name: "nothing set: off", env: map[string]string{},
			want: Config{ServiceName: "registrar", Sampler: "parentbased_always_on", SamplerArg: 1}},
		{name: "base endpoint gets the traces path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"},
			want: Config{Endpoint: "http://127.0.0.1:4318/v1/traces", ServiceName: "registrar", Sampler: "parentbased_always_on", SamplerArg: 1}},
		{name: "traces endpoint used as it is and wins", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://127.0.0.1:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9999/custom",
			"OTEL_SERVICE_NAME":                  "tickets",
			"OTEL_EXPORTER_OTLP_HEADERS":         "x-api-key=abc%3D1, x-team = ops",
			"OTEL_EXPORTER_OTLP_TRACES_HEADERS":  "x-team=traces",
			"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/protobuf",
			"OTEL_TRACES_SAMPLER":                "parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG":            "0.25",
		}, want: Config{Endpoint: "http://127.0.0.1:9999/custom", ServiceName: "tickets",
			Headers: map[string]string{"x-api-key": "abc=1", "x-team": "traces"},
			Sampler: "parentbased_traceidratio", SamplerArg: 0.25}},
		{name: "disabled wins over an endpoint", env: map[string]string{
			"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			want: Config{ServiceName: "registrar", Sampler: "parentbased_always_on", SamplerArg: 1}},
		{name: "disabled false keeps it on", env: map[string]string{
			"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			want: Config{Endpoint: "http://127.0.0.1:4318/v1/traces", ServiceName: "registrar", Sampler: "parentbased_always_on", SamplerArg: 1}},
		{name: "every bad value named", env: map[string]string{
			"OTEL_SDK_DISABLED":           "maybe",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_HEADERS":  "Authorization Bearer s3cret",
			"OTEL_TRACES_SAMPLER":         "sometimes",
		}, wantErr: []string{
			`OTEL_SDK_DISABLED: "maybe" is not true or false`,
			`OTEL_EXPORTER_OTLP_ENDPOINT: "127.0.0.1:4318" is not an http:// or https:// URL, e.g. http://127.0.0.1:4318`,
			`OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" is not supported; unset it or set http/protobuf (OTLP over HTTP is the only protocol)`,
			`OTEL_EXPORTER_OTLP_HEADERS: each entry must be key=value, separated by commas, e.g. x-api-key=abc123`,
			`OTEL_TRACES_SAMPLER: "sometimes" is not a sampler; use one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio`,
		}},
		{name: "ratio out of range", env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
			wantErr: []string{`OTEL_TRACES_SAMPLER_ARG: "1.5" is not a ratio between 0 and 1, e.g. 0.25`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := FromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("FromEnv = %+v, want an error", got)
				}
				if lines := strings.Split(err.Error(), "\n"); strings.Join(lines, "\n") != strings.Join(tt.wantErr, "\n") {
					t.Errorf("error:\n%s\nwant:\n%s", err, strings.Join(tt.wantErr, "\n"))
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows a header's secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			if got.Endpoint != tt.want.Endpoint || got.ServiceName != tt.want.ServiceName ||
				got.Sampler != tt.want.Sampler || got.SamplerArg != tt.want.SamplerArg || !maps.Equal(got.Headers, tt.want.Headers) {
				t.Errorf("FromEnv = %+v, want %+v", got, tt.want)
			}
			if got.Enabled() != (tt.want.Endpoint != "") {
				t.Errorf("Enabled = %v", got.Enabled())
			}
			if strings.Contains(got.String(), "abc") {
				t.Errorf("log form shows a header value: %s", got)
			}
		})
	}
}
