package lifecycle_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
	"seckill/order"
	"seckill/order/lifecycle"
	"seckill/stock"
)

// ordersCase is an item with many stored orders and a ledger that reads
// MySQL through one connection, so that its session counts the ledger's
// reads.
type ordersCase struct {
	ctx    context.Context
	st     *stock.Store
	db     *sqlx.DB
	single *sqlx.DB
	it     order.Item
	reg    *prometheus.Registry
	led    *lifecycle.Ledger
}

// newOrdersCase creates an item of stock units and fills its orders with
// fill, an INSERT ... SELECT from MariaDB's sequence engine whose one
// parameter is the item id; items.sold is set to the orders inserted and
// the Redis shards to shards.
func newOrdersCase(t *testing.T, stock_ int64, fill string, shards []int64, cfg lifecycle.LedgerConfig) *ordersCase {
	t.Helper()
	c := &ordersCase{ctx: context.Background(), reg: prometheus.NewRegistry()}
	rdb, prefix := testenv.Redis(t)
	c.st = stock.NewStore(rdb, stock.Config{Prefix: prefix})
	var dsn string
	dsn, c.db = testenv.MySQL(t)
	var err error
	c.it, err = order.NewStore(c.db).CreateItem(c.ctx, order.Item{Name: "sold", Stock: stock_, Shards: len(shards), PerUserLimit: 1, StartsAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.db.Exec(fill, c.it.ID)
	if err != nil {
		t.Fatalf("fill orders (MariaDB's sequence engine): %v", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.Exec("UPDATE items SET sold = ? WHERE id = ?", n, c.it.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.st.SetShards(c.ctx, c.it.ID, shards); err != nil {
		t.Fatal(err)
	}
	c.single = testenv.OneConn(t, dsn)
	if c.led, err = lifecycle.NewLedger(c.st, order.NewStore(c.single), c.reg, lifeLog(t), cfg); err != nil {
		t.Fatal(err)
	}
	return c
}

// pass runs one reconciler pass and returns the rows it read.
func (c *ordersCase) pass(t *testing.T) int64 {
	t.Helper()
	before := testenv.RowsRead(t, c.single)
	c.led.ReconcilePass(c.ctx)
	return testenv.RowsRead(t, c.single) - before
}

// exec runs a statement on the item's database.
func (c *ordersCase) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := c.db.Exec(query, args...); err != nil {
		t.Fatal(err)
	}
}

// TestReconcilerIdleCostIndependentOfOrders: a settled item with many
// stored orders costs an idle reconciler pass a few rows, not a count of
// its orders (with 387k orders an idle instance kept MariaDB at 0.35 of a
// core), and a change to it is still seen.
func TestReconcilerIdleCostIndependentOfOrders(t *testing.T) {
	const n = 5000
	// n paid orders, as a finished sale leaves them; Redis sold out.
	c := newOrdersCase(t, n, `INSERT INTO orders (order_id, item_id, user_id, shard, status, created_at, expires_at, paid_at)
		SELECT seq, ?, seq, 0, 'paid', NOW(3), NOW(3), NOW(3) FROM seq_1_to_5000`, []int64{0, 0}, fastRebuild)
	c.pass(t) // first sight: counts the orders once
	if s, err := c.led.Reconcile(c.ctx, c.it); err != nil || s.Drift != 0 || s.Paid != n {
		t.Fatalf("settled item: %+v, %v; want %d paid, drift 0", s, err, n)
	}
	c.pass(t)
	for pass := range 3 {
		if got := c.pass(t); got > 50 {
			t.Fatalf("idle pass %d read %d rows for a settled item of %d orders, want a few", pass, got, n)
		}
	}
	// A change from outside (an order cancelled by hand, its unit not
	// back) makes the item due again: the next pass counts it.
	c.exec(t, "UPDATE orders SET status = 'cancelled', cancelled_at = NOW(3) WHERE item_id = ? LIMIT 1", c.it.ID)
	c.exec(t, "UPDATE items SET sold = sold - 1 WHERE id = ?", c.it.ID)
	if got := c.pass(t); got < n/2 {
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
	cfg := fastRebuild
	cfg.CountRowsPerPass = perPass
	// n orders pending payment for an hour; 10 units left in Redis.
	c := newOrdersCase(t, n+10, `INSERT INTO orders (order_id, item_id, user_id, shard, status, created_at, expires_at)
		SELECT seq, ?, seq, 0, 'pending', NOW(3), NOW(3) + INTERVAL 1 HOUR FROM seq_1_to_5000`, []int64{5, 5}, cfg)
	label := map[string]string{"item": strconv.FormatInt(c.it.ID, 10)}
	gauge := func(name string) float64 { return counter(t, c.reg, "seckill_"+name, label) }
	if got := c.pass(t); got < n {
		t.Fatalf("first pass read %d rows; want the item's %d orders counted", got, n)
	}
	for i := 1; i < every; i++ {
		if got := c.pass(t); got > 50 {
			t.Fatalf("pass %d after the count read %d rows for a live item of %d orders, want a few", i, got, n)
		}
	}
	if got := c.pass(t); got < n {
		t.Fatalf("pass %d after the count read %d rows; want the orders counted again", every, got)
	}
	if d, o := gauge("stock_drift"), gauge("oversold"); d != 0 || o != 0 {
		t.Fatalf("balanced item: drift %v, oversold %v; want 0, 0", d, o)
	}
	// quiet runs passes that must read a few rows each.
	quiet := func(what string, passes int) {
		t.Helper()
		for range passes {
			if got := c.pass(t); got > 50 {
				t.Fatalf("pass after %s read %d rows, want a few", what, got)
			}
		}
	}

	// Between counts: an order expires (its unit not back in Redis yet),
	// and the books stay balanced.
	c.exec(t, "UPDATE orders SET status = 'cancelled', cancelled_at = NOW(3) WHERE order_id = 1")
	c.exec(t, "UPDATE items SET sold = sold - 1 WHERE id = ?", c.it.ID)
	quiet("an expiry", 2)
	if d := gauge("stock_drift"); d != 0 {
		t.Fatalf("after an expiry: drift %v, want 0", d)
	}
	// A unit vanishes from Redis: the drift shows once it repeats, with
	// no count of the orders.
	if err := c.st.SetShards(c.ctx, c.it.ID, []int64{4, 5}); err != nil {
		t.Fatal(err)
	}
	quiet("a loss", 2)
	if d := gauge("stock_drift"); d != 1 {
		t.Fatalf("a unit lost from Redis: drift %v, want 1", d)
	}
	// A shard below zero is oversold at once.
	if err := c.st.SetShards(c.ctx, c.it.ID, []int64{-1, 10}); err != nil {
		t.Fatal(err)
	}
	quiet("an oversell", 1)
	if o := gauge("oversold"); o != 1 {
		t.Fatalf("a shard at -1: oversold %v, want 1", o)
	}
}
