package sale

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"seckill/app/testenv"
	"seckill/order"
)

// comSelect is the number of SELECTs the one connection of db has run.
func comSelect(t *testing.T, db *sqlx.DB) int64 {
	t.Helper()
	var name string
	var n int64
	if err := db.QueryRow("SHOW SESSION STATUS LIKE 'Com_select'").Scan(&name, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUnknownItemIDsSkipMySQL: a flood of distinct unknown item ids (the
// issue saw one MySQL SELECT each) costs MySQL a few reads of the highest
// id, and an item created on another instance is still found soon after.
func TestUnknownItemIDsSkipMySQL(t *testing.T) {
	ctx := context.Background()
	dsn, db := testenv.MySQL(t)
	one := testenv.OneConn(t, dsn) // one session: its status counts our statements only
	st := order.NewStore(one)
	start := time.Now().Add(-time.Minute)
	it, err := st.CreateItem(ctx, order.Item{Name: "known", Stock: 1, Shards: 1, PerUserLimit: 1, StartsAt: start})
	if err != nil {
		t.Fatal(err)
	}
	c := newItemCache(st, time.Now, 0)
	before := comSelect(t, one)
	const n = 2000
	for i := int64(1); i <= n; i++ {
		if _, err := c.get(ctx, it.ID+i); !errors.Is(err, order.ErrNotFound) {
			t.Fatalf("id %d: got %v, want not found", it.ID+i, err)
		}
	}
	if got := comSelect(t, one) - before; got > 20 {
		t.Errorf("%d distinct unknown ids cost %d SELECTs, want a few", n, got)
	}
	// Created by another instance: found once the highest id is read again.
	other, err := order.NewStore(db).CreateItem(ctx, order.Item{Name: "later", Stock: 1, Shards: 1, PerUserLimit: 1, StartsAt: start})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := c.get(ctx, other.ID)
		if err == nil && got.ID == other.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("item %d created elsewhere: still %v", other.ID, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHighestIDReadOnTheInjectedClock: whether the highest item id is read
// again is decided on the cache's clock, not the wall clock (above read
// time.Now, so a test clock or a clock moved by the sale could not steer it).
func TestHighestIDReadOnTheInjectedClock(t *testing.T) {
	ctx := context.Background()
	dsn, db := testenv.MySQL(t)
	one := testenv.OneConn(t, dsn)
	st := order.NewStore(one)
	start := time.Now().Add(-time.Minute)
	it, err := st.CreateItem(ctx, order.Item{Name: "known", Stock: 1, Shards: 1, PerUserLimit: 1, StartsAt: start})
	if err != nil {
		t.Fatal(err)
	}
	// A clock far from the wall clock: on the wall clock the last read is
	// always old enough, on this one only when the test moves it.
	now := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newItemCache(st, func() time.Time { return now }, 0)
	if _, err := c.get(ctx, it.ID+1); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("id above the highest: got %v, want not found", err)
	}
	later, err := order.NewStore(db).CreateItem(ctx, order.Item{Name: "later", Stock: 1, Shards: 1, PerUserLimit: 1, StartsAt: start})
	if err != nil {
		t.Fatal(err)
	}
	before := comSelect(t, one)
	if _, err := c.get(ctx, later.ID); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("before maxIDEvery passed on the clock: got %v, want not found without a read", err)
	}
	if got := comSelect(t, one) - before; got != 0 {
		t.Errorf("before maxIDEvery passed on the clock: %d SELECTs, want 0", got)
	}
	now = now.Add(maxIDEvery)
	if got, err := c.get(ctx, later.ID); err != nil || got.ID != later.ID {
		t.Errorf("after maxIDEvery passed on the clock: got %v, %v; want item %d", got.ID, err, later.ID)
	}
}

// TestItemCopyFollowsEditsAndIsConfirmedAtStart: an item edited on another
// instance is seen once the copy is ItemRefresh old; while MySQL fails the
// held copy is used before the start, but a copy read before
// StartsAt-ItemRefresh is never used at or after the start (an edit may
// have moved the window it does not know of): ErrUnconfirmed instead.
func TestItemCopyFollowsEditsAndIsConfirmedAtStart(t *testing.T) {
	ctx := context.Background()
	dsn, db := testenv.MySQL(t)
	one := testenv.OneConn(t, dsn)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	now := t0
	c := newItemCache(order.NewStore(one), func() time.Time { return now }, time.Second)
	other := order.NewStore(db)
	it, err := other.CreateItem(ctx, order.Item{Name: "edited", Stock: 1, Shards: 1, PerUserLimit: 1, StartsAt: t0.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.get(ctx, it.ID); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(20 * time.Second)
	limit := 3
	if _, err := other.EditItem(ctx, it.ID, order.ItemEdit{StartsAt: &later, PerUserLimit: &limit}, time.Now(), order.Audit{Actor: "test", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(2 * time.Second)
	got, err := c.get(ctx, it.ID)
	if err != nil || !got.StartsAt.Equal(later) || got.PerUserLimit != 3 {
		t.Fatalf("copy after ItemRefresh: got %v, %d, %v; want starts %v, limit 3", got.StartsAt, got.PerUserLimit, err, later)
	}
	one.Close() // MySQL fails from here on, for this cache
	now = t0.Add(5 * time.Second)
	if got, err := c.get(ctx, it.ID); err != nil || !got.StartsAt.Equal(later) {
		t.Errorf("before the start, MySQL failing: got %v, %v; want the held copy", got.StartsAt, err)
	}
	now = later
	if _, err := c.get(ctx, it.ID); ErrorOf(err) == nil || ErrorOf(err).Kind != Unavailable {
		t.Errorf("at the start, copy read long before, MySQL failing: got %v, want ErrUnconfirmed", err)
	}
}
