package handler

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"

	"seckill/order"
	"seckill/order/sale"
)

// The operator's controls and the order lists (sale/admin.go). Lists are
// paged by a cursor: the answer's next_before, sent back as before, gives
// the next page; limit is 1 to maxPage (defaultPage when absent).
const (
	defaultPage = 20
	maxPage     = 100
	maxActorLen = 100
)

// actor is who the admin request says makes the change: its X-Actor header
// (printable ASCII, at most 100 bytes), or "admin". There is one admin
// token, so this is the operator's word, recorded in the audit table and
// the log, not an identity the service checked.
func actor(c *gin.Context) (sale.Actor, error) {
	vs := c.Request.Header["X-Actor"]
	switch {
	case len(vs) == 0:
		return sale.DefaultActor, nil
	case len(vs) > 1:
		return "", invalid("send the X-Actor header once")
	}
	v := vs[0]
	if v == "" || len(v) > maxActorLen {
		return "", invalid("X-Actor must be 1 to 100 printable ASCII characters")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", invalid("X-Actor must be 1 to 100 printable ASCII characters")
		}
	}
	return sale.Actor(v), nil
}

// pageQuery is a list's query: limit, before, and item where allowed.
// Unknown or repeated parameters are refused: a misspelt filter must not
// silently list everything.
type pageQuery struct {
	limit        int
	before, item int64
}

func parsePage(c *gin.Context, allowItem bool) (pageQuery, error) {
	q := pageQuery{limit: defaultPage}
	vals, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return q, invalid("the query string is malformed")
	}
	for name, vs := range vals {
		if len(vs) != 1 {
			return q, invalid("send " + quoteField(name) + " once")
		}
		v := vs[0]
		switch {
		case name == "limit":
			n, ok := positiveID(v)
			if !ok || n > maxPage {
				return q, invalid("limit must be between 1 and 100")
			}
			q.limit = int(n)
		case name == "before":
			if q.before, _ = positiveID(v); q.before == 0 {
				return q, invalid("before must be a positive integer (a next_before of the previous page)")
			}
		case name == "item" && allowItem:
			if q.item, _ = positiveID(v); q.item == 0 {
				return q, invalid("item must be a positive integer")
			}
		default:
			return q, invalid("unknown query parameter " + quoteField(name))
		}
	}
	return q, nil
}

// adminItemView is an item with its numbers, as the operator sees it.
type adminItemView struct {
	order.Item
	// Remaining is -1 when Redis could not be read (stale).
	Remaining int64  `json:"remaining"`
	Stale     bool   `json:"stale"`
	State     string `json:"state"`
}

type itemPage struct {
	Items []adminItemView `json:"items"`
	// NextBefore is the before of the next page; absent on the last.
	NextBefore *int64 `json:"next_before,omitempty"`
}

func (h *Handler) listItems(c *gin.Context) error {
	q, err := parsePage(c, false)
	if err != nil {
		return err
	}
	items, err := h.Sale.ListItems(c.Request.Context(), q.before, q.limit)
	if err != nil {
		return err
	}
	page := itemPage{Items: make([]adminItemView, len(items))}
	for i, n := range items {
		page.Items[i] = adminItemView{Item: n.Item, Remaining: n.Remaining, Stale: n.Stale, State: n.State}
	}
	if len(items) == q.limit {
		last := items[len(items)-1].ID
		page.NextBefore = &last
	}
	c.JSON(http.StatusOK, page)
	return nil
}

// changedItem answers an operator's change with the item as changed.
func (h *Handler) changedItem(c *gin.Context, it order.Item) {
	c.JSON(http.StatusOK, gin.H{"item": it})
}

// itemChange runs one of the operator's changes of the path's item.
func (h *Handler) itemChange(fn func(c *gin.Context, id int64, who sale.Actor) (order.Item, error)) func(*gin.Context) error {
	return func(c *gin.Context) error {
		id, err := pathID(c)
		if err != nil {
			return err
		}
		who, err := actor(c)
		if err != nil {
			return err
		}
		it, err := fn(c, id, who)
		if err != nil {
			return err
		}
		h.changedItem(c, it)
		return nil
	}
}

func (h *Handler) pauseItem(c *gin.Context, id int64, who sale.Actor) (order.Item, error) {
	return h.Sale.SetPaused(c.Request.Context(), id, true, who)
}

func (h *Handler) resumeItem(c *gin.Context, id int64, who sale.Actor) (order.Item, error) {
	return h.Sale.SetPaused(c.Request.Context(), id, false, who)
}

func (h *Handler) endItem(c *gin.Context, id int64, who sale.Actor) (order.Item, error) {
	return h.Sale.EndSale(c.Request.Context(), id, who)
}

type editItemRequest struct {
	StartsAt     *timestamp `json:"starts_at"`
	EndsAt       *timestamp `json:"ends_at"`
	PerUserLimit *int       `json:"per_user_limit"`
}

func (h *Handler) editItem(c *gin.Context, id int64, who sale.Actor) (order.Item, error) {
	var req editItemRequest
	if err := decode(c, &req); err != nil {
		return order.Item{}, err
	}
	var e order.ItemEdit
	if req.StartsAt == nil && req.EndsAt == nil && req.PerUserLimit == nil {
		return order.Item{}, invalid("name at least one of starts_at, ends_at, per_user_limit")
	}
	if req.StartsAt != nil {
		t, ok := saleTime(req.StartsAt.Time)
		if !ok {
			return order.Item{}, invalid("starts_at must be between years 2000 and 9999 in UTC")
		}
		e.StartsAt = &t
	}
	if req.EndsAt != nil {
		t, ok := saleTime(req.EndsAt.Time)
		if !ok {
			return order.Item{}, invalid("ends_at must be between years 2000 and 9999 in UTC")
		}
		e.EndsAt = &t
	}
	if req.PerUserLimit != nil {
		if *req.PerUserLimit < 1 || *req.PerUserLimit > maxPerUserLimit {
			return order.Item{}, invalid("per_user_limit must be between 1 and 1000")
		}
		e.PerUserLimit = req.PerUserLimit
	}
	it, err := h.Sale.EditItem(c.Request.Context(), id, e, who)
	if sale.ErrorOf(err) == sale.ErrInvalidItem {
		return order.Item{}, invalid("ends_at must be after starts_at")
	}
	return it, err
}

type addStockRequest struct {
	Units *int64 `json:"units"`
}

// addStock adds units to a sale. The Idempotency-Key (1 to 64 printable
// ASCII characters) names the addition: a retry with the same key adds
// nothing more and answers the same addition.
func (h *Handler) addStock(c *gin.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	who, err := actor(c)
	if err != nil {
		return err
	}
	keys := c.Request.Header["Idempotency-Key"]
	if len(keys) != 1 || !printable(keys[0], 64) {
		return invalid("send one Idempotency-Key header (1 to 64 printable ASCII characters) naming this addition")
	}
	var req addStockRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Units == nil || *req.Units < 1 || *req.Units > maxStock {
		return invalid("units must be between 1 and 10000000")
	}
	it, add, err := h.Sale.AddStock(c.Request.Context(), id, *req.Units, keys[0], who)
	if sale.ErrorOf(err) == sale.ErrInvalidItem {
		return invalid("the item's stock would pass 10000000")
	}
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"item": it, "addition": gin.H{"id": add.ID, "units": add.Units}})
	return nil
}

func printable(v string, maxLen int) bool {
	if v == "" || len(v) > maxLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

type orderPage struct {
	Orders []orderView `json:"orders"`
	// NextBefore is the before of the next page (an order id); absent on
	// the last.
	NextBefore *string `json:"next_before,omitempty"`
}

func (h *Handler) orderList(c *gin.Context, user int64) error {
	q, err := parsePage(c, true)
	if err != nil {
		return err
	}
	orders, err := h.Sale.UserOrders(c.Request.Context(), user, q.item, q.before, q.limit)
	if err != nil {
		return err
	}
	page := orderPage{Orders: make([]orderView, len(orders))}
	for i, o := range orders {
		page.Orders[i] = viewOf(o)
	}
	if len(orders) == q.limit {
		last := strconv.FormatInt(orders[len(orders)-1].ID, 10)
		page.NextBefore = &last
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, page)
	return nil
}

// myOrders lists the calling buyer's own orders: the user is the token's,
// never a parameter, so no buyer can list another's.
func (h *Handler) myOrders(c *gin.Context, user int64) error { return h.orderList(c, user) }

// userOrders lists a buyer's orders for support (admin).
func (h *Handler) userOrders(c *gin.Context) error {
	user, err := pathID(c)
	if err != nil {
		return err
	}
	return h.orderList(c, user)
}
