//! The SQL both stores run. SQLite and PostgreSQL agree on everything used
//! here (`$N` parameters, upsert, `RETURNING`, row values), so one engine
//! serves both through sqlx's `Any` driver and the two can never drift apart.

use std::collections::HashMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::{Any, Row, Transaction};

use super::placement::{decide, BatchInputs, Decision, ExistingKey, StoredAnswer};
use super::{PoolStats, Store, StoreError, Upsert};
use crate::model::{rfc3339, InventoryLine, OrderRecord, OrderRequest, Product};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const PRODUCT_COLUMNS: &str = "sku, name, price_cents, initial_stock, sold, sale_starts_at, \
                               sale_ends_at, limit_per_customer";

/// The one implementation of [`Store`]; `engine` says which database it talks to.
#[derive(Debug)]
pub struct SqlStore {
    pool: AnyPool,
    engine: &'static str,
    idempotency_ttl_ms: i64,
    max_connections: u32,
}

impl SqlStore {
    pub(super) fn new(pool: AnyPool, engine: &'static str, options: &super::StoreOptions) -> Self {
        SqlStore {
            pool,
            engine,
            idempotency_ttl_ms: options.idempotency_ttl.as_millis() as i64,
            max_connections: options.max_connections,
        }
    }

    /// Takes the product's row lock for the rest of the transaction (a write,
    /// which on SQLite also takes the database's write lock up front, so the
    /// transaction never has to upgrade a read lock and deadlock).
    async fn lock_product(
        tx: &mut Transaction<'static, Any>,
        sku: &str,
    ) -> Result<Option<Product>, StoreError> {
        let sql =
            format!("UPDATE products SET sold = sold WHERE sku = $1 RETURNING {PRODUCT_COLUMNS}");
        let row = sqlx::query(&sql)
            .bind(sku)
            .fetch_optional(&mut **tx)
            .await
            .map_err(classify)?;
        row.map(|row| product_from_row(&row)).transpose()
    }

    async fn existing_keys(
        tx: &mut Transaction<'static, Any>,
        requests: &[OrderRequest],
        now_ms: i64,
    ) -> Result<HashMap<(String, String), ExistingKey>, StoreError> {
        let sql = format!(
            "SELECT customer, idem_key, fingerprint, status_code, response_body \
             FROM idempotency_keys WHERE expires_at > $1 AND (customer, idem_key) IN (VALUES {})",
            placeholders(2, 2, requests.len())
        );
        let mut query = sqlx::query(&sql).bind(now_ms);
        for request in requests {
            query = query.bind(&request.customer).bind(&request.idempotency_key);
        }
        let rows = query.fetch_all(&mut **tx).await.map_err(classify)?;
        let mut keys = HashMap::with_capacity(rows.len());
        for row in rows {
            let status: i64 = row.try_get(3).map_err(StoreError::Internal)?;
            keys.insert(
                (get_string(&row, 0)?, get_string(&row, 1)?),
                ExistingKey {
                    fingerprint: get_string(&row, 2)?,
                    answer: StoredAnswer {
                        status: status as u16,
                        body: get_string(&row, 4)?,
                    },
                },
            );
        }
        Ok(keys)
    }

    async fn units_bought(
        tx: &mut Transaction<'static, Any>,
        sku: &str,
        requests: &[OrderRequest],
    ) -> Result<HashMap<String, i64>, StoreError> {
        let sql = format!(
            "SELECT customer, CAST(SUM(quantity) AS BIGINT) FROM orders \
             WHERE sku = $1 AND customer IN ({}) GROUP BY customer",
            (0..requests.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut query = sqlx::query(&sql).bind(sku);
        for request in requests {
            query = query.bind(&request.customer);
        }
        let rows = query.fetch_all(&mut **tx).await.map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok((
                    get_string(row, 0)?,
                    row.try_get::<i64, _>(1).map_err(StoreError::Internal)?,
                ))
            })
            .collect()
    }

    async fn insert_orders(
        tx: &mut Transaction<'static, Any>,
        created: &[(&OrderRequest, &crate::model::Order)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO orders (order_id, sku, customer, quantity, idempotency_key, created_at) VALUES {}",
            placeholders(1, 6, created.len())
        );
        let mut query = sqlx::query(&sql);
        for (request, order) in created {
            query = query
                .bind(&order.order_id)
                .bind(&order.sku)
                .bind(&order.customer)
                .bind(order.quantity)
                .bind(&request.idempotency_key)
                .bind(now_ms);
        }
        query.execute(&mut **tx).await.map_err(classify)?;
        Ok(())
    }

    /// Stores the answers; a key whose live answer another process wrote in
    /// the meantime (the same key sent for another SKU) is not overwritten,
    /// and the whole batch is then refused as contention so it runs again
    /// and sees that answer.
    async fn insert_answers(
        &self,
        tx: &mut Transaction<'static, Any>,
        answers: &[(&OrderRequest, &StoredAnswer, Option<&str>)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO idempotency_keys \
             (customer, idem_key, fingerprint, status_code, response_body, order_id, created_at, expires_at) \
             VALUES {} \
             ON CONFLICT (customer, idem_key) DO UPDATE SET \
             fingerprint = excluded.fingerprint, status_code = excluded.status_code, \
             response_body = excluded.response_body, order_id = excluded.order_id, \
             created_at = excluded.created_at, expires_at = excluded.expires_at \
             WHERE idempotency_keys.expires_at <= excluded.created_at \
             RETURNING idem_key",
            placeholders(1, 8, answers.len())
        );
        let mut query = sqlx::query(&sql);
        for (request, answer, order_id) in answers {
            query = query
                .bind(&request.customer)
                .bind(&request.idempotency_key)
                .bind(request.fingerprint())
                .bind(i64::from(answer.status))
                .bind(&answer.body)
                .bind(order_id.map(str::to_string))
                .bind(now_ms)
                .bind(now_ms + self.idempotency_ttl_ms);
        }
        let written = query.fetch_all(&mut **tx).await.map_err(classify)?;
        if written.len() != answers.len() {
            return Err(StoreError::Contention(
                "an idempotency key was answered by another process meanwhile".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> &'static str {
        self.engine
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(inner) => classify(inner),
            other => StoreError::Contention(other.to_string()),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY sku");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(product_from_row).collect()
    }

    async fn product(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = $1");
        let row = sqlx::query(&sql)
            .bind(sku)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| product_from_row(&row)).transpose()
    }

    async fn upsert_product(&self, product: &Product, now_ms: i64) -> Result<Upsert, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let updated = sqlx::query(
            "UPDATE products SET name = $2, price_cents = $3, initial_stock = $4, \
             sale_starts_at = $5, sale_ends_at = $6, limit_per_customer = $7, updated_at = $8 \
             WHERE sku = $1 AND sold <= $4 RETURNING sku",
        )
        .bind(&product.sku)
        .bind(&product.name)
        .bind(product.price_cents)
        .bind(product.initial_stock)
        .bind(product.sale_starts_at)
        .bind(product.sale_ends_at)
        .bind(product.limit_per_customer)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        if updated.is_some() {
            tx.commit().await.map_err(classify)?;
            return Ok(Upsert::Replaced);
        }
        let sold: Option<i64> = sqlx::query_scalar("SELECT sold FROM products WHERE sku = $1")
            .bind(&product.sku)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if let Some(sold) = sold {
            return Err(StoreError::Refused(format!(
                "stock {} is below the {sold} units already sold",
                product.initial_stock
            )));
        }
        insert_product(&mut tx, product, now_ms).await?;
        tx.commit().await.map_err(classify)?;
        Ok(Upsert::Created)
    }

    async fn insert_product_if_absent(
        &self,
        product: &Product,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let inserted = insert_product(&mut tx, product, now_ms).await?;
        tx.commit().await.map_err(classify)?;
        Ok(inserted)
    }

    async fn place_orders(
        &self,
        sku: &str,
        requests: &[OrderRequest],
        now_ms: i64,
    ) -> Result<Vec<Decision>, StoreError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let Some(product) = Self::lock_product(&mut tx, sku).await? else {
            return Ok(vec![Decision::UnknownSku; requests.len()]);
        };
        let existing_keys = Self::existing_keys(&mut tx, requests, now_ms).await?;
        let bought = if product.limit_per_customer.is_some() {
            Self::units_bought(&mut tx, sku, requests).await?
        } else {
            HashMap::new()
        };
        let inputs = BatchInputs {
            product: &product,
            existing_keys,
            bought,
            now_ms,
        };
        let decisions = decide(inputs, requests, || uuid::Uuid::now_v7().to_string());

        let mut created = Vec::new();
        let mut answers = Vec::new();
        for (request, decision) in requests.iter().zip(&decisions) {
            if let Decision::Created { order, .. } = decision {
                created.push((request, order));
            }
            if let Some(answer) = decision.answer_to_store() {
                let order_id = match decision {
                    Decision::Created { order, .. } => Some(order.order_id.as_str()),
                    _ => None,
                };
                answers.push((request, answer, order_id));
            }
        }
        if answers.is_empty() {
            // Nothing to record (replays, closed sale): release the lock
            // without writing.
            tx.rollback().await.map_err(classify)?;
            return Ok(decisions);
        }
        if !created.is_empty() {
            Self::insert_orders(&mut tx, &created, now_ms).await?;
            let units: i64 = created.iter().map(|(_, order)| order.quantity).sum();
            sqlx::query("UPDATE products SET sold = sold + $2, updated_at = $3 WHERE sku = $1")
                .bind(sku)
                .bind(units)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        self.insert_answers(&mut tx, &answers, now_ms).await?;
        tx.commit().await.map_err(classify)?;
        Ok(decisions)
    }

    async fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT order_id, sku, customer, quantity, idempotency_key, created_at \
             FROM orders WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(|row| order_from_row(&row).map(|(_, order)| order))
            .transpose()
    }

    async fn orders_after(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<(i64, OrderRecord)>, StoreError> {
        let (created_at, order_id) = after.unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(
            "SELECT order_id, sku, customer, quantity, idempotency_key, created_at FROM orders \
             WHERE created_at > $1 OR (created_at = $1 AND order_id > $2) \
             ORDER BY created_at, order_id LIMIT $3",
        )
        .bind(created_at)
        .bind(order_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(order_from_row).collect()
    }

    async fn inventory(&self) -> Result<Vec<InventoryLine>, StoreError> {
        let rows = sqlx::query("SELECT sku, initial_stock, sold FROM products ORDER BY sku")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let initial: i64 = row.try_get(1).map_err(StoreError::Internal)?;
                let sold: i64 = row.try_get(2).map_err(StoreError::Internal)?;
                Ok(InventoryLine {
                    sku: get_string(row, 0)?,
                    initial,
                    sold,
                    remaining: (initial - sold).max(0),
                })
            })
            .collect()
    }

    async fn purge_expired_keys(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.max_connections,
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_product(
    tx: &mut Transaction<'static, Any>,
    product: &Product,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO products (sku, name, price_cents, initial_stock, sold, sale_starts_at, \
         sale_ends_at, limit_per_customer, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8) \
         ON CONFLICT (sku) DO NOTHING",
    )
    .bind(&product.sku)
    .bind(&product.name)
    .bind(product.price_cents)
    .bind(product.initial_stock)
    .bind(product.sale_starts_at)
    .bind(product.sale_ends_at)
    .bind(product.limit_per_customer)
    .bind(now_ms)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected() == 1)
}

/// `($1,$2),($3,$4)`: `rows` groups of `width` parameters numbered from `first`.
fn placeholders(first: usize, width: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(rows * width * 5);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ",(" });
        for column in 0..width {
            if column > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "${}", first + row * width + column);
        }
        sql.push(')');
    }
    sql
}

fn get_string(row: &AnyRow, index: usize) -> Result<String, StoreError> {
    row.try_get(index).map_err(StoreError::Internal)
}

fn product_from_row(row: &AnyRow) -> Result<Product, StoreError> {
    let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::Internal);
    let opt = |i: usize| {
        row.try_get::<Option<i64>, _>(i)
            .map_err(StoreError::Internal)
    };
    Ok(Product {
        sku: get_string(row, 0)?,
        name: get_string(row, 1)?,
        price_cents: int(2)?,
        initial_stock: int(3)?,
        sold: int(4)?,
        sale_starts_at: opt(5)?,
        sale_ends_at: opt(6)?,
        limit_per_customer: opt(7)?,
    })
}

fn order_from_row(row: &AnyRow) -> Result<(i64, OrderRecord), StoreError> {
    let created_at: i64 = row.try_get(5).map_err(StoreError::Internal)?;
    Ok((
        created_at,
        OrderRecord {
            order_id: get_string(row, 0)?,
            sku: get_string(row, 1)?,
            customer: get_string(row, 2)?,
            quantity: row.try_get(3).map_err(StoreError::Internal)?,
            idempotency_key: get_string(row, 4)?,
            created_at: rfc3339(created_at),
        },
    ))
}

/// Sorts a database error into the decision the caller must make.
pub(super) fn classify(err: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &err {
        E::PoolTimedOut
        | E::PoolClosed
        | E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::WorkerCrashed => StoreError::Unavailable(err),
        E::Database(db) => match db.code().as_deref() {
            // PostgreSQL: deadlock, serialization failure, lock timeout.
            Some("40P01" | "40001" | "55P03")
            // SQLite: BUSY, LOCKED and their extended codes.
            | Some("5" | "6" | "261" | "262" | "517") => StoreError::Contention(db.to_string()),
            // PostgreSQL shutting down or refusing connections for now.
            Some("57P01" | "57P02" | "57P03" | "08000" | "08001" | "08003" | "08006") => {
                StoreError::Unavailable(err)
            }
            _ => StoreError::Internal(err),
        },
        _ => StoreError::Internal(err),
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(placeholders(2, 2, 2), "($2,$3),($4,$5)");
        assert_eq!(placeholders(1, 3, 1), "($1,$2,$3)");
    }
}
