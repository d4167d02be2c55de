package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"seckill/bench/internal/harness"
)

var hc = &http.Client{
	Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
	},
	Timeout: 120 * time.Second,
}

// users signs and caches one JWT per user id.
type users struct {
	secret string
	mu     sync.Mutex
	jwts   map[int64]string
}

func (u *users) jwt(user int64) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.jwts == nil {
		u.jwts = map[int64]string{}
	}
	if s, ok := u.jwts[user]; ok {
		return s
	}
	s := harness.SignJWT(u.secret, user, 6*time.Hour)
	u.jwts[user] = s
	return s
}

// reply is one HTTP exchange.
type reply struct {
	status     int
	code       string // problem+json code
	retryAfter string
	body       []byte
}

// do sends one request; body, if not nil, is sent as JSON.
func do(ctx context.Context, method, url, bearer string, hdr map[string]string, body any) (reply, error) {
	r, err := harness.Do(ctx, hc, harness.Request{Method: method, URL: url, Bearer: bearer, Header: hdr, JSON: body})
	if err != nil {
		return reply{}, err
	}
	return reply{status: r.Status, code: r.Code, retryAfter: r.RetryAfter, body: r.Body}, nil
}

func (r reply) String() string {
	s := strconv.Itoa(r.status)
	if r.code != "" {
		s += " " + r.code
	}
	return s
}

// transient: worth retrying the same request.
func (r reply) transient() bool {
	return r.status == 503 || r.status == 429 || (r.status == 409 && (r.code == "purchase_in_progress" || r.code == "order_pending"))
}

// backoff waits before a retry: Retry-After capped at 1s, else 50ms.
func backoff(ctx context.Context, r reply) {
	d := 50 * time.Millisecond
	if n, err := strconv.Atoi(r.retryAfter); err == nil && n >= 1 {
		d = min(time.Duration(n)*time.Second, time.Second)
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// retrying runs f until it gives a non-transient answer, or d passed.
func retrying(ctx context.Context, d time.Duration, what string, f func() (reply, error)) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last reply
	var lastErr error
	for {
		r, err := f()
		if err == nil && !r.transient() {
			return r, nil
		}
		last, lastErr = r, err
		if ctx.Err() != nil {
			if lastErr != nil {
				return last, fmt.Errorf("%s: no answer within %s: %w", what, d, lastErr)
			}
			return last, fmt.Errorf("%s: no answer within %s: last %s", what, d, last)
		}
		backoff(ctx, r)
	}
}

// ---------------------------------------------------------------- admin

// ledger is an item's books (harness.Ledger), with this tool's methods.
type ledger harness.Ledger

// settled: nothing moves any more and the books balance.
func (l *ledger) settled() bool {
	return l.Remaining == 0 && l.Outbox == 0 && l.Pending == 0 && l.Unreturned == 0 && l.Drift == 0 && l.Oversold == 0
}

func (l *ledger) String() string {
	return fmt.Sprintf("stock %d remaining %d outbox %d pending %d paid %d cancelled %d returned %d drift %d oversold %d",
		l.Stock, l.Remaining, l.Outbox, l.Pending, l.Paid, l.Cancelled, l.Returned, l.Drift, l.Oversold)
}

func (c *cluster) adminJSON(ctx context.Context, a *app, method, path string, body, out any) error {
	r, err := retrying(ctx, 60*time.Second, method+" "+path, func() (reply, error) {
		return do(ctx, method, a.url+path, c.admin, nil, body)
	})
	if err != nil {
		return err
	}
	if r.status/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, r, strings.TrimSpace(string(r.body)))
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// createItem creates an item through the admin API and returns its id.
func (c *cluster) createItem(ctx context.Context, name string, stock int64, shards int) (int64, error) {
	var v struct {
		ID int64 `json:"id"`
	}
	err := c.adminJSON(ctx, c.apps[0], "POST", "/api/v1/admin/items",
		map[string]any{"name": name, "price_minor": 1000, "currency": "EUR", "stock": stock, "shards": shards, "per_user_limit": 1}, &v)
	if err == nil && v.ID <= 0 {
		err = errors.New("create item: no id in the answer")
	}
	return v.ID, err
}

func (c *cluster) stats(ctx context.Context, item int64) (*ledger, error) {
	var s harness.ItemStats
	if err := c.adminJSON(ctx, c.apps[0], "GET", fmt.Sprintf("/api/v1/admin/items/%d/stats", item), nil, &s); err != nil {
		return nil, err
	}
	if s.Ledger == nil {
		return nil, errors.New("stats carry no ledger")
	}
	return (*ledger)(s.Ledger), nil
}

// waitSettled polls the stats of every item until each is settled and
// check (if not nil) accepts its ledger.
func (c *cluster) waitSettled(ctx context.Context, items []int64, check func(id int64, l *ledger) error) error {
	left := append([]int64(nil), items...)
	var lastBad string
	err := harness.WaitFor(ctx, opt.settleTimeout, 500*time.Millisecond, fmt.Sprintf("%d item(s) settled", len(items)), func() (bool, error) {
		type res struct {
			id  int64
			bad string
			err error
		}
		out := make([]res, len(left))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i, id := range left {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				l, err := c.stats(ctx, id)
				out[i] = res{id: id, err: err}
				switch {
				case err != nil:
				case !l.settled():
					out[i].bad = l.String()
				case check != nil:
					if err := check(id, l); err != nil {
						out[i].bad = err.Error()
					}
				}
			}()
		}
		wg.Wait()
		var next []int64
		var firstErr error
		for _, r := range out {
			if r.err != nil || r.bad != "" {
				next = append(next, r.id)
				if r.err != nil && firstErr == nil {
					firstErr = r.err
				}
				if r.bad != "" {
					lastBad = fmt.Sprintf("item %d: %s", r.id, r.bad)
				}
			}
		}
		left = next
		if len(left) > 0 && firstErr == nil {
			firstErr = fmt.Errorf("%d item(s) not settled, e.g. %s", len(left), lastBad)
		}
		return len(left) == 0, firstErr
	})
	return err
}

// ---------------------------------------------------------------- buyers

// buy takes one unit of item for user: a token, then the purchase, both
// retried on transient answers. It returns the order id of a 202, or "" and
// the business refusal.
func (c *cluster) buy(ctx context.Context, a *app, u *users, item, user int64) (string, string, error) {
	j := u.jwt(user)
	base := fmt.Sprintf("%s/api/v1/items/%d", a.url, item)
	r, err := retrying(ctx, 60*time.Second, "token", func() (reply, error) {
		return do(ctx, "POST", base+"/tokens", j, nil, nil)
	})
	if err != nil {
		return "", "", err
	}
	if r.status == 409 && r.code == "sold_out" {
		return "", r.code, nil
	}
	var t struct {
		Token string `json:"token"`
	}
	if r.status != 201 || json.Unmarshal(r.body, &t) != nil || t.Token == "" {
		return "", "", fmt.Errorf("token: %s %s", r, r.body)
	}
	hdr := map[string]string{"Idempotency-Key": t.Token}
	r, err = retrying(ctx, 60*time.Second, "purchase", func() (reply, error) {
		return do(ctx, "POST", base+"/purchase", j, hdr, nil)
	})
	if err != nil {
		return "", "", err
	}
	switch {
	case r.status == 202:
		var p struct {
			OrderID string `json:"order_id"`
		}
		if json.Unmarshal(r.body, &p) != nil || p.OrderID == "" {
			return "", "", fmt.Errorf("purchase: 202 without an order id: %s", r.body)
		}
		return p.OrderID, "", nil
	case r.status == 409 && (r.code == "sold_out" || r.code == "purchase_limit"):
		return "", r.code, nil
	}
	return "", "", fmt.Errorf("purchase: %s %s", r, r.body)
}

// pay pays an order, waiting (order_pending) until it is in MySQL.
func (c *cluster) pay(ctx context.Context, a *app, u *users, user int64, orderID string) error {
	j := u.jwt(user)
	r, err := retrying(ctx, opt.settleTimeout, "pay", func() (reply, error) {
		return do(ctx, "POST", a.url+"/api/v1/orders/"+orderID+"/pay", j, nil, nil)
	})
	if err != nil {
		return err
	}
	if r.status == 200 || (r.status == 409 && r.code == "already_paid") {
		return nil
	}
	return fmt.Errorf("pay %s: %s %s", orderID, r, r.body)
}

// sellOut buys every unit of the items (stock units each, users
// firstUser, firstUser+1, ...) and pays every order, spreading the buyers
// over the instances.
func (c *cluster) sellOut(ctx context.Context, u *users, items []int64, stock int, firstUser int64) (int, error) {
	type job struct {
		item int64
		k    int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var firstErr error
	bought := 0
	var wg sync.WaitGroup
	for w := 0; w < opt.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				user := firstUser + int64(j.k)
				a := c.apps[(int(j.item)+j.k)%len(c.apps)]
				// A refusal (sold out, limit) is no error: the
				// count checked by the caller tells.
				id, _, err := c.buy(ctx, a, u, j.item, user)
				if err == nil && id != "" {
					err = c.pay(ctx, a, u, user, id)
				}
				mu.Lock()
				switch {
				case err != nil:
					if firstErr == nil {
						firstErr = fmt.Errorf("item %d user %d: %w", j.item, user, err)
					}
				case id != "":
					bought++
				}
				mu.Unlock()
			}
		}()
	}
	for k := 0; k < stock; k++ {
		for _, it := range items {
			jobs <- job{it, k}
		}
	}
	close(jobs)
	wg.Wait()
	return bought, firstErr
}

// getOrder reads an order as its buyer.
func getOrder(ctx context.Context, a *app, bearer, id string) (reply, error) {
	return do(ctx, "GET", a.url+"/api/v1/orders/"+id, bearer, nil, nil)
}
