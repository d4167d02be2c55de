package handler

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"seckill/order"
	"seckill/order/sale"
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
	// Stale: MySQL could not be read; the order as Redis accepted it.
	Stale bool `json:"stale,omitempty"`
}

func viewOf(o sale.Order) orderView {
	return orderView{OrderID: strconv.FormatInt(o.ID, 10), ItemID: o.ItemID, Status: o.Status,
		CreatedAt: o.CreatedAt, ExpiresAt: o.ExpiresAt, PaidAt: o.PaidAt, InOutbox: o.InOutbox, Stale: o.Stale}
}

func (h *Handler) getOrder(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	o, err := h.Sale.Order(c.Request.Context(), id, user)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, viewOf(o))
	return nil
}

func (h *Handler) pay(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	o, err := h.Sale.Pay(c.Request.Context(), id, user)
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
