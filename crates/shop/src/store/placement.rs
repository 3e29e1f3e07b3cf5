//! The decision at the heart of the shop: given the locked state of one
//! product and a batch of order requests for it, which orders are created and
//! what does every requester hear? Pure, so the rules are tested without a
//! database; the SQL around it only loads the inputs and writes the result.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::{rfc3339, Order, OrderRequest, Product, SaleState};

/// An answer as the version before outcomes were recorded stored it: the
/// status and body it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

/// A final answer to a keyed order request, recorded with its key in the
/// transaction that decided it, so a retry hears the same thing. Domain
/// facts only: the HTTP layer renders them (`error::outcome_answer`), for
/// the first answer and every replay alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Created {
        order: Order,
    },
    /// Not enough stock left for this order.
    SoldOut {
        sku: String,
        remaining: i64,
    },
    /// The customer would pass the per-customer limit.
    LimitExceeded {
        limit: i64,
        already: i64,
    },
    /// Recorded by the version before outcomes were (it kept the answer as
    /// sent); replayed as it was until it expires.
    #[serde(skip)]
    Earlier(StoredAnswer),
}

impl Outcome {
    /// The order this outcome created, if it created one.
    pub fn order_id(&self) -> Option<String> {
        match self {
            Outcome::Created { order } => Some(order.order_id.clone()),
            Outcome::Earlier(answer) if answer.status == 201 => {
                serde_json::from_str::<Order>(&answer.body)
                    .ok()
                    .map(|order| order.order_id)
            }
            _ => None,
        }
    }
}

/// What happened to one request of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Created, sold out or over the limit: final, recorded with the key so
    /// retries hear the same.
    Final(Outcome),
    /// Outside the sale window. Not recorded: the same key may succeed once
    /// the sale opens.
    SaleNotOpen {
        state: SaleState,
        starts_at: Option<i64>,
    },
    /// No such product. Not recorded: it may be created later.
    UnknownSku,
    /// The key was answered before with the same request: the first outcome.
    Replay(Outcome),
    /// The key was used before for a different request.
    KeyReused,
}

impl Decision {
    /// The outcome to record with the key, for decisions that are final.
    pub fn recorded(&self) -> Option<&Outcome> {
        match self {
            Decision::Final(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Final(Outcome::Created { .. }) => "created",
            Decision::Final(Outcome::SoldOut { .. }) => "sold_out",
            Decision::Final(Outcome::LimitExceeded { .. }) => "limit_exceeded",
            Decision::Final(Outcome::Earlier(_)) => "earlier",
            Decision::SaleNotOpen { .. } => "sale_not_open",
            Decision::UnknownSku => "unknown_sku",
            Decision::Replay(_) => "replayed",
            Decision::KeyReused => "idempotency_key_reused",
        }
    }
}

/// An idempotency key already answered, in the store.
#[derive(Debug, Clone)]
pub(super) struct ExistingKey {
    pub fingerprint: String,
    pub outcome: Outcome,
}

/// Everything the decision needs. The product and the units bought are
/// loaded under the product's row lock, so they cannot change underneath
/// it; keys may be read before, because writing the answers refuses any key
/// that became live meanwhile.
pub(super) struct BatchInputs<'a> {
    pub product: &'a Product,
    /// Live idempotency answers, by (customer, key).
    pub existing_keys: HashMap<(String, String), ExistingKey>,
    /// Units each customer already bought of this product.
    pub bought: HashMap<String, i64>,
    pub now_ms: i64,
}

/// Decides every request in arrival order. `new_order_id` names orders so
/// tests can predict them.
pub(super) fn decide(
    inputs: BatchInputs<'_>,
    requests: &[OrderRequest],
    mut new_order_id: impl FnMut() -> String,
) -> Vec<Decision> {
    let BatchInputs {
        product,
        mut existing_keys,
        mut bought,
        now_ms,
    } = inputs;
    let mut remaining = product.remaining();
    let state = product.sale_state(now_ms);
    let mut decisions = Vec::with_capacity(requests.len());
    for request in requests {
        let key = (request.customer.clone(), request.idempotency_key.clone());
        if let Some(existing) = existing_keys.get(&key) {
            decisions.push(if existing.fingerprint == request.fingerprint() {
                Decision::Replay(existing.outcome.clone())
            } else {
                Decision::KeyReused
            });
            continue;
        }
        if state != SaleState::Open {
            decisions.push(Decision::SaleNotOpen {
                state,
                starts_at: product.sale_starts_at,
            });
            continue;
        }
        let already = bought.get(&request.customer).copied().unwrap_or(0);
        let decision = match product.limit_per_customer {
            Some(limit) if already + request.quantity > limit => {
                Decision::Final(Outcome::LimitExceeded { limit, already })
            }
            _ if request.quantity > remaining => Decision::Final(Outcome::SoldOut {
                sku: product.sku.clone(),
                remaining,
            }),
            _ => {
                remaining -= request.quantity;
                *bought.entry(request.customer.clone()).or_insert(0) += request.quantity;
                let order = Order {
                    order_id: new_order_id(),
                    sku: product.sku.clone(),
                    quantity: request.quantity,
                    customer: request.customer.clone(),
                    created_at: rfc3339(now_ms),
                };
                Decision::Final(Outcome::Created { order })
            }
        };
        // A second request with the same key in this very batch must see
        // this answer, exactly as if it came a moment later.
        if let Some(outcome) = decision.recorded() {
            existing_keys.insert(
                key,
                ExistingKey {
                    fingerprint: request.fingerprint(),
                    outcome: outcome.clone(),
                },
            );
        }
        decisions.push(decision);
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(stock: i64, limit: Option<i64>) -> Product {
        Product {
            sku: "hot".into(),
            name: "Hot item".into(),
            price_cents: 100,
            initial_stock: stock,
            sold: 0,
            sale_starts_at: Some(1_000),
            sale_ends_at: Some(2_000),
            limit_per_customer: limit,
        }
    }

    fn request(customer: &str, key: &str, quantity: i64) -> OrderRequest {
        OrderRequest {
            sku: "hot".into(),
            quantity,
            customer: customer.into(),
            idempotency_key: key.into(),
        }
    }

    fn run(product: &Product, requests: &[OrderRequest], now_ms: i64) -> Vec<Decision> {
        let mut n = 0;
        let inputs = BatchInputs {
            product,
            existing_keys: HashMap::new(),
            bought: HashMap::new(),
            now_ms,
        };
        decide(inputs, requests, || {
            n += 1;
            format!("o{n}")
        })
    }

    #[test]
    fn never_sells_more_than_remains() {
        let p = product(3, None);
        let requests: Vec<_> = (0..10)
            .map(|i| request(&format!("c{i}"), &format!("k{i}"), 1))
            .collect();
        let decisions = run(&p, &requests, 1_500);
        let created = decisions
            .iter()
            .filter(|d| matches!(d, Decision::Final(Outcome::Created { .. })))
            .count();
        assert_eq!(created, 3);
        assert!(matches!(
            decisions[3],
            Decision::Final(Outcome::SoldOut { .. })
        ));
    }

    #[test]
    fn a_big_order_fails_but_a_smaller_one_after_it_fits() {
        let p = product(2, None);
        let decisions = run(&p, &[request("a", "1", 3), request("b", "2", 2)], 1_500);
        assert_eq!(decisions[0].label(), "sold_out");
        assert_eq!(decisions[1].label(), "created");
    }

    #[test]
    fn per_customer_limit_counts_units_in_the_same_batch() {
        let p = product(100, Some(2));
        let decisions = run(
            &p,
            &[
                request("a", "1", 1),
                request("a", "2", 1),
                request("a", "3", 1),
            ],
            1_500,
        );
        let labels: Vec<_> = decisions.iter().map(Decision::label).collect();
        assert_eq!(labels, ["created", "created", "limit_exceeded"]);
    }

    #[test]
    fn outside_the_window_nothing_is_sold_or_stored() {
        let p = product(10, None);
        for now in [999, 2_000] {
            let decisions = run(&p, &[request("a", "1", 1)], now);
            assert!(matches!(decisions[0], Decision::SaleNotOpen { .. }));
            assert!(decisions[0].recorded().is_none());
        }
    }

    #[test]
    fn the_same_key_twice_in_one_batch_creates_one_order() {
        let p = product(10, None);
        let decisions = run(
            &p,
            &[
                request("a", "k", 1),
                request("a", "k", 1),
                request("a", "k", 2),
            ],
            1_500,
        );
        let Some(first) = decisions[0].recorded().cloned() else {
            panic!("first must create: {decisions:?}")
        };
        assert!(matches!(first, Outcome::Created { .. }));
        assert_eq!(decisions[1], Decision::Replay(first));
        assert_eq!(decisions[2], Decision::KeyReused);
    }

    #[test]
    fn keys_are_scoped_to_the_customer() {
        let p = product(10, None);
        let decisions = run(&p, &[request("a", "k", 1), request("b", "k", 1)], 1_500);
        assert_eq!(decisions[0].label(), "created");
        assert_eq!(decisions[1].label(), "created");
    }

    #[test]
    fn a_stored_answer_is_replayed_only_for_the_same_request() {
        let p = product(10, None);
        let stored = Outcome::SoldOut {
            sku: "hot".into(),
            remaining: 0,
        };
        let mut existing_keys = HashMap::new();
        existing_keys.insert(
            ("a".to_string(), "k".to_string()),
            ExistingKey {
                fingerprint: request("a", "k", 1).fingerprint(),
                outcome: stored.clone(),
            },
        );
        let inputs = BatchInputs {
            product: &p,
            existing_keys,
            bought: HashMap::new(),
            now_ms: 1_500,
        };
        let decisions = decide(
            inputs,
            &[request("a", "k", 1), request("a", "k", 5)],
            || "x".into(),
        );
        assert_eq!(
            decisions,
            vec![Decision::Replay(stored), Decision::KeyReused]
        );
    }
}
