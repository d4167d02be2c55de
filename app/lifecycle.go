package app

import (
	"context"
	"time"

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
// start or later) and then rebuilds the items from MySQL once nothing is
// left in the outbox or in Kafka, never from a lagging count; until then
// they answer 503. Items created since this process started (or since the
// loss was seen) are warmed by their creator, not taken for lost ones.
func (s *Server) rebuildLost(ctx context.Context, ledger *order.Ledger) error {
	t := time.NewTicker(s.cfg.Reconciler.Interval)
	defer t.Stop()
	pending, cutoff := false, s.started // pending: this instance owes a rebuild
	for first := true; ; first = false {
		lost, err := s.Stock.MarkAlive(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("check redis data", "err", err)
		}
		if lost && !first {
			cutoff = time.Now() // lost while running
		}
		if pending = pending || lost; pending {
			err := ledger.RebuildAll(ctx, cutoff)
			if err != nil && ctx.Err() == nil {
				s.log.Error("rebuild items", "err", err)
			}
			pending = err != nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
