package sale

import (
	"context"
	"errors"
	"time"

	"seckill/order"
)

// Returns gives the units of cancelled orders back to the stock
// (lifecycle.Sweeper.GiveBack: once per order, the buyer's slot freed as
// for an expiry).
type Returns interface {
	GiveBack(ctx context.Context, orders ...order.Order) (int, error)
}

// Cancel cancels the buyer's pending order: in MySQL under the order's row
// lock (the guard expiry and payments take, so a cancel racing either is
// applied before or after it, never with it), then its unit goes back to
// the stock at once by the sweeper's path, which puts it back once however
// often it runs. A retried cancel, or a cancel of an order that expired,
// answers the order as it is (cancelled). A paid order is ErrAlreadyPaid;
// another user's order, or none, ErrNotFound (a missing id's reads and
// answer). An order accepted but not stored yet is ErrOrderPending
// (retry: it is cancellable once stored, within a second or so); one the
// MySQL stock guard refused answers refused, since it holds nothing.
func (s *Sale) Cancel(ctx context.Context, id, user int64) (Order, error) {
	o, err := s.cfg.Orders.Cancel(ctx, id, user, s.now())
	if errors.Is(err, order.ErrNotFound) {
		return s.notStored(ctx, id, user)
	}
	if err != nil {
		return Order{}, outcome(err)
	}
	s.giveBack(ctx, o)
	return stored(o), nil
}

// giveBackBudget bounds the return of a cancelled order's unit.
const giveBackBudget = 5 * time.Second

// giveBack returns the unit of o if it is cancelled and not marked back
// yet. A failure is only logged: the order is cancelled in MySQL, and the
// sweeper's next pass finds its unit (Unreturned) and returns it.
func (s *Sale) giveBack(ctx context.Context, o order.Order) {
	if o.Status != order.StatusCancelled || o.StockReturned || s.cfg.Returns == nil {
		return
	}
	// Not cut short by a client that leaves: the order is cancelled
	// already, and a return stopped halfway is only finished by the next
	// sweep. Bounded all the same.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), giveBackBudget)
	defer cancel()
	if _, err := s.cfg.Returns.GiveBack(rctx, o); err != nil {
		s.cfg.Log.WarnContext(ctx, "return unit of cancelled order; left to the sweeper", "order", o.ID, "err", err)
	}
}

// PaymentResult is what a provider's payment did.
type PaymentResult struct {
	// Outcome is order.PaymentPaid or order.PaymentRefundRequired.
	Outcome string
	// Order is the order after the payment.
	Order Order
	// Repeated: the transaction was reported before; nothing changed.
	Repeated bool
}

// ApplyPayment applies a payment provider's report (its signature and time checked
// by the caller): see order.Store.ApplyPayment for the rules, all decided
// under the order's row lock in one transaction. A late payment never
// revives an order: an expired or cancelled one moves to refund_required,
// and an expired one found pending is cancelled here and its unit given
// back at once (the sweeper's path: once). An order accepted but not
// stored yet is ErrOrderPending (the provider retries); an id Redis never
// accepted is ErrNotFound.
func (s *Sale) ApplyPayment(ctx context.Context, p order.Payment) (PaymentResult, error) {
	if err := order.CheckPrice(p.AmountMinor, p.Currency); err != nil {
		return PaymentResult{}, &Error{Kind: Invalid, Message: "amount_minor and currency: " + err.Error()}
	}
	r, err := s.cfg.Orders.ApplyPayment(ctx, p, s.now())
	if errors.Is(err, order.ErrNotFound) {
		known, kerr := s.cfg.Stock.OrderKnown(ctx, p.OrderID)
		switch {
		case kerr != nil:
			return PaymentResult{}, kerr
		case known:
			return PaymentResult{}, ErrOrderPending
		}
		return PaymentResult{}, ErrNotFound
	}
	if err != nil {
		return PaymentResult{}, outcome(err)
	}
	s.giveBack(ctx, r.Order)
	return PaymentResult{Outcome: r.Outcome, Order: stored(r.Order), Repeated: r.Repeated}, nil
}
