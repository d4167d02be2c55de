package app

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"seckill/handler"
)

// parts are the background workers after the purchase: the expiry sweeper
// and the reconciler, each under its own leader lease.
type parts struct {
	ledger  handler.Ledger
	runners []func(ctx context.Context) error
}

func (s *Server) lifecycle(rdb redis.UniversalClient, reg prometheus.Registerer, owner string, shards func(context.Context, int64) (int, error)) (*parts, error) {
	return &parts{}, nil
}

func (p *parts) start(g *errgroup.Group, ctx context.Context) {
	for _, r := range p.runners {
		g.Go(func() error { return r(ctx) })
	}
}
