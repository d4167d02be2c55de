package stock

import (
	"hash/fnv"
	"strconv"
)

// Groups is the number of slot groups. Every Redis key lives in one group:
// its hash tag is the group's tag, a string chosen so that on Redis Cluster
// group g's keys live in slot range [g*256, (g+1)*256). An item's shards
// are spread over the groups evenly (so over the masters of a cluster whose
// slots are split in even ranges, as redis-cli --cluster create does), and
// the few keys shared by many items (the active-outbox set, the open-claims
// index, the order index) are kept per group, so every script touches one
// slot. An order id carries the group of the buyer's home shard (see
// OrderGroup), which is how the order index entry is found from the id alone
// and written by the reservation script in the same slot.
const Groups = 64

// groupShift is where an order id keeps its group: bits 16..21. Ids are
// made by snowflake nodes whose node field is group<<8 | instance node,
// with 8 step bits (order/orderid).
const groupShift = 16

// OrderGroup is the slot group an order id was made for.
func OrderGroup(id int64) int { return int(id>>groupShift) & (Groups - 1) }

// WithGroup returns id with its group bits set to group: an id made for
// that group. Id generators and tests use it.
func WithGroup(id int64, group int) int64 {
	return id&^(int64(Groups-1)<<groupShift) | int64(group&(Groups-1))<<groupShift
}

// groupTags[g] is the hash tag of group g.
var groupTags = func() [Groups]string {
	var tags [Groups]string
	found := 0
	for i := 0; found < Groups; i++ {
		t := "s" + strconv.Itoa(i)
		g := int(Slot(t)) * Groups / 16384
		if tags[g] == "" {
			tags[g] = t
			found++
		}
	}
	return tags
}()

// Slot is the Redis Cluster hash slot of a key (CRC16/XMODEM of its hash
// tag, or of the whole key without one, modulo 16384).
func Slot(key string) uint16 {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// ShardGroup is the slot group of an item's shard: the item's shards start
// at a group of the item's own and step evenly around all groups.
func ShardGroup(itemID int64, shard, shards int) int {
	h := fnv.New32a()
	var b [20]byte
	h.Write(strconv.AppendInt(b[:0], itemID, 10))
	return (int(h.Sum32()%Groups) + shard*Groups/max(shards, 1)) % Groups
}

// HomeGroup is the slot group of the buyer's home shard: the group an order
// id for this purchase must be made for.
func HomeGroup(itemID, userID int64, shards int) int {
	return ShardGroup(itemID, HomeShard(userID, shards), shards)
}

// Keys names the Redis keys of one item shard. Every key carries the hash
// tag of the shard's group, so all keys one script touches live in one
// Redis Cluster slot.
type Keys struct {
	prefix string
	tag    string
}

// keys names the keys of an item shard; shards is the item's shard count,
// which places the shard in its group.
func (s *Store) keys(itemID int64, shard, shards int) Keys {
	return s.keysIn(ShardGroup(itemID, shard, shards), itemID, shard)
}

// keysIn names the keys of an item shard known to be in group g.
func (s *Store) keysIn(g int, itemID int64, shard int) Keys {
	return Keys{prefix: s.prefix, tag: "{" + groupTags[g] + "}:" +
		strconv.FormatInt(itemID, 10) + ":" + strconv.Itoa(shard)}
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

// groupKey names a key of group g.
func (s *Store) groupKey(g int, name string) string {
	return s.prefix + ":{" + groupTags[g] + "}:" + name
}

// claimsKey is group g's index of open fall-through claims (a sorted set
// scored by claim epoch), so abandoned claims are found without scanning.
// A claim is indexed in its home shard's group.
func (s *Store) claimsKey(g int) string { return s.groupKey(g, "claims") }

// activeKey is group g's set of outboxes that hold entries ("item:shard"):
// the relay visits those only, so its idle cost does not grow with the
// number of items and shards ever created.
func (s *Store) activeKey(g int) string { return s.groupKey(g, "active") }

func outboxMember(itemID int64, shard int) string {
	return strconv.FormatInt(itemID, 10) + ":" + strconv.Itoa(shard)
}

// orderKey is the order index entry of an order id: the item, the buyer's
// home shard and the token that may have created it. It lives in the group
// the id was made for, the home shard's, so the reservation script writes it.
func (s *Store) orderKey(orderID int64) string {
	return s.groupKey(OrderGroup(orderID), "o:"+strconv.FormatInt(orderID, 10))
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
