//! The SQL both stores run. SQLite and PostgreSQL agree on nearly everything
//! used here (`$N` parameters, upsert, `RETURNING`, row values), so one engine
//! serves both through sqlx's `Any` driver and the two cannot drift apart.
//! The one difference is deliberate: on PostgreSQL a batch's writes go in one
//! statement, because there every statement under the row lock is a network
//! round trip (see `write_batch`).

use std::collections::HashMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::{Any, AnyConnection, Row, Transaction};

use super::placement::{decide, BatchInputs, Decision, ExistingKey, Outcome, StoredAnswer};
use super::{Engine, PoolStats, Store, StoreError, Upsert};
use crate::model::{rfc3339, InventoryLine, Order, OrderRecord, OrderRequest, Product};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const PRODUCT_COLUMNS: &str = "sku, name, price_cents, initial_stock, sold, sale_starts_at, \
                               sale_ends_at, limit_per_customer";

/// The one implementation of [`Store`]; `engine` says which database it talks to.
#[derive(Debug)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
    idempotency_ttl_ms: i64,
    max_connections: u32,
    /// SQLite: a file locked while migrating, so shops that start together
    /// on one database file migrate one after another. sqlx serialises
    /// migrations on PostgreSQL (an advisory lock), not on SQLite, where two
    /// shops would both find a migration pending and the second would fail
    /// on what the first just created.
    migrate_lock: Option<std::path::PathBuf>,
}

impl SqlStore {
    pub(super) fn new(pool: AnyPool, engine: Engine, options: &super::StoreOptions) -> Self {
        SqlStore {
            pool,
            engine,
            idempotency_ttl_ms: options.idempotency_ttl.as_millis() as i64,
            max_connections: options.max_connections,
            migrate_lock: None,
        }
    }

    /// Migrations hold this file locked (see `migrate_lock`).
    pub(super) fn with_migrate_lock(self, path: std::path::PathBuf) -> Self {
        SqlStore {
            migrate_lock: Some(path),
            ..self
        }
    }

    /// Takes the product's row lock for the rest of the transaction (a write,
    /// which on SQLite also takes the database's write lock up front, so the
    /// transaction never has to upgrade a read lock and deadlock).
    async fn lock_product(
        tx: &mut Transaction<'_, Any>,
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
        conn: &mut AnyConnection,
        requests: &[OrderRequest],
        now_ms: i64,
    ) -> Result<HashMap<(String, String), ExistingKey>, StoreError> {
        // Only the primary key in the WHERE clause, and expiry filtered
        // here: with `expires_at > $1` in SQL, PostgreSQL's generic plan for
        // the prepared statement scans the expiry index, which holds every
        // live key, and a batch then costs time in proportion to the table.
        let sql = format!(
            "SELECT customer, idem_key, fingerprint, status_code, response_body, expires_at, \
             outcome, created_at FROM idempotency_keys WHERE (customer, idem_key) IN ({})",
            placeholders(1, 2, requests.len())
        );
        let mut query = sqlx::query(&sql);
        for request in requests {
            query = query.bind(&request.customer).bind(&request.idempotency_key);
        }
        let rows = query.fetch_all(conn).await.map_err(classify)?;
        let mut keys = HashMap::with_capacity(rows.len());
        for row in rows {
            let expires_at: i64 = row.try_get(5).map_err(StoreError::Internal)?;
            if expires_at <= now_ms {
                continue;
            }
            keys.insert(
                (get_string(&row, 0)?, get_string(&row, 1)?),
                ExistingKey {
                    fingerprint: get_string(&row, 2)?,
                    outcome: outcome_from_row(&row)?,
                },
            );
        }
        Ok(keys)
    }

    async fn units_bought(
        tx: &mut Transaction<'_, Any>,
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

    /// Decides and records one batch in one transaction. `keys` are the live
    /// answers of the batch's keys, or `None` to assume there are none; the
    /// result is `None` when that assumption failed and nothing was written.
    async fn try_place(
        &self,
        sku: &str,
        requests: &[OrderRequest],
        keys: Option<HashMap<(String, String), ExistingKey>>,
        now_ms: i64,
    ) -> Result<Option<Vec<Decision>>, StoreError> {
        let assumed_fresh = keys.is_none();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let Some(product) = Self::lock_product(&mut tx, sku).await? else {
            return Ok(Some(vec![Decision::UnknownSku; requests.len()]));
        };
        let bought = if product.limit_per_customer.is_some() {
            Self::units_bought(&mut tx, sku, requests).await?
        } else {
            HashMap::new()
        };
        let inputs = BatchInputs {
            product: &product,
            existing_keys: keys.unwrap_or_default(),
            bought,
            now_ms,
        };
        let decisions = decide(inputs, requests, || uuid::Uuid::now_v7().to_string());

        let mut created = Vec::new();
        let mut answers = Vec::new();
        for (request, decision) in requests.iter().zip(&decisions) {
            let Some(outcome) = decision.recorded().cloned() else {
                if assumed_fresh {
                    // An answer that is not stored (the sale is closed) would
                    // hide a stored one this key may have: look keys up.
                    tx.rollback().await.map_err(classify)?;
                    return Ok(None);
                }
                continue;
            };
            let order_id = match decision {
                Decision::Final(Outcome::Created { order }) => {
                    created.push((request, order));
                    Some(order.order_id.as_str())
                }
                _ => None,
            };
            answers.push((request, outcome, order_id));
        }
        if answers.is_empty() {
            // Nothing to record (replays, closed sale): release the lock
            // without writing.
            tx.rollback().await.map_err(classify)?;
            return Ok(Some(decisions));
        }
        if !self
            .write_batch(&mut tx, sku, &created, &answers, now_ms)
            .await?
        {
            tx.rollback().await.map_err(classify)?;
            return Ok(None);
        }
        tx.commit().await.map_err(classify)?;
        Ok(Some(decisions))
    }

    /// Records a batch's orders, units sold and answers. On PostgreSQL that
    /// is one statement (data-modifying CTEs), so the row lock is held for
    /// one round trip fewer than two; SQLite has no such CTEs but its round
    /// trips are function calls, so it runs the three statements in turn.
    ///
    /// A key that already has a live answer is not overwritten; the result
    /// is then `false` and the caller must roll back.
    async fn write_batch(
        &self,
        tx: &mut Transaction<'_, Any>,
        sku: &str,
        created: &[(&OrderRequest, &Order)],
        answers: &[AnswerRow<'_>],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let units: i64 = created.iter().map(|(_, order)| order.quantity).sum();
        let written = if self.engine == Engine::Postgres {
            let orders_from = 4;
            let answers_from = orders_from + ORDER_WIDTH * created.len();
            let mut sql = String::from("WITH ");
            if !created.is_empty() {
                let _ = write!(
                    sql,
                    "new_orders AS ({INSERT_ORDERS} {}), stock AS ({UPDATE_SOLD}), ",
                    placeholders(orders_from, ORDER_WIDTH, created.len())
                );
            }
            let _ = write!(
                sql,
                "answers AS ({INSERT_ANSWERS} {} {UPSERT_ANSWERS}) SELECT idem_key FROM answers",
                placeholders(answers_from, ANSWER_WIDTH, answers.len())
            );
            let query = sqlx::query(&sql).bind(sku).bind(units).bind(now_ms);
            let query = bind_orders(query, created, now_ms);
            let query = self.bind_answers(query, answers, now_ms);
            query.fetch_all(&mut **tx).await.map_err(classify)?.len()
        } else {
            if !created.is_empty() {
                let sql = format!(
                    "{INSERT_ORDERS} {}",
                    placeholders(1, ORDER_WIDTH, created.len())
                );
                bind_orders(sqlx::query(&sql), created, now_ms)
                    .execute(&mut **tx)
                    .await
                    .map_err(classify)?;
                sqlx::query(UPDATE_SOLD)
                    .bind(sku)
                    .bind(units)
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await
                    .map_err(classify)?;
            }
            let sql = format!(
                "{INSERT_ANSWERS} {} {UPSERT_ANSWERS}",
                placeholders(1, ANSWER_WIDTH, answers.len())
            );
            self.bind_answers(sqlx::query(&sql), answers, now_ms)
                .fetch_all(&mut **tx)
                .await
                .map_err(classify)?
                .len()
        };
        Ok(written == answers.len())
    }

    fn bind_answers<'q>(
        &self,
        mut query: AnyQuery<'q>,
        answers: &'q [AnswerRow<'q>],
        now_ms: i64,
    ) -> AnyQuery<'q> {
        for (request, outcome, order_id) in answers {
            // What the previous version replays from, rendered by the same
            // function as every live answer (see the migration).
            let answer = crate::error::outcome_answer(outcome);
            let recorded = serde_json::to_string(&Recorded {
                at: now_ms,
                outcome: outcome.clone(),
            })
            .expect("an outcome always serializes");
            query = query
                .bind(&request.customer)
                .bind(&request.idempotency_key)
                .bind(request.fingerprint())
                .bind(i64::from(answer.status.as_u16()))
                .bind(answer.body)
                .bind(order_id.map(str::to_string))
                .bind(now_ms)
                .bind(now_ms + self.idempotency_ttl_ms)
                .bind(recorded);
        }
        query
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;
/// An answer to record: the request, its outcome, and the order it created.
type AnswerRow<'a> = (&'a OrderRequest, Outcome, Option<&'a str>);

const ORDER_WIDTH: usize = 6;
const INSERT_ORDERS: &str =
    "INSERT INTO orders (order_id, sku, customer, quantity, idempotency_key, created_at) VALUES";
/// `$1` the SKU, `$2` the units sold, `$3` the time.
const UPDATE_SOLD: &str = "UPDATE products SET sold = sold + $2, updated_at = $3 WHERE sku = $1";
const ANSWER_WIDTH: usize = 9;
const INSERT_ANSWERS: &str = "INSERT INTO idempotency_keys \
     (customer, idem_key, fingerprint, status_code, response_body, order_id, created_at, \
     expires_at, outcome) VALUES";
/// Writes a key only where none is live: a fresh key, or one that expired.
const UPSERT_ANSWERS: &str = "ON CONFLICT (customer, idem_key) DO UPDATE SET \
     fingerprint = excluded.fingerprint, status_code = excluded.status_code, \
     response_body = excluded.response_body, order_id = excluded.order_id, \
     created_at = excluded.created_at, expires_at = excluded.expires_at, \
     outcome = excluded.outcome \
     WHERE idempotency_keys.expires_at <= excluded.created_at \
     RETURNING idem_key";

fn bind_orders<'q>(
    mut query: AnyQuery<'q>,
    created: &'q [(&'q OrderRequest, &'q Order)],
    now_ms: i64,
) -> AnyQuery<'q> {
    for (request, order) in created {
        query = query
            .bind(&order.order_id)
            .bind(&order.sku)
            .bind(&order.customer)
            .bind(order.quantity)
            .bind(&request.idempotency_key)
            .bind(now_ms);
    }
    query
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> Engine {
        self.engine
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let _locked = match &self.migrate_lock {
            Some(path) => Some(lock_file(path).await?),
            None => None,
        };
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
        // Most batches in a sale carry only fresh keys, so the first attempt
        // does not look keys up at all: the answers' upsert refuses any key
        // that is live, and then the batch is rolled back and decided again
        // with its keys read.
        if let Some(decisions) = self.try_place(sku, requests, None, now_ms).await? {
            return Ok(decisions);
        }
        // Reading keys before the transaction keeps the row lock short, and
        // is safe: a key answered meanwhile makes the upsert refuse again.
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        let keys = Self::existing_keys(&mut conn, requests, now_ms).await?;
        drop(conn);
        self.try_place(sku, requests, Some(keys), now_ms)
            .await?
            .ok_or_else(|| {
                StoreError::Contention(
                    "an idempotency key was answered by another process meanwhile".into(),
                )
            })
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

/// Takes the lock on `path` (created if missing), waiting for another
/// process that holds it; unlocked when the file is dropped.
async fn lock_file(path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|err| StoreError::Contention(format!("{}: {err}", path.display())))?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(StoreError::Contention(format!("{}: {err}", path.display())))
            }
        }
    }
}

async fn insert_product(
    tx: &mut Transaction<'_, Any>,
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

/// An outcome as the `outcome` column holds it: with the time it was
/// recorded, which must be its row's `created_at`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Recorded {
    at: i64,
    #[serde(flatten)]
    outcome: Outcome,
}

/// A key's outcome: the recorded one, or, for a row the previous version
/// wrote (no outcome, or one older than the row), its answer as sent.
fn outcome_from_row(row: &AnyRow) -> Result<Outcome, StoreError> {
    let created_at: i64 = row.try_get(7).map_err(StoreError::Internal)?;
    let recorded: Option<String> = row.try_get(6).map_err(StoreError::Internal)?;
    let current = recorded
        .and_then(|text| serde_json::from_str::<Recorded>(&text).ok())
        .filter(|recorded| recorded.at == created_at);
    if let Some(recorded) = current {
        return Ok(recorded.outcome);
    }
    let status: i64 = row.try_get(3).map_err(StoreError::Internal)?;
    Ok(Outcome::Earlier(StoredAnswer {
        status: status as u16,
        body: get_string(row, 4)?,
    }))
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
        // Every connection is in use: the store answers, the shop is busy.
        // (Unavailable would turn /readyz 503 and take a busy shop for a
        // dead one.)
        E::PoolTimedOut => StoreError::Contention(err.to_string()),
        E::PoolClosed | E::Io(_) | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed => {
            StoreError::Unavailable(err)
        }
        E::Database(db) => match db.code().as_deref() {
            // PostgreSQL: deadlock, serialization failure, lock timeout.
            Some("40P01" | "40001" | "55P03")
            // SQLite: BUSY, LOCKED and their extended codes.
            | Some("5" | "6" | "261" | "262" | "517") => StoreError::Contention(db.to_string()),
            // PostgreSQL shutting down or refusing connections for now.
            Some("57P01" | "57P02" | "57P03" | "08000" | "08001" | "08003" | "08006") => {
                StoreError::Unavailable(err)
            }
            // The schema is not there yet: migrations are still running
            // (a request that arrives in a shop's first moments).
            Some("42P01") => StoreError::Unavailable(err),
            Some("1") if db.message().contains("no such table") => StoreError::Unavailable(err),
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
