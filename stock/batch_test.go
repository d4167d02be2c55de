package stock

import (
	"context"
	"errors"
	"seckill/app/testenv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestConcurrentPurchasesShareRoundTrips: purchases released together go
// to Redis in a few pipelined round trips (group commit), each still its
// own atomic script with its own answer: every buyer gets a distinct
// order, the stock drops by one per buyer, and one outbox entry each.
func TestConcurrentPurchasesShareRoundTrips(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards, buyers = 41, 4, 64
	if err := s.Warm(ctx, item, buyers+10, shards); err != nil {
		t.Fatal(err)
	}
	toks := make([]string, buyers)
	for i := range toks {
		toks[i] = testenv.TokenID()
	}
	// The script cached on every server first: a NOSCRIPT and its reload
	// are round trips of their own, there only on a server that never ran
	// this version of the script.
	if err := testenv.ForEachNode(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		return reserveScript.Load(ctx, c).Err()
	}); err != nil {
		t.Fatal(err)
	}
	hook := &testenv.RoundTrips{}
	rdb.AddHook(hook)
	rdb.AddHook(holdFirstUntilQueued(t, s, buyers-1))
	start := make(chan struct{})
	var wg sync.WaitGroup
	ids := make([]int64, buyers)
	errs := make([]error, buyers)
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			u := int64(i + 1)
			ids[i], errs[i] = s.Reserve(ctx, Purchase{ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: toks[i], OrderID: tid(item, u, shards, u)})
		}()
	}
	close(start)
	wg.Wait()
	seen := map[int64]bool{}
	for i := range buyers {
		u := int64(i + 1)
		if errs[i] != nil || ids[i] != tid(item, u, shards, u) || seen[ids[i]] {
			t.Fatalf("buyer %d: order %d, %v", u, ids[i], errs[i])
		}
		seen[ids[i]] = true
	}
	// The first purchase's own round trip, then everyone who queued
	// behind it in one (one per master on a cluster).
	if n, want := hook.N.Load(), 1+masters(t, rdb); n > want {
		t.Errorf("%d purchases released together made %d round trips, want %d (batched)", buyers, n, want)
	}
	if rem, _ := s.Remaining(ctx, item, shards); sum(rem) != 10 {
		t.Errorf("remaining %v, want 10", rem)
	}
	if res, _ := s.PendingReservations(ctx, item, shards); len(res) != buyers {
		t.Errorf("outbox holds %d, want %d", len(res), buyers)
	}
}

// holdFirstUntilQueued is a go-redis hook that holds the first request
// until n calls wait in the store's group-commit queue (or 10s passed), so
// the calls of a test really arrive while a round trip is under way, however
// the goroutines are scheduled.
func holdFirstUntilQueued(t *testing.T, s *Store, n int) redis.Hook {
	t.Helper()
	h := &holdHook{hold: func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			s.batch.mu.Lock()
			queued := len(s.batch.queue)
			s.batch.mu.Unlock()
			if queued >= n {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Errorf("only some of %d calls queued behind the first within 10s", n)
	}}
	return h
}

type holdHook struct {
	once sync.Once
	hold func()
}

func (h *holdHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.once.Do(h.hold); return next(ctx, cmd) }
}
func (h *holdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.once.Do(h.hold); return next(ctx, cmds) }
}

// masters is the number of Redis masters the test runs on: a pipeline
// is a round trip to each.
func masters(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	var n atomic.Int64 // a cluster's masters are visited concurrently
	if err := testenv.ForEachNode(context.Background(), rdb, func(context.Context, *redis.Client) error { n.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	return n.Load()
}

// TestPanicInBatchFailsItsCallsAndFreesTheLead: a group-commit batch that
// panics (here a go-redis hook, standing for a reply the code did not
// expect) answers every call of that batch with an error, hands the lead
// on, and later purchases still run; before, the lead was never handed on
// and every later call waited forever.
func TestPanicInBatchFailsItsCallsAndFreesTheLead(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards, queued = 47, 2, 8
	if err := s.Warm(ctx, item, 10, shards); err != nil {
		t.Fatal(err)
	}
	// The first request (held until the others queued behind it) and the
	// second (the queued batch's pipeline) panic.
	hold := holdFirstUntilQueued(t, s, queued).(*holdHook)
	var requests atomic.Int64
	rdb.AddHook(&panicHook{before: func() {
		hold.once.Do(hold.hold)
		if requests.Add(1) <= 2 {
			panic("test: unexpected reply")
		}
	}})
	t.Cleanup(func() { requests.Store(1 << 30) }) // the key cleanup runs

	type outcome struct {
		err      error
		panicked any
	}
	// purchase calls Reserve the way Gin would (a panic is recovered) and
	// fails the test if it does not return within 10s.
	purchase := func(user int64) (o outcome) {
		ch := make(chan outcome, 1)
		go func() {
			var o outcome
			defer func() {
				o.panicked = recover()
				ch <- o
			}()
			_, o.err = s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1,
				Token: testenv.TokenID(), OrderID: tid(item, user, shards, 1)})
		}()
		select {
		case o := <-ch:
			return o
		case <-time.After(10 * time.Second):
			t.Errorf("purchase of user %d hangs after a batch panicked", user)
			o.err = errHung
			return o
		}
	}
	var wg sync.WaitGroup
	outs := make([]outcome, queued+1)
	for i := range outs {
		wg.Go(func() { outs[i] = purchase(int64(i + 1)) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, o := range outs {
		if o.panicked != nil || o.err == nil {
			t.Errorf("call %d of a panicked batch: err %v, panic %v; want an error", i, o.err, o.panicked)
		}
	}
	// The batcher is free: later purchases run.
	if o := purchase(100); o.err != nil || o.panicked != nil {
		t.Fatalf("purchase after the panic: %v, panic %v", o.err, o.panicked)
	}
	if id, err := buy(ctx, t, s, item, shards, 1, 101, 1); err != nil || id != tid(item, 101, shards, 1) {
		t.Fatalf("purchase after the panic: order %d, %v", id, err)
	}
}

var errHung = errors.New("test: call hangs")

// panicHook calls before ahead of every request (a command or a pipeline).
type panicHook struct{ before func() }

func (h *panicHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *panicHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.before(); return next(ctx, cmd) }
}
func (h *panicHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.before(); return next(ctx, cmds) }
}
