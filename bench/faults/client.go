package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"seckill/bench/internal/harness"
)

// homeShard mirrors stock.HomeShard (FNV-1a of the decimal user id): the
// slow-fallthrough scenario picks buyers that all live on one shard so most
// of them fall through. A copy rather than an import keeps the harness black
// box; if the product changes the hash the scenario still runs, and says
// whether it reached the fall-through state.
func homeShard(user int64, n int) int {
	h := fnv.New32a()
	h.Write([]byte(strconv.FormatInt(user, 10)))
	return int(h.Sum32() % uint32(n))
}

// signJWT is a buyer's bearer token, valid for 2 hours.
func signJWT(secret string, user int64) string { return harness.SignJWT(secret, user, 2*time.Hour) }

// reply is one HTTP exchange as the harness saw it.
type reply struct {
	status     int
	code       string // problem+json code
	retryAfter string
	body       []byte
	err        error
	timeout    bool
}

func (r reply) String() string {
	if r.err != nil {
		if r.timeout {
			return "timeout"
		}
		return "neterr"
	}
	s := strconv.Itoa(r.status)
	if r.code != "" {
		s += " " + r.code
	}
	if r.status >= 400 {
		if r.retryAfter != "" {
			s += " +RA"
		} else {
			s += " -RA"
		}
	}
	return s
}

// validRA: Retry-After is a whole number of seconds, at least 1.
func (r reply) validRA() bool {
	n, err := strconv.Atoi(r.retryAfter)
	return err == nil && n >= 1
}

var orderIDRe = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)

// client talks to the cluster's instances and records every answer.
type client struct {
	c    *cluster
	hc   *http.Client
	item int64

	mu       sync.Mutex
	hist     map[string]int // "op status code RA" -> count
	bad      int            // answers that break the contract
	badKinds map[string]int
	badEx    []string
	// firstAfter: the first business purchase answer after the fault ended.
	faultEnd     atomic.Int64 // unix nanos, 0 until set
	firstAfter   atomic.Int64
	firstOKAfter atomic.Int64

	// stall: a stall scenario, where a client timeout is an answer time
	// to report, not a broken contract.
	stall    bool
	samples  []sample    // every request, for the answer-time table
	accepted []acceptRef // the 202s so far, for the readers
}

func newClient(c *cluster) *client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}
	timeout := opt.reqTimeout
	stall := c.sc.stall > 0
	if stall {
		timeout = opt.stallReqTimeout
	}
	return &client{c: c, hc: &http.Client{Transport: tr, Timeout: timeout},
		hist: map[string]int{}, badKinds: map[string]int{}, stall: stall}
}

func (cl *client) do(ctx context.Context, a *app, method, path, bearer string, hdr map[string]string) reply {
	start := time.Now()
	r, err := harness.Do(ctx, cl.hc, harness.Request{Method: method, URL: a.url + path, Bearer: bearer, Header: hdr})
	var rep reply
	if err != nil {
		var ne net.Error
		rep = reply{err: err, timeout: errors.As(err, &ne) && ne.Timeout()}
	} else {
		rep = reply{status: r.Status, code: r.Code, retryAfter: r.RetryAfter, body: r.Body}
	}
	cl.record(opOf(method, path), start, rep)
	return rep
}

func (cl *client) note(op string, a *app, r reply, bad bool, why string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.hist[op+" "+r.String()]++
	if bad {
		cl.bad++
		k := op + " " + r.String()
		if why != "" {
			k += " (" + why + ")"
		}
		cl.badKinds[k]++
		if len(cl.badEx) < 8 {
			msg := fmt.Sprintf("+%.1fs app%d %s %s", cl.c.since(), a.idx, op, r.String())
			if why != "" {
				msg += " (" + why + ")"
			}
			if r.err != nil {
				msg += ": " + r.err.Error()
			} else if len(r.body) > 0 && r.status >= 400 {
				msg += ": " + strings.TrimSpace(string(r.body[:min(len(r.body), 200)]))
			}
			cl.badEx = append(cl.badEx, msg)
		}
	}
}

// markAnswer records the first business answer, and the first 202, after
// the fault ended.
func (cl *client) markAnswer(accepted bool) {
	fe := cl.faultEnd.Load()
	if fe == 0 {
		return
	}
	now := time.Now().UnixNano()
	if now < fe {
		return
	}
	cl.firstAfter.CompareAndSwap(0, now)
	if accepted {
		cl.firstOKAfter.CompareAndSwap(0, now)
	}
}

// verdict of one answer for the caller's loop.
type verdict int

const (
	vDone  verdict = iota // success
	vFinal                // a business answer: stop
	vRetry                // retry the same request (maybe elsewhere)
)

// judgeTransport: a transport error is expected only from an instance the
// harness took down; in a stall scenario a client timeout is an answer
// time (reported in the answer-time table), not a broken contract.
func (cl *client) judgeTransport(op string, a *app, r reply) verdict {
	cl.note(op, a, r, !a.down.Load() && !a.gone.Load() && !(cl.stall && r.timeout), "instance was not faulted")
	return vRetry
}

// judgeRetryable handles the answers every route may give under faults.
// ok tells whether the reply was one of them.
func (cl *client) judgeRetryable(op string, a *app, r reply) (verdict, bool) {
	switch {
	case r.err != nil:
		return cl.judgeTransport(op, a, r), true
	case r.status == 503:
		if r.validRA() && (r.code == "unavailable" || r.code == "overloaded") {
			cl.note(op, a, r, false, "")
		} else {
			cl.note(op, a, r, true, "503 without Retry-After or with an unknown code")
		}
		return vRetry, true
	case r.status == 429 && r.code == "rate_limited":
		cl.note(op, a, r, !r.validRA(), "429 without Retry-After")
		return vRetry, true
	case r.status >= 500:
		cl.note(op, a, r, true, "5xx other than 503")
		return vRetry, true
	}
	return vRetry, false
}

// pause waits before a retry: Retry-After capped at opt.maxWait, else a
// short backoff.
func pause(ctx context.Context, r reply, attempt int) {
	d := time.Duration(min(100<<min(attempt, 4), 1000)) * time.Millisecond
	if n, err := strconv.Atoi(r.retryAfter); err == nil && n >= 1 {
		d = min(time.Duration(n)*time.Second, opt.maxWait)
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// buyer is one user with one purchase token.
type buyer struct {
	user  int64
	jwt   string
	home  int
	wave  int
	token string

	final string // "202", a refusal code, or "no_answer"
	// tokenSoldOut: the token request itself was refused as sold_out.
	tokenSoldOut bool
	lastSeen     string
	orderID      string
	acceptApp    int
	orderIDs     map[string]bool // every order id a 202 of this key carried
	answeredAt   time.Time
}

// next picks the instance after a failure: the other one when there are two.
func (cl *client) next(i int) int { return (i + 1) % len(cl.c.apps) }

// buy runs one buyer to a final answer: a token, then the purchase, retried
// with the same key on 503/429/5xx/network errors, failing over.
func (cl *client) buy(ctx context.Context, b *buyer) {
	// The wave's ctx carries the -sale-deadline; each buyer also has its own.
	deadline := time.Now().Add(opt.buyerDeadline)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	inst := b.home % len(cl.c.apps)
	b.orderIDs = map[string]bool{}
	if b.token == "" && !cl.getToken(ctx, b, &inst) {
		return
	}
	cl.purchase(ctx, b, inst)
}

// getToken asks for b's purchase token, retried like a purchase; false
// when b got a final answer (b.final) instead.
func (cl *client) getToken(ctx context.Context, b *buyer, instp *int) bool {
	inst := *instp
	defer func() { *instp = inst }()
	path := fmt.Sprintf("/api/v1/items/%d", cl.item)
	for attempt := 0; b.token == ""; attempt++ {
		if ctx.Err() != nil {
			b.final = "no_answer"
			return false
		}
		a := cl.c.apps[inst]
		r := cl.do(ctx, a, "POST", path+"/tokens", b.jwt, nil)
		if ctx.Err() != nil && r.err != nil {
			b.final = "no_answer"
			return false
		}
		b.lastSeen = r.String()
		if v, ok := cl.judgeRetryable("token", a, r); ok {
			if v == vRetry {
				if r.err != nil || r.status >= 500 {
					inst = cl.next(inst)
				}
				pause(ctx, r, attempt)
			}
			continue
		}
		switch {
		case r.status == 201:
			var t struct {
				Token string `json:"token"`
			}
			if err := json.Unmarshal(r.body, &t); err != nil || t.Token == "" {
				cl.note("token", a, r, true, "201 without a token")
				b.final = "bad_token_reply"
				return false
			}
			cl.note("token", a, r, false, "")
			b.token = t.Token
		case r.status == 410 && r.code == "sale_ended":
			cl.note("token", a, r, false, "")
			b.final = r.code
			return false
		case r.status == 409 && r.code == "sold_out":
			// A true business answer (not in openapi.yaml for this route
			// as of writing; run.check notes how often it came).
			cl.note("token", a, r, false, "")
			cl.markAnswer(false)
			b.final, b.tokenSoldOut, b.acceptApp, b.answeredAt = r.code, true, a.idx, time.Now()
			return false
		default:
			cl.note("token", a, r, true, "unexpected answer")
			b.final = "bad:" + r.String()
			return false
		}
	}
	return true
}

// purchase runs b's purchase with its token to a final answer, starting
// on instance inst.
func (cl *client) purchase(ctx context.Context, b *buyer, inst int) {
	path := fmt.Sprintf("/api/v1/items/%d", cl.item)
	hdr := map[string]string{"Idempotency-Key": b.token}
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			b.final = "no_answer"
			return
		}
		a := cl.c.apps[inst]
		r := cl.do(ctx, a, "POST", path+"/purchase", b.jwt, hdr)
		if ctx.Err() != nil && r.err != nil {
			b.final = "no_answer"
			return
		}
		b.lastSeen = r.String()
		if v, ok := cl.judgeRetryable("purchase", a, r); ok {
			if v == vRetry {
				if r.err != nil || r.status >= 500 {
					inst = cl.next(inst)
				}
				pause(ctx, r, attempt)
			}
			continue
		}
		switch {
		case r.status == 202:
			var p struct {
				OrderID string `json:"order_id"`
				Status  string `json:"status"`
			}
			if err := json.Unmarshal(r.body, &p); err != nil || !orderIDRe.MatchString(p.OrderID) || p.Status != "pending" {
				cl.note("purchase", a, r, true, "202 body is not {order_id, status: pending}")
				b.final = "bad:202"
				return
			}
			cl.note("purchase", a, r, false, "")
			cl.markAnswer(true)
			b.final, b.orderID, b.acceptApp, b.answeredAt = "202", p.OrderID, a.idx, time.Now()
			b.orderIDs[p.OrderID] = true
			cl.addAccepted(b)
			return
		case r.status == 409 && r.code == "purchase_in_progress":
			cl.note("purchase", a, r, !r.validRA(), "purchase_in_progress without Retry-After")
			pause(ctx, r, attempt)
		case (r.status == 409 && (r.code == "sold_out" || r.code == "purchase_limit")) ||
			(r.status == 403 && (r.code == "token_invalid" || r.code == "sale_not_started")) ||
			(r.status == 410 && r.code == "sale_ended"):
			cl.note("purchase", a, r, false, "")
			cl.markAnswer(false)
			b.final, b.acceptApp, b.answeredAt = r.code, a.idx, time.Now()
			return
		default:
			cl.note("purchase", a, r, true, "not a documented purchase answer")
			b.final = "bad:" + r.String()
			return
		}
	}
}

// payFlow (none-pay): right after the 202 the buyer reads the order, pays
// it, and reads it again. Every answer must be 200 or 409 order_pending
// (already_paid after a retried payment); never 404 or 503.
func (cl *client) payFlow(ctx context.Context, b *buyer) (paid bool) {
	ctx, cancel := context.WithTimeout(ctx, opt.buyerDeadline)
	defer cancel()
	a := cl.c.apps[b.acceptApp]
	opath := "/api/v1/orders/" + b.orderID
	checkGet := func(wantPaid bool) {
		r := cl.do(ctx, a, "GET", opath, b.jwt, nil)
		if r.err != nil {
			cl.judgeTransport("order", a, r)
			return
		}
		if r.status != 200 {
			cl.note("order", a, r, true, "GET of an accepted order is not 200")
			return
		}
		var o struct {
			OrderID string `json:"order_id"`
			Status  string `json:"status"`
		}
		if err := json.Unmarshal(r.body, &o); err != nil || o.OrderID != b.orderID ||
			(wantPaid && o.Status != "paid") || (!wantPaid && o.Status != "pending" && o.Status != "paid") {
			cl.note("order", a, r, true, fmt.Sprintf("order body %s (want paid=%v)", strings.TrimSpace(string(r.body)), wantPaid))
			return
		}
		cl.note("order", a, r, false, "")
	}
	checkGet(false)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		r := cl.do(ctx, a, "POST", opath+"/pay", b.jwt, nil)
		switch {
		case r.err != nil:
			cl.judgeTransport("pay", a, r)
			pause(ctx, r, attempt)
			continue
		case r.status == 200 || (r.status == 409 && r.code == "already_paid"):
			cl.note("pay", a, r, false, "")
			checkGet(true)
			return true
		case r.status == 409 && r.code == "order_pending":
			cl.note("pay", a, r, !r.validRA(), "order_pending without Retry-After")
			pause(ctx, r, attempt)
			continue
		default:
			cl.note("pay", a, r, true, "pay of an accepted order is not 200 or order_pending")
			if r.status == 503 || r.status == 429 || r.status == 404 {
				// Keep trying, so the paid count in MySQL still tells
				// whether the payment went through in the end.
				pause(ctx, r, attempt)
				continue
			}
			return false
		}
	}
	return false
}

// replay re-sends an accepted buyer's purchase with the same key to one
// instance: it must answer 202 with the same order id.
func (cl *client) replay(ctx context.Context, b *buyer, a *app) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hdr := map[string]string{"Idempotency-Key": b.token}
	path := fmt.Sprintf("/api/v1/items/%d/purchase", cl.item)
	var last reply
	for attempt := 0; ctx.Err() == nil; attempt++ {
		r := cl.do(ctx, a, "POST", path, b.jwt, hdr)
		last = r
		if _, ok := cl.judgeRetryable("replay", a, r); ok {
			pause(ctx, r, attempt)
			continue
		}
		if r.status == 409 && r.code == "purchase_in_progress" {
			cl.note("replay", a, r, !r.validRA(), "purchase_in_progress without Retry-After")
			pause(ctx, r, attempt)
			continue
		}
		cl.note("replay", a, r, false, "")
		if r.status == 202 {
			var p struct {
				OrderID string `json:"order_id"`
			}
			_ = json.Unmarshal(r.body, &p)
			return "202 " + p.OrderID, p.OrderID == b.orderID
		}
		return r.String(), false
	}
	return "no answer (" + last.String() + ")", false
}

func (cl *client) histogram() []string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var out []string
	for k, v := range cl.hist {
		out = append(out, fmt.Sprintf("%6d  %s", v, k))
	}
	sort.Slice(out, func(i, j int) bool { return out[i][8:] < out[j][8:] })
	return out
}

func (cl *client) badSummary() (int, []string, []string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var kinds []string
	for k, v := range cl.badKinds {
		kinds = append(kinds, fmt.Sprintf("%d x %s", v, k))
	}
	sort.Strings(kinds)
	return cl.bad, kinds, append([]string(nil), cl.badEx...)
}

// ---------------------------------------------------------------- admin

func (cl *client) adminJSON(ctx context.Context, a *app, method, path string, body any, out any) (int, error) {
	r, err := harness.Do(ctx, probe, harness.Request{Method: method, URL: a.url + path, Bearer: cl.c.admin, JSON: body})
	if err != nil {
		return 0, err
	}
	if r.Status/100 != 2 {
		return r.Status, fmt.Errorf("%s %s: %d %s", method, path, r.Status, strings.TrimSpace(string(r.Body)))
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			return r.Status, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return r.Status, nil
}

// stats reads the item's stats from the first live instance that answers.
func (cl *client) stats(ctx context.Context) (harness.ItemStats, error) {
	var last error = errors.New("no live instance")
	for _, a := range cl.c.liveApps() {
		var s harness.ItemStats
		_, err := cl.adminJSON(ctx, a, "GET", fmt.Sprintf("/api/v1/admin/items/%d/stats", cl.item), nil, &s)
		if err == nil {
			if s.Ledger == nil {
				return s, errors.New("stats carry no ledger")
			}
			return s, nil
		}
		last = err
	}
	return harness.ItemStats{}, last
}

// metric sums the samples of name for this item over the live instances;
// ok is false when no instance exported it.
func (cl *client) metric(name string) (max float64, ok bool) {
	label := fmt.Sprintf(`item="%d"`, cl.item)
	cl.metricLines(func(line string) {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			return
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return
		}
		if !ok || abs(v) > abs(max) {
			max = v
		}
		ok = true
	})
	return max, ok
}

// metricLines calls each with every line of /metrics of each live instance;
// an instance that does not answer is skipped.
func (cl *client) metricLines(each func(line string)) {
	for _, a := range cl.c.liveApps() {
		resp, err := probe.Get(a.url + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			each(line)
		}
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
