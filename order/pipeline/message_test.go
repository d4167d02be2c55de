package pipeline_test

import (
	"encoding/json"
	"errors"
	"seckill/order/pipeline"
	"strconv"
	"testing"
	"time"

	"seckill/order"
	"seckill/stock"
)

func TestMessageRoundTrip(t *testing.T) {
	at := time.Date(2030, 5, 6, 7, 8, 9, 123_000_000, time.FixedZone("X", 3600))
	const ttl = 15 * time.Minute
	tests := []struct {
		name string
		r    stock.Reservation
	}{
		{"small", stock.Reservation{StreamID: "1-0", OrderID: 1, ItemID: 2, UserID: 3, Shard: 0, Home: 0, At: at}},
		// Past 2^53: must survive readers that parse JSON numbers as floats.
		{"snowflake id", stock.Reservation{StreamID: "2-0", OrderID: 1<<62 + 12345, ItemID: 7, UserID: 1<<40 + 1, Shard: 3, Home: 1, At: at}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, value := pipeline.EncodeReservation(tt.r)
			if got, want := string(key), strconv.FormatInt(tt.r.ItemID, 10); got != want {
				t.Errorf("key: got %q, want %q", got, want)
			}
			// The id is a JSON string, so float-based readers keep it.
			var raw map[string]any
			if err := json.Unmarshal(value, &raw); err != nil {
				t.Fatalf("value is not JSON: %v", err)
			}
			if got, want := raw["order_id"], strconv.FormatInt(tt.r.OrderID, 10); got != want {
				t.Errorf("order_id in JSON: got %#v, want string %q", got, want)
			}
			o, err := pipeline.DecodeOrder(value, ttl)
			if err != nil {
				t.Fatalf("decode: got %v, want nil", err)
			}
			want := order.Order{
				ID: tt.r.OrderID, ItemID: tt.r.ItemID, UserID: tt.r.UserID, Shard: tt.r.Shard,
				Status: order.StatusPending, CreatedAt: at, ExpiresAt: at.Add(ttl),
			}
			if !o.CreatedAt.Equal(want.CreatedAt) || !o.ExpiresAt.Equal(want.ExpiresAt) {
				t.Errorf("times: got %v..%v, want %v..%v", o.CreatedAt, o.ExpiresAt, want.CreatedAt, want.ExpiresAt)
			}
			o.CreatedAt, o.ExpiresAt = want.CreatedAt, want.ExpiresAt
			if o != want {
				t.Errorf("decoded: got %+v, want %+v", o, want)
			}
		})
	}
}

func TestDecodeOrderRejects(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{"empty", ``},
		{"not json", `hello`},
		{"array", `[1,2]`},
		{"null", `null`},
		{"trailing data", `{"order_id":"1","item_id":2,"user_id":3,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"} {}`},
		{"order id as number", `{"order_id":1,"item_id":2,"user_id":3,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"order id not decimal", `{"order_id":"x1","item_id":2,"user_id":3,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"order id zero", `{"order_id":"0","item_id":2,"user_id":3,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"order id missing", `{"item_id":2,"user_id":3,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"item id negative", `{"order_id":"1","item_id":-2,"user_id":3,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"item id missing", `{"order_id":"1","user_id":3,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"item id fractional", `{"order_id":"1","item_id":2.5,"user_id":3,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"user id zero", `{"order_id":"1","item_id":2,"user_id":0,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"shard negative", `{"order_id":"1","item_id":2,"user_id":3,"shard":-1,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"shard missing", `{"order_id":"1","item_id":2,"user_id":3,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"home missing", `{"order_id":"1","item_id":2,"user_id":3,"shard":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		{"time missing", `{"order_id":"1","item_id":2,"user_id":3,"shard":0,"home":0}`},
		{"time not RFC 3339", `{"order_id":"1","item_id":2,"user_id":3,"shard":0,"home":0,"reserved_at":"yesterday"}`},
		{"time zero", `{"order_id":"1","item_id":2,"user_id":3,"shard":0,"home":0,"reserved_at":"0001-01-01T00:00:00Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := pipeline.DecodeOrder([]byte(tt.value), time.Minute)
			if !errors.Is(err, pipeline.ErrInvalidMessage) {
				t.Fatalf("DecodeOrder(%s): got %+v, %v; want ErrInvalidMessage", tt.value, o, err)
			}
		})
	}
}

// TestDecodeReservationEntry: the outbox entry of a message names the slot
// group of its outbox, where the writer acknowledges it; a message without
// one (an older producer) names no entry to acknowledge.
func TestDecodeReservationEntry(t *testing.T) {
	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	r := stock.Reservation{StreamID: "5-1", OrderID: stock.WithGroup(9<<22, 37), ItemID: 7, UserID: 3, Shard: 2, Home: 1, At: at, SlotGroup: 37}
	_, value := pipeline.EncodeReservation(r)
	_, e, err := pipeline.DecodeReservation(value, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := (stock.Entry{ItemID: 7, Shard: 2, SlotGroup: 37, StreamID: "5-1"}); e != want {
		t.Errorf("entry: got %+v, want %+v", e, want)
	}
	old := `{"order_id":"9","item_id":7,"user_id":3,"shard":2,"home":1,"reserved_at":"2030-01-01T00:00:00Z","stream_id":"5-1"}`
	if _, e, err := pipeline.DecodeReservation([]byte(old), time.Minute); err != nil || e.StreamID != "" {
		t.Errorf("message without a slot group: got entry %+v, %v; want no stream id", e, err)
	}
}
