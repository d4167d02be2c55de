package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"seckill/bench/internal/harness"
)

// paySecret is the payment provider's callback secret the payments-race
// apps share with the harness.
const paySecret = "faults-payment-secret-0123456789"

// paymentsScenario: after the sale, payments (provider callbacks) and
// buyers' cancels race each other and the orders' expiry while app0 is
// killed with SIGKILL and restarted; then payments arrive for orders that
// expired. Checked: no unit returned twice or lost (ledger), no paid
// order lost, every late payment refund_required and counted.
func paymentsScenario() *scenario {
	return &scenario{name: "payments-race", apps: 2, orderTTL: 40 * time.Second, payments: true,
		env: map[string]string{"SECKILL_PAYMENTS_CALLBACK_SECRET": paySecret}}
}

// callback sends a signed payment callback of tx for orderID to a.
func (cl *client) callback(ctx context.Context, a *app, tx, orderID string, amount int64) reply {
	body := fmt.Sprintf(`{"transaction_id":%q,"order_id":%q,"amount_minor":%d,"currency":"EUR","timestamp":%q}`,
		tx, orderID, amount, time.Now().UTC().Format(time.RFC3339Nano))
	mac := hmac.New(sha256.New, []byte(paySecret))
	mac.Write([]byte(body))
	start := time.Now()
	rep := func() reply {
		req, err := http.NewRequestWithContext(ctx, "POST", a.url+"/api/v1/payments/callback", strings.NewReader(body))
		if err != nil {
			return reply{err: err}
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Payment-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := cl.hc.Do(req)
		if err != nil {
			var ne net.Error
			return reply{err: err, timeout: errors.As(err, &ne) && ne.Timeout()}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		r := reply{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: b}
		if resp.StatusCode >= 400 {
			var p struct {
				Code string `json:"code"`
			}
			_ = json.Unmarshal(b, &p)
			r.code = p.Code
		}
		return r
	}()
	cl.record("callback", start, rep)
	return rep
}

// final retries call on the instances in turn until it gets an answer that
// is not a passing state (network error, 503, 429, 409 order_pending).
func (cl *client) final(ctx context.Context, start int, call func(a *app) reply) reply {
	ctx, cancel := context.WithTimeout(ctx, opt.buyerDeadline)
	defer cancel()
	i := start % len(cl.c.apps)
	for attempt := 0; ; attempt++ {
		a := cl.c.apps[i]
		r := call(a)
		switch {
		case ctx.Err() != nil:
			return reply{err: ctx.Err()}
		case r.err != nil, r.status == 503, r.status == 429, r.status == 409 && r.code == "order_pending":
			if r.err == nil && r.retryAfter == "" {
				cl.note("payments", a, r, true, "retryable answer without Retry-After")
			}
			pause(ctx, r, attempt)
			i = cl.next(i)
			continue
		}
		return r
	}
}

func outcomeOf(r reply) string {
	var v struct {
		Outcome string `json:"outcome"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &v) != nil {
		return r.String()
	}
	return v.Outcome
}

// fate is what happened to one accepted order in paymentsRace.
type fate struct {
	b     *buyer
	class int // 0 paid twice at once, 1 cancelled twice at once, 2 cancel vs payment, 3 paid late
	// pay and pay2 are callback outcomes; cancel and cancel2 cancel answers.
	pay, pay2, pay3 string
	cancel, cancel2 reply
}

// paymentsRace: see paymentsScenario.
func (r *run) paymentsRace(ctx context.Context, wave1 []*buyer) {
	cl := r.cl
	var fates []*fate
	for _, b := range wave1 {
		if b.final == "202" {
			fates = append(fates, &fate{b: b, class: len(fates) % 4})
		}
	}
	if len(fates) < 8 {
		r.fail("payments-race: only %d accepted orders, want at least 8", len(fates))
		return
	}
	const price = 1000 // the item's, run.main
	pay := func(f *fate, tx string, i int) string {
		return outcomeOf(cl.final(ctx, i, func(a *app) reply { return cl.callback(ctx, a, tx, f.b.orderID, price) }))
	}
	cancelOrder := func(f *fate, i int) reply {
		return cl.final(ctx, i, func(a *app) reply {
			return cl.do(ctx, a, "POST", "/api/v1/orders/"+f.b.orderID+"/cancel", f.b.jwt, nil)
		})
	}
	// Everything at once, with app0's SIGKILL: each pair of calls of an
	// order goes to both instances.
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range fates {
		tx := "tx-" + f.b.orderID
		switch f.class {
		case 0:
			wg.Go(func() { <-start; f.pay = pay(f, tx, 0) })
			wg.Go(func() { <-start; f.pay2 = pay(f, tx, 1) })
		case 1:
			wg.Go(func() { <-start; f.cancel = cancelOrder(f, 0) })
			wg.Go(func() { <-start; f.cancel2 = cancelOrder(f, 1) })
		case 2:
			wg.Go(func() { <-start; f.cancel = cancelOrder(f, 0) })
			wg.Go(func() { <-start; f.pay = pay(f, tx, 1) })
		}
	}
	var killErr error
	wg.Go(func() { <-start; killErr = r.bounceApp(ctx, r.c.apps[0], syscall.SIGKILL) })
	close(start)
	wg.Wait()
	if killErr != nil {
		r.fail("payments-race: restart after SIGKILL: %v", killErr)
		return
	}
	// The rest expire; then their payments arrive, and class 0's callback
	// is repeated.
	err := harness.WaitFor(ctx, r.sc.orderTTL+90*time.Second, 500*time.Millisecond, "unpaid orders expired and returned", func() (bool, error) {
		s, err := cl.stats(ctx)
		return err == nil && s.Ledger.Pending == 0 && s.Ledger.Unreturned == 0, nil
	})
	if err != nil {
		r.fail("payments-race: %v", err)
		return
	}
	for _, f := range fates {
		switch f.class {
		case 0:
			wg.Go(func() { f.pay3 = pay(f, "tx-"+f.b.orderID, 0) })
		case 3:
			wg.Go(func() { f.pay = pay(f, "tx-"+f.b.orderID, 1) })
		}
	}
	wg.Wait()
	if _, ok := r.settle(ctx, "after payments", true); !ok {
		r.fail("pipeline did not settle after the payments (deadline %s)", opt.settleTimeout)
	}
	r.checkPayments(ctx, fates)
}

// checkPayments: each order ended in the one state its answers allow, and
// the books add up.
func (r *run) checkPayments(ctx context.Context, fates []*fate) {
	type row struct {
		status string
		refund bool
	}
	rows := map[string]row{}
	q, err := r.c.db.QueryContext(ctx, "SELECT order_id, status, refund_required FROM orders WHERE item_id = ?", r.cl.item)
	if err != nil {
		r.fail("read orders: %v", err)
		return
	}
	for q.Next() {
		var id string
		var w row
		if err := q.Scan(&id, &w.status, &w.refund); err != nil {
			q.Close()
			r.fail("read orders: %v", err)
			return
		}
		rows[id] = w
	}
	q.Close()
	var paid, refunds, cancelled, bad int
	var ex []string
	wrong := func(f *fate, why string) {
		bad++
		if len(ex) < 5 {
			ex = append(ex, fmt.Sprintf("order %s (class %d): %s; row %+v, pay %s/%s/%s, cancel %s/%s",
				f.b.orderID, f.class, why, rows[f.b.orderID], f.pay, f.pay2, f.pay3, f.cancel, f.cancel2))
		}
	}
	for _, f := range fates {
		w := rows[f.b.orderID]
		isPaid := w.status == "paid"
		isRefund := w.status == "cancelled" && w.refund
		isCancelled := w.status == "cancelled" && !w.refund
		switch f.class {
		case 0: // one transaction twice at once, then again after expiry
			switch {
			case f.pay != f.pay2 || f.pay != f.pay3:
				wrong(f, "one transaction answered two outcomes")
			case f.pay == "paid" && !isPaid:
				wrong(f, "payment answered paid, order not paid: a paid order lost")
			case f.pay == "refund_required" && !isRefund:
				wrong(f, "refund_required, order not refund_required")
			case f.pay != "paid" && f.pay != "refund_required":
				wrong(f, "no outcome")
			}
		case 1: // cancelled twice at once
			if f.cancel.status != 200 || f.cancel2.status != 200 || !isCancelled {
				wrong(f, "cancel not 200 twice, or the order not cancelled")
			}
		case 2: // cancel vs payment
			switch {
			case f.pay == "paid" && f.cancel.status == 409 && f.cancel.code == "already_paid" && isPaid:
			case f.pay == "refund_required" && f.cancel.status == 200 && isRefund:
			default:
				wrong(f, "cancel and payment both won, or neither")
			}
		case 3: // paid after expiry
			if f.pay != "refund_required" || !isRefund {
				wrong(f, "a payment after expiry did not end refund_required")
			}
		}
		switch {
		case isPaid:
			paid++
		case isRefund:
			refunds++
		case w.status == "cancelled":
			cancelled++
		}
	}
	if bad > 0 {
		r.fail("payments-race: %d orders in a state their answers do not allow, e.g. %s", bad, strings.Join(ex, "; "))
	}
	st, err := r.cl.stats(ctx)
	if err != nil {
		r.fail("payments-race: stats: %v", err)
		return
	}
	l := st.Ledger
	r.note("payments-race: %d orders: paid %d, refund_required %d, cancelled %d; ledger paid %d cancelled %d returned %d refund_required %d remaining %d",
		len(fates), paid, refunds, cancelled, l.Paid, l.Cancelled, l.Returned, l.RefundRequired, l.Remaining)
	if l.RefundRequired != int64(refunds) {
		r.fail("payments-race: ledger counts %d refund_required, the orders %d", l.RefundRequired, refunds)
	}
	if l.Returned != l.Cancelled || l.Remaining != l.Stock-l.Active {
		r.fail("payments-race: units: returned %d of %d cancelled, remaining %d, stock %d - active %d: a unit returned twice or not at all",
			l.Returned, l.Cancelled, l.Remaining, l.Stock, l.Active)
	}
	if v, ok := r.cl.counter("seckill_refunds_required_total"); ok {
		// app0 was restarted: its count before the SIGKILL is gone.
		r.note("payments-race: seckill_refunds_required_total over the live instances: %v", v)
	}
}

// counter sums an unlabelled counter over the live instances.
func (cl *client) counter(name string) (sum float64, ok bool) {
	cl.metricLines(func(line string) {
		var v float64
		if _, err := fmt.Sscanf(line, name+" %g", &v); err == nil {
			sum, ok = sum+v, true
		}
	})
	return sum, ok
}
