package handler

import (
	"context"
	"net/http"
	"strconv"
	"sync"
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
	// CancelledAt: when it was cancelled (expired, or by its buyer).
	CancelledAt *time.Time `json:"cancelled_at,omitempty"`
	// AmountMinor and Currency: what the order costs, the item's price when
	// it was accepted (absent for an item without a price).
	AmountMinor int64  `json:"amount_minor,omitempty"`
	Currency    string `json:"currency,omitempty"`
	// InOutbox: accepted, not yet written to MySQL (in the outbox or in
	// Kafka).
	InOutbox bool `json:"in_outbox,omitempty"`
	// Stale: MySQL could not be read; the order as Redis accepted it.
	Stale bool `json:"stale,omitempty"`
}

func viewOf(o sale.Order) orderView {
	return orderView{OrderID: strconv.FormatInt(o.ID, 10), ItemID: o.ItemID, Status: o.Status,
		CreatedAt: o.CreatedAt, ExpiresAt: o.ExpiresAt, PaidAt: o.PaidAt, CancelledAt: o.CancelledAt,
		AmountMinor: o.AmountMinor, Currency: o.Currency, InOutbox: o.InOutbox, Stale: o.Stale}
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

// pay is the demo's pay button (payments.demo_pay): off, it answers
// errDemoPayOff, a 404, for any order. Payments arrive by the provider's
// callback (payments.go).
func (h *Handler) pay(c *gin.Context, user int64) error {
	if !h.Payments.DemoPay {
		return errDemoPayOff
	}
	id, err := pathID(c)
	if err != nil {
		return err
	}
	o, err := h.Sale.Pay(c.Request.Context(), id, user)
	if err != nil {
		return err
	}
	h.payStats.revenue(o.Currency).Add(float64(o.AmountMinor))
	c.JSON(http.StatusOK, viewOf(o))
	return nil
}

func (h *Handler) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz runs the checks at once, each for up to 2 seconds, and answers
// 503 naming the dependencies that fail (detail and "failing"), so that a
// load balancer drains an instance cut off from them.
func (h *Handler) readyz(c *gin.Context) error {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	errs := make([]error, len(h.Checks))
	var wg sync.WaitGroup
	for i, ch := range h.Checks {
		wg.Go(func() { errs[i] = ch.Func(ctx) })
	}
	wg.Wait()
	if err := c.Request.Context().Err(); err != nil {
		return err // the client left
	}
	var failing []string
	after := time.Second
	for i, err := range errs {
		if err == nil {
			continue
		}
		failing = append(failing, h.Checks[i].Name)
		if e := sale.ErrorOf(err); e != nil && e.RetryAfter > after {
			after = e.RetryAfter // an open breaker's remaining time
		}
		h.Log.WarnContext(c.Request.Context(), "not ready", "dependency", h.Checks[i].Name, "err", err)
	}
	if len(failing) > 0 {
		return notReady(failing, after)
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
	return nil
}
