package stock

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestBrokenOutboxEntryReported: an outbox entry that is not a reservation
// (written by hand, or by a broken script) is not relayed, and the reader
// is told which one it was (stream and id) instead of it vanishing.
func TestBrokenOutboxEntryReported(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 31, 1
	if err := s.Warm(ctx, item, 5, shards); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(ctx, t, s, item, shards, 1, 7, 1); err != nil {
		t.Fatalf("buy: %v", err)
	}
	o := OutboxOf(item, 0, shards)
	key := s.OutboxKey(o)
	var broken []string
	for _, values := range [][]any{
		{outOrder, "1", outItem, item}, // no user, shard, home or time
		{outOrder, "x", outItem, item, outUser, 7, outShard, 0, outHome, 0, outAt, 1},
	} {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		broken = append(broken, id)
	}
	var mu sync.Mutex
	var got []BrokenEntry
	s.OnBrokenEntry(func(b BrokenEntry) { mu.Lock(); got = append(got, b); mu.Unlock() })
	if err := s.EnsureGroup(ctx, o, "g"); err != nil {
		t.Fatal(err)
	}
	res, err := s.ReadOutbox(ctx, o, "g", "c", 100)
	if err != nil || len(res) != 1 || res[0].UserID != 7 {
		t.Fatalf("ReadOutbox: got %+v, %v; want the one reservation", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(broken) {
		t.Fatalf("broken entries reported: got %+v, want %v", got, broken)
	}
	for i, b := range got {
		if b.Stream != key || b.ID != broken[i] || b.Err == nil || b.Outbox != o {
			t.Errorf("broken entry %d: got %+v, want stream %s, id %s and an error", i, b, key, broken[i])
		}
	}
}

// TestPruneConsumers: consumers with nothing pending, idle for minIdle,
// leave the group; one with pending entries and the caller's own stay.
func TestPruneConsumers(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 32, 1
	if err := s.Warm(ctx, item, 5, shards); err != nil {
		t.Fatal(err)
	}
	for u := range int64(2) {
		if _, err := buy(ctx, t, s, item, shards, 1, 10+u, u+1); err != nil {
			t.Fatalf("buy: %v", err)
		}
	}
	o := OutboxOf(item, 0, shards)
	key := s.OutboxKey(o)
	if err := s.EnsureGroup(ctx, o, "g"); err != nil {
		t.Fatal(err)
	}
	if res, err := s.ReadOutbox(ctx, o, "g", "busy", 1); err != nil || len(res) != 1 {
		t.Fatalf("read: %v, %v", res, err)
	}
	for _, c := range []string{"gone1", "gone2", "self"} {
		if err := rdb.XGroupCreateConsumer(ctx, key, "g", c).Err(); err != nil {
			t.Fatal(err)
		}
	}
	consumers := func() []string {
		cs, err := rdb.XInfoConsumers(ctx, key, "g").Result()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		return names
	}
	if n, err := s.PruneConsumers(ctx, o, "g", "self", time.Hour); err != nil || n != 0 {
		t.Errorf("prune of consumers idle for less than an hour: got %d, %v; want 0", n, err)
	}
	if n, err := s.PruneConsumers(ctx, o, "g", "self", 0); err != nil || n != 2 {
		t.Errorf("prune: got %d, %v; want 2", n, err)
	}
	if got, want := consumers(), []string{"busy", "self"}; !slices.Equal(got, want) {
		t.Errorf("consumers left: got %v, want %v", got, want)
	}
}
