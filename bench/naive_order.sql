-- The naive order transaction: one order per transaction on the hot row.
\set c random(1, 5000)
BEGIN;
UPDATE bench_products SET sold = sold + 1 WHERE sku = 'hot' AND initial_stock - sold >= 1;
INSERT INTO bench_orders (sku, customer, quantity) VALUES ('hot', 'c' || :c, 1);
END;
