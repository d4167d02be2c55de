// Command wholesale drives a whole flash sale over HTTP: N buyers arrive in
// a burst, each loads the product page, asks for a purchase token and
// purchases with it, retrying with the same token after Retry-After; a
// winner polls its order until MySQL holds it and pays. It reports what a
// sale costs a buyer: the time until every buyer had a final answer, the
// spread of a buyer's time to its answer, requests per buyer and the
// success rate by arrival decile (fairness). bench/run.sh runs it inside
// `make bench` and adds the servers' CPU, Redis memory and the invariants.
//
//	SECKILL_JWT_SECRET=... wholesale -base http://127.0.0.1:18080 -item 7 -buyers 100000 -json out.json
//
// k6 at a few thousand requests/s cannot make such a crowd on a small
// machine; this program keeps `conns` connections busy with a few
// goroutines. bench/k6/wholesale.js is the same scenario for k6.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"seckill/bench/internal/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wholesale:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	base         string
	item         int64
	buyers       int
	idBase       int64
	burst        time.Duration // arrivals spread evenly over this window
	conns        int           // concurrent requests (one connection each)
	poll         time.Duration // a winner's wait between reads of its order
	maxAttempts  int           // per step, before a buyer gives up
	deadline     time.Duration // the whole sale, before the rest give up
	reqTimeout   time.Duration
	jsonOut      string
	secret       []byte
	winnersOut   string
	skipPayments bool
	floor        bool // the same crowd against a bare hello (see parse)
}

func parse(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("wholesale", flag.ContinueOnError)
	fs.StringVar(&c.base, "base", "http://127.0.0.1:8080", "seckill base URL")
	fs.Int64Var(&c.item, "item", 0, "the item on sale")
	fs.IntVar(&c.buyers, "buyers", 100000, "buyers arriving in the burst")
	fs.Int64Var(&c.idBase, "id-base", time.Now().Unix()%100000*100000, "first user id (buyers are id-base+1..id-base+buyers)")
	fs.DurationVar(&c.burst, "burst", time.Second, "arrivals are spread evenly over this window (0: all at once)")
	fs.IntVar(&c.conns, "conns", 256, "requests in flight at most (one connection each)")
	fs.DurationVar(&c.poll, "poll", 200*time.Millisecond, "a winner's wait between reads of its order")
	fs.IntVar(&c.maxAttempts, "max-attempts", 100, "attempts of one step (page, token, purchase, poll, pay) before the buyer gives up")
	fs.DurationVar(&c.deadline, "deadline", 10*time.Minute, "the whole sale; buyers without an answer by then give up")
	fs.DurationVar(&c.reqTimeout, "timeout", 10*time.Second, "per request")
	fs.StringVar(&c.jsonOut, "json", "", "write the summary as JSON to this file")
	fs.StringVar(&c.winnersOut, "winners", "", "write one \"<user> <order id> <paid>\" line per winner to this file")
	fs.BoolVar(&c.skipPayments, "no-pay", false, "winners stop at the 202 (no poll, no payment)")
	fs.BoolVar(&c.floor, "floor", false, "the same crowd, arrivals and connections against a bare hello server (bench/ceiling): "+
		"each buyer sends GET /hello as its page and again with its Authorization as its token request, then is done; "+
		"the hello server's CPU per request is then the floor a whole sale is measured against")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	secret, err := harness.UserSecret(getenv)
	if err != nil {
		return c, err
	}
	c.secret = secret
	switch {
	case c.item <= 0 && !c.floor:
		return c, errors.New("-item must be a positive item id")
	case c.buyers <= 0 || c.conns <= 0 || c.maxAttempts <= 0:
		return c, errors.New("-buyers, -conns and -max-attempts must be positive")
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c, err := parse(args, getenv)
	if err != nil {
		return err
	}
	// Users sign in before the sale: signing is not the sale's cost.
	buyers := make([]*buyer, c.buyers)
	now := time.Now()
	for i := range buyers {
		user := c.idBase + int64(i) + 1
		jwt, err := harness.SignUser(c.secret, user, now, time.Hour)
		if err != nil {
			return err
		}
		buyers[i] = &buyer{index: i, user: user, auth: "Bearer " + jwt}
	}
	s := newSale(c)
	cpu0 := cpuTime()
	res := s.run(ctx, buyers)
	sum := summarize(c, buyers, res)
	s.fill(sum)
	sum.LoadgenCPUPerBuyer = float64((cpuTime() - cpu0).Microseconds()) / float64(len(buyers))
	sum.print(stdout)
	if c.jsonOut != "" {
		b, err := json.MarshalIndent(sum, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(c.jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", c.jsonOut, err)
		}
	}
	if c.winnersOut != "" {
		if err := writeWinners(c.winnersOut, buyers); err != nil {
			return err
		}
	}
	return nil
}

// outcome is a buyer's final answer.
type outcome uint8

const (
	pending outcome = iota // no final answer (yet)
	won                    // 202
	soldOut                // 409 sold_out, to the token or the purchase
	limited                // 409 purchase_limit
	ended                  // 410 sale_ended
	failed                 // an unexpected answer, or out of attempts
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"none", "won", "sold_out", "purchase_limit", "sale_ended", "failed"}

// step is where a buyer is in the sale.
type step uint8

const (
	stepPage step = iota
	stepToken
	stepPurchase
	stepPoll
	stepPay
	stepDone
	numSteps
)

var stepNames = [numSteps]string{"page", "token", "purchase", "poll", "pay", "done"}

// buyer is one member of the crowd. Only the worker running it touches it.
type buyer struct {
	index    int
	user     int64
	auth     string
	arrival  time.Time
	step     step
	attempts int
	token    string
	orderID  string

	outcome  outcome
	answered time.Time // when the final answer came
	paid     time.Time // zero unless paid
	requests int
	failure  string // what made it fail
}

// sale runs buyers through their steps on c.conns workers. A buyer that
// must wait (Retry-After, the next poll) leaves its worker and comes back
// through a timer, so waiting holds no connection.
type sale struct {
	c    config
	hc   *http.Client
	runq chan *buyer

	wg      sync.WaitGroup // buyers not done
	timers  sync.WaitGroup // timers that hold a buyer
	reqs    [numSteps]atomic.Int64
	status  [numSteps][6]atomic.Int64 // by status class: 0 = network error, 2..5 = 2xx..5xx
	retries atomic.Int64
	limited atomic.Int64 // 429s
}

func newSale(c config) *sale {
	tr := &http.Transport{MaxConnsPerHost: c.conns, MaxIdleConnsPerHost: c.conns, DisableCompression: true,
		ResponseHeaderTimeout: c.reqTimeout}
	return &sale{c: c, hc: &http.Client{Transport: tr, Timeout: c.reqTimeout}, runq: make(chan *buyer, c.buyers)}
}

// result is what the run measured beyond the buyers' own records.
type result struct {
	start, end time.Time // first arrival, last buyer done
	cancelled  bool
}

func (s *sale) run(ctx context.Context, buyers []*buyer) result {
	ctx, cancel := context.WithTimeout(ctx, s.c.deadline)
	defer cancel()
	var workers sync.WaitGroup
	for range s.c.conns {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for b := range s.runq {
				s.advance(ctx, b)
			}
		}()
	}
	s.wg.Add(len(buyers))
	start := time.Now()
	// Arrivals: buyer i at start + i·burst/N, in order.
	n := len(buyers)
	for i, b := range buyers {
		at := start.Add(time.Duration(int64(s.c.burst) * int64(i) / int64(n)))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		b.arrival = at
		s.runq <- b
	}
	s.wg.Wait()
	end := time.Now()
	close(s.runq)
	workers.Wait()
	s.timers.Wait()
	s.hc.CloseIdleConnections()
	return result{start: start, end: end, cancelled: ctx.Err() != nil}
}

// advance runs b's steps until it is done or must wait.
func (s *sale) advance(ctx context.Context, b *buyer) {
	for b.step != stepDone {
		if ctx.Err() != nil {
			b.fail("deadline")
			break
		}
		wait := s.do(ctx, b)
		if b.step == stepDone {
			break
		}
		if wait > 0 {
			s.timers.Add(1)
			time.AfterFunc(wait, func() {
				defer s.timers.Done()
				s.runq <- b
			})
			return
		}
	}
	s.wg.Done()
}

// do sends b's current request and moves b on; it returns how long b must
// wait before its next request (0: go on at once).
func (s *sale) do(ctx context.Context, b *buyer) time.Duration {
	b.attempts++
	if b.attempts > s.c.maxAttempts {
		b.fail(stepNames[b.step] + ": out of attempts")
		return 0
	}
	var method, path, key string
	item := strconv.FormatInt(s.c.item, 10)
	if s.c.floor {
		method, path = http.MethodGet, "/hello"
	} else {
		switch b.step {
		case stepPage:
			method, path = http.MethodGet, "/api/v1/items/"+item
		case stepToken:
			method, path = http.MethodPost, "/api/v1/items/"+item+"/tokens"
		case stepPurchase:
			method, path, key = http.MethodPost, "/api/v1/items/"+item+"/purchase", b.token
		case stepPoll:
			method, path = http.MethodGet, "/api/v1/orders/"+b.orderID
		case stepPay:
			method, path = http.MethodPost, "/api/v1/orders/"+b.orderID+"/pay"
		}
	}
	st, body, retryAfter, err := s.send(ctx, b, method, path, key)
	b.requests++
	s.reqs[b.step].Add(1)
	s.status[b.step][st/100].Add(1)
	if err != nil {
		s.retries.Add(1)
		return 100 * time.Millisecond // a dropped connection: the same request again
	}
	var v struct {
		Token    string `json:"token"`
		OrderID  string `json:"order_id"`
		Status   string `json:"status"`
		InOutbox bool   `json:"in_outbox"`
		Code     string `json:"code"`
	}
	_ = json.Unmarshal(body, &v)
	if s.c.floor && b.step == stepToken && st == http.StatusOK {
		b.final(soldOut) // what almost every buyer of a sale hears here
		return 0
	}
	// Answers every step shares: wait and retry the same request.
	if st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable ||
		st == http.StatusConflict && (v.Code == "purchase_in_progress" || v.Code == "order_pending") {
		s.retries.Add(1)
		if st == http.StatusTooManyRequests {
			s.limited.Add(1)
		}
		return max(retryAfter, 50*time.Millisecond)
	}
	switch b.step {
	case stepPage:
		if st == http.StatusOK {
			b.next(stepToken)
			return 0
		}
	case stepToken:
		switch {
		case st == http.StatusCreated && v.Token != "":
			b.token = v.Token
			b.next(stepPurchase)
			return 0
		case b.saleOver(st, v.Code):
			return 0
		}
	case stepPurchase:
		switch {
		case st == http.StatusAccepted && v.OrderID != "":
			b.orderID = v.OrderID
			b.final(won)
			if !s.c.skipPayments {
				b.step, b.attempts = stepPoll, 0
			}
			return 0
		case st == http.StatusConflict && v.Code == "purchase_limit":
			b.final(limited)
			return 0
		case b.saleOver(st, v.Code):
			return 0
		}
	case stepPoll:
		if st == http.StatusOK {
			if v.InOutbox || v.Status == "" {
				return s.c.poll
			}
			if v.Status == "pending" {
				b.next(stepPay)
				return 0
			}
			b.failPay("order " + v.Status)
			return 0
		}
	case stepPay:
		if st == http.StatusOK || st == http.StatusConflict && v.Code == "already_paid" {
			b.paid = time.Now()
			b.step = stepDone
			return 0
		}
	}
	if b.outcome == won {
		b.failPay(fmt.Sprintf("%s: status %d %s", stepNames[b.step], st, v.Code))
	} else {
		b.fail(fmt.Sprintf("%s: status %d %s", stepNames[b.step], st, v.Code))
	}
	return 0
}

func (b *buyer) next(s step) { b.step, b.attempts = s, 0 }

func (b *buyer) final(o outcome) {
	b.outcome, b.answered = o, time.Now()
	b.step = stepDone
}

// saleOver ends b if the answer (status st, problem code) says the sale is
// over for every buyer: sold out (409 sold_out) or ended (410). The token
// and the purchase steps both read these the same way.
func (b *buyer) saleOver(st int, code string) bool {
	switch {
	case st == http.StatusConflict && code == "sold_out":
		b.final(soldOut)
	case st == http.StatusGone:
		b.final(ended)
	default:
		return false
	}
	return true
}

func (b *buyer) fail(why string) {
	if b.outcome == pending {
		b.outcome, b.answered = failed, time.Now()
	}
	b.failure, b.step = why, stepDone
}

// failPay records a winner whose payment did not go through: its answer
// stays the 202.
func (b *buyer) failPay(why string) { b.failure, b.step = why, stepDone }

// send makes one request and reads its answer; st is 0 on a network error.
func (s *sale) send(ctx context.Context, b *buyer, method, path, key string) (st int, body []byte, retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, method, s.c.base+path, nil)
	if err != nil {
		return 0, nil, 0, err
	}
	if b.step != stepPage {
		req.Header["Authorization"] = []string{b.auth}
	}
	if key != "" {
		req.Header["Idempotency-Key"] = []string{key}
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return 0, nil, 0, err
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if n, err := strconv.Atoi(ra); err == nil && n > 0 {
			retryAfter = time.Duration(n) * time.Second
		}
	}
	return resp.StatusCode, body, retryAfter, nil
}

// summary is the sale as the table shows it (and -json writes it).
type summary struct {
	Item               int64            `json:"item"`
	Buyers             int              `json:"buyers"`
	BurstS             float64          `json:"burst_s"`
	Conns              int              `json:"conns"`
	AllAnsweredS       float64          `json:"all_answered_s"` // first arrival to the last final answer
	AllDoneS           float64          `json:"all_done_s"`     // first arrival to the last buyer done (payments included)
	AnswerMs           percentiles      `json:"answer_ms"`      // arrival to final answer
	PaidMs             percentiles      `json:"paid_ms"`        // a winner's arrival to its payment
	Requests           int64            `json:"requests"`
	RequestsPerBuyer   float64          `json:"requests_per_buyer"`
	RequestsByStep     map[string]int64 `json:"requests_by_step"`
	Retries            int64            `json:"retries"`
	NetworkErrors      int64            `json:"network_errors"`
	Status5xx          int64            `json:"status_5xx"`
	Status429          int64            `json:"status_429"`
	Outcomes           map[string]int   `json:"outcomes"`
	Won                int              `json:"won"`
	Paid               int              `json:"paid"`
	Failed             int              `json:"failed"`
	PayFailed          int              `json:"pay_failed"`
	Failures           map[string]int   `json:"failures,omitempty"`
	SuccessByDecile    []float64        `json:"success_by_decile"` // 202s / buyers of each tenth of arrivals, earliest first
	DistinctOrders     int              `json:"distinct_orders"`
	Cancelled          bool             `json:"cancelled"`
	LoadgenCPUPerBuyer float64          `json:"loadgen_cpu_us_per_buyer"`
}

type percentiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

func percentilesOf(ds []time.Duration) percentiles {
	if len(ds) == 0 {
		return percentiles{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) float64 {
		i := int(q*float64(len(ds))+0.5) - 1
		return float64(ds[min(max(i, 0), len(ds)-1)]) / 1e6
	}
	return percentiles{P50: at(0.50), P99: at(0.99), Max: float64(ds[len(ds)-1]) / 1e6, N: len(ds)}
}

func summarize(c config, buyers []*buyer, r result) *summary {
	s := &summary{Item: c.item, Buyers: len(buyers), BurstS: c.burst.Seconds(), Conns: c.conns,
		RequestsByStep: map[string]int64{}, Outcomes: map[string]int{}, Failures: map[string]int{},
		AllDoneS: r.end.Sub(r.start).Seconds(), Cancelled: r.cancelled}
	var answer, paid []time.Duration
	var lastAnswer time.Time
	deciles := make([]int, 10)
	orders := map[string]bool{}
	for _, b := range buyers {
		s.Requests += int64(b.requests)
		s.Outcomes[outcomeNames[b.outcome]]++
		if b.outcome != pending {
			answer = append(answer, b.answered.Sub(b.arrival))
			if b.answered.After(lastAnswer) {
				lastAnswer = b.answered
			}
		}
		switch b.outcome {
		case won:
			s.Won++
			deciles[b.index*10/len(buyers)]++
			orders[b.orderID] = true
			if !b.paid.IsZero() {
				s.Paid++
				paid = append(paid, b.paid.Sub(b.arrival))
			} else if !c.skipPayments {
				s.PayFailed++
			}
		case failed, pending:
			s.Failed++
		}
		if b.failure != "" {
			s.Failures[b.failure]++
		}
	}
	s.DistinctOrders = len(orders)
	s.AllAnsweredS = lastAnswer.Sub(r.start).Seconds()
	s.AnswerMs, s.PaidMs = percentilesOf(answer), percentilesOf(paid)
	s.RequestsPerBuyer = float64(s.Requests) / float64(len(buyers))
	for d := range deciles {
		lo, hi := d*len(buyers)/10, (d+1)*len(buyers)/10
		if hi > lo {
			s.SuccessByDecile = append(s.SuccessByDecile, float64(deciles[d])/float64(hi-lo))
		} else {
			s.SuccessByDecile = append(s.SuccessByDecile, 0)
		}
	}
	return s
}

func (s *sale) fill(sum *summary) {
	for st := range stepDone {
		sum.RequestsByStep[stepNames[st]] = s.reqs[st].Load()
		sum.NetworkErrors += s.status[st][0].Load()
		sum.Status5xx += s.status[st][5].Load()
	}
	sum.Retries = s.retries.Load()
	sum.Status429 = s.limited.Load()
}

// cpuTime is the CPU this process used so far (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "wholesale: item %d, %d buyers in a %.1fs burst over %d connections\n", s.Item, s.Buyers, s.BurstS, s.Conns)
	fmt.Fprintf(w, "  every buyer answered   %.2fs after the first arrival (all done, payments included, %.2fs)\n", s.AllAnsweredS, s.AllDoneS)
	fmt.Fprintf(w, "  time to final answer   p50 %.1f ms  p99 %.1f ms  max %.1f ms (n=%d)\n", s.AnswerMs.P50, s.AnswerMs.P99, s.AnswerMs.Max, s.AnswerMs.N)
	fmt.Fprintf(w, "  winner's time to paid  p50 %.1f ms  p99 %.1f ms  max %.1f ms (n=%d)\n", s.PaidMs.P50, s.PaidMs.P99, s.PaidMs.Max, s.PaidMs.N)
	fmt.Fprintf(w, "  requests               %d (%.2f per buyer) %v, retries %d, network errors %d, 5xx %d\n",
		s.Requests, s.RequestsPerBuyer, s.RequestsByStep, s.Retries, s.NetworkErrors, s.Status5xx)
	fmt.Fprintf(w, "  load generator CPU     %.1f us per buyer (not in the servers' figures)\n", s.LoadgenCPUPerBuyer)
	fmt.Fprintf(w, "  outcomes               %v, paid %d, payments failed %d\n", s.Outcomes, s.Paid, s.PayFailed)
	if len(s.Failures) > 0 {
		fmt.Fprintf(w, "  failures               %v\n", s.Failures)
	}
	fmt.Fprintf(w, "  success by decile      %v\n", s.SuccessByDecile)
}

func writeWinners(path string, buyers []*buyer) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for _, b := range buyers {
		if b.outcome == won {
			fmt.Fprintf(f, "%d %s %t\n", b.user, b.orderID, !b.paid.IsZero())
		}
	}
	return f.Close()
}
