package sale

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"seckill/order"
	"seckill/stock"
)

// The operator's controls: list items, pause and resume a sale, end it now,
// add units to it, change its window or per-user limit before it starts,
// and read a buyer's orders. Every change is made in MySQL with its audit
// row in one transaction (order/admin.go), then carried to Redis, where the
// purchase and token scripts read the sale state (stock.SetState) and take
// the units (stock.AddUnits); it is logged. Changes of one item are
// serialised across instances by a Redis lease, so the state Redis ends
// with is the one MySQL ended with.
//
// Distribution to the other instances:
//   - pause, resume, end: the sale state on every shard, read by reserve.lua
//     and issue.lua in the call that would sell: honoured by every instance
//     from the moment the request is answered (a purchase whose home shard
//     was claimed before it may still finish its fall-through). Each
//     instance's copy of the item follows within Config.ItemRefresh, and
//     then answers without Redis.
//   - window and limit: only before the sale starts (see itemCache).
//   - units: in the shards themselves, and a restock notice clears the
//     instances' sold-out flags.

// Actor is who asks for a change (recorded and logged).
type Actor string

// DefaultActor is the actor of a request that names none.
const DefaultActor Actor = "admin"

// adminLeaseTTL bounds how long a crashed instance can hold an item's
// changes; adminLeaseWait how long a change waits for another's.
const (
	adminLeaseTTL  = 10 * time.Second
	adminLeaseWait = 5 * time.Second
)

// MaxStock is the most units an item may hold.
const MaxStock = 10_000_000

// ItemNumbers is an item as the operator's list shows it.
type ItemNumbers struct {
	order.Item
	// Remaining is the units left in Redis (-1 if it could not be read:
	// Stale).
	Remaining int64
	Stale     bool
	// State is scheduled, on_sale, paused, sold_out or ended.
	State string
}

// Item states in the operator's list.
const (
	StateScheduled = "scheduled"
	StateOnSale    = "on_sale"
	StatePaused    = "paused"
	StateSoldOut   = "sold_out"
	StateEnded     = "ended"
)

// ListItems is a page of items, newest first, below the id before (0: from
// the newest), with their numbers: stock and sold from MySQL, remaining
// from Redis (one pipeline per item of the page; nothing beyond the page is
// read).
func (s *Sale) ListItems(ctx context.Context, before int64, limit int) ([]ItemNumbers, error) {
	items, err := s.cfg.Orders.ListItems(ctx, before, limit)
	if err != nil {
		return nil, outcome(err)
	}
	now := s.now()
	out := make([]ItemNumbers, len(items))
	for i, it := range items {
		n := ItemNumbers{Item: it, Remaining: -1, Stale: true}
		if rem, err := s.cfg.Stock.Remaining(ctx, it.ID, it.Shards); err == nil {
			total, missing := remaining(rem)
			n.Remaining, n.Stale = total, missing
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n.State = itemState(it, n.Remaining, n.Stale, now)
		out[i] = n
	}
	return out, nil
}

func itemState(it order.Item, rem int64, stale bool, now time.Time) string {
	switch {
	case it.EndsAt != nil && !now.Before(*it.EndsAt):
		return StateEnded
	case it.Paused:
		return StatePaused
	case now.Before(it.StartsAt):
		return StateScheduled
	case rem == 0 && !stale:
		return StateSoldOut
	}
	return StateOnSale
}

// redisState is the sale state the shards carry for it at now.
func redisState(it order.Item, now time.Time) string {
	switch {
	case it.EndsAt != nil && !now.Before(*it.EndsAt):
		return stock.StateEnded
	case it.Paused:
		return stock.StatePaused
	}
	return stock.StateOnSale
}

// underItemLease runs fn holding the item's change lease.
func (s *Sale) underItemLease(ctx context.Context, id int64, fn func() error) error {
	lock, err := s.cfg.Stock.Lease(ctx, stock.ItemLease(id), adminLeaseTTL, adminLeaseWait)
	if err != nil {
		return outcome(err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = lock.Release(rctx) // expires by itself otherwise
	}()
	return fn()
}

func (s *Sale) log() *slog.Logger {
	if s.cfg.Log != nil {
		return s.cfg.Log
	}
	return slog.Default()
}

// audit is the audit row of a change by who, now.
func (s *Sale) audit(who Actor) order.Audit {
	return order.Audit{Actor: string(who), CreatedAt: s.now()}
}

// SetPaused pauses (or resumes) the item's sale. When it returns nil,
// every shard carries the state: no purchase or token issue that starts
// afterwards, on any instance, passes a pause. Repeating it is harmless.
func (s *Sale) SetPaused(ctx context.Context, id int64, paused bool, who Actor) (order.Item, error) {
	var it order.Item
	err := s.underItemLease(ctx, id, func() error {
		var changed bool
		var err error
		if it, changed, err = s.cfg.Orders.SetPaused(ctx, id, paused, s.audit(who)); err != nil {
			return outcome(err)
		}
		// Written even when MySQL did not change: a retry after a failed
		// Redis write completes it.
		if err := s.cfg.Stock.SetState(ctx, it.ID, it.Shards, redisState(it, s.now())); err != nil {
			return err
		}
		s.items.put(it)
		if changed {
			s.log().Info("admin: sale paused state changed", "item", id, "paused", paused, "actor", string(who))
		}
		return nil
	})
	return it, err
}

// EndSale ends the item's sale now: purchases and token issues answer
// "ended" on every instance once it returns.
func (s *Sale) EndSale(ctx context.Context, id int64, who Actor) (order.Item, error) {
	var it order.Item
	err := s.underItemLease(ctx, id, func() error {
		now := s.now()
		var changed bool
		var err error
		if it, changed, err = s.cfg.Orders.EndSale(ctx, id, now, s.audit(who)); err != nil {
			return outcome(err)
		}
		if err := s.cfg.Stock.SetState(ctx, it.ID, it.Shards, stock.StateEnded); err != nil {
			return err
		}
		s.items.put(it)
		if changed {
			s.log().Info("admin: sale ended", "item", id, "actor", string(who))
		}
		return nil
	})
	return it, err
}

// EditItem changes the item's window or per-user limit, refused
// (ErrSaleStarted) from Config.ItemRefresh before its start on: every
// instance reads its copy of the item again within that time (cache.go).
func (s *Sale) EditItem(ctx context.Context, id int64, e order.ItemEdit, who Actor) (order.Item, error) {
	var it order.Item
	err := s.underItemLease(ctx, id, func() error {
		var err error
		now := s.now()
		if it, err = s.cfg.Orders.EditItem(ctx, id, e, now.Add(s.cfg.ItemRefresh), s.audit(who)); err != nil {
			return outcome(err)
		}
		s.items.put(it)
		s.log().Info("admin: item edited", "item", id, "starts_at", it.StartsAt, "ends_at", it.EndsAt,
			"per_user_limit", it.PerUserLimit, "actor", string(who))
		return nil
	})
	return it, err
}

// Addition is a stock addition as the operator sees it.
type Addition struct {
	ID    int64
	Units int64
}

// AddStock adds units to the item's sale, spread over its shards. MySQL's
// guard (items.stock) moves first, with the audit row, in one transaction;
// then the units go into the shards, once per addition (stock.AddUnits):
// a purchase can never take a unit MySQL would refuse, and a concurrent
// purchase's DECR and the INCRBY on one shard are ordered by Redis. The
// reconciler counts from MySQL's stock, so the books balance once both
// halves are done; a retry of the same key (the answer to
// ErrStockPartial) completes an addition cut short between them, and a
// rebuild counts it from MySQL. The restock notice then clears every
// instance's sold-out flag of the item.
func (s *Sale) AddStock(ctx context.Context, id, units int64, key string, who Actor) (order.Item, Addition, error) {
	var it order.Item
	var add order.Addition
	err := s.underItemLease(ctx, id, func() error {
		var err error
		if it, add, err = s.cfg.Orders.AddStock(ctx, id, units, key, s.now(), MaxStock, s.audit(who)); err != nil {
			return outcome(err)
		}
		s.items.put(it)
		if err := s.cfg.Stock.AddUnits(ctx, it.ID, it.Shards, add.ID, add.Units); err != nil {
			if errors.Is(err, stock.ErrNotReady) {
				// A lost shard: the rebuild counts the addition from MySQL.
				return ErrNotReady
			}
			return &Error{Kind: ErrStockPartial.Kind, Message: ErrStockPartial.Message, RetryAfter: ErrStockPartial.RetryAfter, err: err}
		}
		s.cfg.Stock.ClearSoldOut(it.ID)
		if err := s.cfg.Stock.PublishRestock(ctx, it.ID); err != nil {
			s.log().Warn("admin: publish restock", "item", id, "err", err)
		}
		s.log().Info("admin: stock added", "item", id, "units", add.Units, "addition", add.ID,
			"stock", it.Stock, "actor", string(who))
		return nil
	})
	return it, Addition{ID: add.ID, Units: add.Units}, err
}

// UserOrders is a page of the user's stored orders, newest first (below
// the order id before; of item when item > 0). An order accepted but not
// in MySQL yet is not listed (no index by user exists upstream that is
// cheap to read); it is readable by its id (Order) meanwhile, and listed
// once the writer stored it.
func (s *Sale) UserOrders(ctx context.Context, user, item, before int64, limit int) ([]Order, error) {
	rows, err := s.cfg.Orders.UserOrders(ctx, user, item, before, limit)
	if err != nil {
		return nil, outcome(err)
	}
	out := make([]Order, len(rows))
	for i, o := range rows {
		out[i] = stored(o)
	}
	return out, nil
}
