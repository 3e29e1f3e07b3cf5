//! The decision at the heart of the shop: given the locked state of one
//! product and a batch of order requests for it, which orders are created and
//! what does every requester hear? Pure, so the rules are tested without a
//! database; the SQL around it only loads the inputs and writes the result.

use std::collections::HashMap;

use crate::model::{rfc3339, Order, OrderRequest, Product, SaleState};

/// The answer a keyed request got, kept so a retry hears the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

/// What happened to one request of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new order; `answer` is the 201 body, stored with the key.
    Created { order: Order, answer: StoredAnswer },
    /// Not enough stock left; stored, so retries hear the same.
    SoldOut { answer: StoredAnswer },
    /// The customer would pass the per-customer limit; stored.
    LimitExceeded { answer: StoredAnswer },
    /// Outside the sale window. Not stored: the same key may succeed once
    /// the sale opens.
    SaleNotOpen {
        state: SaleState,
        starts_at: Option<i64>,
    },
    /// No such product. Not stored: it may be created later.
    UnknownSku,
    /// The key was answered before with the same request: the first answer.
    Replay(StoredAnswer),
    /// The key was used before for a different request.
    KeyReused,
}

impl Decision {
    /// The answer to store with the key, for decisions that are final.
    pub fn answer_to_store(&self) -> Option<&StoredAnswer> {
        match self {
            Decision::Created { answer, .. }
            | Decision::SoldOut { answer }
            | Decision::LimitExceeded { answer } => Some(answer),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Created { .. } => "created",
            Decision::SoldOut { .. } => "sold_out",
            Decision::LimitExceeded { .. } => "limit_exceeded",
            Decision::SaleNotOpen { .. } => "sale_not_open",
            Decision::UnknownSku => "unknown_sku",
            Decision::Replay(_) => "replayed",
            Decision::KeyReused => "idempotency_key_reused",
        }
    }
}

/// An idempotency answer already in the store.
#[derive(Debug, Clone)]
pub(super) struct ExistingKey {
    pub fingerprint: String,
    pub answer: StoredAnswer,
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
                Decision::Replay(existing.answer.clone())
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
            Some(limit) if already + request.quantity > limit => Decision::LimitExceeded {
                answer: error_answer(
                    429,
                    "limit_exceeded",
                    &format!("at most {limit} per customer; you already have {already}"),
                ),
            },
            _ if request.quantity > remaining => Decision::SoldOut {
                answer: error_answer(
                    409,
                    "sold_out",
                    &if remaining == 0 {
                        format!("{} is sold out", product.sku)
                    } else {
                        format!("only {remaining} left of {}", product.sku)
                    },
                ),
            },
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
                let body = serde_json::to_string(&order).expect("an order always serializes");
                Decision::Created {
                    order,
                    answer: StoredAnswer { status: 201, body },
                }
            }
        };
        // A second request with the same key in this very batch must see
        // this answer, exactly as if it came a moment later.
        if let Some(answer) = decision.answer_to_store() {
            existing_keys.insert(
                key,
                ExistingKey {
                    fingerprint: request.fingerprint(),
                    answer: answer.clone(),
                },
            );
        }
        decisions.push(decision);
    }
    decisions
}

/// The JSON error body every shop error uses.
pub(super) fn error_answer(status: u16, code: &str, detail: &str) -> StoredAnswer {
    StoredAnswer {
        status,
        body: serde_json::json!({ "error": code, "detail": detail }).to_string(),
    }
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
            .filter(|d| matches!(d, Decision::Created { .. }))
            .count();
        assert_eq!(created, 3);
        assert!(matches!(decisions[3], Decision::SoldOut { .. }));
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
            assert!(decisions[0].answer_to_store().is_none());
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
        let Decision::Created { answer, .. } = &decisions[0] else {
            panic!("first must create: {decisions:?}")
        };
        assert_eq!(decisions[1], Decision::Replay(answer.clone()));
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
        let stored = StoredAnswer {
            status: 201,
            body: "{}".into(),
        };
        let mut existing_keys = HashMap::new();
        existing_keys.insert(
            ("a".to_string(), "k".to_string()),
            ExistingKey {
                fingerprint: request("a", "k", 1).fingerprint(),
                answer: stored.clone(),
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
