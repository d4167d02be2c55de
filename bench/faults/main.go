// Command faults is a black-box fault-injection suite for seckill: per
// scenario it starts a fresh Redis, MariaDB, Kafka broker and one or two
// seckill instances on ports of its own, runs a sale of -stock units to
// -buyers buyers, breaks one thing in the middle of it, repairs it, waits
// for the order pipeline to settle, and checks the promises: nothing
// oversold, no accepted order lost, no order nobody was told about, no user
// over the limit, no drift, no answer outside the contract. One table, exit
// status 1 if any scenario fails, and a table of answer times before and
// during each fault (reported, not asserted).
//
//	go run ./bench/faults                         # every scenario
//	go run ./bench/faults -run 'redis-empty|kafka' -v
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"seckill/bench/internal/harness"
)

var opt struct {
	run             string
	buyers, stock   int
	concurrency     int
	portBase        int
	clusterPortBase int
	keep, v         bool
	appDown         time.Duration
	redisDown       time.Duration
	mysqlDown       time.Duration
	kafkaDown       time.Duration
	kafkaEmptyDown  time.Duration
	stopFor         time.Duration
	orderTTL        time.Duration
	claimTimeout    time.Duration
	reqTimeout      time.Duration
	buyerDeadline   time.Duration
	maxWait         time.Duration
	settleTimeout   time.Duration
	settleQuiet     time.Duration
	driftQuiet      time.Duration
	replaySample    int
	stuck           time.Duration
	rejoin          bool
	saleDeadline    time.Duration
	cache           string
	src             string
	// the stall scenarios (stall.go)
	redisPartition  time.Duration
	redisPause      time.Duration
	mysqlPartition  time.Duration
	kafkaPartition  time.Duration
	stallLead       time.Duration
	stallTail       time.Duration
	stallReqTimeout time.Duration
	readers         int
	readPause       time.Duration
}

var bins harness.Binaries

// procs are the processes of every scenario; main kills what still runs.
var procs = &harness.Group{Tag: "harness"}

func main() {
	flag.StringVar(&opt.run, "run", "", "regexp over scenario names (default all)")
	flag.IntVar(&opt.buyers, "buyers", 1500, "buyers per sale (distinct users)")
	flag.IntVar(&opt.stock, "stock", 600, "units of the sale item")
	flag.IntVar(&opt.concurrency, "concurrency", 64, "buyers in flight at once")
	flag.IntVar(&opt.portBase, "port-base", 27000, "first port; scenario i uses port-base+10i .. +9")
	flag.IntVar(&opt.clusterPortBase, "cluster-port-base", 27500, "first port of the Redis Cluster scenarios' masters; the k-th of them uses cluster-port-base+10k .. +2 (cluster bus +5 .. +7)")
	flag.BoolVar(&opt.keep, "keep", false, "keep the temp dirs (logs, data) of every scenario")
	flag.BoolVar(&opt.v, "v", false, "progress, answer histograms, and log tails of failed scenarios")
	flag.DurationVar(&opt.appDown, "app-down", 2*time.Second, "how long a killed app stays down before its restart")
	flag.DurationVar(&opt.redisDown, "redis-down", 2*time.Second, "how long Redis stays down")
	flag.DurationVar(&opt.mysqlDown, "mysql-down", 30*time.Second, "how long MariaDB stays down")
	flag.DurationVar(&opt.kafkaDown, "kafka-down", 30*time.Second, "how long the broker stays down (kafka-down)")
	flag.DurationVar(&opt.kafkaEmptyDown, "kafka-empty-down", 30*time.Second, "how long the broker stays down (kafka-empty)")
	flag.DurationVar(&opt.stopFor, "stop-duration", 35*time.Second, "SIGSTOP length in slow-fallthrough (longer than the product's 30s default claim timeout)")
	flag.DurationVar(&opt.orderTTL, "order-ttl", 3*time.Second, "SECKILL_ORDER_TTL of expiry-kill9")
	flag.DurationVar(&opt.claimTimeout, "claim-timeout", 2*time.Second, "SECKILL_CLAIM_TIMEOUT passed to every app")
	flag.DurationVar(&opt.reqTimeout, "req-timeout", 3*time.Second, "client timeout per HTTP request")
	flag.DurationVar(&opt.buyerDeadline, "buyer-deadline", 90*time.Second, "a buyer gives up after this long without a final answer")
	flag.DurationVar(&opt.saleDeadline, "sale-deadline", 120*time.Second, "a wave of buyers ends by then; buyers without a final answer count as no_answer")
	flag.DurationVar(&opt.maxWait, "max-wait", 2*time.Second, "cap on a Retry-After wait")
	flag.DurationVar(&opt.settleTimeout, "settle-timeout", 150*time.Second, "deadline for the pipeline to settle after the sale and the fault")
	flag.DurationVar(&opt.settleQuiet, "settle-quiet", 3*time.Second, "settled: outbox 0, drift 0 and the MySQL order count unchanged this long")
	flag.DurationVar(&opt.driftQuiet, "drift-quiet", 20*time.Second, "settled with drift: outbox 0 and the order count unchanged this long")
	flag.DurationVar(&opt.stuck, "stuck", 45*time.Second, "stop waiting for the pipeline when the outbox is not empty and nothing moved this long")
	flag.BoolVar(&opt.rejoin, "failover-rejoin", true, "redis-failover: after -redis-down the killed primary comes back (empty) as a replica of the promoted one")
	flag.IntVar(&opt.replaySample, "replay-sample", 100, "accepted buyers whose purchase is replayed on every instance after settle")
	flag.StringVar(&opt.cache, "cache", filepath.Join(os.TempDir(), "seckill-faults-cache"), "where the initialised MariaDB datadir template is cached")
	flag.DurationVar(&opt.redisPartition, "redis-partition", envDur("FAULTS_REDIS_PARTITION", 20*time.Second), "how long redis-partition cuts Redis off (env FAULTS_REDIS_PARTITION)")
	flag.DurationVar(&opt.redisPause, "redis-pause", envDur("FAULTS_REDIS_PAUSE", 15*time.Second), "how long redis-pause keeps Redis stopped (env FAULTS_REDIS_PAUSE)")
	flag.DurationVar(&opt.mysqlPartition, "mysql-partition", envDur("FAULTS_MYSQL_PARTITION", 30*time.Second), "how long mysql-partition cuts MariaDB off (env FAULTS_MYSQL_PARTITION)")
	flag.DurationVar(&opt.kafkaPartition, "kafka-partition", envDur("FAULTS_KAFKA_PARTITION", 30*time.Second), "how long kafka-partition cuts the broker off (env FAULTS_KAFKA_PARTITION)")
	flag.DurationVar(&opt.stallLead, "stall-lead", envDur("FAULTS_STALL_LEAD", 8*time.Second), "stall scenarios: the fault begins this long after the sale (env FAULTS_STALL_LEAD)")
	flag.DurationVar(&opt.stallTail, "stall-tail", envDur("FAULTS_STALL_TAIL", 10*time.Second), "stall scenarios: the first -stock buyers arrive spread over lead + fault + this (env FAULTS_STALL_TAIL)")
	flag.DurationVar(&opt.stallReqTimeout, "stall-req-timeout", 15*time.Second, "stall scenarios: client timeout per HTTP request (long, so answer times are measured, not cut)")
	flag.IntVar(&opt.readers, "readers", 2, "stall scenarios: readers of the product page and of accepted orders")
	flag.DurationVar(&opt.readPause, "read-pause", 200*time.Millisecond, "stall scenarios: a reader's pause between two rounds")
	flag.StringVar(&opt.src, "src", "", "build seckill and the broker from this source tree instead of the current module (e.g. an export of a commit)")
	flag.Parse()

	procs.Main(runAll)
}

func runAll(ctx context.Context) int {
	started := time.Now()
	if len(envErrs) > 0 {
		fmt.Fprintln(os.Stderr, "faults:", strings.Join(envErrs, "; "))
		return 2
	}
	re, err := regexp.Compile(opt.run)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults: -run:", err)
		return 2
	}
	var chosen []*scenario
	all := scenarios()
	idx := map[string]int{}
	for i, sc := range all {
		idx[sc.name] = i
		if re.MatchString(sc.name) {
			chosen = append(chosen, sc)
		}
	}
	if len(chosen) == 0 {
		fmt.Fprintln(os.Stderr, "faults: no scenario matches", opt.run)
		return 2
	}
	root, err := harness.Workdir("seckill-faults-", "redis-server", "mariadbd", "mariadb-install-db")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 2
	}
	if err := build(root); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 2
	}
	progress("built seckill and kafka into %s; MariaDB template %s", root, bins.MySQLTemplate)

	var results []*result
	for _, sc := range chosen {
		if ctx.Err() != nil {
			break
		}
		t := time.Now()
		progress("%s: starting", sc.name)
		res := runScenario(ctx, sc, idx[sc.name], root)
		res.wall = time.Since(t)
		progress("%s: %s in %.0fs", sc.name, res.verdict(), res.wall.Seconds())
		results = append(results, res)
	}
	printTable(os.Stdout, results)
	failed := false
	passes := 0
	for _, r := range results {
		if r.verdict() != "PASS" {
			failed = true
		} else {
			passes++
		}
	}
	if opt.v {
		for _, r := range results {
			r.printDetails(os.Stdout)
		}
	}
	keepRoot := opt.keep
	for _, r := range results {
		if r.dir != "" && r.kept {
			keepRoot = true
		}
	}
	if keepRoot {
		fmt.Printf("logs (data too with -keep) kept in %s\n", root)
	} else {
		os.RemoveAll(root)
	}
	fmt.Printf("total %.0fs\n", time.Since(started).Seconds())
	// The plain closing line CI reads.
	fmt.Printf("faults: %d passed, %d failed\n", passes, len(results)-passes)
	if ctx.Err() != nil {
		return 130
	}
	if failed {
		return 1
	}
	return 0
}

func progress(format string, args ...any) {
	harness.Progress("faults", format, args...)
}

// build compiles seckill and the broker once, and prepares the MariaDB
// template.
func build(root string) error {
	repo, err := harness.ModuleDir()
	if err != nil {
		return err
	}
	if opt.src != "" {
		repo = opt.src
	}
	bins, err = harness.Build(repo, root, opt.cache)
	return err
}

// result is one scenario's row.
type result struct {
	name     string
	setupErr error
	accepted int
	inMySQL  int
	oversold int64
	lost     int
	phantom  int
	overLim  int
	drift    int64
	bad      int
	recovery string
	fails    []string
	notes    []string
	hist     []string
	lat      []latRow // the answer-time table's rows
	badKinds []string
	badEx    []string
	logs     []string
	dir      string
	kept     bool
	wall     time.Duration
}

func (r *result) verdict() string {
	if r.setupErr != nil || len(r.fails) > 0 || r.oversold != 0 || r.lost != 0 || r.phantom != 0 ||
		r.overLim != 0 || r.drift != 0 || r.bad != 0 {
		return "FAIL"
	}
	return "PASS"
}

func printTable(w *os.File, rs []*result) {
	head := []string{"scenario", "accepted", "in MySQL", "oversold", "lost", "phantom", "over-limit", "drift", "5xx", "recovery s", "verdict"}
	rows := [][]string{head}
	for _, r := range rs {
		if r.setupErr != nil && r.accepted == 0 && r.inMySQL == 0 {
			rows = append(rows, []string{r.name, "-", "-", "-", "-", "-", "-", "-", "-", "-", r.verdict()})
			continue
		}
		rows = append(rows, []string{r.name, fmt.Sprint(r.accepted), fmt.Sprint(r.inMySQL), fmt.Sprint(r.oversold),
			fmt.Sprint(r.lost), fmt.Sprint(r.phantom), fmt.Sprint(r.overLim), fmt.Sprint(r.drift), fmt.Sprint(r.bad),
			r.recovery, r.verdict()})
	}
	fmt.Fprintln(w)
	harness.PrintTable(w, rows)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "recovery s = fault end -> first 202 (else first business answer, else all instances ready) / fault end -> pipeline settled")
	printLatencies(w, rs)
	for _, r := range rs {
		if r.verdict() == "FAIL" {
			fmt.Fprintf(w, "FAIL %s: %s\n", r.name, strings.Join(r.reasons(), "; "))
		}
	}
}

func (r *result) reasons() []string {
	var out []string
	if r.setupErr != nil {
		out = append(out, "harness/setup: "+r.setupErr.Error())
	}
	out = append(out, r.fails...)
	if r.bad > 0 {
		out = append(out, fmt.Sprintf("%d answers outside the contract: %s", r.bad, strings.Join(r.badKinds, ", ")))
	}
	return out
}

func (r *result) printDetails(w *os.File) {
	fmt.Fprintf(w, "\n=== %s: %s (%.0fs)\n", r.name, r.verdict(), r.wall.Seconds())
	for _, n := range r.notes {
		fmt.Fprintln(w, "  note:", n)
	}
	for _, f := range r.reasons() {
		fmt.Fprintln(w, "  FAIL:", f)
	}
	if len(r.badEx) > 0 {
		fmt.Fprintln(w, "  first answers outside the contract:")
		for _, e := range r.badEx {
			fmt.Fprintln(w, "    ", e)
		}
	}
	fmt.Fprintln(w, "  answers (op status code, +RA = with Retry-After):")
	for _, h := range r.hist {
		fmt.Fprintln(w, "   ", h)
	}
	if r.verdict() == "FAIL" {
		for _, l := range r.logs {
			lines, n := grepLog(l, 12, "level=ERROR", "level=WARN", "panic", "[ERROR]", "fatal")
			fmt.Fprintf(w, "  --- %s: %d warning/error lines; first ones:\n", filepath.Base(l), n)
			for _, x := range lines {
				fmt.Fprintln(w, "    ", trunc(x, 300))
			}
			fmt.Fprintf(w, "  --- %s: tail\n", filepath.Base(l))
			for _, x := range tail(l, 8) {
				fmt.Fprintln(w, "    ", trunc(x, 300))
			}
		}
	}
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
