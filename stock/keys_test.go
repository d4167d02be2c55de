package stock

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
)

// TestSlot: our CRC16 gives Redis Cluster's slots (values from the Redis
// Cluster specification, and from the cluster itself when the tests run on
// one), and every group's tag lands in the group's slot range.
func TestSlot(t *testing.T) {
	for key, want := range map[string]uint16{
		"foo": 12182, "bar": 5061, "hello": 866, "{user1000}.following": 3443, "{user1000}.followers": 3443,
		"foo{}{bar}": Slot("foo{}{bar}"), "{}foo": Slot("{}foo"),
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	// An empty tag hashes the whole key.
	if Slot("{}foo") == Slot("foo") {
		t.Error("empty hash tag must not count as a tag")
	}
	for g, tag := range groupTags {
		if slot := int(Slot(tag)); slot*Groups/16384 != g {
			t.Errorf("group %d: tag %q is in slot %d, outside [%d, %d)", g, tag, slot, g*16384/Groups, (g+1)*16384/Groups)
		}
	}
	if !testenv.RedisCluster() {
		return
	}
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	s := NewStore(rdb, Config{Prefix: prefix})
	for _, key := range []string{s.keys(7, 3, 8).Stock(), s.orderKey(WithGroup(1<<22, 9)), s.claimsKey(63), "foo", "{user1000}.following"} {
		want, err := rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot(key); int64(got) != want {
			t.Errorf("Slot(%q) = %d, cluster says %d", key, got, want)
		}
	}
}

// TestShardsSpreadEvenly: an item's shards take distinct, evenly spaced
// groups; on the cluster the tests run on, an item of 8 shards lands 3/3/2
// on its 3 masters (the issue saw 4/2/2 with hash tags {item:shard}).
func TestShardsSpreadEvenly(t *testing.T) {
	for _, n := range []int{1, 2, 3, 8, 64} {
		for item := int64(1); item <= 50; item++ {
			seen := map[int]bool{}
			for sh := range n {
				seen[ShardGroup(item, sh, n)] = true
			}
			if len(seen) != n {
				t.Fatalf("item %d of %d shards: only %d distinct groups", item, n, len(seen))
			}
		}
	}
	if !testenv.RedisCluster() {
		return
	}
	rdb, _ := testenv.Redis(t)
	ctx := context.Background()
	slots, err := rdb.(*redis.ClusterClient).ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	master := func(slot int) string {
		for _, r := range slots {
			if slot >= r.Start && slot <= r.End {
				return r.Nodes[0].Addr
			}
		}
		return ""
	}
	for item := int64(1); item <= 100; item++ {
		per := map[string]int{}
		for sh := range 8 {
			per[master(int(Slot(groupTags[ShardGroup(item, sh, 8)])))]++
		}
		counts := make([]int, 0, len(per))
		for _, c := range per {
			counts = append(counts, c)
		}
		slices.Sort(counts)
		if len(slots) == 3 && !slices.Equal(counts, []int{2, 3, 3}) {
			t.Errorf("item %d: 8 shards over masters %v, want 2/3/3", item, per)
		}
	}
}

// TestOrderIDCarriesItsGroup: the order index entry is found from the id
// alone because the id carries the home shard's group; an id made for
// another group is refused before anything is written.
func TestOrderIDCarriesItsGroup(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Config{})
	const item, shards = 31, 4
	if err := s.Warm(ctx, item, 8, shards); err != nil {
		t.Fatal(err)
	}
	for g := range Groups {
		id := WithGroup(int64(12345)<<22|0xffff, g)
		if OrderGroup(id) != g || id>>22 != 12345 || id&0xffff != 0xffff {
			t.Fatalf("WithGroup(_, %d) = %x: group %d", g, id, OrderGroup(id))
		}
	}
	const user = 5
	tok := testenv.TokenID()
	wrong := WithGroup(1<<22, HomeGroup(item, user, shards)+1)
	if _, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: wrong}); !errors.Is(err, ErrOrderGroup) {
		t.Fatalf("id of another group: got %v, want ErrOrderGroup", err)
	}
	if rem, _ := s.Remaining(ctx, item, shards); sum(rem) != 8 {
		t.Fatalf("a refused id took stock: %v", rem)
	}
	id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok, err := s.LookupOrder(ctx, id, user); err != nil || !ok || a.ItemID != item {
		t.Fatalf("lookup %d: %+v %v %v", id, a, ok, err)
	}
	if _, ok, _ := s.LookupOrder(ctx, id, user+1); ok {
		t.Error("another user found the order")
	}
	if _, ok, err := s.LookupOrder(ctx, id+1<<22, user); ok || err != nil {
		t.Errorf("unknown id: found %v, %v", ok, err)
	}
}
