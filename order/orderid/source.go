package orderid

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Refusals of NextID; each wraps ErrUnavailable.
var (
	errLease   = fmt.Errorf("node id lease not confirmed: %w", ErrUnavailable)
	errFloor   = fmt.Errorf("clock not past the node id's high-water mark: %w", ErrUnavailable)
	errCeiling = fmt.Errorf("clock past the confirmed high-water mark: %w", ErrUnavailable)
	errBack    = fmt.Errorf("clock behind the last millisecond used: %w", ErrUnavailable)
)

// Config of a Source.
type Config struct {
	// Prefix is the Redis key prefix (no braces).
	Prefix string
	// TTL is the lease's time to live. Default 30s.
	TTL time.Duration
	// Now is the wall clock. Default time.Now.
	Now func() time.Time
}

// Source makes order ids under a leased instance node id. The lease is a
// Redis key, <prefix>:node:<n> (a plain SET NX PX token, as bsm/redislock
// makes it, so instances of earlier releases that hold it through
// redislock exclude and are excluded alike). Next to it, in the same hash
// slot, the node id's high-water mark <prefix>:node-mark:{<prefix>:node:<n>}
// is the last Unix millisecond its ids may have used:
//
//   - taking the lease reads the mark (the floor: ids only above it) and,
//     in the same script, raises it to now+TTL;
//   - each refresh, while the lease is still ours, raises it to now+TTL and
//     returns it (the ceiling: ids only up to it);
//   - a release lowers it to the last millisecond actually used (never below
//     the floor), so a restarted instance need not wait out the TTL.
//
// A holder whose clock is behind the previous holder's therefore makes no
// ids until its clock passes the mark, and a clock that jumps ahead stops
// at the mark until a refresh records the jump. Within the process ids of a
// group never go back: a clock that steps back behind the last millisecond
// used stops id-making (ErrUnavailable, so 503) until it is past it again.
type Source struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
	now    func() time.Time
	// nodes are the node ids take tries, in order; nil means all of them
	// from a random start.
	nodes []int

	cur  atomic.Pointer[held] // nil once released
	gens [Groups]gen
	// mu serialises take, refresh and release.
	mu       sync.Mutex
	released bool // by Release: take no more
	// kick wakes Keep for a refresh now (Confirm).
	kick chan struct{}
}

// held is one leased node id and what it may make.
type held struct {
	node  int
	token string
	key   string
	// floor is the mark found at take: ids only for milliseconds above it.
	floor int64
	// ceil is the mark last confirmed: ids only for milliseconds up to it.
	ceil int64
	// until is when the last confirmation gets too old: the TTL from the
	// call's start, less a sixth for clock rates (with time.Now, a
	// monotonic reading: wall-clock steps do not move it).
	until time.Time
}

// gen is one slot group's sequence.
type gen struct {
	mu    sync.Mutex
	token string // the lease the state below belongs to
	last  int64  // last millisecond used
	seq   int    // last sequence number used in last
}

// Lease takes a free node id and returns a Source making ids with it. Call
// Keep to hold it (Keep releases it when its context ends), or Release.
func Lease(ctx context.Context, rdb redis.UniversalClient, cfg Config) (*Source, error) {
	s := newSource(rdb, cfg)
	if err := s.take(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func newSource(rdb redis.UniversalClient, cfg Config) *Source {
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Source{rdb: rdb, prefix: cfg.Prefix, ttl: cfg.TTL, now: cfg.Now, kick: make(chan struct{}, 1)}
}

// Node is the node id held, or -1 once released.
func (s *Source) Node() int {
	if h := s.cur.Load(); h != nil {
		return h.node
	}
	return -1
}

func (s *Source) leaseKey(n int) string { return s.prefix + ":node:" + strconv.Itoa(n) }

// markKey is n's high-water mark: its hash tag is the whole lease key
// (which has no braces), so both are in one Redis Cluster slot.
func (s *Source) markKey(n int) string { return s.prefix + ":node-mark:{" + s.leaseKey(n) + "}" }

// take: KEYS lease, mark; ARGV token, ttl ms, proposed mark, and the
// millisecond the mark must be below ("" for any). Returns {1, mark
// found, mark set} when taken, {0, mark} when held by another, {2, mark}
// when free but its mark is not below ARGV[4].
var takeScript = redis.NewScript(`
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[4] ~= '' and mark >= tonumber(ARGV[4]) then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {0, mark} end
  return {2, mark}
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, mark} end
local new = math.max(mark, tonumber(ARGV[3]))
redis.call('SET', KEYS[2], string.format('%d', new))
return {1, mark, new}
`)

// refresh: KEYS lease, mark; ARGV token, ttl ms, proposed mark. Returns the
// mark, only ever raised, or -1 when the lease is not ours.
var refreshScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local mark = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[3]))
redis.call('SET', KEYS[2], string.format('%d', mark))
return mark
`)

// release: KEYS lease, mark; ARGV token, last millisecond used. Ids have
// stopped, so the mark can come down to what was used.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
`)

// take leases a free node id: first one whose mark the clock has passed
// (usable at once), else any free one (usable once the clock passes it).
func (s *Source) take(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return fmt.Errorf("lease node id: %w", errLease)
	}
	var tok [16]byte
	crand.Read(tok[:]) // never fails (crypto/rand)
	token := hex.EncodeToString(tok[:])
	nodes := s.nodes
	if nodes == nil {
		start := rand.IntN(Nodes) // spread instances over the ids
		for i := range Nodes {
			nodes = append(nodes, (start+i)%Nodes)
		}
	}
	ttl := s.ttl.Milliseconds()
	for pass := range 2 {
		for _, n := range nodes {
			t0 := s.now()
			below := ""
			if pass == 0 {
				below = strconv.FormatInt(t0.UnixMilli(), 10)
			}
			r, err := takeScript.Run(ctx, s.rdb, []string{s.leaseKey(n), s.markKey(n)},
				token, ttl, t0.UnixMilli()+ttl, below).Int64Slice()
			if err != nil {
				return fmt.Errorf("lease node id: %w", err)
			}
			if r[0] != 1 {
				continue
			}
			s.cur.Store(&held{node: n, token: token, key: s.leaseKey(n), floor: r[1], ceil: r[2], until: s.deadline(t0)})
			return nil
		}
	}
	return fmt.Errorf("lease node id: all %d node ids are taken", len(nodes))
}

// deadline is until when a lease confirmed by a call sent at t0 is surely
// still ours: its TTL, less a margin for clock rates.
func (s *Source) deadline(t0 time.Time) time.Time { return t0.Add(s.ttl - s.ttl/6) }

// maxAhead is how far ahead of the clock a group's ids may run (a
// sequence that overflowed borrows the next millisecond). A clock further
// behind the last millisecond used stepped back: id-making stops.
const maxAhead = 1

// NextID makes an order id for slot group g, or refuses with an error
// wrapping ErrUnavailable.
func (s *Source) NextID(g int) (int64, error) {
	gn := &s.gens[g&(Groups-1)]
	gn.mu.Lock()
	defer gn.mu.Unlock()
	// Loaded under the group's lock: once release swapped it out and took
	// this lock, no id of the old lease is made any more.
	h := s.cur.Load()
	if h == nil {
		return 0, errLease
	}
	t := s.now()
	if !t.Before(h.until) {
		return 0, errLease
	}
	if gn.token != h.token {
		gn.token, gn.last, gn.seq = h.token, 0, 0
	}
	ms := t.UnixMilli()
	use, seq := max(ms, gn.last), 0
	if use == gn.last {
		if seq = gn.seq + 1; seq > maxSeq {
			use, seq = use+1, 0
		}
	}
	switch {
	case use <= h.floor:
		return 0, errFloor
	case use > h.ceil:
		return 0, errCeiling
	case use-ms > maxAhead:
		return 0, errBack
	}
	gn.last, gn.seq = use, seq
	return Make(use, g, h.node, seq), nil
}

// refresh extends the lease and raises its mark. lost reports that the
// lease is no longer ours.
func (s *Source) refresh(ctx context.Context) (lost bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.cur.Load()
	if h == nil {
		return !s.released, nil // lost earlier, and no other taken yet
	}
	t0 := s.now()
	ttl := s.ttl.Milliseconds()
	mark, err := refreshScript.Run(ctx, s.rdb, []string{h.key, s.markKey(h.node)}, h.token, ttl, t0.UnixMilli()+ttl).Int64()
	if err != nil {
		return false, fmt.Errorf("refresh node id lease: %w", err)
	}
	if mark < 0 {
		s.cur.Store(nil) // stop at once; take leases another
		return true, nil
	}
	next := *h
	next.ceil, next.until = mark, s.deadline(t0)
	s.cur.Store(&next)
	return false, nil
}

// Release stops id-making and gives the node id back, with its mark
// lowered to the last millisecond used. Idempotent.
func (s *Source) Release(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = true
	h := s.cur.Swap(nil)
	if h == nil {
		return nil
	}
	last := h.floor
	for i := range s.gens {
		gn := &s.gens[i]
		gn.mu.Lock()
		if gn.token == h.token {
			last = max(last, gn.last)
		}
		gn.mu.Unlock()
	}
	if err := releaseScript.Run(ctx, s.rdb, []string{h.key, s.markKey(h.node)}, h.token, last).Err(); err != nil {
		return fmt.Errorf("release node id lease: %w", err)
	}
	return nil
}

// Confirm asks Keep to refresh the lease now rather than at its next
// tick: Redis answers again after an outage, and ids wait for a
// confirmation. It does not block; kicks while one is pending merge.
func (s *Source) Confirm() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Keep refreshes the lease every third of its TTL until ctx ends, then
// releases it; at once when Confirm asks, and after a failed refresh again
// within a second (a call to a Redis whose breaker is open costs nothing).
// If the lease was lost (Redis lost the key, or it expired during an
// outage and another instance took the id), it leases another node id.
func (s *Source) Keep(ctx context.Context, log *slog.Logger) error {
	every := s.ttl / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.Release(context.WithoutCancel(ctx)); err != nil {
				log.Warn("release node id lease", "err", err)
			}
			return nil
		case <-t.C:
		case <-s.kick:
			t.Stop()
		}
		node := s.Node()
		lost, err := s.refresh(ctx)
		next := every
		switch {
		case lost:
			log.Warn("node id lease lost; taking another", "node", node)
			if err := s.take(ctx); err != nil && ctx.Err() == nil {
				log.Error("lease node id", "err", err)
			}
		case err != nil && !errors.Is(err, context.Canceled):
			// Redis blip: ids stop once the last confirmation is too old.
			log.Warn("refresh node id lease", "err", err)
			next = min(every, time.Second)
		}
		t.Reset(next)
	}
}
