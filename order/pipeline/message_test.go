package pipeline_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"seckill/order/pipeline"
	"strconv"
	"strings"
	"testing"
	"time"

	"seckill/order"
	"seckill/stock"
)

// messageAt has digits below the millisecond and a zone, neither of which
// the binary form keeps.
var messageAt = time.Date(2030, 5, 6, 7, 8, 9, 123_456_789, time.FixedZone("X", 3600))

// messageCases are reservations as the relay publishes them.
var messageCases = []struct {
	name string
	r    stock.Reservation
}{
	{"small", stock.Reservation{StreamID: "1-0", OrderID: 1, ItemID: 2, UserID: 3, Shard: 0, Home: 0, At: messageAt}},
	// Past 2^53 and 2^32, in varints of many bytes.
	{"snowflake id", stock.Reservation{StreamID: "1733390000000-12", OrderID: 1<<62 + 12345, ItemID: 7, UserID: 1<<40 + 1, Shard: 3, Home: 1, SlotGroup: 63, At: messageAt}},
	{"no stream id", stock.Reservation{OrderID: 9, ItemID: 1 << 20, UserID: 5, Shard: 200, Home: 300, SlotGroup: 1, At: messageAt}},
}

// sameOrder is o == want with times compared as instants.
func sameOrder(o, want order.Order) bool {
	times := o.CreatedAt.Equal(want.CreatedAt) && o.ExpiresAt.Equal(want.ExpiresAt)
	o.CreatedAt, o.ExpiresAt = want.CreatedAt, want.ExpiresAt
	return times && o == want
}

func TestMessageRoundTrip(t *testing.T) {
	const ttl = 15 * time.Minute
	for _, tt := range messageCases {
		t.Run(tt.name, func(t *testing.T) {
			key, value := pipeline.EncodeReservation(tt.r)
			if got, want := string(key), strconv.FormatInt(tt.r.ItemID, 10); got != want {
				t.Errorf("key: got %q, want %q", got, want)
			}
			if value[0] != 0x01 {
				t.Errorf("value starts with %#02x, want format version 0x01", value[0])
			}
			o, e, err := pipeline.DecodeReservation(value, ttl)
			if err != nil {
				t.Fatalf("decode: got %v, want nil", err)
			}
			// Milliseconds in UTC, as orders are stored.
			at := tt.r.At.Truncate(time.Millisecond).UTC()
			want := order.Order{
				ID: tt.r.OrderID, ItemID: tt.r.ItemID, UserID: tt.r.UserID, Shard: tt.r.Shard,
				Status: order.StatusPending, CreatedAt: at, ExpiresAt: at.Add(ttl),
			}
			if !sameOrder(o, want) {
				t.Errorf("decoded: got %+v, want %+v", o, want)
			}
			if o.CreatedAt.Location() != time.UTC || o.ExpiresAt.Location() != time.UTC {
				t.Errorf("times in %v and %v, want UTC", o.CreatedAt.Location(), o.ExpiresAt.Location())
			}
			if want := (stock.Entry{ItemID: tt.r.ItemID, Shard: tt.r.Shard, SlotGroup: tt.r.SlotGroup, StreamID: tt.r.StreamID}); e != want {
				t.Errorf("entry: got %+v, want %+v", e, want)
			}
		})
	}
}

// TestMessageAllocs: encoding takes one allocation for key and value, and
// decoding only the stream id it returns.
func TestMessageAllocs(t *testing.T) {
	r := messageCases[1].r
	_, value := pipeline.EncodeReservation(r)
	if n := testing.AllocsPerRun(100, func() { pipeline.EncodeReservation(r) }); n != 1 {
		t.Errorf("EncodeReservation: %v allocations, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { pipeline.DecodeReservation(value, time.Minute) }); n != 1 {
		t.Errorf("DecodeReservation: %v allocations, want 1 (the stream id)", n)
	}
}

func TestDecodeReservationRejectsBinary(t *testing.T) {
	_, valid := pipeline.EncodeReservation(stock.Reservation{StreamID: "1-0", OrderID: 1<<62 + 12345, ItemID: 7, UserID: 1<<40 + 1, Shard: 3, Home: 1, SlotGroup: 5, At: messageAt})
	// lenAt is the offset of the stream id's length: its last 3 bytes are
	// "1-0".
	lenAt := len(valid) - 4
	with := func(r func(*stock.Reservation)) []byte {
		res := stock.Reservation{StreamID: "1-0", OrderID: 1, ItemID: 2, UserID: 3, Shard: 4, Home: 5, At: messageAt}
		r(&res)
		_, v := pipeline.EncodeReservation(res)
		return v
	}
	alter := func(i int, b ...byte) []byte {
		return append(append(bytes.Clone(valid[:i]), b...), valid[i+1:]...)
	}
	tests := []struct {
		name  string
		value []byte
	}{
		{"version 0x02", alter(0, 0x02)},
		{"version only", valid[:1]},
		{"trailing byte", append(bytes.Clone(valid), 0)},
		{"order id overflows", alter(1, bytes.Repeat([]byte{0xff}, binary.MaxVarintLen64+1)...)},
		{"order id past 64 bits", alter(1, append(bytes.Repeat([]byte{0xff}, binary.MaxVarintLen64-1), 0x02)...)},
		{"stream id length overflows", alter(lenAt, bytes.Repeat([]byte{0x80}, binary.MaxVarintLen64+1)...)},
		{"stream id past the end", alter(lenAt, 4)},
		{"stream id far past the end", alter(lenAt, binary.AppendUvarint(nil, math.MaxUint64)...)},
		{"stream id short of the end", alter(lenAt, 2)},
		{"order id zero", with(func(r *stock.Reservation) { r.OrderID = 0 })},
		{"order id negative", with(func(r *stock.Reservation) { r.OrderID = -1 })},
		{"item id zero", with(func(r *stock.Reservation) { r.ItemID = 0 })},
		{"user id zero", with(func(r *stock.Reservation) { r.UserID = 0 })},
		{"shard negative", with(func(r *stock.Reservation) { r.Shard = -1 })},
		{"home negative", with(func(r *stock.Reservation) { r.Home = -1 })},
		{"time at the epoch", with(func(r *stock.Reservation) { r.At = time.UnixMilli(0) })},
		{"time before the epoch", with(func(r *stock.Reservation) { r.At = time.UnixMilli(-1) })},
		{"time zero", with(func(r *stock.Reservation) { r.At = time.Time{} })},
	}
	// Cut anywhere, also inside a varint or the stream id.
	for i := 1; i < len(valid); i++ {
		tests = append(tests, struct {
			name  string
			value []byte
		}{fmt.Sprintf("truncated to %d of %d bytes", i, len(valid)), valid[:i]})
	}
	if _, err := pipeline.DecodeOrder(valid, time.Minute); err != nil {
		t.Fatalf("valid value: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := pipeline.DecodeOrder(tt.value, time.Minute)
			if !errors.Is(err, pipeline.ErrInvalidMessage) || !strings.HasPrefix(err.Error(), "decode order") {
				t.Fatalf("DecodeOrder(%x): got %+v, %v; want ErrInvalidMessage", tt.value, o, err)
			}
		})
	}
}

func TestDecodeOrderRejects(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{"empty", ``},
		{"only spaces", " \n\t"},
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

// messageJSON are messages of older producers, which may still be in Kafka
// or come from a relay not yet upgraded.
var messageJSON = []struct {
	name, value string
	want        order.Order
	entry       stock.Entry
}{
	{
		"snowflake id",
		`{"order_id":"4611686018427400249","item_id":7,"user_id":1099511627777,"shard":3,"home":1,"slot_group":37,"reserved_at":"2030-05-06T06:08:09.123456789Z","stream_id":"1733390000000-12"}`,
		order.Order{ID: 1<<62 + 12345, ItemID: 7, UserID: 1<<40 + 1, Shard: 3, CreatedAt: messageAt},
		stock.Entry{ItemID: 7, Shard: 3, SlotGroup: 37, StreamID: "1733390000000-12"},
	},
	{
		"zone, spaces and an unknown field",
		" \n" + `{"order_id":"9","item_id":2,"user_id":3,"shard":0,"home":0,"slot_group":0,"reserved_at":"2030-05-06T07:08:09.123456789+01:00","stream_id":"5-1","extra":[1]}`,
		order.Order{ID: 9, ItemID: 2, UserID: 3, CreatedAt: messageAt},
		stock.Entry{ItemID: 2, StreamID: "5-1"},
	},
	// Older still: no outbox entry to acknowledge.
	{
		"no slot group",
		`{"order_id":"9","item_id":7,"user_id":3,"shard":2,"home":1,"reserved_at":"2030-05-06T06:08:09.123456789Z","stream_id":"5-1"}`,
		order.Order{ID: 9, ItemID: 7, UserID: 3, Shard: 2, CreatedAt: messageAt},
		stock.Entry{ItemID: 7, Shard: 2},
	},
	{
		"no stream id",
		`{"order_id":"9","item_id":7,"user_id":3,"shard":2,"home":1,"reserved_at":"2030-05-06T06:08:09.123456789Z"}`,
		order.Order{ID: 9, ItemID: 7, UserID: 3, Shard: 2, CreatedAt: messageAt},
		stock.Entry{ItemID: 7, Shard: 2},
	},
}

// TestDecodeReservationJSON: the JSON form still decodes, as it did, to the
// nanosecond.
func TestDecodeReservationJSON(t *testing.T) {
	const ttl = 15 * time.Minute
	for _, tt := range messageJSON {
		t.Run(tt.name, func(t *testing.T) {
			o, e, err := pipeline.DecodeReservation([]byte(tt.value), ttl)
			if err != nil {
				t.Fatalf("decode: got %v, want nil", err)
			}
			want := tt.want
			want.Status, want.ExpiresAt = order.StatusPending, want.CreatedAt.Add(ttl)
			if !sameOrder(o, want) {
				t.Errorf("decoded: got %+v, want %+v", o, want)
			}
			if e != tt.entry {
				t.Errorf("entry: got %+v, want %+v", e, tt.entry)
			}
		})
	}
}

// TestDecodeReservationEntry: the outbox entry of a message names the slot
// group of its outbox, where the writer acknowledges it; a message with a
// slot group out of range names no entry to acknowledge.
func TestDecodeReservationEntry(t *testing.T) {
	r := stock.Reservation{StreamID: "5-1", OrderID: stock.WithGroup(9<<22, 37), ItemID: 7, UserID: 3, Shard: 2, Home: 1, At: messageAt}
	tests := []struct {
		name  string
		group int
		want  stock.Entry
	}{
		{"in range", 37, stock.Entry{ItemID: 7, Shard: 2, SlotGroup: 37, StreamID: "5-1"}},
		{"last", stock.Groups - 1, stock.Entry{ItemID: 7, Shard: 2, SlotGroup: stock.Groups - 1, StreamID: "5-1"}},
		{"past the last", stock.Groups, stock.Entry{ItemID: 7, Shard: 2}},
		{"negative", -1, stock.Entry{ItemID: 7, Shard: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := r
			r.SlotGroup = tt.group
			_, value := pipeline.EncodeReservation(r)
			_, e, err := pipeline.DecodeReservation(value, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if e != tt.want {
				t.Errorf("entry: got %+v, want %+v", e, tt.want)
			}
		})
	}
}

// FuzzDecodeReservation: no value makes decoding panic, and what decodes,
// from either form, is written again in the binary form without loss but
// below the millisecond.
func FuzzDecodeReservation(f *testing.F) {
	for _, tt := range messageCases {
		_, value := pipeline.EncodeReservation(tt.r)
		f.Add(value)
	}
	for _, tt := range messageJSON {
		f.Add([]byte(tt.value))
	}
	f.Add([]byte{})
	f.Add([]byte{0x01})
	f.Fuzz(func(t *testing.T, value []byte) {
		const ttl = time.Minute
		o, e, err := pipeline.DecodeReservation(value, ttl)
		if err != nil {
			if !errors.Is(err, pipeline.ErrInvalidMessage) {
				t.Fatalf("error %v, want ErrInvalidMessage", err)
			}
			return
		}
		if e.ItemID != o.ItemID || e.Shard != o.Shard || e.StreamID != "" && (e.SlotGroup < 0 || e.SlotGroup >= stock.Groups) {
			t.Fatalf("entry %+v of order %+v", e, o)
		}
		if o.CreatedAt.UnixMilli() <= 0 {
			// JSON takes a reserved_at before 1970, which no producer
			// writes and the binary form refuses.
			if value[0] == 0x01 {
				t.Fatalf("binary value reserved at %v", o.CreatedAt)
			}
			return
		}
		_, again := pipeline.EncodeReservation(stock.Reservation{
			StreamID: e.StreamID, OrderID: o.ID, ItemID: o.ItemID, UserID: o.UserID,
			Shard: o.Shard, At: o.CreatedAt, SlotGroup: e.SlotGroup,
		})
		o2, e2, err := pipeline.DecodeReservation(again, ttl)
		if err != nil {
			t.Fatalf("re-encoded %+v, %+v: %v", o, e, err)
		}
		want := o
		want.CreatedAt, want.ExpiresAt = o.CreatedAt.Truncate(time.Millisecond), o.ExpiresAt.Truncate(time.Millisecond)
		if !sameOrder(o2, want) || e2 != e {
			t.Fatalf("re-decoded: got %+v, %+v; want %+v, %+v", o2, e2, want, e)
		}
	})
}

func BenchmarkEncodeDecodeReservation(b *testing.B) {
	r := messageCases[1].r
	b.ReportAllocs()
	for b.Loop() {
		_, value := pipeline.EncodeReservation(r)
		if _, _, err := pipeline.DecodeReservation(value, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
