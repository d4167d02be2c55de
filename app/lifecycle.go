package app

import (
	"context"
	"errors"
	"time"

	"github.com/bsm/redislock"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"seckill/handler"
	"seckill/order"
)

// parts are the background workers after the purchase: the expiry sweeper
// and the reconciler, each under its own leader lease.
type parts struct {
	ledger  handler.Ledger
	runners []func(ctx context.Context) error
}

func (s *Server) lifecycle(reg prometheus.Registerer) (*parts, error) {
	cfg := s.cfg
	sweeper, err := order.NewSweeper(s.Stock, s.Orders, order.SweeperConfig{
		Interval: cfg.Sweeper.Interval, Batch: cfg.Sweeper.Batch, LeaseTTL: cfg.Sweeper.Lease,
	}, reg, s.log)
	if err != nil {
		return nil, err
	}
	ledger, err := order.NewLedger(s.Stock, s.Orders, reg, s.log, order.LedgerConfig{
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
// 503. Whichever instance holds the sweeper lease rebuilds; if it dies the
// marker stays and another one takes over. Once the rebuild is done, each
// instance counts its own accepted purchases that exist nowhere any more.
func (s *Server) rebuildLost(ctx context.Context, ledger *order.Ledger) error {
	t := time.NewTicker(s.cfg.Reconciler.Interval)
	defer t.Stop()
	var seen time.Time // the loss this instance saw pending
	since := s.started // a Redis empty at start: items made before this process
	for {
		pending, cutoff, err := s.Stock.CheckLoss(ctx, since)
		since = time.Now()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.log.Warn("check redis data", "err", err)
			}
		case pending:
			seen = cutoff
			err := ledger.RebuildAll(ctx, cutoff)
			switch {
			case err == nil:
				if err := s.Stock.RebuildDone(ctx, cutoff); err != nil {
					s.log.Warn("rebuild items", "err", err)
				}
				s.countLost(ctx, seen)
				seen = time.Time{}
			case errors.Is(err, redislock.ErrNotObtained):
				// Another instance rebuilds.
			case ctx.Err() == nil:
				s.log.Error("rebuild items", "err", err)
			}
		case !seen.IsZero():
			// Another instance finished the rebuild.
			s.countLost(ctx, seen)
			seen = time.Time{}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// countLost counts this instance's accepted purchases made before the loss
// that are in MySQL neither.
func (s *Server) countLost(ctx context.Context, cutoff time.Time) {
	if s.journal == nil {
		return
	}
	lost, err := s.journal.CountLost(ctx, s.Orders, cutoff)
	if err != nil {
		s.log.Warn("count lost orders", "err", err)
		return
	}
	if len(lost) > 0 {
		s.log.Error("accepted purchases lost with redis's data", "n", len(lost), "orders", lost)
	}
}
