package handler

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"seckill/order/sale"
)

// pages keeps each item's product page as last rendered, with the state it
// was rendered from: the page is a function of sale.ItemState alone, and
// that state changes at most once per item.page_refresh (the count) or item
// refresh (the item), while the crowd views it thousands of times in
// between. A view whose state equals the kept one writes the kept bytes; any
// other renders and keeps its own. One entry per item viewed, like the item
// copies and page counts of order/sale; nothing scans them.
type pages struct {
	mu    sync.RWMutex
	items map[int64]*atomic.Pointer[renderedPage]
}

type renderedPage struct {
	st   sale.ItemState
	body []byte
}

func newPages() *pages { return &pages{items: make(map[int64]*atomic.Pointer[renderedPage])} }

// body is the page of st, rendered once per distinct state.
func (p *pages) body(st sale.ItemState) ([]byte, error) {
	p.mu.RLock()
	slot := p.items[st.ID]
	p.mu.RUnlock()
	if slot == nil {
		p.mu.Lock()
		if slot = p.items[st.ID]; slot == nil {
			slot = new(atomic.Pointer[renderedPage])
			p.items[st.ID] = slot
		}
		p.mu.Unlock()
	}
	if r := slot.Load(); r != nil && r.st == st {
		return r.body, nil
	}
	// What c.JSON writes: gin renders with encoding/json's Marshal.
	b, err := json.Marshal(viewOfItem(st))
	if err != nil {
		return nil, err
	}
	slot.Store(&renderedPage{st: st, body: b})
	return b, nil
}
