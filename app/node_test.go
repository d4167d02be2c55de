package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"seckill/app/testenv"
)

func TestNodeLease(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	a, err := leaseNode(ctx, rdb, prefix, "a", 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	b, err := leaseNode(ctx, rdb, prefix, "b", 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if a.cur.Load().key == b.cur.Load().key {
		t.Fatalf("two instances got node key %s", a.cur.Load().key)
	}
	if _, err := a.NextID(); err != nil {
		t.Fatalf("fresh lease: %v", err)
	}

	// Unrefreshed (Redis unreachable, say): ids stop before the key could
	// expire and be taken by someone else.
	time.Sleep(550 * time.Millisecond)
	if _, err := b.NextID(); !errors.Is(err, errNodeLease) {
		t.Fatalf("stale lease: got %v, want errNodeLease", err)
	}

	// Kept: a lease taken over by another owner is replaced by a new id.
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.keep(kctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	lost := a.cur.Load().key
	rdb.Set(ctx, lost, "intruder", time.Minute)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && a.cur.Load().key == lost {
		time.Sleep(20 * time.Millisecond)
	}
	if a.cur.Load().key == lost {
		t.Fatal("lost lease was not replaced")
	}
	if _, err := a.NextID(); err != nil {
		t.Errorf("after re-lease: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("keep: %v", err)
	}
	if n, _ := rdb.Exists(ctx, a.cur.Load().key).Result(); n != 0 {
		t.Error("lease not released at stop")
	}
}
