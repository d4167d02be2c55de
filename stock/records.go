package stock

// The records the Lua scripts (lua/*.lua) and the Go side of this package
// share, described once. Each script's header refers here; the Go side
// spells every field with the constants below. Key names are in keys.go.
//
// Token hash (Keys.Token(ID), on the buyer's home shard): the answer of a
// used purchase token, under the token's ID (TokenString of its nonce;
// the token itself is signed and verified in process, package
// order/token). It is written by the token's first use (reserve.lua,
// answer.lua): a token never used has no key. Fields:
//
//	u   buyer's user id; another user's answer is not given
//	st  state: c claimed (home shard empty, a fall-through is looking at
//	    the other shards), d done (the answer is stored)
//	c   result code once done (0 accepted, 2 sold out, 3 limit; see stock.go)
//	o   order id: of the accepted order, or of the claim's order
//	ct  claim epoch (ms) while claimed: every take is fenced with it
//
// A used or claimed token keeps its answer for Config.ResultTTL, which
// outlasts the token's validity: a used token is never used again.
//
// Outbox entry (Keys.Outbox, a stream per shard): one accepted purchase,
// appended by reserve.lua, take.lua and Restore, removed by AckOutbox or
// AckEntries once MySQL stored its order. Fields, all decimal integers:
//
//	o  order id
//	i  item id
//	u  user id
//	s  shard the unit was taken from
//	h  buyer's home shard
//	t  time the purchase was accepted (Unix ms)
//
// An entry without one of them, or with one that is not a number, is
// broken: it is never relayed, and its reader is told (OnBrokenEntry).
//
// Order index entry (Store.orderKey, a string in the slot group the order
// id was made for): "item:home:token:ms" -- where the token that holds the
// purchase's answer lives, and when it was accepted (indexValue).
//
// Claims index member (Store.claimsKey, a sorted set per slot group scored
// by claim epoch): "item:home:token" of an open fall-through claim
// (claimMember, parseMember).
//
// Active-outbox member (Store.activeKey, a set per slot group):
// "item:shard" of an outbox that holds entries (outboxMember).
//
// Took marker (Keys.Took, per order and shard): "t<epoch>" the claim of
// that epoch took its unit on the shard; "f<epoch>" a replay of that epoch
// fenced the shard (fence.lua, take.lua).
//
// Bought hash (Keys.Bought, home shard): user id -> units held. Returned
// and freed sets (Keys.Returned, Keys.Freed): order ids whose unit, or
// slot, was given back once.

// Token hash fields and states.
const (
	tokUser  = "u"
	tokState = "st"
	tokCode  = "c"
	tokOrder = "o"
	tokEpoch = "ct"

	stateClaimed = "c"
	stateDone    = "d"
)

// Outbox entry fields.
const (
	outOrder = "o"
	outItem  = "i"
	outUser  = "u"
	outShard = "s"
	outHome  = "h"
	outAt    = "t"
)

// Took marker prefixes (followed by the claim epoch).
const (
	markTook   = "t"
	markFenced = "f"
)
