package limiter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a manual clock for tests that must not depend on timing.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// doneProbe is a context that closes asked the first time its Done is
// called, so a test knows when the code under test starts waiting on it.
type doneProbe struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func (c *doneProbe) Done() <-chan struct{} {
	c.once.Do(func() { close(c.asked) })
	return c.Context.Done()
}

// newTest builds a Limiter on a fresh registry, closed at test end.
func newTest(t *testing.T, cfg Config, now func() time.Time) (*Limiter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if now == nil {
		now = time.Now
	}
	l, err := newLimiter(cfg, reg, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l, reg
}

// mustAcquire acquires for userID and fails the test on rejection.
func mustAcquire(t *testing.T, l *Limiter, userID int64) func() {
	t.Helper()
	release, err := l.Acquire(t.Context(), userID)
	if err != nil {
		t.Fatalf("Acquire(user %d): got error %v, want nil", userID, err)
	}
	return release
}

// asRejection asserts err is a *Rejection with the given reason and cause.
func asRejection(t *testing.T, err error, reason string, cause error) *Rejection {
	t.Helper()
	var rej *Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("Acquire: got error %v, want *Rejection", err)
	}
	if rej.Reason != reason {
		t.Errorf("Reason: got %q, want %q", rej.Reason, reason)
	}
	if !errors.Is(err, cause) {
		t.Errorf("errors.Is(%v, %v): got false, want true", err, cause)
	}
	if rej.RetryAfter < time.Second || rej.RetryAfter%time.Second != 0 {
		t.Errorf("RetryAfter: got %v, want whole seconds >= 1s", rej.RetryAfter)
	}
	return rej
}

func TestAcquireBurstThenLimited(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		users      func(i int) int64 // user of the i-th request
		burst      int
		reason     string
		retryAfter time.Duration
	}{
		{
			name:       "per user",
			cfg:        Config{UserRate: 0.5, UserBurst: 3},
			users:      func(int) int64 { return 7 },
			burst:      3,
			reason:     ReasonUser,
			retryAfter: 2 * time.Second, // one token at 0.5/s
		},
		{
			name:       "global",
			cfg:        Config{GlobalRate: 0.25, GlobalBurst: 5, UserRate: 100, UserBurst: 100},
			users:      func(i int) int64 { return int64(i) },
			burst:      5,
			reason:     ReasonGlobal,
			retryAfter: 4 * time.Second, // one token at 0.25/s
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			l, _ := newTest(t, tt.cfg, clock.Now)
			for i := range tt.burst {
				mustAcquire(t, l, tt.users(i))()
			}
			_, err := l.Acquire(t.Context(), tt.users(tt.burst))
			rej := asRejection(t, err, tt.reason, ErrLimited)
			if rej.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter: got %v, want %v", rej.RetryAfter, tt.retryAfter)
			}
			if errors.Is(err, ErrOverloaded) {
				t.Errorf("errors.Is(%v, ErrOverloaded): got true, want false", err)
			}

			// After RetryAfter the bucket has a token again.
			clock.Advance(rej.RetryAfter)
			mustAcquire(t, l, tt.users(tt.burst))()
		})
	}
}

func TestAcquireOtherUserUnaffected(t *testing.T) {
	l, _ := newTest(t, Config{UserRate: 0.01, UserBurst: 2}, newFakeClock().Now)
	for range 2 {
		mustAcquire(t, l, 1)()
	}
	for range 10 {
		_, err := l.Acquire(t.Context(), 1)
		asRejection(t, err, ReasonUser, ErrLimited)
	}
	for range 2 {
		mustAcquire(t, l, 2)()
	}
}

// TestRejectionConsumesNoToken checks both directions of the stage order:
// user rejections leave the global bucket alone, global rejections give the
// user their token back, and repeated rejections put no bucket into debt.
func TestRejectionConsumesNoToken(t *testing.T) {
	t.Run("user rejections keep global tokens", func(t *testing.T) {
		l, _ := newTest(t, Config{GlobalRate: 0.001, GlobalBurst: 3, UserRate: 0.001, UserBurst: 1}, newFakeClock().Now)
		mustAcquire(t, l, 1)()
		for range 100 {
			_, err := l.Acquire(t.Context(), 1)
			asRejection(t, err, ReasonUser, ErrLimited)
		}
		// Two global tokens must remain, for two other users.
		mustAcquire(t, l, 2)()
		mustAcquire(t, l, 3)()
		_, err := l.Acquire(t.Context(), 4)
		asRejection(t, err, ReasonGlobal, ErrLimited)
	})
	t.Run("global rejections refund the user token", func(t *testing.T) {
		clock := newFakeClock()
		l, _ := newTest(t, Config{GlobalRate: 1, GlobalBurst: 1, UserRate: 0.001, UserBurst: 2}, clock.Now)
		mustAcquire(t, l, 1)() // user 1 has 1 token left, global 0
		for range 100 {
			_, err := l.Acquire(t.Context(), 1)
			asRejection(t, err, ReasonGlobal, ErrLimited)
		}
		clock.Advance(time.Second) // one global token back, user refill negligible
		mustAcquire(t, l, 1)()
	})
	t.Run("rejections put no user into debt", func(t *testing.T) {
		clock := newFakeClock()
		l, _ := newTest(t, Config{UserRate: 1, UserBurst: 1}, clock.Now)
		mustAcquire(t, l, 1)()
		for range 100 {
			_, err := l.Acquire(t.Context(), 1)
			asRejection(t, err, ReasonUser, ErrLimited)
		}
		clock.Advance(time.Second)
		mustAcquire(t, l, 1)()
	})
}

func TestAcquireInFlight(t *testing.T) {
	const maxInFlight = 3

	t.Run("full waits then overloaded", func(t *testing.T) {
		const wait = 50 * time.Millisecond
		l, _ := newTest(t, Config{MaxInFlight: maxInFlight, AcquireWait: wait}, nil)
		for i := range maxInFlight {
			defer mustAcquire(t, l, int64(i))()
		}
		start := time.Now()
		_, err := l.Acquire(t.Context(), 99)
		elapsed := time.Since(start)
		rej := asRejection(t, err, ReasonInFlight, ErrOverloaded)
		if rej.RetryAfter != inFlightRetryAfter {
			t.Errorf("RetryAfter: got %v, want %v", rej.RetryAfter, inFlightRetryAfter)
		}
		if errors.Is(err, ErrLimited) {
			t.Errorf("errors.Is(%v, ErrLimited): got true, want false", err)
		}
		if elapsed < wait {
			t.Errorf("wait before overloaded: got %v, want >= %v", elapsed, wait)
		}
	})

	t.Run("slot freed within wait", func(t *testing.T) {
		l, _ := newTest(t, Config{MaxInFlight: maxInFlight, AcquireWait: 5 * time.Second}, nil)
		releases := make([]func(), maxInFlight)
		for i := range releases {
			releases[i] = mustAcquire(t, l, int64(i))
		}
		// The slot is freed once Acquire is past its fast path: it asks for
		// ctx.Done only to wait in its select.
		ctx := &doneProbe{Context: t.Context(), asked: make(chan struct{})}
		var released atomic.Bool
		go func() {
			<-ctx.asked
			released.Store(true)
			releases[0]()
		}()
		release, err := l.Acquire(ctx, 99)
		if err != nil {
			t.Fatalf("Acquire while a slot is freed: got error %v, want nil", err)
		}
		if !released.Load() {
			t.Error("Acquire returned before the release, want it to wait for it")
		}
		release()
		for _, r := range releases[1:] {
			r()
		}
	})

	t.Run("no wait configured", func(t *testing.T) {
		l, _ := newTest(t, Config{MaxInFlight: 1}, nil)
		defer mustAcquire(t, l, 1)()
		_, err := l.Acquire(t.Context(), 2)
		asRejection(t, err, ReasonInFlight, ErrOverloaded)
	})

	t.Run("context cancelled while waiting", func(t *testing.T) {
		l, reg := newTest(t, Config{MaxInFlight: 1, AcquireWait: time.Minute}, nil)
		defer mustAcquire(t, l, 1)()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		_, err := l.Acquire(ctx, 2)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire: got error %v, want context.DeadlineExceeded", err)
		}
		var rej *Rejection
		if errors.As(err, &rej) {
			t.Errorf("Acquire: got *Rejection %v, want a context error", rej)
		}
		assertMetric(t, reg, `seckill_limiter_rejections_total{reason="inflight"}`, 0)
	})
}

func TestReleaseIdempotent(t *testing.T) {
	l, reg := newTest(t, Config{MaxInFlight: 1}, nil)

	first := mustAcquire(t, l, 1)
	first()
	first() // must not free a second slot

	second := mustAcquire(t, l, 2)
	first() // stale: the slot now belongs to second
	if _, err := l.Acquire(t.Context(), 3); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Acquire after stale release: got error %v, want ErrOverloaded", err)
	}
	assertMetric(t, reg, "seckill_inflight_purchases", 1)

	second()
	second()
	assertMetric(t, reg, "seckill_inflight_purchases", 0)
	third := mustAcquire(t, l, 3)
	if _, err := l.Acquire(t.Context(), 4); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Acquire with one slot held: got error %v, want ErrOverloaded", err)
	}
	third()
}

func TestReleaseIdempotentUnbounded(t *testing.T) {
	l, reg := newTest(t, Config{}, nil)
	a := mustAcquire(t, l, 1)
	b := mustAcquire(t, l, 2)
	a()
	a()
	assertMetric(t, reg, "seckill_inflight_purchases", 1)
	b()
	assertMetric(t, reg, "seckill_inflight_purchases", 0)
}

// TestAcquireConcurrent releases many goroutines at once and checks the
// semaphore never admits more than MaxInFlight at a time.
func TestAcquireConcurrent(t *testing.T) {
	const (
		maxInFlight = 5
		goroutines  = 200
	)
	l, reg := newTest(t, Config{
		GlobalRate: 1e6, GlobalBurst: goroutines,
		UserRate: 1e6, UserBurst: 10,
		MaxInFlight: maxInFlight, AcquireWait: 2 * time.Millisecond,
	}, nil)

	var (
		start                 = make(chan struct{})
		wg                    sync.WaitGroup
		inFlight, peak        atomic.Int64
		admitted, overloaded  atomic.Int64
		unexpected            atomic.Int64
		firstUnexpectedErrMsg atomic.Value
	)
	for i := range goroutines {
		wg.Go(func() {
			<-start
			release, err := l.Acquire(context.Background(), int64(i%37))
			if err != nil {
				if errors.Is(err, ErrOverloaded) {
					overloaded.Add(1)
				} else {
					unexpected.Add(1)
					firstUnexpectedErrMsg.CompareAndSwap(nil, err.Error())
				}
				return
			}
			admitted.Add(1)
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			release()
			release() // idempotent, even under contention
		})
	}
	close(start)
	wg.Wait()

	if got := peak.Load(); got > maxInFlight {
		t.Errorf("peak in flight: got %d, want <= %d", got, maxInFlight)
	}
	if got := admitted.Load(); got < maxInFlight {
		t.Errorf("admitted: got %d, want >= %d", got, maxInFlight)
	}
	if got := unexpected.Load(); got != 0 {
		t.Errorf("unexpected errors: got %d (first: %v), want 0", got, firstUnexpectedErrMsg.Load())
	}
	if got, want := admitted.Load()+overloaded.Load(), int64(goroutines); got != want {
		t.Errorf("admitted+overloaded: got %d, want %d", got, want)
	}
	assertMetric(t, reg, "seckill_inflight_purchases", 0)
	assertMetric(t, reg, `seckill_limiter_rejections_total{reason="inflight"}`, float64(overloaded.Load()))
	// Every slot is free again: exactly maxInFlight can be held.
	for i := range maxInFlight {
		defer mustAcquire(t, l, int64(1000+i))()
	}
	if _, err := l.Acquire(t.Context(), 2000); !errors.Is(err, ErrOverloaded) {
		t.Errorf("Acquire with all slots held: got error %v, want ErrOverloaded", err)
	}
}

func TestEvictIdle(t *testing.T) {
	const idle = time.Hour // the janitor ticks every minute: out of the way
	clock := newFakeClock()
	l, _ := newTest(t, Config{UserRate: 1, UserBurst: 1, UserIdle: idle}, clock.Now)

	for id := range int64(100) {
		mustAcquire(t, l, id)()
	}
	clock.Advance(idle / 2)
	mustAcquire(t, l, 100)() // recent: must survive

	if got := l.users.len(); got != 101 {
		t.Fatalf("buckets before eviction: got %d, want 101", got)
	}
	if got := l.users.evictIdle(clock.Now(), idle); got != 0 {
		t.Errorf("evicted before idle: got %d, want 0", got)
	}
	clock.Advance(idle / 2)
	if got := l.users.evictIdle(clock.Now(), idle); got != 100 {
		t.Errorf("evicted after idle: got %d, want 100", got)
	}
	if got := l.users.len(); got != 1 {
		t.Errorf("buckets after eviction: got %d, want 1", got)
	}
}

// TestEvictIdleKeepsDrainedBuckets checks that eviction never hands a user a
// fresh burst: a bucket that is idle but not yet refilled stays.
func TestEvictIdleKeepsDrainedBuckets(t *testing.T) {
	const idle = time.Hour
	clock := newFakeClock()
	// Refilling one token takes 1e5 s, far longer than idle.
	l, _ := newTest(t, Config{UserRate: 0.00001, UserBurst: 1, UserIdle: idle}, clock.Now)
	mustAcquire(t, l, 1)()
	clock.Advance(2 * idle)
	if got := l.users.evictIdle(clock.Now(), idle); got != 0 {
		t.Errorf("evicted drained bucket: got %d, want 0", got)
	}
	_, err := l.Acquire(t.Context(), 1)
	asRejection(t, err, ReasonUser, ErrLimited)
}

func TestEvictIdleShrinksMap(t *testing.T) {
	clock := newFakeClock()
	// A long idle keeps the janitor (ticking every minute) out of the way.
	l, _ := newTest(t, Config{UserRate: 1000, UserBurst: 1, UserIdle: time.Hour}, clock.Now)
	const users = 64 * 2048
	for id := range int64(users) {
		mustAcquire(t, l, id)()
	}
	clock.Advance(2 * time.Hour)
	if got := l.users.evictIdle(clock.Now(), time.Hour); got != users {
		t.Errorf("evicted: got %d, want %d", got, users)
	}
	for i := range l.users.shards {
		if got := l.users.shards[i].peak; got != 0 {
			t.Fatalf("shard %d peak after eviction: got %d, want 0 (map rebuilt)", i, got)
		}
	}
}

func TestJanitorEvictsAndStops(t *testing.T) {
	l, _ := New(Config{UserRate: 1000, UserBurst: 1, UserIdle: 20 * time.Millisecond}, nil)
	for id := range int64(50) {
		release, err := l.Acquire(t.Context(), id)
		if err != nil {
			t.Fatalf("Acquire: got error %v, want nil", err)
		}
		release()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.users.len() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := l.users.len(); got != 0 {
		t.Errorf("buckets after idle: got %d, want 0", got)
	}

	closed := make(chan struct{})
	go func() {
		l.Close()
		l.Close() // idempotent
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close: got no return after 5s, want the janitor stopped")
	}
	select {
	case <-l.done:
	default:
		t.Error("janitor done: got open, want closed")
	}
	// Admission keeps working after Close.
	release, err := l.Acquire(t.Context(), 1)
	if err != nil {
		t.Fatalf("Acquire after Close: got error %v, want nil", err)
	}
	release()
}

func TestMetrics(t *testing.T) {
	clock := newFakeClock()
	l, reg := newTest(t, Config{
		GlobalRate: 0.001, GlobalBurst: 3,
		UserRate: 0.001, UserBurst: 1,
		MaxInFlight: 2,
	}, clock.Now)

	r1 := mustAcquire(t, l, 1)
	r2 := mustAcquire(t, l, 2)
	assertMetric(t, reg, "seckill_inflight_purchases", 2)
	if _, err := l.Acquire(t.Context(), 3); !errors.Is(err, ErrOverloaded) { // takes the last global token
		t.Fatalf("Acquire: got error %v, want ErrOverloaded", err)
	}
	for range 2 {
		if _, err := l.Acquire(t.Context(), 1); !errors.Is(err, ErrLimited) { // user
			t.Fatalf("Acquire: got error %v, want ErrLimited", err)
		}
	}
	for _, id := range []int64{4, 5, 6} { // global
		if _, err := l.Acquire(t.Context(), id); !errors.Is(err, ErrLimited) {
			t.Fatalf("Acquire: got error %v, want ErrLimited", err)
		}
	}
	r1()
	r2()

	want := `
# HELP seckill_inflight_limit Maximum purchases in flight at once (0: unbounded).
# TYPE seckill_inflight_limit gauge
seckill_inflight_limit 2
# HELP seckill_inflight_purchases Purchases admitted and not yet released.
# TYPE seckill_inflight_purchases gauge
seckill_inflight_purchases 0
# HELP seckill_limiter_rejections_total Purchases rejected by admission control, by reason (global, user, inflight).
# TYPE seckill_limiter_rejections_total counter
seckill_limiter_rejections_total{reason="global"} 3
seckill_limiter_rejections_total{reason="inflight"} 1
seckill_limiter_rejections_total{reason="user"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"seckill_inflight_limit", "seckill_inflight_purchases", "seckill_limiter_rejections_total"); err != nil {
		t.Errorf("metrics: %v", err)
	}
}

func TestNewRefusesTakenMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := New(Config{UserRate: 1, UserBurst: 1}, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := New(Config{UserRate: 1, UserBurst: 1}, reg); err == nil {
		b.Close()
		t.Error("second limiter on one registry: got nil error, want a registration error")
	}
}

func TestUnlimited(t *testing.T) {
	l, _ := newTest(t, Config{GlobalRate: -1, UserRate: 0, MaxInFlight: 0}, nil)
	for i := range 1000 {
		mustAcquire(t, l, int64(i%3))()
	}
	if l.users != nil || l.global != nil || l.sem != nil {
		t.Errorf("unlimited config: got users=%v global=%v sem=%v, want all nil", l.users != nil, l.global != nil, l.sem != nil)
	}
}

func TestAcquireCancelledContext(t *testing.T) {
	l, _ := newTest(t, Config{UserRate: 1, UserBurst: 1}, newFakeClock().Now)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Acquire(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire(cancelled ctx): got error %v, want context.Canceled", err)
	}
	mustAcquire(t, l, 1)() // the cancelled call spent no token
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, time.Second},
		{time.Millisecond, time.Second},
		{time.Second, time.Second},
		{time.Second + time.Nanosecond, 2 * time.Second},
		{2500 * time.Millisecond, 3 * time.Second},
		{100 * time.Hour, maxRetryAfter},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in); got != tt.want {
			t.Errorf("retryAfter(%v): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRejectionError(t *testing.T) {
	rej := &Rejection{Reason: ReasonUser, RetryAfter: 2 * time.Second, err: ErrLimited}
	if got, want := rej.Error(), "rate limited (user), retry after 2s"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
}

// assertMetric compares one gathered sample, named like `name{label="v"}`.
func assertMetric(t *testing.T, reg *prometheus.Registry, series string, want float64) {
	t.Helper()
	name, labels, _ := strings.Cut(series, "{")
	labels = strings.TrimSuffix(labels, "}")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			if strings.Join(got, ",") != labels {
				continue
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if v != want {
				t.Errorf("%s: got %v, want %v", series, v, want)
			}
			return
		}
	}
	t.Errorf("%s: got no such series, want %v", series, want)
}

// benchLimiter is a limiter whose limits are high enough that nothing is
// rejected: the benchmarks measure the cost of admission itself.
func benchLimiter(b *testing.B) *Limiter {
	b.Helper()
	l, err := New(Config{
		GlobalRate: 1e12, GlobalBurst: 1 << 30,
		UserRate: 1e12, UserBurst: 1 << 30,
		MaxInFlight: 4096, AcquireWait: time.Second,
	}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.Close)
	return l
}

// BenchmarkAcquireRelease measures the hot path for existing users spread
// over all shards, with limits high enough that nothing is rejected.
func BenchmarkAcquireRelease(b *testing.B) {
	l := benchLimiter(b)
	ctx := context.Background()
	const users = 1 << 16
	for id := range int64(users) {
		release, err := l.Acquire(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := next.Add(1) * 7919
		for pb.Next() {
			id++
			release, err := l.Acquire(ctx, id%users)
			if err != nil {
				b.Fatal(err)
			}
			release()
		}
	})
}

// BenchmarkAcquireReleaseNewUsers measures the cost when every request is a
// user not seen before (bucket creation plus map growth).
func BenchmarkAcquireReleaseNewUsers(b *testing.B) {
	l := benchLimiter(b)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			release, err := l.Acquire(ctx, next.Add(1))
			if err != nil {
				b.Fatal(err)
			}
			release()
		}
	})
}

// TestAdmitBucketsOnly: Admit applies both buckets as Acquire does (and a
// token it spent is one Acquire no longer has), but neither needs nor takes
// an in-flight slot.
func TestAdmitBucketsOnly(t *testing.T) {
	clock := newFakeClock()
	l, _ := newTest(t, Config{UserRate: 0.5, UserBurst: 3, GlobalRate: 1, GlobalBurst: 5, MaxInFlight: 1}, clock.Now)
	defer mustAcquire(t, l, 1)() // the only slot, held throughout
	for i := range 2 {
		if err := l.Admit(t.Context(), 7); err != nil {
			t.Fatalf("admit %d with every slot held: %v", i, err)
		}
	}
	_, err := l.Acquire(t.Context(), 7) // the user's third token: the bucket admits, no slot is free
	asRejection(t, err, ReasonInFlight, ErrOverloaded)
	asRejection(t, l.Admit(t.Context(), 7), ReasonUser, ErrLimited)
	if err := l.Admit(t.Context(), 8); err != nil { // the global bucket's fifth token
		t.Fatalf("another user: %v", err)
	}
	asRejection(t, l.Admit(t.Context(), 9), ReasonGlobal, ErrLimited)
}

// TestStaleClockReadingIsNotEarly: a request that read the clock before
// another request took the user's bucket (descheduled between the two, as
// under load) is taken as at the later time: it gets the token the bucket
// still holds. A bucket kept as a time (GCRA) would otherwise see it as an
// early arrival and refuse it (TestAcquireConcurrent failed that way once
// under load).
func TestStaleClockReadingIsNotEarly(t *testing.T) {
	clock := newFakeClock()
	l, _ := newTest(t, Config{UserRate: 1, UserBurst: 2, UserIdle: time.Hour}, clock.Now)
	clock.Advance(10 * time.Second)
	if err := l.Admit(t.Context(), 1); err != nil {
		t.Fatalf("first: %v", err)
	}
	clock.Advance(-time.Millisecond) // the next request's clock reading is older
	if err := l.Admit(t.Context(), 1); err != nil {
		t.Errorf("second, with an older clock reading: got %v, want admitted (one of two tokens left)", err)
	}
	clock.Advance(time.Millisecond)
	_, err := l.Acquire(t.Context(), 1)
	asRejection(t, err, ReasonUser, ErrLimited)
}

// TestUserBucketRefillAndRetryAfter: a drained bucket refills at the rate,
// one token at a time, and a refusal says when the next token is back.
func TestUserBucketRefillAndRetryAfter(t *testing.T) {
	clock := newFakeClock()
	l, _ := newTest(t, Config{UserRate: 0.25, UserBurst: 3, UserIdle: time.Hour}, clock.Now)
	for i := range 3 {
		if err := l.Admit(t.Context(), 9); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
	}
	err := l.Admit(t.Context(), 9)
	if r := asRejection(t, err, ReasonUser, ErrLimited); r != nil && r.RetryAfter != 4*time.Second {
		t.Errorf("Retry-After of a drained bucket at 0.25/s: got %v, want 4s", r.RetryAfter)
	}
	clock.Advance(3 * time.Second)
	err = l.Admit(t.Context(), 9)
	if r := asRejection(t, err, ReasonUser, ErrLimited); r != nil && r.RetryAfter != time.Second {
		t.Errorf("Retry-After 1s before the token is back: got %v, want 1s", r.RetryAfter)
	}
	clock.Advance(time.Second)
	if err := l.Admit(t.Context(), 9); err != nil {
		t.Errorf("after 4s: got %v, want one token back", err)
	}
	err = l.Admit(t.Context(), 9)
	asRejection(t, err, ReasonUser, ErrLimited)
	clock.Advance(12 * time.Second) // three tokens back, and no more: the burst
	for i := range 3 {
		if err := l.Admit(t.Context(), 9); err != nil {
			t.Fatalf("refilled %d: %v", i, err)
		}
	}
	err = l.Admit(t.Context(), 9)
	asRejection(t, err, ReasonUser, ErrLimited)
}

// BenchmarkAdmitCrowd: token requests of a crowd of a million users whose
// buckets exist (each user seen before), in an order the CPU caches do not
// help with: the per-user lookup is most of Admit's cost.
func BenchmarkAdmitCrowd(b *testing.B) {
	const users = 1 << 20
	l, err := New(Config{UserRate: 1e6, UserBurst: 1 << 20, GlobalRate: 1e12, GlobalBurst: 1 << 30, UserIdle: time.Hour}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for u := range int64(users) {
		if err := l.Admit(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	u := uint64(1)
	for b.Loop() {
		u = u*6364136223846793005 + 1442695040888963407 // a user at random
		if err := l.Admit(ctx, int64(u>>44)); err != nil {
			b.Fatal(err)
		}
	}
}
