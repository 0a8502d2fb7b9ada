package telemetry

import (
	"context"
	"log/slog"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// scrubber exports spans without what could identify an attendee or open
// their links: HTTP instrumentation records full URLs (Mailchimp's member
// paths hash the email address; newsletter confirmation paths hold a
// token) and client addresses. URLs keep their scheme and host; server
// spans are named after their route instead.
//
// It is also where a failed export is reported: logged, when log is set,
// instead of going to OpenTelemetry's process-wide error handler.
type scrubber struct {
	sdktrace.SpanExporter
	log *slog.Logger
}

// dropped are the attributes never exported.
var dropped = map[attribute.Key]bool{
	"url.path":             true,
	"url.query":            true,
	"client.address":       true,
	"network.peer.address": true,
	"network.peer.port":    true,
	"http.target":          true,
	"http.client_ip":       true,
	"net.sock.peer.addr":   true,
}

func (s scrubber) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, sp := range spans {
		out[i] = scrubbed{sp}
	}
	err := s.SpanExporter.ExportSpans(ctx, out)
	if err != nil && s.log != nil {
		s.log.WarnContext(ctx, "exporting spans failed; they are dropped", "spans", len(spans), "err", err)
		return nil
	}
	return err
}

// scrubbed is a span whose attributes are scrubbed.
type scrubbed struct{ sdktrace.ReadOnlySpan }

func (s scrubbed) Attributes() []attribute.KeyValue {
	in := s.ReadOnlySpan.Attributes()
	out := make([]attribute.KeyValue, 0, len(in))
	for _, kv := range in {
		switch {
		case dropped[kv.Key]:
			continue
		case kv.Key == "url.full" || kv.Key == "http.url":
			kv.Value = attribute.StringValue(origin(kv.Value.AsString()))
		}
		out = append(out, kv)
	}
	return out
}

// origin is a URL's scheme and host.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}
