//! The scenario file: items on sale, traffic phases, how customers behave,
//! chaos actions and the availability floor. A malformed or impossible
//! scenario is refused with a message that names the problem.

use std::time::Duration;

use flashguard_telemetry::ChaosAction;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(rename = "item")]
    pub items: Vec<Item>,
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub customer: Customer,
    #[serde(default, rename = "chaos")]
    pub chaos: Vec<Chaos>,
    /// Attack-like traffic beside the customers (`[[attack]]`).
    #[serde(default, rename = "attack")]
    pub attacks: Vec<Attack>,
    /// Share of customer requests that must be answered by design (success,
    /// sold out, limit) rather than with an error. Default 0.99.
    #[serde(default = "default_floor")]
    pub availability_floor: f64,
}

fn default_name() -> String {
    "flash sale".into()
}

fn default_floor() -> f64 {
    0.99
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub sku: String,
    #[serde(default = "default_item_name")]
    pub name: String,
    pub stock: i64,
    #[serde(default = "default_price")]
    pub price_cents: i64,
    /// Units one customer may buy. Default 2.
    #[serde(default = "default_limit")]
    pub limit_per_customer: i64,
    /// Seconds after the drill starts when the sale opens. Default 0.
    #[serde(default)]
    pub sale_starts_in_s: f64,
    /// Seconds after the drill starts when the sale closes (orders after
    /// it are refused). Default: it stays open.
    #[serde(default)]
    pub sale_ends_in_s: Option<f64>,
}

fn default_item_name() -> String {
    "Flash-sale item".into()
}
fn default_price() -> i64 {
    4999
}
fn default_limit() -> i64 {
    2
}

/// A stretch of traffic: new customers arrive at `rate` per second, or at a
/// rate going linearly from `rate` to `ramp_to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub duration_s: f64,
    pub rate: f64,
    pub ramp_to: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Customer {
    /// Look at the product page before ordering. Default true.
    pub browse: bool,
    /// Units per order, drawn from 1 to this. Default 2.
    pub max_quantity: i64,
    /// How long a customer keeps trying before giving up, in s. Default 10.
    pub patience_s: f64,
    /// How long a customer shown a place in a waiting room keeps coming
    /// back before giving up, in s. Default 120.
    pub waiting_patience_s: f64,
    /// One request's timeout, in ms. Default 5000.
    pub request_timeout_ms: u64,
    /// Distinct customers the arrivals are drawn from. Default 100000.
    pub population: u64,
    /// Send each customer's own address in X-Forwarded-For (10.x.y.z, each
    /// of the first 65,536 customers in a /24 of their own), so a gateway
    /// that trusts the drill sees a crowd of clients. Default true.
    pub synthetic_addresses: bool,
}

impl Default for Customer {
    fn default() -> Self {
        Customer {
            browse: true,
            max_quantity: 2,
            patience_s: 10.0,
            waiting_patience_s: 120.0,
            request_timeout_ms: 5_000,
            population: 100_000,
            synthetic_addresses: true,
        }
    }
}

/// A few clients sending many requests to paths the shop does not have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attack {
    /// Seconds after the drill starts.
    pub start_s: f64,
    pub duration_s: f64,
    /// Requests per second, all attackers together.
    pub rate: f64,
    /// Attacking addresses. Default 5.
    #[serde(default = "default_attackers")]
    pub clients: u32,
}

fn default_attackers() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chaos {
    pub at_s: f64,
    /// `kill`, `stop`, `continue` or `restart`.
    pub action: ChaosAction,
    /// A part of the stack, e.g. `shop-2`.
    pub part: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    File(#[from] flashguard_telemetry::ConfigFileError),
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Scenario {
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = flashguard_telemetry::read_toml(path)?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = flashguard_telemetry::parse_toml(text).map_err(|message| {
            flashguard_telemetry::ConfigFileError::Parse {
                path: "scenario".into(),
                message,
            }
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks that the scenario can happen.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.items.is_empty() {
            return Err(invalid(
                "item",
                "a scenario needs at least one item on sale",
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            let ok_sku = !item.sku.is_empty()
                && item.sku.len() <= 64
                && item
                    .sku
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_sku {
                return Err(invalid(
                    format!("item[{i}].sku"),
                    "must be 1 to 64 letters, digits, '-' or '_'",
                ));
            }
            if item.stock < 1 {
                return Err(invalid(format!("item[{i}].stock"), "must be at least 1"));
            }
            if item.limit_per_customer < 1 {
                return Err(invalid(
                    format!("item[{i}].limit_per_customer"),
                    "must be at least 1",
                ));
            }
            if !(0.0..=3600.0).contains(&item.sale_starts_in_s) {
                return Err(invalid(
                    format!("item[{i}].sale_starts_in_s"),
                    "must be 0 to 3600",
                ));
            }
            if let Some(ends) = item.sale_ends_in_s {
                if !(ends > item.sale_starts_in_s && ends <= 7200.0) {
                    return Err(invalid(
                        format!("item[{i}].sale_ends_in_s"),
                        "must be after sale_starts_in_s and at most 7200",
                    ));
                }
            }
        }
        if self.phases.is_empty() {
            return Err(invalid(
                "phase",
                "a scenario needs at least one traffic phase",
            ));
        }
        for (i, phase) in self.phases.iter().enumerate() {
            if !(phase.duration_s > 0.0 && phase.duration_s <= 3600.0) {
                return Err(invalid(
                    format!("phase[{i}].duration_s"),
                    "must be above 0 and at most 3600",
                ));
            }
            for (field, rate) in [("rate", Some(phase.rate)), ("ramp_to", phase.ramp_to)] {
                if let Some(rate) = rate {
                    if !(0.0..=200_000.0).contains(&rate) {
                        return Err(invalid(
                            format!("phase[{i}].{field}"),
                            "must be 0 to 200000 per second",
                        ));
                    }
                }
            }
        }
        let c = &self.customer;
        if !(1..=100).contains(&c.max_quantity) {
            return Err(invalid("customer.max_quantity", "must be 1 to 100"));
        }
        if !(c.patience_s > 0.0 && c.patience_s <= 600.0) {
            return Err(invalid(
                "customer.patience_s",
                "must be above 0 and at most 600",
            ));
        }
        if !(c.waiting_patience_s > 0.0 && c.waiting_patience_s <= 3_600.0) {
            return Err(invalid(
                "customer.waiting_patience_s",
                "must be above 0 and at most 3600",
            ));
        }
        if c.request_timeout_ms == 0 || c.population == 0 {
            return Err(invalid(
                "customer",
                "request_timeout_ms and population must be above 0",
            ));
        }
        if c.population > 1 << 24 {
            return Err(invalid("customer.population", "must be at most 16777216"));
        }
        let end = self.duration().as_secs_f64();
        for (i, attack) in self.attacks.iter().enumerate() {
            if !(attack.start_s >= 0.0 && attack.duration_s > 0.0)
                || attack.start_s + attack.duration_s > end + 1e-9
            {
                return Err(invalid(
                    format!("attack[{i}]"),
                    format!("start_s and duration_s must fall within the scenario's {end} s"),
                ));
            }
            if !(attack.rate > 0.0 && attack.rate <= 100_000.0) {
                return Err(invalid(
                    format!("attack[{i}].rate"),
                    "must be above 0 and at most 100000 per second",
                ));
            }
            if !(1..=254).contains(&attack.clients) {
                return Err(invalid(format!("attack[{i}].clients"), "must be 1 to 254"));
            }
        }
        for (i, chaos) in self.chaos.iter().enumerate() {
            if !(0.0..end).contains(&chaos.at_s) {
                return Err(invalid(
                    format!("chaos[{i}].at_s"),
                    format!(
                        "{} is outside the scenario, which lasts {end} s",
                        chaos.at_s
                    ),
                ));
            }
            if chaos.part.is_empty() {
                return Err(invalid(format!("chaos[{i}].part"), "names no part"));
            }
        }
        if !(0.0..=1.0).contains(&self.availability_floor) {
            return Err(invalid("availability_floor", "must be between 0 and 1"));
        }
        Ok(())
    }

    /// How long traffic runs.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.phases.iter().map(|p| p.duration_s).sum())
    }

    /// How many customers arrive in all.
    pub fn arrival_count(&self) -> u64 {
        self.phases
            .iter()
            .map(|p| ((p.rate + p.ramp_to.unwrap_or(p.rate)) / 2.0 * p.duration_s).floor() as u64)
            .sum()
    }

    /// When every arrival is due, as offsets from the start: open loop, so
    /// the schedule does not depend on how fast the system answers.
    /// Computed as they are needed: a minute at 100,000 a second would be
    /// 96 MB as a list.
    pub fn arrivals(&self) -> impl Iterator<Item = Duration> + '_ {
        let mut phase_start = 0.0;
        self.phases.iter().flat_map(move |phase| {
            let (r0, r1) = (phase.rate, phase.ramp_to.unwrap_or(phase.rate));
            let d = phase.duration_s;
            let start = phase_start;
            phase_start += d;
            // Arrivals where the integral of the rate reaches 1, 2, 3...
            let total = ((r0 + r1) / 2.0 * d).floor() as u64;
            (1..=total).map(move |n| {
                let n = n as f64;
                let t = if (r1 - r0).abs() < 1e-9 {
                    n / r0
                } else {
                    let a = (r1 - r0) / (2.0 * d);
                    (-r0 + (r0 * r0 + 4.0 * a * n).sqrt()) / (2.0 * a)
                };
                Duration::from_secs_f64(start + t.min(d))
            })
        })
    }
}

impl Scenario {
    /// The same story in `factor` of the time (durations, sale start and
    /// chaos times scaled; rates kept), for quick runs and tests.
    pub fn scaled(mut self, factor: f64) -> Scenario {
        for phase in &mut self.phases {
            phase.duration_s *= factor;
        }
        for item in &mut self.items {
            item.sale_starts_in_s *= factor;
            item.sale_ends_in_s = item.sale_ends_in_s.map(|ends| ends * factor);
        }
        for chaos in &mut self.chaos {
            chaos.at_s *= factor;
        }
        for attack in &mut self.attacks {
            attack.start_s *= factor;
            attack.duration_s *= factor;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [[item]]
        sku = "sneaker"
        stock = 100
        [[phase]]
        duration_s = 2
        rate = 10
        [[phase]]
        duration_s = 2
        rate = 10
        ramp_to = 30
        [[chaos]]
        at_s = 1
        action = "kill"
        part = "shop-1"
    "#;

    #[test]
    fn arrivals_follow_the_phases() {
        let scenario = Scenario::parse(GOOD).unwrap();
        let arrivals: Vec<Duration> = scenario.arrivals().collect();
        // 10/s for 2 s, then a ramp from 10 to 30 for 2 s: 20 + 40.
        assert_eq!(arrivals.len(), 60);
        assert_eq!(scenario.arrival_count(), 60);
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
        let in_ramp_second_half = arrivals.iter().filter(|t| t.as_secs_f64() > 3.0).count();
        assert!(
            in_ramp_second_half > 22,
            "the ramp is steeper later: {in_ramp_second_half}"
        );
    }

    #[test]
    fn impossible_scenarios_are_refused_naming_the_problem() {
        let cases = [
            (GOOD.replace("stock = 100", "stock = 0"), "item[0].stock"),
            (GOOD.replace("at_s = 1", "at_s = 9"), "chaos[0].at_s"),
            (
                GOOD.replace(
                    "stock = 100",
                    "stock = 100\nsale_starts_in_s = 3\nsale_ends_in_s = 2",
                ),
                "item[0].sale_ends_in_s",
            ),
            (GOOD.replace("\"kill\"", "\"explode\""), "chaos[0].action"),
            (
                GOOD.replace(
                    "duration_s = 2\n        rate = 10\n        [[phase]]",
                    "duration_s = -1\n        rate = 10\n        [[phase]]",
                ),
                "phase[0].duration_s",
            ),
            (
                GOOD.replace("ramp_to = 30", "ramp_to = -5"),
                "phase[1].ramp_to",
            ),
            (
                format!("{GOOD}\n[[attack]]\nstart_s = 3\nduration_s = 2\nrate = 100\n"),
                "attack[0]",
            ),
            (
                format!(
                    "{GOOD}\n[[attack]]\nstart_s = 1\nduration_s = 2\nrate = 100\nclients = 0\n"
                ),
                "attack[0].clients",
            ),
        ];
        for (text, field) in cases {
            let err = Scenario::parse(&text).unwrap_err().to_string();
            // A choice that is not one of its values is refused as the
            // text is read: the source, then the field.
            let read = format!("scenario: {field}");
            assert!(
                err.starts_with(field) || err.starts_with(&read),
                "{field}: {err}"
            );
        }
        let err = Scenario::parse("[[item]]\nsku = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("scenario"), "{err}");
    }
}
