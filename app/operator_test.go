package app_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"seckill/handler"
)

// The operator's controls and the order lists, end to end (issue 19).

// adminCall is an admin request made as actor (X-Actor), with extra
// headers.
func (a *testApp) adminCall(method, path, actor string, body any, hdr map[string]string, out any) int {
	a.t.Helper()
	h := map[string]string{}
	for k, v := range hdr {
		h[k] = v
	}
	if actor != "" {
		h["X-Actor"] = actor
	}
	code, _ := a.call(method, path, testAdmin, body, h, out)
	return code
}

// opProblem is the code of a problem answer.
type opProblem struct {
	Code string `json:"code"`
}

type auditRow struct {
	Action string `db:"action"`
	Actor  string `db:"actor"`
}

func (a *testApp) audit(itemID int64) []auditRow {
	a.t.Helper()
	var rows []auditRow
	if err := a.db.Select(&rows, "SELECT action, actor FROM admin_audit WHERE item_id = ? ORDER BY id", itemID); err != nil {
		a.t.Fatal(err)
	}
	return rows
}

// second boots another instance on the same Redis and MySQL.
func (a *testApp) second() *testApp {
	a.t.Helper()
	return startApp(a.t, map[string]string{"SECKILL_REDIS_PREFIX": a.Prefix, "SECKILL_MYSQL_DSN": a.DSN})
}

// TestPauseHonouredOnEveryInstance: a pause answered by one instance stops
// purchases and token issues on another at once (it had the item in
// memory, on sale), with 409 sale_paused; a key answered before keeps its
// answer; resume sells again; both changes are in the audit table with
// who made them.
func TestPauseHonouredOnEveryInstance(t *testing.T) {
	a := startApp(t, nil)
	b := a.second()
	it := a.createItem(map[string]any{"name": "pause", "price_minor": 1000, "currency": "EUR", "stock": 100, "shards": 4, "per_user_limit": 1})
	item := fmt.Sprintf("/api/v1/items/%d", it.ID)
	// B learns the item, on sale, and accepts a purchase.
	first := userToken(t, 1)
	key := b.purchaseToken(it.ID, first)
	if code, p := b.purchase(it.ID, first, key); code != http.StatusAccepted {
		t.Fatalf("purchase on B before the pause: %d %+v", code, p)
	}
	keys := map[int64]string{}
	for u := int64(2); u < 20; u++ {
		keys[u] = b.purchaseToken(it.ID, userToken(t, u))
	}
	if code := a.adminCall("POST", fmt.Sprintf("/api/v1/admin/items/%d/pause", it.ID), "alice", nil, nil, nil); code != http.StatusOK {
		t.Fatalf("pause: got %d, want 200", code)
	}
	for u, k := range keys {
		if code, p := b.purchase(it.ID, userToken(t, u), k); code != http.StatusConflict || p.Code != handler.CodeSalePaused {
			t.Errorf("purchase of user %d on B right after the pause: got %d %q, want 409 sale_paused", u, code, p.Code)
		}
	}
	// Tokens are signed in process: B refuses them from its copy of the
	// item, read again at most the item refresh (1s) old.
	b.tokenRefusedWithin(item+"/tokens", userToken(t, 50), http.StatusConflict, handler.CodeSalePaused, 5*time.Second)
	if code, p := b.purchase(it.ID, first, key); code != http.StatusAccepted {
		t.Errorf("replay of an accepted key while paused: got %d %+v, want its 202", code, p)
	}
	var list struct {
		Items []struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		} `json:"items"`
	}
	if code := b.adminCall("GET", "/api/v1/admin/items", "", nil, nil, &list); code != http.StatusOK || len(list.Items) != 1 || list.Items[0].State != "paused" {
		t.Errorf("list while paused: got %d %+v, want the item paused", code, list)
	}
	if code := a.adminCall("POST", fmt.Sprintf("/api/v1/admin/items/%d/resume", it.ID), "", nil, nil, nil); code != http.StatusOK {
		t.Fatalf("resume: got %d, want 200", code)
	}
	if code, p := b.purchase(it.ID, userToken(t, 2), keys[2]); code != http.StatusAccepted {
		t.Errorf("purchase on B after resume: got %d %+v, want 202", code, p)
	}
	got := a.audit(it.ID)
	want := []auditRow{{"pause", "alice"}, {"resume", "admin"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit: got %v, want %v", got, want)
	}
}

// TestEndNowOnEveryInstance: an ended sale answers 410 sale_ended to
// purchases on another instance at once, and to token requests once its
// copy of the item is refreshed.
func TestEndNowOnEveryInstance(t *testing.T) {
	a := startApp(t, nil)
	b := a.second()
	it := a.createItem(map[string]any{"name": "end", "price_minor": 1000, "currency": "EUR", "stock": 10, "shards": 2})
	u := userToken(t, 3)
	k := b.purchaseToken(it.ID, u)
	if code := a.adminCall("POST", fmt.Sprintf("/api/v1/admin/items/%d/end", it.ID), "bob", nil, nil, nil); code != http.StatusOK {
		t.Fatalf("end: got %d, want 200", code)
	}
	if code, p := b.purchase(it.ID, u, k); code != http.StatusGone || p.Code != handler.CodeSaleEnded {
		t.Errorf("purchase on B after end: got %d %+v, want 410 sale_ended", code, p)
	}
	b.tokenRefusedWithin(fmt.Sprintf("/api/v1/items/%d/tokens", it.ID), userToken(t, 4), http.StatusGone, handler.CodeSaleEnded, 5*time.Second)
	var out opProblem
	if code := a.adminCall("POST", fmt.Sprintf("/api/v1/admin/items/%d/stock", it.ID), "", map[string]any{"units": 5},
		map[string]string{"Idempotency-Key": "late"}, &out); code != http.StatusGone {
		t.Errorf("add stock once ended: got %d %q, want 410", code, out.Code)
	}
	if got := a.audit(it.ID); len(got) != 1 || got[0] != (auditRow{"end", "bob"}) {
		t.Errorf("audit: got %v, want one end by bob", got)
	}
}

// TestEditBeforeStartOnly: the window and the limit change before the
// start (and another instance that held the old window does not sell at
// the old start), and are refused with 409 once the sale started,
// changing nothing.
func TestEditBeforeStartOnly(t *testing.T) {
	a := startApp(t, nil)
	b := a.second()
	oldStart := time.Now().Add(2500 * time.Millisecond).UTC()
	it := a.createItem(map[string]any{"name": "edit", "price_minor": 1000, "currency": "EUR", "stock": 10, "shards": 2, "starts_at": oldStart.Format(time.RFC3339Nano)})
	path := fmt.Sprintf("/api/v1/admin/items/%d", it.ID)
	// B holds the item with its old window.
	if code, _ := b.call("GET", fmt.Sprintf("/api/v1/items/%d", it.ID), "", nil, nil, nil); code != http.StatusOK {
		t.Fatalf("read item on B: %d", code)
	}
	u := userToken(t, 5)
	k := b.purchaseToken(it.ID, u)
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	var changed struct {
		Item struct {
			StartsAt     time.Time `json:"starts_at"`
			PerUserLimit int       `json:"per_user_limit"`
		} `json:"item"`
	}
	if code := a.adminCall("PATCH", path, "carol", map[string]any{"starts_at": later.Format(time.RFC3339Nano), "per_user_limit": 2}, nil, &changed); code != http.StatusOK {
		t.Fatalf("edit before start: got %d, want 200", code)
	}
	if !changed.Item.StartsAt.Equal(later) || changed.Item.PerUserLimit != 2 {
		t.Errorf("edited item: got %+v, want starts_at %v, limit 2", changed.Item, later)
	}
	// Past the old start: B must answer from the new window.
	for time.Now().Before(oldStart.Add(200 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
	}
	if code, p := b.purchase(it.ID, u, k); code != http.StatusForbidden || p.Code != handler.CodeSaleNotStarted {
		t.Errorf("purchase on B after the old start: got %d %+v, want 403 sale_not_started", code, p)
	}

	started := a.createItem(map[string]any{"name": "started", "price_minor": 1000, "currency": "EUR", "stock": 10, "shards": 2})
	var pr opProblem
	if code := a.adminCall("PATCH", fmt.Sprintf("/api/v1/admin/items/%d", started.ID), "", map[string]any{"per_user_limit": 3}, nil, &pr); code != http.StatusConflict || pr.Code != handler.CodeSaleStarted {
		t.Errorf("edit after start: got %d %q, want 409 sale_started", code, pr.Code)
	}
	var limit int
	a.db.Get(&limit, "SELECT per_user_limit FROM items WHERE id = ?", started.ID)
	if limit != 1 {
		t.Errorf("limit after a refused edit: got %d, want 1", limit)
	}
	if got := a.audit(started.ID); len(got) != 0 {
		t.Errorf("audit of a refused edit: got %v, want none", got)
	}
	if got := a.audit(it.ID); len(got) != 1 || got[0] != (auditRow{"edit", "carol"}) {
		t.Errorf("audit: got %v, want one edit by carol", got)
	}
}

// TestAddStockRacingPurchases: units are added to a small sale while a
// crowd larger than it buys, released together; then a second crowd buys
// what is left. Every unit of the new stock is sold exactly
// once (rows = stock, never more), the retried addition adds nothing, and
// the reconciler's drift settles at 0.
func TestAddStockRacingPurchases(t *testing.T) {
	a := startApp(t, nil)
	b := a.second()
	const before, added = 10, 30
	it := a.createItem(map[string]any{"name": "more", "price_minor": 1000, "currency": "EUR", "stock": before, "shards": 4})
	path := fmt.Sprintf("/api/v1/admin/items/%d/stock", it.ID)
	const buyers = 60
	jwts, keys := make([]string, buyers), make([]string, buyers)
	for i := range buyers {
		jwts[i] = userToken(t, 1000+int64(i))
		keys[i] = b.purchaseToken(it.ID, jwts[i])
	}
	var mu sync.Mutex
	accepted := map[int64]string{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, p := b.purchaseRetried(it.ID, jwts[i], keys[i])
			for try := 0; (code == http.StatusServiceUnavailable || p.Code == handler.CodePurchaseInProgress) && try < 100; try++ {
				time.Sleep(100 * time.Millisecond)
				code, p = b.purchaseRetried(it.ID, jwts[i], keys[i])
			}
			switch {
			case code == http.StatusAccepted:
				mu.Lock()
				accepted[1000+int64(i)] = p.OrderID
				mu.Unlock()
			case code == http.StatusConflict && p.Code == handler.CodeSoldOut:
			default:
				t.Errorf("purchase: %d %+v, want 202 or 409 sold_out", code, p)
			}
		}()
	}
	for range 2 { // one addition, sent twice (a retry): added once
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if code := a.adminCall("POST", path, "dave", map[string]any{"units": added}, map[string]string{"Idempotency-Key": "restock-1"}, nil); code != http.StatusOK {
				t.Errorf("add stock: got %d, want 200", code)
			}
		}()
	}
	close(start)
	wg.Wait()
	// Whatever the first crowd left is sold to a second one, once B knows
	// the item is on sale again (the restock notice, then its page count):
	// until then B refuses tokens for an item it saw sold out. The first
	// crowd may have bought every unit, added ones included.
	for deadline := time.Now().Add(5 * time.Second); len(accepted) < before+added; time.Sleep(20 * time.Millisecond) {
		var page struct {
			SoldOut bool `json:"sold_out"`
		}
		if code, _ := b.call("GET", fmt.Sprintf("/api/v1/items/%d", it.ID), "", nil, nil, &page); code == http.StatusOK && !page.SoldOut {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B's product page still says sold out 5s after the units were added")
		}
	}
	if len(accepted) < before+added {
		for u, id := range b.race(it.ID, 60, 5000) {
			accepted[u] = id
		}
	}
	if len(accepted) != before+added {
		t.Errorf("accepted: got %d, want exactly the new stock %d", len(accepted), before+added)
	}
	b.checkOrders(it.ID, accepted, before+added)
	var stock int64
	a.db.Get(&stock, "SELECT stock FROM items WHERE id = ?", it.ID)
	if stock != before+added {
		t.Errorf("items.stock: got %d, want %d", stock, before+added)
	}
	var stats struct {
		Ledger struct {
			Drift, Oversold, Stock int64
		} `json:"ledger"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		a.adminCall("GET", fmt.Sprintf("/api/v1/admin/items/%d/stats", it.ID), "", nil, nil, &stats)
		if stats.Ledger.Drift == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if stats.Ledger.Drift != 0 || stats.Ledger.Oversold != 0 || stats.Ledger.Stock != before+added {
		t.Errorf("ledger: got %+v, want drift 0, oversold 0, stock %d", stats.Ledger, before+added)
	}
	if got := a.audit(it.ID); len(got) != 1 || got[0] != (auditRow{"add_stock", "dave"}) {
		t.Errorf("audit: got %v, want one add_stock by dave", got)
	}
}

type orderList struct {
	Orders []struct {
		OrderID string `json:"order_id"`
		ItemID  int64  `json:"item_id"`
	} `json:"orders"`
	NextBefore string `json:"next_before"`
}

// TestBuyerSeesOnlyOwnOrders: a buyer lists their own orders (paged, by
// item), never another's; support lists any buyer's.
func TestBuyerSeesOnlyOwnOrders(t *testing.T) {
	a := startApp(t, nil)
	one := a.createItem(map[string]any{"name": "one", "price_minor": 1000, "currency": "EUR", "stock": 10, "shards": 2, "per_user_limit": 3})
	two := a.createItem(map[string]any{"name": "two", "price_minor": 1000, "currency": "EUR", "stock": 10, "shards": 2})
	alice, bob := userToken(t, 71), userToken(t, 72)
	mine := map[string]bool{}
	buy := func(item int64, jwt string) string {
		code, p := a.purchase(item, jwt, a.purchaseToken(item, jwt))
		if code != http.StatusAccepted {
			t.Fatalf("purchase: %d %+v", code, p)
		}
		return p.OrderID
	}
	for range 3 {
		mine[buy(one.ID, alice)] = true
	}
	mine[buy(two.ID, alice)] = true
	theirs := buy(one.ID, bob)
	a.waitRows(one.ID, 4, 30*time.Second)
	a.waitRows(two.ID, 1, 30*time.Second)

	seen := map[string]bool{}
	var page orderList
	if code, _ := a.call("GET", "/api/v1/orders?limit=3", alice, nil, nil, &page); code != http.StatusOK || len(page.Orders) != 3 || page.NextBefore == "" {
		t.Fatalf("first page: got %d %+v, want 3 orders and a next page", code, page)
	}
	for _, o := range page.Orders {
		seen[o.OrderID] = true
	}
	next := page.NextBefore
	page = orderList{}
	if code, _ := a.call("GET", "/api/v1/orders?limit=3&before="+next, alice, nil, nil, &page); code != http.StatusOK || len(page.Orders) != 1 || page.NextBefore != "" {
		t.Fatalf("second page: got %d %+v, want the last order", code, page)
	}
	seen[page.Orders[0].OrderID] = true
	if fmt.Sprint(seen) != fmt.Sprint(mine) || seen[theirs] {
		t.Errorf("alice's orders: got %v, want exactly %v", seen, mine)
	}
	page = orderList{}
	a.call("GET", fmt.Sprintf("/api/v1/orders?item=%d", two.ID), alice, nil, nil, &page)
	if len(page.Orders) != 1 || page.Orders[0].ItemID != two.ID {
		t.Errorf("alice's orders of item two: got %+v, want one", page)
	}
	page = orderList{}
	a.call("GET", fmt.Sprintf("/api/v1/orders?item=%d", two.ID), bob, nil, nil, &page)
	if len(page.Orders) != 0 {
		t.Errorf("bob's orders of item two: got %+v, want none", page)
	}
	page = orderList{}
	if code := a.adminCall("GET", "/api/v1/admin/users/72/orders", "", nil, nil, &page); code != http.StatusOK || len(page.Orders) != 1 || page.Orders[0].OrderID != theirs {
		t.Errorf("support's list of bob: got %d %+v, want his one order", code, page)
	}
}

// TestOperatorBadInputChangesNothing: malformed control requests are 4xx
// problems and change neither the item nor the audit table.
func TestOperatorBadInputChangesNothing(t *testing.T) {
	a := startApp(t, nil)
	it := a.createItem(map[string]any{"name": "bad", "price_minor": 1000, "currency": "EUR", "stock": 10, "shards": 2, "starts_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	stockPath := fmt.Sprintf("/api/v1/admin/items/%d/stock", it.ID)
	itemPath := fmt.Sprintf("/api/v1/admin/items/%d", it.ID)
	key := map[string]string{"Idempotency-Key": "k1"}
	tests := []struct {
		name, method, path string
		body               any
		hdr                map[string]string
		status             int
	}{
		{"units 0", "POST", stockPath, map[string]any{"units": 0}, key, 400},
		{"units negative", "POST", stockPath, map[string]any{"units": -5}, key, 400},
		{"units overflowing", "POST", stockPath, `{"units": 99999999999999999999}`, key, 400},
		{"units past the most stock", "POST", stockPath, map[string]any{"units": 10_000_000}, key, 400},
		{"no key", "POST", stockPath, map[string]any{"units": 1}, nil, 400},
		{"unknown field", "POST", stockPath, map[string]any{"units": 1, "price": 3}, key, 400},
		{"not json", "POST", stockPath, "units=1", key, 400},
		{"no id", "POST", "/api/v1/admin/items/x/stock", map[string]any{"units": 1}, key, 400},
		{"unknown item", "POST", "/api/v1/admin/items/999999/stock", map[string]any{"units": 1}, key, 404},
		{"edit nothing", "PATCH", itemPath, map[string]any{}, nil, 400},
		{"edit ends before start", "PATCH", itemPath, map[string]any{"ends_at": "2001-01-01T00:00:00Z"}, nil, 400},
		{"edit limit 0", "PATCH", itemPath, map[string]any{"per_user_limit": 0}, nil, 400},
		{"edit year 10000", "PATCH", itemPath, map[string]any{"starts_at": "9999-12-31T23:59:59-01:00"}, nil, 400},
		{"actor with a control character", "POST", itemPath + "/pause", nil, map[string]string{"X-Actor": "a\tb"}, 400},
		{"list limit 0", "GET", "/api/v1/admin/items?limit=0", nil, nil, 400},
		{"list limit 101", "GET", "/api/v1/admin/items?limit=101", nil, nil, 400},
		{"list unknown parameter", "GET", "/api/v1/admin/items?page=2", nil, nil, 400},
		{"list bad before", "GET", "/api/v1/admin/items?before=-1", nil, nil, 400},
		{"user orders bad id", "GET", "/api/v1/admin/users/0/orders", nil, nil, 400},
		{"user orders item twice", "GET", "/api/v1/admin/users/1/orders?item=1&item=2", nil, nil, 400},
	}
	for _, tt := range tests {
		var pr opProblem
		if code := a.adminCall(tt.method, tt.path, "", tt.body, tt.hdr, &pr); code != tt.status || pr.Code == "" {
			t.Errorf("%s: got %d %q, want %d with a problem", tt.name, code, pr.Code, tt.status)
		}
	}
	var pr opProblem
	if code, _ := a.call("GET", "/api/v1/orders?limit=abc", userToken(t, 1), nil, nil, &pr); code != http.StatusBadRequest {
		t.Errorf("own orders, bad limit: got %d, want 400", code)
	}
	if code, _ := a.call("GET", "/api/v1/orders", "", nil, nil, &pr); code != http.StatusUnauthorized {
		t.Errorf("own orders without a token: got %d, want 401", code)
	}
	var row struct {
		Stock  int64 `db:"stock"`
		Limit  int   `db:"per_user_limit"`
		Paused bool  `db:"paused"`
	}
	if err := a.db.Get(&row, "SELECT stock, per_user_limit, paused FROM items WHERE id = ?", it.ID); err != nil {
		t.Fatal(err)
	}
	if row.Stock != 10 || row.Limit != 1 || row.Paused {
		t.Errorf("item after bad requests: got %+v, want unchanged", row)
	}
	if got := a.audit(it.ID); len(got) != 0 {
		t.Errorf("audit after bad requests: got %v, want none", got)
	}
}

// tokenRefusedWithin waits up to d for the app to refuse a purchase token
// on path with status and code, as it must once its copy of the item is
// refreshed; a token issued meanwhile is harmless (purchases are refused
// in Redis at once).
func (a *testApp) tokenRefusedWithin(path, jwt string, status int, code string, d time.Duration) {
	a.t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		var pr opProblem
		got, _ := a.call("POST", path, jwt, nil, nil, &pr)
		if got == status && pr.Code == code {
			return
		}
		if time.Now().After(deadline) {
			a.t.Errorf("token request %s: got %d %q for %v, want %d %s", path, got, pr.Code, d, status, code)
			return
		}
	}
}
