package lifecycle_test

import (
	"context"
	"errors"
	"seckill/order/lifecycle"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
	"seckill/order"
	"seckill/stock"
)

// TestSweepIsolatesABadItem: one item whose shard key is gone (its Return
// fails) must not stop the expiry of the others, nor the return of their
// units (a Return that failed used to end the whole pass before
// CancelExpired).
func TestSweepIsolatesABadItem(t *testing.T) {
	e := lifeSetup(t, 4, 1, 1)
	bad := e.item
	good := e.newItem(t, 4, 1, 1)
	past := time.Now().Add(-time.Minute)
	for _, it := range []order.Item{bad, good} {
		for u := int64(1); u <= 2; u++ {
			if err := e.buy(t, e.st, it, u); err != nil {
				t.Fatal(err)
			}
		}
		e.deliver(t, it, expiresAt(past))
	}
	// Cancel the bad item's orders first so they are the oldest unreturned,
	// then lose its shard key.
	sw, err := lifecycle.NewSweeper(e.st, e.orders, lifecycle.SweeperConfig{Batch: 1}, prometheus.NewRegistry(), lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	e.rdb.Del(e.ctx, e.shardKey(t, bad.ID, 0, "stock"))
	res, err := sw.Sweep(e.ctx)
	if err == nil {
		t.Error("sweep: got nil error, want the bad item's")
	}
	if res.Cancelled != 4 {
		t.Errorf("cancelled %d, want all 4 expired orders", res.Cancelled)
	}
	if got := e.shards(t, good); got[0] != 4 {
		t.Errorf("good item shard %d units, want its 2 units back (4)", got[0])
	}
}

// TestRebuildCountsOpenClaims: a buyer whose fall-through claim is open
// when the item is rebuilt keeps that slot: with limit 1 they never end up
// with two units (the claim used to be forgotten by the rebuilt counts and
// settle later without counting).
func TestRebuildCountsOpenClaims(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	e := lifeSetup(t, 0, 2, 1)
	e.rdb, e.prefix = rdb, prefix
	e.st = stock.NewStore(rdb, stock.Config{Prefix: prefix, ClaimTimeout: time.Hour})
	it := e.newItem(t, 2, 2, 1)
	// Find a user whose home shard is 0 and empty shard 0 first.
	user := int64(1)
	for stock.HomeShard(user, 2) != 0 {
		user++
	}
	if err := e.st.SetShards(e.ctx, it.ID, []int64{0, 0}); err != nil {
		t.Fatal(err)
	}
	// The buyer's purchase claims the slot and finds every shard empty
	// except that its process stalls right after claiming: emulate by
	// the claim the home script leaves when all shards are empty but the
	// settle never runs. Reserve with shard 1 momentarily missing makes
	// the fall-through stop with the claim open (ErrNotReady).
	e.rdb.Del(e.ctx, e.shardKey(t, it.ID, 1, "stock"))
	tok := testenv.TokenID()
	claimed := e.orderID(it, user)
	if _, err := e.st.Reserve(e.ctx, stock.Purchase{ItemID: it.ID, UserID: user, Shards: 2, Limit: 1, Token: tok, OrderID: claimed}); !errors.Is(err, stock.ErrNotReady) {
		t.Fatalf("claim: got %v, want ErrNotReady with the claim open", err)
	}
	claims, err := e.st.OpenClaims(e.ctx, it.ID, it.Shards)
	if err != nil || len(claims) != 1 {
		t.Fatalf("open claims: %+v, %v", claims, err)
	}
	l, err := lifecycle.NewLedger(e.st, e.orders, prometheus.NewRegistry(), lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Rebuild(e.ctx, it); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	// The claim settles now (a unit is there again) ...
	if id, err := e.st.Reserve(e.ctx, stock.Purchase{ItemID: it.ID, UserID: user, Shards: 2, Limit: 1, Token: tok, OrderID: e.orderID(it, user)}); err == nil && id != claimed {
		t.Fatalf("replay: got order %d, want %d", id, claimed)
	}
	// ... and the same buyer's second purchase must hit the limit.
	if err := e.buy(t, e.st, it, user); !errors.Is(err, stock.ErrAlreadyPurchased) && !errors.Is(err, stock.ErrPurchaseInProgress) {
		t.Errorf("second purchase with limit 1: got %v, want purchase limit", err)
	}
}

// TestDeadLetterFreesSlot: an order the MySQL guard refused is recorded
// where an operator sees it, reads as refused, and its buyer's slot comes
// back (it used to go to a dead-letter topic nothing read, the slot held
// for good).
func TestDeadLetterFreesSlot(t *testing.T) {
	e := lifeSetup(t, 1, 1, 1)
	it := e.item
	if err := e.buy(t, e.st, it, 5); err != nil {
		t.Fatal(err)
	}
	id := e.orderOf(t, 5)
	user, shard := int64(5), 0
	if err := e.orders.RecordDeadLetters(e.ctx, []order.DeadLetter{{Reason: order.ReasonOversell,
		OrderID: &id, ItemID: &it.ID, UserID: &user, Shard: &shard, Payload: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	// Recording twice (a redelivered batch) keeps one.
	if err := e.orders.RecordDeadLetters(e.ctx, []order.DeadLetter{{Reason: order.ReasonOversell,
		OrderID: &id, ItemID: &it.ID, UserID: &user, Shard: &shard, Payload: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.orders.DeadLetters(e.ctx, it.ID); n != 1 {
		t.Errorf("dead letters of the item: %d, want 1", n)
	}
	sw, err := lifecycle.NewSweeper(e.st, e.orders, lifecycle.SweeperConfig{}, prometheus.NewRegistry(), lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := e.orders.UnfreedDeadLetters(e.ctx, 10); len(left) != 0 {
		t.Errorf("unfreed dead letters after a sweep: %d", len(left))
	}
	// The slot is free: the buyer can buy again once a unit exists.
	e.rdb.Set(e.ctx, e.shardKey(t, it.ID, 0, "stock"), 1, 0)
	if err := e.buy(t, e.st, it, 5); err != nil {
		t.Errorf("buy after the refused order: %v, want a unit", err)
	}
}

// TestRebuildAllInParallel: two lost items are rebuilt at the same time
// (they used to be rebuilt one after the other, ~2 s each, the item on sale
// waiting behind the others). CaughtUp, which every item's rebuild asks
// while it waits for the pipeline, says yes only once two rebuilds ask at
// the same time: a serial rebuild never gets a yes and fails.
func TestRebuildAllInParallel(t *testing.T) {
	e := lifeSetup(t, 4, 2, 1)
	a, b := e.item, e.newItem(t, 6, 2, 1)
	var mu sync.Mutex
	waiting := 0
	both := make(chan struct{})
	var once sync.Once
	cfg := fastRebuild
	cfg.RebuildWait = 10 * time.Second
	cfg.CaughtUp = func(ctx context.Context) (bool, error) {
		mu.Lock()
		waiting++
		if waiting >= 2 {
			once.Do(func() { close(both) })
		}
		mu.Unlock()
		defer func() { mu.Lock(); waiting--; mu.Unlock() }()
		select {
		case <-both:
			return true, nil
		case <-time.After(time.Second):
			return false, nil
		}
	}
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.flushItem(t, a)
	e.flushItem(t, b)
	if err := led.RebuildAll(e.ctx, time.Now()); err != nil {
		t.Fatalf("rebuild all: %v", err)
	}
	if got := e.shards(t, a); got[0]+got[1] != 4 {
		t.Errorf("item a shards %v, want 4 units", got)
	}
	if got := e.shards(t, b); got[0]+got[1] != 6 {
		t.Errorf("item b shards %v, want 6 units", got)
	}
}

// TestSweeperSettlesAbandonedClaim: a buyer whose fall-through process died
// never replays; the sweeper settles the claim (sold out: every shard is
// empty) and the buyer's slot is free again (it used to stay claimed until
// the buyer replayed the same key).
func TestSweeperSettlesAbandonedClaim(t *testing.T) {
	e := lifeSetup(t, 0, 2, 1)
	e.st = stock.NewStore(e.rdb, stock.Config{Prefix: e.prefix, ClaimTimeout: time.Millisecond})
	it := e.newItem(t, 1, 2, 1)
	user := int64(1)
	for stock.HomeShard(user, 2) != 0 {
		user++
	}
	if err := e.st.SetShards(e.ctx, it.ID, []int64{0, 1}); err != nil {
		t.Fatal(err)
	}
	// The process claims the slot, then dies before taking from shard 1:
	// shard 1's key missing stops the fall-through with the claim open.
	stock1, bought0 := e.shardKey(t, it.ID, 1, "stock"), e.shardKey(t, it.ID, 0, "bought")
	e.rdb.Del(e.ctx, stock1)
	tok := testenv.TokenID()
	if _, err := e.st.Reserve(e.ctx, stock.Purchase{ItemID: it.ID, UserID: user, Shards: 2, Limit: 1, Token: tok, OrderID: e.orderID(it, user)}); !errors.Is(err, stock.ErrNotReady) {
		t.Fatalf("claim: got %v", err)
	}
	e.rdb.Set(e.ctx, stock1, 0, 0) // and the last unit went to someone else
	sw, err := lifecycle.NewSweeper(e.st, e.orders, lifecycle.SweeperConfig{}, nil, lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := e.st.OpenClaims(e.ctx, it.ID, it.Shards); len(left) != 0 {
		t.Errorf("open claims after a sweep: %+v", left)
	}
	if n, _ := e.rdb.HGet(e.ctx, bought0, strconv.FormatInt(user, 10)).Int(); n != 0 {
		t.Errorf("the abandoned claim still holds the buyer's slot (%d)", n)
	}
}

// TestReconcilerIdleCostIndependentOfItems: once every item is settled, a
// reconciler pass looks at one of them (round robin), not at all of them:
// with 20 settled items a pass takes at most one stock snapshot (it used to
// reconcile every item ever created every 5 seconds, MySQL counts
// included). A purchase makes its item due again at once.
func TestReconcilerIdleCostIndependentOfItems(t *testing.T) {
	e := lifeSetup(t, 5, 2, 1)
	items := []order.Item{e.item}
	for range 19 {
		items = append(items, e.newItem(t, 5, 2, 1))
	}
	var snaps atomic.Int64
	h := &ledgerHook{beforeSnapshot: func(context.Context) error { snaps.Add(1); return nil }}
	led, err := lifecycle.NewLedger(e.instance(t, h), e.orders, prometheus.NewRegistry(), lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	led.ReconcilePass(e.ctx) // first sight of every item
	if n := snaps.Load(); n != 20 {
		t.Fatalf("first pass: %d snapshots, want 20", n)
	}
	for pass := range 5 {
		before := snaps.Load()
		led.ReconcilePass(e.ctx)
		if n := snaps.Load() - before; n > 1 {
			t.Fatalf("idle pass %d: %d snapshots, want at most 1", pass, n)
		}
	}
	if err := e.buy(t, e.st, items[7], 1); err != nil {
		t.Fatal(err)
	}
	before := snaps.Load()
	led.ReconcilePass(e.ctx)
	if n := snaps.Load() - before; n < 1 || n > 2 {
		t.Errorf("pass after a purchase: %d snapshots, want the bought item's (and at most one settled one)", n)
	}
}
