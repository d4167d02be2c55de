package sale

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/limiter"
	"seckill/limiter/breaker"
	"seckill/order"
	"seckill/order/lifecycle"
	"seckill/stock"
)

// TestAnswerMemoryHoldsNoPointers: the memory of answers holds up to half
// a million entries; with strings in the keys and an error in the values
// the garbage collector scanned all of them on every cycle of a sale (and
// the token strings kept their requests' header memory alive).
func TestAnswerMemoryHoldsNoPointers(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[acceptedKey](), reflect.TypeFor[answer]()} {
		if p := testenv.PointerField(typ); p != "" {
			t.Errorf("%v holds a pointer (%s): the answer memory must be memory the GC need not scan", typ, p)
		}
	}
}

// TestErrorOf: every store's expected outcome is the sale's, bare or
// wrapped; a bare one costs no allocation; anything else is no outcome.
func TestErrorOf(t *testing.T) {
	for _, tt := range translations {
		if got := ErrorOf(tt.from); got != tt.to {
			t.Errorf("%v: got %v, want %v", tt.from, got, tt.to)
		}
		if got := ErrorOf(fmt.Errorf("context: %w", tt.from)); got != tt.to {
			t.Errorf("wrapped %v: got %v, want %v", tt.from, got, tt.to)
		}
		if n := testing.AllocsPerRun(100, func() { _ = ErrorOf(tt.from) }); n != 0 {
			t.Errorf("%v: %v allocations, want 0", tt.from, n)
		}
	}
	for _, e := range Sentinels() {
		if got := ErrorOf(fmt.Errorf("context: %w", e)); got != e {
			t.Errorf("wrapped %v: got %v, want itself", e, got)
		}
		if e.Kind == Internal || e.Kind >= NumKinds || e.Message == "" {
			t.Errorf("%v: kind %d, want an expected outcome with a message", e, e.Kind)
		}
	}
	if got := ErrorOf(errors.New("dial tcp: connection refused")); got != nil {
		t.Errorf("a failing dependency: got %v, want nil", got)
	}
	rej := &limiter.Rejection{Reason: limiter.ReasonUser, RetryAfter: 7 * time.Second}
	if e := ErrorOf(fmt.Errorf("purchase: %w", rej)); e != nil {
		t.Errorf("a rejection without its cause: got %v, want nil", e)
	}
}

// TestLimiterRejectionKeepsItsRetryAfter: a rate limit answers the bucket's
// own wait, not the sentinel's.
func TestLimiterRejectionKeepsItsRetryAfter(t *testing.T) {
	lim, err := limiter.New(limiter.Config{UserRate: 0.001, UserBurst: 1}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	release, err := lim.Acquire(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	release()
	_, rejection := lim.Acquire(context.Background(), 1)
	e := ErrorOf(rejection)
	if e == nil || e.Kind != RateLimited || e.RetryAfter <= time.Second || !errors.Is(e, limiter.ErrLimited) {
		t.Errorf("got %+v, want RateLimited with the bucket's Retry-After, wrapping the rejection", e)
	}
}

// env is a sale over a test's own Redis prefix and MySQL database.
type env struct {
	ctx    context.Context
	st     *stock.Store
	orders *order.Store
	rt     *testenv.RoundTrips
	item   order.Item
	prefix string // the test's Redis key prefix
	rdb    redis.UniversalClient
}

type idsFunc func(g int) (int64, error)

func (f idsFunc) NextID(g int) (int64, error) { return f(g) }

// newEnv makes a sale with an item of units over one shard; opts change
// the sale's Config before it is made.
func newEnv(t testing.TB, units int64, ids IDs, opts ...func(*Config)) (*env, *Sale) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	_, db := testenv.MySQL(t)
	rt := &testenv.RoundTrips{}
	rdb.AddHook(rt)
	e := &env{ctx: context.Background(), st: stock.NewStore(rdb, stock.Config{Prefix: prefix}), orders: order.NewStore(db), rt: rt,
		prefix: prefix, rdb: rdb}
	lim, err := limiter.New(limiter.Config{MaxInFlight: 64, AcquireWait: 50 * time.Millisecond}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	journal, err := lifecycle.NewJournal(16, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Stock: e.st, Orders: e.orders, Limiter: lim, IDs: ids, Journal: journal}
	for _, o := range opts {
		o(&cfg)
	}
	s := New(cfg)
	st, err := s.CreateItem(e.ctx, order.Item{Name: "x", Stock: units, Shards: 1, PerUserLimit: 1,
		StartsAt: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	e.item = st.Item
	return e, s
}

func (e *env) token(t *testing.T, s *Sale, user int64) string {
	t.Helper()
	tok, err := s.IssueToken(e.ctx, e.item.ID, user)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// TestNoOrderIDIsUnavailable: whatever error the id maker gives (a lease
// unconfirmed, a clock behind: another package's sentinel), the purchase
// is refused as ErrNoOrderID's passing state, with the cause kept, and
// Redis is not asked.
func TestNoOrderIDIsUnavailable(t *testing.T) {
	cause := errors.New("orderid: clock behind the last id made")
	e, s := newEnv(t, 1, idsFunc(func(int) (int64, error) { return 0, fmt.Errorf("next id: %w", cause) }))
	tok := e.token(t, s, 7)
	before := e.rt.N.Load()
	_, err := s.Purchase(e.ctx, e.item.ID, 7, tok)
	got := ErrorOf(err)
	if got == nil || got.Kind != Unavailable || got.Message != ErrNoOrderID.Message || got.RetryAfter != ErrNoOrderID.RetryAfter {
		t.Fatalf("got %v, want ErrNoOrderID's outcome", err)
	}
	if !errors.Is(err, cause) {
		t.Errorf("got %v, want the maker's cause kept", err)
	}
	if n := e.rt.N.Load() - before; n != 0 {
		t.Errorf("Redis round trips: %d, want 0", n)
	}
}

// TestPurchaseRulesInOrder: the sale window is checked before anything,
// a final answer is remembered (a retry costs nothing and gets the same
// answer), an accepted order reads pending and pays as pending until it is
// stored, and one the MySQL stock guard refused pays as cancelled.
func TestPurchaseRulesInOrder(t *testing.T) {
	var next int64 = 1 << 38
	e, s := newEnv(t, 1, idsFunc(func(g int) (int64, error) { next++; return stock.WithGroup(next<<22, g), nil }))
	tok := e.token(t, s, 7)
	id, err := s.Purchase(e.ctx, e.item.ID, 7, tok)
	if err != nil {
		t.Fatal(err)
	}
	before := e.rt.N.Load()
	if again, err := s.Purchase(e.ctx, e.item.ID, 7, tok); err != nil || again != id {
		t.Errorf("retried key: got %d, %v; want %d", again, err, id)
	}
	if n := e.rt.N.Load() - before; n != 0 {
		t.Errorf("retried key: %d Redis round trips, want 0", n)
	}
	if _, err := s.Purchase(e.ctx, e.item.ID, 8, e.token(t, s, 8)); err != ErrSoldOut {
		t.Errorf("second buyer: got %v, want ErrSoldOut itself", err)
	}
	o, err := s.Order(e.ctx, id, 7)
	if err != nil || o.Status != order.StatusPending || !o.InOutbox || o.ExpiresAt != nil {
		t.Errorf("order before MySQL: got %+v, %v; want pending in the outbox", o, err)
	}
	if _, err := s.Pay(e.ctx, id, 7); err != ErrOrderPending {
		t.Errorf("pay before MySQL: got %v, want ErrOrderPending", err)
	}
	if _, err := s.Order(e.ctx, id, 8); err != ErrNotFound {
		t.Errorf("another user's pending order: got %v, want ErrNotFound", err)
	}
	item, user, shard := e.item.ID, int64(7), 0
	if err := e.orders.RecordDeadLetters(e.ctx, []order.DeadLetter{{Reason: "sold_out", OrderID: &id, ItemID: &item,
		UserID: &user, Shard: &shard, Payload: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	if o, err := s.Order(e.ctx, id, 7); err != nil || o.Status != order.StatusRefused || o.InOutbox {
		t.Errorf("refused order: got %+v, %v; want refused", o, err)
	}
	if _, err := s.Pay(e.ctx, id, 7); err != ErrCancelled {
		t.Errorf("pay a refused order: got %v, want ErrCancelled", err)
	}

	late := e.item
	late.Name, late.StartsAt = "later", time.Now().Add(time.Hour)
	st, err := s.CreateItem(e.ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	before = e.rt.N.Load()
	if _, err := s.Purchase(e.ctx, st.ID, 7, tok); err != ErrNotStarted {
		t.Errorf("before the window: got %v, want ErrNotStarted", err)
	}
	if n := e.rt.N.Load() - before; n != 0 {
		t.Errorf("before the window: %d Redis round trips, want 0", n)
	}
}

// TestErrorOfOpenBreaker: a call an open circuit breaker refused is the
// Unavailable kind (503), with the breaker's remaining open time as its
// Retry-After, at least a second; not a failing dependency's bare 503.
func TestErrorOfOpenBreaker(t *testing.T) {
	short := fmt.Errorf("reserve: %w", &breaker.OpenError{Dependency: "redis", RetryAfter: time.Second})
	if got := ErrorOf(short); got != ErrDependencyDown {
		t.Errorf("open breaker, 1s left: got %v, want ErrDependencyDown", got)
	}
	long := fmt.Errorf("reserve: %w", &breaker.OpenError{Dependency: "redis:10.0.0.1:7000", RetryAfter: 3 * time.Second})
	got := ErrorOf(long)
	if got == nil || got.Kind != Unavailable || got.RetryAfter != 3*time.Second || got.Message != ErrDependencyDown.Message {
		t.Errorf("open breaker, 3s left: got %+v, want Unavailable with Retry-After 3s", got)
	}
	if !errors.Is(got, breaker.ErrOpen) {
		t.Errorf("the answer %v does not keep its cause", got)
	}
}
