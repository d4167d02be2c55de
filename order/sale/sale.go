// Package sale holds the flash sale's rules over the stores: a purchase
// (order id, the reservation, the journal, the memory of answers), finding
// an order at every moment between its 202 and its row in MySQL, paying it,
// creating an item, and what to do when Redis lost data (recovery.go). Its
// outcomes are a closed set of kinds (errors.go); the transport renders
// them and knows nothing of the stores' own errors.
package sale

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"seckill/limiter"
	"seckill/order"
	"seckill/order/lifecycle"
	"seckill/order/token"
	"seckill/stock"
)

// IDs makes order ids; an error means no id can be made safely now (the
// sale answers it as ErrNoOrderID).
type IDs interface {
	// NextID makes an id for the slot group g (stock.HomeGroup of the
	// purchase): stock.OrderGroup of the id is g.
	NextID(g int) (int64, error)
}

// LedgerStats is the reconciliation of one item.
type LedgerStats = lifecycle.LedgerStats

// Ledger is the reconciler as the sale's admin side uses it.
type Ledger interface {
	Stats(ctx context.Context, it order.Item) (LedgerStats, error)
	Rebuild(ctx context.Context, it order.Item) error
}

// Config is what the sale works over, built by app.
type Config struct {
	Stock   *stock.Store
	Orders  *order.Store
	Limiter *limiter.Limiter
	IDs     IDs
	// Ledger gives the reconciliation numbers of an item and rebuilds its
	// Redis stock; nil disables both.
	Ledger Ledger
	// Journal, if set, remembers accepted purchases so that ones Redis
	// lost with its data are put back or counted.
	Journal *lifecycle.Journal
	// Tokens signs and verifies purchase tokens (package order/token);
	// when nil, a random key of this process's own (tokens then work on
	// this instance only: tests and single-process tools).
	Tokens *token.Keys
	// TokenTTL is how long a purchase token can be used a first time;
	// DefaultTokenTTL when 0. The stock's ResultTTL must be longer.
	TokenTTL time.Duration
	// Returns gives the unit of an order cancelled by its buyer (or by a
	// late payment) back at once; nil leaves it to the sweeper's next pass.
	Returns Returns
	// Log records what a caller is not told (a unit whose return is left
	// to the sweeper) and the operator's changes (admin.go); slog.Default
	// when nil.
	Log *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// PageRefresh is how often an item's remaining count is read again
	// for its product page (ItemState); DefaultPageRefresh when 0.
	PageRefresh time.Duration
	// OrderReadBudget bounds the MySQL read of an order's status (Order):
	// past it the order is answered as Redis knows it (stale) instead of
	// waiting for the driver's read timeout while MySQL does not answer;
	// DefaultOrderReadBudget when 0.
	OrderReadBudget time.Duration
	// ItemRefresh is how old a held item definition may get before it is
	// read again (cache.go), and so how long before its start an item's
	// window and limit stop being editable; DefaultItemRefresh when 0.
	ItemRefresh time.Duration
}

// DefaultTokenTTL is Config.TokenTTL's default.
const DefaultTokenTTL = 10 * time.Minute

// DefaultOrderReadBudget is Config.OrderReadBudget's default: a point read
// of an order takes a millisecond; one that takes a second is a MySQL that
// does not answer.
const DefaultOrderReadBudget = time.Second

// Sale runs the sale's rules.
type Sale struct {
	cfg   Config
	now   func() time.Time
	items *itemCache
	// counts are the items' remaining counts a product page shows (page.go).
	counts *pageCounts
	// answers remembers the final answers of purchase keys, so a retried
	// key gets its answer again without Redis (bounded; a forgotten one
	// costs one Redis call, which reads the answer Redis keeps).
	answers *Recent[acceptedKey, answer]
	// evicting is set while Redis may evict keys (eviction.go): purchases
	// and token issues are refused.
	evicting atomic.Pointer[evictState]
}

// New makes the sale over cfg's stores.
func New(cfg Config) *Sale {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.Tokens == nil {
		cfg.Tokens = processKeys()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ItemRefresh <= 0 {
		cfg.ItemRefresh = DefaultItemRefresh
	}
	return &Sale{cfg: cfg, now: cfg.Now, items: newItemCache(cfg.Orders, cfg.Now, cfg.ItemRefresh),
		counts: newPageCounts(cfg.PageRefresh), answers: NewRecent[acceptedKey, answer](answerMemory)}
}

// answerMemory is the generation size of the memory of answers: it holds
// from 256k to 512k keys, under 60 MB of heap (BenchmarkCrowdMemory), however
// many buyers a sale has; an answer older than that costs a retry one Redis
// call.
const answerMemory = 1 << 18

// Item is the item id names, from memory once read.
func (s *Sale) Item(ctx context.Context, id int64) (order.Item, error) {
	it, err := s.items.get(ctx, id)
	return it, outcome(err)
}

// ItemState is an item with its stock.
type ItemState struct {
	order.Item
	// Remaining is the units left in Redis, as last read (ItemState: at
	// most Config.PageRefresh ago unless Stale).
	Remaining int64
	// SoldOut: no unit left (Remaining is 0).
	SoldOut bool
	// Stale: Redis could not be read; Remaining is the last count read.
	Stale bool
}

// stateOf is it with total units left.
func stateOf(it order.Item, total int64) ItemState {
	return ItemState{Item: it, Remaining: total, SoldOut: total == 0}
}

// remaining sums the item's shards; a shard Redis lost (-1) counts as 0 and
// is reported in missing.
func remaining(shards []int64) (total int64, missing bool) {
	for _, n := range shards {
		total += max(n, 0)
		missing = missing || n < 0
	}
	return total, missing
}

// CreateItem stores a new item (its fields checked by the caller), MySQL
// first: an item warmed in Redis but absent from MySQL could sell units no
// consumer can store. A failed warm leaves shard keys missing, which
// purchases answer with ErrNotReady until a rebuild warms them.
func (s *Sale) CreateItem(ctx context.Context, it order.Item) (ItemState, error) {
	it, err := s.cfg.Orders.CreateItem(ctx, it)
	if err != nil {
		return ItemState{}, outcome(err)
	}
	if err := s.cfg.Stock.Warm(ctx, it.ID, it.Stock, it.Shards); err != nil {
		return ItemState{}, outcome(err)
	}
	s.items.put(it)
	s.counts.known(it.ID, it.Stock, s.now())
	return stateOf(it, it.Stock), nil
}

// Token is a purchase token and until when it can be used.
type Token struct {
	Token     string
	ExpiresAt time.Time
}

// processKeys is a signing key of this process's own, random.
func processKeys() *token.Keys {
	secret := make([]byte, 32)
	rand.Read(secret)
	k, err := token.NewKeys(token.Key{ID: 1, Secret: secret})
	if err != nil {
		panic(err) // a 32-byte secret with one id is always accepted
	}
	return k
}

// IssueToken makes a purchase token of user for item id: signed in
// process, nothing stored (Redis learns of a token when it is first used).
// It passes the limiter's rate buckets (the per-user and the global one;
// not the in-flight semaphore, which bounds work waiting on Redis), and an
// item this instance knows sold out (the product page's count, read from
// Redis at most once per Config.PageRefresh) gets no token: it could only
// be answered sold out. A count this instance cannot read does not stop
// the issue: the purchase is where Redis must answer.
func (s *Sale) IssueToken(ctx context.Context, id, user int64) (Token, error) {
	it, err := s.Item(ctx, id)
	if err != nil {
		return Token{}, err
	}
	if it.EndsAt != nil && !s.now().Before(*it.EndsAt) {
		return Token{}, ErrEnded
	}
	if it.Paused {
		return Token{}, ErrPaused
	}
	if st, err := s.itemState(ctx, it); err == nil && st.SoldOut {
		return Token{}, ErrSoldOut
	}
	if s.refusedForEviction() {
		return Token{}, ErrRedisEvicts
	}
	// The rate buckets only: signing holds nothing an in-flight slot
	// would bound.
	if err := s.cfg.Limiter.Admit(ctx, user); err != nil {
		return Token{}, outcome(err)
	}
	tok, c, err := s.cfg.Tokens.Issue(it.ID, user, s.now().Add(s.cfg.TokenTTL))
	if err != nil {
		return Token{}, err
	}
	return Token{Token: tok, ExpiresAt: c.ExpiresAt()}, nil
}

// Stats is what an operator sees of an item.
type Stats struct {
	ItemID    int64
	Stock     int64
	Remaining int64
	Reserved  int64
	Shards    []int64
	// PriceMinor and Currency are the item's price (its orders' amounts).
	PriceMinor int64
	Currency   string
	// Ledger is the reconciliation; nil without a ledger.
	Ledger *LedgerStats
}

// Stats reads the item's stock shards and, with a ledger, reconciles it.
func (s *Sale) Stats(ctx context.Context, id int64) (Stats, error) {
	it, err := s.Item(ctx, id)
	if err != nil {
		return Stats{}, err
	}
	return s.stats(ctx, it)
}

func (s *Sale) stats(ctx context.Context, it order.Item) (Stats, error) {
	rem, err := s.cfg.Stock.Remaining(ctx, it.ID, it.Shards)
	if err != nil {
		return Stats{}, outcome(err)
	}
	v := Stats{ItemID: it.ID, Stock: it.Stock, Shards: rem, PriceMinor: it.PriceMinor, Currency: it.Currency}
	var missing bool
	v.Remaining, missing = remaining(rem)
	if !missing {
		s.counts.known(it.ID, v.Remaining, s.now())
	}
	v.Reserved = it.Stock - v.Remaining
	if s.cfg.Ledger != nil {
		l, err := s.cfg.Ledger.Stats(ctx, it)
		if err != nil {
			return Stats{}, outcome(err)
		}
		v.Ledger = &l
	}
	return v, nil
}

// errNoLedger: rebuilding needs the reconciler.
var errNoLedger = errors.New("rebuild: no reconciler configured")

// Rebuild rebuilds the item's Redis stock from MySQL, then reads its stats.
func (s *Sale) Rebuild(ctx context.Context, id int64) (Stats, error) {
	it, err := s.Item(ctx, id)
	if err != nil {
		return Stats{}, err
	}
	if s.cfg.Ledger == nil {
		return Stats{}, errNoLedger
	}
	if err := s.cfg.Ledger.Rebuild(ctx, it); err != nil {
		return Stats{}, outcome(err)
	}
	return s.stats(ctx, it)
}
