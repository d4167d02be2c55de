package order

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// The operator's changes to an item. Each runs in one transaction that
// locks the item's row, checks the change is allowed in the state it finds,
// makes it, and writes its audit row: a change is recorded if and only if
// it was made, and two operators' changes to one item are serialised.

// Expected outcomes of the operator's changes.
var (
	// ErrSaleStarted: the window or the per-user limit cannot change once
	// the sale started (or is about to: see EditItem).
	ErrSaleStarted = errors.New("sale already started")
	// ErrSaleEnded: units cannot be added to a sale that ended.
	ErrSaleEnded = errors.New("sale ended")
)

// Actions recorded in the audit table.
const (
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionEnd      = "end"
	ActionEdit     = "edit"
	ActionAddStock = "add_stock"
)

// Audit is one recorded change of an item by an operator.
type Audit struct {
	ID     int64  `db:"id" json:"id"`
	ItemID int64  `db:"item_id" json:"item_id"`
	Action string `db:"action" json:"action"`
	// Actor is who made the change: the X-Actor the admin request named,
	// or "admin".
	Actor  string `db:"actor" json:"actor"`
	Detail string `db:"detail" json:"detail"`
	// Units is a stock addition's units.
	Units *int64 `db:"units" json:"units,omitempty"`
	// Key is a stock addition's idempotency key.
	Key       *string   `db:"idem_key" json:"-"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

const auditCols = "id, item_id, action, actor, detail, units, idem_key, created_at"

// ItemEdit is a change of an item's window or per-user limit; nil fields
// stay as they are.
type ItemEdit struct {
	StartsAt     *time.Time
	EndsAt       *time.Time
	PerUserLimit *int
}

// ListItems is a page of items, newest first: those with an id below
// before (every item when before is 0), at most limit. One range read of
// the primary key, whatever the number of items.
func (s *Store) ListItems(ctx context.Context, before int64, limit int) ([]Item, error) {
	items := []Item{}
	q, args := "SELECT "+itemCols+" FROM items ORDER BY id DESC LIMIT ?", []any{limit}
	if before > 0 {
		q, args = "SELECT "+itemCols+" FROM items WHERE id < ? ORDER BY id DESC LIMIT ?", []any{before, limit}
	}
	if err := s.db.SelectContext(ctx, &items, q, args...); err != nil {
		return nil, fmt.Errorf("list items before %d: %w", before, err)
	}
	return items, nil
}

// PausedItems counts the paused items (an index range, not a scan).
func (s *Store) PausedItems(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, "SELECT COUNT(*) FROM items WHERE paused = 1"); err != nil {
		return 0, fmt.Errorf("count paused items: %w", err)
	}
	return n, nil
}

// AuditOf is the item's recorded changes, oldest first.
func (s *Store) AuditOf(ctx context.Context, itemID int64) ([]Audit, error) {
	rows := []Audit{}
	if err := s.db.SelectContext(ctx, &rows, "SELECT "+auditCols+" FROM admin_audit WHERE item_id = ? ORDER BY id", itemID); err != nil {
		return nil, fmt.Errorf("audit of item %d: %w", itemID, err)
	}
	return rows, nil
}

// lockItem reads the item's row for update.
func lockItem(ctx context.Context, tx *sqlx.Tx, id int64) (Item, error) {
	var it Item
	err := tx.GetContext(ctx, &it, "SELECT "+itemCols+" FROM items WHERE id = ? FOR UPDATE", id)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, fmt.Errorf("item %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Item{}, fmt.Errorf("lock item %d: %w", id, err)
	}
	return it, nil
}

// record writes a's audit row in tx and returns its id.
func record(ctx context.Context, tx *sqlx.Tx, a Audit) (int64, error) {
	res, err := tx.ExecContext(ctx,
		"INSERT INTO admin_audit (item_id, action, actor, detail, units, idem_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		a.ItemID, a.Action, a.Actor, a.Detail, a.Units, a.Key, ms(a.CreatedAt))
	if err != nil {
		return 0, fmt.Errorf("audit %s of item %d: %w", a.Action, a.ItemID, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("audit %s of item %d: id: %w", a.Action, a.ItemID, err)
	}
	return id, nil
}

// SetPaused pauses or resumes the item's sale, recording a (Action set
// here). A pause of a paused item (or a resume of one on sale) changes
// nothing and records nothing; changed says which.
func (s *Store) SetPaused(ctx context.Context, id int64, paused bool, a Audit) (it Item, changed bool, err error) {
	a.ItemID, a.Action = id, ActionResume
	if paused {
		a.Action = ActionPause
	}
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		if it, err = lockItem(ctx, tx, id); err != nil {
			return err
		}
		if changed = it.Paused != paused; !changed {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE items SET paused = ? WHERE id = ?", paused, id); err != nil {
			return fmt.Errorf("pause item %d: %w", id, err)
		}
		it.Paused = paused
		_, err := record(ctx, tx, a)
		return err
	})
	return it, changed, err
}

// EndSale ends the item's sale at now: ends_at becomes now (and starts_at
// too if it was later, so purchases answer "ended", not "not started").
// A sale that already ended changes nothing and records nothing.
func (s *Store) EndSale(ctx context.Context, id int64, now time.Time, a Audit) (it Item, changed bool, err error) {
	now = ms(now)
	a.ItemID, a.Action = id, ActionEnd
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		if it, err = lockItem(ctx, tx, id); err != nil {
			return err
		}
		if it.EndsAt != nil && !it.EndsAt.After(now) {
			return nil
		}
		changed = true
		a.Detail = "ends_at " + now.Format(time.RFC3339Nano)
		if it.StartsAt.After(now) {
			it.StartsAt = now
		}
		it.EndsAt = &now
		if _, err := tx.ExecContext(ctx, "UPDATE items SET starts_at = ?, ends_at = ? WHERE id = ?", it.StartsAt, now, id); err != nil {
			return fmt.Errorf("end item %d: %w", id, err)
		}
		_, err := record(ctx, tx, a)
		return err
	})
	return it, changed, err
}

// EditItem changes the item's window or per-user limit while its sale has
// not started: only if starts_at is after notBefore. The caller passes now
// plus the time every instance may take to see the change (sale's item
// refresh), so no instance can sell under the old window or limit.
// ErrSaleStarted otherwise; ErrInvalidItem for a window that ends before
// it starts.
func (s *Store) EditItem(ctx context.Context, id int64, e ItemEdit, notBefore time.Time, a Audit) (it Item, err error) {
	a.ItemID, a.Action = id, ActionEdit
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		if it, err = lockItem(ctx, tx, id); err != nil {
			return err
		}
		if !it.StartsAt.After(notBefore) {
			return fmt.Errorf("edit item %d: %w", id, ErrSaleStarted)
		}
		if e.StartsAt != nil {
			it.StartsAt = ms(*e.StartsAt)
		}
		if e.EndsAt != nil {
			it.EndsAt = msPtr(e.EndsAt)
		}
		if e.PerUserLimit != nil {
			it.PerUserLimit = *e.PerUserLimit
		}
		if it.EndsAt != nil && !it.EndsAt.After(it.StartsAt) {
			return fmt.Errorf("edit item %d: %w: ends before it starts", id, ErrInvalidItem)
		}
		if it.PerUserLimit < 1 {
			return fmt.Errorf("edit item %d: %w: per-user limit %d", id, ErrInvalidItem, it.PerUserLimit)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE items SET starts_at = ?, ends_at = ?, per_user_limit = ? WHERE id = ?",
			it.StartsAt, it.EndsAt, it.PerUserLimit, id); err != nil {
			return fmt.Errorf("edit item %d: %w", id, err)
		}
		a.Detail = fmt.Sprintf("starts_at %s, ends_at %s, per_user_limit %d",
			it.StartsAt.Format(time.RFC3339Nano), fmtEnd(it.EndsAt), it.PerUserLimit)
		_, err := record(ctx, tx, a)
		return err
	})
	return it, err
}

func fmtEnd(t *time.Time) string {
	if t == nil {
		return "none"
	}
	return t.Format(time.RFC3339Nano)
}

// Addition is a recorded stock addition: its id is what Redis applies once
// per shard.
type Addition struct {
	ID    int64
	Units int64
}

// AddStock raises the item's stock (the MySQL guard) by units and records
// the addition under key, in one transaction; the caller then adds the
// units to Redis (stock.AddUnits) with the addition's id. A key already
// recorded for the item is a retry: it changes nothing and returns the
// first addition, so the caller applies that one again (idempotent).
// ErrSaleEnded once the sale ended at now; ErrInvalidItem past maxStock.
func (s *Store) AddStock(ctx context.Context, id, units int64, key string, now time.Time, maxStock int64, a Audit) (it Item, add Addition, err error) {
	a.ItemID, a.Action, a.Units, a.Key = id, ActionAddStock, &units, &key
	a.Detail = fmt.Sprintf("units %d", units)
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		if it, err = lockItem(ctx, tx, id); err != nil {
			return err
		}
		// Read under the item's lock: a concurrent retry of the same key
		// waits for this transaction and then finds its row.
		var prev Audit
		err := tx.GetContext(ctx, &prev, "SELECT "+auditCols+" FROM admin_audit WHERE item_id = ? AND action = ? AND idem_key = ?",
			id, ActionAddStock, key)
		switch {
		case err == nil:
			add = Addition{ID: prev.ID, Units: *prev.Units}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("add stock to item %d: %w", id, err)
		}
		if it.EndsAt != nil && !it.EndsAt.After(ms(now)) {
			return fmt.Errorf("add stock to item %d: %w", id, ErrSaleEnded)
		}
		if it.Stock+units > maxStock {
			return fmt.Errorf("add stock to item %d: %w: stock would pass %d", id, ErrInvalidItem, maxStock)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE items SET stock = stock + ? WHERE id = ?", units, id); err != nil {
			return fmt.Errorf("add stock to item %d: %w", id, err)
		}
		it.Stock += units
		add.Units = units
		add.ID, err = record(ctx, tx, a)
		return err
	})
	return it, add, err
}

// UserOrders is a page of the user's orders, newest first: those with an
// id below before (all when 0), of item (any when 0), at most limit. It
// reads the user's index range only (idx_orders_user holds the order id).
func (s *Store) UserOrders(ctx context.Context, user, item, before int64, limit int) ([]Order, error) {
	q := "SELECT " + orderCols + " FROM orders WHERE user_id = ?"
	args := []any{user}
	if item > 0 {
		q += " AND item_id = ?"
		args = append(args, item)
	}
	if before > 0 {
		q += " AND order_id < ?"
		args = append(args, before)
	}
	q += " ORDER BY order_id DESC LIMIT ?"
	args = append(args, limit)
	orders := []Order{}
	if err := s.db.SelectContext(ctx, &orders, q, args...); err != nil {
		return nil, fmt.Errorf("orders of user %d: %w", user, err)
	}
	return orders, nil
}
