package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"seckill/app/testenv"
	"seckill/stock"
)

func TestNodeLease(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	a, err := leaseNode(ctx, rdb, prefix, 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	b, err := leaseNode(ctx, rdb, prefix, 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if a.cur.Load().lock.Key() == b.cur.Load().lock.Key() {
		t.Fatalf("two instances got node key %s", a.cur.Load().lock.Key())
	}
	// Every id is made for the slot group asked for, and ids of different
	// groups or instances never collide.
	seen := map[int64]bool{}
	for _, l := range []*nodeLease{a, b} {
		for g := range stock.Groups {
			for range 3 {
				id, err := l.NextID(g)
				if err != nil {
					t.Fatalf("fresh lease: %v", err)
				}
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

	// Unrefreshed (Redis unreachable, say): ids stop before the key could
	// expire and be taken by someone else. (The wait is the input here: the
	// lease's own clock, 600ms less a sixth, must run out.)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(b.cur.Load().until) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.NextID(0); !errors.Is(err, errNodeLease) {
		t.Fatalf("stale lease: got %v, want errNodeLease", err)
	}

	// Kept: a lease taken over by another owner is replaced by a new id.
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.keep(kctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	lost := a.cur.Load().lock.Key()
	rdb.Set(ctx, lost, "intruder", time.Minute)
	deadline = time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && a.cur.Load().lock.Key() == lost {
		time.Sleep(20 * time.Millisecond)
	}
	if a.cur.Load().lock.Key() == lost {
		t.Fatal("lost lease was not replaced")
	}
	if _, err := a.NextID(stock.Groups - 1); err != nil {
		t.Errorf("after re-lease: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("keep: %v", err)
	}
	if n, _ := rdb.Exists(ctx, a.cur.Load().lock.Key()).Result(); n != 0 {
		t.Error("lease not released at stop")
	}
}
