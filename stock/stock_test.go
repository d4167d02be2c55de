package stock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
)

func newStore(t *testing.T, cfg Config) (*Store, redis.UniversalClient) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	cfg.Prefix = prefix
	return NewStore(rdb, cfg), rdb
}

// buy issues a token for user and spends it.
func buy(ctx context.Context, t *testing.T, s *Store, item int64, shards, limit int, user, order int64) (int64, error) {
	t.Helper()
	tok := testenv.TokenID()
	return s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: limit, Token: tok, OrderID: tid(item, user, shards, order)})
}

func sum(ns []int64) int64 {
	var t int64
	for _, n := range ns {
		t += n
	}
	return t
}

func TestSplit(t *testing.T) {
	tests := []struct {
		total int64
		n     int
		want  []int64
	}{
		{0, 3, []int64{0, 0, 0}},
		{1, 3, []int64{1, 0, 0}},
		{10, 4, []int64{3, 3, 2, 2}},
		{100, 8, []int64{13, 13, 13, 13, 12, 12, 12, 12}},
	}
	for _, tt := range tests {
		got := Split(tt.total, tt.n)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Split(%d, %d) = %v, want %v", tt.total, tt.n, got, tt.want)
		}
	}
}

func TestHomeShardStable(t *testing.T) {
	for u := int64(1); u < 1000; u++ {
		a, b := HomeShard(u, 8), HomeShard(u, 8)
		if a != b || a < 0 || a >= 8 {
			t.Fatalf("HomeShard(%d, 8) = %d then %d, want one value in [0,8)", u, a, b)
		}
	}
}

func TestReserveBoundaries(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		stock  int64
		shards int
		buyers int
		wantOK int
	}{
		{"stock 0", 0, 4, 3, 0},
		{"stock 1", 1, 4, 5, 1},
		{"stock 1 one shard", 1, 1, 5, 1},
		{"stock equals buyers", 8, 8, 8, 8},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t, Config{})
			item := int64(100 + i)
			if err := s.Warm(ctx, item, tt.stock, tt.shards); err != nil {
				t.Fatal(err)
			}
			ok := 0
			for u := 1; u <= tt.buyers; u++ {
				_, err := buy(ctx, t, s, item, tt.shards, 1, int64(u), int64(1000+u))
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrSoldOut):
				default:
					t.Fatalf("buyer %d: got %v, want nil or ErrSoldOut", u, err)
				}
			}
			if ok != tt.wantOK {
				t.Errorf("accepted %d, want %d", ok, tt.wantOK)
			}
			rem, err := s.Remaining(ctx, item, tt.shards)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sum(rem), tt.stock-int64(ok); got != want {
				t.Errorf("remaining %d (%v), want %d", got, rem, want)
			}
			res, err := s.PendingReservations(ctx, item, tt.shards)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != ok {
				t.Errorf("outbox holds %d reservations, want %d", len(res), ok)
			}
		})
	}
}

// TestReserveToken: a token's ID buys once and its replay gets the same
// answer; a string that is no ID is refused and changes nothing. That the
// token is the buyer's, for this item and not expired, is checked above
// the stock (package sale, with the token's signature).
func TestReserveToken(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Config{})
	const item, shards = 7, 4
	if err := s.Warm(ctx, item, 10, shards); err != nil {
		t.Fatal(err)
	}
	p := func(user int64, tok string, order int64) Purchase {
		return Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, order)}
	}
	tok := testenv.TokenID()
	for _, bad := range []string{"", "zz", strings.ToUpper(tok), tok + "0", string(make([]byte, 100))} {
		if _, err := s.Reserve(ctx, p(1, bad, 11)); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("key %q: got %v, want ErrTokenInvalid", bad, err)
		}
	}
	if rem, _ := s.Remaining(ctx, item, shards); sum(rem) != 10 {
		t.Fatalf("rejected keys changed stock: remaining %v, want 10", rem)
	}

	id, err := s.Reserve(ctx, p(1, tok, 11))
	if want := tid(item, 1, shards, 11); err != nil || id != want {
		t.Fatalf("first purchase: got %d, %v, want %d, nil", id, err, want)
	}
	// Replay with the same key: same answer, even with a new order id offered.
	id, err = s.Reserve(ctx, p(1, tok, 12))
	if want := tid(item, 1, shards, 11); err != nil || id != want {
		t.Fatalf("replay: got %d, %v, want %d, nil", id, err, want)
	}
	// A second key of the same user hits the limit; its replay says the same.
	tok2 := testenv.TokenID()
	for i := 0; i < 2; i++ {
		if _, err := s.Reserve(ctx, p(1, tok2, 13)); !errors.Is(err, ErrAlreadyPurchased) {
			t.Fatalf("second key try %d: got %v, want ErrAlreadyPurchased", i, err)
		}
	}
	if rem, _ := s.Remaining(ctx, item, shards); sum(rem) != 9 {
		t.Fatalf("remaining %v, want 9 after one purchase", rem)
	}
}

// TestAnswer: the read-only answer of a token that can no longer be used a
// first time is its use's answer, and for a token never used it is
// ErrTokenInvalid with nothing written.
func TestAnswer(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 9, 2
	if err := s.Warm(ctx, item, 1, shards); err != nil {
		t.Fatal(err)
	}
	p := func(user int64, tok string) Purchase {
		return Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, user)}
	}
	unused := testenv.TokenID()
	if _, err := s.Answer(ctx, p(1, unused)); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("Answer of an unused key: %v, want ErrTokenInvalid", err)
	}
	if keys := testenv.Keys(ctx, rdb, s.Prefix()+":*:tok:*"); len(keys) != 0 {
		t.Fatalf("Answer of an unused key wrote %v", keys)
	}
	won, lost := testenv.TokenID(), testenv.TokenID()
	id, err := s.Reserve(ctx, p(1, won))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, p(2, lost)); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("second buyer: %v, want ErrSoldOut", err)
	}
	if got, err := s.Answer(ctx, p(1, won)); err != nil || got != id {
		t.Errorf("Answer of the winner: %d, %v, want %d", got, err, id)
	}
	if _, err := s.Answer(ctx, p(2, lost)); !errors.Is(err, ErrSoldOut) {
		t.Errorf("Answer of the loser: %v, want ErrSoldOut", err)
	}
	if _, err := s.Answer(ctx, p(3, won)); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("Answer of another user's key: %v, want ErrTokenInvalid", err)
	}
}

// TestReserveRace is the oversell test: buyers released together against a
// small stock over 8 shards.
func TestReserveRace(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Config{})
	const item, stock, shards, buyers = 42, 100, 8, 2000
	if err := s.Warm(ctx, item, stock, shards); err != nil {
		t.Fatal(err)
	}
	toks := make([]string, buyers+1)
	for u := 1; u <= buyers; u++ {
		tok := testenv.TokenID()
		toks[u] = tok
	}
	var (
		mu       sync.Mutex
		accepted = map[int64]int64{} // order id -> user
		users    = map[int64]bool{}
		wg       sync.WaitGroup
		start    = make(chan struct{})
		errs     = make(chan error, buyers)
	)
	for u := 1; u <= buyers; u++ {
		wg.Add(1)
		go func(u int64) {
			defer wg.Done()
			<-start
			id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: toks[u], OrderID: tid(item, u, shards, 10_000+u)})
			if errors.Is(err, ErrSoldOut) {
				return
			}
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if users[u] {
				errs <- fmt.Errorf("user %d accepted twice", u)
			}
			users[u] = true
			accepted[id] = u
		}(int64(u))
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(accepted) != stock {
		t.Fatalf("accepted %d, want exactly %d", len(accepted), stock)
	}
	rem, err := s.Remaining(ctx, item, shards)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range rem {
		if n != 0 {
			t.Errorf("shard %d holds %d, want 0 (never negative)", i, n)
		}
	}
	res, err := s.PendingReservations(ctx, item, shards)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != stock {
		t.Fatalf("outbox holds %d reservations, want %d", len(res), stock)
	}
	for _, r := range res {
		u, ok := accepted[r.OrderID]
		if !ok || u != r.UserID || r.ItemID != item {
			t.Errorf("outbox entry %+v does not match an accepted purchase", r)
		}
		delete(accepted, r.OrderID)
	}
	if len(accepted) != 0 {
		t.Errorf("accepted purchases without an outbox record: %v", accepted)
	}
	if !s.SoldOut(item) {
		t.Error("item not flagged sold out after every shard emptied")
	}
}

// homeOf finds a user whose home shard is h.
func homeOf(h, shards int, from int64) int64 {
	for u := from; ; u++ {
		if HomeShard(u, shards) == h {
			return u
		}
	}
}

func TestPerUserLimitWithDrainedHomeShard(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 9, 4
	user := homeOf(0, shards, 1)
	// Home shard empty, the others hold 5 each.
	if err := s.SetShards(ctx, item, []int64{0, 5, 5, 5}); err != nil {
		t.Fatal(err)
	}
	var got []error
	for i := 0; i < 4; i++ {
		_, err := buy(ctx, t, s, item, shards, 2, user, int64(100+i))
		got = append(got, err)
	}
	want := []error{nil, nil, ErrAlreadyPurchased, ErrAlreadyPurchased}
	for i := range want {
		if !errors.Is(got[i], want[i]) || (want[i] == nil && got[i] != nil) {
			t.Errorf("purchase %d: got %v, want %v", i, got[i], want[i])
		}
	}
	rem, _ := s.Remaining(ctx, item, shards)
	if sum(rem) != 13 || rem[0] != 0 {
		t.Errorf("remaining %v, want 13 in all, 0 on the home shard", rem)
	}
	res, _ := s.PendingReservations(ctx, item, shards)
	if len(res) != 2 {
		t.Fatalf("outbox holds %d, want 2", len(res))
	}
	for _, r := range res {
		if r.Home != 0 || r.Shard == 0 || r.UserID != user {
			t.Errorf("reservation %+v: want home 0, another stock shard, user %d", r, user)
		}
	}
	// The count lives on the home shard only.
	n, err := rdb.HGet(ctx, s.keys(item, 0, shards).Bought(), fmt.Sprint(user)).Int()
	if err != nil || n != 2 {
		t.Errorf("home shard count %d (%v), want 2", n, err)
	}
}

func TestAllShardsEmptyFreesSlot(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 10, 4
	user := homeOf(2, shards, 1)
	if err := s.SetShards(ctx, item, []int64{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(ctx, t, s, item, shards, 1, user, 1); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("got %v, want ErrSoldOut", err)
	}
	if n, _ := rdb.HGet(ctx, s.keys(item, 2, shards).Bought(), fmt.Sprint(user)).Int(); n != 0 {
		t.Errorf("slot still claimed: count %d, want 0", n)
	}
	// Stock comes back: the user may buy once the flag is cleared.
	if err := s.SetShards(ctx, item, []int64{0, 1, 0, 0}); err != nil {
		t.Fatal(err)
	}
	s.ClearSoldOut(item)
	if _, err := buy(ctx, t, s, item, shards, 1, user, 2); err != nil {
		t.Errorf("after restock: got %v, want nil", err)
	}
}

func TestLastUnitRacedFromOtherShard(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Config{})
	const item, shards, buyers = 11, 8, 200
	// The last unit sits on one shard; most buyers must fall through to it.
	if err := s.SetShards(ctx, item, []int64{0, 0, 0, 1, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	toks := make([]string, buyers+1)
	for u := 1; u <= buyers; u++ {
		toks[u] = testenv.TokenID()
	}
	var ok, soldOut, other int
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for u := 1; u <= buyers; u++ {
		wg.Add(1)
		go func(u int64) {
			defer wg.Done()
			<-start
			_, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: toks[u], OrderID: tid(item, u, shards, u)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrSoldOut):
				soldOut++
			default:
				other++
			}
		}(int64(u))
	}
	close(start)
	wg.Wait()
	if ok != 1 || soldOut != buyers-1 || other != 0 {
		t.Errorf("got %d ok, %d sold out, %d other; want 1, %d, 0", ok, soldOut, other, buyers-1)
	}
}

// TestSoldOutCostsOneCallPerToken: once flagged sold out, a purchase reads
// its token's answer in one round trip and takes nothing; with Redis
// unreachable it is a dependency failure, never a made-up "sold out".
func TestSoldOutCostsOneCallPerToken(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	hook := &testenv.RoundTrips{}
	rdb.AddHook(hook)
	const item, shards = 12, 2
	if err := s.Warm(ctx, item, 0, shards); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(ctx, t, s, item, shards, 1, 1, 1); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("got %v, want ErrSoldOut", err)
	}
	tok := testenv.TokenID()
	before := hook.N.Load()
	if _, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: 2, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, 2, shards, 2)}); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("flagged item: got %v, want ErrSoldOut", err)
	}
	if n := hook.N.Load() - before; n != 1 {
		t.Errorf("sold-out purchase made %d round trips, want 1", n)
	}
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	dead := NewStore(down, Config{Prefix: s.prefix})
	dead.soldOut.Store(int64(item), struct{}{})
	_, err := dead.Reserve(ctx, Purchase{ItemID: item, UserID: 2, Shards: shards, Limit: 1, Token: testenv.TokenID(), OrderID: tid(item, 2, shards, 2)})
	if err == nil || errors.Is(err, ErrSoldOut) {
		t.Errorf("flagged item, Redis down: got %v, want a dependency error", err)
	}
}

func TestRedisDownIsNotABusinessAnswer(t *testing.T) {
	ctx := context.Background()
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	s := NewStore(down, Config{Prefix: "down"})
	_, err := s.Reserve(ctx, Purchase{ItemID: 1, UserID: 1, Shards: 4, Limit: 1, Token: testenv.TokenID(), OrderID: tid(1, 1, 4, 1)})
	for _, sentinel := range []error{ErrSoldOut, ErrAlreadyPurchased, ErrTokenInvalid} {
		if errors.Is(err, sentinel) {
			t.Fatalf("redis down: got %v, a business answer", err)
		}
	}
	if err == nil {
		t.Fatal("redis down: got nil error")
	}
}

func TestMissingShardKeyIsNotSoldOut(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 13, 2
	if err := s.Warm(ctx, item, 4, shards); err != nil {
		t.Fatal(err)
	}
	for sh := range shards {
		if err := rdb.Del(ctx, s.keys(item, sh, shards).Stock()).Err(); err != nil { // Redis lost its keys
			t.Fatal(err)
		}
	}
	if _, err := buy(ctx, t, s, item, shards, 1, 1, 1); !errors.Is(err, ErrNotReady) {
		t.Errorf("got %v, want ErrNotReady", err)
	}
}

func TestReturnOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Config{})
	const item, shards = 14, 4
	user := homeOf(1, shards, 1)
	if err := s.SetShards(ctx, item, []int64{0, 0, 1, 0}); err != nil {
		t.Fatal(err)
	}
	id, err := buy(ctx, t, s, item, shards, 1, user, 77)
	if err != nil {
		t.Fatal(err)
	}
	// Many returns of the same order, released together.
	var wg sync.WaitGroup
	var mu sync.Mutex
	returned := 0
	start := make(chan struct{})
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			back, err := s.Return(ctx, item, user, id, 2, shards)
			if err != nil {
				t.Error(err)
			}
			if back {
				mu.Lock()
				returned++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	rem, _ := s.Remaining(ctx, item, shards)
	if returned != 1 || fmt.Sprint(rem) != "[0 0 1 0]" {
		t.Errorf("returned %d times, shards %v; want 1 and [0 0 1 0]", returned, rem)
	}
	// The slot is free again: the same user can buy the returned unit.
	if _, err := buy(ctx, t, s, item, shards, 1, user, 78); err != nil {
		t.Errorf("rebuy after return: got %v, want nil", err)
	}
}

func TestStaleClaimIsSettledOnReplay(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{ClaimTimeout: time.Millisecond})
	const item, shards = 15, 2
	user := homeOf(0, shards, 1)
	if err := s.SetShards(ctx, item, []int64{0, 1}); err != nil {
		t.Fatal(err)
	}
	tok := testenv.TokenID()
	// A process ran the home script, claimed the slot, then died.
	order := tid(item, user, shards, 500)
	code, err := rawReserve(ctx, s, rdb, item, 0, shards, user, tok, order, time.Now().Add(-time.Minute).UnixMilli())
	if err != nil || code[0] != codeHomeEmpty {
		t.Fatalf("claim: got %v, %v; want code %d", code, err, codeHomeEmpty)
	}
	id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 501)})
	if err != nil || id != order {
		t.Fatalf("replay of stale claim: got %d, %v; want the claimed order %d", id, err, order)
	}
	// Settled: a further replay answers the same without taking again.
	id, err = s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 502)})
	if err != nil || id != order {
		t.Fatalf("second replay: got %d, %v; want %d", id, err, order)
	}
	if rem, _ := s.Remaining(ctx, item, shards); fmt.Sprint(rem) != "[0 0]" {
		t.Errorf("shards %v, want [0 0]", rem)
	}
	if res, _ := s.PendingReservations(ctx, item, shards); len(res) != 1 {
		t.Errorf("outbox holds %d, want 1", len(res))
	}
}

func TestReturnNeverRecreatesALostShard(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 16, 2
	if err := s.SetShards(ctx, item, []int64{1, 1}); err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, s.keys(item, 1, shards).Stock()) // Redis lost the shard
	back, err := s.Return(ctx, item, 5, 99, 1, shards)
	if back || !errors.Is(err, ErrNotReady) {
		t.Fatalf("return into a lost shard: got %v, %v; want false, ErrNotReady", back, err)
	}
	if n, _ := rdb.Exists(ctx, s.keys(item, 1, shards).Stock()).Result(); n != 0 {
		t.Error("the lost shard key was recreated")
	}
	if ok, _ := rdb.SIsMember(ctx, s.keys(item, 1, shards).Returned(), 99).Result(); ok {
		t.Error("the order was recorded as returned")
	}
}

// TestStaleClaimTakesOneUnit: the dead process had already taken its unit
// from shard 2 when it died; a unit returned meanwhile to shard 1 must not
// be taken too, however many replays race to settle the claim.
func TestStaleClaimTakesOneUnit(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{ClaimTimeout: time.Millisecond})
	const item, shards = 17, 3
	user := homeOf(0, shards, 1)
	if err := s.SetShards(ctx, item, []int64{0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	tok := testenv.TokenID()
	order := tid(item, user, shards, 700)
	claim := time.Now().Add(-time.Minute).UnixMilli()
	if _, err := rawReserve(ctx, s, rdb, item, 0, shards, user, tok, order, claim); err != nil {
		t.Fatal(err)
	}
	if _, err := rawTake(ctx, s, rdb, item, 2, 0, shards, user, order, claim, claim); err != nil {
		t.Fatal(err)
	}
	// ...then it died. A cancelled order's unit comes back to shard 1.
	rdb.Set(ctx, s.keys(item, 1, shards).Stock(), 1, 0)

	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	start := make(chan struct{})
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, int64(800+i))})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && id == order:
				answers["order"]++
			case errors.Is(err, ErrPurchaseInProgress):
				answers["in progress"]++
			default:
				answers[fmt.Sprintf("%d %v", id, err)]++
			}
		}()
	}
	close(start)
	wg.Wait()
	if answers["order"] < 1 || answers["order"]+answers["in progress"] != 10 {
		t.Errorf("answers %v, want the order (at least once) or in progress", answers)
	}
	if rem, _ := s.Remaining(ctx, item, shards); fmt.Sprint(rem) != "[0 1 0]" {
		t.Errorf("shards %v, want [0 1 0]: the returned unit stays", rem)
	}
	if res, _ := s.PendingReservations(ctx, item, shards); len(res) != 1 {
		t.Errorf("outbox holds %d, want 1", len(res))
	}
	if id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 900)}); err != nil || id != order {
		t.Errorf("replay after settling: got %d, %v; want %d", id, err, order)
	}
}

// claimStale makes the home script claim the buyer's slot as a process
// would whose home shard is empty, with a claim time long past, and returns
// the claim's epoch.
func claimStale(ctx context.Context, t *testing.T, s *Store, rdb redis.UniversalClient, item int64, home, shards int, user int64, tok string, order int64) int64 {
	t.Helper()
	epoch := time.Now().Add(-time.Minute).UnixMilli()
	code, err := rawReserve(ctx, s, rdb, item, home, shards, user, tok, order, epoch)
	if err != nil || code[0] != codeHomeEmpty {
		t.Fatalf("claim: got %v, %v; want code %d", code, err, codeHomeEmpty)
	}
	return epoch
}

// TestSlowProcessIsFencedAfterReplay: a process stalls (SIGSTOP) after
// claiming, a replay settles its claim with a unit of shard 1, then the
// process wakes up and tries shard 2. It must take nothing: one order id,
// one outbox entry, one unit.
func TestSlowProcessIsFencedAfterReplay(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{ClaimTimeout: time.Millisecond})
	const item, shards = 18, 3
	user := homeOf(0, shards, 1)
	order := tid(item, user, shards, 1000)
	if err := s.SetShards(ctx, item, []int64{0, 1, 1}); err != nil {
		t.Fatal(err)
	}
	tok := testenv.TokenID()
	epoch := claimStale(ctx, t, s, rdb, item, 0, shards, user, tok, order)
	// The buyer's replay settles the stale claim.
	id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 1001)})
	if err != nil || id != order {
		t.Fatalf("replay: got %d, %v; want %d", id, err, order)
	}
	// The stalled process wakes up and goes on with its own epoch.
	for sh := 1; sh < shards; sh++ {
		c, err := rawTake(ctx, s, rdb, item, sh, 0, shards, user, order, epoch, epoch)
		if err != nil {
			t.Fatal(err)
		}
		if c != codeFenced && c != codeOK {
			t.Fatalf("stalled take on shard %d: code %d", sh, c)
		}
	}
	res, _ := s.PendingReservations(ctx, item, shards)
	if len(res) != 1 {
		t.Errorf("outbox holds %d entries for order %d, want 1: %+v", len(res), order, res)
	}
	if rem, _ := s.Remaining(ctx, item, shards); sum(rem) != 1 {
		t.Errorf("shards %v: %d units left, want 1", rem, sum(rem))
	}
	// And it cannot settle the token with its old epoch either.
	hg := ShardGroup(item, 0, shards)
	hk := s.keysIn(hg, item, 0)
	n, err := finishScript.Run(ctx, rdb, []string{hk.Bought(), hk.Token(tok), s.claimsKey(hg)},
		user, order, codeSoldOut, "1", 3600, epoch, claimMember(item, 0, tok)).Int()
	if err != nil || n != 0 {
		t.Errorf("stale finish: got %d, %v; want 0 (fenced)", n, err)
	}
	if id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 1002)}); err != nil || id != order {
		t.Errorf("replay after all: got %d, %v; want %d", id, err, order)
	}
}

// TestSoldOutAnswersStoredResult: once an instance flagged the item sold
// out, a retried token still gets the answer Redis stored for it (the
// buyer's 202 whose answer was lost), and an unused token is answered sold
// out on every instance from then on.
func TestSoldOutAnswersStoredResult(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	a := NewStore(rdb, Config{Prefix: prefix})
	b := NewStore(rdb, Config{Prefix: prefix}) // another instance
	const item, shards = 19, 2
	if err := a.SetShards(ctx, item, []int64{1, 0}); err != nil {
		t.Fatal(err)
	}
	user := homeOf(0, shards, 1)
	tok := testenv.TokenID()
	id, err := a.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 42)})
	if err != nil || id != tid(item, user, shards, 42) {
		t.Fatalf("buy: got %d, %v", id, err)
	}
	// The answer got lost; meanwhile both instances saw the item sold out.
	other := homeOf(1, shards, user+1)
	for _, st := range []*Store{a, b} {
		tk := testenv.TokenID()
		if _, err := st.Reserve(ctx, Purchase{ItemID: item, UserID: other, Shards: shards, Limit: 1, Token: tk, OrderID: tid(item, other, shards, 43)}); !errors.Is(err, ErrSoldOut) {
			t.Fatalf("other buyer: got %v, want sold out", err)
		}
		other += 2
	}
	for _, st := range []*Store{a, b} {
		if !st.SoldOut(item) {
			t.Fatal("not flagged sold out")
		}
		id, err := st.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 44)})
		if err != nil || id != tid(item, user, shards, 42) {
			t.Errorf("retry after sell-out: got %d, %v; want the order 42", id, err)
		}
	}
	// An unused token: sold out, and the same answer once the flag is gone.
	late := homeOf(0, shards, user+100)
	tk := testenv.TokenID()
	if _, err := a.Reserve(ctx, Purchase{ItemID: item, UserID: late, Shards: shards, Limit: 1, Token: tk, OrderID: tid(item, late, shards, 45)}); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("unused token: got %v, want sold out", err)
	}
	rdb.Set(ctx, a.keys(item, 1, shards).Stock(), 1, 0) // a unit came back
	b.ClearSoldOut(item)
	if _, err := b.Reserve(ctx, Purchase{ItemID: item, UserID: late, Shards: shards, Limit: 1, Token: tk, OrderID: tid(item, late, shards, 46)}); !errors.Is(err, ErrSoldOut) {
		t.Errorf("same token elsewhere after a restock: got %v, want its sold-out answer kept", err)
	}
}

// TestLookupOrder: an accepted order is found by id alone in two reads,
// for its buyer only, and an id that only an attempt refused is not found.
func TestLookupOrder(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Config{})
	const item, shards = 20, 4
	if err := s.SetShards(ctx, item, []int64{1, 1, 0, 0}); err != nil {
		t.Fatal(err)
	}
	var accepted []int64
	for u := int64(1); u <= 6; u++ {
		if id, err := buy(ctx, t, s, item, shards, 1, u, 2000+u); err == nil {
			accepted = append(accepted, id)
		}
	}
	if len(accepted) != 2 {
		t.Fatalf("accepted %v, want 2 orders", accepted)
	}
	for _, id := range accepted {
		found := false
		for u := int64(1); u <= 6; u++ {
			a, ok, err := s.LookupOrder(ctx, id, u)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				if found || a.ItemID != item {
					t.Errorf("order %d: found for a second user or wrong item %+v", id, a)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("accepted order %d not found", id)
		}
	}
	for u := int64(1); u <= 6; u++ {
		id := 2000 + u
		if slices.Contains(accepted, id) {
			continue
		}
		if _, ok, _ := s.LookupOrder(ctx, id, u); ok {
			t.Errorf("refused attempt %d found as an order", id)
		}
	}
}

// TestSweeperSettlesAbandonedClaim: a claim whose process died and whose
// buyer never comes back is listed as stale and settled, freeing the slot
// when every shard is empty.
func TestSettleAbandonedClaim(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{ClaimTimeout: time.Millisecond})
	const item, shards = 21, 2
	user := homeOf(0, shards, 1)
	order := tid(item, user, shards, 3000)
	if err := s.SetShards(ctx, item, []int64{0, 0}); err != nil {
		t.Fatal(err)
	}
	tok := testenv.TokenID()
	claimStale(ctx, t, s, rdb, item, 0, shards, user, tok, order)
	open, err := s.OpenClaims(ctx, item, shards)
	if err != nil || len(open) != 1 || open[0].UserID != user {
		t.Fatalf("open claims: got %+v, %v; want the user's one", open, err)
	}
	stale, err := s.StaleClaims(ctx, 10)
	if err != nil || len(stale) != 1 {
		t.Fatalf("stale claims: got %+v, %v", stale, err)
	}
	if _, err := s.SettleClaim(ctx, stale[0], shards); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("settle: got %v, want sold out", err)
	}
	if n, _ := rdb.HGet(ctx, s.keys(item, 0, shards).Bought(), strconv.FormatInt(user, 10)).Int(); n != 0 {
		t.Errorf("slot still held: %d", n)
	}
	if left, _ := s.StaleClaims(ctx, 10); len(left) != 0 {
		t.Errorf("claims left after settling: %+v", left)
	}
}

// loseWrites undoes in Redis everything one accepted purchase wrote, as a
// restart from an AOF synced every second would for the last second.
func loseWrites(ctx context.Context, t *testing.T, s *Store, rdb redis.UniversalClient, item int64, shards int, user, order int64, tok string) {
	t.Helper()
	home := HomeShard(user, shards)
	rs, _ := s.PendingReservations(ctx, item, shards)
	for _, r := range rs {
		if r.OrderID == order {
			rdb.XDel(ctx, s.keys(item, r.Shard, shards).Outbox(), r.StreamID)
			rdb.Incr(ctx, s.keys(item, r.Shard, shards).Stock())
		}
	}
	for sh := range shards {
		rdb.Del(ctx, s.keys(item, sh, shards).Took(order)) // a retake's take marker
	}
	rdb.HIncrBy(ctx, s.keys(item, home, shards).Bought(), strconv.FormatInt(user, 10), -1)
	rdb.Del(ctx, s.keys(item, home, shards).Token(tok))
	rdb.Del(ctx, s.orderKey(order))
}

// TestRetakeAfterRestart: a restart lost a purchase's writes; the instance
// that accepted it puts it back: one unit taken again, its outbox entry,
// its token's answer and the buyer's slot. If the unit was sold to someone
// else meanwhile it is reported, and the buyer's slot is not held.
func TestRetakeAfterRestart(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 22, 2
	if err := s.SetShards(ctx, item, []int64{1, 1}); err != nil {
		t.Fatal(err)
	}
	shardsOf := func(int64) (int, error) { return shards, nil }
	var accepted []Restored
	for u := int64(1); u <= 2; u++ {
		tok := testenv.TokenID()
		id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: u, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, u, shards, 100+u)})
		if err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, Restored{OrderID: id, ItemID: item, UserID: u, Home: HomeShard(u, shards), Shards: shards, Token: tok, At: time.Now()})
	}
	lost := accepted[0].OrderID
	loseWrites(ctx, t, s, rdb, item, shards, 1, lost, accepted[0].Token)
	unserved, err := s.Retake(ctx, shardsOf, accepted)
	if err != nil || len(unserved) != 0 {
		t.Fatalf("retake: %v, %v; want every purchase served", unserved, err)
	}
	if rem, _ := s.Remaining(ctx, item, shards); sum(rem) != 0 {
		t.Errorf("shards %v after retake, want 0 left", rem)
	}
	if rs, _ := s.PendingReservations(ctx, item, shards); len(rs) != 2 {
		t.Errorf("outbox holds %d, want 2", len(rs))
	}
	if id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: 1, Shards: shards, Limit: 1, Token: accepted[0].Token, OrderID: tid(item, 1, shards, 999)}); err != nil || id != lost {
		t.Errorf("retry of the lost key: %d, %v; want %d", id, err, lost)
	}
	if _, ok, _ := s.LookupOrder(ctx, lost, 1); !ok {
		t.Errorf("order %d not found after retake", lost)
	}
	// Lost again, and this time its unit is bought by someone else first.
	loseWrites(ctx, t, s, rdb, item, shards, 1, lost, accepted[0].Token)
	tok := testenv.TokenID()
	if _, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: 3, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, 3, shards, 103)}); err != nil {
		t.Fatal(err)
	}
	unserved, err = s.Retake(ctx, shardsOf, accepted[:1])
	if err != nil || len(unserved) != 1 || unserved[0] != lost {
		t.Fatalf("retake with no unit left: %v, %v; want [%d]", unserved, err, lost)
	}
	if n, _ := rdb.HGet(ctx, s.keys(item, accepted[0].Home, shards).Bought(), "1").Int(); n != 0 {
		t.Errorf("lost buyer's slot held: %d", n)
	}
}

// TestReturnGuardsExpire: the per-order guards of returns and freed slots
// are bounded: they expire a week after their last use (they used to grow
// with every cancellation, forever).
func TestReturnGuardsExpire(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{})
	const item, shards = 23, 1
	if err := s.SetShards(ctx, item, []int64{0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Return(ctx, item, 7, 4242, 0, shards); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{s.keys(item, 0, shards).Returned(), s.keys(item, 0, shards).Freed()} {
		ttl, err := rdb.TTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > guardTTL {
			t.Errorf("%s: ttl %v, %v; want at most %v", k, ttl, err, guardTTL)
		}
	}
}

// tid is test order id n made for the slot group of user's home shard, as
// the app's id generator makes them.
func tid(item, user int64, shards int, n int64) int64 {
	return WithGroup(n<<22, HomeGroup(item, user, shards))
}

// rawReserve runs reserve.lua as Reserve does, with the claim time at.
func rawReserve(ctx context.Context, s *Store, rdb redis.UniversalClient, item int64, home, shards int, user int64, tok string, order, at int64) ([]int64, error) {
	g := ShardGroup(item, home, shards)
	k := s.keysIn(g, item, home)
	return reserveScript.Run(ctx, rdb, []string{k.Stock(), k.Bought(), k.Token(tok), k.Outbox(), s.claimsKey(g), s.orderKey(order), s.activeKey(g), k.State()},
		user, item, order, 1, at, home, 3600, claimMember(item, home, tok), indexValue(item, home, tok), outboxMember(item, home)).Int64Slice()
}

// rawTake runs take.lua on shard sh as fallThrough does, with the claim
// epoch given.
func rawTake(ctx context.Context, s *Store, rdb redis.UniversalClient, item int64, sh, home, shards int, user, order, at, epoch int64) (int64, error) {
	g := ShardGroup(item, sh, shards)
	k := s.keysIn(g, item, sh)
	return takeScript.Run(ctx, rdb, []string{k.Stock(), k.Outbox(), k.Took(order), s.activeKey(g)},
		user, item, order, at, sh, home, 3600, epoch, outboxMember(item, sh)).Int64()
}

// TestSettleAfterAnInterruptedSettle: a replay took a stale claim over and
// fenced some shards, then failed (Redis Cluster master down, process
// killed). A later replay must still settle the claim: it used to find the
// first replay's fence, take it for another epoch's, and answer "in
// progress" forever (the fault suite's cluster-master-empty had buyers
// stuck that way).
func TestSettleAfterAnInterruptedSettle(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, Config{ClaimTimeout: time.Millisecond})
	const item, shards = 24, 3
	user := homeOf(0, shards, 1)
	if err := s.SetShards(ctx, item, []int64{0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	tok := testenv.TokenID()
	order := tid(item, user, shards, 2400)
	epoch := claimStale(ctx, t, s, rdb, item, 0, shards, user, tok, order)
	// The first replay: reclaims with a new epoch, fences shard 1, dies.
	hg := ShardGroup(item, 0, shards)
	e1 := epoch + 1
	won, err := reclaimScript.Run(ctx, rdb, []string{s.keysIn(hg, item, 0).Token(tok), s.claimsKey(hg)}, epoch, e1, claimMember(item, 0, tok)).Int()
	if err != nil || won != 1 {
		t.Fatalf("first replay's reclaim: %d, %v", won, err)
	}
	if err := fenceScript.Run(ctx, rdb, []string{s.keys(item, 1, shards).Took(order)}, e1, 3600).Err(); err != nil {
		t.Fatal(err)
	}
	// The buyer's next replay, once that claim is stale too.
	deadline := time.Now().Add(5 * time.Second)
	for {
		id, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok, OrderID: tid(item, user, shards, 2401)})
		if err == nil {
			if id != order {
				t.Fatalf("replay: got order %d, want %d", id, order)
			}
			break
		}
		if !errors.Is(err, ErrPurchaseInProgress) || time.Now().After(deadline) {
			t.Fatalf("replay after an interrupted settle: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // the new claim epoch must grow stale
	}
	if rem, _ := s.Remaining(ctx, item, shards); sum(rem) != 0 {
		t.Errorf("shards %v, want the one unit taken", rem)
	}
	if res, _ := s.PendingReservations(ctx, item, shards); len(res) != 1 {
		t.Errorf("outbox holds %d, want 1", len(res))
	}
}
