package stock

import (
	"context"
	"seckill/app/testenv"
	"sync"
	"testing"
)

// TestConcurrentPurchasesShareRoundTrips: purchases released together go
// to Redis in a few pipelined round trips (group commit), each still its
// own atomic script with its own answer: every buyer gets a distinct
// order, the stock drops by one per buyer, and one outbox entry each.
func TestConcurrentPurchasesShareRoundTrips(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards, buyers = 41, 4, 64
	if err := s.Warm(ctx, item, buyers+10, shards); err != nil {
		t.Fatal(err)
	}
	toks := make([]string, buyers)
	for i := range toks {
		toks[i], _, _ = s.IssueToken(ctx, item, int64(i+1), shards)
	}
	hook := &testenv.RoundTrips{}
	rdb.AddHook(hook)
	start := make(chan struct{})
	var wg sync.WaitGroup
	ids := make([]int64, buyers)
	errs := make([]error, buyers)
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			u := int64(i + 1)
			ids[i], errs[i] = s.Reserve(ctx, Purchase{ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: toks[i], OrderID: tid(item, u, shards, u)})
		}()
	}
	close(start)
	wg.Wait()
	seen := map[int64]bool{}
	for i := range buyers {
		u := int64(i + 1)
		if errs[i] != nil || ids[i] != tid(item, u, shards, u) || seen[ids[i]] {
			t.Fatalf("buyer %d: order %d, %v", u, ids[i], errs[i])
		}
		seen[ids[i]] = true
	}
	if n := hook.N.Load(); n >= buyers {
		t.Errorf("%d purchases released together made %d round trips, want fewer (batched)", buyers, n)
	} else {
		t.Logf("%d purchases, %d round trips", buyers, n)
	}
	if rem, _ := s.Remaining(ctx, item, shards); sum(rem) != 10 {
		t.Errorf("remaining %v, want 10", rem)
	}
	if res, _ := s.PendingReservations(ctx, item, shards); len(res) != buyers {
		t.Errorf("outbox holds %d, want %d", len(res), buyers)
	}
}
