package lifecycle_test

import (
	"fmt"
	"testing"
	"time"

	"seckill/app/testenv"
	"seckill/order/lifecycle"
	"seckill/stock"
)

// TestRebuildAllPartlyLostItem: on a Redis Cluster a master that comes
// back empty takes some of an item's shards with it (the fault suite saw
// 3 of 8). The item is rebuilt whole (it used to be skipped with a
// warning: the lost shards never came back, fall-through claims never
// settled, the item was never sold out).
func TestRebuildAllPartlyLostItem(t *testing.T) {
	e := lifeSetup(t, 12, 4, 1)
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	for u, err := range e.buyAll(t, e.st, e.item, users(1, 5)) {
		if err != nil {
			t.Fatal(u, err)
		}
	}
	e.deliver(t, e.item, expiresAt(time.Now().Add(time.Hour)))
	// Shards 1 and 2 lost, with everything else of theirs.
	for _, sh := range []int{1, 2} {
		testenv.DeleteKeys(e.ctx, e.rdb, fmt.Sprintf("%s:{*}:%d:%d:*", e.prefix, e.item.ID, sh))
	}
	if got := e.shards(t, e.item); got[1] != -1 || got[2] != -1 {
		t.Fatalf("after the loss: shards %v, want 1 and 2 missing", got)
	}
	if err := led.RebuildAll(e.ctx, time.Now()); err != nil {
		t.Fatalf("rebuild all: %v", err)
	}
	if got, want := fmt.Sprint(e.shards(t, e.item)), fmt.Sprint(stock.Split(7, 4)); got != want {
		t.Errorf("shards after the rebuild: got %s, want %s (12 units, 5 sold)", got, want)
	}
	// The buyers' slots hold: each of them is at the limit again.
	for _, u := range users(1, 5) {
		if err := e.buy(t, e.st, e.item, u); err == nil {
			t.Errorf("user %d bought a second unit after the rebuild", u)
		}
	}
}
