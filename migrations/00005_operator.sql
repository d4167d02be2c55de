-- +goose Up
-- The operator's controls (issue 19). items.paused: the sale is paused
-- (purchases and token issues answer 409 sale_paused); Redis carries the
-- same state on every shard, where the purchase script reads it, and a
-- rebuild writes it back from here. The index serves the paused-items gauge
-- without reading other items.
ALTER TABLE items ADD COLUMN paused TINYINT NOT NULL DEFAULT 0;
CREATE INDEX idx_items_paused ON items (paused);

-- admin_audit: every change an operator made, who (the X-Actor header, or
-- "admin") and when, in the same transaction as the change. A stock
-- addition's row is also its id: Redis applies each addition once per shard
-- by it, and its idempotency key makes a retried request answer the same.
CREATE TABLE admin_audit (
  id          BIGINT       NOT NULL AUTO_INCREMENT,
  item_id     BIGINT       NOT NULL,
  action      VARCHAR(32)  NOT NULL,
  actor       VARCHAR(100) NOT NULL,
  detail      VARCHAR(500) NOT NULL DEFAULT '',
  units       BIGINT       NULL,
  idem_key    VARCHAR(80)  NULL,
  created_at  DATETIME(3)  NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_admin_audit_key (item_id, action, idem_key),
  KEY idx_admin_audit_item (item_id, id)
);

-- +goose Down
DROP TABLE admin_audit;
DROP INDEX idx_items_paused ON items;
ALTER TABLE items DROP COLUMN paused;
