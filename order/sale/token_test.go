package sale

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/limiter"
	"seckill/order/token"
	"seckill/stock"
)

// seq makes order ids for any slot group, one after another.
func seq() IDs {
	n := new(atomic.Int64)
	n.Store(1 << 38)
	return idsFunc(func(g int) (int64, error) { return stock.WithGroup(n.Add(1)<<22, g), nil })
}

// clock is a test's time, moved by the test.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.now.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *clock) Add(d time.Duration)     { c.now.Add(int64(d)) }
func keysOf(k *token.Keys) func(*Config) { return func(c *Config) { c.Tokens = k } }

var (
	keyOne = token.Key{ID: 1, Secret: []byte("sale-test-key-one-0123")}
	keyTwo = token.Key{ID: 2, Secret: []byte("sale-test-key-two-0123")}
)

func mustKeys(t *testing.T, cur token.Key, prev ...token.Key) *token.Keys {
	t.Helper()
	k, err := token.NewKeys(cur, prev...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cmdLog is a go-redis hook that records the commands sent, by name.
type cmdLog struct {
	mu    sync.Mutex
	names []string
}

func (l *cmdLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.names
	l.names = nil
	return out
}

func (l *cmdLog) add(cmds ...redis.Cmder) {
	l.mu.Lock()
	for _, c := range cmds {
		l.names = append(l.names, c.Name())
	}
	l.mu.Unlock()
}

func (l *cmdLog) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *cmdLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { l.add(cmd); return next(ctx, cmd) }
}
func (l *cmdLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { l.add(cmds...); return next(ctx, cmds) }
}

// TestTokenIssueWritesNothing: issuing tokens costs no Redis call and
// leaves no key; a token never used leaves nothing behind.
func TestTokenIssueWritesNothing(t *testing.T) {
	e, s := newEnv(t, 10, seq(), func(c *Config) { c.PageRefresh = time.Hour })
	before := e.rt.N.Load()
	for u := range int64(100) {
		tok, err := s.IssueToken(e.ctx, e.item.ID, 1000+u)
		if err != nil || len(tok.Token) != token.Len {
			t.Fatalf("IssueToken: %q, %v", tok.Token, err)
		}
	}
	if n := e.rt.N.Load() - before; n != 0 {
		t.Errorf("100 token issues made %d Redis round trips, want 0", n)
	}
	if keys := testenv.Keys(e.ctx, e.rdb, e.prefix+":*:tok:*"); len(keys) != 0 {
		t.Errorf("token keys after 100 token issues: %q, want none", keys)
	}
}

// TestTokenRefusals: a token that is not this buyer's for this item, not
// ours, or expired unused is a TokenInvalid refusal made in process: no
// Redis call (an expired one reads its stored answer once while one could
// exist, and writes nothing), no key, no unit.
func TestTokenRefusals(t *testing.T) {
	clk := newClock()
	e, s := newEnv(t, 10, seq(), keysOf(mustKeys(t, keyOne)), func(c *Config) {
		c.Now, c.TokenTTL, c.PageRefresh = clk.Now, time.Minute, time.Hour
	})
	const user = 7
	good := e.token(t, s, user)
	otherItem, err := s.CreateItem(e.ctx, e.item)
	if err != nil {
		t.Fatal(err)
	}
	forItem2, err := s.IssueToken(e.ctx, otherItem.ID, user)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, _ := mustKeys(t, token.Key{ID: 1, Secret: []byte("not-the-service-key-0123")}).Issue(e.item.ID, user, clk.Now().Add(time.Minute))
	unknownKey, _, _ := mustKeys(t, token.Key{ID: 9, Secret: keyOne.Secret}).Issue(e.item.ID, user, clk.Now().Add(time.Minute))
	// The user field (bytes 10..18) turned from 7 into 8: base64 char 23
	// holds its last bits.
	altered := []byte(good)
	altered[23] ^= 1
	expiresSoon, err := s.IssueToken(e.ctx, e.item.ID, user)
	if err != nil {
		t.Fatal(err)
	}

	log := &cmdLog{}
	e.rdb.AddHook(log)
	cases := []struct {
		name   string
		user   int64
		item   int64
		tok    string
		want   *Error
		trips  int64
		before func()
	}{
		{"empty", user, e.item.ID, "", ErrTokenInvalid, 0, nil},
		{"not a token", user, e.item.ID, "0f1e2d3c4b5a69788796a5b4c3d2e1f0", ErrTokenInvalid, 0, nil},
		{"forged (another secret)", user, e.item.ID, forged, ErrTokenInvalid, 0, nil},
		{"signed by a key not configured", user, e.item.ID, unknownKey, ErrTokenInvalid, 0, nil},
		{"altered", user, e.item.ID, string(altered), ErrTokenInvalid, 0, nil},
		{"another user's", user + 1, e.item.ID, good, ErrTokenInvalid, 0, nil},
		{"another item's", user, e.item.ID, forItem2.Token, ErrTokenInvalid, 0, nil},
		// Expired: one read, of the answer its use would have stored.
		{"expired unused", user, e.item.ID, expiresSoon.Token, ErrTokenExpired, 1, func() { clk.Add(time.Minute) }},
		// Past the time any stored answer lives: nothing to read.
		{"expired a day ago", user, e.item.ID, expiresSoon.Token, ErrTokenExpired, 0, func() { clk.Add(stock.DefaultResultTTL) }},
	}
	for _, tc := range cases {
		if tc.before != nil {
			tc.before()
		}
		before := e.rt.N.Load()
		if _, err := s.Purchase(e.ctx, tc.item, tc.user, tc.tok); err != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		} else if got := ErrorOf(err); got.Kind != TokenInvalid {
			t.Errorf("%s: kind %v, want TokenInvalid", tc.name, got.Kind)
		}
		if n := e.rt.N.Load() - before; n != tc.trips {
			t.Errorf("%s: %d Redis round trips, want %d", tc.name, n, tc.trips)
		}
	}
	if got := log.take(); !slices.Equal(got, []string{"hmget"}) {
		t.Errorf("Redis commands of the refusals: %q, want the one read of the expired token", got)
	}
	if rem, _ := e.st.Remaining(e.ctx, e.item.ID, e.item.Shards); rem[0] != 10 {
		t.Errorf("remaining after the refusals: %d, want 10", rem[0])
	}
}

// TestReplayAfterExpiry: a used token gets its answer after it expired, on
// an instance that never saw it (another process: its own memory, the
// previous key only accepted after a rotation), and the replay writes
// nothing; the per-user limit holds across tokens.
func TestReplayAfterExpiry(t *testing.T) {
	clk := newClock()
	opts := func(c *Config) { c.Now, c.TokenTTL, c.PageRefresh = clk.Now, time.Minute, time.Hour }
	e, a := newEnv(t, 1, seq(), keysOf(mustKeys(t, keyOne)), opts)
	won, lost, again := e.token(t, a, 1), e.token(t, a, 2), e.token(t, a, 1)
	id, err := a.Purchase(e.ctx, e.item.ID, 1, won)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Purchase(e.ctx, e.item.ID, 1, again); err != ErrLimitReached {
		t.Fatalf("the buyer's second token: %v, want ErrLimitReached", err)
	}
	if _, err := a.Purchase(e.ctx, e.item.ID, 2, lost); err != ErrSoldOut {
		t.Fatalf("second buyer: %v, want ErrSoldOut", err)
	}
	clk.Add(2 * time.Minute) // every token expired

	// Instance b: rotated (key two signs, key one still accepted), and
	// it never saw these tokens.
	b := New(Config{Stock: stock.NewStore(e.rdb, stock.Config{Prefix: e.prefix}), Orders: e.orders,
		Limiter: a.cfg.Limiter, IDs: seq(), Tokens: mustKeys(t, keyTwo, keyOne), Now: clk.Now, TokenTTL: time.Minute})
	log := &cmdLog{}
	e.rdb.AddHook(log)
	for _, s := range []*Sale{a, b} {
		if got, err := s.Purchase(e.ctx, e.item.ID, 1, won); err != nil || got != id {
			t.Errorf("replay of the accepted token: %d, %v, want %d", got, err, id)
		}
		if _, err := s.Purchase(e.ctx, e.item.ID, 1, again); err != ErrLimitReached {
			t.Errorf("replay of the refused token: %v, want ErrLimitReached", err)
		}
		if _, err := s.Purchase(e.ctx, e.item.ID, 2, lost); err != ErrSoldOut {
			t.Errorf("replay of the sold-out token: %v, want ErrSoldOut", err)
		}
	}
	// a remembers its answers; b reads each once, and writes nothing.
	if got := log.take(); !slices.Equal(got, []string{"hmget", "hmget", "hmget"}) {
		t.Errorf("Redis commands of the replays: %q, want one read per token on b", got)
	}
	// b signs with key two, a still accepts only key one.
	tok, err := b.IssueToken(e.ctx, e.item.ID, 3)
	if err != nil && err != ErrSoldOut {
		t.Fatal(err)
	}
	if err == nil {
		if _, err := a.Purchase(e.ctx, e.item.ID, 3, tok.Token); err != ErrTokenInvalid {
			t.Errorf("key two's token on an instance without it: %v, want ErrTokenInvalid", err)
		}
	}
}

// TestNoTokenForSoldOutItem: an instance whose product page count says
// sold out issues no token, and asks Redis nothing for it.
func TestNoTokenForSoldOutItem(t *testing.T) {
	e, s := newEnv(t, 1, seq(), func(c *Config) { c.PageRefresh = time.Hour })
	if _, err := s.Purchase(e.ctx, e.item.ID, 1, e.token(t, s, 1)); err != nil {
		t.Fatal(err)
	}
	// Another instance, whose page read the count once.
	other := New(Config{Stock: stock.NewStore(e.rdb, stock.Config{Prefix: e.prefix}), Orders: e.orders,
		Limiter: s.cfg.Limiter, IDs: seq(), PageRefresh: time.Hour})
	if st, err := other.ItemState(e.ctx, e.item.ID); err != nil || !st.SoldOut {
		t.Fatalf("page: %+v, %v; want sold out", st, err)
	}
	before := e.rt.N.Load()
	if _, err := other.IssueToken(e.ctx, e.item.ID, 2); err != ErrSoldOut {
		t.Errorf("token for a sold-out item: %v, want ErrSoldOut", err)
	}
	if n := e.rt.N.Load() - before; n != 0 {
		t.Errorf("refused token: %d Redis round trips, want 0", n)
	}
}

// TestTokenIssueIsAdmitted: token issues go through the limiter.
func TestTokenIssueIsAdmitted(t *testing.T) {
	lim, err := limiter.New(limiter.Config{UserRate: 0.001, UserBurst: 1}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	e, s := newEnv(t, 10, seq(), func(c *Config) { c.Limiter = lim })
	if _, err := s.IssueToken(e.ctx, e.item.ID, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.IssueToken(e.ctx, e.item.ID, 5); ErrorOf(err) == nil || ErrorOf(err).Kind != RateLimited {
		t.Errorf("second token within the user's rate: %v, want RateLimited", err)
	}
}
