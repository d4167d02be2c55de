package handler

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"seckill/order/sale"
)

// Problem is an RFC 9457 problem+json body with a stable machine code.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
	// Failing names the dependencies that fail (/readyz only).
	Failing []string `json:"failing,omitempty"`

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

	// Payments and cancels (payments.go).
	CodeBadSignature      = "bad_signature"
	CodeStaleCallback     = "stale_callback"
	CodeAmountMismatch    = "amount_mismatch"
	CodeTransactionReused = "transaction_reused"
	CodeNotPayable        = "not_payable"

	// The operator's controls.
	CodeSalePaused  = "sale_paused"
	CodeSaleStarted = "sale_started"
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

// notReady is /readyz's 503: the failing dependencies, by name.
func notReady(failing []string, after time.Duration) *Problem {
	p := &Problem{Type: "about:blank", Title: http.StatusText(http.StatusServiceUnavailable),
		Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
		Detail: strings.Join(failing, ", ") + " unavailable", Failing: failing}
	p.body, _ = json.Marshal(p) // strings and ints: cannot fail
	return retryable(p, after)
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

// Problems of the transport itself (the request, its credentials), and
// the answers to errors that are no outcome of the sale.
var (
	// RFC 6750 section 3.1: a request without a token gets no error code.
	errNoToken  = unauthorized("missing bearer token", `Bearer realm="seckill"`)
	errBadToken = unauthorized("invalid or expired bearer token",
		`Bearer realm="seckill", error="invalid_token", error_description="the token is invalid or expired"`)
	errDuplicateKey = invalid("send the Idempotency-Key header once")
	errNotJSON      = newProblem(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type must be application/json")
	errNotFound     = newProblem(http.StatusNotFound, CodeNotFound, "no such resource")
	errInternal     = retryable(newProblem(http.StatusServiceUnavailable, CodeUnavailable,
		"a dependency is unavailable; retry shortly"), time.Second)
	errCancelled = newProblem(499, CodeUnavailable, "request cancelled")
)

// kindTable maps the sale's outcomes to HTTP: the one place they become
// statuses and problem codes. The detail is the outcome's message; a
// Retry-After is sent when the outcome says when to retry.
var kindTable = [sale.NumKinds]struct {
	status int
	code   string
}{
	sale.Internal:       {http.StatusServiceUnavailable, CodeUnavailable},
	sale.Invalid:        {http.StatusBadRequest, CodeInvalidRequest},
	sale.NotFound:       {http.StatusNotFound, CodeNotFound},
	sale.SoldOut:        {http.StatusConflict, CodeSoldOut},
	sale.LimitReached:   {http.StatusConflict, CodePurchaseLimit},
	sale.TokenInvalid:   {http.StatusForbidden, CodeTokenInvalid},
	sale.NotStarted:     {http.StatusForbidden, CodeSaleNotStarted},
	sale.Ended:          {http.StatusGone, CodeSaleEnded},
	sale.InProgress:     {http.StatusConflict, CodePurchaseInProgress},
	sale.Pending:        {http.StatusConflict, CodeOrderPending},
	sale.AlreadyPaid:    {http.StatusConflict, CodeAlreadyPaid},
	sale.PaymentExpired: {http.StatusConflict, CodePaymentExpired},
	sale.Cancelled:      {http.StatusConflict, CodeOrderCancelled},
	sale.RateLimited:    {http.StatusTooManyRequests, CodeRateLimited},
	sale.Overloaded:     {http.StatusServiceUnavailable, CodeOverloaded},
	sale.Unavailable:    {http.StatusServiceUnavailable, CodeUnavailable},

	sale.AmountMismatch: {http.StatusUnprocessableEntity, CodeAmountMismatch},
	sale.TxReused:       {http.StatusConflict, CodeTransactionReused},
	sale.NotPayable:     {http.StatusConflict, CodeNotPayable},
	sale.Paused:         {http.StatusConflict, CodeSalePaused},
	sale.Started:        {http.StatusConflict, CodeSaleStarted},
}

// saleProblem is the problem of a sale outcome.
func saleProblem(e *sale.Error) *Problem {
	row := kindTable[e.Kind]
	p := newProblem(row.status, row.code, e.Message)
	if e.RetryAfter > 0 {
		p = retryable(p, e.RetryAfter)
	}
	return p
}

// saleProblems are the problems of the sale's sentinel outcomes, encoded
// once: the hot path's refusals (sold out above all) are found by pointer,
// without allocating.
var saleProblems = func() map[*sale.Error]*Problem {
	m := map[*sale.Error]*Problem{}
	for _, e := range sale.Sentinels() {
		m[e] = saleProblem(e)
	}
	return m
}()

// toProblem turns any error into the problem the client sees. Errors that are
// no outcome of the sale are dependency failures: 503 with Retry-After, never
// a business answer, and their text never reaches the client.
func toProblem(err error) (*Problem, bool) {
	// Fast paths for a bare *Problem or sale sentinel, the hot path's
	// refusals: no reflection, no allocation.
	if p, ok := err.(*Problem); ok {
		return p, false
	}
	if e, ok := err.(*sale.Error); ok {
		if p, ok := saleProblems[e]; ok {
			return p, false
		}
	}
	var p *Problem
	if errors.As(err, &p) {
		return p, false
	}
	if e := sale.ErrorOf(err); e != nil && e.Kind != sale.Internal {
		if p, ok := saleProblems[e]; ok {
			return p, false
		}
		return saleProblem(e), false
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
