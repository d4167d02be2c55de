package stock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
)

// eventually fails the test unless cond holds within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watching starts s.watchRestock and waits until its first subscription
// took effect (it clears a flag set beforehand). It returns the watcher's
// result channel; cancel ctx to stop it.
func watching(ctx context.Context, t *testing.T, s *Store, resync time.Duration) <-chan error {
	t.Helper()
	const probe = int64(-42)
	s.soldOut.Store(probe, struct{}{})
	done := make(chan error, 1)
	go func() { done <- s.watchRestock(ctx, resync) }()
	eventually(t, 5*time.Second, "first subscription clears flags", func() bool { return !s.SoldOut(probe) })
	return done
}

func TestWatchRestock(t *testing.T) {
	tests := []struct {
		name    string
		publish []int64 // items named by PublishRestock
		flagged []int64 // items flagged sold out on the watcher
		cleared []int64 // flags expected to clear
		kept    []int64 // flags expected to stay
	}{
		{"one item", []int64{7}, []int64{7, 8}, []int64{7}, []int64{8}},
		{"two items", []int64{7, 8}, []int64{7, 8, 9}, []int64{7, 8}, []int64{9}},
		{"unflagged item", []int64{5}, []int64{7}, nil, []int64{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, rdb := newStore(t, Config{})
			sub := NewStore(rdb, Config{Prefix: pub.Prefix()})
			ctx, cancel := context.WithCancel(context.Background())
			done := watching(ctx, t, sub, time.Hour)
			for _, id := range tt.flagged {
				sub.soldOut.Store(id, struct{}{})
			}
			for _, id := range tt.publish {
				if err := pub.PublishRestock(ctx, id); err != nil {
					t.Fatalf("publish: %v", err)
				}
			}
			// A marker published last: once it is seen, so were the others.
			sub.soldOut.Store(int64(-1), struct{}{})
			if err := pub.PublishRestock(ctx, -1); err != nil {
				t.Fatalf("publish: %v", err)
			}
			eventually(t, 5*time.Second, "marker cleared", func() bool { return !sub.SoldOut(-1) })
			for _, id := range tt.cleared {
				if sub.SoldOut(id) {
					t.Errorf("item %d: got sold out, want flag cleared", id)
				}
			}
			for _, id := range tt.kept {
				if !sub.SoldOut(id) {
					t.Errorf("item %d: got flag cleared, want still sold out", id)
				}
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("watch after cancel: got %v, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("watch did not return after cancel")
			}
		})
	}
}

func TestWatchRestockOtherPrefixIgnored(t *testing.T) {
	pub, rdb := newStore(t, Config{})
	other := NewStore(rdb, Config{Prefix: pub.Prefix() + "x"})
	sub := NewStore(rdb, Config{Prefix: pub.Prefix()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watching(ctx, t, sub, time.Hour)
	sub.soldOut.Store(int64(3), struct{}{})
	if err := other.PublishRestock(ctx, 3); err != nil {
		t.Fatal(err)
	}
	sub.soldOut.Store(int64(4), struct{}{})
	if err := pub.PublishRestock(ctx, 4); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "own restock seen", func() bool { return !sub.SoldOut(4) })
	if !sub.SoldOut(3) {
		t.Errorf("item 3 restocked under another prefix: got flag cleared, want kept")
	}
}

// A notification sent while the subscription is down is lost; the
// resubscription after the reconnect must clear every flag instead.
func TestWatchRestockResubscribeClearsAll(t *testing.T) {
	_, prefix := testenv.Redis(t)
	name := "restock-" + testenv.ID()
	rdb := testenv.NewRedis(redis.Options{ClientName: name})
	t.Cleanup(func() { rdb.Close() })
	s := NewStore(rdb, Config{Prefix: prefix})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watching(ctx, t, s, time.Hour)
	s.soldOut.Store(int64(1), struct{}{})
	s.soldOut.Store(int64(2), struct{}{})

	// Kill the subscriber's connection, as a network blip would (on a
	// cluster it is on the master of the channel's slot: look at each).
	killed := 0
	err := testenv.ForEachNode(ctx, rdb, func(ctx context.Context, node *redis.Client) error {
		list, err := node.ClientList(ctx).Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(list, "\n") {
			if !strings.Contains(line, " name="+name+" ") || !subscriber(line) {
				continue
			}
			var id int64
			if _, err := fmt.Sscanf(line, "id=%d", &id); err != nil {
				return fmt.Errorf("parse client list line %q: %v", line, err)
			}
			if err := node.ClientKillByFilter(ctx, "ID", fmt.Sprint(id)).Err(); err != nil {
				return fmt.Errorf("kill subscriber: %v", err)
			}
			killed++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("killed %d subscriber connections, want 1", killed)
	}
	eventually(t, 10*time.Second, "resubscription clears flags", func() bool {
		return !s.SoldOut(1) && !s.SoldOut(2)
	})
	// And notifications flow again: the flags were cleared on the new
	// subscription's confirmation, so it is in place and one publish is
	// delivered.
	s.soldOut.Store(int64(3), struct{}{})
	other := NewStore(rdb, Config{Prefix: prefix})
	if err := other.PublishRestock(ctx, 3); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "restock after reconnect", func() bool { return !s.SoldOut(3) })
}

func TestWatchRestockResync(t *testing.T) {
	s, _ := newStore(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watching(ctx, t, s, 50*time.Millisecond)
	s.soldOut.Store(int64(9), struct{}{})
	eventually(t, 2*time.Second, "periodic resync clears a flag nobody announced", func() bool { return !s.SoldOut(9) })
}

// leaseTries signals tried (dropping a signal while one is pending) after
// each command that names key, i.e. each attempt at that lease.
type leaseTries struct {
	key   string
	tried chan struct{}
}

func (h *leaseTries) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *leaseTries) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		for _, a := range cmd.Args() {
			if a == any(h.key) {
				select {
				case h.tried <- struct{}{}:
				default:
				}
				break
			}
		}
		return err
	}
}
func (h *leaseTries) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestLease(t *testing.T) {
	ctx := context.Background()
	a, _ := newStore(t, Config{})
	// b has a client of its own, to see its attempts at the lease.
	tries := &leaseTries{key: a.Prefix() + ":lease:job", tried: make(chan struct{}, 1)}
	brdb := testenv.NewRedis(redis.Options{})
	t.Cleanup(func() { brdb.Close() })
	brdb.AddHook(tries)
	b := NewStore(brdb, Config{Prefix: a.Prefix()})

	la, err := a.Lease(ctx, "job", time.Minute, 0)
	if err != nil {
		t.Fatalf("first lease: got %v, want nil", err)
	}
	if _, err := b.Lease(ctx, "job", time.Minute, 0); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second lease while held: got %v, want ErrLeaseHeld", err)
	}
	if _, err := b.Lease(ctx, "job", time.Minute, 50*time.Millisecond); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second lease waiting 50ms while held: got %v, want ErrLeaseHeld", err)
	}
	other, err := b.Lease(ctx, "other-job", time.Minute, 0)
	if err != nil {
		t.Fatalf("lease of another name: got %v, want nil", err)
	}
	defer other.Release(ctx)

	// A waiting taker gets it once the holder lets go: the holder lets go
	// after the taker's first attempt failed, so the taker did wait.
	select {
	case <-tries.tried: // an attempt of the calls above
	default:
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		select {
		case <-tries.tried:
		case <-time.After(5 * time.Second):
			t.Error("no attempt at the lease while held within 5s")
		}
		la.Release(ctx)
	}()
	lb, err := b.Lease(ctx, "job", time.Minute, 5*time.Second)
	<-released
	if err != nil {
		t.Fatalf("lease after release: got %v, want nil", err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Errorf("release: got %v, want nil", err)
	}
}

func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = int64(31), 3
	if err := s.Warm(ctx, item, 10, shards); err != nil {
		t.Fatal(err)
	}
	for u := int64(1); u <= 4; u++ {
		if _, err := buy(ctx, t, s, item, shards, 1, u, 100+u); err != nil {
			t.Fatalf("buy: %v", err)
		}
	}
	snap, err := s.Snapshot(ctx, item, shards)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Remaining != 6 || snap.Outbox != 4 || snap.Present != shards || snap.Below != 0 {
		t.Errorf("after 4 buys: got remaining %d outbox %d present %d below %d, want 6 4 3 0",
			snap.Remaining, snap.Outbox, snap.Present, snap.Below)
	}
	rem, err := s.Remaining(ctx, item, shards)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rem) != fmt.Sprint(snap.Shards) {
		t.Errorf("snapshot shards: got %v, want %v (Remaining)", snap.Shards, rem)
	}

	// A missing key and a count below zero.
	if err := rdb.Del(ctx, s.keys(item, 1, shards).Stock()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, s.keys(item, 2, shards).Stock(), -3, 0).Err(); err != nil {
		t.Fatal(err)
	}
	snap, err = s.Snapshot(ctx, item, shards)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Present != 2 || snap.Shards[1] != -1 || snap.Below != 3 {
		t.Errorf("missing + negative shard: got present %d shards %v below %d, want 2 [_ -1 -3] 3",
			snap.Present, snap.Shards, snap.Below)
	}

	none, err := s.Snapshot(ctx, 999, shards)
	if err != nil {
		t.Fatal(err)
	}
	if none.Present != 0 || none.Remaining != 0 || none.Outbox != 0 {
		t.Errorf("unknown item: got %+v, want nothing present", none)
	}
}

func TestSetBought(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards, limit = int64(41), 4, 2
	if err := s.Warm(ctx, item, 100, shards); err != nil {
		t.Fatal(err)
	}
	// User 5 holds 2 units before the rebuild; the rebuild says 0.
	for i := int64(0); i < 2; i++ {
		if _, err := buy(ctx, t, s, item, shards, limit, 5, 500+i); err != nil {
			t.Fatal(err)
		}
	}
	byUser := map[int64]int64{1: 2, 2: 1, 3: 0}
	if err := s.SetBought(ctx, item, shards, byUser); err != nil {
		t.Fatalf("set bought: %v", err)
	}
	for u, want := range map[int64]int64{1: 2, 2: 1, 3: 0, 5: 0} {
		got, err := rdb.HGet(ctx, s.keys(item, HomeShard(u, shards), shards).Bought(), fmt.Sprint(u)).Int64()
		if errors.Is(err, redis.Nil) {
			got, err = 0, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("user %d bought: got %d, want %d", u, got, want)
		}
	}
	tests := []struct {
		user int64
		want error
	}{
		{1, ErrAlreadyPurchased}, // at the limit
		{2, nil},                 // one more allowed
		{5, nil},                 // forgotten by the rebuild
	}
	for i, tt := range tests {
		_, err := buy(ctx, t, s, item, shards, limit, tt.user, int64(900+i))
		if !errors.Is(err, tt.want) {
			t.Errorf("user %d buys: got %v, want %v", tt.user, err, tt.want)
		}
	}
}

func TestSkipReturns(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = int64(51), 2
	if err := s.Warm(ctx, item, 4, shards); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(ctx, t, s, item, shards, 1, 7, 700); err != nil {
		t.Fatal(err)
	}
	home := HomeShard(7, shards)
	before, err := s.Remaining(ctx, item, shards)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SkipReturns(ctx, item, shards, []Unit{{OrderID: 700, UserID: 7, Shard: home}}); err != nil {
		t.Fatalf("skip returns: %v", err)
	}
	back, err := s.Return(ctx, item, 7, 700, home, shards)
	if err != nil {
		t.Fatal(err)
	}
	if back {
		t.Errorf("return after skip: got returned, want no-op")
	}
	after, err := s.Remaining(ctx, item, shards)
	if err != nil {
		t.Fatal(err)
	}
	if sum(after) != sum(before) {
		t.Errorf("remaining after skipped return: got %v, want %v", after, before)
	}
	n, err := rdb.HGet(ctx, s.keys(item, home, shards).Bought(), "7").Int()
	if err != nil || n != 1 {
		t.Errorf("user 7 bought after skipped return: got %d (%v), want 1", n, err)
	}
}

// TestLossMarkerSeenByEveryInstance: the instance that notices Redis lost
// its data leaves a rebuild marker that every other instance sees until the
// rebuild is done, so if the noticing one dies another takes over (before,
// only the one that set the alive marker knew).
func TestLossMarkerSeenByEveryInstance(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	a := NewStore(rdb, Config{Prefix: prefix})
	b := NewStore(rdb, Config{Prefix: prefix})
	start := time.Now().Add(-time.Minute)
	pending, cutoff, err := a.CheckLoss(ctx, start)
	if err != nil || !pending || cutoff.UnixMilli() != start.UnixMilli() {
		t.Fatalf("first check of an empty Redis: %v %v %v, want pending since %v", pending, cutoff, err, start)
	}
	// a dies; b still sees the pending rebuild, with the same cutoff.
	pending, cutoff2, err := b.CheckLoss(ctx, time.Now())
	if err != nil || !pending || !cutoff2.Equal(cutoff) {
		t.Fatalf("other instance: %v %v %v, want the same pending loss", pending, cutoff2, err)
	}
	if err := b.RebuildDone(ctx, cutoff2); err != nil {
		t.Fatal(err)
	}
	if pending, _, err := a.CheckLoss(ctx, time.Now()); err != nil || pending {
		t.Errorf("after the rebuild: pending %v, %v; want none", pending, err)
	}
	// Redis loses everything again: noticed again.
	testenv.DeleteKeys(ctx, rdb, prefix+":*")
	pending, cutoff, err = b.CheckLoss(ctx, time.Now())
	if err != nil || !pending {
		t.Fatalf("second loss: pending %v, %v; want a new rebuild", pending, err)
	}
	if err := b.RebuildDone(ctx, cutoff); err != nil {
		t.Fatal(err)
	}
	// One slot group comes back empty (on a cluster: the master that
	// holds it restarted empty): noticed as well.
	testenv.DeleteKeys(ctx, rdb, prefix+":{"+groupTags[Groups/2]+"}:*")
	if pending, _, err := a.CheckLoss(ctx, time.Now()); err != nil || !pending {
		t.Errorf("loss of one group: pending %v, %v; want a rebuild", pending, err)
	}
}

// TestLossOfOneMasterSeen: on a cluster, one master comes back empty while
// the others keep their data (the {meta} keys among them, or not): the loss
// is seen. On one server, that master is the server.
func TestLossOfOneMasterSeen(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	s := NewStore(rdb, Config{Prefix: prefix})
	_, cutoff, err := s.CheckLoss(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RebuildDone(ctx, cutoff); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var masters []string
	err = testenv.ForEachNode(ctx, rdb, func(ctx context.Context, node *redis.Client) error {
		mu.Lock()
		masters = append(masters, node.Options().Addr)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(masters)
	for m, addr := range masters {
		// Empty that master only.
		testenv.ForEachNode(ctx, rdb, func(ctx context.Context, node *redis.Client) error {
			if node.Options().Addr != addr {
				return nil
			}
			iter := node.Scan(ctx, 0, prefix+":*", 1000).Iterator()
			for iter.Next(ctx) {
				node.Del(ctx, iter.Val())
			}
			return iter.Err()
		})
		pending, cutoff, err := s.CheckLoss(ctx, time.Now())
		if err != nil || !pending {
			t.Fatalf("master %d of %d came back empty: pending %v, %v; want a rebuild", m, len(masters), pending, err)
		}
		if err := s.RebuildDone(ctx, cutoff); err != nil {
			t.Fatal(err)
		}
		if pending, _, err := s.CheckLoss(ctx, time.Now()); err != nil || pending {
			t.Fatalf("after the rebuild: pending %v, %v", pending, err)
		}
	}
}

// subscriber tells a CLIENT LIST line of a (sharded) pub/sub connection.
func subscriber(line string) bool {
	for _, f := range []string{"cmd=subscribe", "cmd=ssubscribe", " sub=1", " ssub=1"} {
		if strings.Contains(line, f) {
			return true
		}
	}
	return false
}

// TestSoldOutNotSetAfterARestock: a purchase that found the item sold out
// but began before a restock notice was handled (units added or returned
// meanwhile) must not set the local sold-out flag after the notice cleared
// it: this process would answer sold out from memory, with units there,
// until the next resync (30 s).
func TestSoldOutNotSetAfterARestock(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 43, 1
	if err := s.Warm(ctx, item, 1, shards); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(ctx, t, s, item, shards, 1, 1, 1); err != nil {
		t.Fatalf("the only unit: %v", err)
	}
	// The notice is handled while the next purchase is under way: after
	// it began, before its script found the shards empty.
	rdb.AddHook(&holdHook{hold: func() { s.ClearSoldOut(item) }})
	if _, err := buy(ctx, t, s, item, shards, 1, 2, 2); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("second buyer: got %v, want ErrSoldOut", err)
	}
	if s.SoldOut(item) {
		t.Error("sold-out flag set by a purchase that began before the restock notice")
	}
	// A purchase that began after it sets the flag as before.
	if _, err := buy(ctx, t, s, item, shards, 1, 3, 3); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("third buyer: got %v, want ErrSoldOut", err)
	}
	if !s.SoldOut(item) {
		t.Error("sold-out flag not set by a purchase that found every shard empty")
	}
}
