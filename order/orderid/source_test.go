package orderid

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/stock"
)

// clock is an injected wall clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(ms int64) *clock { return &clock{t: time.UnixMilli(ms)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(ms int64) {
	c.mu.Lock()
	c.t = time.UnixMilli(ms)
	c.mu.Unlock()
}

// base is a fixed Unix millisecond the tests' clocks start from.
const base int64 = 1_800_000_000_000

func source(t *testing.T, rdb redis.UniversalClient, prefix string, c *clock, nodes ...int) *Source {
	t.Helper()
	s := newSource(rdb, Config{Prefix: prefix, TTL: 30 * time.Second, Now: c.Now})
	s.nodes = nodes
	if err := s.take(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Release(context.Background()) })
	return s
}

// ids makes n ids of group g and fails the test on a refusal.
func ids(t *testing.T, s *Source, g, n int) []int64 {
	t.Helper()
	out := make([]int64, n)
	for i := range out {
		id, err := s.NextID(g)
		if err != nil {
			t.Fatalf("id %d of %d: %v", i, n, err)
		}
		out[i] = id
	}
	return out
}

func refuses(t *testing.T, s *Source, g int, why string) {
	t.Helper()
	if id, err := s.NextID(g); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s: got id %d (err %v), want ErrUnavailable", why, id, err)
	}
}

// Handover of a node id to an instance whose clock is 5s behind the
// previous holder's, after the holder died (its lease expired): the new
// holder makes no id until its clock passes the mark the old one left, and
// then only ids above every id of the old one.
func TestHandoverToSlowerClock(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	ca := newClock(base)
	a := source(t, rdb, prefix, ca, 7)
	var made []int64
	for i := range int64(50) {
		ca.Set(base + i)
		made = append(made, ids(t, a, 3, 200)...)
	}
	made = append(made, ids(t, a, 3, 300)...) // overflowing: borrows the next ms
	if _, err := a.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	mark := a.cur.Load().ceil
	maxA := made[len(made)-1]
	// A dies: its lease key expires (deleted here), the mark stays.
	rdb.Del(ctx, a.leaseKey(7))

	cb := newClock(base - 5000)
	b := source(t, rdb, prefix, cb, 7)
	if b.Node() != 7 {
		t.Fatalf("b holds node %d, want 7", b.Node())
	}
	refuses(t, b, 3, "clock 5s behind")
	cb.Set(Millis(maxA) + 1)
	refuses(t, b, 3, "clock past the old ids but not the mark")
	cb.Set(mark)
	if _, err := b.refresh(ctx); err != nil { // Keep refreshes meanwhile
		t.Fatal(err)
	}
	refuses(t, b, 3, "clock at the mark")
	cb.Set(mark + 1)
	for _, id := range ids(t, b, 3, 10) {
		if id <= maxA {
			t.Fatalf("new holder made id %d <= previous holder's %d", id, maxA)
		}
	}
}

// A graceful release lowers the mark to the last millisecond used: the
// next holder waits only for that, not for the lease's TTL.
func TestReleaseLowersMark(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	ca := newClock(base)
	a := source(t, rdb, prefix, ca, 9)
	made := ids(t, a, 0, 5)
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	refuses(t, a, 0, "released")
	if n, _ := rdb.Exists(ctx, a.leaseKey(9)).Result(); n != 0 {
		t.Fatal("lease not released")
	}
	cb := newClock(base)
	b := source(t, rdb, prefix, cb, 9)
	refuses(t, b, 0, "same millisecond as the last id of the previous holder")
	cb.Set(base + 1)
	if id := ids(t, b, 0, 1)[0]; id <= made[len(made)-1] {
		t.Fatalf("id %d not above the previous holder's %d", id, made[len(made)-1])
	}
}

// A clock that steps back within the process stops id-making until it is
// past the last millisecond used again; no id ever repeats.
func TestClockStepsBack(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	c := newClock(base)
	s := source(t, rdb, prefix, c, 11)
	seen := map[int64]bool{}
	var last int64
	check := func(got []int64) {
		t.Helper()
		for _, id := range got {
			if seen[id] || id <= last {
				t.Fatalf("id %d repeated or not increasing (last %d)", id, last)
			}
			seen[id], last = true, id
		}
	}
	c.Set(base + 100)
	check(ids(t, s, 5, 3))
	c.Set(base + 90) // NTP stepped the clock back 10ms
	refuses(t, s, 5, "clock 10ms behind the last id")
	c.Set(base + 98)
	refuses(t, s, 5, "clock 2ms behind the last id")
	c.Set(base + 100) // back at the last millisecond used: its next sequence numbers
	check(ids(t, s, 5, 3))
	c.Set(base + 101)
	check(ids(t, s, 5, 3))
}

// 256 ids per millisecond per group: the 257th borrows the next
// millisecond, one more is refused until the clock gets there, and nothing
// is borrowed past the confirmed mark.
func TestSequenceOverflow(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	c := newClock(base)
	s := source(t, rdb, prefix, c, 13)
	got := ids(t, s, 1, 2*256)
	seen := map[int64]bool{}
	for i, id := range got {
		if seen[id] {
			t.Fatalf("id %d repeated", id)
		}
		seen[id] = true
		if want := base + int64(i/256); Millis(id) != want {
			t.Fatalf("id %d in ms %d, want %d", i, Millis(id), want)
		}
	}
	refuses(t, s, 1, "both sequences of the millisecond and the next one used")
	c.Set(base + 1)
	if id := ids(t, s, 1, 1)[0]; Millis(id) != base+2 || seen[id] {
		t.Fatalf("after the clock moved: id %d in ms %d, want a new one in %d", id, Millis(id), base+2)
	}

	// At the confirmed mark the next millisecond is not borrowed. (The
	// wall clock jumped ahead: the lease's own deadline, a monotonic
	// reading with time.Now, still holds.)
	h := *s.cur.Load()
	ceil := h.ceil
	h.until = time.UnixMilli(ceil + 10_000)
	s.cur.Store(&h)
	c.Set(ceil)
	ids(t, s, 2, 256)
	refuses(t, s, 2, "overflow at the mark")
	c.Set(ceil + 1)
	refuses(t, s, 2, "clock past the confirmed mark")
}

// Two instances get different node ids; ids are made for the group asked,
// and never collide across groups or instances. An unconfirmed lease stops
// ids; a free node id whose mark is ahead of the clock is skipped when
// another is usable.
func TestLease(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	c := newClock(base)
	// Node 1's mark is ahead of the clock (its holder died a moment ago).
	rdb.Set(ctx, (&Source{prefix: prefix}).markKey(1), base+20_000, 0)
	a := source(t, rdb, prefix, c, 1, 2)
	if a.Node() != 2 {
		t.Fatalf("took node %d, want 2 (node 1's mark is ahead)", a.Node())
	}
	b := source(t, rdb, prefix, c, 2, 1)
	if b.Node() != 1 {
		t.Fatalf("took node %d, want 1 (the only free one)", b.Node())
	}
	refuses(t, b, 0, "node taken with its mark ahead")
	if _, err := Lease(ctx, rdb, Config{Prefix: prefix, Now: c.Now}); err != nil {
		t.Fatal(err) // any of the other 254
	}
	c.Set(base + 20_001)
	seen := map[int64]bool{}
	for _, s := range []*Source{a, b} {
		for g := range stock.Groups {
			for _, id := range ids(t, s, g, 3) {
				if got := stock.OrderGroup(id); got != g {
					t.Fatalf("id %d made for group %d is of group %d", id, g, got)
				}
				if seen[id] {
					t.Fatalf("id %d made twice", id)
				}
				seen[id] = true
			}
		}
	}
	// Unconfirmed for a TTL less a sixth: ids stop.
	c.Set(base + 20_001 + 25_000)
	refuses(t, a, 0, "stale lease")
	if _, err := a.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ids(t, a, 0, 1)
}

// Keep replaces a lost lease with another node id and releases it at stop.
func TestKeep(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	s, err := Lease(ctx, rdb, Config{Prefix: prefix, TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Keep(kctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	lost := s.Node()
	rdb.Set(ctx, s.leaseKey(lost), "intruder", time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (s.Node() == lost || s.Node() < 0) {
		time.Sleep(10 * time.Millisecond)
	}
	node := s.Node()
	if node == lost || node < 0 {
		t.Fatal("lost lease was not replaced")
	}
	// The new node's mark is not ahead of this clock: ids at once.
	if _, err := s.NextID(stock.Groups - 1); err != nil {
		t.Errorf("after re-lease: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("keep: %v", err)
	}
	if n, _ := rdb.Exists(ctx, s.leaseKey(node)).Result(); n != 0 {
		t.Error("lease not released at stop")
	}
	refuses(t, s, 0, "after stop")
}

// TestConfirmRefreshesAtOnce: Confirm makes Keep refresh the lease now,
// not at its next tick (a third of the TTL): after an outage the instance
// makes ids again as soon as Redis answers. Before, ids waited for the
// tick, up to 10 s with the app's 30 s TTL.
func TestConfirmRefreshesAtOnce(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	c := newClock(base)
	s := newSource(rdb, Config{Prefix: prefix, TTL: time.Hour, Now: c.Now}) // tick: 20 minutes
	if err := s.take(ctx); err != nil {
		t.Fatal(err)
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Keep(kctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("keep: %v", err)
		}
	}()
	node := s.Node()
	mark := func() int64 {
		n, err := rdb.Get(ctx, s.markKey(node)).Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got, want := mark(), base+time.Hour.Milliseconds(); got != want {
		t.Fatalf("mark after take %d, want %d", got, want)
	}
	c.Set(base + 5_000)
	s.Confirm()
	want := base + 5_000 + time.Hour.Milliseconds()
	deadline := time.Now().Add(5 * time.Second)
	for mark() != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := mark(); got != want {
		t.Fatalf("mark %d 5s after Confirm, want %d: the lease was not refreshed", got, want)
	}
}
