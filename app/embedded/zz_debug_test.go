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
	for _, mode := range []string{"mixed-conc", "mixed-conc-upd", "guard-seq", "guard-conc"} {
		ctx := context.Background()
		dsn, stop, _ := MySQL("db")
		defer stop()
		db, _ := sqlx.Open("mysql", dsn)
		defer db.Close()
		migrations.Up(ctx, db.DB)
		now := time.Now().UTC()
		db.ExecContext(ctx, "INSERT INTO items (name, stock, shards, per_user_limit, starts_at, created_at) VALUES ('x', 1000, 1, 1, ?, ?)", now, now)
		var wg sync.WaitGroup
		var mu sync.Mutex
		commits := 0
		for i := range 30 {
			wg.Add(1)
			run := func() {
				defer wg.Done()
				tx, err := db.BeginTxx(ctx, nil)
				if err != nil { t.Error(err); return }
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, "INSERT IGNORE INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (?, 1, 1, 0, ?, ?)", 100+i, now, now); err != nil { t.Error(err); return }
				if mode == "mixed-conc-upd" || mode == "guard-seq" || mode == "guard-conc" {
					q := "UPDATE items SET sold = sold + 1 WHERE id = 1"
					if mode != "mixed-conc-upd" { q += " AND sold + 1 <= 10" }
					res, err := tx.ExecContext(ctx, q)
					if err != nil { t.Error(err); return }
					if n, _ := res.RowsAffected(); n == 0 { return }
				}
				if mode == "mixed-conc" && i%2 == 0 || mode == "mixed-conc-upd" && i%2 == 0 {
					return
				}
				if err := tx.Commit(); err != nil { t.Error(err); return }
				mu.Lock(); commits++; mu.Unlock()
			}
			if mode == "guard-seq" { run() } else { go run() }
		}
		wg.Wait()
		var n int
		db.GetContext(ctx, &n, "SELECT COUNT(*) FROM orders")
		var sold int
		db.GetContext(ctx, &sold, "SELECT sold FROM items")
		fmt.Println(mode, "commits", commits, "orders", n, "sold", sold)
	}
}
