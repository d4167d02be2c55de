// Package limiter is the admission control in front of the purchase path:
// a per-user token bucket, a global token bucket and a semaphore bounding the
// number of purchases in flight, all in process.
//
// A request passes the stages in this order:
//
//  1. the per-user bucket, so that one abusive user is turned away before
//     touching the shared global bucket and cannot drain it for everyone;
//  2. the global bucket, which caps the whole instance's purchase rate;
//  3. the in-flight semaphore, with a short bounded wait, which sheds load
//     when downstream (Redis) is slow rather than queueing without limit.
//
// A rate rejection never consumes a token: the per-user token taken in step 1
// is given back when step 2 rejects, and a rejected bucket is left exactly as
// it was. A request shed by the semaphore has already been admitted by both
// buckets and keeps its tokens spent (see Acquire).
package limiter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// ErrLimited is the cause of a rejection by the global or per-user token
// bucket (HTTP 429).
var ErrLimited = errors.New("rate limited")

// ErrOverloaded is the cause of a rejection because too many purchases are
// already in flight (HTTP 503).
var ErrOverloaded = errors.New("overloaded")

// Rejection reasons, as found in Rejection.Reason and in the "reason" label
// of seckill_limiter_rejections_total.
const (
	ReasonGlobal   = "global"
	ReasonUser     = "user"
	ReasonInFlight = "inflight"
)

const (
	// inFlightRetryAfter is the Retry-After suggested when the semaphore is
	// full: in-flight purchases finish in milliseconds, so a short fixed hint.
	inFlightRetryAfter = time.Second
	// maxRetryAfter caps the hint for absurdly slow buckets.
	maxRetryAfter = time.Hour
	// defaultUserIdle is used when Config.UserIdle is not positive.
	defaultUserIdle = 10 * time.Minute
)

// Config configures a Limiter.
//
// A zero or negative rate means that bucket is unlimited; a burst below 1
// with a positive rate is raised to 1 (a burst of 0 would refuse everything).
// MaxInFlight <= 0 means the number of purchases in flight is unbounded.
// AcquireWait is how long Acquire waits for a free in-flight slot (<= 0: no
// wait). UserIdle is how long a per-user bucket must go unused before the
// janitor may drop it (<= 0: 10 minutes).
type Config struct {
	GlobalRate  float64       // tokens per second for the whole process
	GlobalBurst int           // global bucket size
	UserRate    float64       // tokens per second for one user
	UserBurst   int           // per-user bucket size
	MaxInFlight int           // purchases allowed in flight at once
	AcquireWait time.Duration // longest wait for an in-flight slot
	UserIdle    time.Duration // idle time before a per-user bucket is evicted
}

// Rejection is the error returned by Acquire when a request is not admitted.
// It unwraps to ErrLimited (Reason "global" or "user") or ErrOverloaded
// (Reason "inflight").
type Rejection struct {
	// Reason is ReasonGlobal, ReasonUser or ReasonInFlight.
	Reason string
	// RetryAfter is how long the client should wait before retrying, rounded
	// up to whole seconds and at least one second, ready for a Retry-After
	// header.
	RetryAfter time.Duration

	err error
}

// Error implements error.
func (r *Rejection) Error() string {
	cause := r.err
	if cause == nil {
		cause = errors.New("rejected")
	}
	return fmt.Sprintf("%v (%s), retry after %s", cause, r.Reason, r.RetryAfter)
}

// Unwrap returns ErrLimited or ErrOverloaded, so callers can use errors.Is.
func (r *Rejection) Unwrap() error { return r.err }

// Limiter admits or rejects purchases. It is safe for concurrent use. Create
// it with New and stop its background janitor with Close.
type Limiter struct {
	cfg    Config
	global *rate.Limiter // nil: unlimited
	users  *userBuckets  // nil: unlimited

	// sem holds the indexes of free in-flight slots; nil when unbounded.
	// Acquiring a slot is a receive, releasing one a send, so the channel
	// is the semaphore and its FIFO receivers give waiters fair order.
	sem   chan int32
	slots []slot

	m metrics

	now   func() time.Time // time.Now, except in tests
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

// slot is the release generation of one in-flight slot. A release function
// only frees its slot if the generation is still the one it was issued with,
// so calling it twice, or after the slot was handed to someone else, is a
// no-op. Padded to a cache line so neighbouring slots do not false-share.
type slot struct {
	gen atomic.Uint64
	_   [56]byte
}

// New returns a Limiter for cfg and registers its metrics on reg (nil: not
// registered); it fails if reg already holds them.
//
// When per-user limiting is enabled New starts a janitor goroutine that
// evicts idle buckets; Close stops it.
func New(cfg Config, reg prometheus.Registerer) (*Limiter, error) {
	return newLimiter(cfg, reg, time.Now)
}

// newLimiter is New with an injectable clock, for tests.
func newLimiter(cfg Config, reg prometheus.Registerer, now func() time.Time) (*Limiter, error) {
	if cfg.UserIdle <= 0 {
		cfg.UserIdle = defaultUserIdle
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		m:    m,
		cfg:  cfg,
		now:  now,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if cfg.GlobalRate > 0 {
		l.global = rate.NewLimiter(rate.Limit(cfg.GlobalRate), max(cfg.GlobalBurst, 1))
	}
	if cfg.MaxInFlight > 0 {
		l.sem = make(chan int32, cfg.MaxInFlight)
		l.slots = make([]slot, cfg.MaxInFlight)
		for i := range cfg.MaxInFlight {
			l.sem <- int32(i)
		}
		l.m.limit.Set(float64(cfg.MaxInFlight))
	}
	if cfg.UserRate > 0 {
		l.users = newUserBuckets(now(), rate.Limit(cfg.UserRate), max(cfg.UserBurst, 1))
		go l.janitor(janitorInterval(cfg.UserIdle))
	} else {
		close(l.done)
	}
	return l, nil
}

// Admit passes userID through the two token buckets only (stages 1 and
// 2): for a request that holds nothing while it runs, such as a purchase
// token signed in process, an in-flight slot would bound nothing. On
// rejection err is a *Rejection, and, as in Acquire, no token is consumed.
func (l *Limiter) Admit(ctx context.Context, userID int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("limiter acquire: %w", err)
	}
	now := l.now()

	// Per-user bucket first (see package doc); its token is given back if
	// the global bucket says no.
	if l.users != nil {
		if d, ok := l.users.take(now, userID); !ok {
			l.m.rejectUser.Inc()
			return &Rejection{Reason: ReasonUser, RetryAfter: retryAfter(d), err: ErrLimited}
		}
	}

	// The global bucket is hit by every request at once, so use AllowN: it
	// changes nothing on refusal. Reserve+Cancel here would leak tokens when
	// concurrent rejections cancel out of order.
	if l.global != nil && !l.global.AllowN(now, 1) {
		if l.users != nil {
			l.users.giveBack(userID) // give the user their token back
		}
		l.m.rejectGlobal.Inc()
		return &Rejection{Reason: ReasonGlobal, RetryAfter: retryAfter(l.globalDelay(now)), err: ErrLimited}
	}
	return nil
}

// Acquire admits one purchase by userID or says why not. On success the
// caller must call release once the purchase has finished; release is
// idempotent. On rejection err is a *Rejection; if ctx ends while waiting for
// an in-flight slot err wraps ctx.Err().
//
// Rate rejections consume no token. A request rejected by the in-flight
// semaphore keeps its rate tokens spent: it was admitted by both buckets, and
// under overload spending them makes clients back off rather than retry
// harder.
func (l *Limiter) Acquire(ctx context.Context, userID int64) (release func(), err error) {
	if err := l.Admit(ctx, userID); err != nil {
		return nil, err
	}
	if l.sem == nil {
		l.m.inflight.Inc()
		var released atomic.Bool
		return func() {
			if released.CompareAndSwap(false, true) {
				l.m.inflight.Dec()
			}
		}, nil
	}

	// Fast path: a free slot, no timer.
	select {
	case i := <-l.sem:
		return l.hold(i), nil
	default:
	}
	if l.cfg.AcquireWait > 0 {
		t := time.NewTimer(l.cfg.AcquireWait)
		defer t.Stop()
		select {
		case i := <-l.sem:
			return l.hold(i), nil
		case <-ctx.Done():
			return nil, fmt.Errorf("limiter acquire: wait for in-flight slot: %w", ctx.Err())
		case <-t.C:
		}
	}
	l.m.rejectInFlight.Inc()
	return nil, &Rejection{Reason: ReasonInFlight, RetryAfter: inFlightRetryAfter, err: ErrOverloaded}
}

// hold marks slot i as held and returns its release function. The closure
// captures only immutable values (one allocation); the generation check makes
// it idempotent even after the slot is reused by another request.
func (l *Limiter) hold(i int32) func() {
	gen := l.slots[i].gen.Load()
	l.m.inflight.Inc()
	return func() {
		// Only the first release of this holding wins the CAS, so a slot
		// is returned to sem at most once per acquisition.
		if l.slots[i].gen.CompareAndSwap(gen, gen+1) {
			l.m.inflight.Dec()
			l.sem <- i // never blocks: sem has room for every slot
		}
	}
}

// globalDelay estimates how long until the global bucket holds a token.
func (l *Limiter) globalDelay(now time.Time) time.Duration {
	missing := 1 - l.global.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	secs := missing / float64(l.global.Limit())
	if secs >= maxRetryAfter.Seconds() {
		return maxRetryAfter
	}
	return time.Duration(secs * float64(time.Second))
}

// retryAfter rounds d up to whole seconds, at least 1s and at most
// maxRetryAfter, as HTTP Retry-After only carries seconds.
func retryAfter(d time.Duration) time.Duration {
	if d >= maxRetryAfter {
		return maxRetryAfter
	}
	secs := math.Ceil(d.Seconds())
	return time.Duration(max(secs, 1)) * time.Second
}

// Close stops the janitor goroutine and waits for it to exit. Acquire keeps
// working after Close, but idle per-user buckets are no longer evicted.
// Close is safe to call more than once.
func (l *Limiter) Close() {
	l.close.Do(func() { close(l.stop) })
	<-l.done
}

// metrics are the limiter's Prometheus collectors. Reason children are
// resolved once so the hot path does no label lookup.
type metrics struct {
	rejectGlobal, rejectUser, rejectInFlight prometheus.Counter

	inflight prometheus.Gauge
	limit    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	rejections := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seckill_limiter_rejections_total",
		Help: "Purchases rejected by admission control, by reason (global, user, inflight).",
	}, []string{"reason"})
	inflight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "seckill_inflight_purchases",
		Help: "Purchases admitted and not yet released.",
	})
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "seckill_inflight_limit",
		Help: "Maximum purchases in flight at once (0: unbounded).",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{rejections, inflight, limit} {
			if err := reg.Register(c); err != nil {
				return metrics{}, fmt.Errorf("limiter: register metrics: %w", err)
			}
		}
	}
	return metrics{
		rejectGlobal:   rejections.WithLabelValues(ReasonGlobal),
		rejectUser:     rejections.WithLabelValues(ReasonUser),
		rejectInFlight: rejections.WithLabelValues(ReasonInFlight),
		inflight:       inflight,
		limit:          limit,
	}, nil
}
