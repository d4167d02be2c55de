package handler

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/order"
)

// sign is the X-Payment-Signature of body under the fixture's secret.
func sign(body string) http.Header {
	mac := hmac.New(sha256.New, []byte(benchPaySecret))
	mac.Write([]byte(body))
	return http.Header{SignatureHeader: {"sha256=" + hex.EncodeToString(mac.Sum(nil))}}
}

// callbackBody is a provider's report of tx paying amount EUR for id, sent
// at `at`.
func callbackBody(tx string, id int64, amount int64, cur string, at time.Time) string {
	return fmt.Sprintf(`{"transaction_id":%q,"order_id":"%d","amount_minor":%d,"currency":%q,"timestamp":%q}`,
		tx, id, amount, cur, at.UTC().Format(time.RFC3339Nano))
}

func (f *fixture) callback(body string, hdr http.Header) *httptest.ResponseRecorder {
	return f.do("POST", "/api/v1/payments/callback", "", body, hdr)
}

// userJWT is a signed token of user.
func userJWT(user int64) string {
	jwt, _ := SignUserToken([]byte(benchSecret), user, time.Hour)
	return jwt
}

// sweepsAt starts n sweeper passes on wg, each waiting for start: the
// expiry path released together with the requests it races.
func (f *fixture) sweepsAt(t *testing.T, wg *sync.WaitGroup, start <-chan struct{}, n int) {
	for range n {
		wg.Go(func() {
			<-start
			if _, err := f.sweeper.Sweep(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
}

// bought buys one unit for user through the API and stores the order as
// the writer would, expiring at expires; it returns the order id.
func (f *fixture) bought(t *testing.T, user int64, expires time.Time) int64 {
	t.Helper()
	w := f.purchase(f.buyers(t, 1, user)[0])
	var pv purchaseView
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &pv) != nil {
		t.Fatalf("purchase of user %d: %d %s, want 202", user, w.Code, w.Body)
	}
	id, _ := strconv.ParseInt(pv.OrderID, 10, 64)
	f.store(t, id, user, expires)
	return id
}

// store writes the order row as the writer would (the price is copied from
// the item by the store).
func (f *fixture) store(t *testing.T, id, user int64, expires time.Time) {
	t.Helper()
	created := expires.Add(-time.Hour)
	if n, _, err := f.orders.InsertBatch(context.Background(), []order.Order{{ID: id, ItemID: f.item.ID, UserID: user,
		CreatedAt: created, ExpiresAt: expires}}); err != nil || n != 1 {
		t.Fatalf("store order %d: %d rows, %v", id, n, err)
	}
}

// remaining is the item's units left in Redis.
func (f *fixture) remaining(t *testing.T) int64 {
	t.Helper()
	shards, err := f.stock.Remaining(context.Background(), f.item.ID, f.item.Shards)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range shards {
		n += s
	}
	return n
}

func (f *fixture) counts(t *testing.T) order.Counts {
	t.Helper()
	c, err := f.orders.Counts(context.Background(), f.item.ID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// orderStatus is the order as its buyer reads it.
func (f *fixture) orderStatus(t *testing.T, id, user int64) orderView {
	t.Helper()
	w := f.do("GET", "/api/v1/orders/"+strconv.FormatInt(id, 10), userJWT(user), "", nil)
	var v orderView
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &v) != nil {
		t.Fatalf("read order %d: %d %s", id, w.Code, w.Body)
	}
	return v
}

func outcomeOf(t *testing.T, w *httptest.ResponseRecorder) callbackAnswer {
	t.Helper()
	var a callbackAnswer
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &a) != nil {
		t.Fatalf("callback: %d %s, want 200", w.Code, w.Body)
	}
	return a
}

// TestCallbackPaysOnce: a signed callback inside the window pays a pending
// order at its price; the same callback again answers the same body,
// marked replayed, and changes nothing; the revenue counts it once.
func TestCallbackPaysOnce(t *testing.T) {
	f := newFixture(t, 2, 1)
	const buyer = 7
	id := f.bought(t, buyer, time.Now().Add(time.Hour))
	if v := f.orderStatus(t, id, buyer); v.AmountMinor != 1999 || v.Currency != "EUR" {
		t.Fatalf("order amount: got %d %q, want 1999 EUR", v.AmountMinor, v.Currency)
	}
	body := callbackBody("tx-1", id, 1999, "EUR", time.Now())
	first := f.callback(body, sign(body))
	if a := outcomeOf(t, first); a.Outcome != order.PaymentPaid || first.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("first callback: %s %v, want paid, not replayed", first.Body, first.Header())
	}
	again := f.callback(body, sign(body))
	if again.Body.String() != first.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("repeated callback: %d %s %v; want the first answer %s, replayed", again.Code, again.Body, again.Header(), first.Body)
	}
	if v := f.orderStatus(t, id, buyer); v.Status != order.StatusPaid {
		t.Errorf("order status: got %s, want paid", v.Status)
	}
	if c := f.counts(t); c.Paid != 1 || c.Revenue != 1999 || c.RefundRequired != 0 {
		t.Errorf("counts: %+v, want 1 paid, revenue 1999, no refund", c)
	}
	if got := metricValue(t, f, "seckill_revenue_minor_total"); got != 1999 {
		t.Errorf("seckill_revenue_minor_total: got %v, want 1999 (once)", got)
	}
}

// metricValue sums the series of a metric on the fixture's registry.
func metricValue(t *testing.T, f *fixture, name string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestCallbackBadInputChangesNothing: every malformed, unsigned, stale or
// mismatched callback is a 4xx problem in our words, and the order stays
// pending with no payment recorded.
func TestCallbackBadInputChangesNothing(t *testing.T) {
	f := newFixture(t, 1, 1)
	const buyer = 7
	id := f.bought(t, buyer, time.Now().Add(time.Hour))
	now := time.Now()
	good := callbackBody("tx-bad", id, 1999, "EUR", now)
	signed := func(b string) (string, http.Header) { return b, sign(b) }
	cases := []struct {
		name   string
		body   string
		hdr    http.Header
		status int
		code   string
	}{
		{"no signature", good, nil, 401, CodeBadSignature},
		{"wrong signature", good, http.Header{SignatureHeader: {"sha256=" + strings.Repeat("0", 64)}}, 401, CodeBadSignature},
		{"signature without scheme", good, http.Header{SignatureHeader: {sign(good).Get(SignatureHeader)[len("sha256="):]}}, 401, CodeBadSignature},
		{"signature of another body", good, sign(callbackBody("tx-bad", id, 1, "EUR", now)), 401, CodeBadSignature},
		{"stale", "", nil, 401, CodeStaleCallback},
		{"future", "", nil, 401, CodeStaleCallback},
		{"negative amount", "", nil, 400, CodeInvalidRequest},
		{"zero amount", "", nil, 400, CodeInvalidRequest},
		{"amount over the bound", "", nil, 400, CodeInvalidRequest},
		{"amount overflowing int64", "", nil, 400, CodeInvalidRequest},
		{"unknown currency", "", nil, 400, CodeInvalidRequest},
		{"lower-case currency", "", nil, 400, CodeInvalidRequest},
		{"no transaction id", "", nil, 400, CodeInvalidRequest},
		{"bad order id", "", nil, 400, CodeInvalidRequest},
		{"unknown field", "", nil, 400, CodeInvalidRequest},
		{"oversized body", "", nil, 400, CodeInvalidRequest},
		{"other amount", "", nil, 422, CodeAmountMismatch},
		{"other currency", "", nil, 422, CodeAmountMismatch},
		{"unknown order", "", nil, 404, CodeNotFound},
	}
	bodies := map[string]string{
		"stale":                    callbackBody("tx-bad", id, 1999, "EUR", now.Add(-6*time.Minute)),
		"future":                   callbackBody("tx-bad", id, 1999, "EUR", now.Add(6*time.Minute)),
		"negative amount":          callbackBody("tx-bad", id, -1999, "EUR", now),
		"zero amount":              callbackBody("tx-bad", id, 0, "EUR", now),
		"amount over the bound":    callbackBody("tx-bad", id, order.MaxPriceMinor+1, "EUR", now),
		"amount overflowing int64": strings.Replace(good, `"amount_minor":1999`, `"amount_minor":92233720368547758070`, 1),
		"unknown currency":         callbackBody("tx-bad", id, 1999, "ABC", now),
		"lower-case currency":      callbackBody("tx-bad", id, 1999, "eur", now),
		"no transaction id":        callbackBody("", id, 1999, "EUR", now),
		"bad order id":             strings.Replace(good, fmt.Sprintf(`"order_id":"%d"`, id), `"order_id":"0x1"`, 1),
		"unknown field":            strings.Replace(good, `{`, `{"tip":1,`, 1),
		"oversized body":           strings.Replace(good, `{`, `{"pad":"`+strings.Repeat("x", maxCallbackBody)+`",`, 1),
		"other amount":             callbackBody("tx-bad", id, 1998, "EUR", now),
		"other currency":           callbackBody("tx-bad", id, 1999, "USD", now),
		"unknown order":            callbackBody("tx-bad", id+1<<22, 1999, "EUR", now),
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, hdr := tc.body, tc.hdr
			if b, ok := bodies[tc.name]; ok {
				body, hdr = signed(b)
			}
			w := f.callback(body, hdr)
			var p Problem
			if w.Code != tc.status || w.Header().Get("Content-Type") != "application/problem+json" ||
				json.Unmarshal(w.Body.Bytes(), &p) != nil || p.Code != tc.code {
				t.Errorf("got %d %s %s, want %d problem %s", w.Code, w.Header().Get("Content-Type"), w.Body, tc.status, tc.code)
			}
		})
	}
	if w := f.do("POST", "/api/v1/payments/callback", "", "", sign("")); w.Code != 415 {
		t.Errorf("no content type: got %d, want 415", w.Code)
	}
	if v := f.orderStatus(t, id, buyer); v.Status != order.StatusPending {
		t.Errorf("after refused callbacks: order %s, want pending", v.Status)
	}
	// Nothing recorded: the transaction id is still free to pay the order.
	if a := outcomeOf(t, f.callback(good, sign(good))); a.Outcome != order.PaymentPaid {
		t.Errorf("the good callback afterwards: %+v, want paid", a)
	}
}

// TestPaymentRoutesOff: without a shared secret the callback is a
// 404 and the demo route, off, is a 404 too.
func TestPaymentRoutesOff(t *testing.T) {
	h, err := New(Deps{AdminToken: benchAdmin, JWTSecret: benchSecret, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	off := &fixture{serve: h.Routes()}
	body := callbackBody("tx", 1, 1, "EUR", time.Now())
	if w := off.callback(body, sign(body)); w.Code != 404 {
		t.Errorf("callback without a secret: got %d %s, want 404", w.Code, w.Body)
	}
	if w := off.do("POST", "/api/v1/orders/1/pay", userJWT(7), "", nil); w.Code != 404 || !strings.Contains(w.Body.String(), "demo_pay") {
		t.Errorf("demo pay off: got %d %s, want 404 naming payments.demo_pay", w.Code, w.Body)
	}
}

// TestRepeatedCallbacksReleasedTogether: one transaction reported many
// times at once pays once and every answer is the same; other
// transactions for the same order, at once, are refund_required.
func TestRepeatedCallbacksReleasedTogether(t *testing.T) {
	f := newFixture(t, 1, 1)
	const buyer, n = 7, 12
	id := f.bought(t, buyer, time.Now().Add(time.Hour))
	body := callbackBody("tx-same", id, 1999, "EUR", time.Now())
	others := make([]string, n)
	for i := range others {
		others[i] = callbackBody(fmt.Sprintf("tx-other-%d", i), id, 1999, "EUR", time.Now())
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	same := make([]*httptest.ResponseRecorder, n)
	diff := make([]*httptest.ResponseRecorder, n)
	for i := range n {
		wg.Go(func() { <-start; same[i] = f.callback(body, sign(body)) })
		wg.Go(func() { <-start; diff[i] = f.callback(others[i], sign(others[i])) })
	}
	close(start)
	wg.Wait()
	paid, replayed := 0, 0
	for _, w := range same {
		if w.Body.String() != same[0].Body.String() {
			t.Errorf("repeats answered differently: %s vs %s", w.Body, same[0].Body)
		}
		if w.Header().Get("Idempotent-Replayed") == "true" {
			replayed++
		}
	}
	all := append([]*httptest.ResponseRecorder{same[0]}, diff...)
	for _, w := range all {
		if outcomeOf(t, w).Outcome == order.PaymentPaid {
			paid++
		}
	}
	if paid != 1 || replayed != n-1 {
		t.Errorf("paid outcomes %d, replayed repeats %d; want 1 and %d", paid, replayed, n-1)
	}
	c := f.counts(t)
	if c.Paid != 1 || c.Sold != 1 || c.Revenue != 1999 {
		t.Errorf("counts %+v, want one paid order, sold 1, revenue 1999", c)
	}
	// n+1 transactions applied, one of them paid: n to refund.
	if got := metricValue(t, f, "seckill_refunds_required_total"); got != n {
		t.Errorf("seckill_refunds_required_total: got %v, want %d", got, n)
	}
}

// TestLatePaymentAfterResale: the order expired, its unit went back and
// was sold to another buyer; then the first buyer's payment arrives. It
// must not revive the order (that would sell one unit twice): the order
// reads refund_required, the unit stays the second buyer's, and the books
// add up.
func TestLatePaymentAfterResale(t *testing.T) {
	f := newFixture(t, 1, 1)
	ctx := context.Background()
	const first, second = 7, 8
	late := f.bought(t, first, time.Now().Add(-time.Second)) // expired
	if res, err := f.sweeper.Sweep(ctx); err != nil || res.Cancelled != 1 || res.Returned != 1 {
		t.Fatalf("sweep: %+v %v, want the order cancelled and its unit returned", res, err)
	}
	if got := f.remaining(t); got != 1 {
		t.Fatalf("remaining after expiry: %d, want 1", got)
	}
	f.sweeper.Sweep(ctx) // nothing more to do: the sold-out flag was cleared by the return
	resold := f.bought(t, second, time.Now().Add(time.Hour))

	body := callbackBody("tx-late", late, 1999, "EUR", time.Now())
	if a := outcomeOf(t, f.callback(body, sign(body))); a.Outcome != order.PaymentRefundRequired {
		t.Fatalf("late payment: %+v, want refund_required", a)
	}
	if v := f.orderStatus(t, late, first); v.Status != order.StatusRefundRequired {
		t.Errorf("late order reads %s, want refund_required", v.Status)
	}
	if res, err := f.sweeper.Sweep(ctx); err != nil || res.Returned != 0 {
		t.Errorf("sweep after the late payment: %+v %v, want nothing returned", res, err)
	}
	if got := f.remaining(t); got != 0 {
		t.Errorf("remaining: %d, want 0 (the unit is the second buyer's, not taken twice nor returned twice)", got)
	}
	body2 := callbackBody("tx-second", resold, 1999, "EUR", time.Now())
	if a := outcomeOf(t, f.callback(body2, sign(body2))); a.Outcome != order.PaymentPaid {
		t.Errorf("second buyer's payment: %+v, want paid", a)
	}
	c := f.counts(t)
	want := order.Counts{Paid: 1, Cancelled: 1, Returned: 1, Sold: 1, Stock: 1, RefundRequired: 1, Revenue: 1999}
	if c != want {
		t.Errorf("counts: got %+v, want %+v", c, want)
	}
	if got := metricValue(t, f, "seckill_refunds_required_total"); got != 1 {
		t.Errorf("seckill_refunds_required_total: got %v, want 1", got)
	}
}

// TestPaymentAfterWindowBeforeSweep: a payment for an order past its
// window that the sweeper has not cancelled yet cancels it (as the sweeper
// would), returns its unit at once, and is refund_required.
func TestPaymentAfterWindowBeforeSweep(t *testing.T) {
	f := newFixture(t, 1, 1)
	const buyer = 7
	id := f.bought(t, buyer, time.Now().Add(-time.Second))
	body := callbackBody("tx-expired", id, 1999, "EUR", time.Now())
	if a := outcomeOf(t, f.callback(body, sign(body))); a.Outcome != order.PaymentRefundRequired {
		t.Fatalf("payment past the window: %+v, want refund_required", a)
	}
	if got := f.remaining(t); got != 1 {
		t.Errorf("remaining: %d, want 1 (returned at once)", got)
	}
	if res, err := f.sweeper.Sweep(context.Background()); err != nil || res.Returned != 0 || res.Cancelled != 0 {
		t.Errorf("sweep afterwards: %+v %v, want nothing left to do", res, err)
	}
	if got := f.remaining(t); got != 1 {
		t.Errorf("remaining after the sweep: %d, want 1", got)
	}
}

// TestCancel: the buyer gives back a pending order: the unit is back at
// once, the buyer's slot is free (limit 1: they can buy again), a retry
// answers the same, another user gets a missing id's 404, a paid order is
// 409, an order not stored yet is 409 order_pending with Retry-After.
func TestCancel(t *testing.T) {
	f := newFixture(t, 1, 1)
	const buyer, other = 7, 8
	id := f.bought(t, buyer, time.Now().Add(time.Hour))
	path := "/api/v1/orders/" + strconv.FormatInt(id, 10) + "/cancel"

	theirs := f.do("POST", path, userJWT(other), "", nil)
	missing := f.do("POST", "/api/v1/orders/"+strconv.FormatInt(id+1<<22, 10)+"/cancel", userJWT(other), "", nil)
	if theirs.Code != 404 || theirs.Body.String() != missing.Body.String() {
		t.Errorf("another user's cancel: %d %s; missing id: %d %s; want the same 404", theirs.Code, theirs.Body, missing.Code, missing.Body)
	}
	if v := f.orderStatus(t, id, buyer); v.Status != order.StatusPending || f.remaining(t) != 0 {
		t.Fatalf("after another user's cancel: %s, remaining %d; want pending, 0", v.Status, f.remaining(t))
	}

	first := f.do("POST", path, userJWT(buyer), "", nil)
	var v orderView
	if first.Code != 200 || json.Unmarshal(first.Body.Bytes(), &v) != nil || v.Status != order.StatusCancelled {
		t.Fatalf("cancel: %d %s, want 200 cancelled", first.Code, first.Body)
	}
	if got := f.remaining(t); got != 1 {
		t.Errorf("remaining after cancel: %d, want 1 at once", got)
	}
	if again := f.do("POST", path, userJWT(buyer), "", nil); again.Code != 200 || again.Body.String() != first.Body.String() {
		t.Errorf("retried cancel: %d %s, want %s", again.Code, again.Body, first.Body)
	}
	if got := f.remaining(t); got != 1 {
		t.Errorf("remaining after a retried cancel: %d, want 1 (returned once)", got)
	}
	// The slot is free: the same buyer (limit 1) buys the unit again.
	again := f.bought(t, buyer, time.Now().Add(time.Hour))
	body := callbackBody("tx-c", again, 1999, "EUR", time.Now())
	outcomeOf(t, f.callback(body, sign(body)))
	if w := f.do("POST", "/api/v1/orders/"+strconv.FormatInt(again, 10)+"/cancel", userJWT(buyer), "", nil); w.Code != 409 || !strings.Contains(w.Body.String(), CodeAlreadyPaid) {
		t.Errorf("cancel of a paid order: %d %s, want 409 already_paid", w.Code, w.Body)
	}
	if c := f.counts(t); c.Paid != 1 || c.Cancelled != 1 || c.Returned != 1 || c.Sold != 1 {
		t.Errorf("counts: %+v, want 1 paid, 1 cancelled and returned, sold 1", c)
	}
}

// TestCancelNotStoredYet: an order accepted but not in MySQL yet is 409
// order_pending with Retry-After; nothing changes.
func TestCancelNotStoredYet(t *testing.T) {
	f := newFixture(t, 1, 1)
	const buyer = 7
	w := f.purchase(f.buyers(t, 1, buyer)[0])
	var pv purchaseView
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &pv) != nil {
		t.Fatalf("purchase: %d %s", w.Code, w.Body)
	}
	c := f.do("POST", "/api/v1/orders/"+pv.OrderID+"/cancel", userJWT(buyer), "", nil)
	if c.Code != 409 || !strings.Contains(c.Body.String(), CodeOrderPending) || c.Header().Get("Retry-After") == "" {
		t.Errorf("cancel before stored: %d %s, want 409 order_pending with Retry-After", c.Code, c.Body)
	}
	if got := f.remaining(t); got != 0 {
		t.Errorf("remaining: %d, want 0", got)
	}
}

// TestCancelRacingExpiry: buyers cancel orders whose window just closed
// while two sweeps run, all released together: every order is cancelled
// once and its unit returned exactly once.
func TestCancelRacingExpiry(t *testing.T) {
	const n = 16
	f := newFixture(t, n, 1)
	ids := make([]int64, n)
	for i := range n {
		ids[i] = f.bought(t, int64(100+i), time.Now().Add(-time.Millisecond))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	answers := make([]*httptest.ResponseRecorder, n)
	for i := range n {
		wg.Go(func() {
			<-start
			answers[i] = f.do("POST", "/api/v1/orders/"+strconv.FormatInt(ids[i], 10)+"/cancel", userJWT(int64(100+i)), "", nil)
		})
	}
	f.sweepsAt(t, &wg, start, 2)
	close(start)
	wg.Wait()
	for i, w := range answers {
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"status":"cancelled"`) {
			t.Errorf("cancel %d: %d %s, want 200 cancelled", i, w.Code, w.Body)
		}
	}
	// A pass finishes any return a racer left (none should be left).
	if _, err := f.sweeper.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.remaining(t); got != n {
		t.Errorf("remaining: %d, want %d (each unit back exactly once)", got, n)
	}
	if c := f.counts(t); c.Cancelled != n || c.Returned != n || c.Sold != 0 {
		t.Errorf("counts: %+v, want %d cancelled and returned, sold 0", c, n)
	}
}

// TestCancelRacingCallback: each order is cancelled by its buyer and paid
// by the provider at the same moment. Either the payment wins (paid,
// cancel 409) or the cancel does (cancelled, payment refund_required);
// never both, and the units add up.
func TestCancelRacingCallback(t *testing.T) {
	const n = 16
	f := newFixture(t, n, 1)
	ids := make([]int64, n)
	for i := range n {
		ids[i] = f.bought(t, int64(100+i), time.Now().Add(time.Hour))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	cancels := make([]*httptest.ResponseRecorder, n)
	pays := make([]*httptest.ResponseRecorder, n)
	for i := range n {
		body := callbackBody("tx-race-"+strconv.Itoa(i), ids[i], 1999, "EUR", time.Now())
		wg.Go(func() {
			<-start
			cancels[i] = f.do("POST", "/api/v1/orders/"+strconv.FormatInt(ids[i], 10)+"/cancel", userJWT(int64(100+i)), "", nil)
		})
		wg.Go(func() { <-start; pays[i] = f.callback(body, sign(body)) })
	}
	close(start)
	wg.Wait()
	var paid, cancelled int64
	for i := range n {
		a := outcomeOf(t, pays[i])
		status := f.orderStatus(t, ids[i], int64(100+i)).Status
		switch {
		case a.Outcome == order.PaymentPaid && cancels[i].Code == 409 && status == order.StatusPaid:
			paid++
		case a.Outcome == order.PaymentRefundRequired && cancels[i].Code == 200 && status == order.StatusRefundRequired:
			cancelled++
		default:
			t.Errorf("order %d: payment %s, cancel %d %s, status %s: not one of the two orders of events",
				i, a.Outcome, cancels[i].Code, cancels[i].Body, status)
		}
	}
	if _, err := f.sweeper.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.remaining(t); got != cancelled {
		t.Errorf("remaining: %d, want %d (the cancelled orders' units)", got, cancelled)
	}
	if c := f.counts(t); c.Paid != paid || c.Sold != paid || c.RefundRequired != cancelled || c.Returned != cancelled {
		t.Errorf("counts: %+v, want paid = sold = %d, refund_required = returned = %d", c, paid, cancelled)
	}
}

// TestCreateItemPrice: the price is required, positive, bounded, in a
// known currency; a bad one is 400 and creates nothing.
func TestCreateItemPrice(t *testing.T) {
	f := newFixture(t, 1, 1)
	ctx := context.Background()
	before, err := f.orders.MaxItemID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		`{"name":"x","stock":1}`,
		`{"name":"x","stock":1,"price_minor":100}`,
		`{"name":"x","stock":1,"currency":"EUR"}`,
		`{"name":"x","stock":1,"price_minor":-1,"currency":"EUR"}`,
		`{"name":"x","stock":1,"price_minor":0,"currency":"EUR"}`,
		`{"name":"x","stock":1,"price_minor":1000000000001,"currency":"EUR"}`,
		`{"name":"x","stock":1,"price_minor":92233720368547758070,"currency":"EUR"}`,
		`{"name":"x","stock":1,"price_minor":1.5,"currency":"EUR"}`,
		`{"name":"x","stock":1,"price_minor":100,"currency":"ABC"}`,
		`{"name":"x","stock":1,"price_minor":100,"currency":"eur"}`,
		`{"name":"x","stock":1,"price_minor":100,"currency":"XXX"}`,
		`{"name":"x","stock":1,"price_minor":100,"currency":"EURO"}`,
	} {
		w := f.do("POST", "/api/v1/admin/items", benchAdmin, body, nil)
		if w.Code != 400 || !strings.Contains(w.Body.String(), CodeInvalidRequest) {
			t.Errorf("%s: got %d %s, want 400 invalid_request", body, w.Code, w.Body)
		}
	}
	if after, err := f.orders.MaxItemID(ctx); err != nil || after != before {
		t.Errorf("items after refused creates: max id %d, want %d (%v)", after, before, err)
	}
	w := f.do("POST", "/api/v1/admin/items", benchAdmin, `{"name":"yen","stock":1,"price_minor":500,"currency":"JPY"}`, nil)
	if w.Code != 201 || !strings.Contains(w.Body.String(), `"price_minor":500,"currency":"JPY"`) {
		t.Errorf("create with a price: %d %s, want 201 showing it", w.Code, w.Body)
	}
}

// TestTransactionIDReused: a transaction id reported for another order or
// another amount is 409 transaction_reused and changes nothing.
func TestTransactionIDReused(t *testing.T) {
	f := newFixture(t, 2, 1)
	const a, b = 7, 8
	first := f.bought(t, a, time.Now().Add(time.Hour))
	second := f.bought(t, b, time.Now().Add(time.Hour))
	body := callbackBody("tx-reused", first, 1999, "EUR", time.Now())
	outcomeOf(t, f.callback(body, sign(body)))
	for _, other := range []string{
		callbackBody("tx-reused", second, 1999, "EUR", time.Now()),
		callbackBody("tx-reused", first, 1998, "EUR", time.Now()),
	} {
		w := f.callback(other, sign(other))
		if w.Code != 409 || !strings.Contains(w.Body.String(), CodeTransactionReused) {
			t.Errorf("%s: got %d %s, want 409 transaction_reused", other, w.Code, w.Body)
		}
	}
	if v := f.orderStatus(t, second, b); v.Status != order.StatusPending {
		t.Errorf("the other order: %s, want pending", v.Status)
	}
}

// TestPaymentsRacingExpiry: payments of orders whose window just closed
// race two sweeps, released together: each payment is refund_required
// whoever cancels the order (the sweep or the payment itself), and each
// unit comes back exactly once. Payments of orders still in their window,
// in the same race, pay them.
func TestPaymentsRacingExpiry(t *testing.T) {
	const n = 16
	f := newFixture(t, n, 1)
	ids := make([]int64, n)
	for i := range n {
		expires := time.Now().Add(time.Hour)
		if i%2 == 0 {
			expires = time.Now().Add(-time.Millisecond)
		}
		ids[i] = f.bought(t, int64(100+i), expires)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	pays := make([]*httptest.ResponseRecorder, n)
	for i := range n {
		body := callbackBody("tx-exp-"+strconv.Itoa(i), ids[i], 1999, "EUR", time.Now())
		wg.Go(func() { <-start; pays[i] = f.callback(body, sign(body)) })
	}
	f.sweepsAt(t, &wg, start, 2)
	close(start)
	wg.Wait()
	for i, w := range pays {
		want := order.PaymentPaid
		if i%2 == 0 {
			want = order.PaymentRefundRequired
		}
		if a := outcomeOf(t, w); a.Outcome != want {
			t.Errorf("payment %d: %s, want %s", i, a.Outcome, want)
		}
	}
	if _, err := f.sweeper.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.remaining(t); got != n/2 {
		t.Errorf("remaining: %d, want %d (each expired order's unit back exactly once)", got, n/2)
	}
	want := order.Counts{Paid: n / 2, Cancelled: n / 2, Returned: n / 2, Sold: n / 2, Stock: n, RefundRequired: n / 2, Revenue: n / 2 * 1999}
	if c := f.counts(t); c != want {
		t.Errorf("counts: got %+v, want %+v", c, want)
	}
}
