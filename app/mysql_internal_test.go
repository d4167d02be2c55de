package app

import (
	"context"
	"testing"
	"time"

	"seckill/app/testenv"
	"seckill/limiter/breaker"
	"seckill/order"
)

// TestMySQLStatementsAreOneRoundTrip: the product's statements with
// arguments run as one query each, not as a server-side prepared statement
// (a prepare, an execute and a close per call): MySQL parsed the writer's
// 500-row INSERT twice per batch, and every point read took two round
// trips.
func TestMySQLStatementsAreOneRoundTrip(t *testing.T) {
	dsn, _ := testenv.MySQL(t)
	var cfg Config
	cfg.MySQL.DSN = dsn
	cfg.MySQL.MaxOpenConns = 1 // one session, whose status counts every statement
	ctx := context.Background()
	// Through the MySQL breaker, as served: its connection wrapper keeps
	// the driver's one-round-trip statements.
	db, err := openMySQL(ctx, cfg, breaker.NewSet(breaker.Config{}).Get("mysql"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	prepares := func() int64 {
		var name string
		var n int64
		if err := db.QueryRowxContext(ctx, "SHOW SESSION STATUS LIKE 'Com_stmt_prepare'").Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	st := order.NewStore(db)
	it, err := st.CreateItem(ctx, order.Item{Name: "one round trip", Stock: 10, Shards: 1, PerUserLimit: 1, StartsAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	before := prepares()
	now := time.Now()
	if _, _, err := st.InsertBatch(ctx, []order.Order{{ID: 1, ItemID: it.ID, UserID: 7, Status: order.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Order(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := prepares() - before; n != 0 {
		t.Errorf("an insert batch and an order read prepared %d statements on the server, want 0", n)
	}
}
