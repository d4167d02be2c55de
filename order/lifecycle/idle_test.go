package lifecycle_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
	"seckill/order"
	"seckill/order/lifecycle"
	"seckill/stock"
)

// TestReconcilerIdleCostIndependentOfOrders: a settled item with many
// stored orders costs an idle reconciler pass a few rows, not a count of
// its orders (with 387k orders an idle instance kept MariaDB at 0.35 of a
// core), and a change to it is still seen.
func TestReconcilerIdleCostIndependentOfOrders(t *testing.T) {
	const n = 5000
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	st := stock.NewStore(rdb, stock.Config{Prefix: prefix})
	dsn, db := testenv.MySQL(t)
	it, err := order.NewStore(db).CreateItem(ctx, order.Item{Name: "done", Stock: n, Shards: 2, PerUserLimit: 1, StartsAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// n paid orders, as a finished sale leaves them; Redis sold out.
	if _, err := db.Exec(`INSERT INTO orders (order_id, item_id, user_id, shard, status, created_at, expires_at, paid_at)
		SELECT seq, ?, seq, 0, 'paid', NOW(3), NOW(3), NOW(3) FROM seq_1_to_5000`, it.ID); err != nil {
		t.Fatalf("fill orders (MariaDB's sequence engine): %v", err)
	}
	if _, err := db.Exec("UPDATE items SET sold = ? WHERE id = ?", n, it.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.SetShards(ctx, it.ID, []int64{0, 0}); err != nil {
		t.Fatal(err)
	}
	// The ledger's MySQL: one connection, so its session counts our reads.
	single := testenv.OneConn(t, dsn)
	led, err := lifecycle.NewLedger(st, order.NewStore(single), prometheus.NewRegistry(), lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	led.ReconcilePass(ctx) // first sight: counts the orders once
	if s, err := led.Reconcile(ctx, it); err != nil || s.Drift != 0 || s.Paid != n {
		t.Fatalf("settled item: %+v, %v; want %d paid, drift 0", s, err, n)
	}
	led.ReconcilePass(ctx)
	for pass := range 3 {
		before := testenv.RowsRead(t, single)
		led.ReconcilePass(ctx)
		if got := testenv.RowsRead(t, single) - before; got > 50 {
			t.Fatalf("idle pass %d read %d rows for a settled item of %d orders, want a few", pass, got, n)
		}
	}
	// A change from outside (an order cancelled by hand, its unit not
	// back) makes the item due again: the next pass counts it.
	if _, err := db.Exec("UPDATE orders SET status = 'cancelled', cancelled_at = NOW(3) WHERE item_id = ? LIMIT 1", it.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE items SET sold = sold - 1 WHERE id = ?", it.ID); err != nil {
		t.Fatal(err)
	}
	before := testenv.RowsRead(t, single)
	led.ReconcilePass(ctx)
	if got := testenv.RowsRead(t, single) - before; got < n/2 {
		t.Errorf("pass after a change read %d rows; want the item's orders counted again", got)
	}
}

// TestReconcilerLiveItemCostFollowsChanges: an item whose orders await
// payment is live (its orders may still expire), and was counted every
// pass: with 330k pending orders of an earlier sale, MariaDB spent a quarter
// of a second of CPU every 5 s on it (make bench). Now a pass balances it
// from its sold counter and unreturned orders, a few rows, and counts its
// orders every 1 + n/CountRowsPerPass passes; drift and oversell stay
// exact in the passes between.
func TestReconcilerLiveItemCostFollowsChanges(t *testing.T) {
	const n, perPass = 5000, 1000
	const every = 1 + n/perPass // passes between two counts
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	st := stock.NewStore(rdb, stock.Config{Prefix: prefix})
	dsn, db := testenv.MySQL(t)
	it, err := order.NewStore(db).CreateItem(ctx, order.Item{Name: "awaiting payment", Stock: n + 10, Shards: 2, PerUserLimit: 1, StartsAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// n orders pending payment for an hour; 10 units left in Redis.
	if _, err := db.Exec(`INSERT INTO orders (order_id, item_id, user_id, shard, status, created_at, expires_at)
		SELECT seq, ?, seq, 0, 'pending', NOW(3), NOW(3) + INTERVAL 1 HOUR FROM seq_1_to_5000`, it.ID); err != nil {
		t.Fatalf("fill orders (MariaDB's sequence engine): %v", err)
	}
	if _, err := db.Exec("UPDATE items SET sold = ? WHERE id = ?", n, it.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.SetShards(ctx, it.ID, []int64{5, 5}); err != nil {
		t.Fatal(err)
	}
	single := testenv.OneConn(t, dsn)
	reg := prometheus.NewRegistry()
	cfg := fastRebuild
	cfg.CountRowsPerPass = perPass
	led, err := lifecycle.NewLedger(st, order.NewStore(single), reg, lifeLog(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	label := map[string]string{"item": strconv.FormatInt(it.ID, 10)}
	gauge := func(name string) float64 { return counter(t, reg, "seckill_"+name, label) }
	// pass runs one pass and returns the rows it read.
	pass := func() int64 {
		before := testenv.RowsRead(t, single)
		led.ReconcilePass(ctx)
		return testenv.RowsRead(t, single) - before
	}
	if got := pass(); got < n {
		t.Fatalf("first pass read %d rows; want the item's %d orders counted", got, n)
	}
	for i := 1; i < every; i++ {
		if got := pass(); got > 50 {
			t.Fatalf("pass %d after the count read %d rows for a live item of %d orders, want a few", i, got, n)
		}
	}
	if got := pass(); got < n {
		t.Fatalf("pass %d after the count read %d rows; want the orders counted again", every, got)
	}
	if d, o := gauge("stock_drift"), gauge("oversold"); d != 0 || o != 0 {
		t.Fatalf("balanced item: drift %v, oversold %v; want 0, 0", d, o)
	}

	// Between counts: an order expires (its unit not back in Redis yet),
	// and the books stay balanced.
	if _, err := db.Exec("UPDATE orders SET status = 'cancelled', cancelled_at = NOW(3) WHERE order_id = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE items SET sold = sold - 1 WHERE id = ?", it.ID); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := pass(); got > 50 {
			t.Fatalf("pass after an expiry read %d rows, want a few", got)
		}
	}
	if d := gauge("stock_drift"); d != 0 {
		t.Fatalf("after an expiry: drift %v, want 0", d)
	}
	// A unit vanishes from Redis: the drift shows once it repeats, with
	// no count of the orders.
	if err := st.SetShards(ctx, it.ID, []int64{4, 5}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := pass(); got > 50 {
			t.Fatalf("pass after a loss read %d rows, want a few", got)
		}
	}
	if d := gauge("stock_drift"); d != 1 {
		t.Fatalf("a unit lost from Redis: drift %v, want 1", d)
	}
	// A shard below zero is oversold at once.
	if err := st.SetShards(ctx, it.ID, []int64{-1, 10}); err != nil {
		t.Fatal(err)
	}
	if got := pass(); got > 50 {
		t.Fatalf("pass after an oversell read %d rows, want a few", got)
	}
	if o := gauge("oversold"); o != 1 {
		t.Fatalf("a shard at -1: oversold %v, want 1", o)
	}
}
