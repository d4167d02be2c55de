package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
	"seckill/handler/contract"
	"seckill/limiter"
	"seckill/order"
	"seckill/order/sale"
	"seckill/order/token"
	"seckill/stock"
)

// A purchase whose order id turned out to be another order's (an id made
// twice) is a dead letter: its buyer reads it as refused, not as a missing
// order, and the stored order's buyer still reads that one.
func TestCollidedOrderReadsRefused(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	_, db := testenv.MySQL(t)
	ctx := context.Background()
	st := stock.NewStore(rdb, stock.Config{Prefix: prefix})
	orders := order.NewStore(db)
	ids := seqIDs{new(atomic.Int64)}
	ids.n.Store(1 << 38)
	lim, err := limiter.New(limiter.Config{MaxInFlight: 16, AcquireWait: 50 * time.Millisecond}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	tokens, err := token.NewKeys(token.Key{ID: 1, Secret: []byte(benchSecret)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Deps{Sale: sale.New(sale.Config{Stock: st, Orders: orders, Limiter: lim, IDs: ids, Tokens: tokens}), AdminToken: benchAdmin,
		JWTSecret: benchSecret, Registry: prometheus.NewRegistry(), Payments: Payments{DemoPay: true}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := orders.CreateItem(ctx, order.Item{Name: "phone", Stock: 5, Shards: 1, PerUserLimit: 1, StartsAt: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Warm(ctx, it.ID, it.Stock, it.Shards); err != nil {
		t.Fatal(err)
	}
	serve := contract.Handler(t, h.Routes())
	do := func(method, path string, user int64, key string) *httptest.ResponseRecorder {
		jwt, _ := SignUserToken([]byte(benchSecret), user, time.Hour)
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+jwt)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		w := httptest.NewRecorder()
		serve.ServeHTTP(w, req)
		return w
	}

	const buyer, holder, stranger = 7, 9, 11
	key, _, err := tokens.Issue(it.ID, buyer, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	w := do("POST", fmt.Sprintf("/api/v1/items/%d/purchase", it.ID), buyer, key)
	var pv purchaseView
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &pv) != nil {
		t.Fatalf("purchase: %d %s", w.Code, w.Body)
	}
	id, _ := strconv.ParseInt(pv.OrderID, 10, 64)
	// The same id was made for another buyer, whose order the writer
	// stored first; the buyer's became an id_collision dead letter.
	now := time.Now()
	if _, _, err := orders.InsertBatch(ctx, []order.Order{{ID: id, ItemID: it.ID, UserID: holder, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	item, user, shard := it.ID, int64(buyer), 0
	if err := orders.RecordDeadLetters(ctx, []order.DeadLetter{{Reason: order.ReasonIDCollision, OrderID: &id,
		ItemID: &item, UserID: &user, Shard: &shard, Payload: []byte("m")}}); err != nil {
		t.Fatal(err)
	}

	path := "/api/v1/orders/" + pv.OrderID
	if w := do("GET", path, buyer, ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"status":"refused"`) {
		t.Errorf("buyer of the collided order reads: %d %s, want 200 refused", w.Code, w.Body)
	}
	if w := do("POST", path+"/pay", buyer, ""); w.Code != 409 || !strings.Contains(w.Body.String(), CodeOrderCancelled) {
		t.Errorf("buyer of the collided order pays: %d %s, want 409 order_cancelled", w.Code, w.Body)
	}
	if w := do("GET", path, holder, ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"status":"pending"`) {
		t.Errorf("buyer of the stored order reads: %d %s, want 200 pending", w.Code, w.Body)
	}
	if w := do("GET", path, stranger, ""); w.Code != 404 {
		t.Errorf("another user reads: %d, want 404", w.Code)
	}
}
