//! The demo flash sale `flashguard shop --demo` starts with: one item on sale
//! now and one whose sale opens in two minutes, so the countdown shows.

use crate::model::{now_ms, Product};
use crate::store::{Store, StoreError};

pub fn demo_products(now: i64) -> Vec<Product> {
    let day = 24 * 3600 * 1000;
    vec![
        Product {
            sku: "flash-sneaker".into(),
            name: "Limited-edition sneaker".into(),
            price_cents: 8_999,
            initial_stock: 100,
            sold: 0,
            sale_starts_at: Some(now - 1_000),
            sale_ends_at: Some(now + day),
            limit_per_customer: Some(2),
        },
        Product {
            sku: "flash-jacket".into(),
            name: "Storm jacket".into(),
            price_cents: 14_900,
            initial_stock: 50,
            sold: 0,
            sale_starts_at: Some(now + 2 * 60 * 1000),
            sale_ends_at: Some(now + day),
            limit_per_customer: Some(1),
        },
    ]
}

/// Adds the demo items that are not in the store yet; never touches one that is.
pub async fn seed(store: &dyn Store) -> Result<usize, StoreError> {
    let now = now_ms();
    let mut added = 0;
    for product in demo_products(now) {
        if store.insert_product_if_absent(&product, now).await? {
            added += 1;
        }
    }
    Ok(added)
}
