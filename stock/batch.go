package stock

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Group commit of purchase scripts. Purchases that
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
	// finished is set when done is closed; only the leader of the call's
	// batch reads or writes it.
	finished bool
}

// finish sets the call's answer and wakes its caller.
func (c *call) finish(res []int64, err error) {
	c.res, c.err, c.finished = res, err, true
	close(c.done)
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

	s.lead(context.WithoutCancel(ctx), batch)
	<-c.done // c was in its own batch, or in an earlier one
	return c.res, c.err
}

// lead runs a batch and then, whatever happened (a panic too), answers the
// calls of the batch left unanswered and hands the lead to the first call
// that queued meanwhile, or leaves the batcher idle. A panic is turned into
// the error of every unanswered call of the batch, the leader's own
// included: it says the reply was not what the code expects, a dependency
// failure (503, and a retry of the same token gets the stored answer), and
// re-raising it would only fail the leader's request differently from the
// others after the batcher was already put right.
func (s *Store) lead(ctx context.Context, batch []*call) {
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("%w: %v\n%s", ErrBadReply, r, debug.Stack())
			for _, c := range batch {
				if !c.finished {
					c.finish(nil, err)
				}
			}
		}
		b := &s.batch
		b.mu.Lock()
		if len(b.queue) > 0 {
			close(b.queue[0].lead)
		} else {
			b.busy = false
			b.queue = nil
		}
		b.mu.Unlock()
	}()
	s.runBatch(ctx, batch)
}

// ErrBadReply: a script's reply was not of the expected shape (empty), or
// the group commit's round trip panicked; the calls of that batch get it
// (with the panic's value and stack) as their error.
var ErrBadReply = errors.New("stock: unexpected reply from redis")

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
					c.finish(nil, err)
				}
				return
			}
		}
		batch = again
	}
}

// answer sets c's answer from its command (and the batch's WAIT).
func (s *Store) answer(c *call, cmd, wait *redis.Cmd) {
	res, err := cmd.Int64Slice()
	if err == nil && len(res) == 0 {
		err = fmt.Errorf("%w: empty script reply", ErrBadReply)
	}
	if err != nil {
		c.finish(nil, err)
		return
	}
	if wait != nil && res[0] == codeOK {
		if n, err := wait.Int64(); err != nil || n < int64(s.cfg.WaitReplicas) {
			c.finish(nil, fmt.Errorf("%w: %d of %d replicas acknowledged", ErrNotReplicated, n, s.cfg.WaitReplicas))
			return
		}
	}
	c.finish(res, nil)
}
