package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"seckill/order"
	"seckill/stock"
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

// decode reads a JSON body strictly: unknown fields, trailing data and
// oversized bodies are bad requests.
func decode(c *gin.Context, v any) error {
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxBody+1))
	if err != nil {
		return invalid("cannot read body")
	}
	if len(body) > maxBody {
		return invalid("body too large")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("malformed JSON: " + err.Error())
	}
	if dec.More() {
		return invalid("malformed JSON: trailing data")
	}
	return nil
}

func pathID(c *gin.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid("id must be a positive integer")
	}
	return id, nil
}

// pathItem is the item the path's :id names.
func (h *Handler) pathItem(c *gin.Context) (order.Item, error) {
	id, err := pathID(c)
	if err != nil {
		return order.Item{}, err
	}
	return h.items.get(c.Request.Context(), id)
}

// remaining sums the item's shards; a shard Redis lost (-1) counts as 0 and
// is reported in missing.
func remaining(shards []int64) (total int64, missing bool) {
	for _, n := range shards {
		total += max(n, 0)
		missing = missing || n < 0
	}
	return total, missing
}

type createItemRequest struct {
	Name         string     `json:"name"`
	Stock        *int64     `json:"stock"`
	Shards       *int       `json:"shards"`
	PerUserLimit *int       `json:"per_user_limit"`
	StartsAt     *time.Time `json:"starts_at"`
	EndsAt       *time.Time `json:"ends_at"`
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
		if r.StartsAt.Year() < 2000 || r.StartsAt.Year() > 9999 {
			return it, invalid("starts_at must be between years 2000 and 9999")
		}
		it.StartsAt = r.StartsAt.UTC()
	}
	if r.EndsAt != nil {
		if !r.EndsAt.After(it.StartsAt) || r.EndsAt.Year() > 9999 {
			return it, invalid("ends_at must be after starts_at, before year 10000")
		}
		e := r.EndsAt.UTC()
		it.EndsAt = &e
	}
	return it, nil
}

// itemView is an item as the API shows it.
type itemView struct {
	order.Item
	// Sold hides the cached MySQL count, which is stale by design here;
	// remaining is the live number.
	Sold      *int64 `json:"sold,omitempty"`
	Remaining int64  `json:"remaining"`
	SoldOut   bool   `json:"sold_out"`
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
	it, err = h.Orders.CreateItem(c.Request.Context(), it)
	if err != nil {
		return err
	}
	// MySQL first: an item warmed in Redis but absent from MySQL could sell
	// units no consumer can store. A failed warm leaves shard keys missing,
	// which purchases answer with 503 until a rebuild warms them.
	if err := h.Stock.Warm(c.Request.Context(), it.ID, it.Stock, it.Shards); err != nil {
		return err
	}
	h.items.put(it)
	c.JSON(http.StatusCreated, itemView{Item: it, Remaining: it.Stock})
	return nil
}

func (h *Handler) getItem(c *gin.Context) error {
	it, err := h.pathItem(c)
	if err != nil {
		return err
	}
	rem, err := h.Stock.Remaining(c.Request.Context(), it.ID, it.Shards)
	if err != nil {
		return err
	}
	total, missing := remaining(rem)
	if missing {
		// Redis lost a shard: unknown, not sold out.
		return stock.ErrNotReady
	}
	c.JSON(http.StatusOK, itemView{Item: it, Remaining: total, SoldOut: total == 0})
	return nil
}

func (h *Handler) issueToken(c *gin.Context, user int64) error {
	it, err := h.pathItem(c)
	if err != nil {
		return err
	}
	if it.EndsAt != nil && !h.Now().Before(*it.EndsAt) {
		return errSaleEnded
	}
	tok, exp, err := h.Stock.IssueToken(c.Request.Context(), it.ID, user, it.Shards)
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, gin.H{"token": tok, "expires_at": exp.UTC().Format(time.RFC3339)})
	return nil
}

// statsView is what an operator sees of an item.
type statsView struct {
	ItemID    int64   `json:"item_id"`
	Stock     int64   `json:"stock"`
	Remaining int64   `json:"remaining"`
	Reserved  int64   `json:"reserved"`
	Shards    []int64 `json:"shards"`
	Ledger    any     `json:"ledger,omitempty"`
}

func (h *Handler) stats(c *gin.Context) error {
	ctx := c.Request.Context()
	it, err := h.pathItem(c)
	if err != nil {
		return err
	}
	rem, err := h.Stock.Remaining(ctx, it.ID, it.Shards)
	if err != nil {
		return err
	}
	v := statsView{ItemID: it.ID, Stock: it.Stock, Shards: rem}
	v.Remaining, _ = remaining(rem)
	v.Reserved = it.Stock - v.Remaining
	if h.Ledger != nil {
		if v.Ledger, err = h.Ledger.Stats(ctx, it); err != nil {
			return err
		}
	}
	c.JSON(http.StatusOK, v)
	return nil
}

func (h *Handler) rebuild(c *gin.Context) error {
	it, err := h.pathItem(c)
	if err != nil {
		return err
	}
	if h.Ledger == nil {
		return errors.New("rebuild: no reconciler configured")
	}
	if err := h.Ledger.Rebuild(c.Request.Context(), it); err != nil {
		return err
	}
	return h.stats(c)
}
