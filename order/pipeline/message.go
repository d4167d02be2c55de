package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"seckill/order"
	"strconv"
	"time"

	"seckill/stock"
)

// ErrInvalidMessage: a Kafka message is not a well-formed reservation. Such
// a message can never become an order; it goes to the dead-letter topic.
var ErrInvalidMessage = errors.New("invalid reservation message")

// message is the Kafka form of one reservation, as read. Pointers tell a
// missing field from a zero one. The order id travels as a decimal string:
// snowflake ids pass 2^53 and would lose digits in JavaScript and other
// float-number JSON readers.
type message struct {
	OrderID    *int64     `json:"order_id,string"`
	ItemID     *int64     `json:"item_id"`
	UserID     *int64     `json:"user_id"`
	Shard      *int       `json:"shard"`
	Home       *int       `json:"home"`
	SlotGroup  *int       `json:"slot_group"`
	ReservedAt *time.Time `json:"reserved_at"`
	// StreamID is the reservation's outbox entry, acknowledged once the
	// order is stored (absent in messages of older producers).
	StreamID string `json:"stream_id"`
}

// outMessage is message as written; only strings and integers, so encoding
// it cannot fail.
type outMessage struct {
	OrderID    string `json:"order_id"`
	ItemID     int64  `json:"item_id"`
	UserID     int64  `json:"user_id"`
	Shard      int    `json:"shard"`
	Home       int    `json:"home"`
	SlotGroup  int    `json:"slot_group"`
	ReservedAt string `json:"reserved_at"`
	StreamID   string `json:"stream_id,omitempty"`
}

// EncodeReservation is the Kafka key and value of a reservation. The key is
// the item id, so all orders of one item land in one partition, in order,
// and one writer applies the item's stock guard at a time.
func EncodeReservation(r stock.Reservation) (key, value []byte) {
	value, _ = json.Marshal(outMessage{
		OrderID: strconv.FormatInt(r.OrderID, 10),
		ItemID:  r.ItemID, UserID: r.UserID, Shard: r.Shard, Home: r.Home, SlotGroup: r.SlotGroup,
		ReservedAt: r.At.UTC().Format(time.RFC3339Nano),
		StreamID:   r.StreamID,
	})
	return strconv.AppendInt(nil, r.ItemID, 10), value
}

// DecodeOrder turns a Kafka value into a new pending order that expires ttl
// after it was reserved. Any malformed, missing or out-of-range field makes
// it fail with ErrInvalidMessage; unknown fields are ignored, so a newer
// producer can add some during a rolling deploy.
func DecodeOrder(value []byte, ttl time.Duration) (order.Order, error) {
	o, _, err := DecodeReservation(value, ttl)
	return o, err
}

// DecodeReservation is DecodeOrder that also returns the reservation's
// outbox entry, to be acknowledged once the order is stored.
func DecodeReservation(value []byte, ttl time.Duration) (order.Order, stock.Entry, error) {
	o, m, err := decode(value, ttl)
	if err != nil {
		return order.Order{}, stock.Entry{}, err
	}
	e := stock.Entry{ItemID: o.ItemID, Shard: o.Shard, StreamID: m.StreamID}
	if m.SlotGroup != nil && *m.SlotGroup >= 0 && *m.SlotGroup < stock.Groups {
		e.SlotGroup = *m.SlotGroup
	} else {
		// From a producer that did not say where its entry is: nothing
		// to acknowledge by.
		e.StreamID = ""
	}
	return o, e, nil
}

func decode(value []byte, ttl time.Duration) (order.Order, message, error) {
	var m message
	dec := json.NewDecoder(bytes.NewReader(value))
	if err := dec.Decode(&m); err != nil {
		return order.Order{}, m, fmt.Errorf("decode order: %w: %v", ErrInvalidMessage, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return order.Order{}, m, fmt.Errorf("decode order: %w: trailing data", ErrInvalidMessage)
	}
	switch {
	case m.OrderID == nil || *m.OrderID <= 0:
		return order.Order{}, m, fmt.Errorf("decode order: %w: order_id missing or not positive", ErrInvalidMessage)
	case m.ItemID == nil || *m.ItemID <= 0:
		return order.Order{}, m, fmt.Errorf("decode order %d: %w: item_id missing or not positive", *m.OrderID, ErrInvalidMessage)
	case m.UserID == nil || *m.UserID <= 0:
		return order.Order{}, m, fmt.Errorf("decode order %d: %w: user_id missing or not positive", *m.OrderID, ErrInvalidMessage)
	case m.Shard == nil || *m.Shard < 0:
		return order.Order{}, m, fmt.Errorf("decode order %d: %w: shard missing or negative", *m.OrderID, ErrInvalidMessage)
	case m.Home == nil || *m.Home < 0:
		return order.Order{}, m, fmt.Errorf("decode order %d: %w: home missing or negative", *m.OrderID, ErrInvalidMessage)
	case m.ReservedAt == nil || m.ReservedAt.IsZero():
		return order.Order{}, m, fmt.Errorf("decode order %d: %w: reserved_at missing", *m.OrderID, ErrInvalidMessage)
	case ttl <= 0:
		return order.Order{}, m, fmt.Errorf("decode order %d: order ttl %v, want > 0", *m.OrderID, ttl)
	}
	return order.Order{
		ID: *m.OrderID, ItemID: *m.ItemID, UserID: *m.UserID, Shard: *m.Shard,
		Status:    order.StatusPending,
		CreatedAt: *m.ReservedAt,
		ExpiresAt: m.ReservedAt.Add(ttl),
	}, m, nil
}
