package sale

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/order"
	"seckill/stock"
)

// stoppedAddr is an address nothing listens on (a stopped server).
func stoppedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// unreachableMySQL is an order store whose MySQL is at addr, with short
// dial and read timeouts.
func unreachableMySQL(t *testing.T, addr string) *order.Store {
	t.Helper()
	return unreachableMySQLWithin(t, addr, 300*time.Millisecond)
}

// unreachableMySQLWithin is unreachableMySQL with the driver's dial, read
// and write timeouts set to d.
func unreachableMySQLWithin(t *testing.T, addr string, d time.Duration) *order.Store {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName, cfg.ParseTime = "root", "tcp", addr, "seckill", true
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = d, d, d
	db, err := sqlx.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return order.NewStore(db)
}

// TestOrderFromRedisWhenMySQLIsDown: with MySQL stopped or partitioned, an
// order Redis accepted reads as Redis knows it (pending, marked stale),
// and one Redis does not know for this buyer is a dependency failure
// (503), never "not found".
func TestOrderFromRedisWhenMySQLIsDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(*testing.T) string
	}{{"stopped", stoppedAddr}, {"partitioned", func(t *testing.T) string { return testenv.Blackhole(t) }}} {
		t.Run(tc.name, func(t *testing.T) {
			var next int64 = 1 << 38
			e, s := newEnv(t, 10, idsFunc(func(g int) (int64, error) { next++; return stock.WithGroup(next<<22, g), nil }))
			id, err := s.Purchase(e.ctx, e.item.ID, 7, e.token(t, s, 7))
			if err != nil {
				t.Fatal(err)
			}
			down := New(Config{Stock: e.st, Orders: unreachableMySQL(t, tc.addr(t))})
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			defer cancel()
			o, err := down.Order(ctx, id, 7)
			if err != nil || o.ID != id || o.ItemID != e.item.ID || o.Status != order.StatusPending || !o.Stale ||
				o.InOutbox || o.CreatedAt.IsZero() || o.ExpiresAt != nil {
				t.Fatalf("got %+v, %v; want pending from Redis, marked stale", o, err)
			}
			for _, c := range []struct {
				what     string
				id, user int64
			}{{"another user's order", id, 8}, {"an id Redis does not know", stock.WithGroup((next+100)<<22, 0), 7}} {
				_, err := down.Order(ctx, c.id, c.user)
				if err == nil || ErrorOf(err) != nil {
					t.Errorf("%s: got %v, want a dependency failure (503), no outcome", c.what, err)
				}
			}
		})
	}
}

// TestOrderFromMySQLWhenRedisIsDown: an order MySQL has reads from MySQL
// whether Redis is stopped or partitioned, not stale.
func TestOrderFromMySQLWhenRedisIsDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(*testing.T) string
	}{{"stopped", stoppedAddr}, {"partitioned", func(t *testing.T) string { return testenv.Blackhole(t) }}} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEnv(t, 10, idsFunc(func(g int) (int64, error) { return 0, nil }))
			now := time.Now().UTC().Truncate(time.Second)
			id := stock.WithGroup(777<<22, stock.HomeGroup(e.item.ID, 7, e.item.Shards))
			if _, err := e.orders.InsertOrders(e.ctx, []order.Order{{ID: id, ItemID: e.item.ID, UserID: 7,
				CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}}); err != nil {
				t.Fatal(err)
			}
			rdb := redis.NewClient(&redis.Options{Addr: tc.addr(t), MaxRetries: -1,
				DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
			t.Cleanup(func() { rdb.Close() })
			s := New(Config{Stock: stock.NewStore(rdb, stock.Config{}), Orders: e.orders})
			o, err := s.Order(e.ctx, id, 7)
			if err != nil || o.ID != id || o.Status != order.StatusPending || o.Stale || o.ExpiresAt == nil {
				t.Fatalf("got %+v, %v; want the stored order", o, err)
			}
			if _, err := s.Order(e.ctx, id, 8); err == nil || ErrorOf(err) != nil {
				t.Errorf("another user's order, Redis down: got %v, want a dependency failure (503)", err)
			}
		})
	}
}

// TestOrderReadBudget: with MySQL partitioned and the driver's timeouts
// long (as in production: 10 s), an order's status is still answered from
// Redis: its MySQL read gives up after Config.OrderReadBudget, well before
// the request's own deadline. Without the budget the read outlasts the
// request, and the answer is an error.
func TestOrderReadBudget(t *testing.T) {
	var next int64 = 1 << 38
	e, s := newEnv(t, 10, idsFunc(func(g int) (int64, error) { next++; return stock.WithGroup(next<<22, g), nil }))
	id, err := s.Purchase(e.ctx, e.item.ID, 7, e.token(t, s, 7))
	if err != nil {
		t.Fatal(err)
	}
	down := New(Config{Stock: e.st, Orders: unreachableMySQLWithin(t, testenv.Blackhole(t), 30*time.Second),
		OrderReadBudget: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	o, err := down.Order(ctx, id, 7)
	if err != nil || o.Status != order.StatusPending || !o.Stale {
		t.Fatalf("got %+v, %v; want pending from Redis, marked stale, before the request's deadline", o, err)
	}
}
