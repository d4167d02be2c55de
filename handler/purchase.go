package handler

import (
	"errors"
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

// answer is a purchase key's final answer: an order id, or the business
// refusal (ErrSoldOut, ErrAlreadyPurchased).
type answer struct {
	orderID int64
	err     error
}

// final reports whether err (from Reserve) is an answer a retry of the same
// key must get again, and so may be remembered.
func final(err error) bool {
	return err == nil || errors.Is(err, stock.ErrSoldOut) || errors.Is(err, stock.ErrAlreadyPurchased)
}

// purchase is the hot path: sale window in process, a key answered before
// from memory, then admission, then one Lua call on the buyer's home shard.
// Once the item is sold out that call only reads the key's stored answer
// (an unused key is answered sold out, for good), so a retried key keeps
// its answer on every instance and after a restart, and a sold-out key
// costs Redis at most one call per instance.
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
	if a, ok := h.answers.get(replay); ok {
		if a.err != nil {
			return h.outcome(a.err)
		}
		return h.accept(c, a.orderID)
	}
	release, err := h.Limiter.Acquire(ctx, user)
	if err != nil {
		return h.outcome(err)
	}
	defer release()
	newID, err := h.IDs.NextID(stock.HomeGroup(id, user, it.Shards))
	if err != nil {
		return h.outcome(err)
	}
	orderID, err := h.Stock.Reserve(ctx, stock.Purchase{
		ItemID: id, UserID: user, Shards: it.Shards, Limit: it.PerUserLimit,
		Token: key, OrderID: newID,
	})
	if final(err) {
		h.answers.add(replay, answer{orderID: orderID, err: err})
	}
	if err != nil {
		return h.outcome(err)
	}
	if h.Journal != nil && orderID == newID {
		h.Journal.Add(stock.Restored{OrderID: orderID, ItemID: id, UserID: user,
			Home: stock.HomeShard(user, it.Shards), Shards: it.Shards, Token: key, At: now})
	}
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
