-- +goose Up
-- dead_letters: Kafka messages the writer could not turn into an order row:
-- undecodable ones, and orders the items.sold guard refused (the stock was
-- already full in MySQL). An operator sees them here (and in the item's
-- stats); the sweeper frees the buyer's per-user slot of a refused order
-- (slot_freed) so it is not held by an order that does not exist.
CREATE TABLE dead_letters (
  id          BIGINT       NOT NULL AUTO_INCREMENT,
  dedup_key   VARCHAR(80)  NOT NULL,
  reason      VARCHAR(16)  NOT NULL,
  order_id    BIGINT       NULL,
  item_id     BIGINT       NULL,
  user_id     BIGINT       NULL,
  shard       INT          NULL,
  payload     BLOB         NOT NULL,
  detail      VARCHAR(500) NOT NULL DEFAULT '',
  created_at  DATETIME(3)  NOT NULL,
  slot_freed  TINYINT      NOT NULL DEFAULT 0,
  PRIMARY KEY (id),
  UNIQUE KEY uq_dead_letters_dedup (dedup_key),
  KEY idx_dead_letters_item (item_id),
  KEY idx_dead_letters_unfreed (slot_freed, id)
);

-- +goose Down
DROP TABLE dead_letters;
