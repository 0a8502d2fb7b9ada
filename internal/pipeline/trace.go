package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/telemetry"
)

// A job carries where it came from in its metadata: the request id of the
// request that caused it ("request_id") and the W3C trace context of the
// span that inserted it ("traceparent", "tracestate"). Its work continues
// both: its log lines carry the request id, and its span is a child of the
// inserting span, in the same trace.

// stamp returns p with ctx's request id and trace context added to its
// metadata. It runs where a job is handed over for insertion, with the
// inserting context: a group-commit batch inserts its jobs later, with a
// context of its own.
func stamp(ctx context.Context, p river.InsertManyParams) river.InsertManyParams {
	id := telemetry.RequestID(ctx)
	carrier := propagation.MapCarrier{}
	telemetry.Propagator().Inject(ctx, carrier)
	if id == "" && len(carrier) == 0 {
		return p
	}
	var opts river.InsertOpts
	if p.InsertOpts != nil {
		opts = *p.InsertOpts // not the caller's: it may be shared
	}
	m := map[string]any{}
	if len(opts.Metadata) > 0 {
		if err := json.Unmarshal(opts.Metadata, &m); err != nil {
			return p // not an object: left as it is
		}
	}
	if id != "" {
		m["request_id"] = id
	}
	for k, v := range carrier {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return p
	}
	opts.Metadata = b
	p.InsertOpts = &opts
	return p
}

// stampAll stamps each of jobs (see stamp).
func stampAll(ctx context.Context, jobs []river.InsertManyParams) []river.InsertManyParams {
	out := make([]river.InsertManyParams, len(jobs))
	for i, j := range jobs {
		out[i] = stamp(ctx, j)
	}
	return out
}

// origin is what a job's metadata says of where it came from.
type origin struct {
	RequestID   string `json:"request_id"`
	Traceparent string `json:"traceparent"`
	Tracestate  string `json:"tracestate"`
}

// jobMiddleware works each job with its request id, its id, kind and
// attempt on every log line, and in a span continuing the trace of the
// span that inserted it.
type jobMiddleware struct {
	river.MiddlewareDefaults
	tracer trace.Tracer
}

func (m *jobMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	var o origin
	_ = json.Unmarshal(job.Metadata, &o) // metadata without an origin is worked without
	if o.RequestID != "" {
		ctx = telemetry.WithRequestID(ctx, o.RequestID)
	}
	ctx = telemetry.WithLogAttrs(ctx, slog.Int64("job_id", job.ID), slog.String("job_kind", job.Kind),
		slog.Int("job_attempt", job.Attempt))
	if o.Traceparent != "" {
		ctx = telemetry.Propagator().Extract(ctx, propagation.MapCarrier{"traceparent": o.Traceparent, "tracestate": o.Tracestate})
	}
	attrs := []attribute.KeyValue{
		attribute.Int64("registrar.job.id", job.ID),
		attribute.String("registrar.job.kind", job.Kind),
		attribute.Int("registrar.job.attempt", job.Attempt),
		attribute.String("registrar.job.queue", job.Queue),
	}
	if o.RequestID != "" {
		attrs = append(attrs, attribute.String("registrar.request_id", o.RequestID))
	}
	var args struct {
		RegistrationID string `json:"registration_id"`
	}
	if json.Unmarshal(job.EncodedArgs, &args) == nil && args.RegistrationID != "" {
		attrs = append(attrs, attribute.String("registrar.registration_id", args.RegistrationID))
	}
	ctx, span := m.tracer.Start(ctx, "job "+job.Kind, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	defer span.End()
	err := doInner(ctx)
	var snooze *river.JobSnoozeError
	switch {
	case errors.As(err, &snooze):
		span.SetAttributes(attribute.Bool("registrar.job.snoozed", true))
	case err != nil:
		// Errors may quote a provider's answer: the span says only that it
		// failed; the step's row and the log say why.
		span.SetStatus(codes.Error, "job failed")
	}
	return err
}

// runStep runs activity a's effect for reg in a span of its own.
func (d Deps) runStep(ctx context.Context, a activity, reg registration.Registration) (record, error) {
	ctx, span := d.Tracing.Tracer().Start(ctx, string(a.step), trace.WithAttributes(
		attribute.String("registrar.step", string(a.step)),
		attribute.String("registrar.registration_id", reg.ID),
		attribute.String("registrar.ticket_id", reg.TicketID),
	))
	defer span.End()
	rec, err := a.run(ctx, d, reg)
	if err != nil {
		span.SetStatus(codes.Error, "step failed")
	}
	return rec, err
}
