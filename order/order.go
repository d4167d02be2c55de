// Package order holds the order types and their MySQL store: items, orders
// and dead letters. Moving orders is pipeline's job (Redis outbox -> Kafka
// -> MySQL); what happens to them afterwards (expiry, reconciliation,
// rebuild) is lifecycle's.
package order

import (
	"errors"
	"time"
)

// Status is the lifecycle state of an order.
type Status string

// Order states. An order starts pending; it becomes paid, or cancelled when
// it expires unpaid. Both are final.
const (
	StatusPending   Status = "pending"
	StatusPaid      Status = "paid"
	StatusCancelled Status = "cancelled"
)

// Expected outcomes of store calls. Anything else a Store returns is an
// infrastructure failure.
var (
	// ErrNotFound: no such item or order (or the order is another user's).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyPaid: the order was paid before.
	ErrAlreadyPaid = errors.New("order already paid")
	// ErrPaymentExpired: the order is still pending but its payment window closed.
	ErrPaymentExpired = errors.New("payment window expired")
	// ErrCancelled: the order was cancelled (it expired unpaid).
	ErrCancelled = errors.New("order cancelled")
	// ErrInvalidItem: an item to create is missing a required field.
	ErrInvalidItem = errors.New("invalid item")
	// ErrAmountMismatch: a payment's amount or currency is not the order's.
	ErrAmountMismatch = errors.New("payment amount or currency differs from the order's")
	// ErrTxReused: a payment transaction id already paid another order or
	// another amount: not a repeat of that callback.
	ErrTxReused = errors.New("payment transaction id reused with other content")
	// ErrNotPayable: the order has no price (an item created before
	// prices existed), so no payment can match it.
	ErrNotPayable = errors.New("order has no price")
)

// Item is one sale item. Sold counts its active (pending + paid) orders in
// MySQL and never exceeds Stock.
type Item struct {
	ID           int64      `db:"id" json:"id"`
	Name         string     `db:"name" json:"name"`
	Stock        int64      `db:"stock" json:"stock"`
	Shards       int        `db:"shards" json:"shards"`
	PerUserLimit int        `db:"per_user_limit" json:"per_user_limit"`
	Sold         int64      `db:"sold" json:"sold"`
	StartsAt     time.Time  `db:"starts_at" json:"starts_at"`
	EndsAt       *time.Time `db:"ends_at" json:"ends_at,omitempty"`
	CreatedAt    time.Time  `db:"created_at" json:"created_at"`
	// PriceMinor is the price of one unit in minor units of Currency (cents
	// for EUR, yen for JPY), set when the item is created (prices.go).
	PriceMinor int64  `db:"price_minor" json:"price_minor"`
	Currency   string `db:"currency" json:"currency"`
	// Paused: the operator paused the sale (purchases and token issues
	// answer sale_paused until resumed).
	Paused bool `db:"paused" json:"paused"`
}

// Order is one accepted purchase of one unit of an item.
type Order struct {
	ID     int64 `db:"order_id" json:"order_id"`
	ItemID int64 `db:"item_id" json:"item_id"`
	UserID int64 `db:"user_id" json:"user_id"`
	// Shard is the Redis stock shard the unit came from; a cancelled
	// order's unit goes back there.
	Shard       int        `db:"shard" json:"shard"`
	Status      Status     `db:"status" json:"status"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	ExpiresAt   time.Time  `db:"expires_at" json:"expires_at"`
	PaidAt      *time.Time `db:"paid_at" json:"paid_at,omitempty"`
	CancelledAt *time.Time `db:"cancelled_at" json:"cancelled_at,omitempty"`
	// StockReturned says a cancelled order's unit is back in Redis.
	StockReturned bool `db:"stock_returned" json:"stock_returned"`
	// AmountMinor and Currency are what the order costs: the item's price
	// when the order was accepted, copied into the row when it is stored.
	AmountMinor int64  `db:"amount_minor" json:"amount_minor"`
	Currency    string `db:"currency" json:"currency"`
	// RefundRequired: a payment arrived after the order was cancelled
	// (payments.go). The order stays cancelled; its buyer and the operator
	// see it as StatusRefundRequired.
	RefundRequired bool `db:"refund_required" json:"refund_required"`
}
