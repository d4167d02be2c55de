package order

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
)

// Dead-letter reasons, in the dead_letters table and the metric label.
const (
	// ReasonDecode: the message is not a reservation (ErrInvalidMessage).
	ReasonDecode = "decode"
	// ReasonOversell: the MySQL stock guard refused the order.
	ReasonOversell = "oversell"
	// ReasonIDCollision: the order's id is already another order's (of
	// another buyer or item): an order id was made twice.
	ReasonIDCollision = "id_collision"
)

// StatusRefused is how a buyer sees an accepted order that the MySQL stock
// guard refused, or whose id was another order's (a dead letter): final.
const StatusRefused Status = "refused"

// DeadLetter is a Kafka message that did not become an order row.
type DeadLetter struct {
	ID     int64  `db:"id"`
	Reason string `db:"reason"`
	// OrderID, ItemID, UserID and Shard are set for a refused order, and
	// nil for an undecodable message.
	OrderID   *int64    `db:"order_id"`
	ItemID    *int64    `db:"item_id"`
	UserID    *int64    `db:"user_id"`
	Shard     *int      `db:"shard"`
	Payload   []byte    `db:"payload"`
	Detail    string    `db:"detail"`
	CreatedAt time.Time `db:"created_at"`
	SlotFreed bool      `db:"slot_freed"`
}

const deadCols = "id, reason, order_id, item_id, user_id, shard, payload, detail, created_at, slot_freed"

// dedupKey makes recording the same dead letter twice (a redelivered batch)
// a no-op: the order id when there is one (with the buyer for a collision:
// the id is not this order's alone), else the payload's hash.
func (d DeadLetter) dedupKey() string {
	if d.Reason == ReasonIDCollision && d.OrderID != nil && d.UserID != nil {
		return collisionKey(*d.OrderID, *d.UserID)
	}
	if d.OrderID != nil {
		return "order:" + strconv.FormatInt(*d.OrderID, 10)
	}
	h := sha256.Sum256(d.Payload)
	return "msg:" + hex.EncodeToString(h[:])
}

// RecordDeadLetters stores dead letters, each once however often it is
// recorded.
func (s *Store) RecordDeadLetters(ctx context.Context, dls []DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	now := ms(time.Now())
	return s.retry(ctx, func() error {
		for chunk := range slices.Chunk(dls, insertChunk) {
			q := "INSERT IGNORE INTO dead_letters (dedup_key, reason, order_id, item_id, user_id, shard, payload, detail, created_at) VALUES "
			args := make([]any, 0, 9*len(chunk))
			for i, d := range chunk {
				if i > 0 {
					q += ", "
				}
				q += "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
				detail := d.Detail
				if len(detail) > 500 {
					detail = detail[:500]
				}
				args = append(args, d.dedupKey(), d.Reason, d.OrderID, d.ItemID, d.UserID, d.Shard, d.Payload, detail, now)
			}
			if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("record %d dead letters: %w", len(chunk), err)
			}
		}
		return nil
	})
}

// UnfreedDeadLetters returns up to limit refused orders whose buyer's slot
// is not freed yet, oldest first.
func (s *Store) UnfreedDeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := s.db.SelectContext(ctx, &out, "SELECT "+deadCols+` FROM dead_letters
		WHERE slot_freed = 0 AND order_id IS NOT NULL ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("find unfreed dead letters: %w", err)
	}
	return out, nil
}

// MarkSlotsFreed records that the slots of these dead letters are free.
func (s *Store) MarkSlotsFreed(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In("UPDATE dead_letters SET slot_freed = 1 WHERE id IN (?)", ids)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("mark %d dead letters freed: %w", len(ids), err)
	}
	return nil
}

// DeadLetterOf returns the dead letter of an order, or ErrNotFound.
func (s *Store) DeadLetterOf(ctx context.Context, orderID int64) (DeadLetter, error) {
	var d DeadLetter
	err := s.db.GetContext(ctx, &d, "SELECT "+deadCols+" FROM dead_letters WHERE dedup_key = ?",
		"order:"+strconv.FormatInt(orderID, 10))
	if errors.Is(err, sql.ErrNoRows) {
		return DeadLetter{}, fmt.Errorf("dead letter of order %d: %w", orderID, ErrNotFound)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter of order %d: %w", orderID, err)
	}
	return d, nil
}

func collisionKey(orderID, userID int64) string {
	return "collision:" + strconv.FormatInt(orderID, 10) + ":" + strconv.FormatInt(userID, 10)
}

// DeadLetterFor returns the dead letter of userID's order orderID, whether
// refused by the stock guard or for a repeated id (the stored order of
// that id is then another buyer's), or ErrNotFound.
func (s *Store) DeadLetterFor(ctx context.Context, orderID, userID int64) (DeadLetter, error) {
	var d DeadLetter
	err := s.db.GetContext(ctx, &d, "SELECT "+deadCols+` FROM dead_letters
		WHERE dedup_key IN (?, ?) AND user_id = ? ORDER BY id LIMIT 1`,
		"order:"+strconv.FormatInt(orderID, 10), collisionKey(orderID, userID), userID)
	if errors.Is(err, sql.ErrNoRows) {
		return DeadLetter{}, fmt.Errorf("dead letter of order %d: %w", orderID, ErrNotFound)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter of order %d: %w", orderID, err)
	}
	return d, nil
}

// DeadLetters counts the item's refused orders.
func (s *Store) DeadLetters(ctx context.Context, itemID int64) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, "SELECT COUNT(*) FROM dead_letters WHERE item_id = ?", itemID); err != nil {
		return 0, fmt.Errorf("count dead letters of item %d: %w", itemID, err)
	}
	return n, nil
}

// DeadLettered returns which of the order ids are dead letters.
func (s *Store) DeadLettered(ctx context.Context, ids []int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	for chunk := range slices.Chunk(ids, insertChunk) {
		q, args, err := sqlx.In("SELECT order_id FROM dead_letters WHERE order_id IN (?)", chunk)
		if err != nil {
			return nil, err
		}
		var found []int64
		if err := s.db.SelectContext(ctx, &found, q, args...); err != nil {
			return nil, fmt.Errorf("find dead-lettered orders: %w", err)
		}
		for _, id := range found {
			out[id] = true
		}
	}
	return out, nil
}
