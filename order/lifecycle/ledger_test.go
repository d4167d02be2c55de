package lifecycle_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"seckill/order/lifecycle"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/order"
	"seckill/stock"
)

// fastRebuild keeps rebuild waits short in tests.
var fastRebuild = lifecycle.LedgerConfig{
	LeaseTTL: 2 * time.Second, RebuildWait: 5 * time.Second,
	RebuildSettle: 150 * time.Millisecond, RebuildPoll: 10 * time.Millisecond,
}

// flushItem deletes every Redis key of the item, as a Redis that lost its
// data would.
func (e *lifeEnv) flushItem(t *testing.T, it order.Item) {
	t.Helper()
	for sh := range it.Shards {
		// One DEL per key: on a cluster no multi-key command spans slots.
		testenv.DeleteKeys(e.ctx, e.rdb, fmt.Sprintf("%s:{*}:%d:%d:*", e.prefix, it.ID, sh))
	}
	rem, err := e.st.Remaining(e.ctx, it.ID, it.Shards)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range rem {
		if n != -1 {
			t.Fatalf("after flush shard %d: got %d, want missing", i, n)
		}
	}
}

// ledgerHook watches one instance's Redis client, so a test follows a
// Ledger by its steps instead of by time: it counts the commands naming
// leaseKey (each attempt to take the lease), and runs beforeSnapshot (if
// set) before each stock snapshot is sent — one per item per
// reconciliation pass of Run, one per look of Rebuild's settle loop.
type ledgerHook struct {
	leaseKey       string
	leases         atomic.Int64
	beforeSnapshot func(ctx context.Context) error
}

func (h *ledgerHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *ledgerHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if h.leaseKey != "" && slices.Contains(cmd.Args(), any(h.leaseKey)) {
			h.leases.Add(1)
		}
		return err
	}
}
func (h *ledgerHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.beforeSnapshot != nil && slices.ContainsFunc(cmds, isSnapshot) {
			if err := h.beforeSnapshot(ctx); err != nil {
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// isSnapshot reports whether cmd is a shard's part of a stock snapshot:
// the script that reads the shard's count and its outbox length (XLEN).
func isSnapshot(cmd redis.Cmder) bool {
	return slices.ContainsFunc(cmd.Args(), func(a any) bool {
		s, ok := a.(string)
		return ok && strings.Contains(s, "XLEN")
	})
}

// instance is the stock store of another instance: its own Redis client,
// watched by h, on e's keys.
func (e *lifeEnv) instance(t *testing.T, h *ledgerHook) *stock.Store {
	t.Helper()
	rdb := testenv.NewRedis(redis.Options{})
	t.Cleanup(func() { rdb.Close() })
	rdb.AddHook(h)
	return stock.NewStore(rdb, stock.Config{Prefix: e.prefix})
}

func (e *lifeEnv) shards(t *testing.T, it order.Item) []int64 {
	t.Helper()
	rem, err := e.st.Remaining(e.ctx, it.ID, it.Shards)
	if err != nil {
		t.Fatal(err)
	}
	return rem
}

// Redis loses the item's keys mid-sale: Rebuild restores the right count
// from MySQL (cancelled-but-unreturned units included, once), the per-user
// limits hold, and the sale goes on to exactly the stock.
func TestRebuildAfterRedisFlush(t *testing.T) {
	const units = 40
	e := lifeSetup(t, units, 4, 1)
	it := e.item
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	for u, err := range e.buyAll(t, e.st, it, users(1, 15)) {
		if err != nil {
			t.Fatalf("buyer %d: %v", u, err)
		}
	}
	// Users 13..15 let their orders expire; the sweeper cancels them in
	// MySQL but dies before returning their units.
	e.deliver(t, it, func(r stock.Reservation) time.Time {
		if r.UserID > 12 {
			return time.Now().Add(-time.Minute)
		}
		return time.Now().Add(10 * time.Minute)
	})
	for _, u := range users(1, 5) {
		if _, err := e.orders.Pay(e.ctx, e.orderOf(t, u), u, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	cancelled, err := e.orders.CancelExpired(e.ctx, time.Now(), 100)
	if err != nil || len(cancelled) != 3 {
		t.Fatalf("cancel expired: got %d (%v), want 3", len(cancelled), err)
	}
	if s := e.balanced(t, led, it, "before flush"); s.Unreturned != 3 || s.Remaining != 25 {
		t.Errorf("before flush: got unreturned %d remaining %d, want 3 25", s.Unreturned, s.Remaining)
	}

	e.flushItem(t, it)
	mustErr(t, "buy with keys lost", e.buy(t, e.st, it, 100), stock.ErrNotReady)
	if s, err := led.Reconcile(e.ctx, it); err != nil || s.Drift == 0 {
		t.Errorf("after flush: got drift %d (%v), want non-zero", s.Drift, err)
	}

	if err := led.Rebuild(e.ctx, it); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if got, want := fmt.Sprint(e.shards(t, it)), fmt.Sprint(stock.Split(units-12, 4)); got != want {
		t.Errorf("shards after rebuild: got %s, want %s", got, want)
	}
	if s := e.balanced(t, led, it, "rebuilt"); s.Remaining != units-12 || s.Unreturned != 0 {
		t.Errorf("rebuilt: got remaining %d unreturned %d, want %d 0", s.Remaining, s.Unreturned, units-12)
	}
	// The unreturned units are counted in the rebuilt stock: returning
	// them now must not add them twice.
	for _, o := range cancelled {
		back, err := e.st.Return(e.ctx, o.ItemID, o.UserID, o.ID, o.Shard, it.Shards)
		if err != nil || back {
			t.Errorf("return of order %d after rebuild: got %t (%v), want no-op", o.ID, back, err)
		}
	}
	sw, err := lifecycle.NewSweeper(e.st, e.orders, lifecycle.SweeperConfig{}, nil, lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := sw.Sweep(e.ctx); err != nil || res.Returned != 0 {
		t.Errorf("sweep after rebuild: got %+v (%v), want nothing returned", res, err)
	}

	// Per-user limits came back: the 12 active buyers are refused.
	for _, u := range users(1, 12) {
		mustErr(t, fmt.Sprintf("active buyer %d again", u), e.buy(t, e.st, it, u), stock.ErrAlreadyPurchased)
	}
	// The sale goes on: the 3 expired buyers and 40 new ones race for 28.
	buyers := append(users(13, 3), users(100, 40)...)
	ok := 0
	for u, err := range e.buyAll(t, e.st, it, buyers) {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, stock.ErrSoldOut):
		default:
			t.Errorf("buyer %d: got %v, want nil or ErrSoldOut", u, err)
		}
	}
	if ok != units-12 {
		t.Errorf("purchases after rebuild: got %d, want %d", ok, units-12)
	}
	e.deliver(t, it, expiresAt(time.Now().Add(10*time.Minute)))
	if s := e.balanced(t, led, it, "sold out after rebuild"); s.Active != units || s.Remaining != 0 {
		t.Errorf("sold out after rebuild: got active %d remaining %d, want %d 0", s.Active, s.Remaining, units)
	}
}

// An on-demand rebuild while reservations wait in the outbox (no relay):
// they are counted, and their buyers keep their slots.
func TestRebuildCountsOutbox(t *testing.T) {
	e := lifeSetup(t, 20, 2, 1)
	it := e.item
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	for u, err := range e.buyAll(t, e.st, it, users(1, 5)) {
		if err != nil {
			t.Fatal(u, err)
		}
	}
	e.deliver(t, it, expiresAt(time.Now().Add(10*time.Minute)))
	for u, err := range e.buyAll(t, e.st, it, users(6, 3)) {
		if err != nil {
			t.Fatal(u, err)
		}
	}
	// Redis counts gone wrong.
	if err := e.st.SetShards(e.ctx, it.ID, []int64{9, 9}); err != nil {
		t.Fatal(err)
	}
	if err := led.Rebuild(e.ctx, it); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	s := e.balanced(t, led, it, "rebuilt")
	if s.Remaining != 12 || s.Outbox != 3 || s.Active != 5 {
		t.Errorf("rebuilt: got remaining %d outbox %d active %d, want 12 3 5", s.Remaining, s.Outbox, s.Active)
	}
	for _, u := range users(6, 3) {
		mustErr(t, fmt.Sprintf("buyer %d with a reservation in the outbox", u), e.buy(t, e.st, it, u), stock.ErrAlreadyPurchased)
	}
}

// Rebuild refuses to count while orders keep arriving in MySQL, and leaves
// the sales stopped.
func TestRebuildNotSettled(t *testing.T) {
	e := lifeSetup(t, 1000, 2, 1)
	it := e.item
	cfg := fastRebuild
	cfg.RebuildWait = 600 * time.Millisecond
	// The writer keeps delivering orders that were in Kafka: one arrives
	// before each look of the rebuild, so no two looks ever agree, however
	// slow the machine (no window of quiet to hit by chance).
	var moving atomic.Bool
	var delivered atomic.Int64
	h := &ledgerHook{beforeSnapshot: func(ctx context.Context) error {
		if !moving.Load() {
			return nil
		}
		id := delivered.Add(1)
		now := time.Now()
		_, _, err := e.orders.InsertBatch(ctx, []order.Order{{ID: id, ItemID: it.ID, UserID: id, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}})
		if err != nil {
			t.Errorf("insert: %v", err)
		}
		return nil
	}}
	led, err := lifecycle.NewLedger(e.instance(t, h), e.orders, nil, lifeLog(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	moving.Store(true)
	err = led.Rebuild(e.ctx, it)
	moving.Store(false)
	if !errors.Is(err, lifecycle.ErrNotSettled) {
		t.Fatalf("rebuild while orders arrive: got %v after %d orders delivered, want ErrNotSettled", err, delivered.Load())
	}
	if n := delivered.Load(); n < 2 {
		t.Errorf("orders delivered during the rebuild: got %d, want at least 2 (one per look)", n)
	}
	if got := fmt.Sprint(e.shards(t, it)); got != "[-1 -1]" {
		t.Errorf("shards after a failed rebuild: got %s, want [-1 -1] (sales stopped, answering 503)", got)
	}
	// Once quiet, it succeeds (with the usual wait: quiet must be seen
	// for RebuildSettle, which a short wait on a busy machine can miss).
	led, err = lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	if err := led.Rebuild(e.ctx, it); err != nil {
		t.Fatalf("rebuild when quiet: %v", err)
	}
	e.balanced(t, led, it, "rebuilt when quiet")
}

// A quiet MySQL and outbox are not enough while Kafka still holds
// reservations: Rebuild waits for the writer to catch up.
func TestRebuildWaitsForKafka(t *testing.T) {
	e := lifeSetup(t, 10, 2, 1)
	it := e.item
	cfg := fastRebuild
	cfg.RebuildWait = 600 * time.Millisecond
	var caughtUp atomic.Bool
	cfg.CaughtUp = func(context.Context) (bool, error) { return caughtUp.Load(), nil }
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := led.Rebuild(e.ctx, it); !errors.Is(err, lifecycle.ErrNotSettled) {
		t.Fatalf("rebuild with a consumer lag: got %v, want ErrNotSettled", err)
	}
	if got := fmt.Sprint(e.shards(t, it)); got != "[-1 -1]" {
		t.Errorf("shards while Kafka lags: got %s, want [-1 -1] (sales stopped, answering 503)", got)
	}
	caughtUp.Store(true)
	// The usual wait: a short one on a busy machine can miss RebuildSettle.
	cfg.RebuildWait = fastRebuild.RebuildWait
	if led, err = lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), cfg); err != nil {
		t.Fatal(err)
	}
	if err := led.Rebuild(e.ctx, it); err != nil {
		t.Fatalf("rebuild once caught up: %v", err)
	}
	e.balanced(t, led, it, "rebuilt once caught up")
}

// Rebuild takes the sweeper lease: it waits for a running sweep and gives
// up if the sweep does not end in time.
func TestRebuildWaitsForSweeper(t *testing.T) {
	e := lifeSetup(t, 10, 2, 1)
	it := e.item
	cfg := fastRebuild
	cfg.RebuildWait = 300 * time.Millisecond
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	lock, err := e.st.Lease(e.ctx, "sweeper", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := led.Rebuild(e.ctx, it); !errors.Is(err, stock.ErrLeaseHeld) {
		t.Fatalf("rebuild while the sweeper holds its lease: got %v, want ErrLeaseHeld", err)
	}
	if got := fmt.Sprint(e.shards(t, it)); got != "[5 5]" {
		t.Errorf("shards after a refused rebuild: got %s, want [5 5] untouched", got)
	}
	if err := lock.Release(e.ctx); err != nil {
		t.Fatal(err)
	}
	// The usual wait: a short one on a busy machine can miss RebuildSettle.
	if led, err = lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), fastRebuild); err != nil {
		t.Fatal(err)
	}
	if err := led.Rebuild(e.ctx, it); err != nil {
		t.Fatalf("rebuild after the sweep: %v", err)
	}
}

// RebuildAll rebuilds only items whose shard keys are all gone.
func TestRebuildAllOnlyMissingItems(t *testing.T) {
	e := lifeSetup(t, 12, 3, 1)
	lost := e.item
	kept := e.newItem(t, 10, 2, 1)
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	for u, err := range e.buyAll(t, e.st, lost, users(1, 3)) {
		if err != nil {
			t.Fatal(u, err)
		}
	}
	e.deliver(t, lost, expiresAt(time.Now().Add(time.Hour)))
	e.flushItem(t, lost)
	// Deliberately unlike a rebuild's answer, to see it is left alone.
	if err := e.st.SetShards(e.ctx, kept.ID, []int64{1, 1}); err != nil {
		t.Fatal(err)
	}
	if err := led.RebuildAll(e.ctx, time.Now()); err != nil {
		t.Fatalf("rebuild all: %v", err)
	}
	if got, want := fmt.Sprint(e.shards(t, lost)), fmt.Sprint(stock.Split(9, 3)); got != want {
		t.Errorf("lost item shards: got %s, want %s", got, want)
	}
	if got := fmt.Sprint(e.shards(t, kept)); got != "[1 1]" {
		t.Errorf("kept item shards: got %s, want [1 1] untouched", got)
	}
}

func TestLedgerStatsJSON(t *testing.T) {
	e := lifeSetup(t, 10, 2, 1)
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users(1, 3) {
		if err := e.buy(t, e.st, e.item, u); err != nil {
			t.Fatal(err)
		}
	}
	v, err := led.Stats(e.ctx, e.item)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"stock": 10, "remaining": 7, "outbox": 3, "pending": 0, "paid": 0,
		"cancelled": 0, "returned": 0, "active": 0, "in_flight": 0, "drift": 0, "oversold": 0}
	for k, w := range want {
		if g, ok := got[k].(float64); !ok || g != w {
			t.Errorf("stats %q: got %v, want %v", k, got[k], w)
		}
	}
	if sh, ok := got["shards"].([]any); !ok || len(sh) != 2 {
		t.Errorf("stats shards: got %v, want 2 counts", got["shards"])
	}
}

func TestLedgerOversold(t *testing.T) {
	tests := []struct {
		name   string
		shards []int64
		want   int64
	}{
		{"all shards fine", []int64{3, 4}, 0},
		{"one shard below zero", []int64{-2, 4}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := lifeSetup(t, 7, 2, 1)
			led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.st.SetShards(e.ctx, e.item.ID, tt.shards); err != nil {
				t.Fatal(err)
			}
			s, err := led.Reconcile(e.ctx, e.item)
			if err != nil {
				t.Fatal(err)
			}
			if s.Oversold != tt.want {
				t.Errorf("oversold: got %d, want %d", s.Oversold, tt.want)
			}
		})
	}
}

// Run exports the gauges on the lease holder only; drift shows once it
// repeats with nothing moving, and the series go when the holder stops.
func TestLedgerRunExportsGauges(t *testing.T) {
	e := lifeSetup(t, 10, 2, 1)
	it := e.item
	item := strconv.FormatInt(it.ID, 10)
	for _, u := range users(1, 3) {
		if err := e.buy(t, e.st, it, u); err != nil {
			t.Fatal(err)
		}
	}
	e.deliver(t, it, expiresAt(time.Now().Add(time.Hour)))

	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	ledA, err := lifecycle.NewLedger(e.st, e.orders, regA, lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	ctxA, stopA := context.WithCancel(e.ctx)
	doneA := make(chan error, 1)
	go func() { doneA <- ledA.Run(ctxA, 20*time.Millisecond) }()
	// The gauges are set one after the other: wait for the last one.
	waitFor(t, 5*time.Second, "remaining exported", func() bool {
		return counter(t, regA, "seckill_stock_shards_missing", map[string]string{"item": item}) >= 0
	})
	// A second instance cannot take the lease and exports nothing.
	hookB := &ledgerHook{leaseKey: e.prefix + ":lease:ledger"}
	ledB, err := lifecycle.NewLedger(e.instance(t, hookB), e.orders, regB, lifeLog(t), fastRebuild)
	if err != nil {
		t.Fatal(err)
	}
	ctxB, stopB := context.WithCancel(e.ctx)
	doneB := make(chan error, 1)
	go func() { doneB <- ledB.Run(ctxB, 20*time.Millisecond) }()

	if rem := counter(t, regA, "seckill_stock_remaining", map[string]string{"item": item}); rem != 7 {
		t.Errorf("seckill_stock_remaining: got %v, want 7", rem)
	}
	if got := counter(t, regA, "seckill_oversold", map[string]string{"item": item}); got != 0 {
		t.Errorf("seckill_oversold: got %v, want 0", got)
	}
	if got := counter(t, regA, "seckill_stock_drift", map[string]string{"item": item}); got != 0 {
		t.Errorf("seckill_stock_drift: got %v, want 0", got)
	}

	// Two units vanish from Redis and nothing moves: the drift shows.
	if err := e.st.SetShards(e.ctx, it.ID, []int64{2, 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "drift exported", func() bool {
		return counter(t, regA, "seckill_stock_drift", map[string]string{"item": item}) == 2
	})
	// B tried the lease twice more since: its loop went round at least
	// once (a holder would not try again) while A exported the drift.
	tried := hookB.leases.Load()
	waitFor(t, 5*time.Second, "second instance tries the lease again", func() bool {
		return hookB.leases.Load() >= tried+2
	})
	if got := counter(t, regB, "seckill_stock_drift", map[string]string{"item": item}); got != -1 {
		t.Errorf("drift on the instance without the lease: got %v, want no series", got)
	}
	if got := counter(t, regB, "seckill_stock_remaining", map[string]string{"item": item}); got != -1 {
		t.Errorf("remaining on the instance without the lease: got %v, want no series", got)
	}

	stopA()
	if err := <-doneA; err != nil {
		t.Errorf("run: got %v, want nil", err)
	}
	if got := counter(t, regA, "seckill_stock_drift", map[string]string{"item": item}); got != -1 {
		t.Errorf("drift after the holder stopped: got %v, want no series", got)
	}
	// The other instance takes over.
	waitFor(t, 10*time.Second, "second instance exports after takeover", func() bool {
		return counter(t, regB, "seckill_stock_drift", map[string]string{"item": item}) == 2
	})
	stopB()
	if err := <-doneB; err != nil {
		t.Errorf("run: got %v, want nil", err)
	}
}

// A busy pipeline is not drift: while units keep moving the exported drift
// stays 0 even though the identity is off by the units in flight.
func TestLedgerDriftNeedsNoProgress(t *testing.T) {
	e := lifeSetup(t, 5000, 2, 1)
	it := e.item
	item := strconv.FormatInt(it.ID, 10)
	reg := prometheus.NewRegistry()
	// Run is driven pass by pass: each pass waits at its snapshot until
	// let goes; a pass at the gate means the one before it has exported.
	arrived, let := make(chan struct{}), make(chan struct{})
	h := &ledgerHook{beforeSnapshot: func(ctx context.Context) error {
		select {
		case arrived <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-let:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	led, err := lifecycle.NewLedger(e.instance(t, h), e.orders, reg, lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- led.Run(ctx, time.Millisecond) }()
	defer func() {
		stop()
		<-done
	}()
	atGate := func() {
		t.Helper()
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("no reconciliation pass within 10s")
		}
	}
	// onePass lets the waiting pass read and export, and waits for the next.
	onePass := func() {
		t.Helper()
		select {
		case let <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("reconciliation pass gone from the gate")
		}
		atGate()
	}
	atGate()
	// Purchases whose reservations go "into Kafka" (leave the outbox, not
	// in MySQL yet), one between each two passes: the identity is off by
	// the units in flight while they keep coming.
	var seen []float64
	var bought int64
	for range 8 {
		bought++
		if err := e.buy(t, e.st, it, bought); err != nil {
			t.Fatal(err)
		}
		res, err := e.st.PendingReservations(e.ctx, it.ID, it.Shards)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			o := stock.OutboxOf(it.ID, r.Shard, it.Shards)
			if err := e.st.EnsureGroup(e.ctx, o, "test"); err != nil {
				t.Fatal(err)
			}
			if err := e.st.AckOutbox(e.ctx, o, "test", r.StreamID); err != nil {
				t.Fatal(err)
			}
		}
		onePass()
		seen = append(seen, counter(t, reg, "seckill_stock_drift", map[string]string{"item": item}))
	}
	if i := slices.IndexFunc(seen, func(v float64) bool { return v > 0 }); i >= 0 {
		t.Errorf("drift while units move: got %v after %d purchases, want 0 (or no series) throughout", seen[i], i+1)
	}
	// Stuck with every unit in flight: the next pass sees nothing moved,
	// and now it is drift.
	onePass()
	if got := counter(t, reg, "seckill_stock_drift", map[string]string{"item": item}); got != float64(bought) {
		t.Errorf("stuck drift: got %v, want %d", got, bought)
	}
}
