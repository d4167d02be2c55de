package stock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"seckill/app/testenv"
)

// TestStatePausesEveryShard: once SetState(paused) returned, no purchase
// passes on any shard (token issues never reach Redis: the sale refuses
// them from its copy of the item), a key answered before keeps its
// answer, and resuming sells again.
func TestStatePausesEveryShard(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Config{})
	const item, shards = 41, 4
	if err := s.Warm(ctx, item, 100, shards); err != nil {
		t.Fatal(err)
	}
	tok := testenv.TokenID()
	p := Purchase{ItemID: item, UserID: 1, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, 1, shards, 1)}
	first, err := s.Reserve(ctx, p)
	if err != nil {
		t.Fatalf("purchase before the pause: %v", err)
	}
	// Tokens for users on every shard, issued before the pause.
	toks := map[int64]string{}
	for u := int64(2); u < 40; u++ {
		toks[u] = testenv.TokenID()
	}
	if err := s.SetState(ctx, item, shards, StatePaused); err != nil {
		t.Fatal(err)
	}
	for u, tk := range toks {
		_, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: tk, OrderID: tid(item, u, shards, u)})
		if !errors.Is(err, ErrPaused) {
			t.Fatalf("user %d (home shard %d) while paused: got %v, want ErrPaused", u, HomeShard(u, shards), err)
		}
	}
	if got, err := s.Reserve(ctx, p); err != nil || got != first {
		t.Errorf("replay of an accepted key while paused: got %d, %v, want %d", got, err, first)
	}
	rem, _ := s.Remaining(ctx, item, shards)
	if sum(rem) != 99 {
		t.Errorf("remaining while paused: got %d, want 99", sum(rem))
	}
	if err := s.SetState(ctx, item, shards, StateEnded); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: 2, Shards: shards, Limit: 1, Token: toks[2], OrderID: tid(item, 2, shards, 2)}); !errors.Is(err, ErrEnded) {
		t.Errorf("purchase once ended: got %v, want ErrEnded", err)
	}
	if err := s.SetState(ctx, item, shards, StateOnSale); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: 2, Shards: shards, Limit: 1, Token: toks[2], OrderID: tid(item, 2, shards, 2)}); err != nil {
		t.Errorf("purchase after resume: got %v, want accepted", err)
	}
}

// TestAddUnitsOnceRacingPurchases: units added while purchases run, with
// the addition applied twice (a retry), are sold exactly once each: the
// purchases taken equal the stock before plus the units added once.
func TestAddUnitsOnceRacingPurchases(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Config{})
	const item, shards, before, added, buyers = 42, 4, 10, 30, 120
	if err := s.Warm(ctx, item, before, shards); err != nil {
		t.Fatal(err)
	}
	toks := make([]string, buyers)
	for i := range toks {
		toks[i] = testenv.TokenID()
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var sold atomic.Int64
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			u := int64(i + 1)
			_, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: toks[i], OrderID: tid(item, u, shards, u)})
			switch {
			case err == nil:
				sold.Add(1)
			case errors.Is(err, ErrSoldOut):
			default:
				t.Errorf("purchase: %v", err)
			}
		}()
	}
	for range 2 { // the same addition twice: applied once
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := s.AddUnits(ctx, item, shards, 7, added); err != nil {
				t.Errorf("add units: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	rem, err := s.Remaining(ctx, item, shards)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range rem {
		if n < 0 {
			t.Errorf("shard %d: got %d, want >= 0", i, n)
		}
	}
	if got := sold.Load() + sum(rem); got != before+added {
		t.Errorf("sold %d + remaining %d = %d, want %d (the addition applied once)", sold.Load(), sum(rem), got, before+added)
	}
}
