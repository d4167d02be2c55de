package sale

import (
	"context"

	"seckill/stock"
)

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

// Purchase is the hot path: the sale window in process, a key answered
// before from memory, then admission, then one Lua call on the buyer's home
// shard. Once the item is sold out that call only reads the key's stored
// answer (an unused key is answered sold out, for good), so a retried key
// keeps its answer on every instance and after a restart, and a sold-out
// key costs Redis at most one call per instance. It returns the order id
// of the key's purchase (a replay's is the first attempt's); a refusal is
// a sentinel *Error, and the sold-out path does not allocate.
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
	tok, issued := stock.TokenBytes(key)
	replay := acceptedKey{item: itemID, user: user, key: tok}
	if issued {
		if a, ok := s.answers.Get(replay); ok {
			if err := a.err(); err != nil {
				return 0, err
			}
			return a.orderID, nil
		}
	}
	if s.refusedForEviction() {
		return 0, ErrRedisEvicts
	}
	release, err := s.cfg.Limiter.Acquire(ctx, user)
	if err != nil {
		return 0, outcome(err)
	}
	defer release()
	newID, err := s.cfg.IDs.NextID(stock.HomeGroup(itemID, user, it.Shards))
	if err != nil {
		// Whatever the maker's reason (a lease unconfirmed, a clock
		// behind), no id can be made safely now: a passing state.
		return 0, &Error{Kind: ErrNoOrderID.Kind, Message: ErrNoOrderID.Message,
			RetryAfter: ErrNoOrderID.RetryAfter, err: err}
	}
	orderID, err := s.cfg.Stock.Reserve(ctx, stock.Purchase{
		ItemID: itemID, UserID: user, Shards: it.Shards, Limit: it.PerUserLimit,
		Token: key, OrderID: newID,
	})
	err = outcome(err)
	if issued && final(err) {
		s.answers.Add(replay, answerOf(orderID, err))
	}
	if err != nil {
		return 0, err
	}
	if s.cfg.Journal != nil && orderID == newID {
		s.cfg.Journal.Add(stock.Restored{OrderID: orderID, ItemID: itemID, UserID: user,
			Home: stock.HomeShard(user, it.Shards), Shards: it.Shards, Token: key, At: now})
	}
	return orderID, nil
}
