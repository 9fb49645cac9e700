-- Orders and their lines. AUTOINCREMENT keeps ids (the order numbers) from being reused.
-- IF NOT EXISTS: databases made before versioned migrations already hold these tables.
CREATE TABLE IF NOT EXISTS orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    created_at      TEXT    NOT NULL,
    subtotal_cents  INTEGER NOT NULL,
    tip_percent     INTEGER NOT NULL,
    tip_cents       INTEGER NOT NULL,
    total_cents     INTEGER NOT NULL,
    payment_method  TEXT    NOT NULL,
    caller_phone    TEXT
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id         INTEGER NOT NULL REFERENCES orders(id),
    position         INTEGER NOT NULL,
    name             TEXT    NOT NULL,
    quantity         INTEGER NOT NULL,
    modifications    TEXT    NOT NULL, -- JSON array of strings
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, position)
);
