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

func (s *Server) lifecycle(ctx context.Context, reg prometheus.Registerer) (*parts, error) {
	cfg := s.cfg
	sweeper, err := order.NewSweeper(s.Stock, s.Orders, order.SweeperConfig{
		Interval: cfg.Sweeper.Interval, Batch: cfg.Sweeper.Batch, LeaseTTL: cfg.Sweeper.Lease,
	}, reg, s.log)
	if err != nil {
		return nil, err
	}
	ledger, err := order.NewLedger(s.Stock, s.Orders, reg, s.log)
	if err != nil {
		return nil, err
	}
	// Redis restarted without its keys: rebuild those items from MySQL
	// before taking purchases, never from a lagging count.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := ledger.RebuildAll(rctx); err != nil {
		s.log.Error("rebuild items at start", "err", err)
	}
	return &parts{
		ledger: ledger,
		runners: []func(context.Context) error{
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
