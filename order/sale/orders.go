package sale

import (
	"context"
	"errors"
	"fmt"
	"time"

	"seckill/order"
)

// Order is an order as its buyer sees it: from MySQL, or accepted and not
// stored yet.
type Order struct {
	ID        int64
	ItemID    int64
	Status    order.Status
	CreatedAt time.Time
	// ExpiresAt, PaidAt and CancelledAt are known once the order is in
	// MySQL.
	ExpiresAt   *time.Time
	PaidAt      *time.Time
	CancelledAt *time.Time
	// AmountMinor and Currency are what the order costs (the item's price
	// when it was accepted); 0 and "" for an item without a price.
	AmountMinor int64
	Currency    string
	// InOutbox: accepted, not yet written to MySQL (in the outbox or in
	// Kafka).
	InOutbox bool
	// Stale: MySQL could not be read, and this is the order as Redis
	// accepted it (pending); it may have been stored, paid or cancelled
	// since.
	Stale bool
}

func stored(o order.Order) Order {
	exp := o.ExpiresAt
	st := o.Status
	if o.RefundRequired && st == order.StatusCancelled {
		st = order.StatusRefundRequired
	}
	return Order{ID: o.ID, ItemID: o.ItemID, Status: st, CreatedAt: o.CreatedAt, ExpiresAt: &exp, PaidAt: o.PaidAt,
		CancelledAt: o.CancelledAt, AmountMinor: o.AmountMinor, Currency: o.Currency}
}

// findPending looks for an accepted purchase of user not in MySQL yet, in
// O(1) whatever the number of items: the order index written with the
// reservation names the token that holds the purchase's answer. A purchase
// Redis accepted stays findable this way for as long as its token keeps the
// answer (stock.Config.ResultTTL), so between the 202 and its row in MySQL
// the order reads pending at every moment. A reservation the MySQL stock
// guard refused reads as refused.
func (s *Sale) findPending(ctx context.Context, orderID, user int64) (Order, bool, error) {
	a, ok, err := s.cfg.Stock.LookupOrder(ctx, orderID, user)
	if err != nil || !ok {
		return Order{}, false, err
	}
	v := Order{ID: orderID, ItemID: a.ItemID, Status: order.StatusPending, CreatedAt: a.At, InOutbox: true}
	// The price it is stored at: the item's, fixed at its creation (from
	// memory once read).
	if it, err := s.items.get(ctx, a.ItemID); err == nil {
		v.AmountMinor, v.Currency = it.PriceMinor, it.Currency
	}
	d, err := s.cfg.Orders.DeadLetterFor(ctx, orderID, user)
	switch {
	case err == nil:
		v.Status, v.InOutbox, v.CreatedAt = order.StatusRefused, false, d.CreatedAt
	case !errors.Is(err, order.ErrNotFound):
		return Order{}, false, err
	}
	return v, true, nil
}

// notStored answers for an order id that MySQL does not hold for user, as
// the buyer's changes (pay, cancel) see it: a purchase accepted but not
// stored yet is ErrOrderPending (retry, it can be changed once stored), one
// the MySQL stock guard refused is returned with a nil error (each change
// answers it its own way), and anything else is ErrNotFound.
func (s *Sale) notStored(ctx context.Context, id, user int64) (Order, error) {
	v, ok, err := s.findPending(ctx, id, user)
	switch {
	case err != nil:
		return Order{}, err
	case ok && v.Status == order.StatusRefused:
		return v, nil
	case ok:
		return Order{}, ErrOrderPending
	}
	return Order{}, ErrNotFound
}

// Order is the buyer's order: from MySQL, else as accepted upstream.
// MySQL is read first: an order moves from Redis to MySQL, and Redis keeps
// its answer after that, so no moment falls between the two reads. Another
// user's order does not exist for this user, and costs what a missing id
// costs: the order index is read as for a missing id, then the dead letters
// as for a missing id, and the answer is the same ErrNotFound, so neither
// the answer nor its time tells that the id exists.
func (s *Sale) Order(ctx context.Context, id, user int64) (Order, error) {
	o, err := s.storedOrder(ctx, id)
	switch {
	case err == nil && o.UserID == user:
		return stored(o), nil
	case err == nil:
		// The read a missing id makes (its index entry, absent); what it
		// finds is not looked at.
		if err := s.cfg.Stock.PeekOrder(ctx, id); err != nil {
			return Order{}, err
		}
		return s.collided(ctx, id, user)
	case !errors.Is(err, order.ErrNotFound):
		return s.degraded(ctx, id, user, err)
	}
	v, ok, err := s.findPending(ctx, id, user)
	if err != nil {
		return Order{}, err
	}
	if !ok {
		return s.collided(ctx, id, user)
	}
	return v, nil
}

// storedOrder reads order id from MySQL within Config.OrderReadBudget, so
// a MySQL that does not answer costs a status read that budget (then
// degraded answers from Redis), not the driver's read timeout.
func (s *Sale) storedOrder(ctx context.Context, id int64) (order.Order, error) {
	budget := s.cfg.OrderReadBudget
	if budget <= 0 {
		budget = DefaultOrderReadBudget
	}
	rctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	return s.cfg.Orders.Order(rctx, id)
}

// degraded is the buyer's order when MySQL could not be read (dbErr): as
// Redis accepted it, marked stale, from the order index and the token it
// names (the reads of a pending order). What only MySQL knows (a refusal,
// a payment, an order whose index entry expired) cannot be told: if Redis
// has no accepted purchase of user under id, or cannot be read either,
// the answer is dbErr (unavailable, retry), never "not found".
func (s *Sale) degraded(ctx context.Context, id, user int64, dbErr error) (Order, error) {
	if ctx.Err() != nil {
		return Order{}, dbErr
	}
	a, ok, err := s.cfg.Stock.LookupOrder(ctx, id, user)
	switch {
	case err != nil:
		return Order{}, fmt.Errorf("%w; and the order index: %w", dbErr, err)
	case !ok:
		return Order{}, dbErr
	}
	return Order{ID: id, ItemID: a.ItemID, Status: order.StatusPending, CreatedAt: a.At, Stale: true}, nil
}

// collided is the buyer's order that was given an id another order already
// had (an id made twice): the writer kept it as a dead letter, and it reads
// refused. Any other id the buyer has no order of is ErrNotFound.
func (s *Sale) collided(ctx context.Context, id, user int64) (Order, error) {
	d, err := s.cfg.Orders.DeadLetterFor(ctx, id, user)
	switch {
	case err == nil && d.ItemID != nil:
		return Order{ID: id, ItemID: *d.ItemID, Status: order.StatusRefused, CreatedAt: d.CreatedAt}, nil
	case err == nil || errors.Is(err, order.ErrNotFound):
		return Order{}, ErrNotFound
	default:
		return Order{}, err
	}
}

// Pay pays the buyer's order. An order accepted but not in MySQL yet is
// not a failure: retry (ErrOrderPending); one the MySQL stock guard refused
// reads as cancelled.
func (s *Sale) Pay(ctx context.Context, id, user int64) (Order, error) {
	o, err := s.cfg.Orders.Pay(ctx, id, user, s.now())
	if errors.Is(err, order.ErrNotFound) {
		if _, err := s.notStored(ctx, id, user); err != nil {
			return Order{}, err
		}
		return Order{}, ErrCancelled // refused: it holds nothing to pay for
	}
	if err != nil {
		return Order{}, outcome(err)
	}
	return stored(o), nil
}
