package sale

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"seckill/order"
	"seckill/order/lifecycle"
	"seckill/stock"
)

// Recovery is the protocol for Redis losing data: it watches for a loss
// (its alive marker gone, at start or later: stock.CheckLoss leaves a
// rebuild marker every instance sees) and for a Redis restart, and decides
// what to put back, when the items are rebuilt, and what to count as lost.
type Recovery struct {
	Stock   *stock.Store
	Orders  *order.Store
	Journal *lifecycle.Journal // nil: nothing to put back
	// Rebuild rebuilds the items created before the cutoff once nothing is
	// left in the outbox or in Kafka (lifecycle.Ledger.RebuildAll); an
	// error matching stock.ErrLeaseHeld means another instance does it.
	Rebuild func(ctx context.Context, createdBefore time.Time) error
	// Owner names this instance; Interval is the check interval.
	Owner    string
	Interval time.Duration
	// Since is when this process started: a Redis empty at start lost the
	// items made before it.
	Since time.Time
	// Wake, if set, makes the next check happen at once (Redis restarted).
	Wake <-chan struct{}
	Log  *slog.Logger

	// lossSeen is when this instance first saw the pending loss (unix ns).
	lossSeen atomic.Int64
	// runID is the Redis run id last seen (Run's loop only), and runIDAt
	// when.
	runID   string
	runIDAt time.Time
}

// Run checks every Interval until ctx ends, then returns nil. On a loss,
// the items are rebuilt from MySQL once nothing is left in the outbox or
// in Kafka, never from a lagging count; until then they answer
// ErrNotReady. On first sight of a loss every instance puts back the
// purchases it accepted (its journal), and the rebuild waits for that.
// Whichever instance holds the sweeper lease rebuilds; if it dies the
// marker stays and another one takes over. An instance that could not put
// its purchases back counts those that exist nowhere once the rebuild is
// done.
func (r *Recovery) Run(ctx context.Context) error {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	var seen time.Time // the loss this instance saw pending
	unrestored := false
	// A Redis empty at start: the items made before this process started;
	// a loss seen later: the items made before it is seen (later ones are
	// warmed into the new Redis by their creator).
	since := r.Since
	for {
		pending, cutoff, err := r.Stock.CheckLoss(ctx, since)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				r.Log.Warn("check redis data", "err", err)
			}
		case pending:
			if !cutoff.Equal(seen) {
				// First sight of this loss: put back what this instance
				// accepted before it, then say so (the rebuild waits).
				unrestored = !r.restore(ctx, cutoff)
				seen = cutoff
			}
			err := r.Rebuild(ctx, cutoff)
			switch {
			case err == nil:
				if err := r.Stock.RebuildDone(ctx, cutoff); err != nil {
					r.Log.Warn("rebuild items", "err", err)
				}
				if unrestored {
					r.countLost(ctx)
				}
				seen, unrestored = time.Time{}, false
			case errors.Is(err, stock.ErrLeaseHeld):
				// Another instance rebuilds.
			case ctx.Err() == nil:
				r.Log.Error("rebuild items", "err", err)
			}
		case !seen.IsZero():
			// Another instance finished the rebuild.
			if unrestored {
				r.countLost(ctx)
			}
			seen, unrestored = time.Time{}, false
		}
		if err := r.Stock.Heartbeat(ctx, r.Owner, 3*r.Interval); err != nil && ctx.Err() == nil {
			r.Log.Warn("heartbeat", "err", err)
		}
		r.watchRestart(ctx, pending)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.Wake:
		}
		since = time.Now()
	}
}

// watchRestart notices a Redis restart (its run id changed). A restart from
// an AOF synced every second may have lost the last second of writes: this
// instance puts back what it accepted since shortly before it last saw the
// old Redis and finds gone (Retake). After a loss with a rebuild (pending)
// restore did that already.
func (r *Recovery) watchRestart(ctx context.Context, pending bool) {
	id, err := r.Stock.RunID(ctx)
	if err != nil {
		return
	}
	prev, seenAt := r.runID, r.runIDAt
	r.runID, r.runIDAt = id, time.Now()
	if prev == "" || prev == id || pending || r.Journal == nil {
		return
	}
	// everysec loses at most about the last second before the crash,
	// which came after seenAt.
	rs, err := r.Journal.Since(ctx, r.Orders, seenAt.Add(-3*time.Second))
	if err == nil {
		var unserved []int64
		unserved, err = r.Stock.Retake(ctx, r.shardsOf, rs)
		if len(unserved) > 0 {
			r.Journal.Lost(len(unserved))
			r.Log.Error("accepted purchases lost in a redis restart, their stock sold again", "n", len(unserved), "orders", unserved)
		}
	}
	if err != nil {
		r.Log.Error("redis restarted: check recent purchases", "err", err)
		r.runID = prev // try again next tick
		r.runIDAt = seenAt
		return
	}
	r.Log.Warn("redis restarted: recent purchases checked", "checked", len(rs))
}

// shardsOf is an item's shard count, from MySQL.
func (r *Recovery) shardsOf(itemID int64) (int, error) {
	it, err := r.Orders.Item(context.Background(), itemID)
	return it.Shards, err
}

// restore puts back this instance's purchases accepted before the loss seen
// at cutoff, and records that it did (also when it has none to put back).
// It reports whether it could.
func (r *Recovery) restore(ctx context.Context, cutoff time.Time) bool {
	now := time.Now()
	r.lossSeen.Store(now.UnixNano())
	if r.Journal != nil {
		// Everything accepted until now: since the loss no purchase of a
		// lost item can be accepted (its shards are missing).
		rs, err := r.Journal.Restorable(ctx, r.Orders, now)
		if err == nil {
			err = r.Stock.Restore(ctx, rs)
		}
		if err != nil {
			r.Log.Error("restore accepted purchases", "err", err)
			return false // not marked: the rebuild waits, then goes on without them
		}
		n := 0
		for _, x := range rs {
			if x.Reinject {
				n++
			}
		}
		if n > 0 {
			r.Log.Warn("redis lost its data: accepted purchases put back", "answers", len(rs), "reinjected", n)
		}
	}
	if err := r.Stock.MarkRestored(ctx, cutoff, r.Owner); err != nil {
		r.Log.Error("restore accepted purchases", "err", err)
		return false
	}
	return true
}

// AllRestored reports whether every instance alive has had a full check
// interval since this one saw the loss (so has seen it too) and has put
// back its purchases: the rebuild of the loss at cutoff waits for it
// (lifecycle.LedgerConfig.Restored).
func (r *Recovery) AllRestored(ctx context.Context, cutoff time.Time) (bool, error) {
	seen := r.lossSeen.Load()
	if seen == 0 || time.Since(time.Unix(0, seen)) < r.Interval+time.Second {
		return false, nil
	}
	return r.Stock.AllRestored(ctx, cutoff, 3*r.Interval)
}

// countLost counts this instance's accepted purchases from before the loss
// that are in MySQL neither: it could not put them back, and the rebuild
// went on without them.
func (r *Recovery) countLost(ctx context.Context) {
	if r.Journal == nil {
		return
	}
	lost, err := r.Journal.CountLost(ctx, r.Orders, time.Unix(0, r.lossSeen.Load()))
	if err != nil {
		r.Log.Warn("count lost orders", "err", err)
		return
	}
	if len(lost) > 0 {
		r.Log.Error("accepted purchases lost with redis's data", "n", len(lost), "orders", lost)
	}
}
