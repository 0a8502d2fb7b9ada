package paypal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
)

// maxRequestID is the longest PayPal-Request-Id the Orders v2 spec accepts.
const maxRequestID = 108

// Messages for the attendee, by kind of decline.
const (
	msgDeclined     = "Your card was declined. Please use another card or contact your bank."
	msgExpired      = "Your card has expired. Please use another card."
	msgSecurityCode = "The security code (CVC) of your card is not valid. Please check it and try again."
	msgUnverified   = "Your card details could not be verified. Please check them or use another card."
	msgNotAccepted  = "This card cannot be used for this payment. Please use another card."
	msgVerification = "Your bank asked for an extra verification step we cannot do here. Please use another card."
	msgGeneric      = "Your payment was not accepted. Please use another card or contact your bank."
)

// declineReasons maps the 422 issues that are about the card to what the
// attendee is told. A 422 issue absent here and from ourFault is a generic
// decline.
var declineReasons = map[string]string{
	"INSTRUMENT_DECLINED":                    msgDeclined,
	"TRANSACTION_REFUSED":                    msgDeclined,
	"PAYMENT_SOURCE_DECLINED_BY_PROCESSOR":   msgDeclined,
	"PAYMENT_DENIED":                         msgDeclined,
	"CARD_EXPIRED":                           msgExpired,
	"INVALID_EXPIRY_DATE":                    msgExpired,
	"INVALID_SECURITY_CODE_LENGTH":           msgSecurityCode,
	"PAYMENT_SOURCE_INFO_CANNOT_BE_VERIFIED": msgUnverified,
	"PAYMENT_SOURCE_CANNOT_BE_USED":          msgNotAccepted,
	"CARD_TYPE_NOT_SUPPORTED":                msgNotAccepted,
	"CARD_BRAND_NOT_SUPPORTED":               msgNotAccepted,
	"PAYER_ACTION_REQUIRED":                  msgVerification,
}

// ourFault lists the 422 issues caused by our request or our PayPal account,
// not by the card: the attendee is told the provider failed, and the log
// says error.
var ourFault = map[string]bool{
	"DECIMAL_PRECISION":                     true,
	"INVALID_CURRENCY_CODE":                 true,
	"CURRENCY_NOT_SUPPORTED":                true,
	"CANNOT_BE_ZERO_OR_NEGATIVE":            true,
	"CANNOT_BE_NEGATIVE":                    true,
	"DUPLICATE_INVOICE_ID":                  true,
	"DUPLICATE_REFERENCE_ID":                true,
	"NOT_ENABLED_FOR_CARD_PROCESSING":       true,
	"PAYEE_ACCOUNT_INVALID":                 true,
	"PAYEE_ACCOUNT_LOCKED_OR_CLOSED":        true,
	"PAYEE_ACCOUNT_RESTRICTED":              true,
	"PAYEE_NOT_ENABLED_FOR_CARD_PROCESSING": true,
	"PERMISSION_DENIED":                     true,
	"AMOUNT_MISMATCH":                       true,
	"ITEM_TOTAL_MISMATCH":                   true,
	"MAX_VALUE_EXCEEDED":                    true,
	"ORDER_NOT_APPROVED":                    true,
	"ORDER_ALREADY_CAPTURED":                true,
	"ORDER_COMPLETION_IN_PROGRESS":          true,
	"PAYPAL_REQUEST_ID_REQUIRED":            true,
	"UNSUPPORTED_INTENT":                    true,
}

// Processor response codes of declined captures that tell more than
// "declined".
var responseReasons = map[string]string{
	"5400": msgExpired,      // EXPIRED_CARD
	"00N7": msgSecurityCode, // CVV2_FAILURE_POSSIBLE_RETRY_WITH_CVV
	"5180": msgNotAccepted,  // INVALID_OR_RESTRICTED_CARD
	"1330": msgNotAccepted,  // INVALID_ACCOUNT
}

type money struct {
	CurrencyCode string `json:"currency_code"`
	Value        string `json:"value"`
}

type orderRequest struct {
	Intent        string                `json:"intent"`
	PurchaseUnits []purchaseUnitRequest `json:"purchase_units"`
	PaymentSource *paymentSource        `json:"payment_source,omitempty"`
}

type purchaseUnitRequest struct {
	Amount      money  `json:"amount"`
	CustomID    string `json:"custom_id,omitempty"`
	InvoiceID   string `json:"invoice_id,omitempty"`
	Description string `json:"description,omitempty"`
}

type paymentSource struct {
	Card *cardRequest `json:"card,omitempty"`
}

type cardRequest struct {
	Name           string   `json:"name,omitempty"`
	Number         string   `json:"number"`
	Expiry         string   `json:"expiry"`
	SecurityCode   string   `json:"security_code,omitempty"`
	BillingAddress *address `json:"billing_address,omitempty"`
}

type address struct {
	AddressLine1 string `json:"address_line_1,omitempty"`
	AddressLine2 string `json:"address_line_2,omitempty"`
	AdminArea2   string `json:"admin_area_2,omitempty"`
	AdminArea1   string `json:"admin_area_1,omitempty"`
	PostalCode   string `json:"postal_code,omitempty"`
	CountryCode  string `json:"country_code"`
}

// order is the part of PayPal's order resource registrar reads.
type order struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	PaymentSource struct {
		Card *struct {
			LastDigits string `json:"last_digits"`
			Brand      string `json:"brand"`
		} `json:"card"`
	} `json:"payment_source"`
	PurchaseUnits []struct {
		Payments *struct {
			Captures []capture `json:"captures"`
		} `json:"payments"`
	} `json:"purchase_units"`
}

type capture struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	StatusDetails *struct {
		Reason string `json:"reason"`
	} `json:"status_details"`
	ProcessorResponse *struct {
		ResponseCode string `json:"response_code"`
	} `json:"processor_response"`
}

// outcome is what an order says about the money.
type outcome int

const (
	outcomeNone     outcome = iota // no capture yet
	outcomePaid                    // a COMPLETED capture
	outcomePending                 // a PENDING capture: money may come later
	outcomeDeclined                // captures DECLINED or FAILED
	outcomeRefunded                // captured, then refunded in full
	outcomeUnclear                 // captured, then refunded in part
)

// assess finds the capture that decides an order's outcome. A COMPLETED
// capture wins over any other.
func (o *order) assess() (outcome, *capture) {
	best, bestRank := outcomeNone, 0
	var found *capture
	rank := map[outcome]int{outcomePaid: 5, outcomeUnclear: 4, outcomePending: 3, outcomeRefunded: 2, outcomeDeclined: 1}
	for _, pu := range o.PurchaseUnits {
		if pu.Payments == nil {
			continue
		}
		for i := range pu.Payments.Captures {
			c := &pu.Payments.Captures[i]
			var oc outcome
			switch c.Status {
			case "COMPLETED":
				oc = outcomePaid
			case "PENDING":
				oc = outcomePending
			case "DECLINED", "FAILED":
				oc = outcomeDeclined
			case "REFUNDED":
				oc = outcomeRefunded
			case "PARTIALLY_REFUNDED":
				oc = outcomeUnclear
			default:
				continue
			}
			if rank[oc] > bestRank {
				best, bestRank, found = oc, rank[oc], c
			}
		}
	}
	return best, found
}

// Charge takes req.Amount from the card in one step: it creates an order
// with the card as payment source (PayPal-Request-Id = req.RequestID, so a
// retry with the same id never charges twice) and, if PayPal leaves the
// order APPROVED instead of COMPLETED, captures it. It returns the charge
// only for a COMPLETED capture; a decline is a *payment.DeclinedError, and
// anything else (failure, timeout, a pending capture) wraps
// payment.ErrUnavailable. A failure that certainly took no money (the order
// never reached PayPal, or PayPal refused it before charging) also wraps
// payment.ErrNotCharged; a timeout or a 5xx after the order was sent does
// not: its outcome is unknown until Resolve.
func (c *Client) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	body, err := c.orderBody(ctx, req)
	if err != nil {
		return payment.Charge{}, err
	}
	number := payment.NormalizeNumber(req.Card.Number)
	cr := &cardRequest{
		Name:         truncate(strings.TrimSpace(req.Card.Name), 300),
		Number:       number,
		Expiry:       fmt.Sprintf("%04d-%02d", req.Card.ExpiryYear, req.Card.ExpiryMonth),
		SecurityCode: req.Card.SecurityCode,
	}
	if a := req.Address; a.Country != "" {
		cr.BillingAddress = &address{
			AddressLine1: truncate(a.Line1, 300),
			AddressLine2: truncate(a.Line2, 300),
			AdminArea2:   truncate(a.City, 120),
			AdminArea1:   truncate(a.Region, 300),
			PostalCode:   truncate(a.PostalCode, 60),
			CountryCode:  strings.ToUpper(a.Country),
		}
	}
	body.PaymentSource = &paymentSource{Card: cr}
	known := payment.Charge{Provider: Provider, Brand: payment.Brand(number), Last4: payment.Last4(number)}

	const op = "create order"
	resp, err := c.call(ctx, op, http.MethodPost, "/v2/checkout/orders", req.RequestID, body)
	if err != nil {
		var ns *notSentError
		if errors.As(err, &ns) {
			// The order never reached PayPal: certainly nothing was charged.
			err = fmt.Errorf("%w: %w", payment.ErrNotCharged, err)
		}
		return payment.Charge{}, err
	}
	if resp.status != http.StatusOK && resp.status != http.StatusCreated {
		err := c.chargeFailure(ctx, op, req.RequestID, resp)
		var declined *payment.DeclinedError
		if !errors.As(err, &declined) && refusedBeforeCharging(resp) {
			err = fmt.Errorf("%w: %w", payment.ErrNotCharged, err)
		}
		return payment.Charge{}, err
	}
	o, err := c.decodeOrder(ctx, op, req.RequestID, resp)
	if err != nil {
		return payment.Charge{}, err
	}
	if oc, _ := o.assess(); oc == outcomeNone && o.Status == "APPROVED" {
		return c.capture(ctx, req.RequestID, o.ID, known)
	}
	return c.settle(ctx, op, req.RequestID, resp, o, known)
}

// capture captures an APPROVED order with its own stable request id.
func (c *Client) capture(ctx context.Context, requestID, orderID string, known payment.Charge) (payment.Charge, error) {
	const op = "capture order"
	rid := captureRequestID(requestID)
	resp, err := c.call(ctx, op, http.MethodPost, "/v2/checkout/orders/"+url.PathEscape(orderID)+"/capture", rid, struct{}{})
	if err != nil {
		return payment.Charge{}, err
	}
	if resp.status != http.StatusOK && resp.status != http.StatusCreated {
		return payment.Charge{}, c.chargeFailure(ctx, op, rid, resp)
	}
	o, err := c.decodeOrder(ctx, op, rid, resp)
	if err != nil {
		return payment.Charge{}, err
	}
	return c.settle(ctx, op, rid, resp, o, known)
}

// settle turns a created or captured order into the result of Charge.
func (c *Client) settle(ctx context.Context, op, requestID string, resp *response, o *order, known payment.Charge) (payment.Charge, error) {
	oc, cp := o.assess()
	attrs := []slog.Attr{
		slog.String("op", op), slog.String("paypal_request_id", requestID), slog.Int("status", resp.status),
		slog.String("order_id", o.ID), slog.String("order_status", o.Status), slog.String("debug_id", resp.debugID),
	}
	if cp != nil {
		attrs = append(attrs, slog.String("capture_id", cp.ID), slog.String("capture_status", cp.Status))
	}
	switch oc {
	case outcomePaid:
		ch := chargeOf(o, cp, known)
		c.log.LogAttrs(ctx, slog.LevelInfo, "paypal capture completed", attrs...)
		return ch, nil
	case outcomeDeclined:
		reason := msgDeclined
		if cp.ProcessorResponse != nil {
			attrs = append(attrs, slog.String("response_code", cp.ProcessorResponse.ResponseCode))
			if r, ok := responseReasons[cp.ProcessorResponse.ResponseCode]; ok {
				reason = r
			}
		}
		c.log.LogAttrs(ctx, slog.LevelInfo, "paypal declined the card", attrs...)
		return payment.Charge{}, &payment.DeclinedError{Reason: reason}
	case outcomePending:
		if cp.StatusDetails != nil {
			attrs = append(attrs, slog.String("reason", cp.StatusDetails.Reason))
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "paypal capture is pending; money may still come", attrs...)
		return payment.Charge{}, fmt.Errorf("%w: paypal capture %s is pending", payment.ErrUnavailable, cp.ID)
	case outcomeRefunded, outcomeUnclear:
		c.log.LogAttrs(ctx, slog.LevelError, "paypal order was captured and refunded since", attrs...)
		return payment.Charge{}, fmt.Errorf("%w: paypal capture %s is %s", payment.ErrUnavailable, cp.ID, cp.Status)
	}
	if o.Status == "PAYER_ACTION_REQUIRED" {
		c.log.LogAttrs(ctx, slog.LevelInfo, "paypal asks for payer action (3-D Secure)", attrs...)
		return payment.Charge{}, &payment.DeclinedError{Reason: msgVerification}
	}
	c.log.LogAttrs(ctx, slog.LevelError, "paypal order has no capture", attrs...)
	return payment.Charge{}, fmt.Errorf("%w: paypal order %s is %s without a capture", payment.ErrUnavailable, o.ID, o.Status)
}

// chargeFailure interprets an error answer to create or capture.
func (c *Client) chargeFailure(ctx context.Context, op, requestID string, resp *response) error {
	e := resp.apiError()
	attrs := append([]slog.Attr{slog.String("op", op), slog.String("paypal_request_id", requestID)}, e.attrs()...)
	switch {
	case resp.status == http.StatusUnprocessableEntity && !ourFault[e.Issue]:
		reason, ok := declineReasons[e.Issue]
		if !ok {
			reason = msgGeneric
		}
		c.log.LogAttrs(ctx, slog.LevelInfo, "paypal declined the card", attrs...)
		return &payment.DeclinedError{Reason: reason}
	case resp.status == http.StatusTooManyRequests:
		ra := resp.retryAfter(c.now())
		if ra > 0 {
			attrs = append(attrs, slog.Duration("retry_after", ra))
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "paypal rate limit reached", attrs...)
		return fmt.Errorf("%w: paypal %s: %w: %w", payment.ErrUnavailable, op, e, &payment.RateLimitedError{Wait: ra})
	case resp.status >= 500, resp.status == http.StatusConflict, e.Issue == "ORDER_COMPLETION_IN_PROGRESS":
		c.log.LogAttrs(ctx, slog.LevelWarn, "paypal failed", attrs...)
	default: // 400, 401 after a fresh token, 403, 404, 415, our 422s: ours to fix
		c.log.LogAttrs(ctx, slog.LevelError, "paypal refused the request", attrs...)
	}
	return fmt.Errorf("%w: paypal %s: %w", payment.ErrUnavailable, op, e)
}

// refusedBeforeCharging reports whether an error answer to a create-order
// request certainly took no money: PayPal refuses a request it cannot accept
// (400, 401 after a fresh token, 403, 404, 415, 422, 429) before processing
// it. A 409 or ORDER_COMPLETION_IN_PROGRESS means an earlier request with the
// same id is still being processed, and a 5xx may have come after the
// charge: those stay unknown, for Resolve to settle.
func refusedBeforeCharging(resp *response) bool {
	if resp.status < 400 || resp.status >= 500 || resp.status == http.StatusConflict {
		return false
	}
	return resp.apiError().Issue != "ORDER_COMPLETION_IN_PROGRESS"
}

// decodeOrder reads an order from a 200/201 answer.
func (c *Client) decodeOrder(ctx context.Context, op, requestID string, resp *response) (*order, error) {
	var o order
	if err := json.Unmarshal(resp.body, &o); err != nil || o.ID == "" || o.Status == "" {
		c.log.LogAttrs(ctx, slog.LevelError, "paypal answered with a malformed order",
			slog.String("op", op), slog.String("paypal_request_id", requestID),
			slog.Int("status", resp.status), slog.String("debug_id", resp.debugID))
		return nil, fmt.Errorf("%w: paypal %s: malformed order in a %d answer", payment.ErrUnavailable, op, resp.status)
	}
	return &o, nil
}

// orderBody is the create-order body without payment source, shared by
// Charge and Resolve.
func (c *Client) orderBody(ctx context.Context, req payment.ChargeRequest) (*orderRequest, error) {
	if req.RequestID == "" || len(req.RequestID) > maxRequestID {
		c.log.LogAttrs(ctx, slog.LevelError, "paypal charge without a usable request id", slog.Int("length", len(req.RequestID)))
		return nil, fmt.Errorf("%w: paypal: request id must be 1 to %d characters", payment.ErrUnavailable, maxRequestID)
	}
	value, err := amountValue(req.Amount, req.Currency)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelError, "paypal charge with an unusable amount",
			slog.String("paypal_request_id", req.RequestID), slog.String("error", err.Error()))
		return nil, fmt.Errorf("%w: paypal: %w", payment.ErrUnavailable, err)
	}
	return &orderRequest{
		Intent: "CAPTURE",
		PurchaseUnits: []purchaseUnitRequest{{
			Amount:      money{CurrencyCode: strings.ToUpper(req.Currency), Value: value},
			CustomID:    req.RequestID,
			InvoiceID:   req.RequestID,
			Description: truncate(strings.TrimSpace(req.Description), 127),
		}},
	}, nil
}

// Resolve finds out whether the attempt with req.RequestID took money. It
// repeats the create-order request with the same PayPal-Request-Id and no
// payment source: PayPal answers with the latest state of the earlier
// request, or, if there was none, creates an order that has no payment
// source and so takes no money. The amount and currency of req only make the
// request valid (a replay ignores its body); without them a placeholder is
// sent.
//
// PayPal keeps request ids of orders for 6 hours: resolve well within that.
// After Resolve the request id is spent: a Charge with it only replays what
// Resolve saw and never takes money it did not report, so a new attempt
// needs a new request id.
func (c *Client) Resolve(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	if _, err := amountValue(req.Amount, req.Currency); err != nil {
		req.Amount, req.Currency = 100, "USD"
	}
	body, err := c.orderBody(ctx, req)
	if err != nil {
		return payment.Charge{}, err
	}
	var known payment.Charge
	if n := payment.NormalizeNumber(req.Card.Number); n != "" {
		known = payment.Charge{Brand: payment.Brand(n), Last4: payment.Last4(n)}
	}
	known.Provider = Provider

	const op = "resolve order"
	resp, err := c.call(ctx, op, http.MethodPost, "/v2/checkout/orders", req.RequestID, body)
	if err != nil {
		return payment.Charge{}, err
	}
	attrs := []slog.Attr{slog.String("op", op), slog.String("paypal_request_id", req.RequestID)}
	switch {
	case resp.status == http.StatusOK || resp.status == http.StatusCreated:
	case resp.status == http.StatusUnprocessableEntity:
		// A 422 takes no money: either it is the stored answer of the
		// earlier request, or there was none and our body was refused.
		e := resp.apiError()
		c.log.LogAttrs(ctx, slog.LevelInfo, "paypal: the attempt took no money", append(attrs, e.attrs()...)...)
		return payment.Charge{}, fmt.Errorf("%w: %w", payment.ErrNotCharged, e)
	default:
		return payment.Charge{}, c.chargeFailure(ctx, op, req.RequestID, resp)
	}
	o, err := c.decodeOrder(ctx, op, req.RequestID, resp)
	if err != nil {
		return payment.Charge{}, err
	}
	oc, cp := o.assess()
	attrs = append(attrs, slog.Int("status", resp.status), slog.String("order_id", o.ID),
		slog.String("order_status", o.Status), slog.String("debug_id", resp.debugID))
	if cp != nil {
		attrs = append(attrs, slog.String("capture_id", cp.ID), slog.String("capture_status", cp.Status))
	}
	switch oc {
	case outcomePaid:
		c.log.LogAttrs(ctx, slog.LevelInfo, "paypal: the attempt took money", attrs...)
		return chargeOf(o, cp, known), nil
	case outcomePending:
		c.log.LogAttrs(ctx, slog.LevelWarn, "paypal: the attempt's capture is still pending", attrs...)
		return payment.Charge{}, fmt.Errorf("%w: paypal capture %s is pending", payment.ErrUnavailable, cp.ID)
	case outcomeUnclear:
		c.log.LogAttrs(ctx, slog.LevelError, "paypal: the attempt's capture was partly refunded", attrs...)
		return payment.Charge{}, fmt.Errorf("%w: paypal capture %s is %s", payment.ErrUnavailable, cp.ID, cp.Status)
	case outcomeNone:
		if o.Status == "COMPLETED" {
			c.log.LogAttrs(ctx, slog.LevelError, "paypal: completed order without a capture", attrs...)
			return payment.Charge{}, fmt.Errorf("%w: paypal order %s is COMPLETED without a capture", payment.ErrUnavailable, o.ID)
		}
	}
	// Declined, refunded in full, or never captured.
	c.log.LogAttrs(ctx, slog.LevelInfo, "paypal: the attempt took no money", attrs...)
	return payment.Charge{}, fmt.Errorf("%w: paypal order %s is %s", payment.ErrNotCharged, o.ID, o.Status)
}

// Refund gives amount (minor units of currency) of a PayPal capture back
// (POST /v2/payments/captures/{id}/refund). requestID is the
// PayPal-Request-Id: PayPal keeps it 45 days and answers a repeat with the
// refund as it is now, so the same id never refunds twice. A COMPLETED
// refund is done, a PENDING one accepted and settled later. PayPal's
// refusals are a *payment.RefundRefusedError naming what to do: a capture
// refunded in full (CAPTURE_FULLY_REFUNDED: as a repeat of our own request
// id is answered with the refund, this means it was refunded by other
// means; the error wraps payment.ErrAlreadyRefunded), more than what is
// left (REFUND_AMOUNT_EXCEEDED), too old to refund
// (REFUND_TIME_LIMIT_EXCEEDED). PayPal failures and timeouts wrap
// payment.ErrUnavailable and may be retried with the same id.
func (c *Client) Refund(ctx context.Context, ch payment.Charge, amount int64, currency, requestID string) (payment.RefundOutcome, error) {
	if ch.Provider != Provider || ch.Reference == "" {
		return payment.RefundOutcome{}, &payment.RefundRefusedError{
			Reason: fmt.Sprintf("charge %q/%q is not a PayPal capture", ch.Provider, ch.Reference)}
	}
	if requestID == "" {
		return payment.RefundOutcome{}, errors.New("paypal refund: empty request id")
	}
	if amount <= 0 {
		return payment.RefundOutcome{}, &payment.RefundRefusedError{Reason: fmt.Sprintf("amount %d is not positive", amount)}
	}
	value, err := amountValue(amount, currency)
	if err != nil {
		return payment.RefundOutcome{}, &payment.RefundRefusedError{Reason: err.Error()}
	}
	body := struct {
		Amount money `json:"amount"`
	}{money{CurrencyCode: strings.ToUpper(currency), Value: value}}

	const op = "refund capture"
	resp, err := c.call(ctx, op, http.MethodPost, "/v2/payments/captures/"+url.PathEscape(ch.Reference)+"/refund", requestID, body)
	if err != nil {
		return payment.RefundOutcome{}, err
	}
	attrs := []slog.Attr{slog.String("op", op), slog.String("paypal_request_id", requestID), slog.String("capture_id", ch.Reference)}
	if resp.status == http.StatusOK || resp.status == http.StatusCreated {
		var r struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(resp.body, &r); err != nil || r.ID == "" {
			c.log.LogAttrs(ctx, slog.LevelError, "paypal answered with a malformed refund",
				append(attrs, slog.Int("status", resp.status), slog.String("debug_id", resp.debugID))...)
			return payment.RefundOutcome{}, fmt.Errorf("%w: paypal %s: malformed refund in a %d answer", payment.ErrUnavailable, op, resp.status)
		}
		attrs = append(attrs, slog.Int("status", resp.status), slog.String("refund_id", r.ID),
			slog.String("refund_status", r.Status), slog.String("debug_id", resp.debugID))
		switch r.Status {
		case "COMPLETED":
			c.log.LogAttrs(ctx, slog.LevelInfo, "paypal refund accepted", attrs...)
			return payment.RefundOutcome{Reference: r.ID}, nil
		case "PENDING":
			c.log.LogAttrs(ctx, slog.LevelInfo, "paypal refund accepted; pending", attrs...)
			return payment.RefundOutcome{Reference: r.ID, Pending: true}, nil
		}
		c.log.LogAttrs(ctx, slog.LevelError, "paypal refund did not go through", attrs...)
		return payment.RefundOutcome{}, &payment.RefundRefusedError{Issue: r.Status,
			Reason: fmt.Sprintf("PayPal reports refund %s of capture %s as %s; nothing was refunded", r.ID, ch.Reference, r.Status)}
	}
	e := resp.apiError()
	attrs = append(attrs, e.attrs()...)
	switch {
	case resp.status >= 500, resp.status == http.StatusTooManyRequests, resp.status == http.StatusConflict:
		c.log.LogAttrs(ctx, slog.LevelWarn, "paypal refund failed", attrs...)
		return payment.RefundOutcome{}, fmt.Errorf("%w: paypal %s: %w", payment.ErrUnavailable, op, e)
	case resp.status == http.StatusUnauthorized:
		c.log.LogAttrs(ctx, slog.LevelError, "paypal refused our credentials for a refund", attrs...)
		return payment.RefundOutcome{}, fmt.Errorf("%w: paypal %s: %w", payment.ErrUnavailable, op, e)
	}
	c.log.LogAttrs(ctx, slog.LevelWarn, "paypal refused the refund", attrs...)
	refused := &payment.RefundRefusedError{Issue: e.Issue, Reason: refundRefusal(e)}
	if e.Issue == "CAPTURE_FULLY_REFUNDED" {
		refused.Err = payment.ErrAlreadyRefunded
	}
	return payment.RefundOutcome{}, refused
}

// refundRefusal explains a refused refund to organisers.
func refundRefusal(e *apiError) string {
	switch e.Issue {
	case "CAPTURE_FULLY_REFUNDED":
		return "PayPal says the capture was already refunded in full by other means (for example in PayPal's dashboard); nothing more was refunded"
	case "REFUND_AMOUNT_EXCEEDED":
		return "PayPal says the refund is more than what is left of the capture (part of it may have been refunded by other means); nothing was refunded"
	case "REFUND_TIME_LIMIT_EXCEEDED":
		return "PayPal no longer allows refunds of this capture: it is too old; give the money back another way (for example by bank transfer)"
	case "TRANSACTION_DISPUTED":
		return "the payment is disputed at PayPal; settle the dispute there"
	case "PENDING_CAPTURE":
		return "the capture is still pending at PayPal; refund it once it has completed"
	}
	return "PayPal refused the refund: " + e.Error()
}

// chargeOf is the charge of a COMPLETED capture. Brand and last four digits
// come from the card of the request, or else from the order.
func chargeOf(o *order, cp *capture, known payment.Charge) payment.Charge {
	ch := payment.Charge{Provider: Provider, Reference: cp.ID, Brand: known.Brand, Last4: known.Last4}
	if ch.Last4 == "" && o.PaymentSource.Card != nil {
		ch.Brand = brandOf(o.PaymentSource.Card.Brand)
		ch.Last4 = o.PaymentSource.Card.LastDigits
	}
	return ch
}

// brandOf maps PayPal's card_brand to payment.Brand's names.
func brandOf(b string) string {
	switch strings.ToUpper(b) {
	case "VISA":
		return "visa"
	case "MASTERCARD", "MASTER_CARD":
		return "mastercard"
	case "AMEX":
		return "amex"
	case "DISCOVER":
		return "discover"
	case "JCB":
		return "jcb"
	case "DINERS":
		return "diners"
	case "":
		return ""
	default:
		return "card"
	}
}

// amountValue formats minor units as PayPal's decimal string. PayPal takes
// no decimals for HUF and TWD although ISO 4217 gives them two.
func amountValue(minor int64, currency string) (string, error) {
	if len(currency) != 3 {
		return "", fmt.Errorf("currency %q is not a three-letter code", currency)
	}
	if minor <= 0 {
		return "", fmt.Errorf("amount %d is not positive", minor)
	}
	cur := strings.ToUpper(currency)
	switch cur {
	case "HUF", "TWD":
		if minor%100 != 0 {
			return "", fmt.Errorf("PayPal takes whole amounts of %s, not %s", cur, event.FormatAmount(minor, cur))
		}
		return strconv.FormatInt(minor/100, 10), nil
	}
	return event.FormatAmount(minor, cur), nil
}

// captureRequestID derives the capture's PayPal-Request-Id from the
// attempt's, within PayPal's length limit.
func captureRequestID(requestID string) string {
	if id := requestID + "-capture"; len(id) <= maxRequestID {
		return id
	}
	sum := sha256.Sum256([]byte(requestID))
	return "capture-" + hex.EncodeToString(sum[:])
}

// truncate cuts s to at most n characters.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}
