// Package breaker holds the circuit breakers (熔断) of seckill's
// dependencies: one per endpoint (the Redis server or each Redis master,
// MySQL, the Kafka producer), over github.com/sony/gobreaker/v2.
//
// A breaker counts as failures only the calls the dependency did not
// answer: timeouts and connection errors. Every answer counts as a success,
// an error reply too (a Redis NOSCRIPT or BUSYGROUP, a MySQL duplicate
// key): the dependency is there. A caller that gave up (context.Canceled)
// counts as neither. After Config.Failures consecutive failures the breaker
// opens: for Config.OpenFor every call fails at once with an *OpenError
// (errors.Is ErrOpen), without touching the dependency. Then it lets
// Config.Probes calls through (half-open): it closes once they all
// succeed, and opens again at the first failure.
package breaker

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// State is a breaker's state: StateClosed, StateHalfOpen or StateOpen.
type State = gobreaker.State

// The states, with their values in the seckill_breaker_state gauge.
const (
	StateClosed   = gobreaker.StateClosed   // 0: calls go through
	StateHalfOpen = gobreaker.StateHalfOpen // 1: a few probes go through
	StateOpen     = gobreaker.StateOpen     // 2: calls fail at once
)

// ErrOpen is what a call refused by a breaker is (errors.Is): the
// dependency did not answer lately, so the call was not sent.
var ErrOpen = errors.New("circuit breaker open")

// OpenError is the error of a call a breaker refused.
type OpenError struct {
	// Dependency is the breaker's name, e.g. "redis" or "mysql".
	Dependency string
	// RetryAfter is how long the breaker stays open (at least a second).
	RetryAfter time.Duration
}

func (e *OpenError) Error() string { return e.Dependency + ": " + ErrOpen.Error() }
func (e *OpenError) Unwrap() error { return ErrOpen }

// Config of the breakers of a Set.
type Config struct {
	// Failures is how many consecutive failures open a breaker. Default 5.
	Failures uint32
	// OpenFor is how long an open breaker refuses calls before it lets
	// probes through. Default 1s.
	OpenFor time.Duration
	// Probes is how many calls a half-open breaker lets through; it closes
	// once they all succeeded. Default 3.
	Probes uint32
	// Log gets the transitions; slog.Default when nil.
	Log *slog.Logger
}

// Outcome is what a call tells a breaker.
type Outcome uint8

// The outcomes of a call.
const (
	// Answered: the dependency answered (success, or an error reply).
	Answered Outcome = iota
	// Failed: it did not answer (a timeout, a connection error).
	Failed
	// Neutral: the call tells nothing (the caller gave up, the client was
	// closed, the driver asked for another way to run it).
	Neutral
)

// Classify is the outcome of a call that returned err. Only timeouts and
// connection errors are failures; any error the dependency answered is an
// answer, and so is an error it does not know (a reply it could not parse
// came from a server that answers).
func Classify(err error) Outcome {
	if err == nil {
		return Answered
	}
	var rerr redis.Error // an error reply (NOSCRIPT, BUSYGROUP, LOADING, redis.Nil...)
	var merr *mysql.MySQLError
	switch {
	case errors.As(err, &rerr), errors.As(err, &merr):
		return Answered
	case errors.Is(err, context.Canceled), errors.Is(err, redis.ErrClosed),
		errors.Is(err, driver.ErrSkip), errors.Is(err, ErrOpen):
		return Neutral
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn):
		return Failed
	}
	var nerr net.Error // timeouts, dial and socket errors
	if errors.As(err, &nerr) {
		return Failed
	}
	return Answered
}

// Breaker guards one dependency endpoint. A nil *Breaker lets every call
// through.
type Breaker struct {
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	set     *Set
	name    string
	openFor time.Duration
	// opened is when it last opened (Unix nanoseconds).
	opened atomic.Int64
	// probing: a Probe goroutine runs.
	probing atomic.Bool
}

// Name is the dependency the breaker guards.
func (b *Breaker) Name() string { return b.name }

// State is the breaker's state now.
func (b *Breaker) State() State {
	if b == nil {
		return StateClosed
	}
	return b.cb.State()
}

// Allow asks to send a call: it returns ErrOpen (an *OpenError) at once
// when the breaker refuses it, else done, which the caller must call once
// with the call's outcome.
func (b *Breaker) Allow() (done func(Outcome), err error) {
	if b == nil {
		return func(Outcome) {}, nil
	}
	report, err := b.cb.Allow()
	if err != nil { // open, or half-open with its probes taken
		return nil, b.refusal()
	}
	return func(o Outcome) { report(outcomeErr[o]) }, nil
}

// Do runs fn unless the breaker refuses it, and counts its outcome
// (Classify).
func (b *Breaker) Do(fn func() error) error {
	done, err := b.Allow()
	if err != nil {
		return err
	}
	err = fn()
	done(Classify(err))
	return err
}

// Probe runs fn as the breaker's half-open probes, in a goroutine the Set
// owns (Close waits for it), unless one runs already: fn is called, each
// call counted, while the breaker is half-open, until it closes (Probes
// successes) or a call is no answer. A client calls Probe when it refuses
// a call of its own to a half-open breaker: the probes are then cheap
// calls of their own (a PING), and no caller waits behind one.
func (b *Breaker) Probe(fn func() error) {
	if b == nil || !b.probing.CompareAndSwap(false, true) {
		return
	}
	started := b.set.goProbe(func() {
		defer b.probing.Store(false)
		for b.State() == StateHalfOpen {
			done, err := b.Allow()
			if err != nil {
				return
			}
			err = fn()
			o := Classify(err)
			done(o)
			if o != Answered {
				b.set.log.Info("circuit breaker probe got no answer", "dependency", b.name, "err", err)
				return
			}
		}
	})
	if !started {
		b.probing.Store(false)
	}
}

// refusal is the error of a refused call: the breaker's remaining open
// time, at least a second (Retry-After counts whole seconds).
func (b *Breaker) refusal() error {
	left := b.openFor - time.Since(time.Unix(0, b.opened.Load()))
	return &OpenError{Dependency: b.name, RetryAfter: max(left, time.Second)}
}

// The errors Allow's done reports to gobreaker, by outcome.
var (
	errFailed  = errors.New("breaker: failed")
	errNeutral = errors.New("breaker: neutral")
	outcomeErr = [...]error{Answered: nil, Failed: errFailed, Neutral: errNeutral}
)

// Set is the breakers of one process, by name, and their metrics
// (seckill_breaker_state, seckill_breaker_transitions_total). A nil *Set
// makes nil breakers (no protection).
type Set struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	byName    map[string]*Breaker
	order     []*Breaker
	listeners []func(name string, from, to State)
	closed    bool           // by Close: no more probes
	probes    sync.WaitGroup // the Probe goroutines

	state       *prometheus.Desc
	transitions *prometheus.CounterVec
}

// NewSet makes an empty set; register it (a prometheus.Collector) to
// export its breakers.
func NewSet(cfg Config) *Set {
	if cfg.Failures == 0 {
		cfg.Failures = 5
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = time.Second
	}
	if cfg.Probes == 0 {
		cfg.Probes = 3
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Set{
		cfg: cfg, log: log, byName: map[string]*Breaker{},
		state: prometheus.NewDesc("seckill_breaker_state",
			"State of the circuit breaker of a dependency: 0 closed, 1 half-open (probing), 2 open (calls fail at once).",
			[]string{"dependency"}, nil),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seckill_breaker_transitions_total",
			Help: "Circuit breaker state changes, by dependency and the state entered.",
		}, []string{"dependency", "to"}),
	}
}

// Get is the breaker named name, made on first use.
func (s *Set) Get(name string) *Breaker {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.byName[name]; ok {
		return b
	}
	b := &Breaker{set: s, name: name, openFor: s.cfg.OpenFor}
	failures := s.cfg.Failures
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  s.cfg.Probes,
		Timeout:      s.cfg.OpenFor,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool { return err != errFailed },
		IsExcluded:   func(err error) bool { return err == errNeutral },
		// Called with the breaker's lock held: no call into it here.
		OnStateChange: func(name string, from, to State) {
			if to == StateOpen {
				b.opened.Store(time.Now().UnixNano())
			}
			s.changed(name, from, to)
		},
	})
	for _, st := range []State{StateClosed, StateHalfOpen, StateOpen} {
		s.transitions.WithLabelValues(name, st.String())
	}
	s.byName[name] = b
	s.order = append(s.order, b)
	return b
}

// goProbe runs f in a goroutine Close waits for; false once closed.
func (s *Set) goProbe(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.probes.Add(1)
	go func() {
		defer s.probes.Done()
		f()
	}()
	return true
}

// Close starts no more probes and waits for those running (each is one
// bounded call at a time). Calls still go through the breakers.
func (s *Set) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.probes.Wait()
}

// OnChange calls f on every state change of any breaker of the set, from
// within the breaker: f must not block or call into the breaker.
func (s *Set) OnChange(f func(name string, from, to State)) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, f)
	s.mu.Unlock()
}

func (s *Set) changed(name string, from, to State) {
	s.transitions.WithLabelValues(name, to.String()).Inc()
	switch to {
	case StateOpen:
		s.log.Warn("circuit breaker open: calls fail at once", "dependency", name, "from", from.String(), "for", s.cfg.OpenFor)
	case StateClosed:
		s.log.Info("circuit breaker closed: the dependency answers again", "dependency", name)
	}
	s.mu.Lock()
	ls := s.listeners
	s.mu.Unlock()
	for _, f := range ls {
		f(name, from, to)
	}
}

// breakers is a snapshot of the set's breakers, in creation order.
func (s *Set) breakers() []*Breaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Breaker(nil), s.order...)
}

// NotClosed names the breakers that are open or half-open now.
func (s *Set) NotClosed() []string {
	if s == nil {
		return nil
	}
	var names []string
	for _, b := range s.breakers() {
		if b.State() != StateClosed {
			names = append(names, b.name)
		}
	}
	return names
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.state
	s.transitions.Describe(ch)
}

// Collect implements prometheus.Collector. Reading a state may move an
// open breaker whose time is up to half-open (gobreaker moves lazily).
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, b := range s.breakers() {
		ch <- prometheus.MustNewConstMetric(s.state, prometheus.GaugeValue, float64(b.State()), b.name)
	}
	s.transitions.Collect(ch)
}
