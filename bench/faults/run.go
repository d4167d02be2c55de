package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"seckill/bench/internal/harness"
)

// run is one scenario in progress.
type run struct {
	sc  *scenario
	c   *cluster
	cl  *client
	res *result

	buyers  []*buyer
	waveN   int // buyers of the current wave
	answerd atomic.Int64
	trigger chan struct{}
	trigged sync.Once

	mu         sync.Mutex
	faultStart time.Time
	faultEnd   time.Time
	faultWhat  string

	// sampler maxima while the scenario runs
	maxActive   atomic.Int64
	maxOversold atomic.Int64
	// remainingAtBegin: units left when a stall began (-1: unknown).
	remainingAtBegin atomic.Int64
	// pre: the tokens wave 1's buyers hold before the sale (stall.go).
	pre map[int64]string
}

func (r *run) note(format string, args ...any) {
	r.mu.Lock()
	r.res.notes = append(r.res.notes, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	r.c.logf("note: "+format, args...)
}

func (r *run) fail(format string, args ...any) {
	r.mu.Lock()
	r.res.fails = append(r.res.fails, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	r.c.logf("FAIL: "+format, args...)
}

func (r *run) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.res.fails) > 0
}

func (r *run) begin(what string) {
	r.mu.Lock()
	r.faultStart, r.faultWhat = time.Now(), what
	r.mu.Unlock()
	r.c.logf("fault: %s (answers so far %d)", what, r.answerd.Load())
}

func (r *run) end(what string) {
	now := time.Now()
	r.mu.Lock()
	r.faultEnd = now
	r.mu.Unlock()
	r.cl.faultEnd.Store(now.UnixNano())
	r.c.logf("fault over: %s", what)
}

func runScenario(ctx context.Context, sc *scenario, idx int, root string) (res *result) {
	res = &result{name: sc.name, recovery: "-"}
	c, err := newCluster(sc, idx, root)
	if c != nil {
		defer func() {
			res.logs = append([]string(nil), c.logs...)
			res.dir = c.dir
			failed := res.verdict() == "FAIL"
			res.kept = opt.keep || failed
			// A failed scenario's Go processes print their goroutines
			// (SIGQUIT) into their logs before they are killed: evidence
			// of where they were stuck. Its logs are kept.
			c.close(opt.keep, failed)
		}()
	}
	if err != nil {
		res.setupErr = err
		return res
	}
	r := &run{sc: sc, c: c, cl: newClient(c), res: res, trigger: make(chan struct{})}
	if err := r.main(ctx); err != nil {
		res.setupErr = err
	}
	for _, cr := range c.crashList() {
		r.fail("%s", cr)
	}
	return res
}

func (r *run) main(ctx context.Context) error {
	c, cl := r.c, r.cl
	// The item.
	var item struct {
		ID int64 `json:"id"`
	}
	err := harness.WaitFor(ctx, 20*time.Second, 200*time.Millisecond, "create item", func() (bool, error) {
		_, err := cl.adminJSON(ctx, c.apps[0], "POST", "/api/v1/admin/items",
			map[string]any{"name": "faults " + r.sc.name, "price_minor": 1000, "currency": "EUR", "stock": opt.stock, "shards": 8, "per_user_limit": 1}, &item)
		return err == nil && item.ID > 0, err
	})
	if err != nil {
		return err
	}
	cl.item = item.ID

	sctx, stopSampler := context.WithCancel(ctx)
	var swg sync.WaitGroup
	swg.Add(1)
	go func() { defer swg.Done(); r.sample(sctx) }()
	defer func() { stopSampler(); swg.Wait() }()

	// Wave 1 with the fault.
	users := make([]int64, opt.buyers)
	if r.sc.users != nil {
		users = r.sc.users(opt.buyers)
	} else {
		for i := range users {
			users[i] = int64(i + 1)
		}
	}
	if r.sc.stall > 0 {
		r.prefetchTokens(ctx, users)
	}
	faultErr := make(chan error, 1)
	fctx, cancelFault := context.WithCancel(ctx)
	defer cancelFault()
	if r.sc.fault != nil {
		go func() { faultErr <- r.sc.fault(fctx, r) }()
	} else {
		faultErr <- nil
	}
	saleStart := time.Now()
	rctx, stopReaders := context.WithCancel(ctx)
	var rwg sync.WaitGroup
	if r.sc.stall > 0 {
		rwg.Add(1)
		go func() { defer rwg.Done(); r.readers(rctx) }()
	}
	wave1 := r.wave(ctx, 1, users)
	c.logf("wave 1 done in %.1fs", time.Since(saleStart).Seconds())
	stopReaders()
	rwg.Wait()
	r.trigged.Do(func() { close(r.trigger) }) // a fault still waiting runs now
	if err := <-faultErr; err != nil {
		return fmt.Errorf("fault: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.mu.Lock()
	fe := r.faultEnd
	r.mu.Unlock()
	if r.sc.fault != nil && fe.IsZero() {
		return errors.New("the fault never ran")
	}
	if fe.IsZero() {
		fe = time.Now()
	}
	// Before anything else sends requests (the replays).
	r.latencies(saleStart)

	// Readiness after the fault, as a fallback recovery time.
	readyAt := r.allReady(ctx, fe)

	settledAt, ok := r.settle(ctx, "after wave 1", r.sc.expiry)
	if !ok {
		r.fail("pipeline did not settle after wave 1 (deadline %s, or nothing moved for %s)", opt.settleTimeout, opt.stuck)
	}
	if c.rc != nil {
		// Where the item's stock shards are now (all 8 should exist again
		// after a master came back empty).
		if per, err := c.shardsPerNode(cl.item); err != nil {
			r.note("after settle: shard keys per master: %v", err)
		} else {
			r.note("after settle: item %d's stock shard keys per master %v", cl.item, per)
		}
	}
	if r.sc.fault != nil {
		first := time.Duration(0)
		if fa := cl.firstOKAfter.Load(); fa != 0 {
			first = time.Unix(0, fa).Sub(fe)
		} else if fa := cl.firstAfter.Load(); fa != 0 {
			first = time.Unix(0, fa).Sub(fe)
		} else if !readyAt.IsZero() {
			first = readyAt.Sub(fe)
		} else {
			first = -1
		}
		rs := "never"
		if first >= 0 {
			rs = fmt.Sprintf("%.1f", first.Seconds())
		}
		if ok {
			rs += fmt.Sprintf("/%.1f", settledAt.Sub(fe).Seconds())
		} else {
			rs += "/never"
		}
		r.res.recovery = rs
	} else if ok {
		r.res.recovery = fmt.Sprintf("-/%.1f", settledAt.Sub(saleStart).Seconds())
	}

	if r.sc.expiry {
		r.expiryWave2(ctx, wave1)
	}
	if r.sc.pay {
		r.checkPaid(ctx, wave1)
	}
	if r.sc.payments {
		r.paymentsRace(ctx, wave1)
	}
	r.checkStall(ctx)
	r.check(ctx)
	return nil
}

// wave runs one wave of buyers to their final answers.
func (r *run) wave(ctx context.Context, n int, users []int64) []*buyer {
	var bs []*buyer
	for i, u := range users {
		bs = append(bs, &buyer{user: u, jwt: signJWT(r.c.secret, u), home: i, wave: n, token: r.pre[u]})
	}
	r.buyers = append(r.buyers, bs...)
	third := int64(len(bs) / 3)
	// However long each buyer may wait, the whole wave ends by
	// -sale-deadline: buyers not answered by then count as no_answer.
	wctx, cancel := context.WithTimeout(ctx, opt.saleDeadline)
	defer cancel()
	outer := ctx
	ctx = wctx
	sem := make(chan struct{}, opt.concurrency)
	var wg sync.WaitGroup
	pace := time.Duration(0)
	if n == 1 {
		pace = r.paceOf()
	}
	start := time.Now()
	for i, b := range bs {
		if pace > 0 && i < opt.stock {
			sleepCtx(outer, time.Until(start.Add(time.Duration(i)*pace)))
		}
		if outer.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.cl.buy(ctx, b)
			if b.final == "202" && r.sc.pay {
				r.cl.payFlow(ctx, b)
			}
			if r.answerd.Add(1) >= third && n == 1 {
				r.trigged.Do(func() { close(r.trigger) })
			}
		}()
	}
	wg.Wait()
	return bs
}

// allReady waits until every live instance answers /readyz 200.
func (r *run) allReady(ctx context.Context, since time.Time) time.Time {
	var at time.Time
	_ = harness.WaitFor(ctx, 60*time.Second, 100*time.Millisecond, "ready", func() (bool, error) {
		for _, a := range r.c.liveApps() {
			if st, err := getStatus(a.url + "/readyz"); err != nil || st != 200 {
				return false, err
			}
		}
		at = time.Now()
		return true, nil
	})
	if !at.IsZero() && at.Before(since) {
		at = since
	}
	return at
}

// sample tracks the worst moment of the scenario: active orders in MySQL
// and the ledger's oversold, every 500ms.
func (r *run) sample(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		var n int64
		if err := r.c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders WHERE item_id = ? AND status IN ('pending','paid')", r.cl.item).Scan(&n); err == nil {
			maxStore(&r.maxActive, n)
		}
		if s, err := r.cl.stats(ctx); err == nil {
			maxStore(&r.maxOversold, s.Ledger.Oversold)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func maxStore(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

func (r *run) orderCount(ctx context.Context) (int64, error) {
	var n int64
	err := r.c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders WHERE item_id = ?", r.cl.item).Scan(&n)
	return n, err
}

// settle waits until the pipeline is idle: the outbox empty, the MySQL
// order count unchanged for -settle-quiet and drift 0; or, with a drift that
// does not go away, outbox empty and count unchanged for -drift-quiet.
// expiry also waits for every order to be cancelled and its unit returned.
func (r *run) settle(ctx context.Context, what string, expiry bool) (time.Time, bool) {
	var last int64 = -1
	lastChange := time.Now()
	var st harness.ItemStats
	var sig string
	sigSince := time.Now()
	stuck := errors.New("no progress")
	err := harness.WaitFor(ctx, opt.settleTimeout, 250*time.Millisecond, "settle "+what, func() (bool, error) {
		n, err := r.orderCount(ctx)
		if err != nil {
			return false, err
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		s, err := r.cl.stats(ctx)
		if err != nil {
			return false, err
		}
		st = s
		l := s.Ledger
		// Give up early when nothing moves at all for -stuck (longer than
		// the product's 30s relay claim idle, which can hold entries).
		if now := fmt.Sprint(n, l.Outbox, l.Drift, l.Pending, l.Paid, l.Cancelled, l.Returned, l.Remaining); now != sig {
			sig, sigSince = now, time.Now()
		} else if time.Since(sigSince) > opt.stuck && (l.Outbox != 0 || (expiry && (l.Pending != 0 || l.Unreturned != 0))) {
			return false, fmt.Errorf("%w for %s", stuck, opt.stuck)
		}
		quiet := time.Since(lastChange)
		if l.Outbox != 0 || (expiry && (l.Pending != 0 || l.Unreturned != 0)) {
			return false, nil
		}
		return (quiet >= opt.settleQuiet && l.Drift == 0) || quiet >= opt.driftQuiet, nil
	})
	if errors.Is(err, stuck) {
		r.note("settle %s: gave up, nothing moved for %s; last stats %+v", what, opt.stuck, st.Ledger)
		return time.Time{}, false
	}
	if err != nil {
		r.note("settle %s: %v; last stats %+v", what, err, st.Ledger)
		return time.Time{}, false
	}
	r.c.logf("settled %s: orders %d, ledger %+v", what, last, *st.Ledger)
	return time.Now(), true
}

// expiryWave2: after every wave-1 order expired and its unit came back,
// the stock is whole again, and a second wave can buy all of it.
func (r *run) expiryWave2(ctx context.Context, wave1 []*buyer) {
	s, err := r.cl.stats(ctx)
	if err != nil {
		r.fail("stats before wave 2: %v", err)
		return
	}
	l := s.Ledger
	if l.Remaining != l.Stock-l.Active || s.Remaining != l.Remaining {
		r.fail("after expiry: remaining %d (stats %d) != stock %d - active %d: cancelled units not all back",
			l.Remaining, s.Remaining, l.Stock, l.Active)
	}
	r.note("wave 1: cancelled %d, returned %d, active %d, remaining %d", l.Cancelled, l.Returned, l.Active, l.Remaining)
	avail := l.Remaining
	users := make([]int64, opt.buyers)
	for i := range users {
		users[i] = int64(opt.buyers + 1 + i)
	}
	bs := r.wave(ctx, 2, users)
	acc := 0
	for _, b := range bs {
		if b.final == "202" {
			acc++
		}
	}
	r.note("wave 2: %d buyers, %d units available, %d accepted", len(bs), avail, acc)
	if int64(acc) < min(avail, int64(len(bs))) {
		r.fail("wave 2 bought %d of the %d returned units (%d buyers): returned units not sellable", acc, avail, len(bs))
	}
	if _, ok := r.settle(ctx, "after wave 2", true); !ok {
		r.fail("pipeline did not settle after wave 2 (deadline %s, or nothing moved for %s)", opt.settleTimeout, opt.stuck)
	}
}

// checkPaid (none-pay): every accepted order is paid in MySQL.
func (r *run) checkPaid(ctx context.Context, bs []*buyer) {
	var paid int
	if err := r.c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders WHERE item_id = ? AND status = 'paid'", r.cl.item).Scan(&paid); err != nil {
		r.fail("count paid: %v", err)
		return
	}
	acc := 0
	for _, b := range bs {
		if b.final == "202" {
			acc++
		}
	}
	if paid != acc {
		r.fail("%d orders paid in MySQL, %d accepted and paid by their buyers", paid, acc)
	}
}

type orderRow struct {
	id        int64
	user      int64
	status    string
	created   time.Time
	cancelled *time.Time
}

// check computes the row of the table and the reasons of a FAIL.
func (r *run) check(ctx context.Context) {
	res, cl := r.res, r.cl
	var rows []orderRow
	q, err := r.c.db.QueryContext(ctx, "SELECT order_id, user_id, status, created_at, cancelled_at FROM orders WHERE item_id = ?", cl.item)
	if err != nil {
		r.fail("read orders: %v", err)
		return
	}
	for q.Next() {
		var o orderRow
		if err := q.Scan(&o.id, &o.user, &o.status, &o.created, &o.cancelled); err != nil {
			q.Close()
			r.fail("read orders: %v", err)
			return
		}
		rows = append(rows, o)
	}
	q.Close()
	var stock, sold int64
	var limit int
	if err := r.c.db.QueryRowContext(ctx, "SELECT stock, sold, per_user_limit FROM items WHERE id = ?", cl.item).Scan(&stock, &sold, &limit); err != nil {
		r.fail("read item: %v", err)
		return
	}
	byID := map[string]orderRow{}
	activePerUser := map[int64]int{}
	var active int64
	for _, o := range rows {
		byID[strconv.FormatInt(o.id, 10)] = o
		if o.status == "pending" || o.status == "paid" {
			active++
			activePerUser[o.user]++
		}
	}
	res.inMySQL = len(byID)

	// What the buyers were told.
	owner := map[string]*buyer{}
	finals := map[string]int{}
	var noAnswer []string
	twoIDs, shared, wrongUser := 0, 0, 0
	for _, b := range r.buyers {
		finals[b.final]++
		if b.final == "no_answer" || strings.HasPrefix(b.final, "bad") {
			if len(noAnswer) < 5 {
				noAnswer = append(noAnswer, fmt.Sprintf("user %d: %s (last %s)", b.user, b.final, b.lastSeen))
			}
		}
		if b.final != "202" {
			continue
		}
		res.accepted++
		if len(b.orderIDs) > 1 {
			twoIDs++
		}
		if o, dup := owner[b.orderID]; dup && o != b {
			shared++
		}
		owner[b.orderID] = b
		o, ok := byID[b.orderID]
		if !ok {
			res.lost++
			continue
		}
		if o.user != b.user {
			wrongUser++
		}
	}
	var unknown []string
	for id := range byID {
		if owner[id] == nil {
			unknown = append(unknown, id)
		}
	}
	sort.Strings(unknown)
	res.phantom = len(unknown) + twoIDs + shared + wrongUser
	var fins []string
	for k, v := range finals {
		fins = append(fins, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(fins)
	r.note("final answers: %s", strings.Join(fins, " "))
	if n := countIf(r.buyers, func(b *buyer) bool { return b.tokenSoldOut }); n > 0 {
		r.note("%d buyers were refused sold_out by POST .../tokens (409, not listed for that route in openapi.yaml)", n)
	}
	if len(unknown) > 0 {
		r.fail("%d orders in MySQL no buyer got a 202 for (e.g. %s): buyers were told a refusal or got no answer", len(unknown), strings.Join(unknown[:min(3, len(unknown))], ", "))
	}
	if twoIDs > 0 {
		r.fail("%d buyers got two different order ids for one key", twoIDs)
	}
	if shared > 0 {
		r.fail("%d order ids were given to two buyers", shared)
	}
	if wrongUser > 0 {
		r.fail("%d orders in MySQL belong to another user than the buyer who got the 202", wrongUser)
	}
	if res.lost > 0 {
		var ex []string
		for _, b := range r.buyers {
			if b.final == "202" {
				if _, ok := byID[b.orderID]; !ok && len(ex) < 3 {
					ex = append(ex, fmt.Sprintf("%s (user %d, accepted +%.1fs)", b.orderID, b.user, b.answeredAt.Sub(r.c.t0).Seconds()))
				}
			}
		}
		r.fail("%d accepted orders (202) are not in MySQL, e.g. %s", res.lost, strings.Join(ex, ", "))
	}
	if n := finals["no_answer"]; n > 0 {
		r.fail("%d buyers got no final answer within %s, e.g. %s", n, opt.buyerDeadline, strings.Join(noAnswer, "; "))
	} else if len(noAnswer) > 0 {
		r.fail("buyers ended on answers outside the contract: %s", strings.Join(noAnswer, "; "))
	}
	if res.accepted == 0 {
		r.fail("no purchase was accepted: the sale never ran")
	}

	// Oversold, from every angle.
	over := map[string]int64{
		"active orders - stock":      active - stock,
		"items.sold - stock":         sold - stock,
		"max sampled active - stock": r.maxActive.Load() - stock,
		"max ledger oversold":        r.maxOversold.Load(),
	}
	if !r.sc.expiry {
		over["202s - stock"] = int64(res.accepted) - stock
	} else {
		over["max concurrent holders - stock"] = maxHolders(rows) - stock
	}
	if v, ok := cl.metric("seckill_oversold"); ok {
		over["seckill_oversold metric"] = int64(v)
	}
	var overWhy []string
	for k, v := range over {
		if v > res.oversold {
			res.oversold = v
		}
		if v > 0 {
			overWhy = append(overWhy, fmt.Sprintf("%s = %d", k, v))
		}
	}
	if len(overWhy) > 0 {
		sort.Strings(overWhy)
		r.fail("oversold: %s", strings.Join(overWhy, ", "))
	}
	if sold != active {
		r.fail("items.sold %d != active orders %d", sold, active)
	}

	// Per-user limit.
	var over2 []string
	for u, n := range activePerUser {
		if n > limit {
			res.overLim++
			if len(over2) < 3 {
				over2 = append(over2, fmt.Sprintf("user %d holds %d", u, n))
			}
		}
	}
	if res.overLim > 0 {
		r.fail("%d users over the per-user limit %d: %s", res.overLim, limit, strings.Join(over2, ", "))
	}

	// Drift, once idle.
	st, err := cl.stats(ctx)
	if err != nil {
		r.fail("final stats: %v", err)
	} else {
		l := st.Ledger
		res.drift = l.Drift
		if l.Drift != 0 {
			r.fail("drift %d after settle: stock %d, remaining %d, outbox %d, active %d, unreturned %d, shards %v",
				l.Drift, l.Stock, l.Remaining, l.Outbox, l.Active, l.Unreturned, l.Shards)
		}
		if l.Outbox != 0 {
			r.fail("outbox still holds %d reservations", l.Outbox)
		}
		if l.Oversold > 0 && res.oversold < l.Oversold {
			res.oversold = l.Oversold
		}
		if !r.sc.expiry && !r.sc.payments && l.Remaining > 0 {
			// No unit comes back without expiry: a sold_out answered while
			// units remain at the end was a wrong business answer.
			if n := finals["sold_out"]; n > 0 {
				r.fail("%d buyers were told sold_out, yet %d units remain unsold", n, l.Remaining)
				res.bad += n
			}
		}
		r.note("final ledger: %+v", *l)
		// The metric should agree once the reconciler has seen the idle state.
		var mv float64
		var mok bool
		_ = harness.WaitFor(ctx, 12*time.Second, 500*time.Millisecond, "drift metric", func() (bool, error) {
			mv, mok = cl.metric("seckill_stock_drift")
			return !mok || int64(mv) == l.Drift, nil
		})
		if mok && int64(mv) != l.Drift {
			r.fail("seckill_stock_drift metric reads %v, the ledger %d", mv, l.Drift)
			if res.drift == 0 {
				res.drift = int64(mv)
			}
		}
	}

	// Replays: the same key, every instance, the same 202.
	r.replays(ctx)

	n, kinds, ex := cl.badSummary()
	res.bad += n
	res.badKinds, res.badEx = kinds, ex
	res.hist = cl.histogram()
}

// maxHolders is the most orders holding a unit at one moment, an order
// holding one from its reservation until it is cancelled. Each interval
// starts 1s late: created_at is taken just before the reservation runs in
// Redis, and the tolerance keeps that gap from counting as an oversell.
func maxHolders(rows []orderRow) int64 {
	type ev struct {
		t time.Time
		d int
	}
	var evs []ev
	for _, o := range rows {
		start := o.created.Add(time.Second)
		if o.cancelled != nil {
			if !o.cancelled.After(start) {
				continue
			}
			evs = append(evs, ev{*o.cancelled, -1})
		}
		evs = append(evs, ev{start, +1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t.Equal(evs[j].t) {
			return evs[i].d < evs[j].d
		}
		return evs[i].t.Before(evs[j].t)
	})
	var cur, best int64
	for _, e := range evs {
		cur += int64(e.d)
		best = max(best, cur)
	}
	return best
}

// replays re-sends a sample of accepted purchases to every live instance.
func (r *run) replays(ctx context.Context) {
	var acc []*buyer
	for _, b := range r.buyers {
		if b.final == "202" {
			acc = append(acc, b)
		}
	}
	if len(acc) == 0 {
		return
	}
	step := max(1, len(acc)/opt.replaySample)
	var sample []*buyer
	for i := 0; i < len(acc) && len(sample) < opt.replaySample; i += step {
		sample = append(sample, acc[i])
	}
	live := r.c.liveApps()
	if r.sc.crossReplay {
		// The replays run after sell-out: every key's answer then comes
		// from Redis (or the instance's memory), never from stock.
		if s, err := r.cl.stats(ctx); err != nil {
			r.fail("cross-instance replay: stats: %v", err)
		} else if s.Remaining != 0 {
			r.fail("cross-instance replay: the item is not sold out (%d units remain), the replays would not test answers after sell-out", s.Remaining)
		}
	}
	type mm struct {
		b    *buyer
		a    *app
		what string
	}
	var mu sync.Mutex
	var bad []mm
	var sameOK, otherOK atomic.Int64
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for _, b := range sample {
		for _, a := range live {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				got, ok := r.cl.replay(ctx, b, a)
				switch {
				case !ok:
					mu.Lock()
					bad = append(bad, mm{b, a, got})
					mu.Unlock()
				case a.idx == b.acceptApp:
					sameOK.Add(1)
				default:
					otherOK.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if r.sc.crossReplay {
		if len(live) < 2 {
			r.fail("cross-instance replay: %d live instance(s), need 2", len(live))
		} else if otherOK.Load() == 0 {
			r.fail("cross-instance replay: no replay on another instance than the accepting one returned the same 202")
		}
	}
	if len(bad) == 0 {
		r.note("retry-same-answer: %d accepted keys replayed on %d instance(s), all the same 202 (%d on the accepting instance, %d on the other)",
			len(sample), len(live), sameOK.Load(), otherOK.Load())
		return
	}
	byWhat := map[string]int{}
	sameApp, otherApp := 0, 0
	byAccept := map[int]int{}
	for _, m := range bad {
		byWhat[m.what]++
		byAccept[m.b.acceptApp]++
		if m.a.idx == m.b.acceptApp {
			sameApp++
		} else {
			otherApp++
		}
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].b.user < bad[j].b.user })
	var acc2, ex []string
	for _, a := range r.c.apps {
		if n := byAccept[a.idx]; n > 0 {
			acc2 = append(acc2, fmt.Sprintf("app%d %d", a.idx, n))
		}
	}
	for _, m := range bad[:min(5, len(bad))] {
		ex = append(ex, fmt.Sprintf("user %d order %s (accepted by app%d at +%.1fs) on app%d: %s",
			m.b.user, m.b.orderID, m.b.acceptApp, m.b.answeredAt.Sub(r.c.t0).Seconds(), m.a.idx, m.what))
	}
	r.note("retry-same-answer mismatches by accepting instance: %s; e.g. %s", strings.Join(acc2, ", "), strings.Join(ex, "; "))
	var ws []string
	for k, v := range byWhat {
		if strings.HasPrefix(k, "202 ") {
			k = "202 with another order id"
		}
		ws = append(ws, fmt.Sprintf("%d x %s", v, k))
	}
	sort.Strings(ws)
	r.res.phantom += len(bad)
	r.fail("retry-same-answer: %d of %d replays of accepted keys did not return the same 202 (%s; %d on the accepting instance, %d on another; counted in phantom)",
		len(bad), len(sample)*len(live), strings.Join(ws, ", "), sameApp, otherApp)
}

func countIf(bs []*buyer, f func(*buyer) bool) int {
	n := 0
	for _, b := range bs {
		if f(b) {
			n++
		}
	}
	return n
}
