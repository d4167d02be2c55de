package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"seckill/bench/internal/harness"
)

// redisSnap is one INFO reading of the private Redis.
type redisSnap struct {
	at    time.Time
	total int64            // total_commands_processed
	calls map[string]int64 // commandstats calls per command
}

// snapRedis reads INFO stats and commandstats in one command. That INFO
// is counted in the next reading, which subtract removes.
func (c *cluster) snapRedis(ctx context.Context) (redisSnap, error) {
	s, err := c.rdb.Info(ctx, "stats", "commandstats").Result()
	if err != nil {
		return redisSnap{}, fmt.Errorf("redis INFO: %w", err)
	}
	r := redisSnap{at: time.Now(), total: -1, calls: map[string]int64{}}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			r.total, _ = strconv.ParseInt(v, 10, 64)
		}
		if rest, ok := strings.CutPrefix(line, "cmdstat_"); ok {
			name, fields, _ := strings.Cut(rest, ":")
			for _, f := range strings.Split(fields, ",") {
				if v, ok := strings.CutPrefix(f, "calls="); ok {
					r.calls[name], _ = strconv.ParseInt(v, 10, 64)
				}
			}
		}
	}
	if r.total < 0 {
		return r, fmt.Errorf("redis INFO: no total_commands_processed")
	}
	return r, nil
}

// redisDelta is what the product sent Redis between two readings: this
// tool's own first INFO is taken out.
type redisDelta struct {
	secs  float64
	total int64
	calls map[string]int64
}

func subtract(a, b redisSnap) redisDelta {
	d := redisDelta{secs: b.at.Sub(a.at).Seconds(), total: b.total - a.total - 1, calls: map[string]int64{}}
	for k, v := range b.calls {
		if n := v - a.calls[k]; n > 0 {
			d.calls[k] = n
		}
	}
	if d.calls["info"] > 0 {
		d.calls["info"]--
		if d.calls["info"] == 0 {
			delete(d.calls, "info")
		}
	}
	return d
}

func (d redisDelta) rate() float64 { return float64(d.total) / d.secs }

// top lists the n commands with most calls as "cmd rate/s".
func (d redisDelta) top(n int) string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range d.calls {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || (all[i].v == all[j].v && all[i].k < all[j].k) })
	var parts []string
	for i, e := range all {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f/s", e.k, float64(e.v)/d.secs))
	}
	return strings.Join(parts, ", ")
}

// window is one measurement over a fixed time.
type window struct {
	redis    redisDelta
	mysqlCPU float64 // fraction of a core
	appCPU   float64 // all instances, fraction of a core
	dirty    int64   // InnoDB dirty pages at the start
}

// measure reads Redis, mariadbd's and the instances' CPU over d.
func (c *cluster) measure(ctx context.Context, d time.Duration) (window, error) {
	w := window{dirty: c.dirtyPages(ctx)}
	m0, a0, err := c.cpu()
	if err != nil {
		return w, err
	}
	r0, err := c.snapRedis(ctx)
	if err != nil {
		return w, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return w, ctx.Err()
	case <-time.After(d):
	}
	r1, err := c.snapRedis(ctx)
	if err != nil {
		return w, err
	}
	m1, a1, err := c.cpu()
	if err != nil {
		return w, err
	}
	secs := time.Since(t0).Seconds()
	w.redis = subtract(r0, r1)
	w.mysqlCPU = (m1 - m0) / secs
	w.appCPU = (a1 - a0) / secs
	return w, nil
}

// cpu is the CPU seconds so far of mariadbd and of all the instances.
func (c *cluster) cpu() (mysql, apps float64, err error) {
	if mysql, err = cpuSeconds(c.mysql.Pid()); err != nil {
		return 0, 0, err
	}
	apps, err = c.appCPU()
	return mysql, apps, err
}

// stabilize probes in short windows until two probes in a row agree
// (the Redis rate and, with cpu, mariadbd's CPU), or the settle timeout
// passed; it says which.
func (c *cluster) stabilize(ctx context.Context, what string, cpu bool) string {
	probe := opt.probe
	deadline := time.Now().Add(opt.settleTimeout)
	var prev *window
	n := 0
	for {
		w, err := c.measure(ctx, probe)
		if err != nil {
			return "probe failed: " + err.Error()
		}
		n++
		if opt.v {
			progress("%s: probe %d: redis %.1f cmd/s, mariadbd %.2f%%, seckill %.2f%% of a core", what, n,
				w.redis.rate(), 100*w.mysqlCPU, 100*w.appCPU)
		}
		if prev != nil && near(prev.redis.rate(), w.redis.rate(), 0.15, 2) &&
			(!cpu || near(prev.mysqlCPU, w.mysqlCPU, 0.25, 0.004)) {
			return fmt.Sprintf("stable after %d probes of %s", n, probe)
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("NOT stable after %d probes of %s (settle timeout)", n, probe)
		}
		prev = &w
	}
}

// near: a and b differ by at most rel of the larger, or by abs.
func near(a, b, rel, abs float64) bool {
	d := math.Abs(a - b)
	return d <= abs || d <= rel*math.Max(math.Abs(a), math.Abs(b))
}

// ---------------------------------------------------------------- MariaDB

func (c *cluster) status(ctx context.Context, name string) int64 {
	var k string
	var v int64
	// SHOW takes no placeholders; name is a constant of this file.
	if err := c.pfs.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&k, &v); err != nil {
		return -1
	}
	return v
}

func (c *cluster) dirtyPages(ctx context.Context) int64 {
	return c.status(ctx, "Innodb_buffer_pool_pages_dirty")
}

// waitClean waits (deadline: the settle timeout) until InnoDB purged the
// undo history of a bulk load and stopped flushing its pages, so the
// window measures the idle server, not the tail of the load.
func (c *cluster) waitClean(ctx context.Context) error {
	last, since := int64(-1), time.Now()
	return harness.WaitFor(ctx, opt.settleTimeout, time.Second, "InnoDB purged and flushed", func() (bool, error) {
		dirty := c.dirtyPages(ctx)
		var hist int64
		err := c.pfs.QueryRowContext(ctx,
			"SELECT COUNT FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'").Scan(&hist)
		if err != nil {
			return false, err
		}
		if dirty != last {
			last, since = dirty, time.Now()
		}
		if opt.v {
			progress("%s: InnoDB dirty pages %d, history length %d", c.name, dirty, hist)
		}
		if hist > 100 || time.Since(since) < 5*time.Second {
			return false, fmt.Errorf("dirty pages %d (changed %.0fs ago), history length %d", dirty, time.Since(since).Seconds(), hist)
		}
		return true, nil
	})
}

// queryCost is one statement shape the product ran during a diagnosis
// window, and what one run of it costs when replayed.
type queryCost struct {
	norm, example string
	calls         int64
	replayed      bool
	msPerCall     float64 // wall time of a replay
	cpuMsPerCall  float64 // CPU of the mariadbd thread that ran the replay
	readsPerCall  float64 // handler row reads (index and table)
}

// cpuPerSec is the estimated mariadbd CPU the shape costs, in ms per second.
func (q queryCost) cpuPerSec(secs float64) float64 { return float64(q.calls) / secs * q.cpuMsPerCall }

var (
	logEntry = regexp.MustCompile(`^(?:\d{6}\s+\d{1,2}:\d{2}:\d{2})?\s+(\d+) ([A-Za-z_ ]+?)\t(.*)$`)
	litStr   = regexp.MustCompile(`'(?:[^'\\]|\\.)*'`)
	litNum   = regexp.MustCompile(`\b\d+(?:\.\d+)?\b`)
	litList  = regexp.MustCompile(`\(\s*\?(?:\s*,\s*\?)*\s*\)`)
)

func normalize(q string) string {
	q = litStr.ReplaceAllString(q, "?")
	q = litNum.ReplaceAllString(q, "?")
	q = litList.ReplaceAllString(q, "(?)")
	return strings.Join(strings.Fields(q), " ")
}

// diagnose turns the general log on for d (after the measurement window:
// logging costs CPU itself), counts the statements the product ran by
// shape, and replays every SELECT shape three times on a connection of
// its own to measure its handler reads and the CPU of the server thread
// that ran it. The estimate calls/s x CPU ms/call says which query the idle
// CPU goes to.
func (c *cluster) diagnose(ctx context.Context, d time.Duration, tag string) ([]queryCost, float64, error) {
	conn, err := c.pfs.Conn(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	var me int64
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&me); err != nil {
		return nil, 0, err
	}
	path := filepath.Join(c.dir, "general-"+tag+".log")
	for _, q := range []string{"SET GLOBAL log_output = 'FILE'", "SET GLOBAL general_log_file = '" + path + "'", "SET GLOBAL general_log = 1"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", q, err)
		}
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "SET GLOBAL general_log = 0"); err != nil {
		return nil, 0, err
	}
	secs := time.Since(t0).Seconds()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	byNorm := map[string]*queryCost{}
	var cur *strings.Builder
	var curConn int64
	flush := func() {
		if cur == nil || curConn == me {
			cur = nil
			return
		}
		ex := strings.TrimSpace(cur.String())
		n := normalize(ex)
		q := byNorm[n]
		if q == nil {
			q = &queryCost{norm: n}
			byNorm[n] = q
		}
		q.calls++
		q.example = ex
		cur = nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if m := logEntry.FindStringSubmatch(line); m != nil {
			flush()
			if m[2] == "Query" || m[2] == "Execute" {
				curConn, _ = strconv.ParseInt(m[1], 10, 64)
				cur = &strings.Builder{}
				cur.WriteString(m[3])
			}
			continue
		}
		if cur != nil {
			cur.WriteString("\n" + line)
		}
	}
	flush()
	db, err := c.db.Conn(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	reads := func() (int64, error) {
		rows, err := db.QueryContext(ctx, "SHOW SESSION STATUS LIKE 'Handler_read%'")
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		var sum int64
		for rows.Next() {
			var k string
			var v int64
			if err := rows.Scan(&k, &v); err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, rows.Err()
	}
	a, err1 := reads()
	bb, err2 := reads()
	if err := errors.Join(err1, err2); err != nil {
		return nil, 0, err
	}
	overhead := bb - a // what one SHOW STATUS reads itself
	// The server thread of this connection (one thread per connection),
	// whose CPU is the replay's alone.
	var tid int
	if err := db.QueryRowContext(ctx, "SELECT TID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()").Scan(&tid); err != nil {
		return nil, 0, fmt.Errorf("replay thread id: %w", err)
	}
	threadCPU := func() (float64, error) {
		return cpuSeconds(c.mysql.Pid(), tid)
	}
	var out []queryCost
	for _, q := range byNorm {
		if strings.HasPrefix(strings.ToUpper(q.norm), "SELECT") {
			h0, err1 := reads()
			c0, err2 := threadCPU()
			if err := errors.Join(err1, err2); err != nil {
				return nil, 0, err
			}
			// At least 3 runs, and enough for the CPU clock's ticks.
			t := time.Now()
			runs := 0
			for runs < 3 || (time.Since(t) < 300*time.Millisecond && runs < 200) {
				rows, err := db.QueryContext(ctx, q.example)
				if err != nil {
					return nil, 0, fmt.Errorf("replay %s: %w", trunc(q.example, 80), err)
				}
				for rows.Next() {
				}
				rows.Close()
				runs++
			}
			q.msPerCall = float64(time.Since(t).Microseconds()) / 1000 / float64(runs)
			c1, err1 := threadCPU()
			h1, err2 := reads()
			if err := errors.Join(err1, err2); err != nil {
				return nil, 0, err
			}
			q.cpuMsPerCall = (c1 - c0) * 1000 / float64(runs)
			q.readsPerCall = float64(h1-h0-overhead) / float64(runs)
			q.replayed = true
		}
		out = append(out, *q)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].cpuPerSec(secs), out[j].cpuPerSec(secs)
		if a != b {
			return a > b
		}
		if out[i].readsPerCall*float64(out[i].calls) != out[j].readsPerCall*float64(out[j].calls) {
			return out[i].readsPerCall*float64(out[i].calls) > out[j].readsPerCall*float64(out[j].calls)
		}
		return out[i].calls > out[j].calls
	})
	return out, secs, nil
}

// ---------------------------------------------------------------- orders

// insertOrders inserts orders [from, to) of the synthetic history straight
// into MySQL, spread over items round robin, and moves each item's stock
// and sold by its new paid orders first (so the books show units in
// flight for a moment, never an oversell). Order n is cancelled (its unit
// back and sold again: returned) for the first cancelled‰ of every 1000,
// paid otherwise; all of it weeks old.
func (c *cluster) insertOrders(ctx context.Context, items []int64, from, to int) error {
	paidPer := map[int64]int64{}
	for n := from; n < to; n++ {
		if !cancelledN(n) {
			paidPer[items[n%len(items)]]++
		}
	}
	for _, it := range items {
		if _, err := c.db.ExecContext(ctx, "UPDATE items SET stock = stock + ?, sold = sold + ? WHERE id = ?",
			paidPer[it], paidPer[it], it); err != nil {
			return fmt.Errorf("update item %d: %w", it, err)
		}
	}
	const chunk = 2000
	jobs := make(chan [2]int)
	errs := make(chan error, 4)
	base := time.Now().Add(-30 * 24 * time.Hour).UTC()
	ts := func(t time.Time) string { return "'" + t.Format("2006-01-02 15:04:05.000") + "'" }
	for w := 0; w < 4; w++ {
		go func() {
			var first error
			var b strings.Builder
			for j := range jobs {
				if first != nil {
					continue
				}
				b.Reset()
				b.WriteString("INSERT INTO orders (order_id, item_id, user_id, shard, status, created_at, expires_at, paid_at, cancelled_at, stock_returned) VALUES ")
				for n := j[0]; n < j[1]; n++ {
					if n > j[0] {
						b.WriteByte(',')
					}
					created := base.Add(time.Duration(n) * 2 * time.Millisecond)
					expires := created.Add(15 * time.Minute)
					if cancelledN(n) {
						fmt.Fprintf(&b, "(%d,%d,%d,%d,'cancelled',%s,%s,NULL,%s,1)", orderBase+n, items[n%len(items)],
							userBase+n, n%8, ts(created), ts(expires), ts(expires))
					} else {
						fmt.Fprintf(&b, "(%d,%d,%d,%d,'paid',%s,%s,%s,NULL,0)", orderBase+n, items[n%len(items)],
							userBase+n, n%8, ts(created), ts(expires), ts(created.Add(30*time.Second)))
					}
				}
				if _, err := c.db.ExecContext(ctx, b.String()); err != nil {
					first = fmt.Errorf("insert orders %d..%d: %w", j[0], j[1], err)
				}
			}
			errs <- first
		}()
	}
	t := time.Now()
	for n := from; n < to; n += chunk {
		if ctx.Err() != nil {
			break
		}
		jobs <- [2]int{n, min(n+chunk, to)}
		if opt.v && (n-from)%(100*chunk) == 0 && n > from {
			progress("%s: inserted %d of %d orders (%.0f/s)", c.name, n-from, to-from, float64(n-from)/time.Since(t).Seconds())
		}
	}
	close(jobs)
	var first error
	for w := 0; w < 4; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first == nil {
		first = ctx.Err()
	}
	return first
}

const (
	orderBase = 7_000_000_000_000 // far below the product's snowflake ids
	userBase  = 5_000_000
)

func cancelledN(n int) bool { return n%1000 < opt.cancelledPermille }

// expectCounts are the paid and cancelled orders of each item after
// orders [0, n).
func expectCounts(items []int64, n int) map[int64][2]int64 {
	out := map[int64][2]int64{}
	for i := 0; i < n; i++ {
		it := items[i%len(items)]
		e := out[it]
		if cancelledN(i) {
			e[1]++
		} else {
			e[0]++
		}
		out[it] = e
	}
	return out
}

func countOrders(ctx context.Context, db *sql.DB) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders").Scan(&n)
	return n, err
}
