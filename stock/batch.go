package stock

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Group commit of purchase scripts (and token issues). Purchases that
// arrive while another one's round trip to Redis is under way wait for it,
// then go together, in one pipeline: each is still its own atomic script
// call, with its own answer, but Redis and this process handle one request
// (one read, one write on each side) for all of them. A lone purchase goes
// at once, as one command: there is no timer, so batching adds no latency
// when it is quiet.
//
// No goroutine of its own: the first caller to find the batcher idle leads;
// it runs what is queued, then hands the lead to the first call that queued
// meanwhile (which runs the next batch: nobody serves others for long), or
// leaves the batcher idle.
type batcher struct {
	mu    sync.Mutex
	queue []*call
	busy  bool
}

// maxBatch bounds the calls of one pipeline.
const maxBatch = 256

// call is one purchase script call.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
	res    []int64
	err    error
	done   chan struct{} // closed once res and err are set
	lead   chan struct{} // closed when this call is to run the next batch
}

// run calls a purchase script, batched with the calls that wait for the
// same round trip, followed in the same round trip by WAIT for the
// replicas if configured. An acceptance that the replicas did not
// acknowledge in time is ErrNotReplicated: the token keeps the answer, so
// the retry gets it. The call runs whatever ctx does once it is queued (a
// caller gone meanwhile gets its answer on a retry of the same key); the
// client's own timeouts bound it.
func (s *Store) run(ctx context.Context, script *redis.Script, keys []string, args []any) ([]int64, error) {
	c := &call{script: script, keys: keys, args: args, done: make(chan struct{}), lead: make(chan struct{})}
	b := &s.batch
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.busy {
		b.mu.Unlock()
		select {
		case <-c.done:
			return c.res, c.err
		case <-c.lead:
		}
		b.mu.Lock()
	}
	b.busy = true
	n := min(len(b.queue), maxBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.mu.Unlock()

	s.runBatch(context.WithoutCancel(ctx), batch)

	b.mu.Lock()
	if len(b.queue) > 0 {
		close(b.queue[0].lead)
	} else {
		b.busy = false
		b.queue = nil
	}
	b.mu.Unlock()
	<-c.done // c was in its own batch, or in an earlier one
	return c.res, c.err
}

// runBatch runs the calls in one round trip (a lone call without WAIT as
// one command: on a cluster client a pipeline costs a slot map and a
// goroutine per node) and sets every call's answer. Calls Redis had no
// script for (it restarted, or lost its data) ran nowhere: the scripts are
// loaded and those calls run again, once.
func (s *Store) runBatch(ctx context.Context, batch []*call) {
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(batch))
		var wait *redis.Cmd
		if len(batch) == 1 && s.cfg.WaitReplicas == 0 {
			c := batch[0]
			cmds[0] = c.script.EvalSha(ctx, s.rdb, c.keys, c.args...)
		} else {
			pipe := s.rdb.Pipeline()
			for i, c := range batch {
				cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
			}
			if s.cfg.WaitReplicas > 0 {
				wait = pipe.Do(ctx, "wait", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
			}
			pipe.Exec(ctx) // errors are per command
		}
		var again []*call
		missing := map[*redis.Script]bool{}
		for i, c := range batch {
			if attempt == 0 && redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
				again = append(again, c)
				missing[c.script] = true
				continue
			}
			s.answer(c, cmds[i], wait)
		}
		if len(again) == 0 {
			return
		}
		if s.cfg.Restarted != nil {
			s.cfg.Restarted()
		}
		for script := range missing {
			if err := script.Load(ctx, s.rdb).Err(); err != nil {
				for _, c := range again {
					c.err = err
					close(c.done)
				}
				return
			}
		}
		batch = again
	}
}

// answer sets c's answer from its command (and the batch's WAIT).
func (s *Store) answer(c *call, cmd, wait *redis.Cmd) {
	defer close(c.done)
	res, err := cmd.Int64Slice()
	if err != nil {
		c.err = err
		return
	}
	if wait != nil && res[0] == codeOK {
		if n, err := wait.Int64(); err != nil || n < int64(s.cfg.WaitReplicas) {
			c.err = fmt.Errorf("%w: %d of %d replicas acknowledged", ErrNotReplicated, n, s.cfg.WaitReplicas)
			return
		}
	}
	c.res = res
}
