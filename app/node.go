package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/bwmarrin/snowflake"
	"github.com/redis/go-redis/v9"

	"seckill/order/sale"
	"seckill/stock"
)

// errNodeLease: the node id lease could not be confirmed lately, so another
// instance may hold the id; making ids now could collide.
var errNodeLease = fmt.Errorf("node id lease not confirmed: %w", sale.ErrNoOrderID)

// nodeLease holds one of the 256 instance node ids as a bsm/redislock
// lease (the same mechanism as the sweeper's and reconciler's), so two
// running instances never make the same order id (a duplicate id would make
// the writer's INSERT IGNORE drop an accepted order). The lease is
// refreshed while the process lives and expires soon after it dies; ids are
// only made while the last confirmation is fresh.
type nodeLease struct {
	locks  *redislock.Client
	prefix string
	ttl    time.Duration
	cur    atomic.Pointer[leased]
}

// leased is one held node id and until when it is known to be ours.
type leased struct {
	lock *redislock.Lock
	// nodes[g] makes the ids of slot group g: its snowflake node field is
	// g<<instanceBits | the instance's node id, so each group has its own
	// sequence and ids of different groups or instances never collide.
	nodes *[stock.Groups]*snowflake.Node
	until time.Time
}

// Order id layout: 41 bits of milliseconds, then the snowflake node field
// (6 bits of slot group, see stock.OrderGroup, and 8 of instance node id),
// then 8 bits of sequence: 256 ids per millisecond per group per instance.
const (
	instanceBits = 8
	maxNode      = 1 << instanceBits
)

func init() {
	snowflake.NodeBits = 6 + instanceBits
	snowflake.StepBits = 8
}

// groupNodes makes the per-group snowflake nodes of instance node n.
func groupNodes(n int) (*[stock.Groups]*snowflake.Node, error) {
	var nodes [stock.Groups]*snowflake.Node
	for g := range nodes {
		node, err := snowflake.NewNode(int64(g<<instanceBits | n))
		if err != nil {
			return nil, err
		}
		nodes[g] = node
	}
	return &nodes, nil
}

func leaseNode(ctx context.Context, rdb redis.UniversalClient, prefix string, ttl time.Duration) (*nodeLease, error) {
	l := &nodeLease{locks: redislock.New(rdb), prefix: prefix, ttl: ttl}
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
		t0 := time.Now()
		lock, err := l.locks.Obtain(ctx, l.prefix+":node:"+strconv.Itoa(n), l.ttl, nil)
		if errors.Is(err, redislock.ErrNotObtained) {
			continue
		}
		if err != nil {
			return fmt.Errorf("lease node id: %w", err)
		}
		nodes, err := groupNodes(n)
		if err != nil {
			return err
		}
		l.cur.Store(&leased{lock: lock, nodes: nodes, until: l.deadline(t0)})
		return nil
	}
	return fmt.Errorf("lease node id: all %d node ids are taken", maxNode)
}

// deadline is until when a lease confirmed by a call sent at t0 is surely
// still ours: its TTL, less a margin for clock rates.
func (l *nodeLease) deadline(t0 time.Time) time.Time { return t0.Add(l.ttl - l.ttl/6) }

// NextID makes an order id for slot group g, or refuses while the lease is
// unconfirmed.
func (l *nodeLease) NextID(g int) (int64, error) {
	c := l.cur.Load()
	if time.Now().After(c.until) {
		return 0, errNodeLease
	}
	return c.nodes[g&(stock.Groups-1)].Generate().Int64(), nil
}

// keep refreshes the lease until ctx ends, then releases it. If the lease
// was lost (Redis lost the key, or it expired during an outage and another
// instance took the id), it leases another id.
func (l *nodeLease) keep(ctx context.Context, log *slog.Logger) error {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.cur.Load().lock.Release(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
		}
		c := l.cur.Load()
		t0 := time.Now()
		err := c.lock.Refresh(ctx, l.ttl, nil)
		switch {
		case err == nil:
			l.cur.Store(&leased{lock: c.lock, nodes: c.nodes, until: l.deadline(t0)})
		case errors.Is(err, redislock.ErrNotObtained):
			log.Warn("node id lease lost; taking another", "key", c.lock.Key())
			if err := l.take(ctx); err != nil && ctx.Err() == nil {
				log.Error("lease node id", "err", err)
			}
		default:
			// Redis blip: ids stop once the last confirmation is too old.
			log.Warn("refresh node id lease", "err", err)
		}
	}
}
