package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"seckill/bench/internal/harness"
)

// scenario is one fault, injected into one sale on a fresh cluster.
type scenario struct {
	name    string
	apps    int
	replica bool // primary + replica behind a proxy
	// redisCluster: a private 3-master Redis Cluster instead of the single
	// Redis, and the apps in SECKILL_REDIS_MODE=cluster.
	redisCluster bool
	// crossReplay: the replays (after settle) must find the item sold out
	// and must have given some key its 202 on another instance than the
	// one that accepted it (each sampled key goes to every instance, and
	// any other answer fails anyway).
	crossReplay bool
	fsyncAlways bool
	orderTTL    time.Duration // 0: 1h
	env         map[string]string
	pay         bool // buyers pay right after the 202 (none-pay)
	// payments: after the sale, payment callbacks and cancels race the
	// orders' expiry and a SIGKILL (payments.go).
	payments bool
	expiry   bool // nobody pays; second wave after the returns
	// users picks the user ids of the buyers (nil: 1..n).
	users func(n int) []int64
	// stall > 0: a stall scenario (stall.go) whose fault lasts this long:
	// the apps reach Redis, MariaDB and the broker through proxies, the
	// first -stock buyers arrive spread over the sale, readers load the
	// product page and order reads, and a client timeout is an answer
	// time, not a broken contract. redisStall: the stalled one is Redis.
	stall      time.Duration
	redisStall bool
	// fault waits for its moment, breaks something, repairs it, and
	// reports when the fault began and ended through r.begin/r.end.
	fault func(ctx context.Context, r *run) error
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func atTrigger(ctx context.Context, r *run) error {
	select {
	case <-r.trigger:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// appKill takes app 0 down with sig (SIGKILL or SIGTERM) and restarts it
// after opt.appDown.
func appKill(sig syscall.Signal) func(ctx context.Context, r *run) error {
	return func(ctx context.Context, r *run) error {
		if err := atTrigger(ctx, r); err != nil {
			return err
		}
		return r.bounceApp(ctx, r.c.apps[0], sig)
	}
}

func (r *run) bounceApp(ctx context.Context, a *app, sig syscall.Signal) error {
	r.begin(fmt.Sprintf("%s app%d (pid %d)", sig, a.idx, a.proc().Pid()))
	a.down.Store(true)
	p := a.proc()
	if sig == syscall.SIGKILL {
		p.Kill9()
	} else {
		t := time.Now()
		if err := p.Term(30 * time.Second); err != nil {
			r.fail("app did not stop on SIGTERM: %v", err)
		} else if p.ExitErr() != nil {
			r.fail("app%d exited with %v after SIGTERM (log %s)", a.idx, p.ExitErr(), p.LogPath)
		} else {
			r.note("app%d stopped %.1fs after SIGTERM", a.idx, time.Since(t).Seconds())
		}
	}
	sleepCtx(ctx, opt.appDown)
	r.end("restarting app")
	err := r.c.startApp(a)
	a.down.Store(false)
	return err
}

func scenarios() []*scenario {
	return append([]*scenario{
		{name: "none-pay", apps: 1, pay: true},
		paymentsScenario(),
		{name: "app-kill9", apps: 1, fault: appKill(syscall.SIGKILL)},
		{name: "app-sigterm", apps: 1, fault: appKill(syscall.SIGTERM)},
		{name: "redis-kill9-aof", apps: 1, fsyncAlways: true, fault: func(ctx context.Context, r *run) error {
			if err := atTrigger(ctx, r); err != nil {
				return err
			}
			r.begin("SIGKILL redis (appendfsync always)")
			r.c.redis.Kill9()
			sleepCtx(ctx, opt.redisDown)
			r.end("restarting redis on the same dir")
			return r.c.startPrimary(false)
		}},
		// appendfsync everysec (the compose default): a kill -9 may lose
		// about the last second of writes; the instance that accepted those
		// purchases takes them again (Retake) when it sees the restart.
		{name: "redis-kill9-everysec", apps: 1, fault: func(ctx context.Context, r *run) error {
			if err := atTrigger(ctx, r); err != nil {
				return err
			}
			r.begin("SIGKILL redis (appendfsync everysec)")
			r.c.redis.Kill9()
			sleepCtx(ctx, opt.redisDown)
			r.end("restarting redis on the same dir")
			return r.c.startPrimary(false)
		}},
		{name: "redis-empty", apps: 1, fault: func(ctx context.Context, r *run) error {
			if err := atTrigger(ctx, r); err != nil {
				return err
			}
			r.begin("SIGKILL redis")
			r.c.redis.Kill9()
			sleepCtx(ctx, opt.redisDown)
			r.end("restarting redis with an empty data dir")
			return r.c.startPrimary(true)
		}},
		{name: "redis-failover", apps: 1, replica: true, fsyncAlways: true,
			env: map[string]string{"SECKILL_REDIS_WAIT_REPLICAS": "1"},
			fault: func(ctx context.Context, r *run) error {
				if err := atTrigger(ctx, r); err != nil {
					return err
				}
				r.begin("SIGKILL redis primary")
				r.c.redis.Kill9()
				rep := harness.Addr(r.c.replicaPort)
				if _, err := redisDo(rep, "REPLICAOF", "NO", "ONE"); err != nil {
					return fmt.Errorf("promote replica: %w", err)
				}
				r.c.px.retarget(rep)
				r.c.logf("replica promoted, proxy points at it")
				if !opt.rejoin {
					r.end("replica promoted, proxy points at it; no new replica")
					return nil
				}
				// As after a real failover, the failed node comes back as a
				// replica of the new primary (empty dir: it full-syncs).
				sleepCtx(ctx, opt.redisDown)
				d, err := harness.Mkdir(r.c.dir, "rejoined-data")
				if err != nil {
					return err
				}
				r.end("old primary rejoining as a replica of the promoted one")
				p, err := r.c.startRedis("redis", r.c.redisPort, d, "always", rep)
				r.c.redis = p
				if err != nil {
					return err
				}
				return harness.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, "rejoined replica link up", func() (bool, error) {
					v, err := redisDo(harness.Addr(r.c.redisPort), "INFO", "replication")
					s, _ := v.(string)
					return strings.Contains(s, "master_link_status:up"), err
				})
			}},
		{name: "mysql-down", apps: 1, fault: func(ctx context.Context, r *run) error {
			if err := atTrigger(ctx, r); err != nil {
				return err
			}
			r.begin(fmt.Sprintf("SIGTERM mariadbd (pid %d) for %s", r.c.mysql.Pid(), opt.mysqlDown))
			if err := r.c.stopMySQL(); err != nil {
				r.note("%v", err)
			}
			sleepCtx(ctx, opt.mysqlDown)
			r.end("restarting mariadbd")
			return r.c.startMySQL()
		}},
		{name: "kafka-down", apps: 1, fault: func(ctx context.Context, r *run) error {
			if err := atTrigger(ctx, r); err != nil {
				return err
			}
			r.begin(fmt.Sprintf("SIGTERM kafka for %s (data dir kept)", opt.kafkaDown))
			if err := r.c.kafka.Term(20 * time.Second); err != nil {
				r.note("%v", err)
			}
			sleepCtx(ctx, opt.kafkaDown)
			r.end("restarting kafka on its data dir")
			return r.c.startKafka(false)
		}},
		{name: "kafka-empty", apps: 1, fault: func(ctx context.Context, r *run) error {
			if err := atTrigger(ctx, r); err != nil {
				return err
			}
			r.begin(fmt.Sprintf("SIGTERM kafka for %s", opt.kafkaEmptyDown))
			if err := r.c.kafka.Term(20 * time.Second); err != nil {
				r.note("%v", err)
			}
			sleepCtx(ctx, opt.kafkaEmptyDown)
			r.end("restarting kafka with an empty data dir")
			return r.c.startKafka(true)
		}},
		{name: "two-instances-kill", apps: 2, fault: func(ctx context.Context, r *run) error {
			if err := atTrigger(ctx, r); err != nil {
				return err
			}
			a := r.c.apps[0]
			r.begin(fmt.Sprintf("SIGKILL app0 (pid %d), not restarted", a.proc().Pid()))
			a.gone.Store(true)
			a.proc().Kill9()
			r.end("app0 stays down")
			return nil
		}},
		{name: "expiry-kill9", apps: 1, orderTTL: opt.orderTTL, expiry: true, fault: func(ctx context.Context, r *run) error {
			// The moment: the sweeper has started cancelling and returning.
			var at harness.Ledger
			err := harness.WaitFor(ctx, 60*time.Second, 50*time.Millisecond, "first cancelled order", func() (bool, error) {
				s, err := r.cl.stats(ctx)
				if err == nil {
					at = *s.Ledger
				}
				return err == nil && at.Cancelled > 0, err
			})
			if err != nil {
				return err
			}
			r.note("at SIGKILL: cancelled %d, returned %d, unreturned %d, pending %d", at.Cancelled, at.Returned, at.Unreturned, at.Pending)
			return r.bounceApp(ctx, r.c.apps[0], syscall.SIGKILL)
		}},
		{name: "slow-fallthrough", apps: 2,
			// Every buyer's home is shard 0: once its 1/8 of the stock is
			// gone, every purchase falls through to other shards.
			users: func(n int) []int64 {
				var out []int64
				for u := int64(1); len(out) < n; u++ {
					if homeShard(u, 8) == 0 {
						out = append(out, u)
					}
				}
				return out
			},
			fault: func(ctx context.Context, r *run) error {
				if err := atTrigger(ctx, r); err != nil {
					return err
				}
				if s, err := r.cl.stats(ctx); err == nil {
					empty, left := 0, int64(0)
					for _, v := range s.Shards {
						if v <= 0 {
							empty++
						} else {
							left += v
						}
					}
					r.note("at SIGSTOP: shards %v (%d empty, %d units left): fall-through state reached: %v",
						s.Shards, empty, left, empty > 0 && left > 0)
				}
				a := r.c.apps[0]
				r.begin(fmt.Sprintf("SIGSTOP app0 (pid %d) for %s", a.proc().Pid(), opt.stopFor))
				a.down.Store(true)
				if err := a.proc().Signal(syscall.SIGSTOP); err != nil {
					return err
				}
				sleepCtx(ctx, opt.stopFor)
				if err := a.proc().Signal(syscall.SIGCONT); err != nil {
					return err
				}
				r.end("SIGCONT app0")
				err := r.c.waitReady(a, 30*time.Second)
				a.down.Store(false)
				return err
			}},
		// Redis Cluster: two instances, no fault. A key accepted by one
		// instance is replayed after sell-out on both (run.replays).
		{name: "cluster-two-instances", apps: 2, redisCluster: true, crossReplay: true},
		// A master (the one holding most of the item's shards) dies and
		// comes back empty with its nodes.conf: same node id and slots, no
		// data. The instances see the loss (alive markers of its groups),
		// put back what they accepted, and the items are rebuilt.
		{name: "cluster-master-empty", apps: 2, redisCluster: true, crossReplay: true, fault: func(ctx context.Context, r *run) error {
			if err := atTrigger(ctx, r); err != nil {
				return err
			}
			n := r.c.rc.nodes[0]
			if per, err := r.c.shardsPerNode(r.cl.item); err != nil {
				r.note("shard keys per master: %v; killing the first", err)
			} else {
				best := 0
				for i, k := range per {
					if k > per[best] {
						best = i
					}
				}
				n = r.c.rc.nodes[best]
				r.note("item %d's stock shard keys per master %v: killing master %d (%s)", r.cl.item, per, n.idx, n.addr())
			}
			return r.restartEmpty(ctx, n, opt.redisDown)
		}},
	}, stallScenarios()...)
}
