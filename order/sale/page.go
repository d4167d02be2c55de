package sale

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"seckill/order"
)

// DefaultPageRefresh is how old the remaining count a product page shows
// may be when Config.PageRefresh is not set.
const DefaultPageRefresh = 100 * time.Millisecond

// pageCounts keeps the remaining count of each item viewed on this
// instance, so that a product page costs no Redis call: an item's count is
// read again at most once per interval, by the view that finds it too old
// (refresh on demand: no goroutine, nothing scans the items). Entries are
// made for items that exist only (ItemState finds the item first), so they
// are bounded by the items, as the item cache is.
type pageCounts struct {
	every time.Duration
	mu    sync.RWMutex
	m     map[int64]*pageCount
	// first shares the first read of an item among the views waiting for
	// it; later reads are made by one view while the others show the
	// count held (pageCount.busy).
	first singleflight.Group
}

// pageCount is one item's count. A snapshot is replaced whole, never
// changed, so a view reads it without a lock.
type pageCount struct {
	snap atomic.Pointer[countSnap]
	busy atomic.Bool // a view is reading the count again
}

type countSnap struct {
	remaining int64
	// at is when the count was read, or when a read last failed: the next
	// read is due an interval later either way.
	at time.Time
	// stale: the last read failed, remaining is from an earlier one.
	stale bool
}

func newPageCounts(every time.Duration) *pageCounts {
	if every <= 0 {
		every = DefaultPageRefresh
	}
	return &pageCounts{every: every, m: map[int64]*pageCount{}}
}

// entry is the count of item id, made on first use.
func (p *pageCounts) entry(id int64) *pageCount {
	p.mu.RLock()
	c, ok := p.m[id]
	p.mu.RUnlock()
	if ok {
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok = p.m[id]; !ok {
		c = &pageCount{}
		p.m[id] = c
	}
	return c
}

// known records a count this instance knows exactly (read or just made).
func (p *pageCounts) known(id, remaining int64, at time.Time) {
	p.entry(id).snap.Store(&countSnap{remaining: remaining, at: at})
}

func (c *countSnap) state(it order.Item) ItemState {
	st := stateOf(it, c.remaining)
	st.Stale = c.stale
	return st
}

// ItemState is the item id names and the units it has left, for a product
// page: from memory, read from Redis at most once per Config.PageRefresh
// per item. A sold-out item this instance saw sold out answers so without
// Redis. When a read fails (Redis down, a breaker open, a shard lost) the
// last count read is shown, marked Stale, and never as sold out unless it
// was read so; only an item whose count this instance never knew fails
// (the Unavailable kind, or ErrNotReady for a lost shard).
func (s *Sale) ItemState(ctx context.Context, id int64) (ItemState, error) {
	it, err := s.Item(ctx, id)
	if err != nil {
		return ItemState{}, err
	}
	return s.itemState(ctx, it)
}

// itemState is ItemState of an item already read.
func (s *Sale) itemState(ctx context.Context, it order.Item) (ItemState, error) {
	if s.cfg.Stock.SoldOut(it.ID) {
		return stateOf(it, 0), nil
	}
	c := s.counts.entry(it.ID)
	snap := c.snap.Load()
	if snap == nil {
		return s.firstCount(ctx, it, c)
	}
	now := s.now()
	if now.Sub(snap.at) < s.counts.every || !c.busy.CompareAndSwap(false, true) {
		return snap.state(it), nil // fresh, or another view is reading it
	}
	defer c.busy.Store(false)
	// Another view may have read it between the load and the swap.
	if snap = c.snap.Load(); now.Sub(snap.at) < s.counts.every {
		return snap.state(it), nil
	}
	total, err := s.readCount(ctx, it)
	if err != nil {
		snap = &countSnap{remaining: snap.remaining, at: s.now(), stale: true}
	} else {
		snap = &countSnap{remaining: total, at: now}
	}
	c.snap.Store(snap)
	return snap.state(it), nil
}

// firstCount reads a count this instance never knew; concurrent views
// share the read. A failed read is remembered by nobody: the next view
// tries again.
func (s *Sale) firstCount(ctx context.Context, it order.Item, c *pageCount) (ItemState, error) {
	v, err, _ := s.counts.first.Do(strconv.FormatInt(it.ID, 10), func() (any, error) {
		if snap := c.snap.Load(); snap != nil { // a read that ended just now
			return snap, nil
		}
		now := s.now()
		total, err := s.readCount(ctx, it)
		if err != nil {
			return nil, err
		}
		snap := &countSnap{remaining: total, at: now}
		c.snap.Store(snap)
		return snap, nil
	})
	if err != nil {
		return ItemState{}, err
	}
	return v.(*countSnap).state(it), nil
}

// readCount reads the item's total from Redis. The read serves every view
// waiting for it, so the one view that makes it leaving does not cancel it
// (the Redis client's own time budget bounds it). A lost shard makes the
// count unknown, not sold out: ErrNotReady.
func (s *Sale) readCount(ctx context.Context, it order.Item) (int64, error) {
	rem, err := s.cfg.Stock.Remaining(context.WithoutCancel(ctx), it.ID, it.Shards)
	if err != nil {
		return 0, outcome(err)
	}
	total, missing := remaining(rem)
	if missing {
		return 0, ErrNotReady
	}
	return total, nil
}
