package pipeline

import (
	"bytes"
	"encoding/binary"
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

// message is the JSON form of one reservation, as older producers wrote it
// and as it may still wait in Kafka. Pointers tell a missing field from a
// zero one. The order id travels as a decimal string: snowflake ids pass
// 2^53 and would lose digits in JavaScript and other float-number JSON
// readers.
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

// formatV1 starts every binary message: a format version, so the form can
// change again, and a byte no JSON text starts with, so a writer tells it
// from the JSON messages of older producers still in Kafka. Writers must
// read it before relays write it: deploy the writers first.
const formatV1 = 0x01

// maxKeyLen is the longest decimal int64, sign included.
const maxKeyLen = len("-9223372036854775808")

// binaryFields names the varint fields of a binary message, in their order,
// as the JSON form names them: for errors.
var binaryFields = [...]string{"order_id", "item_id", "user_id", "shard", "home", "slot_group", "reserved_at"}

// EncodeReservation is the Kafka key and value of a reservation. The key is
// the item id, so all orders of one item land in one partition, in order,
// and one writer applies the item's stock guard at a time.
//
// The value is binary, to spare the relay and the writer JSON's CPU on
// every order: formatV1, then the fields of binaryFields as signed varints,
// reserved_at in Unix milliseconds (the outbox records no finer, and orders
// are stored at that precision), then the stream id as a uvarint length and
// its bytes. Signed varints carry any value, so a bad one is refused where
// it is read, as in JSON, rather than wrapped here.
func EncodeReservation(r stock.Reservation) (key, value []byte) {
	// Key and value share one allocation, sized for the longest of both.
	b := make([]byte, 0, maxKeyLen+1+len(binaryFields)*binary.MaxVarintLen64+binary.MaxVarintLen64+len(r.StreamID))
	b = strconv.AppendInt(b, r.ItemID, 10)
	k := len(b)
	b = append(b, formatV1)
	for _, v := range [...]int64{r.OrderID, r.ItemID, r.UserID, int64(r.Shard), int64(r.Home), int64(r.SlotGroup), r.At.UnixMilli()} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(r.StreamID)))
	b = append(b, r.StreamID...)
	return b[:k:k], b[k:]
}

// DecodeOrder turns a Kafka value, binary or JSON, into a new pending order
// that expires ttl after it was reserved. Any malformed, missing or
// out-of-range field makes it fail with ErrInvalidMessage. Unknown JSON
// fields are ignored, so a newer JSON producer could add some; a binary
// form that changes takes a new version byte, which writers must know
// before relays write it.
func DecodeOrder(value []byte, ttl time.Duration) (order.Order, error) {
	o, _, err := DecodeReservation(value, ttl)
	return o, err
}

// DecodeReservation is DecodeOrder that also returns the reservation's
// outbox entry, to be acknowledged once the order is stored.
func DecodeReservation(value []byte, ttl time.Duration) (order.Order, stock.Entry, error) {
	if len(value) > 0 && value[0] == formatV1 {
		return decodeBinary(value[1:], ttl)
	}
	switch s := bytes.TrimLeft(value, " \t\r\n"); {
	case len(s) == 0:
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order: %w: empty", ErrInvalidMessage)
	case s[0] != '{':
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order: %w: unknown format (first byte %#02x)", ErrInvalidMessage, s[0])
	}
	o, m, err := decodeJSON(value, ttl)
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

// decodeBinary is DecodeReservation of a binary message (see
// EncodeReservation) after its version byte, with the checks of the JSON
// form. It allocates only the stream id it returns.
func decodeBinary(b []byte, ttl time.Duration) (order.Order, stock.Entry, error) {
	var v [len(binaryFields)]int64
	for i, field := range binaryFields {
		x, n := binary.Varint(b)
		if n <= 0 {
			return order.Order{}, stock.Entry{}, varintError(field, n)
		}
		v[i], b = x, b[n:]
	}
	size, n := binary.Uvarint(b)
	switch {
	case n <= 0:
		return order.Order{}, stock.Entry{}, varintError("stream_id", n)
	case size > uint64(len(b)-n):
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order: %w: stream_id of %d bytes past the end", ErrInvalidMessage, size)
	case size < uint64(len(b)-n):
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order: %w: trailing data", ErrInvalidMessage)
	}
	streamID := b[n:]
	id, itemID, userID, shard, home, group, ms := v[0], v[1], v[2], v[3], v[4], v[5], v[6]
	switch {
	case id <= 0:
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order: %w: order_id not positive", ErrInvalidMessage)
	case itemID <= 0:
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order %d: %w: item_id not positive", id, ErrInvalidMessage)
	case userID <= 0:
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order %d: %w: user_id not positive", id, ErrInvalidMessage)
	case shard < 0:
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order %d: %w: shard negative", id, ErrInvalidMessage)
	case home < 0:
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order %d: %w: home negative", id, ErrInvalidMessage)
	case ms <= 0:
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order %d: %w: reserved_at not after the Unix epoch", id, ErrInvalidMessage)
	case ttl <= 0:
		return order.Order{}, stock.Entry{}, fmt.Errorf("decode order %d: order ttl %v, want > 0", id, ttl)
	}
	at := time.UnixMilli(ms).UTC()
	o := order.Order{
		ID: id, ItemID: itemID, UserID: userID, Shard: int(shard),
		Status:    order.StatusPending,
		CreatedAt: at,
		ExpiresAt: at.Add(ttl),
	}
	// A slot group out of range names no entry to acknowledge, as in JSON.
	e := stock.Entry{ItemID: itemID, Shard: int(shard)}
	if group >= 0 && group < stock.Groups {
		e.SlotGroup, e.StreamID = int(group), string(streamID)
	}
	return o, e, nil
}

// varintError is why the varint of field could not be read, from the n <= 0
// of binary.Varint or binary.Uvarint.
func varintError(field string, n int) error {
	if n == 0 {
		return fmt.Errorf("decode order: %w: truncated at %s", ErrInvalidMessage, field)
	}
	return fmt.Errorf("decode order: %w: %s overflows 64 bits", ErrInvalidMessage, field)
}

// decodeJSON is the order of a JSON message, and the message for its
// outbox entry.
func decodeJSON(value []byte, ttl time.Duration) (order.Order, message, error) {
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
