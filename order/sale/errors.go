package sale

import (
	"errors"
	"time"

	"seckill/limiter"
	"seckill/limiter/breaker"
	"seckill/order"
	"seckill/order/lifecycle"
	"seckill/stock"
)

// Kind is what an outcome of the sale means to its caller: a closed set,
// which the transport maps to its answers in one table (HTTP statuses and
// problem codes in package handler). Every kind but Internal is an expected
// outcome; Internal is a failing dependency.
type Kind uint8

// The kinds of outcome.
const (
	// Internal: not an expected outcome (a dependency failed); the caller
	// answers "unavailable, retry" and logs it.
	Internal Kind = iota
	// Invalid: the request breaks a rule of the sale (a bad item).
	Invalid
	// NotFound: no such item or order, for this caller.
	NotFound
	// SoldOut: no unit left.
	SoldOut
	// LimitReached: the buyer holds the per-user limit of the item.
	LimitReached
	// TokenInvalid: the purchase token is not one of this buyer's for
	// this item.
	TokenInvalid
	// NotStarted and Ended: outside the item's sale window.
	NotStarted
	Ended
	// InProgress: the same purchase is still being processed; retry.
	InProgress
	// Pending: the order is accepted but not stored yet; retry.
	Pending
	// AlreadyPaid, PaymentExpired, Cancelled: the order's state refuses
	// the payment.
	AlreadyPaid
	PaymentExpired
	Cancelled
	// RateLimited: the buyer or everyone sends too much; retry later.
	RateLimited
	// Overloaded: too many purchases in flight; retry later.
	Overloaded
	// Unavailable: a dependency is in a passing state (stock being
	// rebuilt, a lease held elsewhere, no order id can be made); retry.
	Unavailable

	// Payments (payments.go).
	// AmountMismatch: a payment's amount or currency is not the order's.
	AmountMismatch
	// TxReused: a payment transaction id was applied with other content.
	TxReused
	// NotPayable: the order has no price.
	NotPayable

	// The operator's controls (admin.go).
	// Paused: the operator paused the item's sale; retry after it resumes.
	Paused
	// Started: the item's window or limit cannot change, its sale started.
	Started

	// NumKinds is the number of kinds, for tables indexed by Kind.
	NumKinds
)

// Error is an expected outcome of the sale: its kind, a message in the
// API's words (the client sees it), and when a retry may help.
type Error struct {
	Kind    Kind
	Message string
	// RetryAfter is how long to wait before a retry may help; 0: a retry
	// does not help.
	RetryAfter time.Duration
	// err is the cause (logs, errors.Is); nil for the sentinels.
	err error
}

func (e *Error) Error() string {
	if e.err != nil {
		return e.Message + ": " + e.err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.err }

func newError(k Kind, msg string) *Error { return &Error{Kind: k, Message: msg} }

func retryable(k Kind, msg string, after time.Duration) *Error {
	return &Error{Kind: k, Message: msg, RetryAfter: after}
}

// The sale's outcomes. They are returned as they are (never wrapped), so
// that a caller may find an answer made once for each by its pointer.
var (
	ErrSoldOut      = newError(SoldOut, "the item is sold out")
	ErrLimitReached = newError(LimitReached, "you already bought your limit of this item")
	ErrTokenInvalid = newError(TokenInvalid, "the Idempotency-Key is not a valid purchase token of yours for this item")
	// ErrTokenExpired: a token of the buyer's for the item, past its
	// expiry and never used (a used one gets its stored answer).
	ErrTokenExpired = newError(TokenInvalid, "the purchase token has expired unused; fetch a new one")
	ErrInProgress   = retryable(InProgress, "this purchase is still being processed; retry shortly", time.Second)
	ErrNotStarted   = newError(NotStarted, "the sale has not started yet")
	ErrEnded        = newError(Ended, "the sale has ended")
	ErrNotFound     = newError(NotFound, "no such resource")
	ErrInvalidItem  = newError(Invalid, "the item is invalid")
	ErrOrderPending = retryable(Pending, "the order is accepted but not stored yet; retry shortly", time.Second)
	ErrAlreadyPaid  = newError(AlreadyPaid, "the order is already paid")
	ErrPaymentEnded = newError(PaymentExpired, "the payment window of the order has closed")
	ErrCancelled    = newError(Cancelled, "the order was cancelled")
	ErrRateLimited  = retryable(RateLimited, "too many requests", time.Second)
	ErrOverloaded   = retryable(Overloaded, "the service is overloaded", time.Second)
	ErrNotReady     = retryable(Unavailable, "stock is being rebuilt; retry shortly", time.Second)
	ErrNotSettled   = retryable(Unavailable, "orders are still moving between Redis, Kafka and MySQL; sales of the item stay stopped until a rebuild succeeds, retry it", 5*time.Second)
	ErrLeaseHeld    = retryable(Unavailable, "another instance holds the lease this needs; retry shortly", time.Second)
	// ErrNoOrderID is the failure of an IDs that cannot make an order id
	// safely now (its node id lease is unconfirmed, or its clock is behind
	// the ids it made): a passing state, so retry. An IDs implementation
	// may wrap it; any error of NextID is answered as this one.
	ErrNoOrderID = retryable(Unavailable, "no order id can be made safely now; retry shortly", time.Second)
	// ErrRedisEvicts: Redis may evict keys (its maxmemory-policy is not
	// noeviction), and an evicted key is a lost order or an oversell:
	// purchases and token issues stop until it is noeviction again.
	ErrRedisEvicts = retryable(Unavailable, "redis may evict keys (its maxmemory-policy is not noeviction); purchases are stopped until it is fixed, retry later", 5*time.Second)
	// ErrDependencyDown: the circuit breaker of a dependency is open (it
	// did not answer lately), so the call was not sent. An open breaker
	// answers with this message and its own remaining open time.
	ErrDependencyDown = retryable(Unavailable, "a dependency does not answer; retry shortly", time.Second)

	// Payments and cancels (payments.go).
	ErrAmountMismatch = newError(AmountMismatch, "the payment's amount or currency is not the order's")
	ErrTxReused       = newError(TxReused, "this transaction_id was already reported for another order or amount")
	ErrNotPayable     = newError(NotPayable, "the order has no price and cannot be paid")
)

// Outcomes of the operator's controls (admin.go).
var (
	ErrPaused       = newError(Paused, "the sale of this item is paused; retry later")
	ErrSaleStarted  = newError(Started, "the sale has started (or starts within a second); its window and per-user limit can no longer change")
	ErrUnconfirmed  = retryable(Unavailable, "the item's sale window could not be confirmed; retry shortly", time.Second)
	ErrStockPartial = retryable(Unavailable, "the units are recorded but not all in the stock yet; retry the same request", time.Second)
)

// Sentinels is every sentinel outcome above, for callers that prepare an
// answer for each once.
func Sentinels() []*Error {
	return []*Error{ErrSoldOut, ErrLimitReached, ErrTokenInvalid, ErrTokenExpired, ErrInProgress, ErrNotStarted, ErrEnded,
		ErrNotFound, ErrInvalidItem, ErrOrderPending, ErrAlreadyPaid, ErrPaymentEnded, ErrCancelled,
		ErrRateLimited, ErrOverloaded, ErrNotReady, ErrNotSettled, ErrLeaseHeld, ErrNoOrderID, ErrRedisEvicts, ErrDependencyDown,
		ErrAmountMismatch, ErrTxReused, ErrNotPayable,
		ErrPaused, ErrSaleStarted, ErrUnconfirmed, ErrStockPartial}
}

// translations are the stores' expected outcomes as the sale's: the one
// place their sentinels are known above the stores.
var translations = []struct {
	from error
	to   *Error
}{
	{stock.ErrSoldOut, ErrSoldOut},
	{stock.ErrAlreadyPurchased, ErrLimitReached},
	{stock.ErrTokenInvalid, ErrTokenInvalid},
	{stock.ErrPurchaseInProgress, ErrInProgress},
	{stock.ErrNotReady, ErrNotReady},
	{stock.ErrLeaseHeld, ErrLeaseHeld},
	{stock.ErrEvicting, ErrRedisEvicts},
	{limiter.ErrLimited, ErrRateLimited},
	{limiter.ErrOverloaded, ErrOverloaded},
	{order.ErrNotFound, ErrNotFound},
	{order.ErrInvalidItem, ErrInvalidItem},
	{order.ErrAlreadyPaid, ErrAlreadyPaid},
	{order.ErrPaymentExpired, ErrPaymentEnded},
	{order.ErrCancelled, ErrCancelled},
	{lifecycle.ErrNotSettled, ErrNotSettled},
	{order.ErrAmountMismatch, ErrAmountMismatch},
	{order.ErrTxReused, ErrTxReused},
	{order.ErrNotPayable, ErrNotPayable},
	// The operator's controls.
	{stock.ErrPaused, ErrPaused},
	{stock.ErrEnded, ErrEnded},
	{order.ErrSaleStarted, ErrSaleStarted},
	{order.ErrSaleEnded, ErrEnded},
}

// ErrorOf is the sale's outcome that err is or wraps, a store's expected
// outcome translated; nil if err is none (a failing dependency). It does
// not allocate for a sentinel or a bare store sentinel; a limiter
// rejection with its own Retry-After gets an Error of its own.
func ErrorOf(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		return e
	}
	for _, t := range translations {
		if err == t.from {
			return t.to
		}
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var open *breaker.OpenError
	if errors.As(err, &open) {
		if open.RetryAfter <= ErrDependencyDown.RetryAfter {
			return ErrDependencyDown
		}
		return &Error{Kind: Unavailable, Message: ErrDependencyDown.Message, RetryAfter: open.RetryAfter, err: err}
	}
	for _, t := range translations {
		if errors.Is(err, t.from) {
			var rej *limiter.Rejection
			if errors.As(err, &rej) && rej.RetryAfter > 0 && rej.RetryAfter != t.to.RetryAfter {
				return &Error{Kind: t.to.Kind, Message: t.to.Message, RetryAfter: rej.RetryAfter, err: err}
			}
			return t.to
		}
	}
	return nil
}

// outcome is err as the sale returns it: its Error if it is an expected
// outcome, else err itself (a failing dependency, for the caller to log).
func outcome(err error) error {
	if e := ErrorOf(err); e != nil {
		return e
	}
	return err
}
