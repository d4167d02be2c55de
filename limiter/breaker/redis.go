package breaker

import (
	"context"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// GuardRedis adds to c, the client of one Redis server, a hook that
// guards it with b and gives each call a budget (0: none): a deadline for
// the whole call, its wait for a pooled connection, a dial and its retries
// included, unless the caller's context ends sooner; the budget also
// bounds a probe (a second without one). On a Redis Cluster, guard each
// node's client (ClusterClient's OnNewNode) with its own breaker, and give
// the cluster client RedisBudget, which then bounds a call's redirects and
// retries too.
//
// While b is not closed, commands and pipelines fail at once with an
// *OpenError set on every command, and no connection is dialled while it
// is open. Half-open, the probes are PINGs of the hook's own over c's pool
// (Probe), not the callers' commands: a probe that waits for a still
// silent Redis holds no caller, and none queues behind it (the group
// commit would queue every purchase behind a batch that probes). Whoever
// met the half-open breaker, the probe goes through c's pool: the caller
// may be a subscription's handshake on a connection of its own, which the
// refusal closes.
func GuardRedis(c *redis.Client, b *Breaker, budget time.Duration) {
	h := redisHook{b: b, budget: budget}
	h.ping = func(ctx context.Context) error { return c.Ping(ctx).Err() }
	c.AddHook(h)
}

// RedisBudget is a go-redis hook that gives each call budget, as
// GuardRedis does, with no breaker: for a cluster client, whose nodes'
// clients have the breakers.
func RedisBudget(budget time.Duration) redis.Hook { return redisHook{budget: budget} }

type redisHook struct {
	b      *Breaker
	budget time.Duration
	// ping sends a PING over the guarded client's pool.
	ping func(ctx context.Context) error
}

// inCall marks the context of a call the hook let through: go-redis runs
// a new connection's handshake (HELLO, AUTH, SELECT) through the hooks
// with the caller's context, and those commands are part of the call, not
// calls of their own (nor refused half-open, which would fail a probe).
type inCall struct{}

// nested reports whether ctx is that of a call under way.
func nested(ctx context.Context) bool { return ctx.Value(inCall{}) != nil }

// enter is ctx marked as a call under way of a hook with a breaker. A
// hook without one (a cluster client's) marks nothing: its call goes on
// to the nodes' hooks, which guard it.
func (h redisHook) enter(ctx context.Context) context.Context {
	if h.b == nil {
		return ctx
	}
	return context.WithValue(ctx, inCall{}, true)
}

// bound gives ctx the hook's budget unless it ends sooner already.
func (h redisHook) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if h.budget <= 0 {
		return ctx, nil
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= h.budget {
		return ctx, nil
	}
	return context.WithTimeout(ctx, h.budget)
}

// DialHook refuses to dial while the breaker is open. A dial's outcome is
// counted by the command that needed it.
func (h redisHook) DialHook(next redis.DialHook) redis.DialHook {
	if h.b == nil {
		return next
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h.b.State() == StateOpen {
			return nil, h.b.refusal()
		}
		return next(ctx, network, addr)
	}
}

// refused is the error of a call refused while b is not closed (nil when
// it is); half-open, it starts the probes.
func (h redisHook) refused() error {
	if h.b == nil {
		return nil
	}
	switch h.b.State() {
	case StateClosed:
		return nil
	case StateHalfOpen:
		h.b.Probe(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), h.probeBudget())
			defer cancel()
			return h.ping(h.enter(ctx))
		})
	}
	return h.b.refusal()
}

// probeBudget bounds a probe: the hook's budget, or a second.
func (h redisHook) probeBudget() time.Duration {
	if h.budget > 0 {
		return h.budget
	}
	return time.Second
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if nested(ctx) {
			return next(ctx, cmd)
		}
		if err := h.refused(); err != nil {
			cmd.SetErr(err)
			return err
		}
		ctx, cancel := h.bound(ctx)
		if cancel != nil {
			defer cancel()
		}
		done, err := h.b.Allow()
		if err != nil {
			cmd.SetErr(err)
			return err
		}
		err = next(h.enter(ctx), cmd)
		done(Classify(err))
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if nested(ctx) {
			return next(ctx, cmds)
		}
		err := h.refused()
		if err == nil {
			var done func(Outcome)
			if done, err = h.b.Allow(); err == nil {
				ctx, cancel := h.bound(ctx)
				if cancel != nil {
					defer cancel()
				}
				err = next(h.enter(ctx), cmds)
				done(Classify(pipelineErr(err, cmds)))
				return err
			}
		}
		for _, cmd := range cmds {
			cmd.SetErr(err)
		}
		return err
	}
}

// pipelineErr is the error that tells whether a pipeline was answered:
// its own, or else the first of its commands' that is no answer (a
// command cut off by a timeout).
func pipelineErr(err error, cmds []redis.Cmder) error {
	if err != nil {
		return err
	}
	for _, cmd := range cmds {
		if e := cmd.Err(); e != nil && Classify(e) != Answered {
			return e
		}
	}
	return nil
}
