// Package orderid makes order ids: the id layout, and the node-id lease
// with its high-water mark that keeps ids from ever repeating.
//
// An order id is a 64-bit snowflake:
//
//	bit 63     0
//	bits 62-22 milliseconds since Epoch (41 bits)
//	bits 21-16 slot group of the buyer's home shard (stock.OrderGroup reads it)
//	bits 15-8  instance node id (leased, see Source)
//	bits 7-0   sequence within the millisecond
//
// so 256 ids per millisecond per group per instance. The layout is the one
// bwmarrin/snowflake made with a 14-bit node field (group<<8 | node) and 8
// step bits, bit for bit: stored ids and stock.OrderGroup depend on it.
package orderid

import "errors"

// ErrUnavailable: no order id can be made safely now (the node id lease is
// unconfirmed, the clock has not passed the node id's high-water mark, or
// it stepped back). A passing state: retrying later helps.
var ErrUnavailable = errors.New("no order id can be made safely now")

// Layout of an id.
const (
	// Epoch is the Unix millisecond that ids count from: bwmarrin/snowflake's
	// (Twitter's) epoch, 2010-11-04T01:42:54.657Z.
	Epoch int64 = 1288834974657

	SeqBits   = 8
	NodeBits  = 8
	GroupBits = 6

	// Nodes is the number of instance node ids; Groups the number of slot
	// groups (stock.Groups).
	Nodes  = 1 << NodeBits
	Groups = 1 << GroupBits

	maxSeq     = 1<<SeqBits - 1
	nodeShift  = SeqBits
	groupShift = SeqBits + NodeBits
	timeShift  = SeqBits + NodeBits + GroupBits
)

// Make is the id of Unix millisecond ms, slot group g, node and sequence
// number seq.
func Make(ms int64, g, node, seq int) int64 {
	return (ms-Epoch)<<timeShift | int64(g&(Groups-1))<<groupShift |
		int64(node&(Nodes-1))<<nodeShift | int64(seq&maxSeq)
}

// Millis is the Unix millisecond an id was made in.
func Millis(id int64) int64 { return id>>timeShift + Epoch }
