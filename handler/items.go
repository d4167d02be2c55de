package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"seckill/order"
	"seckill/order/sale"
)

// Input bounds of an item.
const (
	maxStock        = 10_000_000
	maxShards       = 1024
	defaultShards   = 8
	maxPerUserLimit = 1000
	maxNameLen      = 200
	maxBody         = 1 << 16
)

// decode reads a JSON object into the struct v points to, strictly: a body
// not labelled application/json is 415; unknown or duplicate fields,
// trailing data and oversized bodies are bad requests.
// Every refusal is worded here: a decoder's error text names Go types and
// fields, which are ours, not the API's.
func decode(c *gin.Context, v any) error {
	// A body labelled otherwise (a form, plain text) was not meant as this
	// JSON; reading it anyway would accept what the spec refuses.
	if mt, _, err := mime.ParseMediaType(header(c, "Content-Type")); err != nil || mt != "application/json" {
		return errNotJSON
	}
	body, err := readBody(c, maxBody)
	if err != nil {
		return err
	}
	return decodeBody(body, v)
}

// readBody reads the request body, refusing one longer than limit bytes.
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, limit+1))
	if err != nil {
		return nil, invalid("cannot read body")
	}
	if int64(len(body)) > limit {
		return nil, invalid("body too large")
	}
	return body, nil
}

// decodeBody is decode of a body already read (a signed one is checked
// before it is parsed).
func decodeBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return invalid("body is required")
	}
	// A name given twice would be decided by the decoder (the last wins).
	if name, dup := duplicateName(body); dup {
		return invalid("duplicate field " + quoteField(name))
	}
	// The fields as sent, checked against the struct's own names first:
	// encoding/json matches names case-insensitively, so {"Stock": 1} would
	// pass for the "stock" the spec names.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return decodeProblem(err)
	}
	if fields == nil {
		return invalid("body must be a JSON object")
	}
	if name, ok := unknownField(fields, reflect.TypeOf(v).Elem()); ok {
		return invalid("unknown field " + quoteField(name))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return decodeProblem(err)
	}
	return nil
}

// decodeProblem words an encoding/json error in the API's terms.
func decodeProblem(err error) error {
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) {
		return invalid("body is not valid JSON")
	}
	if typeErr.Field == "" {
		return invalid("body must be a JSON object")
	}
	return invalid(typeErr.Field + " must be " + jsonKind(typeErr.Type))
}

var timeType = reflect.TypeFor[time.Time]()

// jsonKind names what a Go type accepts, in the API's words.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return "an RFC 3339 date-time"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "a boolean"
	}
	return "of another type"
}

// unknownField returns the first sent name (in sorted order, so the
// answer is stable) that is not the exact JSON name of a field of t.
func unknownField(fields map[string]json.RawMessage, t reflect.Type) (string, bool) {
	known := map[string]bool{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		known[name] = true
	}
	names := slices.Sorted(maps.Keys(fields))
	for _, name := range names {
		if !known[name] {
			return name, true
		}
	}
	return "", false
}

// quoteField quotes a client's field name for a detail, cut short: the
// name is theirs and may be anything up to the body limit.
func quoteField(name string) string {
	const maxShown = 64
	if len(name) > maxShown {
		name = strings.ToValidUTF8(name[:maxShown], "") + "…"
	}
	return strconv.Quote(name)
}

// pathID is the path's :id, in canonical decimal only (positiveID). The
// routes see it as sent, escapes included (Routes: UseRawPath), so "%31"
// is not read as 1.
func pathID(c *gin.Context) (int64, error) {
	id, ok := positiveID(c.Param("id"))
	if !ok {
		return 0, invalid("id must be a positive integer")
	}
	return id, nil
}

type createItemRequest struct {
	Name         string     `json:"name"`
	Stock        *int64     `json:"stock"`
	Shards       *int       `json:"shards"`
	PerUserLimit *int       `json:"per_user_limit"`
	StartsAt     *timestamp `json:"starts_at"`
	EndsAt       *timestamp `json:"ends_at"`
	// PriceMinor and Currency are required: a unit's price in minor units
	// of an ISO 4217 currency (order.CheckPrice).
	PriceMinor *int64 `json:"price_minor"`
	Currency   string `json:"currency"`
}

// timestamp is an RFC 3339 time whose parse error names its field:
// encoding/json adds the field to an UnmarshalTypeError only.
type timestamp struct{ time.Time }

func (t *timestamp) UnmarshalJSON(b []byte) error {
	if err := t.Time.UnmarshalJSON(b); err != nil {
		return &json.UnmarshalTypeError{Value: "string", Type: timeType}
	}
	return nil
}

// The sale window's bounds, in UTC: an offset such as +14:00 must not move
// a time across them. MySQL's DATETIME ends with year 9999, so a later
// time is a bad request, not a failing dependency.
var (
	minSaleTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	endSaleTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// saleTime is t as stored (UTC, milliseconds, as order.Store keeps it), and
// whether it lies within the bounds.
func saleTime(t time.Time) (time.Time, bool) {
	t = t.UTC().Truncate(time.Millisecond)
	return t, !t.Before(minSaleTime) && t.Before(endSaleTime)
}

func (r createItemRequest) item(now time.Time) (order.Item, error) {
	it := order.Item{Name: strings.TrimSpace(r.Name), Shards: defaultShards, PerUserLimit: 1, StartsAt: now}
	switch {
	case it.Name == "" || len(it.Name) > maxNameLen:
		return it, invalid("name is required, at most 200 bytes")
	case r.Stock == nil:
		return it, invalid("stock is required")
	case *r.Stock < 0 || *r.Stock > maxStock:
		return it, invalid("stock must be between 0 and 10000000")
	}
	it.Stock = *r.Stock
	switch {
	case r.PriceMinor == nil:
		return it, invalid("price_minor is required")
	case *r.PriceMinor < 1 || *r.PriceMinor > order.MaxPriceMinor:
		return it, invalid("price_minor must be between 1 and " + strconv.FormatInt(order.MaxPriceMinor, 10))
	case order.CheckCurrency(r.Currency) != nil:
		return it, invalid("currency must be an ISO 4217 code in upper case, such as EUR or USD")
	}
	it.PriceMinor, it.Currency = *r.PriceMinor, r.Currency
	if r.Shards != nil {
		if *r.Shards < 1 || *r.Shards > maxShards {
			return it, invalid("shards must be between 1 and 1024")
		}
		it.Shards = *r.Shards
	}
	if r.PerUserLimit != nil {
		if *r.PerUserLimit < 1 || *r.PerUserLimit > maxPerUserLimit {
			return it, invalid("per_user_limit must be between 1 and 1000")
		}
		it.PerUserLimit = *r.PerUserLimit
	}
	if r.StartsAt != nil {
		t, ok := saleTime(r.StartsAt.Time)
		if !ok {
			return it, invalid("starts_at must be between years 2000 and 9999 in UTC")
		}
		it.StartsAt = t
	}
	if r.EndsAt != nil {
		// Compared as stored: two times apart by less than a millisecond
		// would be stored equal, an empty window.
		t, ok := saleTime(r.EndsAt.Time)
		if !ok || !t.After(it.StartsAt) {
			return it, invalid("ends_at must be after starts_at, before year 10000 in UTC")
		}
		it.EndsAt = &t
	}
	return it, nil
}

// itemView is an item as the API shows it.
type itemView struct {
	order.Item
	// Sold is never set: it keeps the embedded, cached MySQL count out of
	// the answer, stale by design here; remaining is the live number.
	Sold      *int64 `json:"sold,omitempty"`
	Remaining int64  `json:"remaining"`
	SoldOut   bool   `json:"sold_out"`
	// Stale: Redis could not be read; remaining is the last count read.
	Stale bool `json:"stale"`
}

func (h *Handler) createItem(c *gin.Context) error {
	var req createItemRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	it, err := req.item(h.Now())
	if err != nil {
		return err
	}
	st, err := h.Sale.CreateItem(c.Request.Context(), it)
	if err != nil {
		return err
	}
	c.Header("Location", itemPath(st.ID))
	c.JSON(http.StatusCreated, viewOfItem(st))
	return nil
}

func viewOfItem(st sale.ItemState) itemView {
	return itemView{Item: st.Item, Remaining: st.Remaining, SoldOut: st.SoldOut, Stale: st.Stale}
}

// pageCacheControl lets a CDN or the load balancer answer repeats of a
// product page for a second: the count is up to item.page_refresh old
// anyway, a purchase decides on Redis alone, and a second bounds how late
// a page shows a sell-out or returned units. One shared value: setting it
// allocates nothing.
var pageCacheControl = []string{"public, max-age=1"}

// itemPath is where an item is read: the Location of a created one.
func itemPath(id int64) string { return "/api/v1/items/" + strconv.FormatInt(id, 10) }

func (h *Handler) getItem(c *gin.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	st, err := h.Sale.ItemState(c.Request.Context(), id)
	if err != nil {
		return err
	}
	b, err := h.pages.body(st)
	if err != nil {
		return err
	}
	c.Writer.Header()["Cache-Control"] = pageCacheControl
	writeJSON(c, http.StatusOK, b)
	return nil
}

// issueToken makes a purchase token (sale.IssueToken).
func (h *Handler) issueToken(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	tok, err := h.Sale.IssueToken(c.Request.Context(), id, user)
	if err != nil {
		return err
	}
	// Written without reflection, as the 202 is: the crowd fetches tokens,
	// and a token's characters need no escaping (URL-safe base64).
	var buf [192]byte
	b := append(buf[:0], `{"token":"`...)
	b = append(b, tok.Token...)
	b = append(b, `","expires_at":"`...)
	b = tok.ExpiresAt.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `"}`...)
	writeJSON(c, http.StatusCreated, b)
	return nil
}

// statsView is what an operator sees of an item.
type statsView struct {
	ItemID    int64   `json:"item_id"`
	Stock     int64   `json:"stock"`
	Remaining int64   `json:"remaining"`
	Reserved  int64   `json:"reserved"`
	Shards    []int64 `json:"shards"`
	// PriceMinor and Currency: the item's price; the ledger's
	// revenue_minor is in this currency.
	PriceMinor int64             `json:"price_minor"`
	Currency   string            `json:"currency"`
	Ledger     *sale.LedgerStats `json:"ledger,omitempty"`
}

func viewOfStats(v sale.Stats) statsView {
	return statsView{ItemID: v.ItemID, Stock: v.Stock, Remaining: v.Remaining, Reserved: v.Reserved,
		Shards: v.Shards, PriceMinor: v.PriceMinor, Currency: v.Currency, Ledger: v.Ledger}
}

func (h *Handler) stats(c *gin.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	v, err := h.Sale.Stats(c.Request.Context(), id)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, viewOfStats(v))
	return nil
}

func (h *Handler) rebuild(c *gin.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	v, err := h.Sale.Rebuild(c.Request.Context(), id)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, viewOfStats(v))
	return nil
}
