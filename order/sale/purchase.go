package sale

import (
	"context"
	"errors"

	"seckill/order/token"
	"seckill/stock"
)

// acceptedKey names an answered purchase: the same token from the same
// user for the same item is a replay. A struct, not a joined string: the
// sold-out path looks it up on every request and should not allocate for
// it. The token is held as its ID (its nonce, token.ID), so the memory of
// answers holds no pointers and the garbage collector never scans it.
type acceptedKey struct {
	item, user int64
	key        token.ID
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

// answerOf is what to remember of a final answer (see final).
func answerOf(orderID int64, err error) answer {
	switch err {
	case nil:
		return answer{orderID: orderID}
	case ErrSoldOut:
		return answer{refusal: refusedSoldOut}
	default:
		return answer{refusal: refusedLimit}
	}
}

// err is the remembered refusal (nil: accepted).
func (a answer) err() error {
	switch a.refusal {
	case refusedSoldOut:
		return ErrSoldOut
	case refusedLimit:
		return ErrLimitReached
	}
	return nil
}

// final reports whether err (a reservation's outcome) is an answer a retry
// of the same key must get again, and so may be remembered.
func final(err error) bool {
	return err == nil || err == ErrSoldOut || err == ErrLimitReached
}

// Purchase is the hot path: the sale window in process, the token's
// signature, user, item in process, a key answered before from memory,
// then admission, then one Lua call on the buyer's home shard. The token's
// first use stores its answer (nothing was stored when it was issued); once
// the item is sold out that call only reads the stored answer or stores
// sold out, so a retried key keeps its answer on every instance and after a
// restart, and a sold-out key costs Redis at most one call per instance.
// An expired token is answered from what its use stored (one read, nothing
// written), or refused if it was never used. A token that is not the
// buyer's for this item, or not ours, is refused without Redis. It returns
// the order id of the key's purchase (a replay's is the first attempt's); a
// refusal is a sentinel *Error, and the sold-out path does not allocate.
func (s *Sale) Purchase(ctx context.Context, itemID, user int64, key string) (int64, error) {
	it, err := s.items.get(ctx, itemID)
	if err != nil {
		return 0, outcome(err)
	}
	now := s.now()
	if now.Before(it.StartsAt) {
		return 0, ErrNotStarted
	}
	if it.EndsAt != nil && !now.Before(*it.EndsAt) {
		return 0, ErrEnded
	}
	c, err := s.cfg.Tokens.Verify(key)
	if err != nil || c.ItemID != itemID || c.UserID != user {
		return 0, ErrTokenInvalid
	}
	replay := acceptedKey{item: itemID, user: user, key: c.ID}
	if a, ok := s.answers.Get(replay); ok {
		if err := a.err(); err != nil {
			return 0, err
		}
		return a.orderID, nil
	}
	expired := now.UnixMilli() >= c.Expires
	// A used token's answer lives ResultTTL from its use, which came
	// before the expiry: past that nothing can be stored for it.
	if expired && now.Sub(c.ExpiresAt()) >= s.cfg.Stock.ResultTTL() {
		return 0, ErrTokenExpired
	}
	if s.refusedForEviction() {
		return 0, ErrRedisEvicts
	}
	release, err := s.cfg.Limiter.Acquire(ctx, user)
	if err != nil {
		return 0, outcome(err)
	}
	defer release()
	p := stock.Purchase{ItemID: itemID, UserID: user, Shards: it.Shards, Limit: it.PerUserLimit, Token: stock.TokenString(c.ID)}
	if expired {
		return s.expiredAnswer(ctx, replay, p)
	}
	p.OrderID, err = s.cfg.IDs.NextID(stock.HomeGroup(itemID, user, it.Shards))
	if err != nil {
		// Whatever the maker's reason (a lease unconfirmed, a clock
		// behind), no id can be made safely now: a passing state.
		return 0, &Error{Kind: ErrNoOrderID.Kind, Message: ErrNoOrderID.Message,
			RetryAfter: ErrNoOrderID.RetryAfter, err: err}
	}
	orderID, err := s.cfg.Stock.Reserve(ctx, p)
	err = outcome(err)
	if final(err) {
		s.answers.Add(replay, answerOf(orderID, err))
	}
	if err != nil {
		return 0, err
	}
	if s.cfg.Journal != nil && orderID == p.OrderID {
		s.cfg.Journal.Add(stock.Restored{OrderID: orderID, ItemID: itemID, UserID: user,
			Home: stock.HomeShard(user, it.Shards), Shards: it.Shards, Token: p.Token, At: now})
	}
	return orderID, nil
}

// expiredAnswer is the answer of an expired token: what its use stored, read
// without writing; a token never used is ErrTokenExpired.
func (s *Sale) expiredAnswer(ctx context.Context, replay acceptedKey, p stock.Purchase) (int64, error) {
	orderID, err := s.cfg.Stock.Answer(ctx, p)
	if errors.Is(err, stock.ErrTokenInvalid) {
		return 0, ErrTokenExpired
	}
	err = outcome(err)
	if final(err) {
		s.answers.Add(replay, answerOf(orderID, err))
	}
	return orderID, err
}
