//! Orders for one item go to one shop.
//!
//! Each shop batches the orders it holds into one transaction per item
//! (group commit), but only within its own process: three shops each form
//! their own smaller batches and fight over the item's row (PostgreSQL) or
//! the database file (SQLite). Measured through the gateway, 64 customers
//! ordering one item: one shop 9.8k orders/s with batches of 31 orders,
//! three shops 6.9k/s with batches of 11 on PostgreSQL, 5.3k/s with
//! batches of 6 and a p99 of 1.2 s on SQLite (`bench/scaleout.py`).
//!
//! So an order goes to its item's **owner**: of the primaries that are up
//! and not yet tried, the one with the highest rendezvous score for
//! (SKU, shop name), so that every gateway picks the same one without
//! talking to the others. When it waits, it waits for the owner's slot.
//!
//! An item's owner changes only when its shop fails, or between sales:
//! the gateway remembers each item's owner (`Owners`, bounded) and keeps
//! it while it is up, even when a shop that ranks higher comes back or
//! joins. Moving an item mid-sale would split its orders between the old
//! owner's last batches and the new owner's first ones, and hand the
//! hottest item to a shop that is cold (slow start exists for that). A
//! failed owner passes the item to the next shop in the item's ranking at
//! once (the request that found it dead goes there too). An item that
//! had no order for `FORGET_AFTER` is forgotten: the next sale starts
//! from the ranking again, spreading items over every shop there is then.
//!
//! Routing is only a preference: stock stays in the
//! database, which refuses to oversell whatever shop an order reaches, so
//! a stale or wrong owner costs speed, never correctness. Browsing and
//! every other request is balanced over all shops as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use super::body::RequestBody;
use crate::backend::{Backend, State};
use crate::config::Pool;
use crate::http1::request::RequestHead;

/// The item an order is for: the JSON body's `sku` on `POST /api/orders`
/// (the body is buffered for retries), or the path's on the storefront's
/// `POST /products/{sku}/buy`. None for everything else.
pub(super) fn sku_of(request: &RequestHead, body: &RequestBody) -> Option<Vec<u8>> {
    if request.method != Method::POST {
        return None;
    }
    let path = request.path();
    if path == "/api/orders" {
        #[derive(serde::Deserialize)]
        struct Order<'a> {
            #[serde(borrow)]
            sku: std::borrow::Cow<'a, str>,
        }
        let bytes = body.buffered()?;
        let order: Order<'_> = serde_json::from_slice(bytes).ok()?;
        return Some(order.sku.as_bytes().to_vec());
    }
    let sku = path.strip_prefix("/products/")?.strip_suffix("/buy")?;
    (!sku.is_empty() && !sku.contains('/')).then(|| sku.as_bytes().to_vec())
}

/// An item without orders for this long is between sales: its owner is
/// forgotten, and the ranking decides again.
const FORGET_AFTER: Duration = Duration::from_secs(300);
/// Items remembered at most; beyond, idle ones are forgotten first, and
/// if none is idle a new item is owned by its ranking alone (a client
/// inventing SKUs cannot grow the table).
const MOST_ITEMS: usize = 10_000;

/// Each item's owner, kept while it is up (see the module's comment).
#[derive(Debug, Default)]
pub(crate) struct Owners {
    items: Mutex<HashMap<Vec<u8>, Owned>>,
}

#[derive(Debug)]
struct Owned {
    shop: Arc<str>,
    last_order: Instant,
}

impl Owners {
    /// The owner of `sku` among `list`'s primaries that are up and not in
    /// `tried`: the one remembered if it still qualifies, else the best
    /// ranked, remembered from now on.
    pub(super) fn owner(
        &self,
        list: &[Arc<Backend>],
        sku: &[u8],
        tried: &[usize],
    ) -> Option<usize> {
        let now = Instant::now();
        let serves = |i: usize| {
            !tried.contains(&i)
                && list[i].spec.pool == Pool::Primary
                && list[i].state(now) == State::Up
        };
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(owned) = items.get_mut(sku) {
            let fresh = now.saturating_duration_since(owned.last_order) < FORGET_AFTER;
            let kept = (0..list.len()).find(|&i| *list[i].spec.name == *owned.shop);
            if let Some(i) = kept.filter(|&i| fresh && serves(i)) {
                owned.last_order = now;
                return Some(i);
            }
        }
        let best = (0..list.len())
            .filter(|&i| serves(i))
            .max_by_key(|&i| score(sku, list[i].spec.name.as_bytes()))?;
        if items.len() >= MOST_ITEMS && !items.contains_key(sku) {
            items.retain(|_, owned| now.saturating_duration_since(owned.last_order) < FORGET_AFTER);
        }
        if items.len() < MOST_ITEMS || items.contains_key(sku) {
            let shop = Arc::clone(&list[best].label);
            items.insert(
                sku.to_vec(),
                Owned {
                    shop,
                    last_order: now,
                },
            );
        }
        Some(best)
    }
}

/// Every backend but `owner`: what a try for the owner keeps out of reach.
pub(super) fn all_but(len: usize, owner: usize) -> Vec<usize> {
    (0..len).filter(|&i| i != owner).collect()
}

/// The rendezvous score of (item, shop): FNV-1a over both, with a
/// separator so ("ab", "c") and ("a", "bc") differ, then a finalizer that
/// spreads FNV's weak low bits. Fixed here, not a std hasher, so every
/// gateway of every build agrees on the owners.
fn score(sku: &[u8], shop: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for &byte in sku.iter().chain(&[0xff]).chain(shop) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // splitmix64's finalizer.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::score;

    fn owner_of(sku: &str, shops: &[&str]) -> String {
        shops
            .iter()
            .max_by_key(|shop| score(sku.as_bytes(), shop.as_bytes()))
            .unwrap()
            .to_string()
    }

    #[test]
    fn items_spread_evenly_over_the_shops() {
        let shops = ["shop-1", "shop-2", "shop-3"];
        let mut owned = [0u32; 3];
        for n in 0..30_000 {
            let owner = owner_of(&format!("sku-{n}"), &shops);
            owned[shops.iter().position(|s| *s == owner).unwrap()] += 1;
        }
        for count in owned {
            assert!((9_000..11_000).contains(&count), "{owned:?}");
        }
    }

    #[test]
    fn a_shop_leaving_moves_only_its_own_items() {
        let three = ["shop-1", "shop-2", "shop-3"];
        let two = ["shop-1", "shop-3"];
        let four = ["shop-1", "shop-2", "shop-3", "shop-4"];
        for n in 0..10_000 {
            let sku = format!("sku-{n}");
            let before = owner_of(&sku, &three);
            let after = owner_of(&sku, &two);
            if before != "shop-2" {
                assert_eq!(before, after, "{sku} moved though its shop stayed");
            }
            // A shop joining takes items only for itself.
            let grown = owner_of(&sku, &four);
            assert!(
                grown == before || grown == "shop-4",
                "{sku}: {before} → {grown}"
            );
        }
    }

    #[test]
    fn the_separator_keeps_item_and_shop_apart() {
        assert_ne!(score(b"ab", b"c"), score(b"a", b"bc"));
    }
}
