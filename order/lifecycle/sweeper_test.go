package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"seckill/order/lifecycle"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/order"
	"seckill/stock"
)

// lifeEnv is one sale item in real Redis and MySQL, with the relay and the
// writer played by the test (deliver).
type lifeEnv struct {
	ctx    context.Context
	rdb    redis.UniversalClient
	prefix string
	db     *sqlx.DB
	st     *stock.Store
	orders *order.Store
	item   order.Item

	nextID atomic.Int64
	mu     sync.Mutex
	byUser map[int64]int64 // user -> order id of their latest purchase
}

func lifeSetup(t *testing.T, units int64, shards, limit int) *lifeEnv {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	_, db := testenv.MySQL(t)
	db.SetMaxOpenConns(64)
	e := &lifeEnv{
		ctx: context.Background(), rdb: rdb, prefix: prefix, db: db,
		st:     stock.NewStore(rdb, stock.Config{Prefix: prefix}),
		orders: order.NewStore(db),
		byUser: map[int64]int64{},
	}
	e.nextID.Store(1_000_000)
	e.item = e.newItem(t, units, shards, limit)
	return e
}

// newItem creates an item in MySQL and warms its Redis stock.
func (e *lifeEnv) newItem(t *testing.T, units int64, shards, limit int) order.Item {
	t.Helper()
	it, err := e.orders.CreateItem(e.ctx, order.Item{
		Name: "phone", Stock: units, Shards: shards, PerUserLimit: limit,
		StartsAt: time.Now().Add(-time.Hour),
	})
	if err != nil {
		t.Fatalf("create item: %v", err)
	}
	if err := e.st.Warm(e.ctx, it.ID, units, shards); err != nil {
		t.Fatalf("warm: %v", err)
	}
	return it
}

// orderID is a new order id for user's purchase of it, made for the slot
// group of the buyer's home shard as the app's id generator makes them.
func (e *lifeEnv) orderID(it order.Item, user int64) int64 {
	return stock.WithGroup(e.nextID.Add(1)<<22, stock.HomeGroup(it.ID, user, it.Shards))
}

// shardKey names key `name` ("stock", "bought", ...) of an item shard.
// The key names are the stock package's: it is found by the shard's stock
// key, which must exist.
func (e *lifeEnv) shardKey(t *testing.T, item int64, shard int, name string) string {
	t.Helper()
	keys := testenv.Keys(e.ctx, e.rdb, fmt.Sprintf("%s:{*}:%d:%d:stock", e.prefix, item, shard))
	if len(keys) != 1 {
		t.Fatalf("stock key of item %d shard %d: got %q, want one", item, shard, keys)
	}
	return strings.TrimSuffix(keys[0], "stock") + name
}

// buy is one purchase attempt of user through st (an instance).
func (e *lifeEnv) buy(t *testing.T, st *stock.Store, it order.Item, user int64) error {
	t.Helper()
	tok := testenv.TokenID()
	id, err := st.Reserve(e.ctx, stock.Purchase{
		ItemID: it.ID, UserID: user, Shards: it.Shards, Limit: it.PerUserLimit,
		Token: tok, OrderID: e.orderID(it, user),
	})
	if err == nil {
		e.mu.Lock()
		e.byUser[user] = id
		e.mu.Unlock()
	}
	return err
}

// buyAll runs one purchase per user at once, released together, and
// returns each user's result.
func (e *lifeEnv) buyAll(t *testing.T, st *stock.Store, it order.Item, users []int64) map[int64]error {
	t.Helper()
	var mu sync.Mutex
	res := make(map[int64]error, len(users))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			<-start
			err := e.buy(t, st, it, u)
			mu.Lock()
			res[u] = err
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return res
}

// orderOf is the order id of user's latest purchase.
func (e *lifeEnv) orderOf(t *testing.T, user int64) int64 {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.byUser[user]
	if !ok {
		t.Fatalf("user %d bought nothing", user)
	}
	return id
}

// deliver moves every reservation of the item from the outbox into MySQL,
// as the relay and the writer would, with the expiry exp gives it.
func (e *lifeEnv) deliver(t *testing.T, it order.Item, exp func(stock.Reservation) time.Time) int {
	t.Helper()
	res, err := e.st.PendingReservations(e.ctx, it.ID, it.Shards)
	if err != nil {
		t.Fatalf("pending reservations: %v", err)
	}
	orders := make([]order.Order, len(res))
	for i, r := range res {
		orders[i] = order.Order{ID: r.OrderID, ItemID: r.ItemID, UserID: r.UserID, Shard: r.Shard,
			CreatedAt: r.At, ExpiresAt: exp(r)}
	}
	n, refused, err := e.orders.InsertBatch(e.ctx, orders)
	if err != nil {
		t.Fatalf("insert batch: %v", err)
	}
	if len(refused) != 0 {
		t.Fatalf("insert batch: got %d refused by the stock guard, want 0", len(refused))
	}
	byShard := map[int][]string{}
	for _, r := range res {
		byShard[r.Shard] = append(byShard[r.Shard], r.StreamID)
	}
	for sh, ids := range byShard {
		o := stock.OutboxOf(it.ID, sh, it.Shards)
		if err := e.st.EnsureGroup(e.ctx, o, "test"); err != nil {
			t.Fatal(err)
		}
		if err := e.st.AckOutbox(e.ctx, o, "test", ids...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func expiresAt(at time.Time) func(stock.Reservation) time.Time {
	return func(stock.Reservation) time.Time { return at }
}

// balanced reconciles the item and fails the test unless drift and
// oversold are 0.
func (e *lifeEnv) balanced(t *testing.T, l *lifecycle.Ledger, it order.Item, step string) lifecycle.LedgerStats {
	t.Helper()
	s, err := l.Reconcile(e.ctx, it)
	if err != nil {
		t.Fatalf("%s: reconcile: %v", step, err)
	}
	if s.Drift != 0 || s.Oversold != 0 {
		t.Errorf("%s: got drift %d, oversold %d (%+v), want 0 and 0", step, s.Drift, s.Oversold, s)
	}
	return s
}

// marked is the number of the item's orders marked returned in MySQL, the
// last step of a sweep.
func (e *lifeEnv) marked(t *testing.T, l *lifecycle.Ledger, it order.Item) int64 {
	t.Helper()
	s, err := l.Reconcile(e.ctx, it)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return s.Returned
}

func lifeLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// counter reads a counter or gauge from reg; -1 when the series is absent.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func users(from, n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = from + int64(i)
	}
	return out
}

func mustErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// The whole life of a sold-out item: 30 orders paid, 70 expire; the sweeper
// returns exactly 70 units, another instance hears of it and clears its
// sold-out flag, the 70 buyers whose orders expired buy again, and then the
// item is sold out again. The books balance at every step.
func TestLifecycleExpiryRestocksSoldOutItem(t *testing.T) {
	e := lifeSetup(t, 100, 4, 1)
	it := e.item
	reg := prometheus.NewRegistry()
	led, err := lifecycle.NewLedger(e.st, e.orders, reg, lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	e.balanced(t, led, it, "warm")

	for u, err := range e.buyAll(t, e.st, it, users(1, 100)) {
		if err != nil {
			t.Fatalf("buyer %d: got %v, want nil", u, err)
		}
	}
	mustErr(t, "buyer 101 on a sold-out item", e.buy(t, e.st, it, 101), stock.ErrSoldOut)
	if s := e.balanced(t, led, it, "sold out, orders in outbox"); s.Outbox != 100 || s.Remaining != 0 {
		t.Errorf("sold out: got outbox %d remaining %d, want 100 0", s.Outbox, s.Remaining)
	}

	if n := e.deliver(t, it, expiresAt(time.Now().Add(10*time.Minute))); n != 100 {
		t.Fatalf("delivered %d orders, want 100", n)
	}
	e.balanced(t, led, it, "delivered")
	for _, u := range users(1, 30) {
		if _, err := e.orders.Pay(e.ctx, e.orderOf(t, u), u, time.Now()); err != nil {
			t.Fatalf("pay user %d: %v", u, err)
		}
	}
	if s := e.balanced(t, led, it, "30 paid"); s.Paid != 30 || s.Pending != 70 {
		t.Errorf("30 paid: got paid %d pending %d, want 30 70", s.Paid, s.Pending)
	}

	// A second instance learns the item is sold out, then watches.
	other := stock.NewStore(e.rdb, stock.Config{Prefix: e.prefix})
	mustErr(t, "other instance, buyer 102", e.buy(t, other, it, 102), stock.ErrSoldOut)
	wctx, stopWatch := context.WithCancel(e.ctx)
	watched := make(chan error, 1)
	go func() { watched <- other.WatchRestock(wctx) }()
	defer func() {
		stopWatch()
		if err := <-watched; err != nil {
			t.Errorf("watch restock: got %v, want nil", err)
		}
	}()
	// The first subscription clears every flag: wait for it, then learn
	// the flag again, so only the sweeper's notification can clear it.
	waitFor(t, 5*time.Second, "subscription clears the flag", func() bool { return !other.SoldOut(it.ID) })
	mustErr(t, "other instance, buyer 103", e.buy(t, other, it, 103), stock.ErrSoldOut)
	if !other.SoldOut(it.ID) {
		t.Fatal("other instance: got no sold-out flag, want one")
	}

	// Sweep an hour later: every pending order expired.
	sw, err := lifecycle.NewSweeper(e.st, e.orders, lifecycle.SweeperConfig{
		Interval: 20 * time.Millisecond, Batch: 16, LeaseTTL: 2 * time.Second,
		Now: func() time.Time { return time.Now().Add(time.Hour) },
	}, reg, lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSweep := context.WithCancel(e.ctx)
	swept := make(chan error, 1)
	go func() { swept <- sw.Run(sctx) }()
	waitFor(t, 10*time.Second, "70 orders marked returned", func() bool {
		return e.marked(t, led, it) == 70
	})
	stopSweep()
	if err := <-swept; err != nil {
		t.Errorf("sweeper run: got %v, want nil", err)
	}
	if got := counter(t, reg, "seckill_stock_returned_total", nil); got != 70 {
		t.Errorf("seckill_stock_returned_total: got %v, want 70", got)
	}
	if got := counter(t, reg, "seckill_sweeper_cancelled_total", nil); got != 70 {
		t.Errorf("seckill_sweeper_cancelled_total: got %v, want 70", got)
	}
	s := e.balanced(t, led, it, "swept")
	if s.Remaining != 70 || s.Cancelled != 70 || s.Returned != 70 || s.Paid != 30 || s.Pending != 0 {
		t.Errorf("swept: got remaining %d cancelled %d returned %d paid %d pending %d, want 70 70 70 30 0",
			s.Remaining, s.Cancelled, s.Returned, s.Paid, s.Pending)
	}
	waitFor(t, 5*time.Second, "other instance clears its flag", func() bool { return !other.SoldOut(it.ID) })

	// The 70 whose orders expired may buy again, on the other instance.
	for u, err := range e.buyAll(t, other, it, users(31, 70)) {
		if err != nil {
			t.Errorf("rebuyer %d: got %v, want nil", u, err)
		}
	}
	mustErr(t, "paid buyer 1 again", e.buy(t, other, it, 1), stock.ErrAlreadyPurchased)
	mustErr(t, "new buyer after rebuys", e.buy(t, other, it, 2000), stock.ErrSoldOut)
	e.balanced(t, led, it, "rebought")
	e.deliver(t, it, expiresAt(time.Now().Add(10*time.Minute)))
	s = e.balanced(t, led, it, "rebought, delivered")
	if s.Active != 100 || s.Remaining != 0 {
		t.Errorf("rebought: got active %d remaining %d, want 100 0", s.Active, s.Remaining)
	}
	if got, err := e.orders.Item(e.ctx, it.ID); err != nil || got.Sold != 100 {
		t.Errorf("items.sold: got %d (%v), want 100", got.Sold, err)
	}
}

// Sweepers on several instances (own clients, stores, locks) work on the
// same expired orders at once: each unit comes back exactly once.
func TestSweepConcurrentSweepersReturnOnce(t *testing.T) {
	tests := []struct {
		name  string
		lease bool // Run (under the lease) or bare Sweep passes
	}{
		{"bare sweeps", false},
		{"runs under lease", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := lifeSetup(t, 60, 4, 1)
			it := e.item
			led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t))
			if err != nil {
				t.Fatal(err)
			}
			for u, err := range e.buyAll(t, e.st, it, users(1, 60)) {
				if err != nil {
					t.Fatalf("buyer %d: %v", u, err)
				}
			}
			e.deliver(t, it, expiresAt(time.Now().Add(10*time.Minute)))
			for _, u := range users(1, 20) {
				if _, err := e.orders.Pay(e.ctx, e.orderOf(t, u), u, time.Now()); err != nil {
					t.Fatalf("pay: %v", err)
				}
			}

			const n = 4
			regs := make([]*prometheus.Registry, n)
			sweepers := make([]*lifecycle.Sweeper, n)
			for i := range n {
				rdb := testenv.NewRedis(redis.Options{})
				t.Cleanup(func() { rdb.Close() })
				regs[i] = prometheus.NewRegistry()
				sweepers[i], err = lifecycle.NewSweeper(
					stock.NewStore(rdb, stock.Config{Prefix: e.prefix}), order.NewStore(e.db),
					lifecycle.SweeperConfig{Interval: 5 * time.Millisecond, Batch: 3, LeaseTTL: time.Second,
						Now: func() time.Time { return time.Now().Add(time.Hour) }},
					regs[i], lifeLog(t))
				if err != nil {
					t.Fatal(err)
				}
			}
			total := func(name string) float64 {
				var sum float64
				for _, r := range regs {
					sum += counter(t, r, name, nil)
				}
				return sum
			}

			start := make(chan struct{})
			ctx, cancel := context.WithCancel(e.ctx)
			var wg sync.WaitGroup
			for _, sw := range sweepers {
				wg.Go(func() {
					<-start
					if tt.lease {
						if err := sw.Run(ctx); err != nil {
							t.Errorf("run: %v", err)
						}
						return
					}
					for range 3 {
						if _, err := sw.Sweep(ctx); err != nil {
							t.Errorf("sweep: %v", err)
						}
					}
				})
			}
			close(start)
			if tt.lease {
				waitFor(t, 10*time.Second, "40 orders marked returned", func() bool {
					return e.marked(t, led, it) == 40
				})
				cancel() // Run returns only when its ctx is done
			}
			wg.Wait()
			cancel()

			if got := total("seckill_stock_returned_total"); got != 40 {
				t.Errorf("units returned over all sweepers: got %v, want 40", got)
			}
			if got := total("seckill_sweeper_cancelled_total"); got != 40 {
				t.Errorf("orders cancelled over all sweepers: got %v, want 40", got)
			}
			s := e.balanced(t, led, it, "swept")
			if s.Remaining != 40 || s.Returned != 40 || s.Unreturned != 0 {
				t.Errorf("swept: got remaining %d returned %d unreturned %d, want 40 40 0", s.Remaining, s.Returned, s.Unreturned)
			}
			// Every expired buyer's slot was freed exactly once: each can
			// buy one unit again, and that takes the whole stock.
			for u, err := range e.buyAll(t, e.st, it, users(21, 40)) {
				if err != nil {
					t.Errorf("rebuyer %d: got %v, want nil", u, err)
				}
			}
			mustErr(t, "new buyer after rebuys", e.buy(t, e.st, it, 5000), stock.ErrSoldOut)
			e.balanced(t, led, it, "rebought")
		})
	}
}

// Payments and the sweeper race for the same orders, whose window closes
// exactly between the payment's clock and the sweeper's: per order exactly
// one wins, and the stock follows the winner.
func TestSweepRacesPayment(t *testing.T) {
	const buyers = 80
	e := lifeSetup(t, buyers, 4, 1)
	it := e.item
	led, err := lifecycle.NewLedger(e.st, e.orders, nil, lifeLog(t))
	if err != nil {
		t.Fatal(err)
	}
	for u, err := range e.buyAll(t, e.st, it, users(1, buyers)) {
		if err != nil {
			t.Fatalf("buyer %d: %v", u, err)
		}
	}
	exp := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	e.deliver(t, it, expiresAt(exp))
	payAt := exp.Add(-time.Millisecond) // still open for the payer
	sweepAt := exp                      // closed for the sweeper

	sweepers := make([]*lifecycle.Sweeper, 2)
	for i := range sweepers {
		sweepers[i], err = lifecycle.NewSweeper(e.st, order.NewStore(e.db),
			lifecycle.SweeperConfig{Batch: 3, Now: func() time.Time { return sweepAt }}, nil, lifeLog(t))
		if err != nil {
			t.Fatal(err)
		}
	}
	all := users(1, buyers)
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var mu sync.Mutex
	paid := map[int64]error{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	const payers = 8
	for p := range payers {
		wg.Go(func() {
			<-start
			for i := p; i < len(all); i += payers {
				u := all[i]
				_, err := e.orders.Pay(e.ctx, e.orderOf(t, u), u, payAt)
				mu.Lock()
				paid[u] = err
				mu.Unlock()
			}
		})
	}
	for _, sw := range sweepers {
		wg.Go(func() {
			<-start
			for {
				res, err := sw.Sweep(e.ctx)
				if err != nil {
					t.Errorf("sweep: %v", err)
					return
				}
				if res.Cancelled == 0 {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	// Passes that stopped early on a short batch left nothing behind.
	if _, err := sweepers[0].Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}

	var nPaid, nCancelled int64
	for _, u := range users(1, buyers) {
		o, err := e.orders.Order(e.ctx, e.orderOf(t, u))
		if err != nil {
			t.Fatal(err)
		}
		switch o.Status {
		case order.StatusPaid:
			nPaid++
			if paid[u] != nil {
				t.Errorf("user %d: order paid but Pay said %v", u, paid[u])
			}
			if o.StockReturned {
				t.Errorf("user %d: paid order got its stock returned, want kept", u)
			}
		case order.StatusCancelled:
			nCancelled++
			if !errors.Is(paid[u], order.ErrCancelled) {
				t.Errorf("user %d: order cancelled, Pay got %v, want ErrCancelled", u, paid[u])
			}
			if !o.StockReturned {
				t.Errorf("user %d: cancelled order not returned, want returned", u)
			}
		default:
			t.Errorf("user %d: order %s, want paid or cancelled", u, o.Status)
		}
	}
	t.Logf("payment won %d, expiry won %d", nPaid, nCancelled)
	s := e.balanced(t, led, it, "raced")
	if s.Remaining != nCancelled || s.Paid != nPaid || nPaid+nCancelled != buyers {
		t.Errorf("raced: got remaining %d paid %d (statuses: %d paid, %d cancelled), want remaining = cancelled, all %d settled",
			s.Remaining, s.Paid, nPaid, nCancelled, buyers)
	}
}

// waitFor fails the test unless cond holds within d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
