package order_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"seckill/app/testenv"
	"seckill/order"
)

// storeT0 is the sale start every store test measures time from.
var storeT0 = time.Date(2030, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

func storeUnderTest(t *testing.T) (*order.Store, *sqlx.DB) {
	t.Helper()
	_, db := testenv.MySQL(t)
	db.SetMaxOpenConns(64)
	return order.NewStore(db), db
}

func storeItem(t *testing.T, s *order.Store, stock int64) order.Item {
	t.Helper()
	it, err := s.CreateItem(context.Background(), order.Item{
		Name: "phone", Stock: stock, Shards: 4, PerUserLimit: 2, StartsAt: storeT0,
	})
	if err != nil {
		t.Fatalf("create item: %v", err)
	}
	return it
}

// storeOrders returns n new orders of the item with ids from first on,
// expiring at exp; user and shard vary with the id.
func storeOrders(itemID, first int64, n int, exp time.Time) []order.Order {
	out := make([]order.Order, n)
	for i := range out {
		id := first + int64(i)
		out[i] = order.Order{
			ID: id, ItemID: itemID, UserID: 1000 + id%7, Shard: int(id % 4),
			CreatedAt: storeT0, ExpiresAt: exp,
		}
	}
	return out
}

func storeInsert(t *testing.T, s *order.Store, orders []order.Order) (int, []order.Order) {
	t.Helper()
	n, refused, err := s.InsertBatch(context.Background(), orders)
	if err != nil {
		t.Fatalf("insert batch: %v", err)
	}
	return n, refused
}

func storeSold(t *testing.T, s *order.Store, itemID int64) int64 {
	t.Helper()
	it, err := s.Item(context.Background(), itemID)
	if err != nil {
		t.Fatalf("get item: %v", err)
	}
	return it.Sold
}

func storeCount(t *testing.T, db *sqlx.DB, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.Get(&n, "SELECT COUNT(*) FROM orders WHERE "+where, args...); err != nil {
		t.Fatalf("count orders: %v", err)
	}
	return n
}

func ids(orders []order.Order) []int64 {
	out := make([]int64, len(orders))
	for i, o := range orders {
		out[i] = o.ID
	}
	slices.Sort(out)
	return out
}

// orderString renders an order with its times in one location, so orders
// compare equal when they hold the same instants.
func orderString(o order.Order) string {
	tm := func(t *time.Time) string {
		if t == nil {
			return "nil"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("{id:%d item:%d user:%d shard:%d status:%s created:%s expires:%s paid:%s cancelled:%s returned:%t}",
		o.ID, o.ItemID, o.UserID, o.Shard, o.Status, tm(&o.CreatedAt), tm(&o.ExpiresAt), tm(o.PaidAt), tm(o.CancelledAt), o.StockReturned)
}

func TestStoreItem(t *testing.T) {
	s, _ := storeUnderTest(t)
	ctx := context.Background()
	end := storeT0.Add(time.Hour)
	want := order.Item{
		Name: "phone", Stock: 100, Shards: 8, PerUserLimit: 1,
		StartsAt: storeT0.Add(123456 * time.Nanosecond), EndsAt: &end, Sold: 42,
	}
	before := time.Now().Add(-time.Second)
	got, err := s.CreateItem(ctx, want)
	if err != nil {
		t.Fatalf("create item: %v", err)
	}
	if got.ID <= 0 {
		t.Errorf("ID: got %d, want > 0", got.ID)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt: got %v, want about now", got.CreatedAt)
	}
	if got.Sold != 0 {
		t.Errorf("Sold: got %d, want 0 (a new item sold nothing)", got.Sold)
	}
	if !got.StartsAt.Equal(storeT0) {
		t.Errorf("StartsAt: got %v, want %v (millisecond precision)", got.StartsAt, storeT0)
	}

	read, err := s.Item(ctx, got.ID)
	if err != nil {
		t.Fatalf("get item: %v", err)
	}
	if g, w := fmt.Sprint(read.ID, read.Name, read.Stock, read.Shards, read.PerUserLimit, read.Sold),
		fmt.Sprint(got.ID, got.Name, got.Stock, got.Shards, got.PerUserLimit, got.Sold); g != w {
		t.Errorf("read back: got %s, want %s", g, w)
	}
	if !read.StartsAt.Equal(got.StartsAt) || read.EndsAt == nil || !read.EndsAt.Equal(end) || !read.CreatedAt.Equal(got.CreatedAt) {
		t.Errorf("read back times: got %v %v %v, want %v %v %v", read.StartsAt, read.EndsAt, read.CreatedAt, got.StartsAt, end, got.CreatedAt)
	}

	second := storeItem(t, s, 5)
	items, err := s.Items(ctx)
	if err != nil {
		t.Fatalf("list items: %v", err)
	}
	if g, w := fmt.Sprint(len(items), items[0].ID, items[1].ID, items[1].EndsAt == nil), fmt.Sprint(2, got.ID, second.ID, true); g != w {
		t.Errorf("items (count, ids, second has no end): got %s, want %s", g, w)
	}

	if _, err := s.Item(ctx, 999999); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("missing item: got %v, want ErrNotFound", err)
	}
	if _, err := s.Order(ctx, 999999); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("missing order: got %v, want ErrNotFound", err)
	}
}

func TestStoreCreateItemInvalid(t *testing.T) {
	s, _ := storeUnderTest(t)
	before := storeT0.Add(-time.Hour)
	ok := order.Item{Name: "x", Stock: 1, Shards: 1, PerUserLimit: 1, StartsAt: storeT0}
	tests := []struct {
		name string
		edit func(*order.Item)
	}{
		{"empty name", func(it *order.Item) { it.Name = " " }},
		{"negative stock", func(it *order.Item) { it.Stock = -1 }},
		{"no shards", func(it *order.Item) { it.Shards = 0 }},
		{"no per-user limit", func(it *order.Item) { it.PerUserLimit = 0 }},
		{"no start", func(it *order.Item) { it.StartsAt = time.Time{} }},
		{"ends before start", func(it *order.Item) { it.EndsAt = &before }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := ok
			tt.edit(&it)
			if _, err := s.CreateItem(context.Background(), it); !errors.Is(err, order.ErrInvalidItem) {
				t.Errorf("got %v, want ErrInvalidItem", err)
			}
		})
	}
	items, err := s.Items(context.Background())
	if err != nil {
		t.Fatalf("list items: %v", err)
	}
	if len(items) != 0 {
		t.Errorf("items after invalid creates: got %d, want 0", len(items))
	}
}

func TestInsertBatchRedelivery(t *testing.T) {
	s, db := storeUnderTest(t)
	ctx := context.Background()
	it := storeItem(t, s, 100)
	exp := storeT0.Add(15*time.Minute + 999*time.Microsecond)
	batch := storeOrders(it.ID, 1, 10, exp)

	n, refused := storeInsert(t, s, batch)
	if n != 10 || len(refused) != 0 {
		t.Fatalf("first delivery: got %d inserted, %d refused, want 10, 0", n, len(refused))
	}
	got, err := s.Order(ctx, 3)
	if err != nil {
		t.Fatalf("get order: %v", err)
	}
	want := batch[2]
	want.Status, want.ExpiresAt = order.StatusPending, storeT0.Add(15*time.Minute)
	if g, w := orderString(got), orderString(want); g != w {
		t.Errorf("order read back:\n got %s\nwant %s", g, w)
	}

	// The same messages again, plus two new ones and a duplicate within
	// the batch: only the new ones count.
	again := append(slices.Clone(batch), storeOrders(it.ID, 11, 2, exp)...)
	again = append(again, batch[0])
	n, refused = storeInsert(t, s, again)
	if n != 2 || len(refused) != 0 {
		t.Errorf("redelivery: got %d inserted, %d refused, want 2, 0", n, len(refused))
	}
	if got := storeSold(t, s, it.ID); got != 12 {
		t.Errorf("sold: got %d, want 12", got)
	}
	if got := storeCount(t, db, "item_id = ?", it.ID); got != 12 {
		t.Errorf("rows: got %d, want 12", got)
	}

	n, refused = storeInsert(t, s, batch)
	if n != 0 || len(refused) != 0 || storeSold(t, s, it.ID) != 12 {
		t.Errorf("third delivery: got %d inserted, %d refused, want 0, 0 and sold unchanged", n, len(refused))
	}
	if n, refused := storeInsert(t, s, nil); n != 0 || len(refused) != 0 {
		t.Errorf("empty batch: got %d inserted, %d refused, want 0, 0", n, len(refused))
	}
}

func TestInsertBatchGuard(t *testing.T) {
	s, db := storeUnderTest(t)
	a := storeItem(t, s, 3)
	b := storeItem(t, s, 10)
	exp := storeT0.Add(time.Hour)

	// Each step builds on the previous ones.
	steps := []struct {
		name         string
		batch        []order.Order
		wantInserted int
		wantRefused  []int64
		wantSoldA    int64
		wantSoldB    int64
	}{
		{
			name:         "5 of stock 3: the first 3 fit, the excess refused, other item written",
			batch:        append(storeOrders(a.ID, 1, 5, exp), storeOrders(b.ID, 101, 4, exp)...),
			wantInserted: 7, wantRefused: []int64{4, 5}, wantSoldA: 3, wantSoldB: 4,
		},
		{
			name:         "a full item refuses every new row",
			batch:        storeOrders(a.ID, 11, 3, exp),
			wantInserted: 0, wantRefused: []int64{11, 12, 13}, wantSoldA: 3, wantSoldB: 4,
		},
		{
			name:         "one more refused",
			batch:        append(storeOrders(a.ID, 21, 1, exp), storeOrders(b.ID, 105, 1, exp)...),
			wantInserted: 1, wantRefused: []int64{21}, wantSoldA: 3, wantSoldB: 5,
		},
		{
			name:         "redelivered rows with a new one: only the new one refused",
			batch:        append(storeOrders(a.ID, 1, 3, exp), storeOrders(a.ID, 22, 1, exp)...),
			wantInserted: 0, wantRefused: []int64{22}, wantSoldA: 3, wantSoldB: 5,
		},
		{
			name: "unknown item and invalid rows refused",
			batch: []order.Order{
				{ID: 31, ItemID: 999999, UserID: 1, CreatedAt: storeT0, ExpiresAt: exp},
				{ID: 32, ItemID: b.ID, UserID: 1, CreatedAt: storeT0}, // no expiry
				{ID: 0, ItemID: b.ID, UserID: 1, CreatedAt: storeT0, ExpiresAt: exp},
				{ID: 33, ItemID: b.ID, UserID: 1, CreatedAt: storeT0, ExpiresAt: exp},
			},
			wantInserted: 1, wantRefused: []int64{0, 31, 32}, wantSoldA: 3, wantSoldB: 6,
		},
	}
	for _, st := range steps {
		n, refused := storeInsert(t, s, st.batch)
		if n != st.wantInserted {
			t.Errorf("%s: inserted: got %d, want %d", st.name, n, st.wantInserted)
		}
		if g, w := fmt.Sprint(ids(refused)), fmt.Sprint(st.wantRefused); len(refused) != len(st.wantRefused) || g != w {
			t.Errorf("%s: refused: got %s, want %s", st.name, g, w)
		}
		if g := storeSold(t, s, a.ID); g != st.wantSoldA {
			t.Errorf("%s: sold of item a: got %d, want %d", st.name, g, st.wantSoldA)
		}
		if g := storeSold(t, s, b.ID); g != st.wantSoldB {
			t.Errorf("%s: sold of item b: got %d, want %d", st.name, g, st.wantSoldB)
		}
		// sold always equals the rows: refused rows left nothing behind.
		if g := storeCount(t, db, "item_id = ?", a.ID); g != st.wantSoldA {
			t.Errorf("%s: rows of item a: got %d, want %d", st.name, g, st.wantSoldA)
		}
		if g := storeCount(t, db, "item_id = ?", b.ID); g != st.wantSoldB {
			t.Errorf("%s: rows of item b: got %d, want %d", st.name, g, st.wantSoldB)
		}
	}
}

func TestInsertBatchConcurrentWriters(t *testing.T) {
	s, db := storeUnderTest(t)
	ctx := context.Background()
	items := []order.Item{storeItem(t, s, 1_000_000), storeItem(t, s, 1_000_000)}
	const (
		writers   = 16
		batches   = 4
		batchSize = 500
		idSpace   = 6000 // far fewer ids than rows sent: heavy overlap
	)
	deadlocks := func() int64 {
		var name string
		var n int64
		if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'").Scan(&name, &n); err != nil {
			return -1
		}
		return n
	}
	deadlocksBefore := deadlocks()

	// Batches are built up front, shuffled, each row's item fixed by its id
	// so every writer agrees on it.
	var all [writers][batches][]order.Order
	distinct := map[int64]map[int64]bool{items[0].ID: {}, items[1].ID: {}}
	for w := range writers {
		for b := range batches {
			batch := make([]order.Order, batchSize)
			for i := range batch {
				id := 1 + rand.Int64N(idSpace)
				it := items[id%2].ID
				batch[i] = storeOrders(it, id, 1, storeT0.Add(time.Hour))[0]
				distinct[it][id] = true
			}
			all[w][b] = batch
		}
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		inserted int
		errs     []error
		start    = make(chan struct{})
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for _, batch := range all[w] {
				n, refused, err := s.InsertBatch(ctx, batch)
				mu.Lock()
				inserted += n
				if err != nil {
					errs = append(errs, err)
				} else if len(refused) > 0 {
					errs = append(errs, fmt.Errorf("refused %d rows", len(refused)))
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Errorf("writer: %v", err)
	}
	t.Logf("InnoDB deadlocks during the test (server-wide): %d", deadlocks()-deadlocksBefore)

	total := 0
	for _, it := range items {
		want := int64(len(distinct[it.ID]))
		total += len(distinct[it.ID])
		if got := storeCount(t, db, "item_id = ?", it.ID); got != want {
			t.Errorf("rows of item %d: got %d, want %d", it.ID, got, want)
		}
		if got := storeSold(t, s, it.ID); got != want {
			t.Errorf("sold of item %d: got %d, want %d", it.ID, got, want)
		}
	}
	if inserted != total {
		t.Errorf("sum of inserted: got %d, want %d (each row counted once)", inserted, total)
	}
}

func TestPay(t *testing.T) {
	s, _ := storeUnderTest(t)
	ctx := context.Background()
	it := storeItem(t, s, 10)
	now := storeT0.Add(30 * time.Minute)
	const user = 1001
	mk := func(id int64, exp time.Time) order.Order {
		return order.Order{ID: id, ItemID: it.ID, UserID: user, Shard: 1, CreatedAt: storeT0, ExpiresAt: exp}
	}
	storeInsert(t, s, []order.Order{
		mk(1, now.Add(time.Millisecond)), // payable, just
		mk(2, now),                       // expired: the window closes at expires_at
		mk(3, now.Add(time.Hour)),        // paid below
		mk(4, now.Add(-time.Hour)),       // cancelled below
		mk(5, now.Add(time.Hour)),        // payable, but by its user only
	})
	if _, err := s.Pay(ctx, 3, user, now); err != nil {
		t.Fatalf("pay order 3: %v", err)
	}
	if got, err := s.CancelExpired(ctx, now.Add(-time.Minute), 10); err != nil || len(got) != 1 || got[0].ID != 4 {
		t.Fatalf("cancel order 4: got %v, %v, want [order 4], nil", ids(got), err)
	}

	refusals := []struct {
		name    string
		orderID int64
		userID  int64
		want    error
	}{
		{"missing", 99, user, order.ErrNotFound},
		{"another user's", 5, user + 1, order.ErrNotFound},
		{"expired at the boundary", 2, user, order.ErrPaymentExpired},
		{"already paid", 3, user, order.ErrAlreadyPaid},
		{"cancelled", 4, user, order.ErrCancelled},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := s.Order(ctx, tt.orderID)
			soldBefore := storeSold(t, s, it.ID)
			_, err := s.Pay(ctx, tt.orderID, tt.userID, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			after, _ := s.Order(ctx, tt.orderID)
			if g, w := orderString(after), orderString(before); g != w {
				t.Errorf("order after refusal:\n got %s\nwant %s", g, w)
			}
			if g := storeSold(t, s, it.ID); g != soldBefore {
				t.Errorf("sold after refusal: got %d, want %d", g, soldBefore)
			}
		})
	}

	paid, err := s.Pay(ctx, 1, user, now.Add(999*time.Microsecond))
	if err != nil {
		t.Fatalf("pay order 1: %v", err)
	}
	if paid.Status != order.StatusPaid || paid.PaidAt == nil || !paid.PaidAt.Equal(now) {
		t.Errorf("paid order: got status %s paid at %v, want paid at %v", paid.Status, paid.PaidAt, now)
	}
	if _, err := s.Pay(ctx, 1, user, now); !errors.Is(err, order.ErrAlreadyPaid) {
		t.Errorf("paying twice: got %v, want ErrAlreadyPaid", err)
	}
	// Paying moves nothing in sold: it counts pending and paid alike.
	if g := storeSold(t, s, it.ID); g != 4 {
		t.Errorf("sold: got %d, want 4", g)
	}
}

func TestCancelExpiredConcurrent(t *testing.T) {
	s, db := storeUnderTest(t)
	ctx := context.Background()
	it := storeItem(t, s, 1000)
	now := storeT0.Add(time.Hour)
	const expired = 200
	storeInsert(t, s, append(storeOrders(it.ID, 1, expired, now), storeOrders(it.ID, 1001, 5, now.Add(time.Millisecond))...))

	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results [2][]order.Order
		errs    [2]error
	)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = s.CancelExpired(ctx, now, expired+100)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("sweeper %d: %v", i, err)
		}
	}
	t.Logf("sweepers cancelled %d and %d", len(results[0]), len(results[1]))

	seen := map[int64]int{}
	for _, r := range results {
		for _, o := range r {
			seen[o.ID]++
			if o.Status != order.StatusCancelled || o.CancelledAt == nil || !o.CancelledAt.Equal(now) {
				t.Errorf("returned order %d: got status %s cancelled at %v, want cancelled at %v", o.ID, o.Status, o.CancelledAt, now)
			}
		}
	}
	if len(seen) != expired {
		t.Errorf("orders cancelled: got %d, want %d", len(seen), expired)
	}
	for id, n := range seen {
		if n != 1 || id > expired {
			t.Errorf("order %d: got returned %d times, want once and only if expired", id, n)
		}
	}
	if g := storeCount(t, db, "status = 'cancelled'"); g != expired {
		t.Errorf("cancelled rows: got %d, want %d", g, expired)
	}
	if g := storeSold(t, s, it.ID); g != 5 {
		t.Errorf("sold: got %d, want 5 (one decrement per cancelled order)", g)
	}
	if got, err := s.CancelExpired(ctx, now, 10); err != nil || len(got) != 0 {
		t.Errorf("third sweep: got %d orders, %v, want 0, nil", len(got), err)
	}
}

func TestPayRacesCancelExpired(t *testing.T) {
	s, db := storeUnderTest(t)
	ctx := context.Background()
	it := storeItem(t, s, 1000)
	const rounds = 100
	const user = 7
	paidWins, cancelWins := 0, 0
	for r := range int64(rounds) {
		// The order expires at exp; the payer's clock is 1ms earlier than
		// the sweeper's, so both are entitled and only the row lock decides.
		exp := storeT0.Add(time.Duration(r) * time.Minute)
		storeInsert(t, s, []order.Order{{ID: r + 1, ItemID: it.ID, UserID: user, CreatedAt: storeT0, ExpiresAt: exp}})
		var (
			wg        sync.WaitGroup
			start     = make(chan struct{})
			payErr    error
			cancelled []order.Order
			cancelErr error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, payErr = s.Pay(ctx, r+1, user, exp.Add(-time.Millisecond))
		}()
		go func() {
			defer wg.Done()
			<-start
			cancelled, cancelErr = s.CancelExpired(ctx, exp, 10)
		}()
		close(start)
		wg.Wait()
		if cancelErr != nil {
			t.Fatalf("round %d: cancel: %v", r, cancelErr)
		}
		switch {
		case payErr == nil && len(cancelled) == 0:
			paidWins++
		case errors.Is(payErr, order.ErrCancelled) && len(cancelled) == 1 && cancelled[0].ID == r+1:
			cancelWins++
		default:
			t.Fatalf("round %d: got pay %v and %d cancelled, want exactly one winner", r, payErr, len(cancelled))
		}
		o, err := s.Order(ctx, r+1)
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		if want := map[bool]order.Status{true: order.StatusPaid, false: order.StatusCancelled}[payErr == nil]; o.Status != want {
			t.Fatalf("round %d: status got %s, want %s", r, o.Status, want)
		}
	}
	t.Logf("payment won %d, sweeper won %d of %d rounds", paidWins, cancelWins, rounds)
	if g := storeSold(t, s, it.ID); g != int64(paidWins) {
		t.Errorf("sold: got %d, want %d (the paid orders)", g, paidWins)
	}
	if g := storeCount(t, db, "status = 'paid'"); g != int64(paidWins) {
		t.Errorf("paid rows: got %d, want %d", g, paidWins)
	}
}

func TestUnreturnedMarkReturned(t *testing.T) {
	s, _ := storeUnderTest(t)
	ctx := context.Background()
	it := storeItem(t, s, 100)
	now := storeT0.Add(time.Hour)
	storeInsert(t, s, storeOrders(it.ID, 1, 5, now))
	storeInsert(t, s, storeOrders(it.ID, 6, 1, now.Add(time.Hour))) // stays pending

	if got, err := s.Unreturned(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("before any cancel: got %v, %v, want none", ids(got), err)
	}
	if _, err := s.CancelExpired(ctx, now, 10); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	got, err := s.Unreturned(ctx, 3)
	if err != nil {
		t.Fatalf("unreturned: %v", err)
	}
	if g, w := fmt.Sprint(ids(got)), "[1 2 3]"; g != w {
		t.Errorf("unreturned with limit 3: got %s, want %s", g, w)
	}
	// Marking twice, and marking a pending order, is harmless.
	if err := s.MarkReturned(ctx, 1, 2, 6); err != nil {
		t.Fatalf("mark returned: %v", err)
	}
	if err := s.MarkReturned(ctx, 2); err != nil {
		t.Fatalf("mark returned again: %v", err)
	}
	if err := s.MarkReturned(ctx); err != nil {
		t.Fatalf("mark nothing: %v", err)
	}
	got, err = s.Unreturned(ctx, 10)
	if err != nil {
		t.Fatalf("unreturned: %v", err)
	}
	if g, w := fmt.Sprint(ids(got)), "[3 4 5]"; g != w {
		t.Errorf("unreturned after marking: got %s, want %s", g, w)
	}
	if o, _ := s.Order(ctx, 6); o.StockReturned || o.Status != order.StatusPending {
		t.Errorf("pending order 6: got returned=%t status %s, want false pending", o.StockReturned, o.Status)
	}
	if o, _ := s.Order(ctx, 1); !o.StockReturned {
		t.Errorf("order 1 returned: got false, want true")
	}
}

func TestStoreCountsAndActive(t *testing.T) {
	s, _ := storeUnderTest(t)
	ctx := context.Background()
	it := storeItem(t, s, 50)
	other := storeItem(t, s, 50)
	now := storeT0.Add(time.Hour)
	// Orders 1-10: user 1000 + id%7, shard id%4. 1-4 expire and get
	// cancelled, 5 and 6 get paid, 7-10 stay pending.
	storeInsert(t, s, append(storeOrders(it.ID, 1, 4, now), storeOrders(it.ID, 5, 6, now.Add(time.Hour))...))
	storeInsert(t, s, storeOrders(other.ID, 100, 3, now))
	if _, err := s.CancelExpired(ctx, now, 4); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	for _, id := range []int64{5, 6} {
		if _, err := s.Pay(ctx, id, 1000+id%7, now); err != nil {
			t.Fatalf("pay %d: %v", id, err)
		}
	}
	if err := s.MarkReturned(ctx, 1); err != nil {
		t.Fatalf("mark returned: %v", err)
	}

	c, err := s.Counts(ctx, it.ID)
	if err != nil {
		t.Fatalf("counts: %v", err)
	}
	if g, w := fmt.Sprintf("%+v", c), fmt.Sprintf("%+v", order.Counts{Pending: 4, Paid: 2, Cancelled: 4, Returned: 1, Sold: 6, Stock: 50}); g != w {
		t.Errorf("counts: got %s, want %s", g, w)
	}
	if _, err := s.Counts(ctx, 999999); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("counts of missing item: got %v, want ErrNotFound", err)
	}

	// Active orders 5-10: shards 1,2,3,0,1,2 and users 1005,1006,1000,1001,1002,1003.
	byShard, err := s.ActiveByShard(ctx, it.ID)
	if err != nil {
		t.Fatalf("active by shard: %v", err)
	}
	if g, w := fmt.Sprint(byShard), fmt.Sprint(map[int]int64{0: 1, 1: 2, 2: 2, 3: 1}); g != w {
		t.Errorf("active by shard: got %s, want %s", g, w)
	}
	byUser, err := s.ActiveByUser(ctx, it.ID)
	if err != nil {
		t.Fatalf("active by user: %v", err)
	}
	if g, w := fmt.Sprint(byUser), fmt.Sprint(map[int64]int64{1000: 1, 1001: 1, 1002: 1, 1003: 1, 1005: 1, 1006: 1}); g != w {
		t.Errorf("active by user: got %s, want %s", g, w)
	}
	if m, err := s.ActiveByShard(ctx, 999999); err != nil || len(m) != 0 {
		t.Errorf("active by shard of missing item: got %v, %v, want empty, nil", m, err)
	}
}

// TestInsertBatchDeadlockVictim makes InsertBatch lose a real InnoDB deadlock
// and checks that it reruns the transaction instead of failing or losing
// the row.
func TestInsertBatchDeadlockVictim(t *testing.T) {
	s, db := storeUnderTest(t)
	ctx := context.Background()
	a := storeItem(t, s, 10)
	heavy := storeItem(t, s, 1000)
	exp := storeT0.Add(time.Hour)
	deadlocks := func() int64 {
		var name string
		var n int64
		if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'").Scan(&name, &n); err != nil {
			t.Fatalf("read deadlock count: %v", err)
		}
		return n
	}
	deadlocksBefore := deadlocks()

	// Another transaction, bypassing the store, writes 50 rows (so InnoDB,
	// which rolls back the smaller transaction, picks InsertBatch) and
	// order 1, which InsertBatch is about to insert.
	other, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer other.Rollback()
	for _, o := range append(storeOrders(heavy.ID, 1000, 50, exp), storeOrders(a.ID, 1, 1, exp)...) {
		if _, err := other.Exec("INSERT INTO orders (order_id, item_id, user_id, shard, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
			o.ID, o.ItemID, o.UserID, o.Shard, o.CreatedAt, o.ExpiresAt); err != nil {
			t.Fatalf("insert rows: %v", err)
		}
	}

	type result struct {
		n       int
		refused []order.Order
		err     error
	}
	done := make(chan result, 1)
	go func() {
		// Locks item a, then waits for the other transaction's order 1.
		n, refused, err := s.InsertBatch(ctx, storeOrders(a.ID, 1, 1, exp))
		done <- result{n, refused, err}
	}()
	// MariaDB serves INNODB_TRX from a cache that, polled every few
	// milliseconds, was seen never to refresh: poll slower.
	waiting := func() int {
		var n int
		err := db.Get(&n, `SELECT COUNT(*) FROM information_schema.INNODB_TRX t
			JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
			WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()`)
		if err != nil {
			t.Fatalf("look at lock waits: %v", err)
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); waiting() == 0; time.Sleep(150 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("InsertBatch never waited for order 1")
		}
	}
	// Close the cycle: wait for the item row InsertBatch holds.
	if _, err := other.Exec("UPDATE items SET stock = stock + 1 WHERE id = ?", a.ID); err != nil {
		t.Fatalf("the other transaction was the deadlock victim (%v); want InsertBatch to be", err)
	}
	if err := other.Rollback(); err != nil {
		t.Fatalf("rollback: %v", err)
	}

	r := <-done
	if r.err != nil || r.n != 1 || len(r.refused) != 0 {
		t.Fatalf("InsertBatch after losing a deadlock: got %d inserted, %d refused, %v, want 1, 0, nil", r.n, len(r.refused), r.err)
	}
	if g := storeSold(t, s, a.ID); g != 1 {
		t.Errorf("sold: got %d, want 1", g)
	}
	if g := storeCount(t, db, "order_id = 1"); g != 1 {
		t.Errorf("rows of order 1: got %d, want 1", g)
	}
	if g := deadlocks() - deadlocksBefore; g < 1 {
		t.Errorf("deadlocks during the test: got %d, want at least 1", g)
	}
}
