package main

// The stall scenarios: a dependency that does not answer (a blackhole
// partition of its proxy, or a Redis stopped with SIGSTOP) rather than one
// that is gone. What they measure besides the invariants: how long answers
// take before the fault and during it, and how soon sales come back after
// the heal (the answer-time table).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"seckill/bench/internal/harness"
)

// duringSkip: the "during" window starts this long after the fault began,
// so requests already under way when it began do not count.
const duringSkip = time.Second

// envErrs are the bad FAULTS_* settings, reported by runAll.
var envErrs []string

// envDur is the duration in the environment variable name, else def.
func envDur(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		envErrs = append(envErrs, fmt.Sprintf("%s=%q: not a positive duration", name, v))
		return def
	}
	return d
}

// sample is one request as the client saw it.
type sample struct {
	op         string // token, purchase, item, order, pay
	start, end time.Time
	status     int // 0: no answer (timeout, neterr)
	code       string
	what       string // "503", "timeout", ...
}

func opOf(method, path string) string {
	switch {
	case strings.HasSuffix(path, "/tokens"):
		return "token"
	case strings.HasSuffix(path, "/purchase"):
		return "purchase"
	case strings.HasSuffix(path, "/pay"):
		return "pay"
	case strings.HasPrefix(path, "/api/v1/orders/"):
		return "order"
	case strings.HasPrefix(path, "/api/v1/items/"):
		return "item"
	}
	return method + " " + path
}

func (cl *client) record(op string, start time.Time, r reply) {
	s := sample{op: op, start: start, end: time.Now(), status: r.status, code: r.code}
	switch {
	case r.err != nil && r.timeout:
		s.what = "timeout"
	case r.err != nil:
		s.what = "neterr"
	default:
		s.what = strconv.Itoa(r.status)
	}
	cl.mu.Lock()
	cl.samples = append(cl.samples, s)
	cl.mu.Unlock()
}

func (cl *client) samplesCopy() []sample {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]sample(nil), cl.samples...)
}

// acceptRef is an accepted order, for the readers.
type acceptRef struct {
	orderID string
	jwt     string
}

func (cl *client) addAccepted(b *buyer) {
	cl.mu.Lock()
	cl.accepted = append(cl.accepted, acceptRef{b.orderID, b.jwt})
	cl.mu.Unlock()
}

func (cl *client) pickAccepted(i int) (acceptRef, bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.accepted) == 0 {
		return acceptRef{}, false
	}
	return cl.accepted[i%len(cl.accepted)], true
}

// readers run the read load of a stall scenario until ctx ends: each of
// opt.readers loops over the product page and the status of an order
// accepted so far, opt.readPause apart. Their answers are judged like the
// buyers' (a 404 for an accepted order is a lie).
func (r *run) readers(ctx context.Context) {
	var wg sync.WaitGroup
	for k := range opt.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := r.c.apps[k%len(r.c.apps)]
			for i := k; ctx.Err() == nil; i += opt.readers {
				r.cl.readItem(ctx, a)
				if ref, ok := r.cl.pickAccepted(i * 7919); ok && ctx.Err() == nil {
					r.cl.readOrder(ctx, a, ref)
				}
				sleepCtx(ctx, opt.readPause)
			}
		}()
	}
	wg.Wait()
}

func (cl *client) readItem(ctx context.Context, a *app) {
	r := cl.do(ctx, a, "GET", fmt.Sprintf("/api/v1/items/%d", cl.item), "", nil)
	if ctx.Err() != nil && r.err != nil {
		return // the load ended, not an answer
	}
	if _, ok := cl.judgeRetryable("item", a, r); ok {
		return
	}
	var it struct {
		ID int64 `json:"id"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &it) != nil || it.ID != cl.item {
		cl.note("item", a, r, true, "product page of an existing item is not 200 with the item")
		return
	}
	cl.note("item", a, r, false, "")
}

func (cl *client) readOrder(ctx context.Context, a *app, ref acceptRef) {
	r := cl.do(ctx, a, "GET", "/api/v1/orders/"+ref.orderID, ref.jwt, nil)
	if ctx.Err() != nil && r.err != nil {
		return
	}
	if _, ok := cl.judgeRetryable("order", a, r); ok {
		return
	}
	var o struct {
		OrderID string `json:"order_id"`
		Status  string `json:"status"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &o) != nil || o.OrderID != ref.orderID ||
		(o.Status != "pending" && o.Status != "paid") {
		cl.note("order", a, r, true, "GET of an accepted order is not 200 pending/paid")
		return
	}
	cl.note("order", a, r, false, "")
}

// prefetchTokens: every other one of the first -stock buyers of a stall
// scenario gets its purchase token before the sale (as from a waiting
// room), so that both the purchases and the token requests meet the fault.
func (r *run) prefetchTokens(ctx context.Context, users []int64) {
	pre := map[int64]string{}
	var mu sync.Mutex
	sem := make(chan struct{}, opt.concurrency)
	var wg sync.WaitGroup
	for i := 0; i < min(len(users), opt.stock); i += 2 {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b := &buyer{user: users[i], jwt: signJWT(r.c.secret, users[i]), home: i}
			inst := b.home % len(r.c.apps)
			if r.cl.getToken(ctx, b, &inst) {
				mu.Lock()
				pre[b.user] = b.token
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.pre = pre
	r.c.logf("%d buyers hold a token before the sale", len(pre))
}

// paceOf is the spacing of the first -stock buyers of a stall scenario's
// wave: spread over lead + fault + tail, so the fault comes mid-sale and
// units remain after the heal (sales back after heal can be measured).
func (r *run) paceOf() time.Duration {
	if r.sc.stall <= 0 || opt.stock <= 0 {
		return 0
	}
	return (opt.stallLead + r.sc.stall + opt.stallTail) / time.Duration(opt.stock)
}

// stallFault waits -stall-lead from the start of the sale, cuts, waits d,
// heals. Redis stalls first note the units left, so that a sold_out given
// during the stall can be told from a true one.
func stallFault(d time.Duration, what func(r *run) string, cut, heal func(r *run) error) func(ctx context.Context, r *run) error {
	return func(ctx context.Context, r *run) error {
		sleepCtx(ctx, opt.stallLead)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s, err := r.cl.stats(ctx); err == nil {
			r.remainingAtBegin.Store(s.Remaining)
			r.note("at the fault: %d units left", s.Remaining)
		} else {
			r.remainingAtBegin.Store(-1)
			r.note("at the fault: stats: %v", err)
		}
		r.begin(what(r))
		if err := cut(r); err != nil {
			return err
		}
		sleepCtx(ctx, d)
		err := heal(r)
		r.end("healed")
		return err
	}
}

func partitionOf(d time.Duration, name string, px func(c *cluster) *proxy) func(ctx context.Context, r *run) error {
	return stallFault(d,
		func(r *run) string { return fmt.Sprintf("partition %s for %s (blackhole proxy)", name, d) },
		func(r *run) error { px(r.c).partition(); return nil },
		func(r *run) error {
			p := px(r.c)
			r.note("%s proxy held %d connections at the heal", name, p.held())
			p.heal()
			return nil
		})
}

func redisPause(d time.Duration) func(ctx context.Context, r *run) error {
	return stallFault(d,
		func(r *run) string { return fmt.Sprintf("SIGSTOP redis (pid %d) for %s", r.c.redis.Pid(), d) },
		func(r *run) error { return r.c.redis.Signal(syscall.SIGSTOP) },
		func(r *run) error { return r.c.redis.Signal(syscall.SIGCONT) })
}

// stallScenarios: Redis, MariaDB and the broker partitioned, Redis paused.
func stallScenarios() []*scenario {
	return []*scenario{
		{name: "redis-partition", apps: 1, stall: opt.redisPartition, redisStall: true,
			fault: partitionOf(opt.redisPartition, "redis", func(c *cluster) *proxy { return c.px })},
		{name: "redis-pause", apps: 1, stall: opt.redisPause, redisStall: true,
			fault: redisPause(opt.redisPause)},
		{name: "mysql-partition", apps: 1, stall: opt.mysqlPartition,
			fault: partitionOf(opt.mysqlPartition, "mysql", func(c *cluster) *proxy { return c.mpx })},
		{name: "kafka-partition", apps: 1, stall: opt.kafkaPartition,
			fault: partitionOf(opt.kafkaPartition, "kafka", func(c *cluster) *proxy { return c.kpx })},
	}
}

// checkStall: in a stall scenario no buyer ends on a refusal that only a
// dependency could have given without it; while Redis stalls, no business
// answer about stock, limits or tokens can be true (the units left at the
// fault were > 0, so sold_out cannot have been known either).
func (r *run) checkStall(ctx context.Context) {
	if r.sc.stall <= 0 {
		return
	}
	// Users who hold an order of the item (any status).
	held := map[int64]bool{}
	q, err := r.c.db.QueryContext(ctx, "SELECT DISTINCT user_id FROM orders WHERE item_id = ?", r.cl.item)
	if err != nil {
		r.fail("read orders' users: %v", err)
		return
	}
	for q.Next() {
		var u int64
		if err := q.Scan(&u); err == nil {
			held[u] = true
		}
	}
	q.Close()
	var ex []string
	n := 0
	for _, b := range r.buyers {
		switch b.final {
		case "202", "sold_out", "no_answer":
			continue
		case "purchase_limit":
			if held[b.user] {
				continue
			}
		}
		if strings.HasPrefix(b.final, "bad") {
			continue // counted already
		}
		n++
		if len(ex) < 3 {
			ex = append(ex, fmt.Sprintf("user %d: %s", b.user, b.final))
		}
	}
	if n > 0 {
		r.res.bad += n
		r.fail("%d buyers ended on a refusal no state justifies (each bought once with a token the service issued; a limit without an order): %s",
			n, strings.Join(ex, ", "))
	}
	if !r.sc.redisStall {
		return
	}
	r.mu.Lock()
	fs, fe := r.faultStart, r.faultEnd
	r.mu.Unlock()
	left := r.remainingAtBegin.Load()
	n, ex = 0, nil
	for _, s := range r.cl.samplesCopy() {
		if (s.op != "purchase" && s.op != "token") || s.start.Before(fs) || !s.end.Before(fe) {
			continue
		}
		switch s.code {
		case "purchase_limit", "token_invalid", "sale_ended", "sale_not_started":
		case "sold_out":
			if left <= 0 {
				continue
			}
		default:
			continue
		}
		n++
		if len(ex) < 3 {
			ex = append(ex, fmt.Sprintf("%s %d %s at +%.1fs", s.op, s.status, s.code, s.end.Sub(fs).Seconds()))
		}
	}
	if n > 0 {
		r.res.bad += n
		r.fail("%d business answers while Redis stalled (sent after the fault began, answered before the heal; %d units were left at the fault), e.g. %s",
			n, left, strings.Join(ex, "; "))
	}
}

// ---------------------------------------------------------------- the table

// latRow is one line of the answer-time table.
type latRow struct {
	op               string
	nBefore, nDuring int
	p50b, p99b       time.Duration
	p50d, p99d       time.Duration
	statuses         string // answers during the fault by status
	salesBack        string // purchase rows only
}

// opGroups are the table's rows per scenario: the requests of each group.
var opGroups = []struct {
	name string
	ops  []string
}{
	{"purchase", []string{"purchase"}},
	{"token", []string{"token"}},
	{"read", []string{"item", "order"}},
	{"pay", []string{"pay"}},
}

// latencies computes the scenario's rows: before = sent from the start of
// the sale and answered before the fault began; during = sent from 1 s
// after it began until the heal. sales back = the heal to the first 202 of
// a purchase sent after it.
func (r *run) latencies(saleStart time.Time) {
	r.mu.Lock()
	fs, fe := r.faultStart, r.faultEnd
	r.mu.Unlock()
	if fs.IsZero() || fe.IsZero() {
		return
	}
	all := r.cl.samplesCopy()
	back := time.Duration(-1)
	for _, s := range all {
		if s.op == "purchase" && s.status == 202 && !s.start.Before(fe) {
			if d := s.end.Sub(fe); back < 0 || d < back {
				back = d
			}
		}
	}
	for _, g := range opGroups {
		var before, during []time.Duration
		st := map[string]int{}
		for _, s := range all {
			if !contains(g.ops, s.op) {
				continue
			}
			switch {
			case !s.start.Before(saleStart) && s.end.Before(fs):
				before = append(before, s.end.Sub(s.start))
			case !s.start.Before(fs.Add(duringSkip)) && s.start.Before(fe):
				during = append(during, s.end.Sub(s.start))
				st[s.what]++
			}
		}
		if len(before)+len(during) == 0 {
			continue
		}
		row := latRow{op: g.name, nBefore: len(before), nDuring: len(during), salesBack: "-"}
		row.p50b, row.p99b = pct(before, 50), pct(before, 99)
		row.p50d, row.p99d = pct(during, 50), pct(during, 99)
		row.statuses = statusCounts(st)
		if g.name == "purchase" {
			if back >= 0 {
				row.salesBack = fmt.Sprintf("%.1f", back.Seconds())
			} else {
				row.salesBack = "none"
			}
		}
		r.res.lat = append(r.res.lat, row)
	}
}

// pct is the nearest-rank p-th percentile; -1 for no samples.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := (p*len(s) + 99) / 100
	return s[max(k, 1)-1]
}

func statusCounts(st map[string]int) string {
	if len(st) == 0 {
		return "-"
	}
	var ks []string
	for k := range st {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if st[ks[i]] != st[ks[j]] {
			return st[ks[i]] > st[ks[j]]
		}
		return ks[i] < ks[j]
	})
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%s:%d", k, st[k]))
	}
	return strings.Join(out, " ")
}

func ms(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond))
	}
}

// printLatencies prints the answer-time table of the scenarios with a fault.
func printLatencies(w *os.File, rs []*result) {
	rows := [][]string{{"scenario", "requests", "before n", "before p50/p99 ms", "during n", "during p50/p99 ms", "answers during", "sales back after heal s"}}
	for _, r := range rs {
		for _, l := range r.lat {
			rows = append(rows, []string{r.name, l.op, strconv.Itoa(l.nBefore), ms(l.p50b) + "/" + ms(l.p99b),
				strconv.Itoa(l.nDuring), ms(l.p50d) + "/" + ms(l.p99d), l.statuses, l.salesBack})
		}
	}
	if len(rows) == 1 {
		return
	}
	fmt.Fprintln(w)
	harness.PrintTable(w, rows)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "answer times: before = requests sent since the sale began and answered before the fault; during = sent from %s after the fault began until the heal (a timeout counts as its wait); answers during by status; sales back after heal = heal -> first 202 of a purchase sent after the heal (none: no 202 came, e.g. sold out)\n", duringSkip)
}
