-- One schema for SQLite and PostgreSQL: only types both understand the same
-- way (TEXT, BIGINT), times as Unix milliseconds.

CREATE TABLE products (
    sku                TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    price_cents        BIGINT NOT NULL CHECK (price_cents >= 0),
    initial_stock      BIGINT NOT NULL CHECK (initial_stock >= 0),
    sold               BIGINT NOT NULL DEFAULT 0 CHECK (sold >= 0),
    sale_starts_at     BIGINT,
    sale_ends_at       BIGINT,
    limit_per_customer BIGINT CHECK (limit_per_customer IS NULL OR limit_per_customer > 0),
    updated_at         BIGINT NOT NULL,
    -- The last line of defence against overselling: whatever the code does,
    -- the database refuses to commit more units sold than there were.
    CHECK (sold <= initial_stock)
);

CREATE TABLE orders (
    order_id        TEXT PRIMARY KEY,
    sku             TEXT NOT NULL REFERENCES products (sku),
    customer        TEXT NOT NULL,
    quantity        BIGINT NOT NULL CHECK (quantity > 0),
    idempotency_key TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- The per-customer limit sums a customer's units of one item.
CREATE INDEX orders_by_sku_customer ON orders (sku, customer);
-- The admin export pages through orders in creation order.
CREATE INDEX orders_by_created ON orders (created_at, order_id);

-- The first complete answer to a keyed request, written in the same
-- transaction as the order it describes.
CREATE TABLE idempotency_keys (
    customer      TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    status_code   BIGINT NOT NULL,
    response_body TEXT NOT NULL,
    order_id      TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    PRIMARY KEY (customer, idem_key)
);

CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
