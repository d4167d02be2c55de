-- +goose Up
-- Prices: an item's price in minor units of its ISO 4217 currency, set when
-- it is created; an order keeps the amount and currency it was accepted at
-- (the writer copies them from the item row it locks to store the order).
-- Rows of items created before prices existed read 0 / '': no price, and
-- their orders cannot be paid by the provider's callback.
ALTER TABLE items ADD COLUMN price_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE items ADD COLUMN currency CHAR(3) NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN amount_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN currency CHAR(3) NOT NULL DEFAULT '';
-- refund_required: a payment arrived for the order after it was cancelled
-- (expired or given back by its buyer). The order stays cancelled (its unit
-- goes back, or went back, exactly once); the money must be refunded.
ALTER TABLE orders ADD COLUMN refund_required TINYINT NOT NULL DEFAULT 0;

-- payments: one row per payment provider transaction, keyed by the
-- provider's transaction id, so a repeated callback finds its first answer
-- (outcome) and changes nothing.
CREATE TABLE payments (
  tx_id        VARCHAR(64)  NOT NULL,
  order_id     BIGINT       NOT NULL,
  amount_minor BIGINT       NOT NULL,
  currency     CHAR(3)      NOT NULL,
  outcome      VARCHAR(16)  NOT NULL,
  received_at  DATETIME(3)  NOT NULL,
  PRIMARY KEY (tx_id),
  KEY idx_payments_order (order_id)
);

-- +goose Down
DROP TABLE payments;
ALTER TABLE orders DROP COLUMN refund_required;
ALTER TABLE orders DROP COLUMN currency;
ALTER TABLE orders DROP COLUMN amount_minor;
ALTER TABLE items DROP COLUMN currency;
ALTER TABLE items DROP COLUMN price_minor;
