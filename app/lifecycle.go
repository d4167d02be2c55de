package app

import (
	"context"
	"seckill/order/lifecycle"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"seckill/order/sale"
)

// parts are the background workers after the purchase: the expiry sweeper
// and the reconciler, each under its own leader lease, and the recovery
// from a Redis loss (its decisions are sale.Recovery's).
type parts struct {
	ledger sale.Ledger
	// returns gives a cancelled order's unit back at once (the sweeper's
	// path).
	returns sale.Returns
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
	rec := &sale.Recovery{
		Stock: s.Stock, Orders: s.Orders, Journal: s.journal, Owner: s.owner,
		Interval: cfg.Reconciler.Interval, Since: s.started, Wake: s.checkNow, Log: s.log,
	}
	ledger, err := lifecycle.NewLedger(s.Stock, s.Orders, reg, s.log, lifecycle.LedgerConfig{
		Restored: rec.AllRestored,
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
	rec.Rebuild = ledger.RebuildAll
	return &parts{
		ledger:  ledger,
		returns: sweeper,
		runners: []func(context.Context) error{
			rec.Run,
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
