package app

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// redisCalls counts what the process sends Redis: round trips (a command,
// or a whole pipeline, each once) and commands (a pipeline's each), by
// caller-agnostic totals. make bench divides them by the accepted orders.
// On a cluster a pipeline spanning several masters counts as one round
// trip here (go-redis sends one per master, concurrently).
type redisCalls struct {
	trips, cmds prometheus.Counter
}

func newRedisCalls(reg prometheus.Registerer) (*redisCalls, error) {
	h := &redisCalls{
		trips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_redis_round_trips_total",
			Help: "Requests sent to Redis: a command or a pipeline, each counted once.",
		}),
		cmds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_redis_commands_total",
			Help: "Commands sent to Redis (each command of a pipeline; a script call is one).",
		}),
	}
	for _, c := range []prometheus.Collector{h.trips, h.cmds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *redisCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *redisCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.trips.Inc()
		h.cmds.Inc()
		return next(ctx, cmd)
	}
}

func (h *redisCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Inc()
		h.cmds.Add(float64(len(cmds)))
		return next(ctx, cmds)
	}
}

var _ redis.Hook = (*redisCalls)(nil)
