package lifecycle_test

import (
	"context"
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
