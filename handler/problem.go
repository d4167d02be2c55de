package handler

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"seckill/order/lifecycle"
	"strconv"
	"time"

	"github.com/bsm/redislock"
	"github.com/gin-gonic/gin"

	"seckill/limiter"
	"seckill/order"
	"seckill/order/orderid"
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
	retryHdr   []string // Retry-After value of retryAfter, formatted once
	challenge  []string // WWW-Authenticate value of a 401
	body       []byte   // the JSON above, encoded once
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// Codes of the API's problems; clients switch on these.
const (
	CodeSoldOut              = "sold_out"
	CodePurchaseLimit        = "purchase_limit"
	CodeTokenInvalid         = "token_invalid"
	CodeSaleNotStarted       = "sale_not_started"
	CodeSaleEnded            = "sale_ended"
	CodeRateLimited          = "rate_limited"
	CodeOverloaded           = "overloaded"
	CodeUnavailable          = "unavailable"
	CodeNotFound             = "not_found"
	CodeInvalidRequest       = "invalid_request"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeUnauthorized         = "unauthorized"
	CodePurchaseInProgress   = "purchase_in_progress"
	CodeOrderPending         = "order_pending"
	CodePaymentExpired       = "payment_expired"
	CodeAlreadyPaid          = "already_paid"
	CodeOrderCancelled       = "order_cancelled"
	CodeInternal             = "internal"
)

func newProblem(status int, code, detail string) *Problem {
	p := &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Code: code, Detail: detail}
	p.body, _ = json.Marshal(p) // plain strings and ints: cannot fail
	return p
}

func retryable(p *Problem, after time.Duration) *Problem {
	p.retryAfter = after
	secs := int((after + time.Second - 1) / time.Second)
	p.retryHdr = []string{strconv.Itoa(secs)}
	return p
}

func invalid(detail string) *Problem {
	return newProblem(http.StatusBadRequest, CodeInvalidRequest, detail)
}

// unauthorized is a 401 with its RFC 6750 challenge, which tells the client
// what scheme the route wants and, when a token was sent, that it failed.
func unauthorized(detail, challenge string) *Problem {
	p := newProblem(http.StatusUnauthorized, CodeUnauthorized, detail)
	p.challenge = []string{challenge}
	return p
}

// ErrNoOrderID is the failure of a Deps.IDs that cannot make an order id
// safely now (its node id lease is unconfirmed): a dependency state that
// passes, so 503 with Retry-After. An IDs implementation wraps it.
var ErrNoOrderID = orderid.ErrUnavailable

// errSaleNotStarted and errSaleEnded are the sale window refusals.
var (
	errSaleNotStarted = newProblem(http.StatusForbidden, CodeSaleNotStarted, "the sale has not started yet")
	errSaleEnded      = newProblem(http.StatusGone, CodeSaleEnded, "the sale has ended")
	// RFC 6750 section 3.1: a request without a token gets no error code.
	errNoToken  = unauthorized("missing bearer token", `Bearer realm="seckill"`)
	errBadToken = unauthorized("invalid or expired bearer token",
		`Bearer realm="seckill", error="invalid_token", error_description="the token is invalid or expired"`)
	errDuplicateKey = invalid("send the Idempotency-Key header once")
	errNotJSON      = newProblem(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type must be application/json")
	errNotFound     = newProblem(http.StatusNotFound, CodeNotFound, "no such resource")
	errOrderPending = retryable(newProblem(http.StatusConflict, CodeOrderPending,
		"the order is accepted but not stored yet; retry shortly"), time.Second)
	errInternal = retryable(newProblem(http.StatusServiceUnavailable, CodeUnavailable,
		"a dependency is unavailable; retry shortly"), time.Second)
	errCancelled = newProblem(499, CodeUnavailable, "request cancelled")
)

// statusTable maps expected outcomes of the packages to their problem: the
// one place errors become HTTP statuses. Bodies are encoded once.
var statusTable = []struct {
	err error
	p   *Problem
}{
	{stock.ErrSoldOut, newProblem(http.StatusConflict, CodeSoldOut, "the item is sold out")},
	{stock.ErrAlreadyPurchased, newProblem(http.StatusConflict, CodePurchaseLimit, "you already bought your limit of this item")},
	{stock.ErrTokenInvalid, newProblem(http.StatusForbidden, CodeTokenInvalid, "the Idempotency-Key is not a valid purchase token of yours for this item")},
	{stock.ErrPurchaseInProgress, retryable(newProblem(http.StatusConflict, CodePurchaseInProgress, "this purchase is still being processed; retry shortly"), time.Second)},
	{stock.ErrNotReady, retryable(newProblem(http.StatusServiceUnavailable, CodeUnavailable, "stock is being rebuilt; retry shortly"), time.Second)},
	{limiter.ErrLimited, retryable(newProblem(http.StatusTooManyRequests, CodeRateLimited, "too many requests"), time.Second)},
	{limiter.ErrOverloaded, retryable(newProblem(http.StatusServiceUnavailable, CodeOverloaded, "the service is overloaded"), time.Second)},
	{order.ErrNotFound, newProblem(http.StatusNotFound, CodeNotFound, "no such resource")},
	{order.ErrInvalidItem, newProblem(http.StatusBadRequest, CodeInvalidRequest, "the item is invalid")},
	{order.ErrAlreadyPaid, newProblem(http.StatusConflict, CodeAlreadyPaid, "the order is already paid")},
	{order.ErrPaymentExpired, newProblem(http.StatusConflict, CodePaymentExpired, "the payment window of the order has closed")},
	{order.ErrCancelled, newProblem(http.StatusConflict, CodeOrderCancelled, "the order was cancelled")},
	// Passing states of the dependencies, not failures: answered without
	// logging an error, and retrying later helps.
	{lifecycle.ErrNotSettled, retryable(newProblem(http.StatusServiceUnavailable, CodeUnavailable,
		"orders are still moving between Redis, Kafka and MySQL; sales of the item stay stopped until a rebuild succeeds, retry it"), 5*time.Second)},
	{redislock.ErrNotObtained, retryable(newProblem(http.StatusServiceUnavailable, CodeUnavailable,
		"another instance holds the lease this needs; retry shortly"), time.Second)},
	{ErrNoOrderID, retryable(newProblem(http.StatusServiceUnavailable, CodeUnavailable,
		"no order id can be made safely now; retry shortly"), time.Second)},
}

// toProblem turns any error into the problem the client sees. Errors that are
// not expected outcomes are dependency failures: 503 with Retry-After, never
// a business answer, and their text never reaches the client.
func toProblem(err error) (*Problem, bool) {
	// Fast paths for a bare *Problem or sentinel, the hot path's refusals
	// (sold out above all): no reflection, no allocation. A bare sentinel
	// carries no Rejection, so the general path would answer the same.
	if p, ok := err.(*Problem); ok {
		return p, false
	}
	for _, row := range statusTable {
		if err == row.err {
			return row.p, false
		}
	}
	var p *Problem
	if errors.As(err, &p) {
		return p, false
	}
	for _, row := range statusTable {
		if errors.Is(err, row.err) {
			var rej *limiter.Rejection
			if errors.As(err, &rej) && rej.RetryAfter > 0 && rej.RetryAfter != row.p.retryAfter {
				cp := *row.p // the shared row stays as it is
				return retryable(&cp, rej.RetryAfter), false
			}
			return row.p, false
		}
	}
	if errors.Is(err, context.Canceled) {
		return errCancelled, false
	}
	return errInternal, true
}

// Header values every problem answer shares. net/http copies the header map
// when it writes it, and nothing appends to these in place, so sharing them
// saves two allocations per answer (gin does the same for its JSON type).
var (
	problemContentType = []string{"application/problem+json"}
	noStore            = []string{"no-store"}
)

// writeProblem renders p; it sets Retry-After for 429 and 503 and
// WWW-Authenticate for 401. The header keys are already canonical, so they
// are set without Header.Set.
func writeProblem(c *gin.Context, p *Problem) {
	hdr := c.Writer.Header()
	if p.retryAfter > 0 {
		hdr["Retry-After"] = p.retryHdr
	}
	if p.challenge != nil {
		hdr["Www-Authenticate"] = p.challenge
	}
	hdr["Cache-Control"] = noStore
	hdr["Content-Type"] = problemContentType
	c.Status(p.Status)
	_, _ = c.Writer.Write(p.body) // a failed write is the client gone: nothing to tell it
}
