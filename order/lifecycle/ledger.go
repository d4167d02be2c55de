package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"seckill/order"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/stock"
)

// ledgerLease names the lease of the reconciler; distinct from the
// sweeper's, so the two jobs may run on different instances.
const ledgerLease = "ledger"

// rebuildBatch is how many unreturned orders Rebuild settles per round.
const rebuildBatch = 1000

// ErrNotSettled: Rebuild gave up because orders kept moving between Redis,
// Kafka and MySQL for its whole wait. The item's sales stay stopped (its
// shard keys absent: purchases answer 503); run Rebuild again later.
var ErrNotSettled = errors.New("order pipeline did not settle")

// LedgerConfig tunes a Ledger. Zero fields take their defaults.
type LedgerConfig struct {
	// LeaseTTL is how long a lease outlives a silent holder (default 10s).
	LeaseTTL time.Duration
	// RebuildWait bounds how long Rebuild waits for the sweeper lease and
	// for the pipeline to settle (default 30s).
	RebuildWait time.Duration
	// RebuildSettle is how long the outbox and the active order count must
	// stay unchanged before Rebuild trusts them (default 2s).
	RebuildSettle time.Duration
	// RebuildPoll is the pause between two looks at them (default 100ms).
	RebuildPoll time.Duration
	// CountRowsPerPass is what counting a live item's orders may cost the
	// reconciler's passes, on average, in orders read per pass (default
	// 10,000): an item of n orders is counted every 1 + n/CountRowsPerPass
	// passes, and balanced from its sold counter and unreturned orders in
	// the passes between.
	CountRowsPerPass int64
	// CaughtUp reports whether the order writer has consumed everything
	// Kafka holds. Reservations in Kafka are in neither the outbox nor
	// MySQL, so Rebuild trusts its counts only once it says yes; nil skips
	// the check (tests without Kafka).
	CaughtUp func(ctx context.Context) (bool, error)
	// Restored reports whether every live instance has put back the
	// purchases it accepted before the loss seen at cutoff (stock.Restore).
	// RebuildAll waits for it, up to RebuildWait, before it counts; nil
	// skips the wait.
	Restored func(ctx context.Context, cutoff time.Time) (bool, error)
}

// LedgerStats is one reconciliation of an item. The accounting identity is
//
//	stock = remaining + outbox + in_flight + active + unreturned
//
// where in_flight are reservations that left the outbox and are not in MySQL
// yet (in Kafka). It cannot be measured, so Drift is the rest of the
// identity: it equals in_flight while orders travel and must be 0 when the
// pipeline is idle.
type LedgerStats struct {
	// Stock is the item's stock (MySQL).
	Stock int64 `json:"stock"`
	// Remaining is the sum of the shards' counts in Redis; Shards has each
	// one, -1 where the key is missing.
	Remaining int64   `json:"remaining"`
	Shards    []int64 `json:"shards"`
	// Missing counts the shards whose key is missing (a shard oversold to
	// -1 shows as -1 in Shards too; this tells them apart). Exported as a
	// gauge, not in the stats answer, which has Shards.
	Missing int `json:"-"`
	// Outbox counts reservations still in the Redis outboxes.
	Outbox int64 `json:"outbox"`
	// Pending, Paid, Cancelled count orders in MySQL; Returned counts the
	// cancelled ones whose unit is back in Redis, Unreturned the others.
	Pending    int64 `json:"pending"`
	Paid       int64 `json:"paid"`
	Cancelled  int64 `json:"cancelled"`
	Returned   int64 `json:"returned"`
	Unreturned int64 `json:"unreturned"`
	// RefundRequired counts the cancelled orders paid late (their money
	// must go back); RevenueMinor sums the paid orders' amounts in the
	// item's currency.
	RefundRequired int64 `json:"refund_required"`
	RevenueMinor   int64 `json:"revenue_minor"`
	// Active is Pending + Paid.
	Active int64 `json:"active"`
	// InFlight is the estimate of reservations in Kafka: Drift when positive.
	InFlight int64 `json:"in_flight"`
	// Drift is stock - remaining - outbox - active - unreturned.
	Drift int64 `json:"drift"`
	// Oversold is how far orders passed the stock: active - stock in MySQL,
	// or the units below zero on any Redis shard, whichever is larger.
	Oversold int64 `json:"oversold"`
}

// Ledger reconciles Redis, the outbox and MySQL, exports the drift and
// oversell gauges, and rebuilds an item's Redis stock from MySQL.
type Ledger struct {
	stock  *stock.Store
	orders *order.Store
	cfg    LedgerConfig
	log    *slog.Logger

	drift     *prometheus.GaugeVec
	oversold  *prometheus.GaugeVec
	remaining *prometheus.GaugeVec
	missing   *prometheus.GaugeVec
	// paused is the number of paused items (no labels: a vec so that
	// forget can drop it when the lease goes).
	paused *prometheus.GaugeVec

	mu   sync.Mutex
	last map[int64]LedgerStats // previous reconciliation per item
	// items are the items known (read incrementally), maxItem the highest
	// id read, cursor the round robin over settled items.
	items   map[int64]order.Item
	maxItem int64
	cursor  int
	// pass numbers reconcileAll's passes; counted is, per item, the pass
	// of the last count of its orders and how many it counted.
	pass    int64
	counted map[int64]countMark
}

// countMark is when an item's orders were last counted, and how many.
type countMark struct {
	pass, orders int64
}

// NewLedger returns a Ledger and registers its gauges on reg (nil: none).
// At most one cfg is used; without one the defaults apply.
func NewLedger(st *stock.Store, orders *order.Store, reg prometheus.Registerer, log *slog.Logger, cfg ...LedgerConfig) (*Ledger, error) {
	var c LedgerConfig
	if len(cfg) > 0 {
		c = cfg[0]
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.CountRowsPerPass <= 0 {
		c.CountRowsPerPass = 10_000
	}
	if c.RebuildWait <= 0 {
		c.RebuildWait = 30 * time.Second
	}
	if c.RebuildSettle <= 0 {
		c.RebuildSettle = 2 * time.Second
	}
	if c.RebuildPoll <= 0 {
		c.RebuildPoll = 100 * time.Millisecond
	}
	if log == nil {
		log = slog.Default()
	}
	l := &Ledger{stock: st, orders: orders, cfg: c, log: log, last: map[int64]LedgerStats{}, items: map[int64]order.Item{},
		counted: map[int64]countMark{}}
	var err error
	if l.drift, err = registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "seckill_stock_drift",
		Help: "Units missing (+) or counted twice (-) between Redis, the outbox and MySQL; exported once it stays unchanged with no order moving.",
	}, []string{"item"})); err != nil {
		return nil, fmt.Errorf("new ledger: %w", err)
	}
	if l.oversold, err = registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "seckill_oversold",
		Help: "Units sold beyond the stock (MySQL active orders over stock, or Redis shards below zero).",
	}, []string{"item"})); err != nil {
		return nil, fmt.Errorf("new ledger: %w", err)
	}
	// Per item, not per shard: an item may have 1024 shards, and the
	// series stay bounded by the items in play (the admin stats endpoint
	// has each shard).
	if l.remaining, err = registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "seckill_stock_remaining",
		Help: "Units left in an item's Redis stock shards, summed over the shards present.",
	}, []string{"item"})); err != nil {
		return nil, fmt.Errorf("new ledger: %w", err)
	}
	if l.missing, err = registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "seckill_stock_shards_missing",
		Help: "An item's stock shards whose Redis key is missing (purchases on them answer 503 until a rebuild).",
	}, []string{"item"})); err != nil {
		return nil, fmt.Errorf("new ledger: %w", err)
	}
	if l.paused, err = registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "seckill_items_paused",
		Help: "Items whose sale an operator paused (purchases and token issues answer 409 sale_paused).",
	}, nil)); err != nil {
		return nil, fmt.Errorf("new ledger: %w", err)
	}
	return l, nil
}

// Stats reconciles the item once.
func (l *Ledger) Stats(ctx context.Context, it order.Item) (LedgerStats, error) {
	return l.Reconcile(ctx, it)
}

// Reconcile reads the item's Redis side, then its MySQL side, and balances
// them. Redis is read first, in one transaction: a unit moves from Redis to
// MySQL (reserve -> outbox -> Kafka -> orders), so reading upstream first
// can count a unit twice for a moment (drift < 0) but never hides one behind
// a later read.
func (l *Ledger) Reconcile(ctx context.Context, it order.Item) (LedgerStats, error) {
	return l.reconcile(ctx, it, nil)
}

// reconcile is Reconcile, counting the item's orders if prev is nil; else
// its MySQL side is a Balance, and what only a count tells is prev's.
func (l *Ledger) reconcile(ctx context.Context, it order.Item, prev *LedgerStats) (LedgerStats, error) {
	snap, err := l.stock.Snapshot(ctx, it.ID, it.Shards)
	if err != nil {
		return LedgerStats{}, fmt.Errorf("reconcile item %d: %w", it.ID, err)
	}
	var s LedgerStats
	if prev == nil {
		c, err := l.orders.Counts(ctx, it.ID)
		if err != nil {
			return LedgerStats{}, fmt.Errorf("reconcile item %d: %w", it.ID, err)
		}
		s = LedgerStats{Stock: c.Stock, Pending: c.Pending, Paid: c.Paid, Cancelled: c.Cancelled, Returned: c.Returned,
			Unreturned: c.Cancelled - c.Returned, Active: c.Pending + c.Paid,
			RefundRequired: c.RefundRequired, RevenueMinor: c.Revenue}
	} else {
		b, err := l.orders.Balance(ctx, it.ID)
		if err != nil {
			return LedgerStats{}, fmt.Errorf("reconcile item %d: %w", it.ID, err)
		}
		s = *prev
		s.Stock, s.Active, s.Unreturned = b.Stock, b.Sold, b.Unreturned
		s.Pending = max(s.Active-s.Paid, 0)
	}
	s.Remaining, s.Shards, s.Missing, s.Outbox = snap.Remaining, snap.Shards, len(snap.Shards)-snap.Present, snap.Outbox
	s.Drift = s.Stock - s.Remaining - s.Outbox - s.Active - s.Unreturned
	s.InFlight = max(s.Drift, 0)
	s.Oversold = max(s.Active-s.Stock, snap.Below, 0)
	return s, nil
}

// Run reconciles every item each interval and exports the gauges, until ctx
// is done; then it returns nil. Only the instance holding the ledger lease
// computes and exports; it keeps the lease while it lives, and drops its
// series when it loses it, so a stale value never lingers.
func (l *Ledger) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	for {
		lock, err := l.stock.Lease(ctx, ledgerLease, l.cfg.LeaseTTL, 0)
		switch {
		case err == nil:
			holdLease(ctx, lock, l.cfg.LeaseTTL, l.log, func(ctx context.Context) {
				t := time.NewTicker(interval)
				defer t.Stop()
				for {
					l.reconcileAll(ctx)
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
				}
			})
			l.forget()
		case errors.Is(err, stock.ErrLeaseHeld):
			// Another instance reconciles.
		case ctx.Err() == nil:
			l.log.Error("ledger: take lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// reconcileAll reconciles and exports the items where something may
// move: new ones, those with reservations in their outboxes, pending or
// unreturned orders, drift, or a change since the last look. A settled item
// (nothing pending, nothing in flight, balanced) is left alone and its
// series are dropped; one settled item per pass is looked at again, round
// robin, so a change from outside is still seen: its shards and its sold
// counter first, and only if they moved its orders are counted again. Idle,
// a pass costs one indexed read of new items, one primary-key read and a
// few Redis reads, whatever the history (counting a settled item's orders
// every pass cost MariaDB a scan of all of them).
func (l *Ledger) reconcileAll(ctx context.Context) {
	if err := l.refreshItems(ctx); err != nil {
		if ctx.Err() == nil {
			l.log.Error("ledger: list items", "err", err)
		}
		return
	}
	// One indexed count (idx_items_paused), whatever the number of items.
	if n, err := l.orders.PausedItems(ctx); err == nil {
		l.paused.WithLabelValues().Set(float64(n))
	} else if ctx.Err() == nil {
		l.log.Error("ledger: count paused items", "err", err)
	}
	active := map[int64]bool{}
	if os, err := l.stock.ActiveOutboxes(ctx); err == nil {
		for _, o := range os {
			active[o.ItemID] = true
		}
	}
	l.mu.Lock()
	l.pass++
	var due []order.Item
	var settled []int64
	for id, it := range l.items {
		prev, seen := l.last[id]
		if !seen || active[id] || live(prev) {
			due = append(due, it)
		} else {
			settled = append(settled, id)
		}
	}
	var look *order.Item
	var prev LedgerStats
	if len(settled) > 0 {
		slices.Sort(settled)
		l.cursor = (l.cursor + 1) % len(settled)
		it := l.items[settled[l.cursor]]
		look, prev = &it, l.last[it.ID]
	}
	l.mu.Unlock()
	if look != nil {
		moved, err := l.moved(ctx, *look, prev)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				l.log.Error("ledger: look at settled item", "item", look.ID, "err", err)
			}
		case moved:
			due = append(due, *look)
		}
	}
	for _, it := range due {
		s, err := l.reconcileDue(ctx, it)
		if err != nil {
			if ctx.Err() == nil {
				l.log.Error("ledger: reconcile", "item", it.ID, "err", err)
			}
			continue
		}
		l.export(it.ID, s)
	}
}

// reconcileDue reconciles an item that is due in a pass. Its orders are
// counted (Reconcile) on first sight and then every 1 + n/CountRowsPerPass
// passes, n the orders of the last count; between counts, its books are
// balanced from a Balance: the sold counter and the unreturned orders,
// which change with every insert, cancellation and return. So a live item
// with a million orders pending payment costs a pass a few rows, not a
// million (counted every 5 s, 330k pending orders kept MariaDB at 5% of a
// core), and drift and oversell are as exact as a count would make them.
// What only a count tells (payments: paid, revenue, refunds) is as of the
// last count.
func (l *Ledger) reconcileDue(ctx context.Context, it order.Item) (LedgerStats, error) {
	l.mu.Lock()
	pass := l.pass
	mark, ok := l.counted[it.ID]
	prev := l.last[it.ID]
	l.mu.Unlock()
	if ok && pass-mark.pass < 1+mark.orders/l.cfg.CountRowsPerPass {
		return l.reconcile(ctx, it, &prev)
	}
	s, err := l.reconcile(ctx, it, nil)
	if err == nil {
		l.mu.Lock()
		l.counted[it.ID] = countMark{pass: pass, orders: s.Active + s.Cancelled}
		l.mu.Unlock()
	}
	return s, err
}

// moved reports whether a settled item changed since it was reconciled as
// prev: its shards or outboxes in Redis, or its stock or sold counter in
// MySQL (every insert and cancellation moves sold).
func (l *Ledger) moved(ctx context.Context, it order.Item, prev LedgerStats) (bool, error) {
	snap, err := l.stock.Snapshot(ctx, it.ID, it.Shards)
	if err != nil {
		return false, err
	}
	sold, stock, err := l.orders.SoldStock(ctx, it.ID)
	if err != nil {
		return false, err
	}
	return snap.Remaining != prev.Remaining || snap.Outbox != prev.Outbox || snap.Below != 0 ||
		!slices.Equal(snap.Shards, prev.Shards) || stock != prev.Stock || sold != prev.Active, nil
}

// live reports whether units of an item may still move: anything in the
// outbox, pending orders (payment or expiry), cancelled orders whose unit is
// not back, or the books not balanced.
func live(s LedgerStats) bool {
	return s.Outbox > 0 || s.Pending > 0 || s.Unreturned > 0 || s.Drift != 0 || s.Oversold != 0
}

// refreshItems adds the items created since the last call. Of an item the
// ledger uses its id and shard count, which never change; its stock (an
// operator may add units) and sold count are read fresh by Reconcile.
func (l *Ledger) refreshItems(ctx context.Context) error {
	l.mu.Lock()
	after := l.maxItem
	l.mu.Unlock()
	items, err := l.orders.ItemsAfter(ctx, after)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range items {
		l.items[it.ID] = it
		l.maxItem = max(l.maxItem, it.ID)
	}
	return nil
}

// export sets the item's gauges. Drift is exported only once it repeats
// with no order moving in between: while orders travel it is just the
// units in Kafka, and a busy sale would otherwise look like lost stock.
func (l *Ledger) export(itemID int64, s LedgerStats) {
	item := strconv.FormatInt(itemID, 10)
	l.mu.Lock()
	prev, ok := l.last[itemID]
	l.last[itemID] = s
	l.mu.Unlock()
	var drift int64
	if ok && s.Drift != 0 && s.Drift == prev.Drift && !moved(prev, s) {
		drift = s.Drift
	}
	if ok && !live(s) && !moved(prev, s) {
		// Settled: its series go, so they stay bounded by the items in
		// play, not by every item ever sold.
		l.drift.DeleteLabelValues(item)
		l.oversold.DeleteLabelValues(item)
		l.remaining.DeleteLabelValues(item)
		l.missing.DeleteLabelValues(item)
		return
	}
	l.drift.WithLabelValues(item).Set(float64(drift))
	l.oversold.WithLabelValues(item).Set(float64(s.Oversold))
	l.remaining.WithLabelValues(item).Set(float64(s.Remaining))
	l.missing.WithLabelValues(item).Set(float64(s.Missing))
}

// moved reports whether any unit moved between two reconciliations.
func moved(a, b LedgerStats) bool {
	return a.Remaining != b.Remaining || a.Outbox != b.Outbox || a.Pending != b.Pending ||
		a.Paid != b.Paid || a.Cancelled != b.Cancelled || a.Returned != b.Returned
}

// forget drops every exported series and the reconciliation history.
func (l *Ledger) forget() {
	l.drift.Reset()
	l.oversold.Reset()
	l.remaining.Reset()
	l.missing.Reset()
	l.paused.Reset()
	l.mu.Lock()
	l.last = map[int64]LedgerStats{}
	l.counted = map[int64]countMark{}
	l.mu.Unlock()
}

// Rebuild rewrites the item's Redis stock and per-user counts from MySQL
// (after Redis lost its keys, or on demand). It never writes a lagging
// count:
//
//  1. It takes the sweeper lease, so no cancelled unit comes back during
//     the rebuild, and drops every shard key, so no purchase takes one
//     (purchases answer 503 meanwhile, never "sold out"):
//     from then on no unit can appear in or leave the shards except by us.
//  2. It waits until the outbox and MySQL's active count stay unchanged and
//     the writer has consumed all of Kafka (CaughtUp), or fails
//     with ErrNotSettled after RebuildWait, leaving the sales stopped.
//  3. Cancelled orders whose unit is not back yet are counted as back and
//     recorded so in Redis, so a later Return cannot add them twice.
//  4. remaining = stock - active - outbox, spread with stock.Split; the
//     per-user counts are active orders plus outbox reservations per user.
//  5. It writes the counts, then the shards (sales resume), and clears the
//     sold-out flags everywhere.
//
// A unit in the outbox and already in MySQL (delivered, not yet acked) is
// subtracted twice: the safe direction, one unit unsold. Orders stuck in
// Kafka while the writer is down look settled and are not counted; when
// they arrive, MySQL's stock guard refuses any that would oversell.
//
// Once it has the lease, Rebuild runs to the end even if ctx is cancelled
// (a dropped admin request must not leave the sales stopped), bounded by
// twice RebuildWait plus a margin.
func (l *Ledger) Rebuild(ctx context.Context, it order.Item) error {
	return l.underLease(ctx, func(lctx context.Context) error { return l.rebuild(lctx, it) })
}

// underLease runs fn holding the sweeper lease (waiting up to RebuildWait
// for it), to the end even if ctx is cancelled, bounded by twice
// RebuildWait plus a margin; fn's ctx ends if the lease is lost.
func (l *Ledger) underLease(ctx context.Context, fn func(ctx context.Context) error) error {
	lock, err := l.stock.Lease(ctx, sweeperLease, l.cfg.LeaseTTL, l.cfg.RebuildWait)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*l.cfg.RebuildWait+30*time.Second)
	defer cancel()
	holdLease(ctx, lock, l.cfg.LeaseTTL, l.log, func(lctx context.Context) {
		err = fn(lctx)
		if err != nil && lctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("rebuild: sweeper lease lost: %w", err)
		}
	})
	return err
}

func (l *Ledger) rebuild(ctx context.Context, it order.Item) error {
	if it.Shards < 1 {
		return fmt.Errorf("rebuild item %d: %d shards", it.ID, it.Shards)
	}
	// 1. Stop sales: without shard keys every purchase answers 503 (not
	// "sold out": this is a dependency state, not a business answer).
	if err := l.stock.DropShards(ctx, it.ID, it.Shards); err != nil {
		return fmt.Errorf("rebuild item %d: stop sales: %w", it.ID, err)
	}
	deadline := time.Now().Add(l.cfg.RebuildWait)
	for {
		// 2. Wait for the pipeline to settle.
		outbox, active, err := l.settle(ctx, it, deadline)
		if err != nil {
			return fmt.Errorf("rebuild item %d: %w", it.ID, err)
		}
		// 3. Unreturned units count as back.
		if err := l.settleUnreturned(ctx, it); err != nil {
			return fmt.Errorf("rebuild item %d: %w", it.ID, err)
		}
		// 4. Count, upstream first (see Reconcile).
		n, err := l.rebuildCount(ctx, it)
		if err != nil {
			return fmt.Errorf("rebuild item %d: %w", it.ID, err)
		}
		if n.snap.Outbox != outbox || n.counts.Pending+n.counts.Paid != active {
			// Something moved after all: settle again.
			if time.Now().After(deadline) {
				return fmt.Errorf("rebuild item %d: %w", it.ID, ErrNotSettled)
			}
			continue
		}
		return l.rebuildApply(ctx, it, n, outbox, active)
	}
}

// rebuildCounts is what a rebuild counts, upstream first (see Reconcile).
type rebuildCounts struct {
	snap   stock.Snapshot
	res    []stock.Reservation
	claims []stock.Claim
	counts order.Counts
	byUser map[int64]int64
}

// rebuildCount reads the item's counts in Redis, then in MySQL.
func (l *Ledger) rebuildCount(ctx context.Context, it order.Item) (n rebuildCounts, err error) {
	if n.snap, err = l.stock.Snapshot(ctx, it.ID, it.Shards); err != nil {
		return n, err
	}
	if n.res, err = l.stock.PendingReservations(ctx, it.ID, it.Shards); err != nil {
		return n, err
	}
	if n.claims, err = l.stock.OpenClaims(ctx, it.ID, it.Shards); err != nil {
		return n, err
	}
	if n.counts, err = l.orders.Counts(ctx, it.ID); err != nil {
		return n, err
	}
	n.byUser, err = l.orders.ActiveByUser(ctx, it.ID)
	return n, err
}

// rebuildApply writes the counts of a settled item back: its per-user
// counts, then its shards (sales resume).
func (l *Ledger) rebuildApply(ctx context.Context, it order.Item, n rebuildCounts, outbox, active int64) error {
	waiting, err := l.notStored(ctx, n)
	if err != nil {
		return fmt.Errorf("rebuild item %d: %w", it.ID, err)
	}
	c, byUser := n.counts, n.byUser
	remaining := c.Stock - active - waiting
	if remaining < 0 {
		l.log.Error("rebuild: item is oversold, keeping its sales stopped",
			"item", it.ID, "stock", c.Stock, "active", active, "outbox", waiting)
		remaining = 0
	}
	// 5. Limits first, then stock: sales resume only with the per-user
	// counts in place. A lost lease stops us before sales resume.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rebuild item %d: %w", it.ID, err)
	}
	if err := l.stock.SetBought(ctx, it.ID, it.Shards, byUser); err != nil {
		return fmt.Errorf("rebuild item %d: %w", it.ID, err)
	}
	// The operator's sale state (pause, end) back on the shards before
	// they sell again: Redis may have lost it with the data.
	if err := l.restoreState(ctx, it.ID); err != nil {
		return fmt.Errorf("rebuild item %d: %w", it.ID, err)
	}
	if err := l.stock.SetShards(ctx, it.ID, stock.Split(remaining, it.Shards)); err != nil {
		return fmt.Errorf("rebuild item %d: %w", it.ID, err)
	}
	l.stock.ClearSoldOut(it.ID)
	if err := l.stock.PublishRestock(ctx, it.ID); err != nil {
		l.log.Warn("rebuild: publish restock", "item", it.ID, "err", err)
	}
	l.log.Info("rebuild: item stock rebuilt", "item", it.ID, "stock", c.Stock,
		"active", active, "outbox", outbox, "outbox_not_stored", waiting, "open_claims", len(n.claims), "remaining", remaining)
	return nil
}

// notStored counts the outbox's reservations whose order is not in MySQL
// yet, and adds them and the open claims to n.byUser. The outbox keeps a
// reservation until its order is stored, so an entry may be in MySQL
// already: each order is counted once.
func (l *Ledger) notStored(ctx context.Context, n rebuildCounts) (waiting int64, err error) {
	ids := make([]int64, 0, len(n.res)+len(n.claims))
	for _, r := range n.res {
		ids = append(ids, r.OrderID)
	}
	for _, cl := range n.claims {
		ids = append(ids, cl.OrderID)
	}
	stored, err := l.orders.Stored(ctx, ids)
	if err != nil {
		return 0, err
	}
	counted := map[int64]bool{}
	for _, r := range n.res {
		if stored[r.OrderID] || counted[r.OrderID] {
			continue
		}
		counted[r.OrderID] = true
		n.byUser[r.UserID]++
		waiting++
	}
	// An open fall-through claim holds its buyer's slot until it is
	// settled: count it, unless its order is counted already.
	for _, cl := range n.claims {
		if !stored[cl.OrderID] && !counted[cl.OrderID] {
			n.byUser[cl.UserID]++
		}
	}
	return waiting, nil
}

// settle polls the item's outbox length and active order count until both
// stayed unchanged for RebuildSettle, and returns them; ErrNotSettled once
// deadline passes. With sales stopped the outbox only shrinks (the relay)
// and active only grows (the writer), so an unchanged pair means nothing is
// being delivered.
func (l *Ledger) settle(ctx context.Context, it order.Item, deadline time.Time) (outbox, active int64, err error) {
	type pair struct{ outbox, active int64 }
	var last pair
	var since time.Time
	for first := true; ; first = false {
		snap, err := l.stock.Snapshot(ctx, it.ID, it.Shards)
		if err != nil {
			return 0, 0, err
		}
		c, err := l.orders.Counts(ctx, it.ID)
		if err != nil {
			return 0, 0, err
		}
		cur := pair{snap.Outbox, c.Pending + c.Paid}
		now := time.Now()
		switch {
		case first || cur != last:
			last, since = cur, now
		case now.Sub(since) >= l.cfg.RebuildSettle && l.caughtUp(ctx):
			return cur.outbox, cur.active, nil
		}
		if now.After(deadline) {
			return 0, 0, fmt.Errorf("%w: outbox %d, active %d after %v", ErrNotSettled, cur.outbox, cur.active, l.cfg.RebuildWait)
		}
		t := time.NewTimer(l.cfg.RebuildPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, 0, ctx.Err()
		case <-t.C:
		}
	}
}

// caughtUp asks CaughtUp; an error counts as not yet.
func (l *Ledger) caughtUp(ctx context.Context) bool {
	if l.cfg.CaughtUp == nil {
		return true
	}
	ok, err := l.cfg.CaughtUp(ctx)
	if err != nil {
		l.log.Warn("rebuild: consumer lag unknown", "err", err)
	}
	return ok && err == nil
}

// settleUnreturned finishes every cancelled order of the item whose unit
// is not marked back: each is recorded as returned in Redis without adding
// the unit (the rebuilt count includes it), then marked in MySQL, which is
// what lets the paging end. Other items' orders are the sweeper's, which
// waits for the lease Rebuild holds.
func (l *Ledger) settleUnreturned(ctx context.Context, it order.Item) error {
	for {
		orders, err := l.orders.UnreturnedOf(ctx, it.ID, rebuildBatch)
		if err != nil {
			return err
		}
		units := make([]stock.Unit, len(orders))
		ids := make([]int64, len(orders))
		for i, o := range orders {
			units[i] = stock.Unit{OrderID: o.ID, UserID: o.UserID, Shard: o.Shard}
			ids[i] = o.ID
		}
		// Redis first: once marked in MySQL nobody would record them.
		if err := l.stock.SkipReturns(ctx, it.ID, it.Shards, units); err != nil {
			return err
		}
		if err := l.orders.MarkReturned(ctx, ids...); err != nil {
			return err
		}
		if len(orders) < rebuildBatch {
			return nil
		}
	}
}

// rebuildParallel bounds the items rebuilt at once.
const rebuildParallel = 8

// RebuildAll rebuilds every item created before createdBefore with stock
// shards missing from Redis (it restarted without its data, or, on a
// cluster, a master holding some of them did). Items
// created later are warmed by whoever creates them: between its MySQL row and
// its Redis shards a new item must not be taken for a lost one.
//
// It holds the sweeper lease for the whole run and rebuilds the items in
// parallel, those on sale now first; an item whose pipeline does not settle
// is tried again until it does or ctx ends (its shards stay absent
// meanwhile: purchases answer 503, so it sells nothing rather than too
// much). One item's failure never stops the others. If this instance dies
// midway, the lease expires and another instance's RebuildAll (the rebuild
// marker is still there) takes over.
func (l *Ledger) RebuildAll(ctx context.Context, createdBefore time.Time) error {
	items, err := l.orders.Items(ctx)
	if err != nil {
		return fmt.Errorf("rebuild all: %w", err)
	}
	var lost []order.Item
	var errs []error
	for _, it := range items {
		if !it.CreatedAt.Before(createdBefore) {
			continue
		}
		snap, err := l.stock.Snapshot(ctx, it.ID, it.Shards)
		if err != nil {
			errs = append(errs, fmt.Errorf("rebuild all: %w", err))
			continue
		}
		if snap.Present == it.Shards {
			continue
		}
		if snap.Present > 0 {
			// Some shards only: on a Redis Cluster, the master that held
			// them came back empty. The item is rebuilt whole.
			l.log.Warn("rebuild all: item misses some stock shards in redis",
				"item", it.ID, "present", snap.Present, "shards", it.Shards)
		}
		lost = append(lost, it)
	}
	// Whatever was lost, every instance puts back what it accepted (token
	// answers, index entries, reservations) before the loss is cleared.
	l.awaitRestored(ctx, createdBefore)
	if len(lost) == 0 {
		return errors.Join(errs...)
	}
	now := time.Now()
	onSale := func(it order.Item) bool {
		return !now.Before(it.StartsAt) && (it.EndsAt == nil || now.Before(*it.EndsAt))
	}
	slices.SortStableFunc(lost, func(a, b order.Item) int {
		switch {
		case onSale(a) && !onSale(b):
			return -1
		case onSale(b) && !onSale(a):
			return 1
		}
		return 0
	})
	err = l.underLease(ctx, func(lctx context.Context) error {
		var mu sync.Mutex
		var errs []error
		g := make(chan struct{}, rebuildParallel)
		var wg sync.WaitGroup
		for _, it := range lost {
			g <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-g; wg.Done() }()
				l.log.Warn("rebuild all: item stock missing in redis, rebuilding", "item", it.ID)
				if err := l.rebuildRetrying(lctx, it); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	return errors.Join(append(errs, err)...)
}

// awaitRestored waits until every live instance has put back what it
// remembers of the purchases before the loss, or RebuildWait passed (then
// what is missing is counted as lost afterwards).
func (l *Ledger) awaitRestored(ctx context.Context, cutoff time.Time) {
	if l.cfg.Restored == nil {
		return
	}
	deadline := time.Now().Add(l.cfg.RebuildWait)
	for {
		ok, err := l.cfg.Restored(ctx, cutoff)
		if ok && err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			l.log.Warn("rebuild all: not every instance restored its purchases in time", "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.cfg.RebuildPoll):
		}
	}
}

// rebuildRetrying rebuilds one item until it succeeds or ctx ends.
func (l *Ledger) rebuildRetrying(ctx context.Context, it order.Item) error {
	for attempt := 1; ; attempt++ {
		err := l.rebuild(ctx, it)
		if err == nil || ctx.Err() != nil {
			return err
		}
		wait := min(time.Duration(attempt)*time.Second, 10*time.Second)
		l.log.Warn("rebuild all: retrying", "item", it.ID, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// restoreState writes the item's sale state (paused, ended) from MySQL onto
// its shards, holding the item's change lease so that an operator's change
// made meanwhile is not overwritten with the state read before it.
func (l *Ledger) restoreState(ctx context.Context, itemID int64) error {
	lock, err := l.stock.Lease(ctx, stock.ItemLease(itemID), 10*time.Second, 5*time.Second)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = lock.Release(rctx) // expires by itself otherwise
	}()
	it, err := l.orders.Item(ctx, itemID)
	if err != nil {
		return err
	}
	state := stock.StateOnSale
	switch {
	case it.EndsAt != nil && !time.Now().Before(*it.EndsAt):
		state = stock.StateEnded
	case it.Paused:
		state = stock.StatePaused
	}
	return l.stock.SetState(ctx, it.ID, it.Shards, state)
}
