package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

type requestIDKey struct{}

type attrsKey struct{}

// WithRequestID returns ctx carrying request id id, which every log line
// written with it carries as request_id and every job inserted with it
// keeps in its metadata.
func WithRequestID(ctx context.Context, id string) context.Context {
	ctx = context.WithValue(ctx, requestIDKey{}, id)
	return WithLogAttrs(ctx, slog.String("request_id", id))
}

// RequestID is ctx's request id, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// NewRequestID returns a short random id: 16 hex digits.
func NewRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// ValidRequestID reports whether an incoming X-Request-Id is kept: 1 to
// 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'.
func ValidRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// WithLogAttrs returns ctx whose log lines carry attrs too, after those
// ctx carries already (a later attribute of the same key is written again,
// not replaced).
func WithLogAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev, _ := ctx.Value(attrsKey{}).([]slog.Attr)
	all := make([]slog.Attr, 0, len(prev)+len(attrs))
	all = append(append(all, prev...), attrs...)
	return context.WithValue(ctx, attrsKey{}, all)
}

// LogHandler adds to each record the attributes its context carries (see
// WithLogAttrs) and, when the context is in a recorded span, its trace_id.
type LogHandler struct{ slog.Handler }

// NewLogHandler wraps h.
func NewLogHandler(h slog.Handler) LogHandler { return LogHandler{h} }

// Handle implements slog.Handler.
func (h LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		attrs, _ := ctx.Value(attrsKey{}).([]slog.Attr)
		sc := trace.SpanContextFromContext(ctx)
		traced := sc.IsValid() && sc.IsSampled()
		if len(attrs) > 0 || traced {
			r = r.Clone() // the caller's record may share its attributes
			r.AddAttrs(attrs...)
			if traced {
				r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
			}
		}
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return LogHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h LogHandler) WithGroup(name string) slog.Handler {
	return LogHandler{h.Handler.WithGroup(name)}
}
