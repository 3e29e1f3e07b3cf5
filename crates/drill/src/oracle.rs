//! The oracle: after the run, the store's own export is checked against
//! what customers were told. Pure functions over plain data, so each
//! invariant is tested against deliberately broken fixtures.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// An order a customer saw acknowledged (201).
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub order_id: String,
    pub customer: String,
    pub idempotency_key: String,
}

/// A line of the admin export.
#[derive(Debug, Clone, Deserialize)]
pub struct Exported {
    pub order_id: String,
    pub sku: String,
    pub customer: String,
    pub quantity: i64,
    pub idempotency_key: String,
}

/// A line of the admin inventory.
#[derive(Debug, Clone, Deserialize)]
pub struct Stock {
    pub sku: String,
    pub initial: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Invariants {
    /// Units sold beyond stock, over all items.
    pub oversold_units: i64,
    /// Acknowledged orders missing from the store.
    pub lost_orders: usize,
    /// Idempotency keys with more than one order.
    pub duplicate_keys: usize,
    /// Customers a waiting room let in after someone who arrived more
    /// than a second later (or, in a lottery, out of the published draw's
    /// order), on the gateway's own ticket stamps.
    pub fairness_overtakes: u64,
    /// Orders accepted from customers whose ticket said they were still
    /// in line.
    pub bypassed_orders: u64,
    /// Customers who neither ordered, nor were told sold out (or refused
    /// by design), nor gave up while shown a place in line: they gave up
    /// on errors.
    pub unanswered_customers: u64,
}

impl Invariants {
    pub fn hold(&self) -> bool {
        *self == Invariants::default()
    }
}

pub fn check(acknowledged: &[Acknowledged], exported: &[Exported], stock: &[Stock]) -> Invariants {
    let mut units: HashMap<&str, i64> = HashMap::new();
    let mut orders_per_key: HashMap<(&str, &str), usize> = HashMap::new();
    let mut ids = HashSet::new();
    for order in exported {
        *units.entry(&order.sku).or_default() += order.quantity;
        *orders_per_key
            .entry((&order.customer, &order.idempotency_key))
            .or_default() += 1;
        ids.insert(order.order_id.as_str());
    }
    let oversold_units = stock
        .iter()
        .map(|s| (units.get(s.sku.as_str()).copied().unwrap_or(0) - s.initial).max(0))
        .sum();
    let lost_orders = acknowledged
        .iter()
        .filter(|a| !ids.contains(a.order_id.as_str()))
        .count();
    let duplicate_keys = orders_per_key.values().filter(|n| **n > 1).count();
    Invariants {
        oversold_units,
        lost_orders,
        duplicate_keys,
        ..Invariants::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, key: &str, quantity: i64) -> Exported {
        Exported {
            order_id: id.into(),
            sku: "hot".into(),
            customer: "c".into(),
            quantity,
            idempotency_key: key.into(),
        }
    }

    fn ack(id: &str, key: &str) -> Acknowledged {
        Acknowledged {
            order_id: id.into(),
            customer: "c".into(),
            idempotency_key: key.into(),
        }
    }

    const STOCK: [(&str, i64); 1] = [("hot", 3)];

    fn stock() -> Vec<Stock> {
        STOCK
            .iter()
            .map(|(sku, initial)| Stock {
                sku: sku.to_string(),
                initial: *initial,
            })
            .collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let exported = [order("1", "a", 2), order("2", "b", 1)];
        let result = check(&[ack("1", "a"), ack("2", "b")], &exported, &stock());
        assert!(result.hold(), "{result:?}");
    }

    #[test]
    fn an_oversold_item_is_reported() {
        let exported = [order("1", "a", 2), order("2", "b", 2)];
        assert_eq!(check(&[], &exported, &stock()).oversold_units, 1);
    }

    #[test]
    fn a_missing_acknowledged_order_is_reported() {
        let exported = [order("1", "a", 1)];
        let result = check(&[ack("1", "a"), ack("9", "z")], &exported, &stock());
        assert_eq!(result.lost_orders, 1);
    }

    #[test]
    fn a_duplicated_key_is_reported() {
        let exported = [order("1", "a", 1), order("2", "a", 1)];
        assert_eq!(check(&[], &exported, &stock()).duplicate_keys, 1);
    }
}
