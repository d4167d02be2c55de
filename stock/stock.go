// Package stock keeps an item's sellable units in Redis, split over shard
// keys, and takes them with atomic Lua scripts: a purchase is one script call
// on the buyer's home shard in the common case.
package stock

import (
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Expected outcomes of a purchase. Anything else Reserve returns is an
// infrastructure failure.
var (
	ErrSoldOut            = errors.New("sold out")
	ErrAlreadyPurchased   = errors.New("purchase limit reached")
	ErrTokenInvalid       = errors.New("purchase token invalid")
	ErrNotReady           = errors.New("stock not in redis")
	ErrPurchaseInProgress = errors.New("purchase in progress")
	// ErrNotReplicated: the reservation is taken on the primary, but fewer
	// replicas than configured acknowledged it in time. Not an answer: the
	// buyer retries the same token and gets the 202 once it is replicated.
	ErrNotReplicated = errors.New("reservation not acknowledged by enough replicas")
	// ErrOrderGroup: the purchase's order id was not made for the slot
	// group of the buyer's home shard (see HomeGroup); a caller's bug.
	ErrOrderGroup = errors.New("order id made for another slot group")
	// ErrPaused: the operator paused the item's sale (control.go).
	ErrPaused = errors.New("sale paused")
	// ErrEnded: the operator ended the item's sale (control.go).
	ErrEnded = errors.New("sale ended")
)

// Script result codes, shared with the Lua scripts in lua/.
const (
	codeOK           = 0
	codeHomeEmpty    = 1
	codeSoldOut      = 2
	codeLimit        = 3
	codeTokenInvalid = 4
	codeNotReady     = 5
	codeInProgress   = 6
	codeFenced       = 7
	codePaused       = 8
	codeEnded        = 9
)

// codeErr maps a script result code to its sentinel; the one place that does.
func codeErr(code int64) error {
	switch code {
	case codeOK:
		return nil
	case codeSoldOut:
		return ErrSoldOut
	case codeLimit:
		return ErrAlreadyPurchased
	case codeTokenInvalid:
		return ErrTokenInvalid
	case codeNotReady:
		return ErrNotReady
	case codeInProgress, codeFenced:
		return ErrPurchaseInProgress
	case codePaused:
		return ErrPaused
	case codeEnded:
		return ErrEnded
	}
	return fmt.Errorf("unexpected script code %d", code)
}

var (
	//go:embed lua/reserve.lua
	reserveLua string
	//go:embed lua/take.lua
	takeLua string
	//go:embed lua/finish.lua
	finishLua string
	//go:embed lua/restock.lua
	restockLua string
	//go:embed lua/free.lua
	freeLua string
	//go:embed lua/reclaim.lua
	reclaimLua string
	//go:embed lua/fence.lua
	fenceLua string
	//go:embed lua/answer.lua
	answerLua string
	//go:embed lua/retake.lua
	retakeLua string
	//go:embed lua/idle.lua
	idleLua string
	//go:embed lua/prune.lua
	pruneLua string

	reserveScript = redis.NewScript(reserveLua)
	takeScript    = redis.NewScript(takeLua)
	finishScript  = redis.NewScript(finishLua)
	restockScript = redis.NewScript(restockLua)
	freeScript    = redis.NewScript(freeLua)
	reclaimScript = redis.NewScript(reclaimLua)
	fenceScript   = redis.NewScript(fenceLua)
	answerScript  = redis.NewScript(answerLua)
	retakeScript  = redis.NewScript(retakeLua)
	idleScript    = redis.NewScript(idleLua)
	pruneScript   = redis.NewScript(pruneLua)
)

// DefaultResultTTL is Config.ResultTTL's default: a day.
const DefaultResultTTL = 24 * time.Hour

// Config tunes a Store.
type Config struct {
	// Prefix starts every key, so tests and deployments can share a Redis.
	Prefix string
	// ResultTTL is how long a used token keeps its answer for replays. It
	// must outlast the tokens' validity (sale.Config.TokenTTL), so that a
	// used token can never be used again.
	ResultTTL time.Duration
	// ClaimTimeout is how long a fall-through may stay unsettled before a
	// replay of its token settles it.
	ClaimTimeout time.Duration
	// WaitReplicas is how many replicas must acknowledge a reservation
	// (Redis WAIT) before it counts as accepted; 0: none.
	WaitReplicas int
	// WaitTimeout bounds that wait (default 100ms).
	WaitTimeout time.Duration
	// Restarted, if set, is called (without blocking) when a purchase finds
	// Redis without its scripts: it restarted, and may have lost the last
	// writes before it did.
	Restarted func()
}

// Store is the sharded Redis stock of all items.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	cfg    Config

	soldOut sync.Map // item id -> struct{}: every shard was empty
	// restocks counts the clearings of sold-out flags (ClearSoldOut,
	// clearAllSoldOut): a purchase that found the item sold out sets the
	// flag only if none happened since it began, else a purchase that ran
	// before units came back (added, returned) would set it after their
	// notice cleared it, and this process would answer sold out from
	// memory while units are there, until the next resync.
	restocks atomic.Uint64

	// touched holds the outboxes this process appended to since the relay
	// last asked (TakeTouched); touch signals that there are some.
	touchMu sync.Mutex
	touched map[Outbox]struct{}
	touch   chan struct{}

	batch batcher // group commit of purchase scripts (batch.go)

	broken atomic.Pointer[func(BrokenEntry)] // see OnBrokenEntry
}

// noteTouched records that this process appended to outbox o.
func (s *Store) noteTouched(o Outbox) {
	s.touchMu.Lock()
	s.touched[o] = struct{}{}
	s.touchMu.Unlock()
	select {
	case s.touch <- struct{}{}:
	default:
	}
}

// Touched receives (without ever blocking the writer) when this process
// appended to an outbox; TakeTouched says which. Other processes' entries
// are found in the active sets (ActiveOutboxes).
func (s *Store) Touched() <-chan struct{} { return s.touch }

// TakeTouched returns the outboxes this process appended to since the last
// call, and forgets them.
func (s *Store) TakeTouched() []Outbox {
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	out := make([]Outbox, 0, len(s.touched))
	for o := range s.touched {
		out = append(out, o)
	}
	clear(s.touched)
	return out
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "seckill"
	}
	if cfg.ResultTTL <= 0 {
		cfg.ResultTTL = DefaultResultTTL
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = 30 * time.Second
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 100 * time.Millisecond
	}
	return &Store{rdb: rdb, prefix: cfg.Prefix, cfg: cfg, touched: map[Outbox]struct{}{}, touch: make(chan struct{}, 1)}
}

// ResultTTL is how long a used purchase token keeps its answer.
func (s *Store) ResultTTL() time.Duration { return s.cfg.ResultTTL }

// Prefix is the key prefix of the store.
func (s *Store) Prefix() string { return s.prefix }

func (s *Store) itemsKey() string { return s.prefix + ":items" }

// Split divides total units over n shards as evenly as possible: the first
// total%n shards get one unit more.
func Split(total int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = total / int64(n)
		if int64(i) < total%int64(n) {
			out[i]++
		}
	}
	return out
}

// Warm writes the initial stock of a new item into its shards. A shard that
// already holds a count keeps it: warming twice never re-opens sold units.
func (s *Store) Warm(ctx context.Context, itemID, total int64, shards int) error {
	pipe := s.rdb.Pipeline()
	for i, n := range Split(total, shards) {
		pipe.SetNX(ctx, s.keys(itemID, i, shards).Stock(), n, 0)
	}
	pipe.SAdd(ctx, s.itemsKey(), itemID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("warm item %d: %w", itemID, err)
	}
	return nil
}

// SetShards overwrites the shard counts of an item (used by rebuild).
func (s *Store) SetShards(ctx context.Context, itemID int64, counts []int64) error {
	pipe := s.rdb.Pipeline()
	for i, n := range counts {
		pipe.Set(ctx, s.keys(itemID, i, len(counts)).Stock(), n, 0)
	}
	pipe.SAdd(ctx, s.itemsKey(), itemID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("set shards of item %d: %w", itemID, err)
	}
	return nil
}

// Items lists the ids of every item warmed in this Redis.
func (s *Store) Items(ctx context.Context) ([]int64, error) {
	ss, err := s.rdb.SMembers(ctx, s.itemsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list items: %w", err)
	}
	ids := make([]int64, 0, len(ss))
	for _, v := range ss {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Remaining reads every shard's count; a missing shard key reads -1.
func (s *Store) Remaining(ctx context.Context, itemID int64, shards int) ([]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, shards)
	for i := range cmds {
		cmds[i] = pipe.Get(ctx, s.keys(itemID, i, shards).Stock())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("remaining of item %d: %w", itemID, err)
	}
	out := make([]int64, shards)
	for i, c := range cmds {
		n, err := c.Int64()
		switch {
		case errors.Is(err, redis.Nil):
			out[i] = -1
		case err != nil:
			return nil, fmt.Errorf("remaining of item %d shard %d: %w", itemID, i, err)
		default:
			out[i] = n
		}
	}
	return out, nil
}

// TokenBytes is the 16 bytes a token ID in the form TokenString gives
// (32 lowercase hex digits) stands for; ok is false for any other string.
// Two strings that differ are never the same bytes, so the bytes may stand
// for the ID as a map key (one without pointers).
func TokenBytes(tok string) (b [16]byte, ok bool) {
	if len(tok) != 2*len(b) {
		return b, false
	}
	for i := range tok {
		if c := tok[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return b, false
		}
	}
	var src [32]byte
	copy(src[:], tok)
	_, err := hex.Decode(b[:], src[:])
	return b, err == nil
}

// TokenString is the form of a purchase token's ID (its 16-byte nonce,
// package order/token) that Redis keys, order index entries and claims
// members spell: TokenBytes the other way. Nothing is stored under it
// before the token's first use.
func TokenString(b [16]byte) string { return hex.EncodeToString(b[:]) }

// Purchase is one buyer's attempt at one unit.
type Purchase struct {
	ItemID int64
	UserID int64
	Shards int
	Limit  int
	// Token is the ID of the purchase token (TokenString), verified by
	// the caller: the store keeps the token's answer under it.
	Token string
	// OrderID is used if this attempt takes a unit; a replay returns the
	// order id of the first attempt instead.
	OrderID int64
}

// SoldOut reports whether this process saw every shard of the item empty.
func (s *Store) SoldOut(itemID int64) bool {
	_, ok := s.soldOut.Load(itemID)
	return ok
}

// ClearSoldOut forgets the local sold-out flag, after stock came back.
func (s *Store) ClearSoldOut(itemID int64) {
	s.restocks.Add(1)
	s.soldOut.Delete(itemID)
}

// markSoldOut sets the item's sold-out flag for a purchase that began when
// restocks was at gen, unless stock came back since.
func (s *Store) markSoldOut(itemID int64, gen uint64) {
	if s.restocks.Load() != gen {
		return
	}
	s.soldOut.Store(itemID, struct{}{})
	if s.restocks.Load() != gen { // cleared between the check and the store
		s.soldOut.Delete(itemID)
	}
}

// ttlSeconds is how long a used token keeps its answer, in whole seconds.
func (s *Store) ttlSeconds() int64 { return int64(s.cfg.ResultTTL / time.Second) }

// claimMember names an open fall-through claim in the claims index: enough
// to find its token (item, home shard, token).
func claimMember(itemID int64, home int, token string) string {
	return strconv.FormatInt(itemID, 10) + ":" + strconv.Itoa(home) + ":" + token
}

// Reserve takes one unit for p and records the reservation in the shard's
// outbox, or returns why not. A nil error means the reservation is durable in
// Redis (and acknowledged by the configured replicas) and the returned order
// id will become an order.
//
// Once this process saw the item sold out, Reserve takes nothing: it reads
// the token's stored answer (one call), and an unused token is answered sold
// out, for good, so a retry gets the same answer on every instance.
func (s *Store) Reserve(ctx context.Context, p Purchase) (int64, error) {
	if _, ok := TokenBytes(p.Token); !ok {
		return 0, ErrTokenInvalid
	}
	gen := s.restocks.Load()
	home := HomeShard(p.UserID, p.Shards)
	g := ShardGroup(p.ItemID, home, p.Shards)
	k := s.keysIn(g, p.ItemID, home)
	script, keys := reserveScript, []string{k.Stock(), k.Bought(), k.Token(p.Token), k.Outbox(), s.claimsKey(g), s.orderKey(p.OrderID), s.activeKey(g), k.State()}
	args := []any{p.UserID, p.ItemID, p.OrderID, p.Limit, time.Now().UnixMilli(), home, s.ttlSeconds(),
		claimMember(p.ItemID, home, p.Token), indexValue(p.ItemID, home, p.Token), outboxMember(p.ItemID, home)}
	if s.SoldOut(p.ItemID) {
		script, keys, args = answerScript, []string{k.Token(p.Token)}, []any{p.UserID, s.ttlSeconds()}
	} else if OrderGroup(p.OrderID) != g {
		// The order index entry must share the home shard's slot.
		return 0, fmt.Errorf("reserve item %d: %w: order id %d is for group %d, the home shard is in %d",
			p.ItemID, ErrOrderGroup, p.OrderID, OrderGroup(p.OrderID), g)
	}
	res, err := s.run(ctx, script, keys, args)
	if err != nil {
		return 0, fmt.Errorf("reserve item %d: %w", p.ItemID, err)
	}
	code, orderID := res[0], int64(0)
	if len(res) > 1 {
		orderID = res[1]
	}
	switch code {
	case codeHomeEmpty:
		return s.fallThrough(ctx, p, home, orderID, res[2], gen)
	case codeInProgress:
		if len(res) > 2 && time.Since(time.UnixMilli(res[2])) > s.cfg.ClaimTimeout {
			// The process that claimed died or stalls mid fall-through:
			// settle the claim, fencing that process out.
			return s.settleStale(ctx, p, home, orderID, res[2], gen)
		}
	case codeSoldOut:
		return 0, ErrSoldOut
	}
	if err := codeErr(code); err != nil {
		return 0, err
	}
	if script == reserveScript && orderID == p.OrderID {
		s.noteTouched(Outbox{ItemID: p.ItemID, Shard: home, SlotGroup: g})
	}
	return orderID, nil
}

// Answer is what the use of a purchase token got, for a token that can no
// longer be used a first time (it expired): one read, and nothing taken or
// stored. A token never used has no answer (ErrTokenInvalid). A claim left
// open past the claim timeout is settled as Reserve's replay would: the
// token was used, and its fall-through is finished for it.
func (s *Store) Answer(ctx context.Context, p Purchase) (int64, error) {
	if _, ok := TokenBytes(p.Token); !ok {
		return 0, ErrTokenInvalid
	}
	home := HomeShard(p.UserID, p.Shards)
	v, err := s.rdb.HMGet(ctx, s.keys(p.ItemID, home, p.Shards).Token(p.Token),
		tokUser, tokState, tokCode, tokOrder, tokEpoch).Result()
	if err != nil {
		return 0, fmt.Errorf("answer of item %d: %w", p.ItemID, err)
	}
	num := func(f any) int64 {
		n, _ := strconv.ParseInt(str(f), 10, 64)
		return n
	}
	if str(v[0]) != strconv.FormatInt(p.UserID, 10) {
		return 0, ErrTokenInvalid
	}
	switch str(v[1]) {
	case stateDone:
		if err := codeErr(num(v[2])); err != nil {
			return 0, err
		}
		return num(v[3]), nil
	case stateClaimed:
		if epoch := num(v[4]); time.Since(time.UnixMilli(epoch)) > s.cfg.ClaimTimeout {
			return s.settleStale(ctx, p, home, num(v[3]), epoch, s.restocks.Load())
		}
		return 0, ErrPurchaseInProgress
	}
	return 0, ErrTokenInvalid
}

// str is a field of an HMGET reply: "" when missing.
func str(f any) string {
	v, _ := f.(string)
	return v
}

// indexValue is what the order index entry of an order says: where the
// token that holds the purchase's answer lives.
func indexValue(itemID int64, home int, token string) string {
	return strconv.FormatInt(itemID, 10) + ":" + strconv.Itoa(home) + ":" + token + ":" + strconv.FormatInt(time.Now().UnixMilli(), 10)
}

// settleStale finishes a fall-through whose process died or stalls. One
// replay wins the claim and a new epoch; it then fences every other shard
// before it looks: if some epoch of the claim already took a unit somewhere,
// that unit is the order's and no second one is taken, and the old epoch's
// process can take nothing from here on (take.lua refuses it).
func (s *Store) settleStale(ctx context.Context, p Purchase, home int, orderID, claimedAt int64, gen uint64) (int64, error) {
	hg := ShardGroup(p.ItemID, home, p.Shards)
	hk := s.keysIn(hg, p.ItemID, home)
	epoch := time.Now().UnixMilli()
	if epoch <= claimedAt {
		epoch = claimedAt + 1
	}
	member := claimMember(p.ItemID, home, p.Token)
	won, err := reclaimScript.Run(ctx, s.rdb, []string{hk.Token(p.Token), s.claimsKey(hg)}, claimedAt, epoch, member).Int()
	if err != nil {
		return 0, fmt.Errorf("reclaim item %d: %w", p.ItemID, err)
	}
	if won == 0 {
		return 0, ErrPurchaseInProgress
	}
	marks, err := s.fence(ctx, p, home, orderID, epoch)
	if err != nil {
		return 0, fmt.Errorf("fence item %d: %w", p.ItemID, err)
	}
	for _, c := range marks {
		if m, _ := c.Text(); strings.HasPrefix(m, markTook) {
			err := finishScript.Run(ctx, s.rdb, []string{hk.Bought(), hk.Token(p.Token), s.claimsKey(hg)},
				p.UserID, orderID, codeOK, "0", s.ttlSeconds(), epoch, member).Err()
			if err != nil {
				return 0, fmt.Errorf("finish item %d: %w", p.ItemID, err)
			}
			return orderID, nil
		}
	}
	return s.fallThrough(ctx, p, home, orderID, epoch, gen)
}

// fence runs fence.lua on every shard but home in one round trip, loading
// the script first if Redis does not have it (as run does).
func (s *Store) fence(ctx context.Context, p Purchase, home int, orderID, epoch int64) ([]*redis.Cmd, error) {
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		marks := make([]*redis.Cmd, 0, p.Shards-1)
		for i := 1; i < p.Shards; i++ {
			marks = append(marks, fenceScript.EvalSha(ctx, pipe,
				[]string{s.keys(p.ItemID, (home+i)%p.Shards, p.Shards).Took(orderID)}, epoch, s.ttlSeconds()))
		}
		_, err := pipe.Exec(ctx)
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
			if lerr := fenceScript.Load(ctx, s.rdb).Err(); lerr != nil {
				return nil, lerr
			}
			continue
		}
		return marks, err
	}
}

// fallThrough takes the unit from another shard when the home shard is empty.
// The user's slot is already claimed on the home shard, so the per-user
// limit holds whichever shard serves them. Every take is fenced with the
// claim's epoch: run again for the same epoch it is a no-op, and once a
// replay took the claim over it takes nothing (ErrPurchaseInProgress: the
// buyer's retry gets the replay's answer).
func (s *Store) fallThrough(ctx context.Context, p Purchase, home int, orderID, epoch int64, gen uint64) (int64, error) {
	now := time.Now().UnixMilli()
	ttl := s.ttlSeconds()
	code := int64(codeSoldOut)
	for i := 1; i < p.Shards && code != codeOK; i++ {
		sh := (home + i) % p.Shards
		sg := ShardGroup(p.ItemID, sh, p.Shards)
		k := s.keysIn(sg, p.ItemID, sh)
		c, err := takeScript.Run(ctx, s.rdb, []string{k.Stock(), k.Outbox(), k.Took(orderID), s.activeKey(sg)},
			p.UserID, p.ItemID, orderID, now, sh, home, ttl, epoch, outboxMember(p.ItemID, sh)).Int64()
		if err != nil {
			// The claim stays: a replay or the sweeper settles it.
			return 0, fmt.Errorf("take item %d shard %d: %w", p.ItemID, sh, err)
		}
		switch c {
		case codeOK:
			code = c
			s.noteTouched(Outbox{ItemID: p.ItemID, Shard: sh, SlotGroup: sg})
		case codeSoldOut:
			code = c
		case codeNotReady:
			// A shard without a key cannot be told from an empty one safely;
			// refuse rather than answer sold out.
			return 0, ErrNotReady
		case codeFenced:
			return 0, ErrPurchaseInProgress
		default:
			return 0, codeErr(c)
		}
	}
	hg := ShardGroup(p.ItemID, home, p.Shards)
	hk := s.keysIn(hg, p.ItemID, home)
	release := "0"
	if code != codeOK {
		release = "1"
	}
	settled, err := finishScript.Run(ctx, s.rdb, []string{hk.Bought(), hk.Token(p.Token), s.claimsKey(hg)},
		p.UserID, orderID, code, release, ttl, epoch, claimMember(p.ItemID, home, p.Token)).Int()
	if err != nil {
		if code == codeOK {
			// The unit is taken and in an outbox: the order will exist.
			return orderID, nil
		}
		return 0, fmt.Errorf("finish item %d: %w", p.ItemID, err)
	}
	if settled == 0 {
		// A replay took the claim over meanwhile; its answer is the one.
		return 0, ErrPurchaseInProgress
	}
	if code != codeOK {
		s.markSoldOut(p.ItemID, gen)
		return 0, ErrSoldOut
	}
	return orderID, nil
}

// Return gives the unit of a cancelled order back to the shard it came from
// and frees the buyer's slot on their home shard. Each half happens at most
// once per order id, so any number of calls, from any number of instances,
// return the unit once. It reports whether this call returned the unit.
func (s *Store) Return(ctx context.Context, itemID, userID, orderID int64, shard, shards int) (bool, error) {
	k := s.keys(itemID, shard, shards)
	back, err := restockScript.Run(ctx, s.rdb, []string{k.Stock(), k.Returned()}, orderID).Int64()
	if err != nil {
		return false, fmt.Errorf("restock order %d: %w", orderID, err)
	}
	if back == codeNotReady {
		// Never recreate a lost shard key with a lone unit: the item is
		// rebuilt from MySQL, which counts this order as cancelled.
		return false, fmt.Errorf("restock order %d: %w", orderID, ErrNotReady)
	}
	hk := s.keys(itemID, HomeShard(userID, shards), shards)
	if err := freeScript.Run(ctx, s.rdb, []string{hk.Bought(), hk.Freed()}, userID, orderID).Err(); err != nil {
		return back == 1, fmt.Errorf("free slot of order %d: %w", orderID, err)
	}
	return back == 1, nil
}

// FreeSlot frees the buyer's per-user slot of an order that will never
// exist (its reservation was refused downstream), once per order id.
func (s *Store) FreeSlot(ctx context.Context, itemID, userID, orderID int64, shards int) error {
	hk := s.keys(itemID, HomeShard(userID, shards), shards)
	if err := freeScript.Run(ctx, s.rdb, []string{hk.Bought(), hk.Freed()}, userID, orderID).Err(); err != nil {
		return fmt.Errorf("free slot of order %d: %w", orderID, err)
	}
	return nil
}
