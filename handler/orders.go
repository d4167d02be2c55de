package handler

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"seckill/order"
)

// orderView is an order as its buyer sees it.
type orderView struct {
	OrderID   string       `json:"order_id"`
	ItemID    int64        `json:"item_id"`
	Status    order.Status `json:"status"`
	CreatedAt time.Time    `json:"created_at"`
	ExpiresAt *time.Time   `json:"expires_at,omitempty"`
	PaidAt    *time.Time   `json:"paid_at,omitempty"`
	// InOutbox: accepted, not yet written to MySQL (in the outbox or in
	// Kafka).
	InOutbox bool `json:"in_outbox,omitempty"`
}

func viewOf(o order.Order) orderView {
	exp := o.ExpiresAt
	return orderView{OrderID: strconv.FormatInt(o.ID, 10), ItemID: o.ItemID, Status: o.Status,
		CreatedAt: o.CreatedAt, ExpiresAt: &exp, PaidAt: o.PaidAt}
}

// findPending looks for an accepted purchase of user not in MySQL yet, in
// O(1) whatever the number of items: the order index written with the
// reservation names the token that holds the purchase's answer. A purchase
// Redis accepted stays findable this way for as long as its token keeps the
// answer (stock.Config.ResultTTL), so between the 202 and its row in MySQL
// the order reads pending at every moment. A reservation the MySQL stock
// guard refused reads as refused.
func (h *Handler) findPending(ctx context.Context, orderID, user int64) (orderView, bool, error) {
	a, ok, err := h.Stock.LookupOrder(ctx, orderID, user)
	if err != nil || !ok {
		return orderView{}, false, err
	}
	v := orderView{OrderID: strconv.FormatInt(orderID, 10), ItemID: a.ItemID, Status: order.StatusPending,
		CreatedAt: a.At, InOutbox: true}
	d, err := h.Orders.DeadLetterFor(ctx, orderID, user)
	switch {
	case err == nil:
		v.Status, v.InOutbox, v.CreatedAt = order.StatusRefused, false, d.CreatedAt
	case !errors.Is(err, order.ErrNotFound):
		return orderView{}, false, err
	}
	return v, true, nil
}

// findOrder is the buyer's order: from MySQL, else as accepted upstream.
// MySQL is read first: an order moves from Redis to MySQL, and Redis keeps
// its answer after that, so no moment falls between the two reads.
func (h *Handler) findOrder(ctx context.Context, id, user int64) (orderView, error) {
	o, err := h.Orders.Order(ctx, id)
	switch {
	case err == nil && o.UserID == user:
		return viewOf(o), nil
	case err == nil: // another user's order does not exist for this user,
		// unless this user's order got the same id (made twice): a dead letter
		if d, err := h.Orders.DeadLetterFor(ctx, id, user); err == nil && d.ItemID != nil {
			return orderView{OrderID: strconv.FormatInt(id, 10), ItemID: *d.ItemID, Status: order.StatusRefused, CreatedAt: d.CreatedAt}, nil
		} else if err != nil && !errors.Is(err, order.ErrNotFound) {
			return orderView{}, err
		}
		return orderView{}, errNotFound
	case !errors.Is(err, order.ErrNotFound):
		return orderView{}, err
	}
	v, ok, err := h.findPending(ctx, id, user)
	if err != nil {
		return orderView{}, err
	}
	if !ok {
		return orderView{}, errNotFound
	}
	return v, nil
}

func (h *Handler) getOrder(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	v, err := h.findOrder(c.Request.Context(), id, user)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, v)
	return nil
}

func (h *Handler) pay(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	o, err := h.Orders.Pay(ctx, id, user, h.Now())
	if errors.Is(err, order.ErrNotFound) {
		// Accepted but not in MySQL yet: retryable, not a failure.
		v, ok, ferr := h.findPending(ctx, id, user)
		switch {
		case ferr != nil:
			return ferr
		case ok && v.Status == order.StatusRefused:
			return order.ErrCancelled
		case ok:
			return errOrderPending
		}
	}
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, viewOf(o))
	return nil
}

func (h *Handler) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (h *Handler) readyz(c *gin.Context) error {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if h.Ready != nil {
		if err := h.Ready(ctx); err != nil {
			return err
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
	return nil
}
