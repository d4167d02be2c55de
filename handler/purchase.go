package handler

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"seckill/stock"
)

// purchaseView is the 202 answer. The order id is a decimal string: it is a
// 64-bit snowflake that JavaScript numbers cannot hold exactly.
type purchaseView struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
}

// acceptedKey names an accepted purchase: the same key from the same user
// for the same item is a replay. A struct, not a joined string: the sold-out
// path looks it up on every request and should not allocate for it.
type acceptedKey struct {
	item, user int64
	key        string
}

// purchase is the hot path: sale window and sold-out flag in process, then
// admission, then one Lua call on the buyer's home shard.
func (h *Handler) purchase(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return h.outcome(err)
	}
	ctx := c.Request.Context()
	it, err := h.items.get(ctx, id)
	if err != nil {
		return h.outcome(err)
	}
	now := h.Now()
	if now.Before(it.StartsAt) {
		return h.outcome(errSaleNotStarted)
	}
	if it.EndsAt != nil && !now.Before(*it.EndsAt) {
		return h.outcome(errSaleEnded)
	}
	key := header(c, "Idempotency-Key")
	replay := acceptedKey{item: id, user: user, key: key}
	if h.Stock.SoldOut(id) {
		// No Redis call, and no admission slot, once sold out: except that
		// a key this process accepted keeps its answer.
		if orderID, ok := h.accepted.get(replay); ok {
			return h.accept(c, orderID)
		}
		return h.outcome(stock.ErrSoldOut)
	}
	release, err := h.Limiter.Acquire(ctx, user)
	if err != nil {
		return h.outcome(err)
	}
	defer release()
	newID, err := h.IDs.NextID()
	if err != nil {
		return h.outcome(err)
	}
	orderID, err := h.Stock.Reserve(ctx, stock.Purchase{
		ItemID: id, UserID: user, Shards: it.Shards, Limit: it.PerUserLimit,
		Token: key, OrderID: newID,
	})
	if err != nil {
		return h.outcome(err)
	}
	h.accepted.add(replay, orderID)
	return h.accept(c, orderID)
}

func (h *Handler) accept(c *gin.Context, orderID int64) error {
	h.metrics.outcome("ok").Inc()
	c.JSON(http.StatusAccepted, purchaseView{OrderID: strconv.FormatInt(orderID, 10), Status: "pending"})
	return nil
}

// outcome counts a refused purchase by its code and passes the error on.
func (h *Handler) outcome(err error) error {
	p, _ := toProblem(err)
	h.metrics.outcome(p.Code).Inc()
	return err
}
