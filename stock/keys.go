package stock

import (
	"hash/fnv"
	"strconv"
)

// Keys names the Redis keys of one item shard. Every key carries the hash tag
// {<item>:<shard>}, so all keys one script touches live in one Redis Cluster
// slot and shards can spread over cluster nodes.
type Keys struct {
	prefix string
	tag    string
}

func (s *Store) keys(itemID int64, shard int) Keys {
	return Keys{prefix: s.prefix, tag: "{" + strconv.FormatInt(itemID, 10) + ":" + strconv.Itoa(shard) + "}"}
}

// Stock is the remaining unit count of the shard.
func (k Keys) Stock() string { return k.prefix + ":" + k.tag + ":stock" }

// Bought maps user id to the units that user holds; only a user's home shard
// keeps their count, which is how the per-user limit holds across shards.
func (k Keys) Bought() string { return k.prefix + ":" + k.tag + ":bought" }

// Token is a one-time purchase token; it lives on the user's home shard.
func (k Keys) Token(token string) string { return k.prefix + ":" + k.tag + ":tok:" + token }

// Outbox is the durable reservation stream of the shard.
func (k Keys) Outbox() string { return k.prefix + ":" + k.tag + ":outbox" }

// Took marks that a fall-through order took its unit from this shard.
func (k Keys) Took(orderID int64) string {
	return k.prefix + ":" + k.tag + ":took:" + strconv.FormatInt(orderID, 10)
}

// Returned is the set of order ids whose unit went back into this shard.
func (k Keys) Returned() string { return k.prefix + ":" + k.tag + ":returned" }

// Freed is the set of order ids whose per-user slot was freed on this
// (home) shard.
func (k Keys) Freed() string { return k.prefix + ":" + k.tag + ":freed" }

// claimsKey is the index of open fall-through claims (a sorted set scored
// by claim epoch), so abandoned claims are found without scanning.
func (s *Store) claimsKey() string { return s.prefix + ":claims" }

// activeKey is the set of outboxes that hold entries ("item:shard"): the
// relay visits those only, so its idle cost does not grow with the number
// of items and shards ever created.
func (s *Store) activeKey() string { return s.prefix + ":active" }

func outboxMember(itemID int64, shard int) string {
	return strconv.FormatInt(itemID, 10) + ":" + strconv.Itoa(shard)
}

// orderKey is the order index entry of an order id: the item, the buyer's
// home shard and the token that may have created it. Its hash tag is the
// order's own, so it can be written next to any shard's script.
func (s *Store) orderKey(orderID int64) string {
	return s.prefix + ":{o" + strconv.FormatInt(orderID, 10) + "}"
}

// HomeShard is the shard that keeps a user's purchase tokens and per-user
// count for an item with n shards. It is a stable hash of the user id, so
// every instance agrees on it.
func HomeShard(userID int64, n int) int {
	h := fnv.New32a()
	var b [20]byte
	h.Write(strconv.AppendInt(b[:0], userID, 10))
	return int(h.Sum32() % uint32(n))
}
