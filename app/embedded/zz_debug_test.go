package embedded

import (
	"context"
	"testing"
	"time"
	"fmt"

	"github.com/jmoiron/sqlx"
	"seckill/migrations"
)

func TestZZDebug(t *testing.T) {
	for _, ids := range [][]int{{129, 100}, {129, 100, 101}, {100, 129, 101}, {3, 1, 2}, {2, 1}} {
	for _, tx := range []bool{false, true} {
		ctx := context.Background()
		dsn, stop, _ := MySQL("db")
		defer stop()
		db, _ := sqlx.Open("mysql", dsn)
		defer db.Close()
		migrations.Up(ctx, db.DB)
		now := time.Now().UTC()
		for _, id := range ids {
			q := "INSERT INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (?, 1, 1, 0, ?, ?)"
			if tx {
				tx, _ := db.BeginTxx(ctx, nil)
				if _, err := tx.ExecContext(ctx, q, id, now, now); err != nil { t.Fatal(err) }
				tx.Commit()
			} else if _, err := db.ExecContext(ctx, q, id, now, now); err != nil { t.Fatal(err) }
		}
		var all, byItem, byStatus, byUser int
		db.GetContext(ctx, &all, "SELECT COUNT(*) FROM orders")
		db.GetContext(ctx, &byItem, "SELECT COUNT(*) FROM orders WHERE item_id = 1")
		db.GetContext(ctx, &byStatus, "SELECT COUNT(*) FROM orders WHERE item_id = 1 AND status = 'pending'")
		db.GetContext(ctx, &byUser, "SELECT COUNT(*) FROM orders WHERE user_id = 1")
		fmt.Println(ids, tx, "all", all, "byItem", byItem, "byItemStatus", byStatus, "byUser", byUser)
	}
	}
}
