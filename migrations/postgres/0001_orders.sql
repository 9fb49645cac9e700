-- Orders, their lines, and the webhook outbox, shared by every worker.
-- Order numbers come from a one-row counter updated inside the order's transaction: the
-- row lock serialises confirmations for the instant of the insert, and a transaction that
-- rolls back (a repeated idempotency key) gives its number back, so numbers are unique
-- across workers and have no gaps.
CREATE TABLE order_numbers (
    single BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (single),
    last   BIGINT  NOT NULL
);
INSERT INTO order_numbers (single, last) VALUES (TRUE, 0);

CREATE TABLE orders (
    id              BIGINT  PRIMARY KEY,
    idempotency_key TEXT    NOT NULL UNIQUE,
    created_at      TEXT    NOT NULL, -- RFC 3339, UTC
    subtotal_cents  BIGINT  NOT NULL CHECK (subtotal_cents >= 0),
    tip_percent     INTEGER NOT NULL CHECK (tip_percent >= 0),
    tip_cents       BIGINT  NOT NULL CHECK (tip_cents >= 0),
    total_cents     BIGINT  NOT NULL CHECK (total_cents >= 0),
    payment_method  TEXT    NOT NULL,
    caller_phone    TEXT,
    room            TEXT,
    agent_id        TEXT,
    done_at         TEXT
);
CREATE INDEX orders_created_at ON orders (created_at);

CREATE TABLE order_items (
    order_id         BIGINT  NOT NULL REFERENCES orders(id),
    position         INTEGER NOT NULL,
    name             TEXT    NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    modifications    TEXT    NOT NULL, -- JSON array of strings
    unit_price_cents BIGINT  NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, position)
);

CREATE TABLE order_deliveries (
    order_id        BIGINT  PRIMARY KEY REFERENCES orders(id),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'parked')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT  NOT NULL, -- Unix milliseconds
    last_error      TEXT,
    delivered_at    TEXT
);
CREATE INDEX order_deliveries_pending ON order_deliveries (order_id) WHERE state = 'pending';
