package stock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Restored is a purchase an instance accepted before Redis lost its data,
// as that instance remembers it.
type Restored struct {
	OrderID, ItemID, UserID int64
	// Home is the buyer's home shard of the item's Shards.
	Home, Shards int
	Token        string
	At           time.Time
	// Reinject: the order is not in MySQL, so its reservation goes back
	// into the outbox (of the buyer's home shard) to be relayed again.
	Reinject bool
}

// Restore puts back what Redis lost of purchases that were accepted: the
// token's answer (a retry of the key gets its 202 again), the order index
// entry, and, for orders not stored yet, the reservation in the outbox.
// Call it only while the items' sales are stopped for a rebuild, before the
// rebuild counts: the rebuild then counts the reinjected reservations.
func (s *Store) Restore(ctx context.Context, rs []Restored) error {
	for chunk := range slices.Chunk(rs, 500) {
		pipe := s.rdb.Pipeline()
		for _, r := range chunk {
			g := ShardGroup(r.ItemID, r.Home, r.Shards)
			k := s.keysIn(g, r.ItemID, r.Home)
			tk := k.Token(r.Token)
			pipe.HSet(ctx, tk, tokUser, r.UserID, tokState, stateDone, tokCode, codeOK, tokOrder, strconv.FormatInt(r.OrderID, 10))
			pipe.Expire(ctx, tk, s.cfg.ResultTTL)
			pipe.Set(ctx, s.orderKey(r.OrderID), r.index(), s.cfg.ResultTTL)
			if r.Reinject {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: k.Outbox(), Values: []any{
					outOrder, strconv.FormatInt(r.OrderID, 10), outItem, r.ItemID, outUser, r.UserID,
					outShard, r.Home, outHome, r.Home, outAt, r.At.UnixMilli()}})
				pipe.SAdd(ctx, s.activeKey(g), outboxMember(r.ItemID, r.Home))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("restore %d accepted purchases: %w", len(chunk), err)
		}
	}
	return nil
}

// index is the order index value of the purchase.
func (r Restored) index() string {
	return strconv.FormatInt(r.ItemID, 10) + ":" + strconv.Itoa(r.Home) + ":" + r.Token + ":" + strconv.FormatInt(r.At.UnixMilli(), 10)
}

func (s *Store) membersKey() string { return s.prefix + ":{meta}:members" }
func (s *Store) restoredKey(cutoff time.Time) string {
	return s.prefix + ":{meta}:restored:" + strconv.FormatInt(cutoff.UnixMilli(), 10)
}

// Heartbeat records that the instance owner is alive now. A rebuild waits
// for every instance seen alive to have restored what it remembers.
func (s *Store) Heartbeat(ctx context.Context, owner string, forget time.Duration) error {
	now := time.Now()
	pipe := s.rdb.Pipeline()
	pipe.ZAdd(ctx, s.membersKey(), redis.Z{Score: float64(now.UnixMilli()), Member: owner})
	pipe.ZRemRangeByScore(ctx, s.membersKey(), "-inf", strconv.FormatInt(now.Add(-forget).UnixMilli(), 10))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// MarkRestored records that owner restored its purchases for the loss seen
// at cutoff.
func (s *Store) MarkRestored(ctx context.Context, cutoff time.Time, owner string) error {
	pipe := s.rdb.Pipeline()
	pipe.SAdd(ctx, s.restoredKey(cutoff), owner)
	pipe.Expire(ctx, s.restoredKey(cutoff), time.Hour)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("mark restored: %w", err)
	}
	return nil
}

// AllRestored reports whether every instance alive within the last alive
// has restored its purchases for the loss seen at cutoff.
func (s *Store) AllRestored(ctx context.Context, cutoff time.Time, alive time.Duration) (bool, error) {
	members, err := s.rdb.ZRangeByScore(ctx, s.membersKey(), &redis.ZRangeBy{
		Min: strconv.FormatInt(time.Now().Add(-alive).UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return false, fmt.Errorf("all restored: %w", err)
	}
	done, err := s.rdb.SMembers(ctx, s.restoredKey(cutoff)).Result()
	if err != nil {
		return false, fmt.Errorf("all restored: %w", err)
	}
	for _, m := range members {
		if !slices.Contains(done, m) {
			return false, nil
		}
	}
	return true, nil
}

// RunID is the Redis server's run id, which changes with every restart:
// a restart from an AOF synced every second may have lost the last second
// of writes, which only the instances that accepted them can put back. On
// a cluster it is every master's run id, sorted: any master's restart
// changes it.
func (s *Store) RunID(ctx context.Context) (string, error) {
	c, ok := s.cluster()
	if !ok {
		return runID(ctx, s.rdb)
	}
	var mu sync.Mutex
	var ids []string
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		id, err := runID(ctx, m)
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		return err
	})
	if err != nil {
		return "", err
	}
	slices.Sort(ids)
	return strings.Join(ids, ","), nil
}

func runID(ctx context.Context, c redis.UniversalClient) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("redis run id: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return v, nil
		}
	}
	return "", errors.New("redis run id: not in INFO server")
}

// Ping checks that Redis answers: on a cluster, every master.
func (s *Store) Ping(ctx context.Context) error {
	c, ok := s.cluster()
	if !ok {
		return s.rdb.Ping(ctx).Err()
	}
	return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if err := m.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis master %s: %w", m.Options().Addr, err)
		}
		return nil
	})
}

// Retake puts back accepted purchases a Redis restart lost (their order
// index entry is gone: the reservation script's writes were not synced):
// the slot, the token's answer, the index, and a unit with its outbox
// entry, from the home shard or any other with stock. It returns the order
// ids that were lost and could not get a unit again (the stock was sold to
// later buyers meanwhile): their 202 is broken, and they are counted.
func (s *Store) Retake(ctx context.Context, shards func(itemID int64) (int, error), rs []Restored) (unserved []int64, err error) {
	if len(rs) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	ex := make([]*redis.IntCmd, len(rs))
	for i, r := range rs {
		ex[i] = pipe.Exists(ctx, s.orderKey(r.OrderID))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("retake: %w", err)
	}
	for i, r := range rs {
		if ex[i].Val() == 1 {
			continue // survived the restart
		}
		n, err := shards(r.ItemID)
		if err != nil {
			return unserved, err
		}
		ok, err := s.retakeOne(ctx, r, n)
		if err != nil {
			return unserved, err
		}
		if !ok {
			unserved = append(unserved, r.OrderID)
		}
	}
	return unserved, nil
}

func (s *Store) retakeOne(ctx context.Context, r Restored, shards int) (bool, error) {
	hk := s.keys(r.ItemID, r.Home, shards)
	lost, err := retakeScript.Run(ctx, s.rdb, []string{hk.Bought(), hk.Token(r.Token), s.orderKey(r.OrderID)},
		r.UserID, r.OrderID, s.ttlSeconds()).Int()
	if err != nil || lost == 0 {
		return true, err
	}
	// One epoch for every retake of the order: a retake that stopped after
	// its take finds its marker and takes nothing twice.
	const epoch = "r"
	for i := 0; i < shards; i++ {
		sh := (r.Home + i) % shards
		sg := ShardGroup(r.ItemID, sh, shards)
		k := s.keysIn(sg, r.ItemID, sh)
		c, err := takeScript.Run(ctx, s.rdb, []string{k.Stock(), k.Outbox(), k.Took(r.OrderID), s.activeKey(sg)},
			r.UserID, r.ItemID, r.OrderID, r.At.UnixMilli(), sh, r.Home, s.ttlSeconds(), epoch, outboxMember(r.ItemID, sh)).Int64()
		if err != nil {
			return false, fmt.Errorf("retake order %d: %w", r.OrderID, err)
		}
		if c == codeOK {
			if err := s.rdb.Set(ctx, s.orderKey(r.OrderID), r.index(), s.cfg.ResultTTL).Err(); err != nil {
				return true, fmt.Errorf("retake order %d: index: %w", r.OrderID, err)
			}
			return true, nil
		}
	}
	// No unit anywhere: free the slot again; the order is lost.
	if err := s.FreeSlot(ctx, r.ItemID, r.UserID, r.OrderID, shards); err != nil {
		return false, err
	}
	return false, nil
}
