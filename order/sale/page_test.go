package sale

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/limiter/breaker"
	"seckill/order"
	"seckill/stock"
)

// fakeClock is a clock a test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func seqIDs(next *atomic.Int64) idsFunc {
	return func(g int) (int64, error) { return stock.WithGroup(next.Add(1)<<22, g), nil }
}

// pageSale is another instance of the sale over e's stores, on clk, that
// never read e's item.
func pageSale(e *env, st *stock.Store, clk *fakeClock) *Sale {
	return New(Config{Stock: st, Orders: e.orders, Now: clk.now, PageRefresh: 100 * time.Millisecond})
}

func wantState(t *testing.T, what string, got ItemState, err error, remaining int64, soldOut, stale bool) {
	t.Helper()
	if err != nil || got.Remaining != remaining || got.SoldOut != soldOut || got.Stale != stale {
		t.Errorf("%s: got %+v, %v; want remaining %d, sold out %v, stale %v", what, got, err, remaining, soldOut, stale)
	}
}

// TestProductPageOneReadPerInterval: concurrent views of an item this
// instance never read share one Redis read; views within the interval read
// nothing; the first view after it reads again, and sees the new count.
func TestProductPageOneReadPerInterval(t *testing.T) {
	var next atomic.Int64
	next.Store(1 << 38)
	e, s := newEnv(t, 10, seqIDs(&next))
	clk := newFakeClock()
	p := pageSale(e, e.st, clk)
	if _, err := p.Item(e.ctx, e.item.ID); err != nil { // the item itself is MySQL's
		t.Fatal(err)
	}
	before := e.rt.N.Load()
	const views = 64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range views {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, err := p.ItemState(e.ctx, e.item.ID)
			wantState(t, "concurrent first view", st, err, 10, false, false)
		}()
	}
	close(start)
	wg.Wait()
	if n := e.rt.N.Load() - before; n != 1 {
		t.Errorf("%d concurrent first views: %d Redis reads, want 1", views, n)
	}
	if _, err := s.Purchase(e.ctx, e.item.ID, 7, e.token(t, s, 7)); err != nil {
		t.Fatal(err)
	}
	before = e.rt.N.Load()
	clk.add(99 * time.Millisecond)
	var st ItemState
	var err error
	for range views {
		st, err = p.ItemState(e.ctx, e.item.ID)
	}
	wantState(t, "views within the interval", st, err, 10, false, false)
	if n := e.rt.N.Load() - before; n != 0 {
		t.Errorf("views within the interval: %d Redis reads, want 0", n)
	}
	clk.add(time.Millisecond)
	st, err = p.ItemState(e.ctx, e.item.ID)
	wantState(t, "view after the interval", st, err, 9, false, false)
	st, err = p.ItemState(e.ctx, e.item.ID)
	wantState(t, "the next view", st, err, 9, false, false)
	if n := e.rt.N.Load() - before; n != 1 {
		t.Errorf("two views after the interval: %d Redis reads, want 1", n)
	}
}

// TestProductPageSoldOutExact: once this instance saw the item sold out
// (the stock's flag), its page says so at once, with no Redis read,
// although the count it holds is younger than the interval.
func TestProductPageSoldOutExact(t *testing.T) {
	var next atomic.Int64
	next.Store(1 << 38)
	e, s := newEnv(t, 1, seqIDs(&next))
	clk := newFakeClock()
	p := pageSale(e, e.st, clk)
	st, err := p.ItemState(e.ctx, e.item.ID)
	wantState(t, "before the sale", st, err, 1, false, false)
	if _, err := s.Purchase(e.ctx, e.item.ID, 7, e.token(t, s, 7)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purchase(e.ctx, e.item.ID, 8, e.token(t, s, 8)); err != ErrSoldOut {
		t.Fatalf("second buyer: got %v, want ErrSoldOut", err)
	}
	before := e.rt.N.Load()
	st, err = p.ItemState(e.ctx, e.item.ID)
	wantState(t, "after the sell-out", st, err, 0, true, false)
	if n := e.rt.N.Load() - before; n != 0 {
		t.Errorf("sold-out page: %d Redis reads, want 0", n)
	}
}

// TestProductPageStaleWhileRedisIsDown: with Redis stalled, stopped or
// behind an open breaker, an item whose count this instance read is shown
// with that count, marked stale, never sold out; once a read failed the
// views of that interval wait for nothing; an item it never read is a
// dependency failure (503).
func TestProductPageStaleWhileRedisIsDown(t *testing.T) {
	if testenv.RedisCluster() {
		t.Skip("the stalled client talks to one server; the stock keys are on several")
	}
	const budget = time.Second
	var next atomic.Int64
	next.Store(1 << 38)
	e, _ := newEnv(t, 10, seqIDs(&next))
	never, err := e.orders.CreateItem(e.ctx, order.Item{Name: "never viewed", Stock: 5, Shards: 2, PerUserLimit: 1,
		StartsAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.Warm(e.ctx, never.ID, never.Stock, never.Shards); err != nil {
		t.Fatal(err)
	}
	client := func(addr string) (*redis.Client, *testenv.RoundTrips) {
		breakers := breaker.NewSet(breaker.Config{Failures: 1, OpenFor: time.Minute})
		t.Cleanup(breakers.Close)
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: budget,
			ReadTimeout: budget, WriteTimeout: budget, PoolTimeout: budget, ContextTimeoutEnabled: true})
		t.Cleanup(func() { rdb.Close() })
		breaker.GuardRedis(rdb, breakers.Get("redis"), budget)
		rt := &testenv.RoundTrips{}
		rdb.AddHook(rt) // counts the calls the breaker lets through
		return rdb, rt
	}

	t.Run("stalled, then breaker open", func(t *testing.T) {
		proxy := testenv.NewProxy(t, testenv.RedisAddr())
		rdb, rt := client(proxy.Addr)
		clk := newFakeClock()
		p := pageSale(e, stock.NewStore(rdb, stock.Config{Prefix: e.prefix}), clk)
		st, err := p.ItemState(e.ctx, e.item.ID)
		wantState(t, "healthy", st, err, 10, false, false)
		proxy.Stall()
		clk.add(100 * time.Millisecond)
		st, err = p.ItemState(e.ctx, e.item.ID) // waits out the budget once
		wantState(t, "first view in the stall", st, err, 10, false, true)
		before := rt.N.Load()
		for range 100 {
			st, err = p.ItemState(e.ctx, e.item.ID)
		}
		wantState(t, "the views of that interval", st, err, 10, false, true)
		if n := rt.N.Load() - before; n != 0 {
			t.Errorf("views after a failed read, same interval: %d Redis calls, want 0", n)
		}
		clk.add(100 * time.Millisecond)
		began := time.Now()
		st, err = p.ItemState(e.ctx, e.item.ID) // the breaker is open now
		wantState(t, "next interval, breaker open", st, err, 10, false, true)
		if took := time.Since(began); took >= budget/2 {
			t.Errorf("view with the breaker open took %v, want at once", took)
		}
		_, err = p.ItemState(e.ctx, never.ID)
		if got := ErrorOf(err); err == nil || got == nil || got.Kind != Unavailable || !errors.Is(err, breaker.ErrOpen) {
			t.Errorf("an item never read: got %v, want the open breaker's Unavailable (503)", err)
		}
	})

	t.Run("stopped", func(t *testing.T) {
		rdb, _ := client(stoppedAddr(t))
		clk := newFakeClock()
		p := pageSale(e, stock.NewStore(rdb, stock.Config{Prefix: e.prefix}), clk)
		if _, err := p.Item(e.ctx, e.item.ID); err != nil {
			t.Fatal(err)
		}
		p.counts.known(e.item.ID, 4, clk.now()) // read before Redis stopped
		clk.add(100 * time.Millisecond)
		st, err := p.ItemState(e.ctx, e.item.ID)
		wantState(t, "Redis stopped", st, err, 4, false, true)
		if _, err := p.ItemState(e.ctx, never.ID); err == nil {
			t.Error("an item never read, Redis stopped: got no error, want a dependency failure")
		}
	})
}

// TestProductPageViewDoesNotAllocate: a view served from memory costs no
// allocation (the crowd's views are the most frequent request).
func TestProductPageViewDoesNotAllocate(t *testing.T) {
	var next atomic.Int64
	e, _ := newEnv(t, 10, seqIDs(&next))
	p := pageSale(e, e.st, newFakeClock())
	if st, err := p.ItemState(e.ctx, e.item.ID); err != nil || st.Remaining != 10 {
		t.Fatalf("first view: got %+v, %v", st, err)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = p.ItemState(e.ctx, e.item.ID) }); n != 0 {
		t.Errorf("allocations per view from memory: got %v, want 0", n)
	}
}
