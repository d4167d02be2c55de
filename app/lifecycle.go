package app

import (
	"context"
	"errors"
	"seckill/order/lifecycle"
	"time"

	"github.com/bsm/redislock"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"seckill/handler"
)

// parts are the background workers after the purchase: the expiry sweeper
// and the reconciler, each under its own leader lease.
type parts struct {
	ledger  handler.Ledger
	runners []func(ctx context.Context) error
}

func (s *Server) lifecycle(reg prometheus.Registerer) (*parts, error) {
	cfg := s.cfg
	sweeper, err := lifecycle.NewSweeper(s.Stock, s.Orders, lifecycle.SweeperConfig{
		Interval: cfg.Sweeper.Interval, Batch: cfg.Sweeper.Batch, LeaseTTL: cfg.Sweeper.Lease,
	}, reg, s.log)
	if err != nil {
		return nil, err
	}
	ledger, err := lifecycle.NewLedger(s.Stock, s.Orders, reg, s.log, lifecycle.LedgerConfig{
		Restored: s.allRestored,
		CaughtUp: func(context.Context) (bool, error) {
			lag := s.lag.Load()
			if lag == nil {
				return false, nil // Kafka not connected: reservations may wait there
			}
			n, err := (*lag)()
			return n == 0, err
		},
	})
	if err != nil {
		return nil, err
	}
	return &parts{
		ledger: ledger,
		runners: []func(context.Context) error{
			func(ctx context.Context) error { return s.rebuildLost(ctx, ledger) },
			sweeper.Run,
			func(ctx context.Context) error { return ledger.Run(ctx, cfg.Reconciler.Interval) },
			s.Stock.WatchRestock,
		},
	}, nil
}

func (p *parts) start(g *errgroup.Group, ctx context.Context) {
	for _, r := range p.runners {
		g.Go(func() error { return r(ctx) })
	}
}

// rebuildLost watches for Redis losing its data (its alive marker gone, at
// start or later: stock.CheckLoss leaves a rebuild marker every instance
// sees) and then rebuilds the items from MySQL once nothing is left in the
// outbox or in Kafka, never from a lagging count; until then they answer
// 503. On first sight of a loss every instance puts back the purchases it
// accepted (its journal), and the rebuild waits for that. Whichever
// instance holds the sweeper lease rebuilds; if it dies the marker stays and
// another one takes over. An instance that could not put its purchases back
// counts those that exist nowhere once the rebuild is done.
func (s *Server) rebuildLost(ctx context.Context, ledger *lifecycle.Ledger) error {
	t := time.NewTicker(s.cfg.Reconciler.Interval)
	defer t.Stop()
	var seen time.Time // the loss this instance saw pending
	unrestored := false
	// A Redis empty at start: the items made before this process started;
	// a loss seen later: the items made before it is seen (later ones are
	// warmed into the new Redis by their creator).
	since := s.started
	for {
		pending, cutoff, err := s.Stock.CheckLoss(ctx, since)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.log.Warn("check redis data", "err", err)
			}
		case pending:
			if !cutoff.Equal(seen) {
				// First sight of this loss: put back what this instance
				// accepted before it, then say so (the rebuild waits).
				unrestored = !s.restore(ctx, cutoff)
				seen = cutoff
			}
			err := ledger.RebuildAll(ctx, cutoff)
			switch {
			case err == nil:
				if err := s.Stock.RebuildDone(ctx, cutoff); err != nil {
					s.log.Warn("rebuild items", "err", err)
				}
				if unrestored {
					s.countLost(ctx)
				}
				seen, unrestored = time.Time{}, false
			case errors.Is(err, redislock.ErrNotObtained):
				// Another instance rebuilds.
			case ctx.Err() == nil:
				s.log.Error("rebuild items", "err", err)
			}
		case !seen.IsZero():
			// Another instance finished the rebuild.
			if unrestored {
				s.countLost(ctx)
			}
			seen, unrestored = time.Time{}, false
		}
		if err := s.Stock.Heartbeat(ctx, s.owner, 3*s.cfg.Reconciler.Interval); err != nil && ctx.Err() == nil {
			s.log.Warn("heartbeat", "err", err)
		}
		s.watchRestart(ctx, pending)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.checkNow:
		}
		since = time.Now()
	}
}

// watchRestart notices a Redis restart (its run id changed). A restart from
// an AOF synced every second may have lost the last second of writes: this
// instance puts back what it accepted since shortly before it last saw the
// old Redis and finds gone (Retake). After a loss with a rebuild (pending)
// restore did that already.
func (s *Server) watchRestart(ctx context.Context, pending bool) {
	id, err := s.Stock.RunID(ctx)
	if err != nil {
		return
	}
	prev, seenAt := s.runID, s.runIDAt
	s.runID, s.runIDAt = id, time.Now()
	if prev == "" || prev == id || pending || s.journal == nil {
		return
	}
	// everysec loses at most about the last second before the crash,
	// which came after seenAt.
	rs, err := s.journal.Since(ctx, s.Orders, seenAt.Add(-3*time.Second))
	if err == nil {
		var unserved []int64
		unserved, err = s.Stock.Retake(ctx, s.shardsOf, rs)
		if len(unserved) > 0 {
			s.journal.Lost(len(unserved))
			s.log.Error("accepted purchases lost in a redis restart, their stock sold again", "n", len(unserved), "orders", unserved)
		}
	}
	if err != nil {
		s.log.Error("redis restarted: check recent purchases", "err", err)
		s.runID = prev // try again next tick
		s.runIDAt = seenAt
		return
	}
	s.log.Warn("redis restarted: recent purchases checked", "checked", len(rs))
}

// shardsOf is an item's shard count, from MySQL.
func (s *Server) shardsOf(itemID int64) (int, error) {
	it, err := s.Orders.Item(context.Background(), itemID)
	return it.Shards, err
}

// restore puts back this instance's purchases accepted before the loss seen
// at cutoff, and records that it did (also when it has none to put back).
// It reports whether it could.
func (s *Server) restore(ctx context.Context, cutoff time.Time) bool {
	now := time.Now()
	s.lossSeen.Store(now.UnixNano())
	if s.journal != nil {
		// Everything accepted until now: since the loss no purchase of a
		// lost item can be accepted (its shards are missing).
		rs, err := s.journal.Restorable(ctx, s.Orders, now)
		if err == nil {
			err = s.Stock.Restore(ctx, rs)
		}
		if err != nil {
			s.log.Error("restore accepted purchases", "err", err)
			return false // not marked: the rebuild waits, then goes on without them
		}
		n := 0
		for _, r := range rs {
			if r.Reinject {
				n++
			}
		}
		if n > 0 {
			s.log.Warn("redis lost its data: accepted purchases put back", "answers", len(rs), "reinjected", n)
		}
	}
	if err := s.Stock.MarkRestored(ctx, cutoff, s.owner); err != nil {
		s.log.Error("restore accepted purchases", "err", err)
		return false
	}
	return true
}

// allRestored: every instance alive has had a full check interval since
// this one saw the loss (so has seen it too) and has put back its purchases.
func (s *Server) allRestored(ctx context.Context, cutoff time.Time) (bool, error) {
	seen := s.lossSeen.Load()
	if seen == 0 || time.Since(time.Unix(0, seen)) < s.cfg.Reconciler.Interval+time.Second {
		return false, nil
	}
	return s.Stock.AllRestored(ctx, cutoff, 3*s.cfg.Reconciler.Interval)
}

// countLost counts this instance's accepted purchases from before the loss
// that are in MySQL neither: it could not put them back, and the rebuild
// went on without them.
func (s *Server) countLost(ctx context.Context) {
	if s.journal == nil {
		return
	}
	lost, err := s.journal.CountLost(ctx, s.Orders, time.Unix(0, s.lossSeen.Load()))
	if err != nil {
		s.log.Warn("count lost orders", "err", err)
		return
	}
	if len(lost) > 0 {
		s.log.Error("accepted purchases lost with redis's data", "n", len(lost), "orders", lost)
	}
}
