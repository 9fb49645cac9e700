-- Where the order came from (for the webhook), when the kitchen marked it done (the
-- board), and the webhook outbox: one row per order to deliver, written in the order's
-- transaction.
ALTER TABLE orders ADD COLUMN room TEXT;
ALTER TABLE orders ADD COLUMN agent_id TEXT;
ALTER TABLE orders ADD COLUMN done_at TEXT;
CREATE TABLE order_deliveries (
    order_id        INTEGER PRIMARY KEY REFERENCES orders(id),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'parked')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL, -- Unix milliseconds
    last_error      TEXT,
    delivered_at    TEXT
);
CREATE INDEX order_deliveries_pending ON order_deliveries (order_id) WHERE state = 'pending';
