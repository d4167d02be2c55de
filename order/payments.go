package order

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

// StatusRefundRequired is how a cancelled order that was paid late reads to
// its buyer and the operator: the order stays cancelled (its unit is back
// in the stock, or on its way, exactly once) and the payment must be given
// back. Stored as status 'cancelled' with refund_required set, so every
// rule about cancelled orders (the unit's return, the ledger) holds for it.
const StatusRefundRequired Status = "refund_required"

// Payment outcomes, stored per provider transaction (payments.outcome).
const (
	// PaymentPaid: the payment paid a pending order inside its window.
	PaymentPaid = "paid"
	// PaymentRefundRequired: the payment came for an order that was
	// cancelled (or expired meanwhile), or that another transaction paid
	// already: it is kept and must be refunded; the order is not revived.
	PaymentRefundRequired = "refund_required"
)

// errDupKey is MySQL's duplicate-key error number.
const errDupKey = 1062

// Payment is what a payment provider reports: its transaction paid amount
// (minor units) in currency for an order.
type Payment struct {
	TxID        string
	OrderID     int64
	AmountMinor int64
	Currency    string
}

// PaymentResult is what a payment did.
type PaymentResult struct {
	// Outcome is PaymentPaid or PaymentRefundRequired: the first answer
	// of the transaction id, however often it is reported.
	Outcome string
	// Order is the order as it is now.
	Order Order
	// Repeated: the transaction id was applied before; this call changed
	// nothing.
	Repeated bool
}

type paymentRow struct {
	TxID        string    `db:"tx_id"`
	OrderID     int64     `db:"order_id"`
	AmountMinor int64     `db:"amount_minor"`
	Currency    string    `db:"currency"`
	Outcome     string    `db:"outcome"`
	ReceivedAt  time.Time `db:"received_at"`
}

// ApplyPayment records a provider's payment of an order, at now, in one
// MySQL transaction that first locks the order's row: the same row lock
// CancelExpired and Cancel take (their conditional UPDATE), so a payment and
// an expiry or a buyer's cancel of one order are applied one after the
// other, never both:
//   - a pending order inside its payment window becomes paid;
//   - a pending order whose window closed is cancelled here as the sweeper
//     would (items.sold moves back in the same transaction; its unit is
//     returned by Cancel's caller or the sweeper's next pass) and marked
//     refund_required;
//   - a cancelled order is marked refund_required: its unit may be sold
//     again already, so it is never revived;
//   - a paid order stays paid; the second payment is refund_required.
//
// The transaction id is the idempotency key (payments' primary key): a
// transaction applied before answers its first outcome and changes nothing;
// one that names another order or amount is ErrTxReused. An amount or
// currency other than the order's is ErrAmountMismatch, an order without a
// price ErrNotPayable, a missing order ErrNotFound; all change nothing.
func (s *Store) ApplyPayment(ctx context.Context, p Payment, now time.Time) (PaymentResult, error) {
	now = ms(now)
	var res PaymentResult
	var err error
	for range maxAttempts {
		err = s.inTx(ctx, func(tx *sqlx.Tx) error {
			res, err = applyPayment(ctx, tx, p, now)
			return err
		})
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != errDupKey {
			break
		}
		// A concurrent transaction stored the same transaction id for
		// another order: run again, and the read below finds it.
	}
	if err != nil {
		return PaymentResult{}, fmt.Errorf("payment %q of order %d: %w", p.TxID, p.OrderID, err)
	}
	return res, nil
}

func applyPayment(ctx context.Context, tx *sqlx.Tx, p Payment, now time.Time) (PaymentResult, error) {
	// The order's row first: every change of this order waits here.
	var o Order
	err := tx.GetContext(ctx, &o, "SELECT "+orderCols+" FROM orders WHERE order_id = ? FOR UPDATE", p.OrderID)
	if errors.Is(err, sql.ErrNoRows) {
		return PaymentResult{}, ErrNotFound
	}
	if err != nil {
		return PaymentResult{}, err
	}
	// A plain read, and the transaction's first: its snapshot is taken
	// now, under the order's lock, so it sees every payment of this order
	// committed before (they held the same lock). Not a locking read: on a
	// missing key that would take a gap lock, and concurrent payments
	// inserting into the same gap deadlock each other. The same id paid
	// for another order at the same moment is caught by the primary key
	// (errDupKey: ApplyPayment runs again and finds it here).
	var prev paymentRow
	err = tx.GetContext(ctx, &prev,
		"SELECT tx_id, order_id, amount_minor, currency, outcome, received_at FROM payments WHERE tx_id = ?", p.TxID)
	switch {
	case err == nil:
		if prev.OrderID != p.OrderID || prev.AmountMinor != p.AmountMinor || prev.Currency != p.Currency {
			return PaymentResult{}, ErrTxReused
		}
		return PaymentResult{Outcome: prev.Outcome, Order: o, Repeated: true}, nil
	case !errors.Is(err, sql.ErrNoRows):
		return PaymentResult{}, err
	}
	switch {
	case o.AmountMinor <= 0:
		return PaymentResult{}, ErrNotPayable
	case p.AmountMinor != o.AmountMinor || p.Currency != o.Currency:
		return PaymentResult{}, ErrAmountMismatch
	}
	outcome := PaymentRefundRequired
	switch {
	case o.Status == StatusPending && o.ExpiresAt.After(now):
		if _, err := tx.ExecContext(ctx,
			"UPDATE orders SET status = 'paid', paid_at = ? WHERE order_id = ? AND status = 'pending'", now, o.ID); err != nil {
			return PaymentResult{}, err
		}
		o.Status, o.PaidAt, outcome = StatusPaid, &now, PaymentPaid
	case o.Status == StatusPending:
		// Expired, and the sweeper has not got to it yet: it expires now,
		// as the sweeper would have, and the payment is refunded.
		if err := cancelLocked(ctx, tx, o, now, true); err != nil {
			return PaymentResult{}, err
		}
		o.Status, o.CancelledAt, o.RefundRequired = StatusCancelled, &now, true
	case o.Status == StatusCancelled:
		if _, err := tx.ExecContext(ctx, "UPDATE orders SET refund_required = 1 WHERE order_id = ?", o.ID); err != nil {
			return PaymentResult{}, err
		}
		o.RefundRequired = true
	}
	// Paid already (another transaction, or the demo route): the order
	// stays as it is and this payment is refunded.
	_, err = tx.ExecContext(ctx,
		"INSERT INTO payments (tx_id, order_id, amount_minor, currency, outcome, received_at) VALUES (?, ?, ?, ?, ?, ?)",
		p.TxID, p.OrderID, p.AmountMinor, p.Currency, outcome, now)
	if err != nil {
		return PaymentResult{}, err
	}
	return PaymentResult{Outcome: outcome, Order: o}, nil
}

// cancelLocked cancels the pending order o, whose row the transaction has
// locked, and moves its item's sold counter back in the same transaction,
// as CancelExpired does: the order stops counting as sold exactly when it
// is cancelled. Its unit goes back to Redis afterwards (Unreturned finds
// it if the caller does not get to it).
func cancelLocked(ctx context.Context, tx *sqlx.Tx, o Order, now time.Time, refund bool) error {
	res, err := tx.ExecContext(ctx,
		`UPDATE orders SET status = 'cancelled', cancelled_at = ?, refund_required = ?
		 WHERE order_id = ? AND status = 'pending'`, now, refund, o.ID)
	if err != nil {
		return err
	}
	if ok, err := oneRow(res); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("order %d not pending under its row lock", o.ID)
		}
		return err
	}
	return unsell(ctx, tx, o.ItemID)
}

// Cancel cancels a pending order of userID at its buyer's request, at now,
// in one transaction that locks the order's row (the guard CancelExpired
// and ApplyPayment take), moving items.sold back with it. It returns the
// order as it is after the call: cancelled by this call or before (an
// expiry, an earlier cancel: a retried cancel gets the same order). A paid
// order is ErrAlreadyPaid; no such order, or another user's, ErrNotFound;
// nothing changes then. The caller returns the unit to Redis (the
// sweeper's path, idempotent per order) and marks it returned.
func (s *Store) Cancel(ctx context.Context, orderID, userID int64, now time.Time) (Order, error) {
	now = ms(now)
	var o Order
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		err := tx.GetContext(ctx, &o, "SELECT "+orderCols+" FROM orders WHERE order_id = ? FOR UPDATE", orderID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return err
		case o.UserID != userID:
			return ErrNotFound
		case o.Status == StatusPaid:
			return ErrAlreadyPaid
		case o.Status != StatusPending:
			return nil // cancelled before: the same answer, nothing to do
		}
		if err := cancelLocked(ctx, tx, o, now, false); err != nil {
			return err
		}
		o.Status, o.CancelledAt = StatusCancelled, &now
		return nil
	})
	if err != nil {
		return Order{}, fmt.Errorf("cancel order %d: %w", orderID, err)
	}
	return o, nil
}
