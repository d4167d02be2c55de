package sale

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"seckill/order"
)

// itemCache keeps item definitions in process: the purchase path needs the
// shard count, limit and sale window without a database call. Unknown ids
// are remembered briefly, and ids above the highest item id (read at most
// every maxIDEvery) are unknown without a query, so a flood of bad ids,
// distinct or not, does not reach MySQL.
//
// An operator may change an item (admin.go), so a held copy is read again
// once it is refresh old, on demand by the request that finds it due (the
// others use the copy held; nothing scans the items). That refresh is soft:
// a failed read keeps the copy. One is strict: a copy read before
// StartsAt-refresh is not used for a request at or after StartsAt until a
// read succeeds (ErrUnconfirmed meanwhile). Edits of the window and limit
// are refused from StartsAt-refresh on (EditItem), so every copy a sale is
// decided with holds its final window and limit. Pauses and ends do not
// wait for this: the purchase script reads them in Redis (stock.SetState).
type itemCache struct {
	store   *order.Store
	now     func() time.Time
	refresh time.Duration
	flight  singleflight.Group

	mu    sync.RWMutex
	items map[int64]cachedItem
	miss  map[int64]time.Time // unknown id -> until
	// refreshing holds the ids a soft refresh is reading: the other
	// requests that find the copy due meanwhile use it without waiting.
	refreshing map[int64]bool

	maxMu sync.Mutex
	maxID int64
	maxAt time.Time
}

// cachedItem is a held copy: when it was read, and when a read was last
// tried (a failed soft refresh is not tried again for refresh).
type cachedItem struct {
	it            order.Item
	readAt, tried time.Time
}

const (
	missTTL    = time.Second
	maxIDEvery = 100 * time.Millisecond
	// itemReadBudget bounds a refresh's MySQL read: a MySQL that does not
	// answer costs the one request that refreshes this long, once per
	// refresh interval, and the copy held is used.
	itemReadBudget = 250 * time.Millisecond
	// DefaultItemRefresh is Config.ItemRefresh's default.
	DefaultItemRefresh = time.Second
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

func newItemCache(s *order.Store, now func() time.Time, refresh time.Duration) *itemCache {
	if refresh <= 0 {
		refresh = DefaultItemRefresh
	}
	return &itemCache{store: s, now: now, refresh: refresh, items: map[int64]cachedItem{}, miss: map[int64]time.Time{},
		refreshing: map[int64]bool{}}
}

func (c *itemCache) get(ctx context.Context, id int64) (order.Item, error) {
	c.mu.RLock()
	e, ok := c.items[id]
	until, missed := c.miss[id]
	c.mu.RUnlock()
	if ok {
		now := c.now()
		if now.Sub(e.tried) < c.refresh {
			return e.it, nil
		}
		return c.again(ctx, id, e, now)
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
	now := c.now()
	c.items[id] = cachedItem{it: it, readAt: now, tried: now}
	delete(c.miss, id)
	return it, nil
}

// again reads a due copy again. A soft refresh is made by one request
// while the others use the copy held, and keeps the copy if it fails;
// requests that need the copy confirmed wait for one shared read
// (singleflight).
func (c *itemCache) again(ctx context.Context, id int64, e cachedItem, now time.Time) (order.Item, error) {
	strict := !now.Before(e.it.StartsAt) && e.readAt.Before(e.it.StartsAt.Add(-c.refresh))
	if !strict {
		c.mu.Lock()
		busy := c.refreshing[id]
		c.refreshing[id] = true
		c.mu.Unlock()
		if busy {
			return e.it, nil
		}
		defer func() {
			c.mu.Lock()
			delete(c.refreshing, id)
			c.mu.Unlock()
		}()
	}
	v, err, _ := c.flight.Do(strconv.FormatInt(id, 10), func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), itemReadBudget)
		defer cancel()
		it, err := c.store.Item(rctx, id)
		at := c.now()
		c.mu.Lock()
		defer c.mu.Unlock()
		cur := c.items[id]
		if err != nil {
			cur.tried = at
			if cur.it.ID != 0 {
				c.items[id] = cur
			}
			return nil, err
		}
		c.items[id] = cachedItem{it: it, readAt: at, tried: at}
		return it, nil
	})
	switch {
	case err == nil:
		return v.(order.Item), nil
	case errors.Is(err, order.ErrNotFound):
		return order.Item{}, err
	case strict:
		return order.Item{}, &Error{Kind: ErrUnconfirmed.Kind, Message: ErrUnconfirmed.Message, RetryAfter: ErrUnconfirmed.RetryAfter, err: err}
	}
	return e.it, nil
}

func (c *itemCache) put(it order.Item) {
	now := c.now()
	c.mu.Lock()
	c.items[it.ID] = cachedItem{it: it, readAt: now, tried: now}
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
