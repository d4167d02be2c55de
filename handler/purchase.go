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

// acceptedKey names an answered purchase: the same key from the same user
// for the same item is a replay. A struct, not a joined string: the sold-out
// path looks it up on every request and should not allocate for it. The
// key is held as the bytes it stands for (stock.TokenBytes; only a token
// the service issued can have a final answer), so the memory of answers
// holds no pointers and the garbage collector never scans it.
type acceptedKey struct {
	item, user int64
	key        [16]byte
}

// answer is a purchase key's final answer: an order id, or the business
// refusal.
type answer struct {
	orderID int64
	refusal refusal
}

// refusal is a final business refusal of a purchase, in a byte.
type refusal uint8

const (
	accepted refusal = iota
	refusedSoldOut
	refusedLimit
)

// answerOf is what to remember of Reserve's final answer (see final).
func answerOf(orderID int64, err error) answer {
	switch {
	case err == nil:
		return answer{orderID: orderID}
	case errors.Is(err, stock.ErrSoldOut):
		return answer{refusal: refusedSoldOut}
	default:
		return answer{refusal: refusedLimit}
	}
}

// err is the remembered refusal as Reserve returned it (nil: accepted).
func (a answer) err() error {
	switch a.refusal {
	case refusedSoldOut:
		return stock.ErrSoldOut
	case refusedLimit:
		return stock.ErrAlreadyPurchased
	}
	return nil
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
	tok, issued := stock.TokenBytes(key)
	replay := acceptedKey{item: id, user: user, key: tok}
	if issued {
		if a, ok := h.answers.get(replay); ok {
			if err := a.err(); err != nil {
				return h.outcome(err)
			}
			return h.accept(c, a.orderID)
		}
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
	if issued && final(err) {
		h.answers.add(replay, answerOf(orderID, err))
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
	// The purchaseView, written without reflection: this is the answer of
	// every accepted order, and the id is its only variable part.
	var buf [64]byte
	b := append(buf[:0], `{"order_id":"`...)
	b = strconv.AppendInt(b, orderID, 10)
	b = append(b, `","status":"pending"}`...)
	c.Data(http.StatusAccepted, jsonContentType, b)
	return nil
}

// jsonContentType is the Content-Type gin's c.JSON sends.
const jsonContentType = "application/json; charset=utf-8"

// outcome counts a refused purchase by its code and passes the error on.
func (h *Handler) outcome(err error) error {
	p, _ := toProblem(err)
	h.metrics.outcome(p.Code).Inc()
	return err
}
