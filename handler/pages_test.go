package handler

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"seckill/order"
	"seckill/order/sale"
)

// TestPagesFollowTheState: a kept page is written only for the very state
// it was rendered from; any change of the count, the flags or the item
// renders anew, byte for byte what encoding/json (c.JSON) writes.
func TestPagesFollowTheState(t *testing.T) {
	p := newPages()
	ends := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	base := sale.ItemState{Item: order.Item{ID: 7, Name: "shoe", Stock: 10, Shards: 8, PerUserLimit: 1,
		StartsAt: ends.Add(-time.Hour), EndsAt: &ends, PriceMinor: 999, Currency: "EUR"}, Remaining: 10}
	later := ends.Add(time.Hour)
	states := map[string]sale.ItemState{"base": base}
	add := func(name string, f func(*sale.ItemState)) {
		st := base
		f(&st)
		states[name] = st
	}
	add("count", func(s *sale.ItemState) { s.Remaining = 9 })
	add("sold out", func(s *sale.ItemState) { s.Remaining, s.SoldOut = 0, true })
	add("stale", func(s *sale.ItemState) { s.Stale = true })
	add("paused", func(s *sale.ItemState) { s.Paused = true })
	add("price", func(s *sale.ItemState) { s.PriceMinor = 1099 })
	add("window", func(s *sale.ItemState) { s.EndsAt = &later })
	add("other item", func(s *sale.ItemState) { s.ID = 8 })
	// Every state after every other, twice: a kept page of another state
	// must never be written.
	for range 2 {
		for name, st := range states {
			for _, prev := range states {
				if _, err := p.body(prev); err != nil {
					t.Fatal(err)
				}
				got, err := p.body(st)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := json.Marshal(viewOfItem(st))
				if !bytes.Equal(got, want) {
					t.Fatalf("%s after another state: got %s, want %s", name, got, want)
				}
			}
		}
	}
	// The same state twice is the same bytes, not a new rendering.
	a, _ := p.body(base)
	b, _ := p.body(base)
	if &a[0] != &b[0] {
		t.Error("the same state was rendered again")
	}
}
