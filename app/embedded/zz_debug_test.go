package embedded

import (
	"context"
	"sync"
	"testing"
	"time"
	"fmt"

	"github.com/jmoiron/sqlx"
	"seckill/migrations"
)

func TestZZDebug(t *testing.T) {
	for _, mode := range []string{"conc1", "seqmulti", "conc"} {
	for _, pre := range []bool{false, true} {
		ctx := context.Background()
		dsn, stop, _ := MySQL("db")
		defer stop()
		db, _ := sqlx.Open("mysql", dsn)
		defer db.Close()
		if mode == "conc1" { db.SetMaxOpenConns(1) }
		var conns []*sqlx.Conn
		for range 5 { c, _ := db.Connx(ctx); conns = append(conns, c) }
		migrations.Up(ctx, db.DB)
		now := time.Now().UTC()
		db.ExecContext(ctx, "INSERT INTO items (name, stock, shards, per_user_limit, starts_at, created_at) VALUES ('x', 10, 1, 1, ?, ?)", now, now)
		if pre {
			db.ExecContext(ctx, "INSERT INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (1, 99, 1, 0, ?, ?)", now, now)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		commits := 0
		for i := range 30 {
			wg.Add(1)
			run := func() {
				defer wg.Done()
				var tx *sqlx.Tx
				var err error
				if mode == "seqmulti" { tx, err = conns[i%5].BeginTxx(ctx, nil) } else { tx, err = db.BeginTxx(ctx, nil) }
				if err != nil { t.Error(err); return }
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, "INSERT IGNORE INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (?, 1, 1, 0, ?, ?)", 100+i, now, now); err != nil { t.Error(err); return }
				res, err := tx.ExecContext(ctx, "UPDATE items SET sold = sold + 1 WHERE id = 1 AND sold + 1 <= stock")
				if err != nil { t.Error(err); return }
				if n, _ := res.RowsAffected(); n == 0 { return }
				if err := tx.Commit(); err != nil { t.Error(err); return }
				mu.Lock(); commits++; mu.Unlock()
			}
			if mode == "seqmulti" { run() } else { go run() }
		}
		wg.Wait()
		for _, c := range conns { c.Close() }
		var all, byItem, byItemExpr int
		db.GetContext(ctx, &all, "SELECT COUNT(*) FROM orders")
		db.GetContext(ctx, &byItem, "SELECT COUNT(*) FROM orders WHERE item_id = 1")
		db.GetContext(ctx, &byItemExpr, "SELECT COUNT(*) FROM orders WHERE item_id + 0 = 1")
		var ids []int64
		db.SelectContext(ctx, &ids, "SELECT order_id FROM orders")
		fmt.Println(mode, pre, "commits", commits, "all", all, "byItem", byItem, "byItemExpr", byItemExpr, ids)
	}
	}
}
