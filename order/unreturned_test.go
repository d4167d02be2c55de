package order_test

import (
	"context"
	"testing"
	"time"

	"seckill/app/testenv"
	"seckill/order"
)

// TestUnreturnedReadsOnlyUnreturned: the sweeper's look for cancelled
// orders whose unit is not back reads those orders, not every cancelled
// order ever stored (with 100k cancelled orders that read cost an idle
// MariaDB a quarter of a core, every second).
func TestUnreturnedReadsOnlyUnreturned(t *testing.T) {
	ctx := context.Background()
	dsn, db := testenv.MySQL(t)
	it, err := order.NewStore(db).CreateItem(ctx, order.Item{Name: "old", Stock: 6000, Shards: 1, PerUserLimit: 1, StartsAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// 5000 cancelled orders whose units are back, 3 whose are not.
	if _, err := db.Exec(`INSERT INTO orders (order_id, item_id, user_id, shard, status, created_at, expires_at, cancelled_at, stock_returned)
		SELECT seq, ?, seq, 0, 'cancelled', NOW(3), NOW(3), NOW(3), seq > 3 FROM seq_1_to_5003`, it.ID); err != nil {
		t.Fatalf("fill orders (MariaDB's sequence engine): %v", err)
	}
	single := testenv.OneConn(t, dsn)
	st := order.NewStore(single)
	before := testenv.RowsRead(t, single)
	got, err := st.Unreturned(ctx, 500)
	if err != nil || len(got) != 3 {
		t.Fatalf("unreturned: %d orders, %v; want 3", len(got), err)
	}
	if read := testenv.RowsRead(t, single) - before; read > 50 {
		t.Errorf("finding 3 unreturned orders among 5003 cancelled read %d rows, want a few", read)
	}
}

// TestCancelExpiredReadsOnlyExpired: the expiry scan reads the expired
// pending orders, not the pending ones still in their payment window, nor
// the cancelled ones (the index it shares with Unreturned).
func TestCancelExpiredReadsOnlyExpired(t *testing.T) {
	ctx := context.Background()
	dsn, db := testenv.MySQL(t)
	it, err := order.NewStore(db).CreateItem(ctx, order.Item{Name: "live", Stock: 20000, Shards: 1, PerUserLimit: 1, StartsAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// 5000 pending in their window, 5000 cancelled, 3 expired.
	if _, err := db.Exec(`INSERT INTO orders (order_id, item_id, user_id, shard, status, created_at, expires_at, cancelled_at, stock_returned)
		SELECT seq, ?, seq, 0, IF(seq <= 5000, 'cancelled', 'pending'), NOW(3),
		       IF(seq > 10000, NOW(3) - INTERVAL 1 MINUTE, NOW(3) + INTERVAL 1 HOUR),
		       IF(seq <= 5000, NOW(3), NULL), seq <= 5000 FROM seq_1_to_10003`, it.ID); err != nil {
		t.Fatalf("fill orders (MariaDB's sequence engine): %v", err)
	}
	if _, err := db.Exec("UPDATE items SET sold = 5003 WHERE id = ?", it.ID); err != nil {
		t.Fatal(err)
	}
	single := testenv.OneConn(t, dsn)
	st := order.NewStore(single)
	before := testenv.RowsRead(t, single)
	got, err := st.CancelExpired(ctx, time.Now(), 500)
	if err != nil || len(got) != 3 {
		t.Fatalf("cancel expired: %d orders, %v; want 3", len(got), err)
	}
	// The 3 candidates, then each one's conditional update.
	if read := testenv.RowsRead(t, single) - before; read > 50 {
		t.Errorf("cancelling 3 expired orders among 10,003 read %d rows, want a few", read)
	}
}
