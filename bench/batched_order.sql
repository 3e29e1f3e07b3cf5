-- The database's own ceiling for the hot row: the same transaction shape
-- with 50 orders per transaction.
\set c random(1, 5000)
BEGIN;
UPDATE bench_products SET sold = sold + 50 WHERE sku = 'hot' AND initial_stock - sold >= 50;
INSERT INTO bench_orders (sku, customer, quantity) SELECT 'hot', 'c' || (:c + g), 1 FROM generate_series(1, 50) AS g;
END;
