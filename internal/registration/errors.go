package registration

import "time"

// Error codes of the HTTP API (the README lists each with its HTTP status).
const (
	CodeInvalidRequest        = "invalid_request"
	CodeRequestTooLarge       = "request_too_large"
	CodeUnsupportedMediaType  = "unsupported_media_type"
	CodeValidationFailed      = "validation_failed"
	CodePaymentDeclined       = "payment_declined"
	CodeSoldOut               = "sold_out"
	CodeSalesNotOpen          = "sales_not_open"
	CodeSalesClosed           = "sales_closed"
	CodeIdempotencyInProgress = "idempotency_in_progress"
	CodeIdempotencyKeyReused  = "idempotency_key_reused"
	CodeRateLimited           = "rate_limited"
	CodePaymentUnavailable    = "payment_unavailable"
	CodeNotFound              = "not_found"
	CodeInternal              = "internal"
)

// Error is an error an attendee may see: a code from the API table, a message
// written for people, and per-field problems for validation failures.
type Error struct {
	Code    string
	Message string
	Fields  map[string]string
	// Retryable marks an answer that may change soon (seats only held by
	// attempts in progress): it is never stored under an idempotency key,
	// and RetryAfter says when to try again.
	Retryable  bool
	RetryAfter time.Duration
	Err        error // the cause, for logs; never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }
