package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/snowflake"
	"github.com/redis/go-redis/v9"

	"seckill/handler"
)

// errNodeLease: the node id lease could not be confirmed lately, so another
// instance may hold the id; making ids now could collide.
var errNodeLease = fmt.Errorf("node id lease not confirmed: %w", handler.ErrNoOrderID)

// nodeLease holds one of the 1024 snowflake node ids in Redis, so two running
// instances never make the same order id (a duplicate id would make the
// writer's INSERT IGNORE drop an accepted order). The lease is refreshed
// while the process lives and expires soon after it dies; ids are only made
// while the last confirmation is fresh.
type nodeLease struct {
	rdb    redis.UniversalClient
	prefix string
	owner  string
	ttl    time.Duration
	cur    atomic.Pointer[leased]
}

// leased is one held node id and until when it is known to be ours.
type leased struct {
	key   string
	node  *snowflake.Node
	until time.Time
}

const maxNode = 1 << 10 // snowflake's default 10 node bits

func leaseNode(ctx context.Context, rdb redis.UniversalClient, prefix, owner string, ttl time.Duration) (*nodeLease, error) {
	l := &nodeLease{rdb: rdb, prefix: prefix, owner: owner, ttl: ttl}
	if err := l.take(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// take leases a free node id.
func (l *nodeLease) take(ctx context.Context) error {
	start := int(time.Now().UnixNano() % maxNode) // spread instances over the ids
	for i := 0; i < maxNode; i++ {
		n := (start + i) % maxNode
		key := l.prefix + ":node:" + strconv.Itoa(n)
		t0 := time.Now()
		ok, err := l.rdb.SetNX(ctx, key, l.owner, l.ttl).Result()
		if err != nil {
			return fmt.Errorf("lease node id: %w", err)
		}
		if !ok {
			continue
		}
		node, err := snowflake.NewNode(int64(n))
		if err != nil {
			return err
		}
		l.cur.Store(&leased{key: key, node: node, until: l.deadline(t0)})
		return nil
	}
	return errors.New("lease node id: all 1024 node ids are taken")
}

// deadline is until when a lease confirmed by a call sent at t0 is surely
// still ours: its TTL, less a margin for clock rates.
func (l *nodeLease) deadline(t0 time.Time) time.Time { return t0.Add(l.ttl - l.ttl/6) }

// NextID makes an order id, or refuses while the lease is unconfirmed.
func (l *nodeLease) NextID() (int64, error) {
	c := l.cur.Load()
	if time.Now().After(c.until) {
		return 0, errNodeLease
	}
	return c.node.Generate().Int64(), nil
}

// refreshScript extends the lease only while this process still owns it.
var refreshScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// keep refreshes the lease until ctx ends, then releases it. If the lease
// was lost (Redis lost the key, or it expired during an outage and another
// instance took the id), it leases another id.
func (l *nodeLease) keep(ctx context.Context, log *slog.Logger) error {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c := l.cur.Load()
			l.rdb.Eval(context.WithoutCancel(ctx), `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`, []string{c.key}, l.owner)
			return nil
		case <-t.C:
		}
		c := l.cur.Load()
		t0 := time.Now()
		ok, err := refreshScript.Run(ctx, l.rdb, []string{c.key}, l.owner, l.ttl.Milliseconds()).Int()
		switch {
		case err != nil:
			// Redis blip: ids stop once the last confirmation is too old.
			log.Warn("refresh node id lease", "err", err)
		case ok == 1:
			l.cur.Store(&leased{key: c.key, node: c.node, until: l.deadline(t0)})
		default:
			log.Warn("node id lease lost; taking another", "key", c.key)
			if err := l.take(ctx); err != nil && ctx.Err() == nil {
				log.Error("lease node id", "err", err)
			}
		}
	}
}
