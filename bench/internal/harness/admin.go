package harness

// Ledger is the "ledger" of GET /api/v1/admin/items/{id}/stats: one
// item's books as the product keeps them (Redis and MySQL).
type Ledger struct {
	Stock      int64   `json:"stock"`
	Remaining  int64   `json:"remaining"`
	Shards     []int64 `json:"shards"`
	Outbox     int64   `json:"outbox"`
	Pending    int64   `json:"pending"`
	Paid       int64   `json:"paid"`
	Cancelled  int64   `json:"cancelled"`
	Returned   int64   `json:"returned"`
	Unreturned int64   `json:"unreturned"`
	Active     int64   `json:"active"`
	InFlight   int64   `json:"in_flight"`
	Drift      int64   `json:"drift"`
	Oversold   int64   `json:"oversold"`
	// RefundRequired counts cancelled orders paid late.
	RefundRequired int64 `json:"refund_required"`
}

// ItemStats is the answer of GET /api/v1/admin/items/{id}/stats.
type ItemStats struct {
	ItemID    int64   `json:"item_id"`
	Stock     int64   `json:"stock"`
	Remaining int64   `json:"remaining"`
	Reserved  int64   `json:"reserved"`
	Shards    []int64 `json:"shards"`
	Ledger    *Ledger `json:"ledger"` // nil from a product without the ledger
}
