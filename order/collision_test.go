package order_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"seckill/order"
)

// An order id already stored for another buyer or item is not a
// redelivery: the second order is refused (a dead letter for the writer),
// never dropped as if stored. A true redelivery still inserts nothing and
// is not refused. (Runs against InsertBatch, as before InsertOrders.)
func TestInsertBatchIDCollision(t *testing.T) {
	s, db := storeUnderTest(t)
	a, b := storeItem(t, s, 100), storeItem(t, s, 100)
	exp := storeT0.Add(15 * time.Minute)
	mk := func(id, item, user int64) order.Order {
		return order.Order{ID: id, ItemID: item, UserID: user, Shard: 1, CreatedAt: storeT0, ExpiresAt: exp}
	}
	if n, refused := storeInsert(t, s, []order.Order{mk(1, a.ID, 501)}); n != 1 || len(refused) != 0 {
		t.Fatalf("first: got %d inserted, %d refused", n, len(refused))
	}
	// Order 1 again (redelivery), order 1 of another buyer of the same
	// item and of the other item (collisions), and order 2 twice in the
	// batch, for two buyers (a collision inside the batch).
	batch := []order.Order{mk(1, a.ID, 501), mk(1, a.ID, 502), mk(1, b.ID, 503), mk(2, a.ID, 504), mk(2, a.ID, 505)}
	n, refused := storeInsert(t, s, batch)
	if n != 1 {
		t.Errorf("inserted: got %d, want 1 (order 2 once)", n)
	}
	got := map[int64]bool{}
	for _, o := range refused {
		got[o.UserID] = true
	}
	if len(refused) != 3 || !got[502] || !got[503] || !got[505] {
		t.Errorf("refused: got %v, want the orders of users 502, 503 and 505", refused)
	}
	if storeSold(t, s, a.ID) != 2 || storeSold(t, s, b.ID) != 0 {
		t.Errorf("sold: got %d and %d, want 2 and 0", storeSold(t, s, a.ID), storeSold(t, s, b.ID))
	}
	if n := storeCount(t, db, "order_id IN (1, 2)"); n != 2 {
		t.Errorf("rows of ids 1 and 2: got %d, want 2", n)
	}
}

// InsertOrders tells collisions from the stock guard's refusals and names
// the order holding the id; the buyer of a collided order finds its dead
// letter, and another user does not.
func TestInsertOrdersCollisionDeadLetter(t *testing.T) {
	s, _ := storeUnderTest(t)
	ctx := context.Background()
	a := storeItem(t, s, 1)
	exp := storeT0.Add(15 * time.Minute)
	mk := func(id, user int64) order.Order {
		return order.Order{ID: id, ItemID: a.ID, UserID: user, Shard: 1, CreatedAt: storeT0, ExpiresAt: exp}
	}
	res, err := s.InsertOrders(ctx, []order.Order{mk(7, 601), mk(8, 602)})
	if err != nil || res.Inserted != 1 || len(res.Refused) != 1 || len(res.Collided) != 0 {
		t.Fatalf("first: got %+v, %v; want 1 inserted, order 8 refused by the guard", res, err)
	}
	res, err = s.InsertOrders(ctx, []order.Order{mk(7, 601), mk(7, 603)})
	if err != nil || res.Inserted != 0 || len(res.Refused) != 0 || len(res.Collided) != 1 {
		t.Fatalf("second: got %+v, %v; want the order of user 603 collided only", res, err)
	}
	c := res.Collided[0]
	if c.Order.UserID != 603 || c.Other.UserID != 601 || c.Other.ItemID != a.ID {
		t.Fatalf("collision: got %+v", c)
	}
	id, user, item, shard := c.Order.ID, c.Order.UserID, c.Order.ItemID, c.Order.Shard
	dl := order.DeadLetter{Reason: order.ReasonIDCollision, OrderID: &id, UserID: &user, ItemID: &item, Shard: &shard, Payload: []byte("m")}
	// Recorded twice (a redelivered batch): stored once.
	if err := s.RecordDeadLetters(ctx, []order.DeadLetter{dl, dl}); err != nil {
		t.Fatal(err)
	}
	d, err := s.DeadLetterFor(ctx, 7, 603)
	if err != nil || d.Reason != order.ReasonIDCollision || *d.UserID != 603 {
		t.Fatalf("dead letter of the collided buyer: got %+v, %v", d, err)
	}
	if _, err := s.DeadLetterFor(ctx, 7, 601); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("dead letter for the stored order's buyer: got %v, want ErrNotFound", err)
	}
	if n, err := s.DeadLetters(ctx, a.ID); err != nil || n != 1 {
		t.Errorf("dead letters of the item: got %d, %v; want 1", n, err)
	}
}
