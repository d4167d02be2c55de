-- +goose Up
-- items: one sale item. sold counts active orders (pending + paid); the
-- consumer moves it with a guard that never lets it pass stock, and a
-- cancellation moves it back in the same transaction that cancels.
CREATE TABLE items (
  id             BIGINT       NOT NULL AUTO_INCREMENT,
  name           VARCHAR(200) NOT NULL,
  stock          BIGINT       NOT NULL,
  shards         INT          NOT NULL,
  per_user_limit INT          NOT NULL,
  sold           BIGINT       NOT NULL DEFAULT 0,
  starts_at      DATETIME(3)  NOT NULL,
  ends_at        DATETIME(3)  NULL,
  created_at     DATETIME(3)  NOT NULL,
  PRIMARY KEY (id)
);

-- orders: one row per accepted purchase; order_id is the primary key, so a
-- redelivered Kafka message inserts nothing.
CREATE TABLE orders (
  order_id       BIGINT      NOT NULL,
  item_id        BIGINT      NOT NULL,
  user_id        BIGINT      NOT NULL,
  shard          INT         NOT NULL,
  status         VARCHAR(16) NOT NULL DEFAULT 'pending',
  created_at     DATETIME(3) NOT NULL,
  expires_at     DATETIME(3) NOT NULL,
  paid_at        DATETIME(3) NULL,
  cancelled_at   DATETIME(3) NULL,
  stock_returned TINYINT     NOT NULL DEFAULT 0,
  PRIMARY KEY (order_id),
  KEY idx_orders_item_status (item_id, status),
  KEY idx_orders_status_expires (status, expires_at),
  KEY idx_orders_user (user_id)
);

-- +goose Down
DROP TABLE orders;
DROP TABLE items;
