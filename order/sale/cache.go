package sale

import (
	"context"
	"errors"
	"sync"
	"time"

	"seckill/order"
)

// itemCache keeps item definitions in process: the purchase path needs the
// shard count, limit and sale window without a database call. Items do not
// change after creation; unknown ids are remembered briefly, and ids above
// the highest item id (read at most every maxIDEvery) are unknown without a
// query, so a flood of bad ids, distinct or not, does not reach MySQL.
type itemCache struct {
	store *order.Store
	now   func() time.Time

	mu    sync.RWMutex
	items map[int64]order.Item
	miss  map[int64]time.Time // unknown id -> until

	maxMu sync.Mutex
	maxID int64
	maxAt time.Time
}

const (
	missTTL    = time.Second
	maxIDEvery = 100 * time.Millisecond
)

// above reports whether id is above the highest item id, read from MySQL
// at most once per maxIDEvery (an item created meanwhile on another
// instance is found once that passed). A failed read says no.
func (c *itemCache) above(ctx context.Context, id int64) bool {
	c.maxMu.Lock()
	defer c.maxMu.Unlock()
	if id <= c.maxID {
		return false
	}
	if now := c.now(); now.Sub(c.maxAt) >= maxIDEvery {
		m, err := c.store.MaxItemID(ctx)
		if err != nil {
			return false
		}
		c.maxID, c.maxAt = m, now
	}
	return id > c.maxID
}

func newItemCache(s *order.Store, now func() time.Time) *itemCache {
	return &itemCache{store: s, now: now, items: map[int64]order.Item{}, miss: map[int64]time.Time{}}
}

func (c *itemCache) get(ctx context.Context, id int64) (order.Item, error) {
	c.mu.RLock()
	it, ok := c.items[id]
	until, missed := c.miss[id]
	c.mu.RUnlock()
	if ok {
		return it, nil
	}
	if missed && c.now().Before(until) || c.above(ctx, id) {
		return order.Item{}, order.ErrNotFound
	}
	it, err := c.store.Item(ctx, id)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case errors.Is(err, order.ErrNotFound):
		if len(c.miss) > 10000 {
			clear(c.miss)
		}
		c.miss[id] = c.now().Add(missTTL)
		return order.Item{}, err
	case err != nil:
		return order.Item{}, err
	}
	c.items[id] = it
	delete(c.miss, id)
	return it, nil
}

func (c *itemCache) put(it order.Item) {
	c.mu.Lock()
	c.items[it.ID] = it
	delete(c.miss, it.ID)
	c.mu.Unlock()
	c.maxMu.Lock()
	c.maxID = max(c.maxID, it.ID)
	c.maxMu.Unlock()
}

// Recent is a bounded map: when the current generation is full it becomes
// the previous one and the one before is dropped, so memory stays bounded
// without tracking recency. Readers take a read lock only. The sale keeps
// its answers in one; the transport may use it for what it remembers.
type Recent[K comparable, V any] struct {
	mu        sync.RWMutex
	max       int
	cur, prev map[K]V
}

// NewRecent makes a Recent that keeps from max to 2·max entries.
func NewRecent[K comparable, V any](max int) *Recent[K, V] {
	return &Recent[K, V]{max: max, cur: map[K]V{}, prev: map[K]V{}}
}

// Add remembers v for k.
func (g *Recent[K, V]) Add(k K, v V) {
	g.mu.Lock()
	if len(g.cur) >= g.max {
		g.prev, g.cur = g.cur, make(map[K]V, g.max)
	}
	g.cur[k] = v
	g.mu.Unlock()
}

// Get is what k was last given, if it is still remembered.
func (g *Recent[K, V]) Get(k K) (V, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if v, ok := g.cur[k]; ok {
		return v, true
	}
	v, ok := g.prev[k]
	return v, ok
}
