package stock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"
)

// Lease takes the named lease (a bsm/redislock lock under the store's
// prefix) for ttl, so one instance at a time does a job such as sweeping.
// It retries for up to wait (0: one try) and then fails with an error
// matching ErrLeaseHeld. The holder must Refresh it before ttl runs out and
// Release it when done.
func (s *Store) Lease(ctx context.Context, name string, ttl, wait time.Duration) (*redislock.Lock, error) {
	opt := &redislock.Options{RetryStrategy: redislock.NoRetry()}
	octx := ctx
	if wait > 0 {
		opt.RetryStrategy = redislock.LinearBackoff(min(wait/10+time.Millisecond, 100*time.Millisecond))
		var cancel context.CancelFunc
		octx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	lock, err := redislock.New(s.rdb).Obtain(octx, s.prefix+":lease:"+name, ttl, opt)
	if err != nil && (errors.Is(err, redislock.ErrNotObtained) || wait > 0 && ctx.Err() == nil && octx.Err() != nil) {
		// Held elsewhere (or only our own wait ran out): the library's
		// error stays here.
		err = ErrLeaseHeld
	}
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", name, err)
	}
	return lock, nil
}

// ErrLeaseHeld: another instance holds the lease Lease asked for.
var ErrLeaseHeld = errors.New("lease held by another instance")

// Snapshot is the Redis side of one item, read at one moment.
type Snapshot struct {
	// Shards is each shard's count; -1 where the key is missing.
	Shards []int64
	// Present is how many shard keys exist (0: Redis lost the item).
	Present int
	// Below is how many units the present shards hold below zero, summed
	// (0 unless something oversold).
	Below int64
	// Remaining is the sum of the present shards' counts.
	Remaining int64
	// Outbox is the number of reservations in the shards' outboxes.
	Outbox int64
}

// snapshotLua reads one shard's count (and whether it exists) and its
// outbox length in one atomic step.
const snapshotLua = `local s = redis.call('GET', KEYS[1])
if not s then return {0, 0, redis.call('XLEN', KEYS[2])} end
return {1, tonumber(s), redis.call('XLEN', KEYS[2])}`

// Snapshot reads every shard's count and outbox length of the item, each
// shard in one atomic script, so a unit moving from a shard into its outbox
// (a purchase; it happens within one shard) is seen on exactly one side.
// The shards' scripts go in one pipeline (on a cluster, one round trip per
// master; no transaction spans slots).
func (s *Store) Snapshot(ctx context.Context, itemID int64, shards int) (Snapshot, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, shards)
	for i := range shards {
		k := s.keys(itemID, i, shards)
		cmds[i] = pipe.Eval(ctx, snapshotLua, []string{k.Stock(), k.Outbox()})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot of item %d: %w", itemID, err)
	}
	snap := Snapshot{Shards: make([]int64, shards)}
	for i, c := range cmds {
		v, err := c.Int64Slice()
		if err != nil || len(v) != 3 {
			return Snapshot{}, fmt.Errorf("snapshot of item %d shard %d: %v %w", itemID, i, v, err)
		}
		n, l := v[1], v[2]
		snap.Shards[i] = -1
		if v[0] == 1 {
			snap.Shards[i] = n
			snap.Present++
			snap.Remaining += n
			if n < 0 {
				snap.Below -= n
			}
		}
		snap.Outbox += l
	}
	return snap, nil
}

// SetBought overwrites the per-user counts of the item with byUser (user id
// to units held), each on the user's home shard. Rebuild uses it after
// Redis lost them; call it while the item's sales are stopped.
func (s *Store) SetBought(ctx context.Context, itemID int64, shards int, byUser map[int64]int64) error {
	perShard := make([][]any, shards)
	users := make([]int64, 0, len(byUser))
	for u := range byUser {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		if n := byUser[u]; n > 0 {
			h := HomeShard(u, shards)
			perShard[h] = append(perShard[h], u, n)
		}
	}
	for i, args := range perShard {
		key := s.keys(itemID, i, shards).Bought()
		// One MULTI per shard: no purchase sees the hash half written.
		pipe := s.rdb.TxPipeline()
		pipe.Del(ctx, key)
		for chunk := range slices.Chunk(args, 2000) {
			pipe.HSet(ctx, key, chunk...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("set bought of item %d shard %d: %w", itemID, i, err)
		}
	}
	return nil
}

// Unit is the unit of one cancelled order: the shard it came from and the
// buyer whose slot it held.
type Unit struct {
	OrderID int64
	UserID  int64
	Shard   int
}

// guardTTL is how long the per-order return and free guards outlive their
// last use (restock.lua and free.lua use the same week).
const guardTTL = 7 * 24 * time.Hour

// SkipReturns records the units as already returned and their buyers' slots
// as already freed, without touching any count: Return of these orders
// becomes a no-op. Rebuild uses it for cancelled orders whose unit it counts
// in the stock it writes, so a later Return cannot add the unit twice.
func (s *Store) SkipReturns(ctx context.Context, itemID int64, shards int, units []Unit) error {
	for chunk := range slices.Chunk(units, 1000) {
		pipe := s.rdb.Pipeline()
		for _, u := range chunk {
			returned, freed := s.keys(itemID, u.Shard, shards).Returned(), s.keys(itemID, HomeShard(u.UserID, shards), shards).Freed()
			pipe.SAdd(ctx, returned, u.OrderID)
			pipe.Expire(ctx, returned, guardTTL)
			pipe.SAdd(ctx, freed, u.OrderID)
			pipe.Expire(ctx, freed, guardTTL)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("skip returns of item %d: %w", itemID, err)
		}
	}
	return nil
}

var doneScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// aliveKey is group g's alive marker; a missing one says the Redis node
// that holds the group's slot lost its data. aliveMetaKey is the marker of
// the node that holds the {meta} keys.
func (s *Store) aliveKey(g int) string { return s.groupKey(g, "alive") }
func (s *Store) aliveMetaKey() string  { return s.prefix + ":{meta}:alive" }
func (s *Store) rebuildKey() string    { return s.prefix + ":{meta}:rebuild" }

// CheckLoss reports a pending rebuild: Redis lost data (an alive marker of
// a slot group, or of the {meta} keys, was missing, now or before) and the
// rebuild of the items created before cutoff has not been finished by any
// instance yet. On a cluster each master holds the markers of its groups,
// so a master that comes back empty is seen as such. If this call finds a
// marker missing, the cutoff is since: items created later are warmed by
// their creator and must not be taken for lost ones (between an item's
// MySQL row and its shards, it looks lost).
//
// The rebuild marker is set before the missing alive markers are put back:
// an instance that dies in between leaves the loss to be seen again, not
// forgotten. The cost is fixed: Groups+2 reads, whatever the items.
func (s *Store) CheckLoss(ctx context.Context, since time.Time) (pending bool, cutoff time.Time, err error) {
	pipe := s.rdb.Pipeline()
	alive := make([]string, 0, Groups+1)
	for g := range Groups {
		alive = append(alive, s.aliveKey(g))
	}
	alive = append(alive, s.aliveMetaKey())
	ex := make([]*redis.IntCmd, len(alive))
	for i, k := range alive {
		ex[i] = pipe.Exists(ctx, k)
	}
	marker := pipe.Get(ctx, s.rebuildKey())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false, time.Time{}, fmt.Errorf("check redis data: %w", err)
	}
	var missing []string
	for i, c := range ex {
		if c.Val() == 0 {
			missing = append(missing, alive[i])
		}
	}
	v, err := marker.Result()
	if len(missing) > 0 {
		v = strconv.FormatInt(since.UnixMilli(), 10)
		if err := s.rdb.Set(ctx, s.rebuildKey(), v, 0).Err(); err != nil {
			return false, time.Time{}, fmt.Errorf("check redis data: set rebuild marker: %w", err)
		}
		pipe := s.rdb.Pipeline()
		for _, k := range missing {
			pipe.Set(ctx, k, "1", 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false, time.Time{}, fmt.Errorf("check redis data: set alive markers: %w", err)
		}
	} else if errors.Is(err, redis.Nil) {
		return false, time.Time{}, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("check redis data: rebuild marker %q: %w", v, err)
	}
	return true, time.UnixMilli(ms), nil
}

// RebuildDone clears the rebuild marker of the loss seen at cutoff (not a
// later one).
func (s *Store) RebuildDone(ctx context.Context, cutoff time.Time) error {
	err := doneScript.Run(ctx, s.rdb, []string{s.rebuildKey()}, strconv.FormatInt(cutoff.UnixMilli(), 10)).Err()
	if err != nil {
		return fmt.Errorf("clear rebuild marker: %w", err)
	}
	return nil
}

// DropShards removes the item's shard counts: every purchase of it then
// answers "not ready" (503) until the shards are set again, which is how a
// rebuild stops sales without telling buyers the item is sold out.
func (s *Store) DropShards(ctx context.Context, itemID int64, shards int) error {
	pipe := s.rdb.Pipeline()
	for i := range shards {
		pipe.Del(ctx, s.keys(itemID, i, shards).Stock())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("drop shards of item %d: %w", itemID, err)
	}
	return nil
}
