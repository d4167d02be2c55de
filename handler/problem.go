package handler

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"seckill/limiter"
	"seckill/order"
	"seckill/stock"
)

// Problem is an RFC 9457 problem+json body with a stable machine code.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`

	retryAfter time.Duration
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// Codes of the API's problems; clients switch on these.
const (
	CodeSoldOut            = "sold_out"
	CodePurchaseLimit      = "purchase_limit"
	CodeTokenInvalid       = "token_invalid"
	CodeSaleNotStarted     = "sale_not_started"
	CodeSaleEnded          = "sale_ended"
	CodeRateLimited        = "rate_limited"
	CodeOverloaded         = "overloaded"
	CodeUnavailable        = "unavailable"
	CodeNotFound           = "not_found"
	CodeInvalidRequest     = "invalid_request"
	CodeUnauthorized       = "unauthorized"
	CodePurchaseInProgress = "purchase_in_progress"
	CodeOrderPending       = "order_pending"
	CodePaymentExpired     = "payment_expired"
	CodeAlreadyPaid        = "already_paid"
	CodeOrderCancelled     = "order_cancelled"
	CodeInternal           = "internal"
)

func newProblem(status int, code, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Code: code, Detail: detail}
}

func invalid(detail string) *Problem {
	return newProblem(http.StatusBadRequest, CodeInvalidRequest, detail)
}

// errSaleNotStarted and errSaleEnded are the sale window refusals.
var (
	errSaleNotStarted = newProblem(http.StatusForbidden, CodeSaleNotStarted, "the sale has not started yet")
	errSaleEnded      = newProblem(http.StatusGone, CodeSaleEnded, "the sale has ended")
	errUnauthorized   = newProblem(http.StatusUnauthorized, CodeUnauthorized, "missing or invalid bearer token")
	errNotFound       = newProblem(http.StatusNotFound, CodeNotFound, "no such resource")
	errOrderPending   = &Problem{Type: "about:blank", Title: "Conflict", Status: http.StatusConflict, Code: CodeOrderPending,
		Detail: "the order is accepted but not stored yet; retry shortly", retryAfter: time.Second}
)

// statusTable maps expected outcomes of the packages to their problem: the
// one place errors become HTTP statuses.
var statusTable = []struct {
	err        error
	status     int
	code       string
	detail     string
	retryAfter time.Duration
}{
	{stock.ErrSoldOut, http.StatusConflict, CodeSoldOut, "the item is sold out", 0},
	{stock.ErrAlreadyPurchased, http.StatusConflict, CodePurchaseLimit, "you already bought your limit of this item", 0},
	{stock.ErrTokenInvalid, http.StatusForbidden, CodeTokenInvalid, "the Idempotency-Key is not a valid purchase token of yours for this item", 0},
	{stock.ErrPurchaseInProgress, http.StatusConflict, CodePurchaseInProgress, "this purchase is still being processed; retry shortly", time.Second},
	{stock.ErrNotReady, http.StatusServiceUnavailable, CodeUnavailable, "stock is being rebuilt; retry shortly", time.Second},
	{limiter.ErrLimited, http.StatusTooManyRequests, CodeRateLimited, "too many requests", time.Second},
	{limiter.ErrOverloaded, http.StatusServiceUnavailable, CodeOverloaded, "the service is overloaded", time.Second},
	{order.ErrNotFound, http.StatusNotFound, CodeNotFound, "no such resource", 0},
	{order.ErrAlreadyPaid, http.StatusConflict, CodeAlreadyPaid, "the order is already paid", 0},
	{order.ErrPaymentExpired, http.StatusConflict, CodePaymentExpired, "the payment window of the order has closed", 0},
	{order.ErrCancelled, http.StatusConflict, CodeOrderCancelled, "the order was cancelled", 0},
}

// toProblem turns any error into the problem the client sees. Errors that are
// not expected outcomes are dependency failures: 503 with Retry-After, never
// a business answer, and their text never reaches the client.
func toProblem(err error) (p *Problem, internal bool) {
	if errors.As(err, &p) {
		return p, false
	}
	for _, row := range statusTable {
		if errors.Is(err, row.err) {
			p := newProblem(row.status, row.code, row.detail)
			p.retryAfter = row.retryAfter
			var rej *limiter.Rejection
			if errors.As(err, &rej) && rej.RetryAfter > 0 {
				p.retryAfter = rej.RetryAfter
			}
			return p, false
		}
	}
	if errors.Is(err, context.Canceled) {
		return newProblem(499, CodeUnavailable, "request cancelled"), false
	}
	p = newProblem(http.StatusServiceUnavailable, CodeUnavailable, "a dependency is unavailable; retry shortly")
	p.retryAfter = time.Second
	return p, true
}

// writeProblem renders p; it sets Retry-After for 429 and 503.
func writeProblem(c *gin.Context, p *Problem) {
	if p.retryAfter > 0 {
		secs := int((p.retryAfter + time.Second - 1) / time.Second)
		c.Header("Retry-After", strconv.Itoa(secs))
	}
	c.Header("Content-Type", "application/problem+json")
	c.Header("Cache-Control", "no-store")
	c.JSON(p.Status, p)
}
