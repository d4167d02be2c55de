package sale

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"seckill/app/testenv"
	"seckill/stock"
)

// TestEvictingRedisRefusesPurchases: while Redis may evict keys, purchases
// and token issues answer ErrRedisEvicts (unavailable, with a Retry-After)
// without a Redis call; a key answered before keeps its answer; once it is
// noeviction again they go through.
func TestEvictingRedisRefusesPurchases(t *testing.T) {
	var next int64 = 1 << 38
	e, s := newEnv(t, 10, idsFunc(func(g int) (int64, error) { next++; return stock.WithGroup(next<<22, g), nil }))
	tok := e.token(t, s, 7)
	id, err := s.Purchase(e.ctx, e.item.ID, 7, tok)
	if err != nil {
		t.Fatal(err)
	}
	pending := e.token(t, s, 8)

	s.SetEvicting(&stock.EvictingError{MasterPolicy: stock.MasterPolicy{Addr: "r:6379", Policy: "allkeys-lru"}})
	before := e.rt.N.Load()
	if _, err := s.Purchase(e.ctx, e.item.ID, 8, pending); err != ErrRedisEvicts {
		t.Errorf("purchase: got %v, want ErrRedisEvicts", err)
	}
	if _, err := s.IssueToken(e.ctx, e.item.ID, 9); err != ErrRedisEvicts {
		t.Errorf("token issue: got %v, want ErrRedisEvicts", err)
	}
	if n := e.rt.N.Load() - before; n != 0 {
		t.Errorf("refused while evicting: %d Redis round trips, want 0", n)
	}
	if again, err := s.Purchase(e.ctx, e.item.ID, 7, tok); err != nil || again != id {
		t.Errorf("a key answered before: got %d, %v; want %d", again, err, id)
	}
	if ErrRedisEvicts.Kind != Unavailable || ErrRedisEvicts.RetryAfter <= 0 {
		t.Errorf("ErrRedisEvicts: %+v, want unavailable with a Retry-After", ErrRedisEvicts)
	}
	if err := s.Evicting(); !errors.Is(err, stock.ErrEvicting) {
		t.Errorf("Evicting: got %v, want the evicting error for readiness", err)
	}

	s.SetEvicting(nil)
	if _, err := s.Purchase(e.ctx, e.item.ID, 8, pending); err != nil {
		t.Errorf("purchase after noeviction: got %v, want accepted", err)
	}
	if s.Evicting() != nil {
		t.Errorf("Evicting after noeviction: got %v, want nil", s.Evicting())
	}
}

// TestWatchEvictionFollowsThePolicy: the watch loop stops purchases when
// Redis's policy is changed to an evicting one at runtime, and resumes
// them when it is noeviction again; a Redis that cannot be read changes
// nothing.
func TestWatchEvictionFollowsThePolicy(t *testing.T) {
	srv := testenv.PrivateRedis(t)
	c := srv.Client()
	defer c.Close()
	s := New(Config{Stock: stock.NewStore(c, stock.Config{})})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.WatchEviction(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); wg.Wait() }()

	until := func(what string, cond func() bool) {
		t.Helper()
		end := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(end) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	until("refused once allkeys-lru", func() bool { return s.refusedForEviction() })
	if err := s.Evicting(); err == nil || !errors.Is(err, stock.ErrEvicting) {
		t.Errorf("Evicting: got %v, want ErrEvicting", err)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	until("accepted once noeviction", func() bool { return !s.refusedForEviction() })

	// Set evicting, then make Redis unreadable: the flag stays.
	if err := c.ConfigSet(ctx, "maxmemory-policy", "volatile-lru").Err(); err != nil {
		t.Fatal(err)
	}
	until("refused once volatile-lru", func() bool { return s.refusedForEviction() })
	srv.Stop()
	s.checkEviction(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !s.refusedForEviction() {
		t.Error("an unreadable Redis cleared the flag: it must stay until a check reads noeviction")
	}
}
