// Command idlecost measures what an idle seckill costs, against the history
// it carries (issue 11), on private servers it starts itself (Redis,
// MariaDB, the kfake broker process, `seckill serve` built with -tags
// nodev), on ports of its own:
//
//  1. Redis commands/s of two idle instances with 1 item, then with
//     -items items of 8 shards each, every item sold out, paid and settled
//     (through the API). Target: ratio <= 1.5.
//
//  2. mariadbd CPU (utime+stime from /proc) of one idle instance with
//     -orders-small stored orders, then -orders (inserted straight into
//     MySQL, consistent with the items so the reconciler's drift stays 0).
//     Target: ratio <= 1.5. With -diag a second window with the general log
//     on, and a replay of each SELECT seen, say which query costs what.
//
//  3. Redis commands per GET /api/v1/orders/{id} with -items items, for an
//     unknown id and for a pending one (the broker stopped, so it stays in
//     the outbox), less the idle rate measured right before, over
//     -lookup-rounds rounds of -lookups lookups. Target <= 3.
//
// Every wait is a condition with a deadline (-settle-timeout); before each
// window the rates must agree over two -probe probes in a row. The binary is
// built at start from the working tree (-src HEAD or another revision builds
// a git archive of it instead). Ports: -port-base .. +4 and +10 .. +13.
//
//	go run ./bench/cmd/idlecost                       # the full figures, about 7 minutes on 2 cores
//	go run ./bench/cmd/idlecost -window 10s -items 50 -orders 20000 -v
//	go run ./bench/cmd/idlecost -parts 2 -cancelled-permille 0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"seckill/bench/internal/harness"
)

var opt struct {
	window, probe, settleTimeout time.Duration
	items, stockPerItem          int
	orders, ordersSmall          int
	orderItems                   int
	cancelledPermille            int
	lookups, lookupRounds        int
	concurrency                  int
	portBase                     int
	bufferPool                   string
	diag, keep, v                bool
	diagTop                      int
	parts                        string
	cache                        string
	src                          string
}

var bins harness.Binaries

// procs are the processes of every part; main kills what still runs.
var procs = &harness.Group{Tag: "idlecost", OnCrash: func(p *harness.Proc) {
	progress("WARNING: %s (pid %d) exited by itself: %v; log %s", p.Name, p.Pid(), p.ExitErr(), p.LogPath)
}}

func main() {
	flag.DurationVar(&opt.window, "window", 20*time.Second, "measurement window (a multiple of the reconciler's 5s interval is best)")
	flag.DurationVar(&opt.probe, "probe", 5*time.Second, "length of the probes that decide the system settled before a window")
	flag.DurationVar(&opt.settleTimeout, "settle-timeout", 3*time.Minute, "deadline of every wait (orders stored, items settled, rates steady, InnoDB clean)")
	flag.IntVar(&opt.items, "items", 1000, "items of part 1 (b) and part 3, 8 shards each")
	flag.IntVar(&opt.stockPerItem, "stock-per-item", 2, "units per item in part 1, each bought by another user and paid")
	flag.IntVar(&opt.orders, "orders", 1_000_000, "stored orders of part 2 (b)")
	flag.IntVar(&opt.ordersSmall, "orders-small", 1000, "stored orders of part 2 (a)")
	flag.IntVar(&opt.orderItems, "order-items", 1, "items the orders of part 2 belong to (round robin)")
	flag.IntVar(&opt.cancelledPermille, "cancelled-permille", 100, "part 2: of every 1000 orders this many are cancelled (unit returned), the rest paid")
	flag.IntVar(&opt.lookups, "lookups", 200, "order lookups per round in part 3")
	flag.IntVar(&opt.lookupRounds, "lookup-rounds", 10, "rounds of -lookups lookups per kind in part 3 (their mean and its standard error are reported)")
	flag.IntVar(&opt.concurrency, "concurrency", 16, "buyers in flight while selling out")
	flag.IntVar(&opt.portBase, "port-base", 27700, "part 1/3 use port-base..+4, part 2 port-base+10..+13")
	flag.StringVar(&opt.bufferPool, "buffer-pool", "256M", "innodb_buffer_pool_size of the private MariaDB")
	flag.BoolVar(&opt.diag, "diag", true, "part 2: after each window, log the product's queries for another window and replay each SELECT to cost it")
	flag.IntVar(&opt.diagTop, "diag-top", 8, "query shapes printed per diagnosis")
	flag.StringVar(&opt.parts, "parts", "1,2,3", "which parts to run")
	flag.BoolVar(&opt.keep, "keep", false, "keep the temp dir (logs, data)")
	flag.BoolVar(&opt.v, "v", false, "progress of every probe and wait")
	flag.StringVar(&opt.src, "src", "", "build from this tree: empty = the working tree, a directory, or a git revision (e.g. HEAD) exported with git archive")
	flag.StringVar(&opt.cache, "cache", filepath.Join(os.TempDir(), "seckill-idlecost-cache"), "where the initialised MariaDB datadir template is cached")
	flag.Parse()

	procs.Main(run)
}

func progress(format string, args ...any) {
	harness.Progress("idlecost", format, args...)
}

func want(part string) bool {
	for _, p := range strings.Split(opt.parts, ",") {
		if strings.TrimSpace(p) == part {
			return true
		}
	}
	return false
}

// row is one line of the final table.
type row struct {
	what, value, baseline, ratio, target, verdict string
}

type report struct {
	rows    []row
	details []string
	fails   []string
}

func (r *report) add(x row) { r.rows = append(r.rows, x) }
func (r *report) note(format string, args ...any) {
	r.details = append(r.details, fmt.Sprintf(format, args...))
}
func (r *report) fail(part string, err error) { r.fails = append(r.fails, part+": "+err.Error()) }
func ratioRow(what string, v, base float64, unit string) row {
	return row{what: what, value: fmtUnit(v, unit), baseline: fmtUnit(base, unit), ratio: fmtRatio(v, base), target: "<= 1.5", verdict: verdict(v/base <= 1.5 && base > 0)}
}

func fmtUnit(v float64, unit string) string {
	if unit == "%" {
		return fmt.Sprintf("%.2f%%", 100*v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func fmtRatio(v, base float64) string {
	if base <= 0 || math.IsInf(v/base, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", v/base)
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "OVER"
}

func run(ctx context.Context) int {
	started := time.Now()
	root, err := harness.Workdir("seckill-idlecost-", "redis-server", "mariadbd", "mariadb-install-db", "go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "idlecost:", err)
		return 2
	}
	tree, err := build(root)
	if err != nil {
		os.RemoveAll(root)
		fmt.Fprintln(os.Stderr, "idlecost:", err)
		return 2
	}
	progress("built %s into %s; MariaDB template %s", tree, root, bins.MySQLTemplate)
	rep := &report{}
	if want("1") || want("3") {
		if err := part13(ctx, root, rep); err != nil {
			rep.fail("part 1/3", err)
		}
	}
	if want("2") && ctx.Err() == nil {
		if err := part2(ctx, root, rep); err != nil {
			rep.fail("part 2", err)
		}
	}
	printReport(rep, tree, time.Since(started))
	if opt.keep {
		fmt.Printf("logs and data kept in %s\n", root)
	} else {
		os.RemoveAll(root)
	}
	switch {
	case ctx.Err() != nil:
		return 130
	case len(rep.fails) > 0:
		return 1
	}
	return 0
}

// build compiles seckill (-tags nodev, as production) and the broker, and
// prepares the MariaDB template. It returns what tree was built.
func build(root string) (string, error) {
	repo, err := harness.ModuleDir()
	if err != nil {
		return "", err
	}
	what := "working tree"
	src := repo
	if opt.src != "" {
		if st, err := os.Stat(opt.src); err == nil && st.IsDir() {
			src, what = opt.src, opt.src
		} else {
			// A revision: export it (git archive reads the repository and
			// writes nothing into it).
			src = filepath.Join(root, "src")
			if err := os.MkdirAll(src, 0o755); err != nil {
				return "", err
			}
			cmd := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repo, opt.src, src)
			if out, err := cmd.CombinedOutput(); err != nil {
				return "", fmt.Errorf("export %s: %v\n%s", opt.src, err, out)
			}
			what = "git archive " + opt.src
		}
	}
	bins, err = harness.Build(src, root, opt.cache)
	var be *harness.BuildError
	if errors.As(err, &be) {
		return "", fmt.Errorf("go build %s in the %s: %v\n%s(-src HEAD builds the last commit instead)", be.Pkg, what, be.Err, be.Output)
	}
	tree := what
	switch {
	case opt.src != "" && src != opt.src:
		if rev, err := exec.Command("git", "-C", repo, "rev-parse", "--short", opt.src).Output(); err == nil {
			tree = "commit " + strings.TrimSpace(string(rev)) + " (git archive " + opt.src + ")"
		}
	case opt.src != "":
	default:
		head, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
		if err != nil {
			break
		}
		tree = "working tree at commit " + strings.TrimSpace(string(head))
		if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
			if lines := strings.TrimSpace(string(st)); lines != "" {
				tree += fmt.Sprintf(" + uncommitted changes in %d tracked file(s)", strings.Count(lines, "\n")+1)
			}
		}
	}
	return tree, err // nil, or the MariaDB template failed
}

// ---------------------------------------------------------------- part 1 + 3

func part13(ctx context.Context, root string, rep *report) error {
	c, err := newCluster(ctx, "p1", root, opt.portBase, 2)
	if c != nil {
		defer c.close()
	}
	if err != nil {
		return err
	}
	u := &users{secret: c.secret}
	items, err := c.makeSoldOut(ctx, u, 1, "1")
	if err != nil {
		return err
	}
	var w1 window
	if want("1") {
		st := c.stabilize(ctx, "1 item", false)
		if w1, err = c.measure(ctx, opt.window); err != nil {
			return err
		}
		progress("part 1a: 1 item: %.1f Redis cmd/s (%s)", w1.redis.rate(), st)
		rep.note("1a  2 instances, 1 item (%s): %.1f cmd/s; seckill CPU %.2f%%; top: %s", st, w1.redis.rate(), 100*w1.appCPU, w1.redis.top(8))
	}
	more, err := c.makeSoldOut(ctx, u, opt.items-len(items), "b")
	if err != nil {
		return err
	}
	items = append(items, more...)
	if want("1") {
		st := c.stabilize(ctx, fmt.Sprintf("%d items", len(items)), false)
		w, err := c.measure(ctx, opt.window)
		if err != nil {
			return err
		}
		progress("part 1b: %d items: %.1f Redis cmd/s (%s)", len(items), w.redis.rate(), st)
		rep.note("1b  2 instances, %d items x 8 shards (%s): %.1f cmd/s; seckill CPU %.2f%%; top: %s", len(items), st, w.redis.rate(), 100*w.appCPU, w.redis.top(8))
		rep.add(row{what: "1a idle Redis cmd/s, 2 instances, 1 item", value: fmtUnit(w1.redis.rate(), "cmd/s")})
		rep.add(ratioRow(fmt.Sprintf("1b idle Redis cmd/s, 2 instances, %d items x 8 shards", len(items)), w.redis.rate(), w1.redis.rate(), "cmd/s"))
	}
	if want("3") {
		return c.part3(ctx, u, len(items), rep)
	}
	return nil
}

// makeSoldOut creates n items of opt.stockPerItem units over 8 shards,
// buys and pays every unit, and waits until every item is settled.
func (c *cluster) makeSoldOut(ctx context.Context, u *users, n int, tag string) ([]int64, error) {
	if n <= 0 {
		return nil, nil
	}
	t := time.Now()
	ids := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ids[i], errs[i] = c.createItem(ctx, fmt.Sprintf("idle-%s-%d", tag, i), int64(opt.stockPerItem), 8)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	before, err := countOrders(ctx, c.db)
	if err != nil {
		return nil, err
	}
	bought, err := c.sellOut(ctx, u, ids, opt.stockPerItem, 1)
	if err != nil {
		return nil, err
	}
	if want := n * opt.stockPerItem; bought != want {
		return nil, fmt.Errorf("sold %d units of %d items, want %d", bought, n, want)
	}
	err = harness.WaitFor(ctx, opt.settleTimeout, 200*time.Millisecond, "orders in MySQL", func() (bool, error) {
		got, err := countOrders(ctx, c.db)
		return got == before+int64(bought), err
	})
	if err != nil {
		return nil, err
	}
	if err := c.waitSettled(ctx, ids, nil); err != nil {
		return nil, err
	}
	progress("%s: %d item(s) created, sold out (%d units, paid) and settled in %.1fs", c.name, n, bought, time.Since(t).Seconds())
	return ids, nil
}

func (c *cluster) part3(ctx context.Context, u *users, nItems int, rep *report) error {
	a := c.apps[0]
	user := int64(1)
	bearer := u.jwt(user)
	// lookups runs opt.lookupRounds rounds of opt.lookups lookups of id,
	// right after an idle window, and returns the mean over the rounds of
	// (commands in the round - idle rate x its time) / lookups, and its
	// standard error. The idle load comes in pipelined bursts (64 slot
	// groups at a time), so a round catches a burst more or less than the
	// rate predicts: the mean over many rounds, and the net per command
	// (the lookup's own commands barely occur at idle), are what to read.
	lookups := func(id string, check func(reply) error) (float64, float64, string, error) {
		st := c.stabilize(ctx, "before lookups of "+id, false)
		idle, err := c.measure(ctx, opt.window/2)
		if err != nil {
			return 0, 0, "", err
		}
		var pers, secs []float64
		calls := map[string]int64{}
		var total float64
		for round := 0; round < opt.lookupRounds; round++ {
			r0, err := c.snapRedis(ctx)
			if err != nil {
				return 0, 0, "", err
			}
			for i := 0; i < opt.lookups; i++ {
				r, err := getOrder(ctx, a, bearer, id)
				if err == nil {
					err = check(r)
				}
				if err != nil {
					return 0, 0, "", fmt.Errorf("lookup %d of order %s: %w", i, id, err)
				}
			}
			r1, err := c.snapRedis(ctx)
			if err != nil {
				return 0, 0, "", err
			}
			d := subtract(r0, r1)
			pers = append(pers, (float64(d.total)-idle.redis.rate()*d.secs)/float64(opt.lookups))
			secs = append(secs, d.secs)
			total += d.secs
			for k, v := range d.calls {
				calls[k] += v
			}
		}
		n := float64(opt.lookups * opt.lookupRounds)
		var net []string
		for k := range union(calls, idle.redis.calls) {
			x := (float64(calls[k]) - float64(idle.redis.calls[k])/idle.redis.secs*total) / n
			if math.Abs(x) >= 0.05 {
				net = append(net, fmt.Sprintf("%s %+.2f", k, x))
			}
		}
		sort.Strings(net)
		mean, se := meanSE(pers)
		var rs []string
		for i, p := range pers {
			rs = append(rs, fmt.Sprintf("%.2f/%.2fs", p, secs[i]))
		}
		detail := fmt.Sprintf("%d rounds of %d lookups, idle %.1f cmd/s before (%s): per lookup %.2f +- %.2f (median %.2f; rounds: %s); net per lookup by command: %s",
			opt.lookupRounds, opt.lookups, idle.redis.rate(), st, mean, se, median(pers), strings.Join(rs, " "), strings.Join(net, ", "))
		return mean, se, detail, nil
	}

	// Unknown id: not in MySQL, not in the order index.
	unknown := "4242424242424242"
	per, se, detail, err := lookups(unknown, func(r reply) error {
		if r.status != 404 {
			return fmt.Errorf("want 404, got %s", r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	progress("part 3: unknown order: %.2f +- %.2f Redis commands per lookup", per, se)
	rep.note("3a  unknown order id, %d items: %s", nItems, detail)
	rep.add(row{what: fmt.Sprintf("3a Redis cmds per GET /orders/{unknown}, %d items", nItems), value: fmt.Sprintf("%.2f +- %.2f", per, se), target: "<= 3", verdict: verdict(per <= 3)})

	// Pending: the broker is stopped, so the reservation stays in its
	// outbox and the order is in Redis only.
	c.stopKafka()
	item, err := c.createItem(ctx, "idle-pending", 8, 8)
	if err != nil {
		return err
	}
	id, refusal, err := c.buy(ctx, a, u, item, user)
	if err == nil && id == "" {
		err = fmt.Errorf("purchase refused: %s", refusal)
	}
	if err != nil {
		return fmt.Errorf("pending order: %w", err)
	}
	isPending := func(r reply) error {
		if r.status != 200 || !strings.Contains(string(r.body), `"in_outbox":true`) {
			return fmt.Errorf("want 200 pending in_outbox, got %s %s", r, r.body)
		}
		return nil
	}
	r, err := getOrder(ctx, a, bearer, id)
	if err == nil {
		err = isPending(r)
	}
	if err != nil {
		return fmt.Errorf("pending order %s: %w", id, err)
	}
	per, se, detail, err = lookups(id, isPending)
	if err != nil {
		return err
	}
	progress("part 3: pending order: %.2f +- %.2f Redis commands per lookup", per, se)
	rep.note("3b  pending order (broker stopped), %d items: %s", nItems+1, detail)
	rep.add(row{what: fmt.Sprintf("3b Redis cmds per GET /orders/{pending}, %d items", nItems+1), value: fmt.Sprintf("%.2f +- %.2f", per, se), target: "<= 3", verdict: verdict(per <= 3)})
	return nil
}

// ---------------------------------------------------------------- part 2

func part2(ctx context.Context, root string, rep *report) error {
	c, err := newCluster(ctx, "p2", root, opt.portBase+10, 1)
	if c != nil {
		defer c.close()
	}
	if err != nil {
		return err
	}
	items := make([]int64, opt.orderItems)
	for i := range items {
		// Stock 0: sold out in Redis from the start; the history below
		// moves stock and sold in MySQL by its paid orders.
		if items[i], err = c.createItem(ctx, fmt.Sprintf("history-%d", i), 0, 8); err != nil {
			return err
		}
	}
	var ws [2]window
	var states [2]string
	for step, n := range []int{opt.ordersSmall, opt.orders} {
		from := 0
		if step == 1 {
			from = opt.ordersSmall
		}
		t := time.Now()
		if err := c.insertOrders(ctx, items, from, n); err != nil {
			return err
		}
		progress("p2: %d orders inserted in %.1fs", n-from, time.Since(t).Seconds())
		exp := expectCounts(items, n)
		err := c.waitSettled(ctx, items, func(id int64, l *ledger) error {
			e := exp[id]
			if l.Paid != e[0] || l.Cancelled != e[1] || l.Returned != e[1] || l.Stock != e[0] {
				return fmt.Errorf("want paid %d cancelled+returned %d stock %d, got %s", e[0], e[1], e[0], l)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := c.waitClean(ctx); err != nil {
			progress("p2: %v (measuring anyway)", err)
		}
		states[step] = c.stabilize(ctx, fmt.Sprintf("%d orders", n), true)
		if ws[step], err = c.measure(ctx, opt.window); err != nil {
			return err
		}
		w := ws[step]
		progress("part 2: %d orders: mariadbd %.2f%% of a core, %.1f Redis cmd/s (%s)", n, 100*w.mysqlCPU, w.redis.rate(), states[step])
		rep.note("2%c  1 instance, %d orders over %d item(s), %d‰ cancelled (%s; InnoDB dirty pages at start %d): mariadbd %.2f%%, seckill %.2f%% of a core; Redis %.1f cmd/s, top: %s",
			'a'+step, n, len(items), opt.cancelledPermille, states[step], w.dirty, 100*w.mysqlCPU, 100*w.appCPU, w.redis.rate(), w.redis.top(6))
		if opt.diag {
			qs, secs, err := c.diagnose(ctx, opt.window, fmt.Sprint(n))
			if err != nil {
				return fmt.Errorf("diagnose: %w", err)
			}
			rep.note("      queries in a %.0fs window after it (general log), each SELECT replayed; est = calls/s x CPU ms/call of the replaying server thread:", secs)
			for i, q := range qs {
				if i == opt.diagTop {
					break
				}
				if q.replayed {
					rep.note("      %6.2f calls/s %8.2f ms wall %8.2f ms CPU %9.0f rows read /call  est %5.2f%% of a core  %s", float64(q.calls)/secs,
						q.msPerCall, q.cpuMsPerCall, q.readsPerCall, q.cpuPerSec(secs)/10, trunc(shortCols(q.norm), 150))
				} else {
					rep.note("      %6.2f calls/s %8s ms wall %8s ms CPU %9s rows read /call  est %5s%% of a core  %s", float64(q.calls)/secs, "-", "-", "-", "-", trunc(shortCols(q.norm), 150))
				}
			}
		}
	}
	label := func(n int) string {
		if n >= 1_000_000 && n%1_000_000 == 0 {
			return fmt.Sprintf("%dM", n/1_000_000)
		}
		if n >= 1000 && n%1000 == 0 {
			return fmt.Sprintf("%dk", n/1000)
		}
		return fmt.Sprint(n)
	}
	rep.add(row{what: fmt.Sprintf("2a idle mariadbd CPU, 1 instance, %s orders", label(opt.ordersSmall)), value: fmtUnit(ws[0].mysqlCPU, "%")})
	rep.add(ratioRow(fmt.Sprintf("2b idle mariadbd CPU, 1 instance, %s orders", label(opt.orders)), ws[1].mysqlCPU, ws[0].mysqlCPU, "%"))
	rep.add(row{what: fmt.Sprintf("2a idle Redis cmd/s, 1 instance, %s orders", label(opt.ordersSmall)), value: fmtUnit(ws[0].redis.rate(), "cmd/s")})
	rep.add(row{what: fmt.Sprintf("2b idle Redis cmd/s, 1 instance, %s orders", label(opt.orders)), value: fmtUnit(ws[1].redis.rate(), "cmd/s"),
		baseline: fmtUnit(ws[0].redis.rate(), "cmd/s"), ratio: fmtRatio(ws[1].redis.rate(), ws[0].redis.rate())})
	return nil
}

func trunc(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// ---------------------------------------------------------------- output

func printReport(rep *report, tree string, took time.Duration) {
	fmt.Println()
	fmt.Printf("idlecost: %s; window %s; MariaDB buffer pool %s; %d cores\n", tree, opt.window, opt.bufferPool, runtime.NumCPU())
	if len(rep.details) > 0 {
		fmt.Println()
		for _, d := range rep.details {
			fmt.Println(d)
		}
	}
	table := [][]string{{"measurement", "value", "baseline", "ratio", "target", "verdict"}}
	for _, r := range rep.rows {
		table = append(table, []string{r.what, r.value, r.baseline, r.ratio, r.target, r.verdict})
	}
	fmt.Println()
	harness.PrintTable(os.Stdout, table)
	fmt.Println()
	for _, f := range rep.fails {
		fmt.Println("ERROR", f)
	}
	fmt.Printf("total %.0fs\n", took.Seconds())
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func union(a, b map[string]int64) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// meanSE is the mean of xs and its standard error.
func meanSE(xs []float64) (float64, float64) {
	var sum, sq float64
	for _, x := range xs {
		sum += x
	}
	m := sum / float64(len(xs))
	if len(xs) < 2 {
		return m, math.NaN()
	}
	for _, x := range xs {
		sq += (x - m) * (x - m)
	}
	return m, math.Sqrt(sq/float64(len(xs)-1)) / math.Sqrt(float64(len(xs)))
}

var selectCols = regexp.MustCompile(`^SELECT (.{40,}?) FROM `)

// shortCols drops a long column list from a SELECT, for the table.
func shortCols(q string) string {
	return selectCols.ReplaceAllString(q, "SELECT ... FROM ")
}
