// Package lifecycle is what happens to orders after they exist: the sweeper
// expires unpaid ones and returns their units (and settles abandoned
// fall-through claims and dead letters), the ledger reconciles Redis, the
// outbox and MySQL and rebuilds an item's Redis stock, and the journal
// remembers an instance's accepted purchases for when Redis loses them.
// Leader jobs run under bsm/redislock leases.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"seckill/order"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/stock"
)

// sweeperLease names the lease of the sweeper. Rebuild takes it too, so no
// unit comes back into an item while its stock is being rebuilt.
const sweeperLease = "sweeper"

// maxSweepRounds bounds the batches of one Sweep, so a pass ends and the
// lease is given up now and then even under a flood of expiries.
const maxSweepRounds = 100

// SweeperConfig tunes a Sweeper. Zero fields take their defaults.
type SweeperConfig struct {
	// Interval is the pause between passes (default 1s).
	Interval time.Duration
	// Batch is the most orders one store call handles (default 500).
	Batch int
	// LeaseTTL is how long the lease outlives a silent holder (default 10s).
	LeaseTTL time.Duration
	// Now is the clock that decides expiry (default time.Now).
	Now func() time.Time
	// ClaimsEvery is how often a pass looks for abandoned fall-through
	// claims (default 10s): a claim is abandoned only after the claim
	// timeout (30s), and the look reads every slot group's claims index.
	ClaimsEvery time.Duration
}

// Swept counts what one Sweep did.
type Swept struct {
	// Cancelled is the number of expired orders this pass cancelled.
	Cancelled int
	// Recovered is the number of orders cancelled earlier whose unit was
	// not marked returned yet (a sweeper stopped between the two steps).
	Recovered int
	// Returned is the number of units this pass put back into Redis.
	Returned int
}

// Sweeper cancels pending orders whose payment window closed and returns
// their units to the Redis shard they came from, freeing the buyer's slot.
type Sweeper struct {
	stock  *stock.Store
	orders *order.Store
	cfg    SweeperConfig
	log    *slog.Logger

	cancelled prometheus.Counter
	returned  prometheus.Counter

	mu     sync.Mutex
	shards map[int64]int // item id -> shard count; fixed once an item exists

	claimsAt atomic.Int64 // unix ns of the last look for abandoned claims
}

// NewSweeper returns a Sweeper and registers its metrics on reg (nil: none).
// Sweepers sharing a registry share their counters.
func NewSweeper(st *stock.Store, orders *order.Store, cfg SweeperConfig, reg prometheus.Registerer, log *slog.Logger) (*Sweeper, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClaimsEvery <= 0 {
		cfg.ClaimsEvery = 10 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	cancelled, err := registerShared(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "seckill_sweeper_cancelled_total",
		Help: "Pending orders cancelled by the sweeper because their payment window closed.",
	}))
	if err != nil {
		return nil, fmt.Errorf("new sweeper: %w", err)
	}
	returned, err := registerShared(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "seckill_stock_returned_total",
		Help: "Units of cancelled orders put back into Redis stock (each order at most once).",
	}))
	if err != nil {
		return nil, fmt.Errorf("new sweeper: %w", err)
	}
	return &Sweeper{
		stock: st, orders: orders, cfg: cfg, log: log,
		cancelled: cancelled, returned: returned,
		shards: map[int64]int{},
	}, nil
}

// Run sweeps every Interval until ctx is done, then returns nil. Each pass
// runs under the sweeper lease, so only one instance sweeps at a time; the
// lease is taken per pass (not kept), so Rebuild can take it between passes.
func (s *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// tick runs one Sweep if this instance gets the lease.
func (s *Sweeper) tick(ctx context.Context) {
	lock, err := s.stock.Lease(ctx, sweeperLease, s.cfg.LeaseTTL, 0)
	switch {
	case errors.Is(err, stock.ErrLeaseHeld):
		return // another instance sweeps
	case err != nil:
		if ctx.Err() == nil {
			s.log.Error("sweeper: take lease", "err", err)
		}
		return
	}
	holdLease(ctx, lock, s.cfg.LeaseTTL, s.log, func(ctx context.Context) {
		res, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("sweeper: sweep", "err", err)
		}
		if res.Cancelled+res.Recovered > 0 {
			s.log.Info("sweeper: swept", "cancelled", res.Cancelled, "recovered", res.Recovered, "returned", res.Returned)
		}
	})
}

// Sweep runs one pass without the lease: first it finishes orders cancelled
// earlier but not yet returned (a crash between the steps), then cancels
// expired pending orders and returns their units.
//
// Any number of passes may run at once, on any instances, and a pass may
// lose the lease halfway: CancelExpired is a conditional update per order,
// so only one caller cancels a given order, and order.Store.Return is idempotent
// per order id, so a unit comes back once however often it is returned. The
// lease only saves duplicate work and lets Rebuild pause returns.
func (s *Sweeper) Sweep(ctx context.Context) (Swept, error) {
	var res Swept
	var errs []error
	// Commit order: cancel in MySQL, then return in Redis, then mark in
	// MySQL. A crash after the cancel leaves an unreturned order that the
	// next pass finds here; a crash after the return makes the next Return
	// a no-op, and the order is only marked then. An order or item that
	// fails is left for a later pass and never stops the others: every
	// step below runs whatever the one before it met.
	for range maxSweepRounds {
		orders, err := s.orders.Unreturned(ctx, s.cfg.Batch)
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep: %w", err))
			break
		}
		n, done, err := s.giveBack(ctx, orders)
		res.Recovered += done
		res.Returned += n
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep: recover: %w", err))
		}
		if len(orders) < s.cfg.Batch || done == 0 {
			break
		}
	}
	for range maxSweepRounds {
		orders, err := s.orders.CancelExpired(ctx, s.cfg.Now(), s.cfg.Batch)
		res.Cancelled += len(orders)
		s.cancelled.Add(float64(len(orders)))
		// Orders cancelled before an error are returned too: their units
		// go back now rather than on the next pass.
		n, _, rerr := s.giveBack(ctx, orders)
		res.Returned += n
		if rerr != nil {
			errs = append(errs, fmt.Errorf("sweep: %w", rerr))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep: %w", err))
			break
		}
		// Not "fewer than a batch": a concurrent payment or sweeper can
		// win some of a full batch of candidates while more are waiting.
		if len(orders) == 0 {
			break
		}
	}
	if err := s.freeDeadLetters(ctx); err != nil {
		errs = append(errs, fmt.Errorf("sweep: %w", err))
	}
	if last := s.claimsAt.Load(); time.Since(time.Unix(0, last)) >= s.cfg.ClaimsEvery &&
		s.claimsAt.CompareAndSwap(last, time.Now().UnixNano()) {
		if err := s.settleClaims(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sweep: %w", err))
		}
	}
	return res, errors.Join(errs...)
}

// freeDeadLetters frees the per-user slot of every refused order: the order
// does not exist, so it must not count against its buyer. (Its unit is not
// put back: the guard refused it because MySQL's stock was already full,
// so Redis had handed out a unit too many.)
func (s *Sweeper) freeDeadLetters(ctx context.Context) error {
	dls, err := s.orders.UnfreedDeadLetters(ctx, s.cfg.Batch)
	if err != nil || len(dls) == 0 {
		return err
	}
	var freed []int64
	var errs []error
	for _, d := range dls {
		if d.ItemID == nil || d.UserID == nil || d.OrderID == nil {
			continue
		}
		shards, err := s.itemShards(ctx, *d.ItemID)
		if err == nil {
			err = s.stock.FreeSlot(ctx, *d.ItemID, *d.UserID, *d.OrderID, shards)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		freed = append(freed, d.ID)
	}
	if err := s.orders.MarkSlotsFreed(ctx, freed...); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// settleClaims settles fall-through claims whose process died or stalls
// and whose buyer did not come back to replay: their slot is released (or
// their order completed) without waiting for the buyer.
func (s *Sweeper) settleClaims(ctx context.Context) error {
	claims, err := s.stock.StaleClaims(ctx, int64(s.cfg.Batch))
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range claims {
		shards, err := s.itemShards(ctx, c.ItemID)
		if err == nil {
			_, err = s.stock.SettleClaim(ctx, c, shards)
		}
		switch {
		case err == nil, errors.Is(err, stock.ErrSoldOut), errors.Is(err, stock.ErrPurchaseInProgress):
			// Settled (with a unit or sold out), or someone else is at it.
		default:
			errs = append(errs, fmt.Errorf("settle claim of order %d: %w", c.OrderID, err))
		}
	}
	return errors.Join(errs...)
}

// GiveBack returns the units of orders cancelled outside a pass (a buyer's
// cancel, a late payment that found its order expired) at once, by the
// pass's own path: restock.lua's per-order guard puts a unit back once
// however many callers return it, and the buyer's slot is freed as for an
// expiry. It needs no lease, as Sweep does not: a rebuild drops the item's
// shard keys while it counts, so a return meanwhile fails (ErrNotReady)
// and is settled by the rebuild or the next pass (Unreturned). An order
// that fails here is left to the next pass the same way.
func (s *Sweeper) GiveBack(ctx context.Context, orders ...order.Order) (returned int, err error) {
	returned, _, err = s.giveBack(ctx, orders)
	return returned, err
}

// giveBack returns the units of cancelled orders to Redis, marks them
// returned in MySQL, and tells every instance about the items that got
// units back. It reports the units this call put back and the orders it
// marked. An order that fails (its item's shard missing, say) is left for
// a later pass; the others go on, and every error is returned.
func (s *Sweeper) giveBack(ctx context.Context, orders []order.Order) (returned, marked int, err error) {
	if len(orders) == 0 {
		return 0, 0, nil
	}
	var ids []int64
	var errs []error
	restocked := map[int64]bool{}
	for _, o := range orders {
		shards, serr := s.itemShards(ctx, o.ItemID)
		if serr != nil {
			errs = append(errs, serr)
			continue
		}
		back, rerr := s.stock.Return(ctx, o.ItemID, o.UserID, o.ID, o.Shard, shards)
		if back {
			// Counted and announced even if freeing the buyer's slot then
			// failed: the unit is back and sells again.
			returned++
			restocked[o.ItemID] = true
		}
		if rerr != nil {
			errs = append(errs, rerr)
			continue
		}
		// Marked whether or not this call put the unit back: false means
		// an earlier call did.
		ids = append(ids, o.ID)
	}
	s.returned.Add(float64(returned))
	for item := range restocked {
		// Clear here at once; the others hear it through WatchRestock. A
		// lost notification only delays sales until their next resync.
		s.stock.ClearSoldOut(item)
		if perr := s.stock.PublishRestock(ctx, item); perr != nil {
			s.log.Warn("sweeper: publish restock", "item", item, "err", perr)
		}
	}
	if merr := s.orders.MarkReturned(ctx, ids...); merr != nil {
		return returned, 0, errors.Join(append(errs, merr)...)
	}
	return returned, len(ids), errors.Join(errs...)
}

// itemShards is the shard count of an item, read once from MySQL.
func (s *Sweeper) itemShards(ctx context.Context, itemID int64) (int, error) {
	s.mu.Lock()
	n, ok := s.shards[itemID]
	s.mu.Unlock()
	if ok {
		return n, nil
	}
	it, err := s.orders.Item(ctx, itemID)
	if err != nil {
		return 0, fmt.Errorf("shards of item %d: %w", itemID, err)
	}
	s.mu.Lock()
	s.shards[itemID] = it.Shards
	s.mu.Unlock()
	return it.Shards, nil
}

// holdLease runs fn while lock is held, refreshing the lease every ttl/3,
// then releases it. fn's ctx is cancelled as soon as the lease is lost, or
// could not be refreshed for most of a ttl (it may be gone without us
// knowing). Work cut short this way is safe to redo: every step under a
// lease here is conditional or idempotent per order.
func holdLease(ctx context.Context, lock *redislock.Lock, ttl time.Duration, log *slog.Logger, fn func(ctx context.Context)) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		every := max(ttl/3, time.Millisecond)
		t := time.NewTicker(every)
		defer t.Stop()
		held := time.Now()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			err := lock.Refresh(lctx, ttl, nil)
			switch {
			case err == nil:
				held = time.Now()
			case lctx.Err() != nil:
				return
			case errors.Is(err, redislock.ErrNotObtained):
				log.Warn("lease lost", "lease", lock.Key())
				cancel()
				return
			case time.Since(held)+every >= ttl:
				log.Warn("lease not refreshed in time, giving it up", "lease", lock.Key(), "err", err)
				cancel()
				return
			}
		}
	}()
	fn(lctx)
	cancel()
	<-refreshed
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer rcancel()
	if err := lock.Release(rctx); err != nil && !errors.Is(err, redislock.ErrLockNotHeld) {
		log.Warn("release lease", "lease", lock.Key(), "err", err)
	}
}

// registerShared registers c on reg, or returns the collector registered
// already under the same name (two sweepers on one registry share counters).
func registerShared[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}
