package order

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

// MySQL error numbers after which a whole transaction is safe to run again.
const (
	errLockWaitTimeout = 1205
	errDeadlock        = 1213
)

const (
	// maxAttempts bounds the runs of one transaction that keeps losing
	// deadlocks; after that the error goes to the caller, who retries later
	// (a Kafka batch is simply not committed), so no row is lost.
	maxAttempts = 10
	// insertChunk is the most rows one INSERT statement carries.
	insertChunk = 1000
)

const (
	itemCols  = "id, name, stock, shards, per_user_limit, sold, starts_at, ends_at, created_at, price_minor, currency, paused"
	orderCols = "order_id, item_id, user_id, shard, status, created_at, expires_at, paid_at, cancelled_at, stock_returned, amount_minor, currency, refund_required"
)

// errRedo makes InsertBatch roll back a transaction in which a stock guard
// refused an item, so it can run again without that item's rows.
var errRedo = errors.New("stock guard refused an item")

// Store keeps items and orders in MySQL (MariaDB, or go-mysql-server in
// development).
type Store struct {
	db *sqlx.DB
}

// NewStore returns a Store on db. db must be opened with parseTime=true; the
// store writes and reads every time in UTC with millisecond precision.
func NewStore(db *sqlx.DB) *Store {
	return &Store{db: db}
}

// Ping checks that MySQL answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping mysql: %w", err)
	}
	return nil
}

// ms is t as the columns store it: UTC, DATETIME(3). Rounding in Go rather
// than in the server makes a value read back equal the value written, and
// makes Go-side comparisons agree with the SQL ones.
func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func msPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ms(*t)
	return &v
}

// CreateItem stores a new item and returns it with its ID and CreatedAt set.
// Sold always starts at 0.
func (s *Store) CreateItem(ctx context.Context, it Item) (Item, error) {
	switch {
	case strings.TrimSpace(it.Name) == "":
		return Item{}, fmt.Errorf("create item: %w: name is empty", ErrInvalidItem)
	case it.Stock < 0:
		return Item{}, fmt.Errorf("create item: %w: stock %d is negative", ErrInvalidItem, it.Stock)
	case it.Shards < 1:
		return Item{}, fmt.Errorf("create item: %w: shards %d, want at least 1", ErrInvalidItem, it.Shards)
	case it.PerUserLimit < 1:
		return Item{}, fmt.Errorf("create item: %w: per-user limit %d, want at least 1", ErrInvalidItem, it.PerUserLimit)
	case it.StartsAt.IsZero():
		return Item{}, fmt.Errorf("create item: %w: no start time", ErrInvalidItem)
	case it.EndsAt != nil && !it.EndsAt.After(it.StartsAt):
		return Item{}, fmt.Errorf("create item: %w: ends before it starts", ErrInvalidItem)
	}
	// No price at all (0, "") is an item without a price, as the rows
	// made before prices existed; the API always asks for one.
	if it.PriceMinor != 0 || it.Currency != "" {
		if err := CheckPrice(it.PriceMinor, it.Currency); err != nil {
			return Item{}, fmt.Errorf("create item: %w: %w", ErrInvalidItem, err)
		}
	}
	it.Sold = 0
	it.StartsAt, it.EndsAt, it.CreatedAt = ms(it.StartsAt), msPtr(it.EndsAt), ms(time.Now())
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO items (name, stock, shards, per_user_limit, sold, starts_at, ends_at, created_at, price_minor, currency)
		 VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)`,
		it.Name, it.Stock, it.Shards, it.PerUserLimit, it.StartsAt, it.EndsAt, it.CreatedAt, it.PriceMinor, it.Currency)
	if err != nil {
		return Item{}, fmt.Errorf("create item: %w", err)
	}
	if it.ID, err = res.LastInsertId(); err != nil {
		return Item{}, fmt.Errorf("create item: id: %w", err)
	}
	return it, nil
}

// Item returns the item with the given id, or ErrNotFound.
func (s *Store) Item(ctx context.Context, id int64) (Item, error) {
	var it Item
	err := s.db.GetContext(ctx, &it, "SELECT "+itemCols+" FROM items WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, fmt.Errorf("item %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Item{}, fmt.Errorf("get item %d: %w", id, err)
	}
	return it, nil
}

// SoldStock is the item's sold counter and stock: one primary-key read,
// whatever the number of its orders.
func (s *Store) SoldStock(ctx context.Context, itemID int64) (sold, stock int64, err error) {
	if err := soldStock(ctx, s.db, itemID, &sold, &stock); err != nil {
		return 0, 0, err
	}
	return sold, stock, nil
}

// MaxItemID is the highest item id (0 without items): ids above it are
// unknown without a query each.
func (s *Store) MaxItemID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.db.GetContext(ctx, &id, "SELECT COALESCE(MAX(id), 0) FROM items"); err != nil {
		return 0, fmt.Errorf("max item id: %w", err)
	}
	return id, nil
}

// Items returns every item, oldest first.
func (s *Store) Items(ctx context.Context) ([]Item, error) {
	items := []Item{}
	if err := s.db.SelectContext(ctx, &items, "SELECT "+itemCols+" FROM items ORDER BY id"); err != nil {
		return nil, fmt.Errorf("list items: %w", err)
	}
	return items, nil
}

// ItemsAfter returns the items with an id above after, oldest first.
func (s *Store) ItemsAfter(ctx context.Context, after int64) ([]Item, error) {
	items := []Item{}
	if err := s.db.SelectContext(ctx, &items, "SELECT "+itemCols+" FROM items WHERE id > ? ORDER BY id", after); err != nil {
		return nil, fmt.Errorf("list items after %d: %w", after, err)
	}
	return items, nil
}

// Order returns the order with the given id, or ErrNotFound.
func (s *Store) Order(ctx context.Context, id int64) (Order, error) {
	var o Order
	err := s.db.GetContext(ctx, &o, "SELECT "+orderCols+" FROM orders WHERE order_id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, fmt.Errorf("order %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Order{}, fmt.Errorf("get order %d: %w", id, err)
	}
	return o, nil
}

// InsertBatch records new orders (decoded from Kafka) in one transaction and
// returns how many rows it inserted; refused holds every order given that is
// not stored (InsertOrders tells the stock guard's refusals from repeated
// ids).
func (s *Store) InsertBatch(ctx context.Context, orders []Order) (inserted int, refused []Order, err error) {
	res, err := s.InsertOrders(ctx, orders)
	if err != nil {
		return 0, nil, err
	}
	for _, c := range res.Collided {
		res.Refused = append(res.Refused, c.Order)
	}
	return res.Inserted, res.Refused, nil
}

// BatchResult is what InsertOrders did with a batch.
type BatchResult struct {
	// Inserted counts the new rows.
	Inserted int
	// Refused: orders the stock guard refused, of an unknown item, or
	// missing an id, item or time.
	Refused []Order
	// Collided: orders whose id is already an order of another buyer or
	// item (or is given twice so in the batch). A redelivery stores the
	// same buyer and item; this is a repeated order id.
	Collided []Collision
}

// Collision is an order whose id is taken by another order.
type Collision struct {
	Order Order
	// Other is the order that holds the id (its ID, ItemID and UserID).
	Other Order
}

// same reports whether a and b are one order (a redelivery), not two that
// got the same id.
func same(a, b Order) bool { return a.UserID == b.UserID && a.ItemID == b.ItemID }

// InsertOrders records new orders (decoded from Kafka) in one transaction.
// Only ID, ItemID, UserID, Shard, CreatedAt and ExpiresAt are read; a new
// order is always pending.
//
// Every order given is, when err is nil, either in MySQL, in Refused or in
// Collided:
//   - A redelivered order (its order_id already stored for the same buyer
//     and item) inserts nothing and does not move items.sold again. An
//     order_id stored for another buyer or item is a collision.
//   - An item's new rows are written while items.sold stays within its
//     stock: the earliest (lowest order ids) that fit are written, the rest
//     are refused; so are rows of an unknown item and rows missing an id,
//     item or time. Rows already stored are never refused.
//
// Deadlocks and lock wait timeouts rerun the whole transaction. On error
// nothing was written by this call and the caller must not commit the Kafka
// offsets of the batch.
func (s *Store) InsertOrders(ctx context.Context, orders []Order) (BatchResult, error) {
	b := sortBatch(orders)
	excluded := map[int64]bool{} // items whose guard failed after their rows were written
	for races := 0; len(b.items) > 0; {
		var res BatchResult
		var failed []int64
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			res, failed, err = b.write(ctx, tx, excluded) // a rerun starts over
			return err
		})
		switch {
		case errors.Is(err, errRedo):
			// Rolled back: run again refusing those items. Each round
			// excludes at least one more item, so this ends.
			for _, id := range failed {
				excluded[id] = true
			}
			continue
		case errors.Is(err, errRace) && races < maxAttempts:
			races++ // rerun: its reads see the other writer's rows
			continue
		case err != nil:
			return BatchResult{}, fmt.Errorf("insert batch of %d orders: %w", len(orders), err)
		}
		res.Refused = append(b.invalid, res.Refused...)
		res.Collided = append(b.collided, res.Collided...)
		return res, nil
	}
	return BatchResult{Refused: b.invalid, Collided: b.collided}, nil
}

// errRace: an INSERT IGNORE skipped a row the transaction's read did not
// see stored: a concurrent writer stored that order id meanwhile. The
// transaction is rolled back and run again, and the rerun's read tells a
// redelivery from a collision.
var errRace = errors.New("an order id was stored by a concurrent writer")

// batch is InsertOrders' input sorted out.
type batch struct {
	// items are the ids of the items of valid rows, ascending; byItem
	// their rows sorted by order id, one row per order id.
	items  []int64
	byItem map[int64][]Order
	// invalid rows miss an id, item or time; collided repeat an order id
	// of an earlier row of the batch for another buyer or item.
	invalid  []Order
	collided []Collision
}

// sortBatch groups valid rows by item, sorted by (item, order_id), keeping
// the first row of each order id: every writer takes its locks in the same
// order, which keeps deadlocks between concurrent batches rare.
func sortBatch(orders []Order) batch {
	b := batch{byItem: map[int64][]Order{}}
	first := make(map[int64]Order, len(orders))
	for _, o := range orders {
		if o.ID <= 0 || o.ItemID <= 0 || o.Shard < 0 || o.CreatedAt.IsZero() || o.ExpiresAt.IsZero() {
			b.invalid = append(b.invalid, o)
			continue
		}
		if f, dup := first[o.ID]; dup {
			if !same(f, o) {
				b.collided = append(b.collided, Collision{Order: o, Other: f})
			}
			continue
		}
		first[o.ID] = o
		b.byItem[o.ItemID] = append(b.byItem[o.ItemID], o)
	}
	for id, rows := range b.byItem {
		b.items = append(b.items, id)
		slices.SortFunc(rows, func(a, b Order) int { return cmp.Compare(a.ID, b.ID) })
	}
	slices.Sort(b.items)
	return b
}

// write is one run of InsertOrders' transaction. failed lists the items
// whose guard refused rows already written (errRedo).
func (b batch) write(ctx context.Context, tx *sqlx.Tx, excluded map[int64]bool) (res BatchResult, failed []int64, err error) {
	// Lock the items rows first, in id order. Every writer does, so
	// writers of one item take turns and the item's stored orders cannot
	// change under us: the count of new rows below is exact and an item
	// over its stock is refused before anything is written. (Refusing by
	// rolling back an insert is only the fallback: go-mysql-server's
	// memory engine, used in dev mode, corrupts secondary indexes when it
	// rolls back inserts.) FOR UPDATE is a locking read, so the snapshot of
	// the plain reads below is taken only after every lock is held.
	state, err := lockItems(ctx, tx, b.items)
	if err != nil {
		return BatchResult{}, nil, err
	}
	for _, id := range b.items {
		stored, err := existing(ctx, tx, b.byItem[id])
		if err != nil {
			return BatchResult{}, nil, err
		}
		var fresh []Order
		for _, o := range b.byItem[id] {
			other, ok := stored[o.ID]
			switch {
			case !ok:
				fresh = append(fresh, o)
			case !same(other, o):
				res.Collided = append(res.Collided, Collision{Order: o, Other: other})
			}
		}
		st, known := state[id]
		if !known || excluded[id] {
			res.Refused = append(res.Refused, fresh...)
			continue
		}
		if room := max(st.Stock-st.Sold, 0); int64(len(fresh)) > room {
			// Only the excess is refused: the earliest orders (ids grow
			// with time) are the ones that fit.
			res.Refused = append(res.Refused, fresh[room:]...)
			fresh = fresh[:room]
		}
		// The price is the item's, read under its row lock. An item's price
		// is fixed when it is created (no route changes it), so this is the
		// price the order was accepted at; a future price change must carry
		// the price in the reservation instead (DESIGN "Prices").
		for i := range fresh {
			fresh[i].AmountMinor, fresh[i].Currency = st.PriceMinor, st.Currency
		}
		ok, err := insertGuarded(ctx, tx, id, fresh)
		if err != nil {
			return BatchResult{}, nil, err
		}
		if !ok {
			failed = append(failed, id)
			continue
		}
		res.Inserted += len(fresh)
	}
	if len(failed) > 0 {
		return BatchResult{}, failed, errRedo
	}
	return res, nil, nil
}

// insertGuarded inserts an item's new rows and moves its sold counter by
// as many, unless that would pass its stock (false: the caller rolls back).
func insertGuarded(ctx context.Context, tx *sqlx.Tx, item int64, fresh []Order) (bool, error) {
	if len(fresh) == 0 {
		return true, nil
	}
	// INSERT IGNORE all the same: the order_id primary key, not the read
	// above, is what keeps an order from being stored twice.
	n, err := insertOrders(ctx, tx, fresh)
	if err != nil {
		return false, err
	}
	if n != int64(len(fresh)) {
		return false, errRace
	}
	// The guard is the DB's own no-oversell check: sold counts active
	// orders and never passes stock.
	res, err := tx.ExecContext(ctx,
		"UPDATE items SET sold = sold + ? WHERE id = ? AND sold + ? <= stock", n, item, n)
	if err != nil {
		return false, fmt.Errorf("guard item %d: %w", item, err)
	}
	ok, err := oneRow(res)
	if err != nil {
		return false, fmt.Errorf("guard item %d: %w", item, err)
	}
	return ok, nil
}

// itemState is what the stock guard needs of an item, and the price its
// new orders are stored at.
type itemState struct {
	Sold       int64  `db:"sold"`
	Stock      int64  `db:"stock"`
	PriceMinor int64  `db:"price_minor"`
	Currency   string `db:"currency"`
}

// lockItems locks the rows of the given items (ascending ids) until the
// transaction ends and returns their state; unknown items are absent.
func lockItems(ctx context.Context, tx *sqlx.Tx, ids []int64) (map[int64]itemState, error) {
	q, args, err := sqlx.In("SELECT id, sold, stock, price_minor, currency FROM items WHERE id IN (?) ORDER BY id FOR UPDATE", ids)
	if err != nil {
		return nil, fmt.Errorf("lock items: %w", err)
	}
	var rows []struct {
		ID int64 `db:"id"`
		itemState
	}
	if err := tx.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, fmt.Errorf("lock items: %w", err)
	}
	out := make(map[int64]itemState, len(rows))
	for _, r := range rows {
		out[r.ID] = r.itemState
	}
	return out, nil
}

// insertOrders inserts rows with INSERT IGNORE and returns how many were new:
// the order_id primary key turns a redelivered order into a no-op.
func insertOrders(ctx context.Context, tx *sqlx.Tx, rows []Order) (int64, error) {
	var total int64
	for chunk := range slices.Chunk(rows, insertChunk) {
		var q strings.Builder
		q.WriteString("INSERT IGNORE INTO orders (order_id, item_id, user_id, shard, status, created_at, expires_at, amount_minor, currency) VALUES ")
		args := make([]any, 0, len(chunk)*8)
		for i, o := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, 'pending', ?, ?, ?, ?)")
			args = append(args, o.ID, o.ItemID, o.UserID, o.Shard, ms(o.CreatedAt), ms(o.ExpiresAt), o.AmountMinor, o.Currency)
		}
		res, err := tx.ExecContext(ctx, q.String(), args...)
		if err != nil {
			return 0, fmt.Errorf("insert orders of item %d: %w", chunk[0].ItemID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("insert orders of item %d: %w", chunk[0].ItemID, err)
		}
		total += n
	}
	return total, nil
}

// existing returns the stored orders (ID, ItemID and UserID only) among
// the given ones' ids.
func existing(ctx context.Context, q sqlx.QueryerContext, orders []Order) (map[int64]Order, error) {
	stored := map[int64]Order{}
	for chunk := range slices.Chunk(orders, insertChunk) {
		ids := make([]int64, len(chunk))
		for i, o := range chunk {
			ids[i] = o.ID
		}
		query, args, err := sqlx.In("SELECT order_id, item_id, user_id FROM orders WHERE order_id IN (?)", ids)
		if err != nil {
			return nil, fmt.Errorf("find stored orders: %w", err)
		}
		var found []Order
		if err := sqlx.SelectContext(ctx, q, &found, query, args...); err != nil {
			return nil, fmt.Errorf("find stored orders: %w", err)
		}
		for _, o := range found {
			stored[o.ID] = o
		}
	}
	return stored, nil
}

// Stored returns which of the order ids are in MySQL.
func (s *Store) Stored(ctx context.Context, ids []int64) (map[int64]bool, error) {
	orders := make([]Order, len(ids))
	for i, id := range ids {
		orders[i].ID = id
	}
	stored, err := existing(ctx, s.db, orders)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]bool, len(stored))
	for id := range stored {
		out[id] = true
	}
	return out, nil
}

// Pay marks a pending order of userID paid, if its payment window is still
// open at now. Otherwise it changes nothing and says why: ErrNotFound (no
// such order, or another user's), ErrAlreadyPaid, ErrCancelled or
// ErrPaymentExpired.
func (s *Store) Pay(ctx context.Context, orderID, userID int64, now time.Time) (Order, error) {
	now = ms(now)
	o, err := s.pay(ctx, orderID, userID, now)
	if errors.Is(err, errArrived) {
		// The row landed between the UPDATE and the read: it is pending
		// and payable, so the UPDATE matches it now.
		o, err = s.pay(ctx, orderID, userID, now)
	}
	if errors.Is(err, errArrived) {
		return Order{}, fmt.Errorf("pay order %d: %w", orderID, ErrNotFound)
	}
	return o, err
}

// errArrived: Pay's UPDATE matched nothing, yet the row read right after
// it is pending and payable (the writer stored it in between).
var errArrived = errors.New("order arrived during payment")

func (s *Store) pay(ctx context.Context, orderID, userID int64, now time.Time) (Order, error) {
	var ok bool
	err := s.retry(ctx, func() error {
		// One conditional UPDATE: the row lock makes it race-free against a
		// concurrent payment or CancelExpired, exactly one of them matches.
		res, err := s.db.ExecContext(ctx,
			`UPDATE orders SET status = 'paid', paid_at = ?
			 WHERE order_id = ? AND user_id = ? AND status = 'pending' AND expires_at > ?`,
			now, orderID, userID, now)
		if err != nil {
			return err
		}
		ok, err = oneRow(res)
		return err
	})
	if err != nil {
		return Order{}, fmt.Errorf("pay order %d: %w", orderID, err)
	}
	// Paid and cancelled are final, so reading the row afterwards shows
	// the outcome of the UPDATE (or why it matched nothing).
	o, err := s.Order(ctx, orderID)
	if errors.Is(err, ErrNotFound) || (err == nil && o.UserID != userID) {
		return Order{}, fmt.Errorf("pay order %d: %w", orderID, ErrNotFound)
	}
	if err != nil {
		return Order{}, fmt.Errorf("pay: %w", err)
	}
	if ok {
		return o, nil
	}
	switch {
	case o.Status == StatusPaid:
		return Order{}, fmt.Errorf("pay order %d: %w", orderID, ErrAlreadyPaid)
	case o.Status == StatusCancelled:
		return Order{}, fmt.Errorf("pay order %d: %w", orderID, ErrCancelled)
	case o.Status == StatusPending && !o.ExpiresAt.After(now):
		return Order{}, fmt.Errorf("pay order %d: %w", orderID, ErrPaymentExpired)
	case o.Status == StatusPending:
		return Order{}, errArrived
	}
	return Order{}, fmt.Errorf("pay order %d: refused in state %q expiring %s", orderID, o.Status, o.ExpiresAt)
}

// CancelExpired cancels up to limit pending orders whose payment window
// closed at or before now, and returns the ones this call cancelled. Each
// cancellation is its own transaction that also gives the unit back to
// items.sold; two concurrent callers never both cancel (or return) the same
// order. The caller then returns each unit to Redis and calls MarkReturned.
// On error the orders cancelled so far are returned too (Unreturned would
// find them later anyway).
func (s *Store) CancelExpired(ctx context.Context, now time.Time, limit int) ([]Order, error) {
	if limit <= 0 {
		return nil, nil
	}
	now = ms(now)
	var cands []Order
	err := s.db.SelectContext(ctx, &cands,
		"SELECT "+orderCols+` FROM orders WHERE status = 'pending' AND stock_returned = 0 AND expires_at <= ?
		 ORDER BY expires_at, order_id LIMIT ?`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("find expired orders: %w", err)
	}
	var done []Order
	for _, o := range cands {
		var won bool
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			won = false
			// The candidate list is a snapshot: re-check the state under
			// the row lock, so a concurrent sweeper or payment that got
			// there first makes this match nothing.
			res, err := tx.ExecContext(ctx,
				`UPDATE orders SET status = 'cancelled', cancelled_at = ?
				 WHERE order_id = ? AND status = 'pending' AND expires_at <= ?`,
				now, o.ID, now)
			if err != nil {
				return err
			}
			if ok, err := oneRow(res); err != nil || !ok {
				return err
			}
			// Same transaction: the order stops counting as sold exactly
			// when it is cancelled, never twice.
			if err := unsell(ctx, tx, o.ItemID); err != nil {
				return err
			}
			won = true
			return nil
		})
		if err != nil {
			return done, fmt.Errorf("cancel order %d: %w", o.ID, err)
		}
		if won {
			at := now
			o.Status, o.CancelledAt = StatusCancelled, &at
			done = append(done, o)
		}
	}
	return done, nil
}

// Unreturned returns up to limit cancelled orders whose unit is not marked
// back in Redis yet, oldest expiry first (index order: it reads only those).
func (s *Store) Unreturned(ctx context.Context, limit int) ([]Order, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []Order
	err := s.db.SelectContext(ctx, &out,
		"SELECT "+orderCols+` FROM orders WHERE status = 'cancelled' AND stock_returned = 0
		 ORDER BY expires_at, order_id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("find unreturned orders: %w", err)
	}
	return out, nil
}

// UnreturnedOf is Unreturned for one item.
func (s *Store) UnreturnedOf(ctx context.Context, itemID int64, limit int) ([]Order, error) {
	var out []Order
	err := s.db.SelectContext(ctx, &out,
		"SELECT "+orderCols+` FROM orders WHERE item_id = ? AND status = 'cancelled' AND stock_returned = 0
		 ORDER BY cancelled_at, order_id LIMIT ?`, itemID, limit)
	if err != nil {
		return nil, fmt.Errorf("find unreturned orders of item %d: %w", itemID, err)
	}
	return out, nil
}

// MarkReturned records that the units of cancelled orders are back in
// Redis. Marking an order twice, or one that is not cancelled, does nothing.
func (s *Store) MarkReturned(ctx context.Context, orderIDs ...int64) error {
	for chunk := range slices.Chunk(orderIDs, insertChunk) {
		q, args, err := sqlx.In(
			"UPDATE orders SET stock_returned = 1 WHERE status = 'cancelled' AND order_id IN (?)", chunk)
		if err != nil {
			return fmt.Errorf("mark returned: %w", err)
		}
		if err := s.retry(ctx, func() error {
			_, err := s.db.ExecContext(ctx, q, args...)
			return err
		}); err != nil {
			return fmt.Errorf("mark %d orders returned: %w", len(chunk), err)
		}
	}
	return nil
}

// Counts is an item's orders by state, for the reconciler and stats.
type Counts struct {
	Pending, Paid, Cancelled int64
	// Returned counts the cancelled orders whose unit is back in Redis.
	Returned int64
	// Sold is items.sold, Stock is items.stock.
	Sold  int64
	Stock int64
	// RefundRequired counts the cancelled orders paid late (payments.go);
	// Revenue sums the amounts of the paid orders, in the item's currency.
	RefundRequired int64
	Revenue        int64
}

// Counts returns the item's order counts, all read from one snapshot, or
// ErrNotFound.
func (s *Store) Counts(ctx context.Context, itemID int64) (Counts, error) {
	var c Counts
	// One read-only transaction: under REPEATABLE READ both queries see
	// the same snapshot, so Sold agrees with Pending + Paid.
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		c = Counts{}
		if err := soldStock(ctx, tx, itemID, &c.Sold, &c.Stock); err != nil {
			return err
		}
		var rows []struct {
			Status   Status `db:"status"`
			Returned bool   `db:"stock_returned"`
			Refund   bool   `db:"refund_required"`
			N        int64  `db:"n"`
			Amount   int64  `db:"amount"`
		}
		err := tx.SelectContext(ctx, &rows,
			`SELECT status, stock_returned, refund_required, COUNT(*) AS n, COALESCE(SUM(amount_minor), 0) AS amount
			 FROM orders WHERE item_id = ? GROUP BY status, stock_returned, refund_required`, itemID)
		if err != nil {
			return err
		}
		for _, r := range rows {
			switch r.Status {
			case StatusPending:
				c.Pending += r.N
			case StatusPaid:
				c.Paid += r.N
				c.Revenue += r.Amount
			case StatusCancelled:
				c.Cancelled += r.N
				if r.Returned {
					c.Returned += r.N
				}
				if r.Refund {
					c.RefundRequired += r.N
				}
			}
		}
		return nil
	})
	if err != nil {
		return Counts{}, fmt.Errorf("count orders of item %d: %w", itemID, err)
	}
	return c, nil
}

// soldStock reads items.sold and items.stock of itemID, or ErrNotFound.
func soldStock(ctx context.Context, q sqlx.QueryerContext, itemID int64, sold, stock *int64) error {
	err := q.QueryRowxContext(ctx, "SELECT sold, stock FROM items WHERE id = ?", itemID).Scan(sold, stock)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("item %d: %w", itemID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sold of item %d: %w", itemID, err)
	}
	return nil
}

// Balance is what an item's books need of MySQL between two counts of its
// orders (Counts): the sold counter, the stock, and the cancelled orders
// whose unit is not back in Redis.
type Balance struct {
	Sold, Stock, Unreturned int64
}

// Balance reads the item's Balance from one snapshot, or ErrNotFound. It
// costs a primary-key read and the item's unreturned orders, not all of
// its orders: items.sold moves in the transaction that inserts or cancels
// an order, so it equals the active orders in any snapshot, and the
// unreturned ones are read through an index that holds only them.
func (s *Store) Balance(ctx context.Context, itemID int64) (Balance, error) {
	var b Balance
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		b = Balance{}
		if err := soldStock(ctx, tx, itemID, &b.Sold, &b.Stock); err != nil {
			return err
		}
		return tx.QueryRowxContext(ctx,
			`SELECT COUNT(*) FROM orders FORCE INDEX (idx_orders_status_returned_expires)
			 WHERE status = 'cancelled' AND stock_returned = 0 AND item_id = ?`, itemID).Scan(&b.Unreturned)
	})
	if err != nil {
		return Balance{}, fmt.Errorf("balance of item %d: %w", itemID, err)
	}
	return b, nil
}

// ActiveByShard returns the number of active (pending + paid) orders of the
// item per stock shard, for rebuilding Redis stock. Shards without orders
// are absent.
func (s *Store) ActiveByShard(ctx context.Context, itemID int64) (map[int]int64, error) {
	return activeBy[int](ctx, s, itemID, "shard")
}

// ActiveByUser returns the number of active (pending + paid) orders of the
// item per user, for rebuilding the per-user limits in Redis.
func (s *Store) ActiveByUser(ctx context.Context, itemID int64) (map[int64]int64, error) {
	return activeBy[int64](ctx, s, itemID, "user_id")
}

// activeBy counts the item's active orders grouped by column (a constant of
// this file, never input).
func activeBy[K int | int64](ctx context.Context, s *Store, itemID int64, column string) (map[K]int64, error) {
	var rows []struct {
		K K     `db:"k"`
		N int64 `db:"n"`
	}
	err := s.db.SelectContext(ctx, &rows,
		`SELECT `+column+` AS k, COUNT(*) AS n FROM orders
		 WHERE item_id = ? AND status IN ('pending', 'paid') GROUP BY `+column, itemID)
	if err != nil {
		return nil, fmt.Errorf("active orders of item %d by %s: %w", itemID, column, err)
	}
	out := make(map[K]int64, len(rows))
	for _, r := range rows {
		out[r.K] = r.N
	}
	return out, nil
}

// unsell takes back one sold unit of item in tx: the step of every
// cancellation (by expiry, by the buyer, or a late payment's refund) that
// has to happen in the transaction that cancels the order, so the unit
// stops counting as sold exactly once.
func unsell(ctx context.Context, tx *sqlx.Tx, item int64) error {
	res, err := tx.ExecContext(ctx, "UPDATE items SET sold = sold - 1 WHERE id = ? AND sold > 0", item)
	if err != nil {
		return err
	}
	ok, err := oneRow(res)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("item %d missing or sold already 0", item)
	}
	return nil
}

// oneRow reports whether a statement changed a row.
func oneRow(res sql.Result) (bool, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("rows affected: %w", err)
	}
	return n > 0, nil
}

// inTx runs fn in a transaction, committing if it returns nil and rolling
// back otherwise; a deadlock or lock wait timeout reruns it from the start.
func (s *Store) inTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	return s.retry(ctx, func() error {
		tx, err := s.db.BeginTxx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if err := fn(tx); err != nil {
			tx.Rollback() // the deadlock victim is rolled back already
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	})
}

// retry runs fn until it succeeds, fails with an error other than a
// deadlock or lock wait timeout, or has run maxAttempts times. Both errors
// leave nothing of the failed run behind once it is rolled back, so the
// rerun is safe; jittered backoff keeps the same writers from colliding
// again in lockstep.
func (s *Store) retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		d := min(5*time.Millisecond<<(attempt-1), 250*time.Millisecond)
		d = d/2 + rand.N(d/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (after %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == errDeadlock || me.Number == errLockWaitTimeout)
}
