package breaker_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/limiter/breaker"
)

// TestMain fails the package's tests if goroutines are left running.
func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// seen is a go-redis hook that records the commands sent, by name.
type seen struct {
	mu    sync.Mutex
	names []string
}

func (h *seen) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *seen) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.names = append(h.names, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *seen) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		for _, c := range cmds {
			h.names = append(h.names, c.Name())
		}
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// since is the commands sent after the first n.
func (h *seen) since(n int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.names[n:]...)
}

func (h *seen) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.names)
}

// stalledClient is a client of a server that accepts connections and never
// answers, guarded by b with a budget of 100ms per call; under it, rt
// records the commands that got past the breaker (a new connection's
// handshake included).
func stalledClient(t *testing.T, b *breaker.Breaker) (*redis.Client, *seen) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr: testenv.Blackhole(t), PoolSize: 4, MaxRetries: -1, DialerRetries: 1,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond,
		DialTimeout: 100 * time.Millisecond, PoolTimeout: 100 * time.Millisecond, ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { rdb.Close() })
	rt := &seen{}
	breaker.GuardRedis(rdb, b, 100*time.Millisecond) // first added: outermost
	rdb.AddHook(rt)
	return rdb, rt
}

// TestTripsOnTimeouts: calls to a Redis that does not answer time out;
// after Failures of them the breaker is open, and every call fails at
// once with ErrOpen naming the dependency, without reaching Redis.
func TestTripsOnTimeouts(t *testing.T) {
	set := breaker.NewSet(breaker.Config{Failures: 5, OpenFor: time.Minute})
	t.Cleanup(set.Close)
	b := set.Get("redis")
	rdb, rt := stalledClient(t, b)
	ctx := context.Background()
	for i := range 5 {
		err := rdb.Ping(ctx).Err()
		if err == nil || errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("call %d to a stalled redis: %v, want a timeout", i, err)
		}
	}
	if s := b.State(); s != breaker.StateOpen {
		t.Fatalf("after 5 timeouts the breaker is %v, want open", s)
	}
	sent := rt.len()
	fast := 0
	for range 20 {
		start := time.Now()
		err := rdb.Ping(ctx).Err()
		var open *breaker.OpenError
		if !errors.As(err, &open) || open.Dependency != "redis" || open.RetryAfter < time.Second {
			t.Fatalf("call to an open breaker: %v, want an *OpenError of redis with a Retry-After", err)
		}
		if time.Since(start) < 50*time.Millisecond {
			fast++
		}
	}
	if fast != 20 {
		t.Errorf("%d of 20 refused calls answered within 50ms, want all", fast)
	}
	if got := rt.since(sent); len(got) != 0 {
		t.Errorf("commands %v reached redis through an open breaker, want none", got)
	}
	// A pipeline is refused the same way, each command with the error.
	pipe := rdb.Pipeline()
	get := pipe.Get(ctx, "x")
	if _, err := pipe.Exec(ctx); !errors.Is(err, breaker.ErrOpen) || !errors.Is(get.Err(), breaker.ErrOpen) {
		t.Errorf("pipeline through an open breaker: %v / %v, want ErrOpen", err, get.Err())
	}
	if got := gauge(t, set, "redis"); got != 2 {
		t.Errorf("seckill_breaker_state{dependency=redis} = %v, want 2", got)
	}
}

// gauge reads seckill_breaker_state of dep from the set's metrics.
func gauge(t *testing.T, set *breaker.Set, dep string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(set); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "seckill_breaker_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == dep {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no seckill_breaker_state for %s", dep)
	return 0
}

// guarded is a client of the test Redis (a cluster client in cluster
// mode) whose every server is guarded by a breaker of set, wired as the
// app wires it.
func guarded(t *testing.T, set *breaker.Set) redis.UniversalClient {
	t.Helper()
	rdb := testenv.NewRedis(redis.Options{PoolSize: 8})
	t.Cleanup(func() { rdb.Close() })
	if c, ok := rdb.(*redis.ClusterClient); ok {
		c.OnNewNode(func(n *redis.Client) {
			breaker.GuardRedis(n, set.Get("redis:"+n.Options().Addr), time.Second)
		})
		c.AddHook(breaker.RedisBudget(time.Second))
	} else {
		breaker.GuardRedis(rdb.(*redis.Client), set.Get("redis"), time.Second)
	}
	return rdb
}

// TestAnswersDoNotTrip: error replies are answers. A breaker that opens
// at the first failure stays closed through NOSCRIPT, BUSYGROUP, a missing
// key, a script's own error reply and a business answer, alone and in a
// pipeline, and through MySQL's duplicate key and unknown table errors.
func TestAnswersDoNotTrip(t *testing.T) {
	set := breaker.NewSet(breaker.Config{Failures: 1, OpenFor: time.Minute})
	t.Cleanup(set.Close)
	_, prefix := testenv.Redis(t) // the prefix's keys are deleted at the end
	rdb := guarded(t, set)
	ctx := context.Background()
	stream := prefix + ":stream"
	soldOut := redis.NewScript(`return redis.error_reply('SOLDOUT no stock left')`)
	business := redis.NewScript(`return {0, 3}`)
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := rdb.EvalSha(ctx, strings.Repeat("0", 40), []string{prefix + ":k"}).Err(); !redis.HasErrorPrefix(err, "NOSCRIPT") {
			t.Fatalf("evalsha of an unknown script: %v, want NOSCRIPT", err)
		}
		if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); !redis.HasErrorPrefix(err, "BUSYGROUP") {
			t.Fatalf("second group create: %v, want BUSYGROUP", err)
		}
		if err := rdb.Get(ctx, prefix+":missing").Err(); err != redis.Nil {
			t.Fatalf("get of a missing key: %v, want redis.Nil", err)
		}
		if err := soldOut.Run(ctx, rdb, []string{prefix + ":k"}).Err(); !redis.HasErrorPrefix(err, "SOLDOUT") {
			t.Fatalf("script error reply: %v, want SOLDOUT", err)
		}
		if err := business.Run(ctx, rdb, []string{prefix + ":k"}).Err(); err != nil {
			t.Fatalf("script business answer: %v", err)
		}
		pipe := rdb.Pipeline()
		pipe.EvalSha(ctx, strings.Repeat("1", 40), []string{prefix + ":k"})
		pipe.Get(ctx, prefix+":missing")
		if _, err := pipe.Exec(ctx); err == nil {
			t.Fatal("pipeline of error replies answered no error")
		}
	}
	if open := set.NotClosed(); len(open) > 0 {
		t.Fatalf("breakers %v left closed state on error replies", open)
	}

	dsn, _ := testenv.MySQL(t)
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	mc.InterpolateParams = true // as the app runs: one guarded call per statement
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	b := set.Get("mysql")
	db := sql.OpenDB(breaker.Connector(b, conn))
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE brk (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO brk VALUES (?)", 1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var me *mysql.MySQLError
		if _, err := db.ExecContext(ctx, "INSERT INTO brk VALUES (?)", 1); !errors.As(err, &me) || me.Number != 1062 {
			t.Fatalf("duplicate insert: %v, want error 1062", err)
		}
		if _, err := db.QueryContext(ctx, "SELECT * FROM no_such_table"); !errors.As(err, &me) || me.Number != 1146 {
			t.Fatalf("select from a missing table: %v, want error 1146", err)
		}
	}
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("mysql breaker %v after error answers, want closed", s)
	}
}

// TestOwnDeadlineTrips: a call whose own budget ran out counts as a
// failure, on the breaker of the server it went to (in cluster mode, the
// node's, behind the cluster client's hook).
func TestOwnDeadlineTrips(t *testing.T) {
	set := breaker.NewSet(breaker.Config{Failures: 1, OpenFor: time.Minute})
	t.Cleanup(set.Close)
	_, prefix := testenv.Redis(t)
	rdb := guarded(t, set)
	ctx := context.Background()
	key := prefix + ":k"
	if err := rdb.Get(ctx, key).Err(); err != redis.Nil { // the slot map, and a pooled connection
		t.Fatalf("get: %v, want redis.Nil", err)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-dctx.Done()
	if err := rdb.Get(dctx, key).Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if open := set.NotClosed(); len(open) != 1 {
		t.Fatalf("breakers not closed after a call ran out of time: %v, want the one of the server it went to", open)
	}
}

// TestHalfOpenProbes: once its open time is up a breaker lets Probes calls
// through and refuses the others; it closes when they all succeeded, and
// opens again at a failed probe.
func TestHalfOpenProbes(t *testing.T) {
	set := breaker.NewSet(breaker.Config{Failures: 1, OpenFor: 50 * time.Millisecond, Probes: 2})
	b := set.Get("dep")
	trip := func() {
		t.Helper()
		done, err := b.Allow()
		if err != nil {
			t.Fatalf("closed breaker refused: %v", err)
		}
		done(breaker.Failed)
		if s := b.State(); s != breaker.StateOpen {
			t.Fatalf("after a failure the breaker is %v, want open", s)
		}
		if _, err := b.Allow(); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("open breaker let a call through: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for b.State() != breaker.StateHalfOpen && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if s := b.State(); s != breaker.StateHalfOpen {
			t.Fatalf("breaker %v 5s after opening for 50ms, want half-open", s)
		}
	}

	trip()
	d1, err1 := b.Allow()
	d2, err2 := b.Allow()
	_, err3 := b.Allow()
	if err1 != nil || err2 != nil {
		t.Fatalf("half-open breaker refused its probes: %v, %v", err1, err2)
	}
	if !errors.Is(err3, breaker.ErrOpen) {
		t.Fatalf("half-open breaker let a third call through beside its 2 probes: %v", err3)
	}
	d1(breaker.Answered)
	if s := b.State(); s != breaker.StateHalfOpen {
		t.Fatalf("after 1 of 2 probes succeeded the breaker is %v, want half-open", s)
	}
	d2(breaker.Answered)
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("after its probes succeeded the breaker is %v, want closed", s)
	}

	trip()
	d, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	d(breaker.Failed)
	if s := b.State(); s != breaker.StateOpen {
		t.Fatalf("after a failed probe the breaker is %v, want open", s)
	}
}

// TestHalfOpenRedisProbesArePings: a half-open Redis breaker refuses the
// callers' commands at once and probes with a PING of its own, so no
// caller waits on a Redis that may still be silent (the group commit would
// queue every purchase behind a probing batch).
func TestHalfOpenRedisProbesArePings(t *testing.T) {
	set := breaker.NewSet(breaker.Config{Failures: 1, OpenFor: 50 * time.Millisecond, Probes: 1})
	t.Cleanup(set.Close)
	opened := make(chan struct{}, 100)
	set.OnChange(func(_ string, _, to breaker.State) {
		if to == breaker.StateOpen {
			opened <- struct{}{}
		}
	})
	b := set.Get("redis")
	rdb, rt := stalledClient(t, b)
	ctx := context.Background()
	if err := rdb.Get(ctx, "k").Err(); err == nil || errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("call to a stalled redis: %v, want a timeout", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.State() != breaker.StateHalfOpen && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := b.State(); s != breaker.StateHalfOpen {
		t.Fatalf("breaker %v, want half-open", s)
	}
	sent := rt.len()
	start := time.Now()
	err := rdb.Get(ctx, "k").Err()
	if took := time.Since(start); !errors.Is(err, breaker.ErrOpen) || took >= 50*time.Millisecond {
		t.Fatalf("call to a half-open breaker: %v after %v, want ErrOpen at once", err, took)
	}
	// The refused call started a probe: one PING, which times out and
	// opens the breaker again.
	for i := range 2 {
		select {
		case <-opened:
		case <-time.After(5 * time.Second):
			t.Fatalf("the breaker opened %d times in 5s, want twice (the probe of a stalled redis fails)", i)
		}
	}
	// The probe's PING, after its connection's handshake; never the GET.
	if got := slices.DeleteFunc(rt.since(sent), func(n string) bool { return n == "hello" }); !slices.Equal(got, []string{"ping"}) {
		t.Errorf("commands %v reached redis while half-open, want [ping] (the probe)", got)
	}
}

// TestClosesWhenRedisAnswersAgain: a Redis behind a stalled proxy opens
// its breaker; once the proxy forwards again, the probes succeed and the
// breaker closes, telling OnChange so (the app re-confirms its leases
// then).
func TestClosesWhenRedisAnswersAgain(t *testing.T) {
	set := breaker.NewSet(breaker.Config{Failures: 2, OpenFor: 100 * time.Millisecond, Probes: 2})
	t.Cleanup(set.Close)
	closed := make(chan string, 10)
	set.OnChange(func(name string, _, to breaker.State) {
		if to == breaker.StateClosed {
			closed <- name
		}
	})
	b := set.Get("redis")
	// Skips (or fails under CI) without a Redis.
	testenv.Redis(t)
	target := strings.Split(testenv.RedisAddr(), ",")[0] // PING answers on any node
	proxy := testenv.NewProxy(t, target)
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr, PoolSize: 4, MaxRetries: -1, DialerRetries: 1,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	breaker.GuardRedis(rdb, b, 100*time.Millisecond)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	proxy.Stall()
	deadline := time.Now().Add(5 * time.Second)
	for b.State() != breaker.StateOpen && time.Now().Before(deadline) {
		rdb.Ping(ctx)
	}
	if s := b.State(); s != breaker.StateOpen {
		t.Fatalf("breaker %v after 5s of a stalled redis, want open", s)
	}
	proxy.Heal()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = rdb.Ping(ctx).Err(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no PING answered within 5s of the heal: %v", err)
	}
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("breaker %v after a successful probe, want closed", s)
	}
	select {
	case name := <-closed:
		if name != "redis" {
			t.Errorf("OnChange closed %q, want redis", name)
		}
	default:
		t.Error("OnChange was not told the breaker closed")
	}
}

// TestClassify: only what the dependency did not answer is a failure.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want breaker.Outcome
	}{
		{"nil", nil, breaker.Answered},
		{"redis nil", redis.Nil, breaker.Answered},
		{"mysql duplicate", &mysql.MySQLError{Number: 1062}, breaker.Answered},
		{"unknown", errors.New("something"), breaker.Answered},
		{"deadline", context.DeadlineExceeded, breaker.Failed},
		{"pool timeout", redis.ErrPoolTimeout, breaker.Failed},
		{"bad conn", mysql.ErrInvalidConn, breaker.Failed},
		{"canceled", context.Canceled, breaker.Neutral},
	} {
		if got := breaker.Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestRecoversAfterRedisRestart: a Redis killed under a crowd and started
// again is used again within about the breaker's open time plus
// go-redis's redial period. The crowd's failed dials saturate go-redis's
// own dial guard (PoolSize dial errors make every dial fail at once with
// the last error until a background redial, once a second, gets through);
// that redial goes through the guard's dial hook, which must not keep the
// pool shut for longer than the breaker's open time.
func TestRecoversAfterRedisRestart(t *testing.T) {
	srv := testenv.PrivateRedis(t)
	set := breaker.NewSet(breaker.Config{Failures: 5, OpenFor: time.Second, Probes: 3})
	t.Cleanup(set.Close)
	b := set.Get("redis")
	const pool = 4
	rdb := guardedServer(t, srv.Addr, b, pool)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	// A crowd released together: more failed dials than the pool's size
	// before the breaker has counted its Failures.
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 * pool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rdb.Ping(ctx)
		}()
	}
	close(start)
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); b.State() == breaker.StateClosed; {
		if time.Now().After(deadline) {
			t.Fatal("breaker still closed 5s after redis was killed")
		}
		rdb.Ping(ctx)
	}

	srv.Start()
	up := time.Now()
	// Callers keep calling, as a crowd does; the bound is the breaker's
	// open time plus go-redis's redial period, with room for a loaded
	// machine.
	const bound = 4 * time.Second
	var err error
	for {
		if err = rdb.Ping(ctx).Err(); err == nil {
			break
		}
		if time.Since(up) > bound {
			t.Fatalf("redis answers again, but the client still fails %v later: %v (breaker %v)", bound, err, b.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("first answer %v after redis accepted connections again", time.Since(up).Round(time.Millisecond))
}

// TestProbesUseThePool: a probe is a PING over the client's pool, whoever
// met the half-open breaker. A subscription's reconnect meets it first
// when callers back off (a crowd that honours Retry-After): its handshake
// runs on a connection of its own, which the refusal closes. Probes sent
// through that connection failed with "use of closed network connection"
// every time, so the breaker reopened again and again while Redis
// answered (the fault suite's Redis restarts: sales back 12-70 s late).
func TestProbesUseThePool(t *testing.T) {
	srv := testenv.PrivateRedis(t)
	set := breaker.NewSet(breaker.Config{Failures: 2, OpenFor: 300 * time.Millisecond, Probes: 2})
	t.Cleanup(set.Close)
	b := set.Get("redis")
	rdb := guardedServer(t, srv.Addr, b, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps := rdb.Subscribe(ctx, "breaker-test")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { // drains the channel, so the subscription reconnects
		defer wg.Done()
		ch := ps.ChannelWithSubscriptions()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	}()

	srv.Stop()
	for deadline := time.Now().Add(5 * time.Second); b.State() != breaker.StateOpen; {
		if time.Now().After(deadline) {
			t.Fatal("breaker not open 5s after redis was killed")
		}
		rdb.Ping(ctx)
	}
	srv.Start()
	// Only the subscription calls now: the breaker must close on its own
	// probes.
	const bound = 4 * time.Second
	for up := time.Now(); b.State() != breaker.StateClosed; time.Sleep(10 * time.Millisecond) {
		if time.Since(up) > bound {
			t.Fatalf("breaker %v %v after redis came back, with only a subscription calling", b.State(), bound)
		}
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("breaker closed, but a PING fails: %v", err)
	}
}

// guardedServer is a client of the Redis at addr with a pool of pool
// connections, guarded by b with a budget of 200ms, configured as the app
// configures its own (no retries, one dial attempt).
func guardedServer(t *testing.T, addr string, b *breaker.Breaker, pool int) *redis.Client {
	t.Helper()
	const budget = 200 * time.Millisecond
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: pool, MaxRetries: -1, DialerRetries: 1,
		ReadTimeout: budget, WriteTimeout: budget, DialTimeout: budget, PoolTimeout: budget,
		ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	breaker.GuardRedis(rdb, b, budget)
	return rdb
}
