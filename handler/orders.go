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

// findPending looks for an accepted purchase of user not in MySQL yet: on
// its way through Kafka, or still in an outbox.
func (h *Handler) findPending(ctx context.Context, orderID, user int64) (orderView, bool, error) {
	item, buyer, ok, err := h.Stock.InFlight(ctx, orderID)
	if err != nil {
		return orderView{}, false, err
	}
	if ok {
		if buyer != user {
			return orderView{}, false, nil
		}
		return orderView{OrderID: strconv.FormatInt(orderID, 10), ItemID: item,
			Status: order.StatusPending, InOutbox: true}, true, nil
	}
	items, err := h.Stock.Items(ctx)
	if err != nil {
		return orderView{}, false, err
	}
	for _, id := range items {
		it, err := h.items.get(ctx, id)
		if errors.Is(err, order.ErrNotFound) {
			continue
		}
		if err != nil {
			return orderView{}, false, err
		}
		rs, err := h.Stock.PendingReservations(ctx, id, it.Shards)
		if err != nil {
			return orderView{}, false, err
		}
		for _, r := range rs {
			if r.OrderID == orderID && r.UserID == user {
				return orderView{OrderID: strconv.FormatInt(orderID, 10), ItemID: id,
					Status: order.StatusPending, CreatedAt: r.At.UTC(), InOutbox: true}, true, nil
			}
		}
	}
	return orderView{}, false, nil
}

func (h *Handler) getOrder(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	o, err := h.Orders.Order(ctx, id)
	switch {
	case err == nil && o.UserID == user:
		c.JSON(http.StatusOK, viewOf(o))
		return nil
	case err == nil: // another user's order does not exist for this user
		return errNotFound
	case !errors.Is(err, order.ErrNotFound):
		return err
	}
	v, ok, err := h.findPending(ctx, id, user)
	if err != nil {
		return err
	}
	if !ok {
		return errNotFound
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
		if _, ok, ferr := h.findPending(ctx, id, user); ferr != nil {
			return ferr
		} else if ok {
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
