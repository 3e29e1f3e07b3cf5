//! The built-in scenarios `flashguard rehearse` tells: the crash story (a
//! surge to twenty times normal traffic with a shop SIGKILLed in it) and
//! the beyond-capacity story (ten times what the shops can serve, sized
//! from their measured capacity, a waiting room in front).

use crate::scenario::{Chaos, Customer, Item, Phase, Scenario};
use flashguard_telemetry::ChaosAction;

/// `flashguard rehearse`'s scenario: normal traffic, a surge to 20× at sale
/// start, one primary shop SIGKILLed mid-surge and restarted later.
const FLASH_SALE_WITH_A_CRASH: &str = r#"
name = "flash sale with a crash"
availability_floor = 0.99

[[item]]
sku = "rehearsal-sneaker"
name = "Rehearsal sneaker"
stock = 3000
limit_per_customer = 2
sale_starts_in_s = 4

[[phase]]    # normal traffic before the sale
duration_s = 4
rate = 15

[[phase]]    # the sale opens: 20x
duration_s = 16
rate = 300

[[phase]]    # the crowd thins out
duration_s = 6
rate = 300
ramp_to = 15

[[chaos]]
at_s = 10
action = "kill"
part = "shop-2"

[[chaos]]
at_s = 18
action = "restart"
part = "shop-2"
"#;

impl Scenario {
    pub fn flash_sale_with_a_crash() -> Scenario {
        Scenario::parse(FLASH_SALE_WITH_A_CRASH).expect("the built-in scenario is valid")
    }

    /// More customers than the shops can serve: a short warm-up at half
    /// their measured `capacity` (customers served per second, all shops
    /// together), then `surge_s` at ten times it, a shop SIGKILLed halfway
    /// through the surge and restarted three seconds later. There is
    /// stock for 60 % of the surge at capacity — a waiting room that
    /// follows the shops' capacity lets in a little less than all of it,
    /// and one shop is gone for a while — so the sale sells out late in
    /// the surge and those still waiting are told.
    pub fn beyond_capacity(capacity: f64, surge_s: f64) -> Scenario {
        const WARM_S: f64 = 2.0;
        let surge_s = surge_s.max(4.0);
        let kill_at = WARM_S + surge_s / 2.0;
        Scenario {
            name: "beyond capacity".into(),
            items: vec![Item {
                sku: "surge-sneaker".into(),
                name: "Surge sneaker".into(),
                stock: (capacity * surge_s * 0.6).round().max(1.0) as i64,
                price_cents: 9_900,
                limit_per_customer: 1,
                sale_starts_in_s: 0.0,
                sale_ends_in_s: None,
            }],
            phases: vec![
                Phase {
                    duration_s: WARM_S,
                    rate: capacity / 2.0,
                    ramp_to: None,
                },
                Phase {
                    duration_s: surge_s,
                    rate: capacity * 10.0,
                    ramp_to: None,
                },
            ],
            customer: Customer {
                browse: true,
                max_quantity: 1,
                patience_s: 10.0,
                waiting_patience_s: 90.0,
                request_timeout_ms: 10_000,
                population: 10_000_000,
                synthetic_addresses: true,
            },
            chaos: vec![
                Chaos {
                    at_s: kill_at,
                    action: ChaosAction::Kill,
                    part: "shop-2".into(),
                },
                Chaos {
                    at_s: kill_at + 3.0,
                    action: ChaosAction::Restart,
                    part: "shop-2".into(),
                },
            ],
            attacks: Vec::new(),
            availability_floor: 0.99,
        }
    }

    /// The beyond-capacity story told to a stack that scales itself: the
    /// sale opens after `before_s` of browsing at half the capacity (time
    /// for the shops planned for it to be added and warm, visibly before
    /// it), closes when the surge ends, and `after_s` of quiet browsing
    /// follow (time for the shops added to be drained and removed, visibly
    /// after it). No shop is killed: this story is about capacity
    /// following the load, and the fixed one already kills a shop in the
    /// surge (a kill here, while shops are being added, sometimes had the
    /// gateway's queue time out — see BENCHMARKS.md).
    pub fn beyond_capacity_scaling(
        capacity: f64,
        surge_s: f64,
        before_s: f64,
        after_s: f64,
    ) -> Scenario {
        let mut scenario = Scenario::beyond_capacity(capacity, surge_s);
        scenario.chaos.clear();
        scenario.phases[0].duration_s = before_s;
        let surge_s = scenario.phases[1].duration_s;
        scenario.phases.push(Phase {
            duration_s: after_s,
            rate: capacity / 4.0,
            ramp_to: None,
        });
        let item = &mut scenario.items[0];
        item.sale_starts_in_s = before_s;
        item.sale_ends_in_s = Some(before_s + surge_s);
        scenario
    }
}

impl Scenario {
    /// A step load for measuring one server: `steps` steps of `step_s`
    /// each, the rate doubling from `first_rate`, customers browsing then
    /// ordering one unit of an item with stock to spare. Step k covers
    /// `[k × step_s, (k + 1) × step_s)` of the run.
    pub fn step_load(first_rate: f64, steps: usize, step_s: f64) -> Scenario {
        Scenario {
            name: "step load".into(),
            items: vec![Item {
                sku: "plan-item".into(),
                name: "Plan item".into(),
                stock: 1_000_000_000,
                price_cents: 100,
                limit_per_customer: 1,
                sale_starts_in_s: 0.0,
                sale_ends_in_s: None,
            }],
            phases: (0..steps)
                .map(|k| Phase {
                    duration_s: step_s,
                    rate: first_rate * f64::from(1u32 << k.min(20)),
                    ramp_to: None,
                })
                .collect(),
            customer: Customer {
                max_quantity: 1,
                population: 10_000_000,
                ..Customer::default()
            },
            chaos: Vec::new(),
            attacks: Vec::new(),
            availability_floor: 0.0,
        }
    }
}

#[cfg(test)]
mod built_in {
    use super::Scenario;

    #[test]
    fn a_step_load_doubles_its_rate_each_step() {
        let scenario = Scenario::step_load(10.0, 4, 2.0);
        assert!(scenario.validate().is_ok(), "{:?}", scenario.validate());
        let rates: Vec<f64> = scenario.phases.iter().map(|p| p.rate).collect();
        assert_eq!(rates, vec![10.0, 20.0, 40.0, 80.0]);
        assert_eq!(scenario.duration().as_secs_f64(), 8.0);
    }

    #[test]
    fn beyond_capacity_is_ten_times_the_capacity_and_sells_out_late() {
        let scenario = Scenario::beyond_capacity(400.0, 20.0);
        assert!(scenario.validate().is_ok(), "{:?}", scenario.validate());
        assert_eq!(scenario.phases[1].rate, 4_000.0);
        // Stock for 60 % of the surge at capacity.
        assert_eq!(scenario.items[0].stock, 4_800);
        assert!(scenario.chaos[0].at_s > 2.0 && scenario.chaos[0].at_s < 22.0);
    }

    #[test]
    fn the_scaling_story_opens_after_the_lead_and_closes_with_the_surge() {
        let scenario = Scenario::beyond_capacity_scaling(400.0, 20.0, 6.0, 12.0);
        assert!(scenario.validate().is_ok(), "{:?}", scenario.validate());
        let item = &scenario.items[0];
        assert_eq!(item.sale_starts_in_s, 6.0);
        assert_eq!(item.sale_ends_in_s, Some(26.0));
        let rates: Vec<f64> = scenario.phases.iter().map(|p| p.rate).collect();
        assert_eq!(rates, vec![200.0, 4_000.0, 100.0]);
        assert_eq!(scenario.duration().as_secs_f64(), 38.0);
        assert!(scenario.chaos.is_empty());
    }

    #[test]
    fn the_rehearsal_surges_twenty_fold_and_scales() {
        let scenario = Scenario::flash_sale_with_a_crash();
        assert_eq!(scenario.phases[1].rate / scenario.phases[0].rate, 20.0);
        let short = scenario.clone().scaled(0.25);
        assert!(short.validate().is_ok());
        assert!(
            (short.duration().as_secs_f64() - scenario.duration().as_secs_f64() / 4.0).abs() < 1e-9
        );
    }
}
