package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/bwmarrin/snowflake"
	"github.com/redis/go-redis/v9"
)

// nodeLease holds one of the 1024 snowflake node ids in Redis, so two running
// instances never make the same order id. The lease is refreshed while the
// process lives and expires soon after it dies.
type nodeLease struct {
	rdb   redis.UniversalClient
	key   string
	owner string
	ttl   time.Duration
	node  *snowflake.Node
}

const maxNode = 1 << 10 // snowflake's default 10 node bits

func leaseNode(ctx context.Context, rdb redis.UniversalClient, prefix, owner string, ttl time.Duration) (*nodeLease, error) {
	start := int(time.Now().UnixNano() % maxNode) // spread instances over the ids
	for i := 0; i < maxNode; i++ {
		n := (start + i) % maxNode
		key := prefix + ":node:" + strconv.Itoa(n)
		ok, err := rdb.SetNX(ctx, key, owner, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("lease node id: %w", err)
		}
		if !ok {
			continue
		}
		node, err := snowflake.NewNode(int64(n))
		if err != nil {
			return nil, err
		}
		return &nodeLease{rdb: rdb, key: key, owner: owner, ttl: ttl, node: node}, nil
	}
	return nil, errors.New("lease node id: all 1024 node ids are taken")
}

// refreshScript extends the lease only while this process still owns it.
var refreshScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// keep refreshes the lease until ctx ends, then releases it. If the lease is
// lost (Redis lost the key and another instance could take the id), the
// process cannot go on making ids safely: keep returns an error.
func (l *nodeLease) keep(ctx context.Context, log *slog.Logger) error {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rel := context.WithoutCancel(ctx)
			l.rdb.Eval(rel, `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`, []string{l.key}, l.owner)
			return nil
		case <-t.C:
			ok, err := refreshScript.Run(ctx, l.rdb, []string{l.key}, l.owner, l.ttl.Milliseconds()).Int()
			if err != nil {
				log.Warn("refresh node id lease", "err", err)
				continue // Redis blip: the lease still has time left
			}
			if ok == 0 {
				// Another owner may hold the id now; re-take it if free.
				set, err := l.rdb.SetNX(ctx, l.key, l.owner, l.ttl).Result()
				if err != nil || !set {
					return fmt.Errorf("node id lease %s lost", l.key)
				}
			}
		}
	}
}
