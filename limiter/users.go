package limiter

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// shardBits sets the number of user shards (1<<shardBits). 64 shards keep
// lock contention negligible at tens of thousands of requests per second.
const shardBits = 6

// userBuckets is a sharded map from user id to that user's token bucket.
// There is no lock over the whole map: a request takes one shard's mutex for
// a map lookup, and the bucket has its own mutex inside rate.Limiter.
type userBuckets struct {
	limit  rate.Limit
	burst  int
	epoch  time.Time // lastSeen is measured from here (monotonic clock)
	shards [1 << shardBits]userShard
}

type userShard struct {
	mu   sync.Mutex
	m    map[int64]*userBucket
	peak int // largest len(m) since the map was last rebuilt
	_    [40]byte
}

type userBucket struct {
	*rate.Limiter
	lastSeen time.Duration // since userBuckets.epoch; guarded by the shard mutex
}

func newUserBuckets(epoch time.Time, limit rate.Limit, burst int) *userBuckets {
	u := &userBuckets{limit: limit, burst: burst, epoch: epoch}
	for i := range u.shards {
		u.shards[i].m = make(map[int64]*userBucket)
	}
	return u
}

func (u *userBuckets) shard(userID int64) *userShard {
	// Fibonacci hashing spreads sequential ids over all shards.
	return &u.shards[(uint64(userID)*0x9E3779B97F4A7C15)>>(64-shardBits)]
}

// get returns userID's bucket, creating a full one if needed, and marks it
// used at now. Marking under the shard mutex means the janitor, which holds
// the same mutex, never evicts a bucket a request has just looked up.
func (u *userBuckets) get(now time.Time, userID int64) *rate.Limiter {
	s := u.shard(userID)
	seen := now.Sub(u.epoch)
	s.mu.Lock()
	b, ok := s.m[userID]
	if !ok {
		b = &userBucket{Limiter: rate.NewLimiter(u.limit, u.burst)}
		s.m[userID] = b
		s.peak = max(s.peak, len(s.m))
	}
	b.lastSeen = seen
	s.mu.Unlock()
	return b.Limiter
}

// evictIdle drops buckets unused for at least idle that are also full again,
// and returns how many it dropped. Dropping only full buckets means eviction
// never hands a user a fresh burst early: a new bucket would be identical.
func (u *userBuckets) evictIdle(now time.Time, idle time.Duration) int {
	cutoff := now.Sub(u.epoch) - idle
	full := float64(u.burst)
	evicted := 0
	for i := range u.shards {
		s := &u.shards[i]
		s.mu.Lock()
		for id, b := range s.m {
			if b.lastSeen <= cutoff && b.TokensAt(now) >= full {
				delete(s.m, id)
				evicted++
			}
		}
		// Go maps never shrink; rebuild one that is mostly empty so memory
		// follows the number of active users, not the historical peak.
		if s.peak >= 1024 && len(s.m) <= s.peak/4 {
			m := make(map[int64]*userBucket, len(s.m))
			for id, b := range s.m {
				m[id] = b
			}
			s.m = m
			s.peak = len(m)
		}
		s.mu.Unlock()
	}
	return evicted
}

// len returns the number of buckets held.
func (u *userBuckets) len() int {
	n := 0
	for i := range u.shards {
		s := &u.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// janitorInterval scans twice per idle period, within [10ms, 1m].
func janitorInterval(idle time.Duration) time.Duration {
	return min(max(idle/2, 10*time.Millisecond), time.Minute)
}

// janitor evicts idle per-user buckets every interval until Close. It is the
// only goroutine the Limiter owns; done tells Close it has exited.
func (l *Limiter) janitor(interval time.Duration) {
	defer close(l.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.users.evictIdle(l.now(), l.cfg.UserIdle)
		}
	}
}
