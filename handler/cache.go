package handler

import (
	"context"
	"errors"
	"sync"
	"time"

	"seckill/order"
)

// itemCache keeps item definitions in process: the purchase path needs the
// shard count, limit and sale window without a database call. Items do not
// change after creation; unknown ids are remembered briefly so a flood of
// bad ids does not reach MySQL.
type itemCache struct {
	store *order.Store
	now   func() time.Time

	mu    sync.RWMutex
	items map[int64]order.Item
	miss  map[int64]time.Time // unknown id -> until
}

const missTTL = time.Second

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
	if missed && c.now().Before(until) {
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
}

// acceptedKeys remembers purchase tokens this process accepted, so that a
// replayed key still gets its 202 after the local sold-out flag stopped
// sending purchases to Redis. Two generations bound its memory.
type acceptedKeys struct {
	mu        sync.Mutex
	max       int
	cur, prev map[string]int64
}

func newAcceptedKeys(max int) *acceptedKeys {
	return &acceptedKeys{max: max, cur: map[string]int64{}, prev: map[string]int64{}}
}

func (a *acceptedKeys) add(key string, orderID int64) {
	a.mu.Lock()
	if len(a.cur) >= a.max {
		a.prev, a.cur = a.cur, make(map[string]int64, a.max)
	}
	a.cur[key] = orderID
	a.mu.Unlock()
}

func (a *acceptedKeys) get(key string) (int64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id, ok := a.cur[key]; ok {
		return id, true
	}
	id, ok := a.prev[key]
	return id, ok
}
