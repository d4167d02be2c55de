package lifecycle_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/order/lifecycle"
)

// TestLedgerSeriesPerItem: the ledger exports a bounded number of series
// per item in play, whatever its shard count: the remaining units summed
// over the shards and the number of shards Redis lost, not one series per
// shard (an item may have 1024; the admin stats endpoint has each shard).
func TestLedgerSeriesPerItem(t *testing.T) {
	const shards = 16
	e := lifeSetup(t, 32, shards, 1)
	it := e.item
	item := strconv.FormatInt(it.ID, 10)
	// One shard lost: 30 units remain in the others, and the books do not
	// balance, so the item stays in play and exported.
	if err := e.rdb.Del(e.ctx, e.shardKey(t, it.ID, 3, "stock")).Err(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	led, err := lifecycle.NewLedger(e.st, e.orders, reg, lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- led.Run(ctx, 20*time.Millisecond) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitFor(t, 5*time.Second, "gauges exported", func() bool {
		return counter(t, reg, "seckill_stock_shards_missing", map[string]string{"item": item}) >= 0
	})
	want := map[string]float64{"seckill_stock_remaining": 30, "seckill_stock_shards_missing": 1}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		w, ok := want[f.GetName()]
		if !ok {
			continue
		}
		delete(want, f.GetName())
		if n := len(f.GetMetric()); n != 1 {
			t.Errorf("%s: %d series, want 1 for the one item", f.GetName(), n)
			continue
		}
		m := f.GetMetric()[0]
		if l := m.GetLabel(); len(l) != 1 || l[0].GetName() != "item" || l[0].GetValue() != item {
			t.Errorf("%s: labels %v, want item=%s only", f.GetName(), l, item)
		}
		if got := m.GetGauge().GetValue(); got != w {
			t.Errorf("%s: got %v, want %v", f.GetName(), got, w)
		}
	}
	for name := range want {
		t.Errorf("%s: not exported", name)
	}
}
