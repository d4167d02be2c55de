package embedded

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/migrations"
	"seckill/order"
	"seckill/stock"
)

// startRedis starts an embedded Redis for the test and returns a client.
func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	addr, stop, err := Redis()
	if err != nil {
		t.Fatalf("Redis: %v", err)
	}
	t.Cleanup(stop)
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// oid is order id n made for the slot group of the buyer's home shard, as
// the app's id generator makes them (stock.HomeGroup).
func oid(item, user int64, shards int, n int64) int64 {
	return stock.WithGroup(n<<22, stock.HomeGroup(item, user, shards))
}

// findKey is the one key matching pattern (SCAN): key names are the stock
// package's own.
func findKey(t *testing.T, rdb *redis.Client, pattern string) string {
	t.Helper()
	keys := testenv.Keys(context.Background(), rdb, pattern)
	if len(keys) != 1 {
		t.Fatalf("keys %s: got %q, want one", pattern, keys)
	}
	return keys[0]
}

// reserveAll issues a token to every user, then releases all purchases at
// once and returns each user's order id or error.
func reserveAll(t *testing.T, s *stock.Store, item int64, shards int, users []int64) (map[int64]int64, map[int64]error, map[int64]string) {
	t.Helper()
	ctx := context.Background()
	tokens := map[int64]string{}
	for _, u := range users {
		tok := testenv.TokenID()
		tokens[u] = tok
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		ids  = map[int64]int64{}
		errs = map[int64]error{}
	)
	start := make(chan struct{})
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id, err := s.Reserve(ctx, stock.Purchase{
				ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: tokens[u], OrderID: oid(item, u, shards, 1000+u),
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[u] = err
			} else {
				ids[u] = id
			}
		}()
	}
	close(start)
	wg.Wait()
	return ids, errs, tokens
}

// TestRedisStock runs the project's stock engine, Lua scripts included, on
// the embedded Redis.
func TestRedisStock(t *testing.T) {
	ctx := context.Background()
	rdb := startRedis(t)
	s := stock.NewStore(rdb, stock.Config{Prefix: "t"})
	const item, total, shards = 1, 10, 4
	if err := s.Warm(ctx, item, total, shards); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	users := make([]int64, 30)
	for i := range users {
		users[i] = int64(i + 1)
	}
	ids, errs, tokens := reserveAll(t, s, item, shards, users)

	t.Run("exactly stock succeed", func(t *testing.T) {
		if got := len(ids); got != total {
			t.Errorf("successful reservations: got %d, want %d", got, total)
		}
		for u, err := range errs {
			if !errors.Is(err, stock.ErrSoldOut) {
				t.Errorf("user %d: got error %v, want %v", u, err, stock.ErrSoldOut)
			}
		}
		for u, id := range ids {
			if want := oid(item, u, shards, 1000+u); id != want {
				t.Errorf("user %d order id: got %d, want %d", u, id, want)
			}
		}
		rem, err := s.Remaining(ctx, item, shards)
		if err != nil {
			t.Fatalf("Remaining: %v", err)
		}
		if want := []int64{0, 0, 0, 0}; !slices.Equal(rem, want) {
			t.Errorf("remaining: got %v, want %v", rem, want)
		}
		if !s.SoldOut(item) {
			t.Errorf("SoldOut(%d): got false, want true", item)
		}
	})

	t.Run("outbox holds every reservation", func(t *testing.T) {
		res, err := s.PendingReservations(ctx, item, shards)
		if err != nil {
			t.Fatalf("PendingReservations: %v", err)
		}
		if len(res) != total {
			t.Fatalf("reservations: got %d, want %d", len(res), total)
		}
		for _, r := range res {
			if ids[r.UserID] != r.OrderID {
				t.Errorf("reservation of user %d: got order %d, want %d", r.UserID, r.OrderID, ids[r.UserID])
			}
			if r.Home != stock.HomeShard(r.UserID, shards) {
				t.Errorf("reservation of user %d: got home %d, want %d", r.UserID, r.Home, stock.HomeShard(r.UserID, shards))
			}
		}
	})

	t.Run("replay returns the same order", func(t *testing.T) {
		// A second instance has no local sold-out flag, so the replay
		// reaches the script and its stored answer.
		other := stock.NewStore(rdb, stock.Config{Prefix: "t"})
		for u, want := range ids {
			got, err := other.Reserve(ctx, stock.Purchase{
				ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: tokens[u], OrderID: oid(item, u, shards, 9999),
			})
			if err != nil || got != want {
				t.Errorf("replay of user %d: got (%d, %v), want (%d, nil)", u, got, err, want)
			}
		}
	})

	t.Run("per-user limit", func(t *testing.T) {
		other := stock.NewStore(rdb, stock.Config{Prefix: "t"})
		for u := range ids {
			tok := testenv.TokenID()
			_, err := other.Reserve(ctx, stock.Purchase{
				ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: tok, OrderID: oid(item, u, shards, 5000+u),
			})
			if !errors.Is(err, stock.ErrAlreadyPurchased) {
				t.Errorf("second purchase of user %d: got %v, want %v", u, err, stock.ErrAlreadyPurchased)
			}
			break
		}
	})

	t.Run("outbox group read claim ack", func(t *testing.T) {
		const group = "relay"
		var got []int64
		for sh := range shards {
			o := stock.OutboxOf(item, sh, shards)
			// Twice: the second call meets BUSYGROUP and must not fail.
			for range 2 {
				if err := s.EnsureGroup(ctx, o, group); err != nil {
					t.Fatalf("EnsureGroup(shard %d): %v", sh, err)
				}
			}
			read, err := s.ReadOutbox(ctx, o, group, "a", 100)
			if err != nil {
				t.Fatalf("ReadOutbox(shard %d): %v", sh, err)
			}
			again, err := s.ReadOutbox(ctx, o, group, "a", 100)
			if err != nil {
				t.Fatalf("ReadOutbox again(shard %d): %v", sh, err)
			}
			if len(again) != 0 {
				t.Errorf("second read of shard %d: got %d entries, want 0", sh, len(again))
			}
			// Just delivered: not idle long enough to be claimed (a minute,
			// so that no pause of a busy machine gets there).
			early, err := s.ClaimOutbox(ctx, o, group, "b", time.Minute, 100)
			if err != nil {
				t.Fatalf("ClaimOutbox(shard %d): %v", sh, err)
			}
			if len(early) != 0 {
				t.Errorf("early claim of shard %d: got %d entries, want 0", sh, len(early))
			}
			// The idle time is the input here: at least 60ms have passed
			// once Sleep returns, however busy the machine.
			time.Sleep(60 * time.Millisecond)
			claimedAt := time.Now()
			claimed, err := s.ClaimOutbox(ctx, o, group, "b", 50*time.Millisecond, 100)
			if err != nil {
				t.Fatalf("ClaimOutbox(shard %d): %v", sh, err)
			}
			if len(claimed) != len(read) {
				t.Errorf("claim of shard %d: got %d entries, want %d", sh, len(claimed), len(read))
			}
			// The claim restarted the idle time: every entry is b's, idle
			// at most since the claim began (had it run on from the read,
			// it would be 60ms more). Measured after the answer, so a slow
			// round trip only widens the bound.
			pend, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
				Stream: findKey(t, rdb, fmt.Sprintf("t:{*}:%d:%d:outbox", item, sh)), Group: group, Start: "-", End: "+", Count: 100,
			}).Result()
			bound := time.Since(claimedAt)
			if err != nil {
				t.Fatalf("XPENDING(shard %d): %v", sh, err)
			}
			if len(pend) != len(read) {
				t.Errorf("pending of shard %d after the claim: got %d entries, want %d", sh, len(pend), len(read))
			}
			for _, p := range pend {
				if p.Consumer != "b" || p.Idle > bound || p.RetryCount != 2 {
					t.Errorf("pending entry %s of shard %d after the claim: got consumer %q idle %v deliveries %d, want b, at most %v, 2",
						p.ID, sh, p.Consumer, p.Idle, p.RetryCount, bound)
				}
			}
			ackIDs := make([]string, 0, len(claimed))
			for _, r := range claimed {
				ackIDs = append(ackIDs, r.StreamID)
				got = append(got, r.OrderID)
			}
			if err := s.AckOutbox(ctx, o, group, ackIDs...); err != nil {
				t.Fatalf("AckOutbox(shard %d): %v", sh, err)
			}
			n, err := s.OutboxLen(ctx, o)
			if err != nil {
				t.Fatalf("OutboxLen(shard %d): %v", sh, err)
			}
			if n != 0 {
				t.Errorf("outbox of shard %d after ack: got %d entries, want 0", sh, n)
			}
			// Idle long enough to be claimed, were they still pending.
			time.Sleep(60 * time.Millisecond)
			left, err := s.ClaimOutbox(ctx, o, group, "b", 50*time.Millisecond, 100)
			if err != nil {
				t.Fatalf("ClaimOutbox after ack(shard %d): %v", sh, err)
			}
			if len(left) != 0 {
				t.Errorf("claim of shard %d after ack: got %d entries, want 0", sh, len(left))
			}
		}
		var want []int64
		for _, id := range ids {
			want = append(want, id)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("relayed order ids: got %v, want %v", got, want)
		}
	})
}

// TestRedisFallThrough: buyers whose home shard is empty get their unit from
// another shard, and the item is sold out only when every shard is empty.
func TestRedisFallThrough(t *testing.T) {
	ctx := context.Background()
	rdb := startRedis(t)
	s := stock.NewStore(rdb, stock.Config{Prefix: "t"})
	const item, shards = 2, 4
	// Split(2, 4) = [1 1 0 0]: buyers homed on shards 2 and 3 must fall through.
	if err := s.Warm(ctx, item, 2, shards); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	var users []int64
	for u := int64(1); len(users) < 3; u++ {
		if stock.HomeShard(u, shards) >= 2 {
			users = append(users, u)
		}
	}
	for i, u := range users {
		tok := testenv.TokenID()
		want := oid(item, u, shards, 100+u)
		id, err := s.Reserve(ctx, stock.Purchase{ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: tok, OrderID: want})
		if i < 2 {
			if err != nil || id != want {
				t.Errorf("buyer %d (home %d): got (%d, %v), want (%d, nil)", u, stock.HomeShard(u, shards), id, err, want)
			}
			continue
		}
		if !errors.Is(err, stock.ErrSoldOut) {
			t.Errorf("buyer %d after stock ran out: got %v, want %v", u, err, stock.ErrSoldOut)
		}
	}
	res, err := s.PendingReservations(ctx, item, shards)
	if err != nil {
		t.Fatalf("PendingReservations: %v", err)
	}
	if len(res) != 2 {
		t.Fatalf("reservations: got %d, want 2", len(res))
	}
	for _, r := range res {
		if r.Shard == r.Home || r.Shard > 1 {
			t.Errorf("reservation of order %d: got shard %d home %d, want a shard in {0,1} other than home", r.OrderID, r.Shard, r.Home)
		}
	}
	if !s.SoldOut(item) {
		t.Errorf("SoldOut(%d): got false, want true", item)
	}
}

// TestRedisTTL: keys expire by the wall clock, so a used purchase token's
// answer goes once its time is up.
func TestRedisTTL(t *testing.T) {
	ctx := context.Background()
	rdb := startRedis(t)
	// go-redis rounds EXPIRE below a second up to one second.
	s := stock.NewStore(rdb, stock.Config{Prefix: "t", ResultTTL: time.Second})
	if err := s.Warm(ctx, 3, 5, 1); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	tok := testenv.TokenID()
	p := stock.Purchase{ItemID: 3, UserID: 7, Shards: 1, Limit: 1, Token: tok, OrderID: oid(3, 7, 1, 1)}
	if _, err := s.Reserve(ctx, p); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	// The wall clock running the TTL down is the input: wait for the
	// token key to go (bounded), not for a fixed time.
	key := findKey(t, rdb, fmt.Sprintf("t:{*}:3:%d:tok:%s", stock.HomeShard(7, 1), tok))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, err := rdb.Exists(ctx, key).Result()
		if err != nil {
			t.Fatalf("EXISTS %s: %v", key, err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token %s still there 10s after a 1s TTL", key)
		}
	}
	if _, err := s.Answer(ctx, p); !errors.Is(err, stock.ErrTokenInvalid) {
		t.Errorf("Answer once the answer expired: got %v, want %v", err, stock.ErrTokenInvalid)
	}
}

// openEmbeddedMySQL starts an embedded MySQL, migrates it through the
// production driver and returns its DSN and a handle.
func openEmbeddedMySQL(t *testing.T) (string, *sqlx.DB) {
	t.Helper()
	dsn, stop, err := MySQL("db")
	if err != nil {
		t.Fatalf("MySQL: %v", err)
	}
	t.Cleanup(stop)
	db, err := sqlx.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := migrations.Up(context.Background(), db.DB); err != nil {
		t.Fatalf("migrations.Up: %v", err)
	}
	return dsn, db
}

// mysqlBackends runs each check on the embedded server and on the machine's
// MariaDB: the MariaDB run proves the expectation, the embedded one proves
// dev mode matches it.
var mysqlBackends = []struct {
	name string
	open func(t *testing.T) (string, *sqlx.DB)
	// serial: transactions run one at a time, so a statement on another
	// connection waits for an open transaction instead of reading a
	// snapshot (TestMySQLTransactionsSerialize covers that).
	serial bool
}{
	{"embedded", openEmbeddedMySQL, true},
	{"mariadb", func(t *testing.T) (string, *sqlx.DB) { return testenv.MySQL(t) }, false},
}

func TestMySQLDSN(t *testing.T) {
	dsn, stop, err := MySQL("shop")
	if err != nil {
		t.Fatalf("MySQL: %v", err)
	}
	defer stop()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("ParseDSN(%q): %v", dsn, err)
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	if cfg.User != "root" || cfg.Passwd != "" || cfg.DBName != "shop" || !cfg.ParseTime || host != "127.0.0.1" {
		t.Errorf("dsn %q: got user %q pass %q db %q parseTime %v host %q, want root, empty, shop, true, 127.0.0.1",
			dsn, cfg.User, cfg.Passwd, cfg.DBName, cfg.ParseTime, host)
	}
	if _, _, err := MySQL(""); err == nil {
		t.Errorf("MySQL(\"\"): got nil error, want one")
	}
}

func TestMySQLBehaviour(t *testing.T) {
	for _, b := range mysqlBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn, db := b.open(t)

			t.Run("migrate twice", func(t *testing.T) {
				if err := migrations.Up(ctx, db.DB); err != nil {
					t.Fatalf("second migrations.Up: %v", err)
				}
				for _, table := range []string{"items", "orders"} {
					var n int
					if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM "+table); err != nil {
						t.Errorf("count %s: %v", table, err)
					}
				}
			})

			newItem := func(t *testing.T, stock int64) int64 {
				t.Helper()
				res, err := db.ExecContext(ctx,
					"INSERT INTO items (name, stock, shards, per_user_limit, starts_at, created_at) VALUES (?, ?, 4, 1, ?, ?)",
					"it", stock, time.Now().UTC(), time.Now().UTC())
				if err != nil {
					t.Fatalf("insert item: %v", err)
				}
				id, err := res.LastInsertId()
				if err != nil || id <= 0 {
					t.Fatalf("LastInsertId: got (%d, %v), want a positive id", id, err)
				}
				return id
			}
			insertOrder := func(ctx context.Context, ex sqlx.ExecerContext, orderID, itemID int64) (int64, error) {
				now := time.Now().UTC()
				res, err := ex.ExecContext(ctx,
					"INSERT IGNORE INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (?, ?, ?, 0, ?, ?)",
					orderID, itemID, orderID, now, now.Add(time.Minute))
				if err != nil {
					return 0, err
				}
				return res.RowsAffected()
			}

			t.Run("auto increment ids", func(t *testing.T) {
				a, b := newItem(t, 1), newItem(t, 1)
				if b <= a {
					t.Errorf("second item id: got %d, want more than %d", b, a)
				}
			})

			t.Run("insert ignore", func(t *testing.T) {
				item := newItem(t, 10)
				for i, want := range []int64{1, 0} {
					n, err := insertOrder(ctx, db, 1, item)
					if err != nil || n != want {
						t.Errorf("insert %d of order 1: got (%d, %v), want (%d, nil)", i+1, n, err, want)
					}
				}
				now := time.Now().UTC()
				res, err := db.ExecContext(ctx,
					`INSERT IGNORE INTO orders (order_id, item_id, user_id, shard, created_at, expires_at)
					 VALUES (1, ?, 1, 0, ?, ?), (2, ?, 2, 0, ?, ?), (3, ?, 3, 0, ?, ?)`,
					item, now, now, item, now, now, item, now, now)
				if err != nil {
					t.Fatalf("multi-row insert ignore: %v", err)
				}
				if n, err := res.RowsAffected(); err != nil || n != 2 {
					t.Errorf("multi-row insert ignore with one duplicate: got (%d, %v) rows, want (2, nil)", n, err)
				}
				_, err = db.ExecContext(ctx,
					"INSERT INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (1, ?, 1, 0, ?, ?)",
					item, now, now)
				var me *mysql.MySQLError
				if !errors.As(err, &me) || me.Number != 1062 {
					t.Errorf("plain insert of a duplicate: got %v, want MySQL error 1062", err)
				}
			})

			t.Run("transactions", func(t *testing.T) {
				item := newItem(t, 10)
				for _, tc := range []struct {
					name   string
					commit bool
					want   int
				}{{"rollback", false, 0}, {"commit", true, 1}} {
					tx, err := db.BeginTxx(ctx, nil)
					if err != nil {
						t.Fatalf("begin: %v", err)
					}
					defer tx.Rollback() // no-op once finished; frees the gate on failure
					if _, err := insertOrder(ctx, tx, 100, item); err != nil {
						t.Fatalf("%s: insert: %v", tc.name, err)
					}
					if _, err := tx.ExecContext(ctx, "UPDATE items SET sold = sold + 1 WHERE id = ?", item); err != nil {
						t.Fatalf("%s: update: %v", tc.name, err)
					}
					if !b.serial {
						// Not committed yet: another connection must not see it.
						var seen int
						if err := db.GetContext(ctx, &seen, "SELECT COUNT(*) FROM orders WHERE order_id = 100"); err != nil {
							t.Fatalf("count: %v", err)
						}
						if seen != 0 {
							t.Errorf("%s: uncommitted row seen by another connection: got %d, want 0", tc.name, seen)
						}
					}
					var inTx int
					if err := tx.GetContext(ctx, &inTx, "SELECT COUNT(*) FROM orders WHERE order_id = 100"); err != nil {
						t.Fatalf("count in tx: %v", err)
					}
					if inTx != 1 {
						t.Errorf("%s: own uncommitted row inside the transaction: got %d, want 1", tc.name, inTx)
					}
					if tc.commit {
						err = tx.Commit()
					} else {
						err = tx.Rollback()
					}
					if err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
					var n, sold int
					if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM orders WHERE order_id = 100"); err != nil {
						t.Fatalf("count: %v", err)
					}
					if err := db.GetContext(ctx, &sold, "SELECT sold FROM items WHERE id = ?", item); err != nil {
						t.Fatalf("sold: %v", err)
					}
					if n != tc.want || sold != tc.want {
						t.Errorf("after %s: got %d rows sold %d, want %d and %d", tc.name, n, sold, tc.want, tc.want)
					}
				}
			})

			t.Run("stock guard", func(t *testing.T) {
				item := newItem(t, 10)
				for _, tc := range []struct {
					add  int64
					want int64 // rows affected
					sold int64
				}{{7, 1, 7}, {4, 0, 7}, {3, 1, 10}, {1, 0, 10}} {
					res, err := db.ExecContext(ctx, "UPDATE items SET sold = sold + ? WHERE id = ? AND sold + ? <= stock", tc.add, item, tc.add)
					if err != nil {
						t.Fatalf("guard +%d: %v", tc.add, err)
					}
					n, _ := res.RowsAffected()
					var sold int64
					if err := db.GetContext(ctx, &sold, "SELECT sold FROM items WHERE id = ?", item); err != nil {
						t.Fatalf("sold: %v", err)
					}
					if n != tc.want || sold != tc.sold {
						t.Errorf("guard +%d: got %d rows, sold %d; want %d rows, sold %d", tc.add, n, sold, tc.want, tc.sold)
					}
				}
			})

			t.Run("stock guard concurrent autocommit", func(t *testing.T) {
				const stock, buyers = 10, 30
				item := newItem(t, stock)
				var (
					wg   sync.WaitGroup
					ok   atomic.Int64
					errs atomic.Int64
				)
				start := make(chan struct{})
				for range buyers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						res, err := db.ExecContext(ctx, "UPDATE items SET sold = sold + 1 WHERE id = ? AND sold + 1 <= stock", item)
						if err != nil {
							errs.Add(1)
							return
						}
						if n, _ := res.RowsAffected(); n == 1 {
							ok.Add(1)
						}
					}()
				}
				close(start)
				wg.Wait()
				var sold int64
				if err := db.GetContext(ctx, &sold, "SELECT sold FROM items WHERE id = ?", item); err != nil {
					t.Fatalf("sold: %v", err)
				}
				if ok.Load() != stock || sold != stock || errs.Load() != 0 {
					t.Errorf("got %d updates, sold %d, %d errors; want %d, %d, 0", ok.Load(), sold, errs.Load(), stock, stock)
				}
			})

			t.Run("stock guard concurrent transactions", func(t *testing.T) {
				// The consumer's pattern: insert the order, then the guard,
				// in one transaction; roll back if the guard refuses.
				const stock, buyers = 10, 30
				item := newItem(t, stock)
				var (
					wg      sync.WaitGroup
					mu      sync.Mutex
					ok      int
					errList []error
				)
				start := make(chan struct{})
				for i := range buyers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						err := func() error {
							tx, err := db.BeginTxx(ctx, nil)
							if err != nil {
								return err
							}
							defer tx.Rollback()
							if _, err := insertOrder(ctx, tx, int64(10000+i), item); err != nil {
								return fmt.Errorf("insert: %w", err)
							}
							res, err := tx.ExecContext(ctx, "UPDATE items SET sold = sold + 1 WHERE id = ? AND sold + 1 <= stock", item)
							if err != nil {
								return fmt.Errorf("guard: %w", err)
							}
							if n, _ := res.RowsAffected(); n == 0 {
								return nil // refused: roll back
							}
							if err := tx.Commit(); err != nil {
								return fmt.Errorf("commit: %w", err)
							}
							mu.Lock()
							ok++
							mu.Unlock()
							return nil
						}()
						if err != nil {
							mu.Lock()
							errList = append(errList, err)
							mu.Unlock()
						}
					}()
				}
				close(start)
				wg.Wait()
				var orders, sold int
				if err := db.GetContext(ctx, &orders, "SELECT COUNT(*) FROM orders WHERE item_id = ?", item); err != nil {
					t.Fatalf("count: %v", err)
				}
				if err := db.GetContext(ctx, &sold, "SELECT sold FROM items WHERE id = ?", item); err != nil {
					t.Fatalf("sold: %v", err)
				}
				t.Logf("%d committed, %d errors (first: %v)", ok, len(errList), first(errList))
				if ok > stock || orders != ok || sold != ok {
					t.Errorf("got %d commits, %d orders, sold %d; want at most %d commits, orders = sold = commits",
						ok, orders, sold, stock)
				}
				if len(errList) == 0 && ok != stock {
					t.Errorf("commits with no errors: got %d, want %d", ok, stock)
				}
			})

			t.Run("datetime(3) round trip", func(t *testing.T) {
				item := newItem(t, 1)
				base := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
				for i, tc := range []struct {
					name string
					in   time.Time
					want time.Time
				}{
					{"whole ms", base.Add(123 * time.Millisecond), base.Add(123 * time.Millisecond)},
					{"zero ms", base, base},
					{"other zone", base.Add(5 * time.Millisecond).In(time.FixedZone("x", 3600)), base.Add(5 * time.Millisecond)},
				} {
					id := int64(20000 + i)
					_, err := db.ExecContext(ctx,
						"INSERT INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (?, ?, 1, 0, ?, ?)",
						id, item, tc.in, tc.in)
					if err != nil {
						t.Fatalf("%s: insert: %v", tc.name, err)
					}
					var got struct {
						CreatedAt time.Time  `db:"created_at"`
						PaidAt    *time.Time `db:"paid_at"`
					}
					if err := db.GetContext(ctx, &got, "SELECT created_at, paid_at FROM orders WHERE order_id = ?", id); err != nil {
						t.Fatalf("%s: select: %v", tc.name, err)
					}
					if !got.CreatedAt.Equal(tc.want) || got.PaidAt != nil {
						t.Errorf("%s: got %v, paid_at %v; want %v, nil", tc.name, got.CreatedAt, got.PaidAt, tc.want)
					}
					var n int
					if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM orders WHERE order_id = ? AND created_at <= ?", id, tc.want); err != nil {
						t.Fatalf("%s: compare: %v", tc.name, err)
					}
					if n != 1 {
						t.Errorf("%s: rows with created_at <= %v: got %d, want 1", tc.name, tc.want, n)
					}
				}
			})

			t.Run("indexes after rollback", func(t *testing.T) {
				// A rolled-back insert of a lower key than a committed
				// row, and an autocommit insert that fails half-way: every
				// index must still find the committed row.
				item := newItem(t, 10)
				base := int64(30000 + item*100)
				if _, err := insertOrder(ctx, db, base+50, item); err != nil {
					t.Fatalf("insert: %v", err)
				}
				tx, err := db.BeginTxx(ctx, nil)
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				if _, err := insertOrder(ctx, tx, base+10, item); err != nil {
					t.Fatalf("insert in tx: %v", err)
				}
				if _, err := tx.ExecContext(ctx, "UPDATE orders SET status = 'paid' WHERE order_id = ?", base+50); err != nil {
					t.Fatalf("update in tx: %v", err)
				}
				if err := tx.Rollback(); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				now := time.Now().UTC()
				_, err = db.ExecContext(ctx,
					`INSERT INTO orders (order_id, item_id, user_id, shard, created_at, expires_at)
					 VALUES (?, ?, 1, 0, ?, ?), (?, ?, 1, 0, ?, ?)`,
					base+20, item, now, now, base+50, item, now, now)
				if err == nil {
					t.Fatalf("insert of a duplicate: got nil error, want one")
				}
				// Each query is answered through a different index; none
				// names order_id, or the primary key would answer it.
				var exp time.Time
				if err := db.GetContext(ctx, &exp, "SELECT expires_at FROM orders WHERE order_id = ?", base+50); err != nil {
					t.Fatalf("expires_at: %v", err)
				}
				for _, tc := range []struct {
					q    string
					args []any
				}{
					{"SELECT COUNT(*) FROM orders WHERE item_id = ?", []any{item}},
					{"SELECT COUNT(*) FROM orders WHERE item_id = ? AND status = 'pending'", []any{item}},
					{"SELECT COUNT(*) FROM orders WHERE status = 'pending' AND expires_at = ?", []any{exp}},
					{"SELECT COUNT(*) FROM orders WHERE user_id = ?", []any{base + 50}},
				} {
					var n int
					if err := db.GetContext(ctx, &n, tc.q, tc.args...); err != nil {
						t.Fatalf("%s: %v", tc.q, err)
					}
					if n != 1 {
						t.Errorf("%s %v: got %d rows, want 1", tc.q, tc.args, n)
					}
				}
			})

			t.Run("unique index after rollback", func(t *testing.T) {
				stmts := []string{
					`CREATE TABLE uq (id BIGINT NOT NULL, code BIGINT NOT NULL, grp BIGINT NOT NULL,
					  PRIMARY KEY (id), UNIQUE KEY ux_code (code), KEY kx_grp (grp))`,
					"INSERT INTO uq VALUES (50, 500, 1)",
				}
				for _, q := range stmts {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				tx, err := db.BeginTxx(ctx, nil)
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO uq VALUES (10, 100, 1)"); err != nil {
					t.Fatalf("insert in tx: %v", err)
				}
				if err := tx.Rollback(); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				_, err = db.ExecContext(ctx, "INSERT INTO uq VALUES (60, 500, 1)")
				var me *mysql.MySQLError
				if !errors.As(err, &me) || me.Number != 1062 {
					t.Errorf("insert of a duplicate unique code: got %v, want MySQL error 1062", err)
				}
				for _, q := range []string{
					"SELECT COUNT(*) FROM uq WHERE code = 500",
					"SELECT COUNT(*) FROM uq WHERE grp = 1",
				} {
					var n int
					if err := db.GetContext(ctx, &n, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
					if n != 1 {
						t.Errorf("%s: got %d rows, want 1", q, n)
					}
				}
			})

			t.Run("datetime(3) sub-millisecond", func(t *testing.T) {
				item := newItem(t, 1)
				in := time.Date(2031, 5, 6, 7, 8, 9, 999_600_000, time.UTC)
				id := int64(40000 + item)
				_, err := db.ExecContext(ctx,
					"INSERT INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (?, ?, 1, 0, ?, ?)",
					id, item, in, in)
				if err != nil {
					t.Fatalf("insert: %v", err)
				}
				var got time.Time
				if err := db.GetContext(ctx, &got, "SELECT created_at FROM orders WHERE order_id = ?", id); err != nil {
					t.Fatalf("select: %v", err)
				}
				// MariaDB truncates; the embedded server rounds, like
				// MySQL 8. Truncate in Go before writing to get the same
				// value from both.
				want := in.Truncate(time.Millisecond)
				if b.serial {
					want = in.Round(time.Millisecond)
				}
				if !got.Equal(want) {
					t.Errorf("stored %v: got %v, want %v", in, got, want)
				}
			})

			t.Run("new connection sees the schema", func(t *testing.T) {
				db2, err := sql.Open("mysql", dsn)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer db2.Close()
				var n int
				if err := db2.QueryRowContext(ctx, "SELECT COUNT(*) FROM items").Scan(&n); err != nil {
					t.Errorf("count items on a new pool: %v", err)
				}
			})
		})
	}
}

func first(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// TestMySQLOrderStore smokes the order store against each backend.
func TestMySQLOrderStore(t *testing.T) {
	for _, b := range mysqlBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			_, db := b.open(t)
			s := order.NewStore(db)
			now := time.Now()
			it, err := s.CreateItem(ctx, order.Item{Name: "phone", Stock: 3, Shards: 2, PerUserLimit: 1, StartsAt: now})
			if err != nil {
				t.Fatalf("CreateItem: %v", err)
			}
			got, err := s.Item(ctx, it.ID)
			if err != nil || !got.StartsAt.Equal(it.StartsAt) || got.Stock != 3 {
				t.Fatalf("Item: got (%+v, %v), want %+v", got, err, it)
			}
			mk := func(id int64, exp time.Time) order.Order {
				return order.Order{ID: id, ItemID: it.ID, UserID: id, Shard: int(id % 2), CreatedAt: now, ExpiresAt: exp}
			}
			later := now.Add(time.Hour)
			n, refused, err := s.InsertBatch(ctx, []order.Order{mk(1, later), mk(2, now.Add(-time.Second)), mk(2, later)})
			if err != nil || n != 2 || len(refused) != 0 {
				t.Fatalf("InsertBatch: got (%d, %d refused, %v), want (2, 0, nil)", n, len(refused), err)
			}
			// Redelivery inserts nothing; of 2 more only the first fits stock 3.
			n, refused, err = s.InsertBatch(ctx, []order.Order{mk(1, later), mk(3, later), mk(4, later)})
			if err != nil || n != 1 || len(refused) != 1 || refused[0].ID != 4 {
				t.Fatalf("InsertBatch over stock: got (%d, %v refused, %v), want (1, [order 4], nil)", n, refused, err)
			}
			n, refused, err = s.InsertBatch(ctx, []order.Order{mk(3, later)})
			if err != nil || n != 0 || len(refused) != 0 {
				t.Fatalf("InsertBatch redelivered last unit: got (%d, %d refused, %v), want (0, 0, nil)", n, len(refused), err)
			}
			if o, err := s.Pay(ctx, 1, 1, now); err != nil || o.Status != order.StatusPaid {
				t.Errorf("Pay: got (%v, %v), want paid", o.Status, err)
			}
			if _, err := s.Pay(ctx, 1, 1, now); !errors.Is(err, order.ErrAlreadyPaid) {
				t.Errorf("Pay twice: got %v, want %v", err, order.ErrAlreadyPaid)
			}
			if _, err := s.Pay(ctx, 3, 99, now); !errors.Is(err, order.ErrNotFound) {
				t.Errorf("Pay of another user's order: got %v, want %v", err, order.ErrNotFound)
			}
			// Order 2 expired a second before now.
			done, err := s.CancelExpired(ctx, now, 10)
			if err != nil || len(done) != 1 || done[0].ID != 2 {
				t.Fatalf("CancelExpired: got (%v, %v), want order 2", done, err)
			}
			if _, err := s.Pay(ctx, 2, 2, now); !errors.Is(err, order.ErrCancelled) {
				t.Errorf("Pay of cancelled order: got %v, want %v", err, order.ErrCancelled)
			}
			// The reconciler's quick read (an index hint): order 2's unit
			// is not back yet, then it is.
			if b, err := s.Balance(ctx, it.ID); err != nil || b != (order.Balance{Sold: 2, Stock: 3, Unreturned: 1}) {
				t.Errorf("Balance before the return: got (%+v, %v), want 2 sold, 3 stock, 1 unreturned", b, err)
			}
			if err := s.MarkReturned(ctx, 2); err != nil {
				t.Fatalf("MarkReturned: %v", err)
			}
			if b, err := s.Balance(ctx, it.ID); err != nil || b != (order.Balance{Sold: 2, Stock: 3}) {
				t.Errorf("Balance after the return: got (%+v, %v), want 2 sold, 3 stock, 0 unreturned", b, err)
			}
			c, err := s.Counts(ctx, it.ID)
			want := order.Counts{Pending: 1, Paid: 1, Cancelled: 1, Returned: 1, Sold: 2, Stock: 3}
			if err != nil || c != want {
				t.Errorf("Counts: got (%+v, %v), want %+v", c, err, want)
			}
			byShard, err := s.ActiveByShard(ctx, it.ID)
			if err != nil || byShard[1] != 2 || len(byShard) != 1 {
				t.Errorf("ActiveByShard: got (%v, %v), want map[1:2]", byShard, err)
			}

			// Concurrent writers, as several consumer instances: exactly
			// stock orders land, the rest are refused, and every index
			// still finds them (Counts reads by item).
			hot, err := s.CreateItem(ctx, order.Item{Name: "hot", Stock: 10, Shards: 4, PerUserLimit: 1, StartsAt: now})
			if err != nil {
				t.Fatalf("CreateItem: %v", err)
			}
			var (
				wg              sync.WaitGroup
				ins, ref, errsN atomic.Int64
			)
			start := make(chan struct{})
			for i := range 30 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					o := order.Order{ID: 1000 + int64(i), ItemID: hot.ID, UserID: int64(i), Shard: i % 4, CreatedAt: now, ExpiresAt: later}
					n, refused, err := s.InsertBatch(ctx, []order.Order{o})
					if err != nil {
						errsN.Add(1)
						return
					}
					ins.Add(int64(n))
					ref.Add(int64(len(refused)))
				}()
			}
			close(start)
			wg.Wait()
			if ins.Load() != 10 || ref.Load() != 20 || errsN.Load() != 0 {
				t.Errorf("concurrent InsertBatch: got %d inserted, %d refused, %d errors; want 10, 20, 0", ins.Load(), ref.Load(), errsN.Load())
			}
			c, err = s.Counts(ctx, hot.ID)
			if want := (order.Counts{Pending: 10, Sold: 10, Stock: 10}); err != nil || c != want {
				t.Errorf("Counts after concurrent inserts: got (%+v, %v), want %+v", c, err, want)
			}
		})
	}
}

// TestKafka drives the embedded broker with the production client: sarama
// idempotent producer, ClusterAdmin, consumer group.
func TestKafka(t *testing.T) {
	for _, v := range []sarama.KafkaVersion{sarama.V3_6_0_0, sarama.V4_0_0_0} {
		t.Run(v.String(), func(t *testing.T) {
			brokers, stop, err := Kafka()
			if err != nil {
				t.Fatalf("Kafka: %v", err)
			}
			t.Cleanup(stop)
			topic := testenv.Topic("orders")
			const parts, msgs = 3, 30

			cfg := sarama.NewConfig()
			cfg.Version = v
			cfg.Producer.Idempotent = true
			cfg.Producer.RequiredAcks = sarama.WaitForAll
			cfg.Producer.Return.Successes = true
			cfg.Net.MaxOpenRequests = 1

			admin, err := sarama.NewClusterAdmin(brokers, cfg)
			if err != nil {
				t.Fatalf("NewClusterAdmin: %v", err)
			}
			defer admin.Close()
			if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: -1}, false); err != nil {
				t.Fatalf("CreateTopic: %v", err)
			}
			err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: -1}, false)
			if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
				t.Errorf("CreateTopic again: got %v, want %v", err, sarama.ErrTopicAlreadyExists)
			}

			prod, err := sarama.NewSyncProducer(brokers, cfg)
			if err != nil {
				t.Fatalf("NewSyncProducer: %v", err)
			}
			want := map[string]bool{}
			for i := range msgs {
				val := fmt.Sprintf("order-%d", i)
				want[val] = true
				if _, _, err := prod.SendMessage(&sarama.ProducerMessage{
					Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder(val),
				}); err != nil {
					t.Fatalf("SendMessage %d: %v", i, err)
				}
			}
			if err := prod.Close(); err != nil {
				t.Fatalf("producer Close: %v", err)
			}

			ccfg := sarama.NewConfig()
			ccfg.Version = v
			ccfg.Consumer.Offsets.Initial = sarama.OffsetOldest
			ccfg.Consumer.Group.Session.Timeout = time.Second
			ccfg.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond
			group := "g-" + testenv.ID()
			cg, err := sarama.NewConsumerGroup(brokers, group, ccfg)
			if err != nil {
				t.Fatalf("NewConsumerGroup: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			h := &collector{want: msgs, got: map[string]int{}, done: cancel}
			for ctx.Err() == nil {
				if err := cg.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
					t.Fatalf("Consume: %v", err)
				}
			}
			if err := cg.Close(); err != nil {
				t.Errorf("consumer group Close: %v", err)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.got) != len(want) {
				t.Errorf("distinct messages consumed: got %d, want %d", len(h.got), len(want))
			}
			for val, n := range h.got {
				if !want[val] || n != 1 {
					t.Errorf("message %q: got %d deliveries, want 1", val, n)
				}
			}

			// Marked offsets were committed at Close.
			offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
			if err != nil {
				t.Fatalf("ListConsumerGroupOffsets: %v", err)
			}
			var committed int64
			for _, b := range offs.Blocks[topic] {
				committed += b.Offset
			}
			if committed != msgs {
				t.Errorf("committed offsets: got %d, want %d", committed, msgs)
			}
		})
	}
}

// collector is a consumer group handler that records what it reads and
// calls done once it has read want messages.
type collector struct {
	want int
	done context.CancelFunc

	mu  sync.Mutex
	got map[string]int
	n   int
}

func (c *collector) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *collector) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (c *collector) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		c.mu.Lock()
		c.got[string(msg.Value)]++
		c.n++
		all := c.n >= c.want
		c.mu.Unlock()
		sess.MarkMessage(msg, "")
		if all {
			c.done()
		}
	}
	return nil
}

// TestStop: every stop may be called twice and frees its port.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func() (string, func(), error)
	}{
		{"redis", Redis},
		{"kafka", func() (string, func(), error) {
			b, stop, err := Kafka()
			if err != nil {
				return "", nil, err
			}
			return b[0], stop, nil
		}},
		{"mysql", func() (string, func(), error) {
			dsn, stop, err := MySQL("db")
			if err != nil {
				return "", nil, err
			}
			cfg, err := mysql.ParseDSN(dsn)
			if err != nil {
				stop()
				return "", nil, err
			}
			return cfg.Addr, stop, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, stop, err := tc.start()
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
				t.Errorf("address %q: got host %q, want 127.0.0.1", addr, host)
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				t.Fatalf("dial %s while running: %v", addr, err)
			}
			c.Close()
			stop()
			stop()
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listen on %s after stop: got %v, want the port free", addr, err)
			}
			ln.Close()
		})
	}
}

// waitAtGate waits (bounded) until a statement waits at the gate of an
// embedded MySQL: some goroutine is inside (*gate).enter, which is where a
// statement blocks while another connection holds the gate.
func waitAtGate(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		n := runtime.Stack(buf, true)
		for n == len(buf) {
			buf = make([]byte, 2*len(buf))
			n = runtime.Stack(buf, true)
		}
		if bytes.Contains(buf[:n], []byte("embedded.(*gate).enter(")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no statement waiting at the gate within 10s")
		}
	}
}

// TestMySQLTransactionsSerialize: while one connection is inside a
// transaction, others wait for it, and give up with error 1205 after the
// lock wait timeout, as against InnoDB row locks.
func TestMySQLTransactionsSerialize(t *testing.T) {
	ctx := context.Background()
	dsn, stop, err := startMySQL("db", 300*time.Millisecond)
	if err != nil {
		t.Fatalf("startMySQL: %v", err)
	}
	t.Cleanup(stop)
	db, err := sqlx.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	if err := migrations.Up(ctx, db.DB); err != nil {
		t.Fatalf("migrations.Up: %v", err)
	}
	now := time.Now().UTC()
	ins := "INSERT INTO items (name, stock, shards, per_user_limit, starts_at, created_at) VALUES ('x', 1, 1, 1, ?, ?)"
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if _, err := tx.ExecContext(ctx, ins, now, now); err != nil {
		t.Fatalf("insert in tx: %v", err)
	}
	_, err = db.ExecContext(ctx, ins, now, now)
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1205 {
		t.Errorf("insert while another transaction is open: got %v, want MySQL error 1205", err)
	}

	// A waiter that arrives while the transaction is open runs after COMMIT.
	waited := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(ctx, ins, now, now)
		waited <- err
	}()
	waitAtGate(t)
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if err := <-waited; err != nil {
		t.Errorf("insert queued behind the transaction: got %v, want nil", err)
	}
	var n int
	if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM items"); err != nil {
		t.Fatalf("count: %v", err)
	}
	if n != 2 {
		t.Errorf("items: got %d, want 2", n)
	}

	// A connection dropped inside a transaction frees the gate.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("conn: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "START TRANSACTION"); err != nil {
		t.Fatalf("start transaction: %v", err)
	}
	if _, err := conn.ExecContext(ctx, ins, now, now); err != nil {
		t.Fatalf("insert: %v", err)
	}
	conn.Raw(func(dc any) error { return driver.ErrBadConn }) // discard, do not pool
	conn.Close()
	if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM items"); err != nil {
		t.Fatalf("count after dropped connection: %v", err)
	}
	if n != 2 {
		t.Errorf("items after a dropped transaction: got %d, want 2", n)
	}
}
