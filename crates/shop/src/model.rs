//! The shop's nouns as the API shows them, and the validation of what
//! customers and admins send.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Longest SKU accepted; SKUs appear in URLs and metrics labels.
pub const MAX_SKU_LEN: usize = 64;
/// Longest customer id accepted.
pub const MAX_CUSTOMER_LEN: usize = 128;
/// Longest `Idempotency-Key` accepted (Stripe's limit).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest product name accepted.
pub const MAX_NAME_LEN: usize = 200;
/// Largest stock an admin may set; keeps every sum far from overflow.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Largest price an admin may set, in cents.
pub const MAX_PRICE_CENTS: i64 = 100_000_000_000;

/// A product with its flash-sale settings, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub initial_stock: i64,
    pub sold: i64,
    pub sale_starts_at: Option<i64>,
    pub sale_ends_at: Option<i64>,
    pub limit_per_customer: Option<i64>,
}

/// Where a product's sale stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    Upcoming,
    Open,
    Ended,
}

impl Product {
    pub fn remaining(&self) -> i64 {
        (self.initial_stock - self.sold).max(0)
    }

    pub fn sale_state(&self, now_ms: i64) -> SaleState {
        match (self.sale_starts_at, self.sale_ends_at) {
            (Some(start), _) if now_ms < start => SaleState::Upcoming,
            (_, Some(end)) if now_ms >= end => SaleState::Ended,
            _ => SaleState::Open,
        }
    }

    pub fn view(&self, now_ms: i64) -> ProductView {
        ProductView {
            sku: self.sku.clone(),
            name: self.name.clone(),
            price_cents: self.price_cents,
            stock: self.initial_stock,
            remaining: self.remaining(),
            sale_starts_at: self.sale_starts_at.map(rfc3339),
            sale_ends_at: self.sale_ends_at.map(rfc3339),
            limit_per_customer: self.limit_per_customer,
            sale_state: self.sale_state(now_ms),
        }
    }
}

/// A product as `GET /api/products` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProductView {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    /// Units put on sale in all.
    pub stock: i64,
    pub remaining: i64,
    pub sale_starts_at: Option<String>,
    pub sale_ends_at: Option<String>,
    pub limit_per_customer: Option<i64>,
    pub sale_state: SaleState,
}

/// `PUT /admin/products/{sku}` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
    #[serde(default)]
    pub sale_starts_at: Option<String>,
    #[serde(default)]
    pub sale_ends_at: Option<String>,
    #[serde(default)]
    pub limit_per_customer: Option<i64>,
}

/// A field that failed validation: its name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub problem: String,
}

impl InvalidField {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        InvalidField {
            field,
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for InvalidField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl ProductInput {
    /// Checks every field and turns the input into the product to store.
    pub fn validate(self, sku: &str) -> Result<Product, InvalidField> {
        validate_sku(sku)?;
        let name = self.name.trim().to_string();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_LEN
            || name.chars().any(char::is_control)
        {
            return Err(InvalidField::new(
                "name",
                format!("must be 1 to {MAX_NAME_LEN} printable characters"),
            ));
        }
        if !(0..=MAX_PRICE_CENTS).contains(&self.price_cents) {
            return Err(InvalidField::new(
                "price_cents",
                format!("must be between 0 and {MAX_PRICE_CENTS}"),
            ));
        }
        if !(0..=MAX_STOCK).contains(&self.stock) {
            return Err(InvalidField::new(
                "stock",
                format!("must be between 0 and {MAX_STOCK}"),
            ));
        }
        let starts = parse_time("sale_starts_at", self.sale_starts_at.as_deref())?;
        let ends = parse_time("sale_ends_at", self.sale_ends_at.as_deref())?;
        if let (Some(start), Some(end)) = (starts, ends) {
            if end <= start {
                return Err(InvalidField::new(
                    "sale_ends_at",
                    "must be later than sale_starts_at",
                ));
            }
        }
        if let Some(limit) = self.limit_per_customer {
            if !(1..=MAX_STOCK).contains(&limit) {
                return Err(InvalidField::new(
                    "limit_per_customer",
                    format!("must be between 1 and {MAX_STOCK}"),
                ));
            }
        }
        Ok(Product {
            sku: sku.to_string(),
            name,
            price_cents: self.price_cents,
            initial_stock: self.stock,
            sold: 0,
            sale_starts_at: starts,
            sale_ends_at: ends,
            limit_per_customer: self.limit_per_customer,
        })
    }
}

fn parse_time(field: &'static str, text: Option<&str>) -> Result<Option<i64>, InvalidField> {
    let Some(text) = text else { return Ok(None) };
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| InvalidField::new(field, "must be an RFC 3339 time"))?;
    Ok(Some((at.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// `POST /api/orders` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    pub sku: String,
    pub quantity: i64,
    pub customer: String,
}

/// A validated order request, ready for the order desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub sku: String,
    pub quantity: i64,
    pub customer: String,
    pub idempotency_key: String,
}

impl OrderRequest {
    /// What must match for a repeated key to count as the same request.
    pub fn fingerprint(&self) -> String {
        format!("{}\n{}", self.sku, self.quantity)
    }
}

impl OrderInput {
    pub fn validate(
        self,
        idempotency_key: String,
        max_quantity: i64,
    ) -> Result<OrderRequest, InvalidField> {
        validate_sku(&self.sku)?;
        validate_customer(&self.customer)?;
        if !(1..=max_quantity).contains(&self.quantity) {
            return Err(InvalidField::new(
                "quantity",
                format!("must be between 1 and {max_quantity}"),
            ));
        }
        Ok(OrderRequest {
            sku: self.sku,
            quantity: self.quantity,
            customer: self.customer,
            idempotency_key,
        })
    }
}

pub fn validate_sku(sku: &str) -> Result<(), InvalidField> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if sku.is_empty() || sku.len() > MAX_SKU_LEN || !sku.chars().all(allowed) {
        return Err(InvalidField::new(
            "sku",
            format!("must be 1 to {MAX_SKU_LEN} of A-Z a-z 0-9 - _ ."),
        ));
    }
    Ok(())
}

pub fn validate_customer(customer: &str) -> Result<(), InvalidField> {
    if customer.trim().is_empty()
        || customer.chars().count() > MAX_CUSTOMER_LEN
        || customer.chars().any(char::is_control)
    {
        return Err(InvalidField::new(
            "customer",
            format!("must be 1 to {MAX_CUSTOMER_LEN} printable characters"),
        ));
    }
    Ok(())
}

/// Keys are opaque to the shop but must be printable ASCII of bounded
/// length, so they can be logged and stored safely.
pub fn validate_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
        ));
    }
    if !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("Idempotency-Key must be printable ASCII without spaces".to_string());
    }
    Ok(())
}

/// An order as a customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub sku: String,
    pub quantity: i64,
    pub customer: String,
    pub created_at: String,
}

/// An order as the admin export shows it: with its idempotency key, which
/// the drill's oracle needs to check for duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRecord {
    pub order_id: String,
    pub sku: String,
    pub quantity: i64,
    pub customer: String,
    pub idempotency_key: String,
    pub created_at: String,
}

/// One line of `GET /admin/inventory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryLine {
    pub sku: String,
    pub initial: i64,
    pub sold: i64,
    pub remaining: i64,
}

/// RFC 3339 with millisecond precision, in UTC.
pub fn rfc3339(unix_ms: i64) -> String {
    flashguard_telemetry::rfc3339(unix_ms)
}

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProductInput {
        ProductInput {
            name: "Lamp".into(),
            price_cents: 1999,
            stock: 10,
            sale_starts_at: Some("2026-11-24T10:00:00Z".into()),
            sale_ends_at: Some("2026-11-24T12:00:00Z".into()),
            limit_per_customer: Some(2),
        }
    }

    #[test]
    fn sale_window_decides_state() {
        let product = input().validate("lamp").expect("valid");
        let start = product.sale_starts_at.expect("set");
        let end = product.sale_ends_at.expect("set");
        assert_eq!(product.sale_state(start - 1), SaleState::Upcoming);
        assert_eq!(product.sale_state(start), SaleState::Open);
        assert_eq!(product.sale_state(end), SaleState::Ended);
    }

    #[test]
    fn a_window_that_ends_before_it_starts_is_refused() {
        let mut bad = input();
        bad.sale_ends_at = Some("2026-11-24T09:00:00Z".into());
        assert_eq!(bad.validate("lamp").unwrap_err().field, "sale_ends_at");
    }

    #[test]
    fn fingerprint_ignores_customer_and_key() {
        let a = OrderRequest {
            sku: "a".into(),
            quantity: 1,
            customer: "c".into(),
            idempotency_key: "k".into(),
        };
        let mut b = a.clone();
        b.idempotency_key = "other".into();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.quantity = 2;
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn keys_must_be_printable_and_bounded() {
        assert!(validate_idempotency_key("abc-123").is_ok());
        assert!(validate_idempotency_key("").is_err());
        assert!(validate_idempotency_key("has space").is_err());
        assert!(validate_idempotency_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }
}
