package limiter

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// shardBits sets the number of user shards (1<<shardBits). 64 shards keep
// lock contention negligible at tens of thousands of requests per second.
const shardBits = 6

// userBuckets is a sharded map from user id to that user's token bucket.
// There is no lock over the whole map: a request takes one shard's mutex for
// a map lookup and update of the bucket, which is a value in the map.
type userBuckets struct {
	// interval is the time one token takes to come back (1/limit), and
	// span the time a full bucket of burst tokens takes (burst·interval):
	// a bucket is full at or after its tat, and a take at now is allowed
	// while max(tat, now)+interval-now <= span.
	interval, span int64
	epoch          time.Time // times are measured from here (monotonic clock)
	shards         [1 << shardBits]userShard
}

type userShard struct {
	mu   sync.Mutex
	m    map[int64]userBucket
	peak int // largest len(m) since the map was last rebuilt
	_    [40]byte
}

// userBucket is a token bucket held as the time it is full again (the
// theoretical arrival time of GCRA, the generic cell rate algorithm, which
// is the token bucket x/time/rate keeps as tokens and a timestamp). It
// holds no pointer, so a crowd's map of buckets is never scanned by the
// garbage collector and a lookup reads one entry: the crowd's token
// requests each look their user up once.
type userBucket struct {
	tat      int64 // ns since userBuckets.epoch: full at or after this
	lastSeen int64 // ns since userBuckets.epoch; guarded by the shard mutex
}

func newUserBuckets(epoch time.Time, limit rate.Limit, burst int) *userBuckets {
	interval := int64(math.Round(float64(time.Second) / float64(limit)))
	interval = max(interval, 1)
	u := &userBuckets{interval: interval, span: interval * int64(burst), epoch: epoch}
	if u.span/int64(burst) != interval { // past 292 years: never refills in practice
		u.span = math.MaxInt64
	}
	for i := range u.shards {
		u.shards[i].m = make(map[int64]userBucket)
	}
	return u
}

func (u *userBuckets) shard(userID int64) *userShard {
	// Fibonacci hashing spreads sequential ids over all shards.
	return &u.shards[(uint64(userID)*0x9E3779B97F4A7C15)>>(64-shardBits)]
}

// take takes one token from userID's bucket at now, creating a full
// bucket if the user has none, and marks it used. When the bucket is
// empty it changes nothing and returns how long until a token is back.
// Marking under the shard mutex means the janitor, which holds the same
// mutex, never evicts a bucket a request has just used.
func (u *userBuckets) take(now time.Time, userID int64) (wait time.Duration, ok bool) {
	t := int64(now.Sub(u.epoch))
	s := u.shard(userID)
	s.mu.Lock()
	b, found := s.m[userID]
	// A request that read the clock before another took the lock first
	// is taken as at the later time, as x/time/rate does: a stale clock
	// reading must not look like an early arrival.
	// A user without a bucket reads as the zero bucket: full at t.
	t = max(t, b.lastSeen)
	next := max(b.tat, t) + u.interval
	if next-t <= u.span {
		s.m[userID] = userBucket{tat: next, lastSeen: t}
		if !found {
			s.peak = max(s.peak, len(s.m))
		}
		s.mu.Unlock()
		return 0, true
	}
	wait = time.Duration(next - t - u.span)
	if found {
		b.lastSeen = t
		s.m[userID] = b
	}
	s.mu.Unlock()
	return wait, false
}

// giveBack returns the token a take of userID's bucket took: the bucket is
// as it would be had that take not happened, whatever was taken since.
func (u *userBuckets) giveBack(userID int64) {
	s := u.shard(userID)
	s.mu.Lock()
	if b, ok := s.m[userID]; ok {
		b.tat -= u.interval
		s.m[userID] = b
	}
	s.mu.Unlock()
}

// evictIdle drops buckets unused for at least idle that are also full again,
// and returns how many it dropped. Dropping only full buckets means eviction
// never hands a user a fresh burst early: a new bucket would be identical.
func (u *userBuckets) evictIdle(now time.Time, idle time.Duration) int {
	t := int64(now.Sub(u.epoch))
	cutoff := t - int64(idle)
	evicted := 0
	for i := range u.shards {
		s := &u.shards[i]
		s.mu.Lock()
		for id, b := range s.m {
			if b.lastSeen <= cutoff && b.tat <= t {
				delete(s.m, id)
				evicted++
			}
		}
		// Go maps never shrink; rebuild one that is mostly empty so memory
		// follows the number of active users, not the historical peak.
		if s.peak >= 1024 && len(s.m) <= s.peak/4 {
			m := make(map[int64]userBucket, len(s.m))
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
