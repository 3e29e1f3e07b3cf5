//! The bounded in-memory history: one ring of (time, value) per series,
//! old points dropped past the retention, and at most `max_series` series
//! (new ones beyond are refused and counted), so memory has a ceiling:
//! about 16 bytes a point, so 3,600 points a series at one scrape a second.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

/// A series' identity: the metric name and its sorted labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SeriesKey {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    pub fn new(name: &str, labels: impl IntoIterator<Item = (String, String)>) -> SeriesKey {
        SeriesKey {
            name: name.to_string(),
            labels: labels.into_iter().collect(),
        }
    }

    /// Whether every `matchers` label has that value; a value ending in
    /// `*` matches by prefix (`status = "5*"`).
    pub fn matches(&self, name: &str, matchers: &[(String, String)]) -> bool {
        self.name == name
            && matchers.iter().all(|(k, v)| {
                self.labels
                    .get(k)
                    .is_some_and(|have| match v.strip_suffix('*') {
                        Some(prefix) => have.starts_with(prefix),
                        None => have == v,
                    })
            })
    }
}

#[derive(Debug)]
pub struct Store {
    series: HashMap<SeriesKey, VecDeque<(i64, f64)>>,
    retention_ms: i64,
    max_series: usize,
    /// Points not stored because the series limit was reached.
    pub refused: u64,
}

/// A series and its points, for the query API.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoints {
    #[serde(flatten)]
    pub key: SeriesKey,
    /// (unix ms, value)
    pub points: Vec<(i64, f64)>,
}

impl Store {
    pub fn new(retention_ms: i64, max_series: usize) -> Store {
        Store {
            series: HashMap::new(),
            retention_ms,
            max_series,
            refused: 0,
        }
    }

    pub fn push(&mut self, key: SeriesKey, at_ms: i64, value: f64) {
        let len = self.series.len();
        let points = match self.series.get_mut(&key) {
            Some(points) => points,
            None if len >= self.max_series => {
                self.refused += 1;
                return;
            }
            None => self.series.entry(key).or_default(),
        };
        points.push_back((at_ms, value));
        while points
            .front()
            .is_some_and(|(t, _)| *t < at_ms - self.retention_ms)
        {
            points.pop_front();
        }
    }

    /// Drops points past the retention everywhere, and empty series.
    pub fn prune(&mut self, now_ms: i64) {
        let oldest = now_ms - self.retention_ms;
        self.series.retain(|_, points| {
            while points.front().is_some_and(|(t, _)| *t < oldest) {
                points.pop_front();
            }
            !points.is_empty()
        });
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn point_count(&self) -> usize {
        self.series.values().map(VecDeque::len).sum()
    }

    /// The latest point of every matching series.
    pub fn instant(&self, name: &str, matchers: &[(String, String)]) -> Vec<SeriesPoints> {
        self.select(name, matchers, |points| {
            points.back().copied().into_iter().collect()
        })
    }

    /// The latest value of every matching series that was collected in the
    /// last 2.5 s (a collection or two): a target that stopped answering
    /// drops out instead of repeating its last value.
    pub fn fresh(
        &self,
        name: &str,
        matchers: &[(String, String)],
        now_ms: i64,
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        self.range(name, matchers, now_ms - 2_500, now_ms)
            .into_iter()
            .filter_map(|s| Some((s.key.labels, s.points.last()?.1)))
            .collect()
    }

    /// The points of every matching series within [start, end].
    pub fn range(
        &self,
        name: &str,
        matchers: &[(String, String)],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesPoints> {
        self.select(name, matchers, |points| {
            points
                .iter()
                .copied()
                .filter(|(t, _)| (start_ms..=end_ms).contains(t))
                .collect()
        })
    }

    fn select(
        &self,
        name: &str,
        matchers: &[(String, String)],
        pick: impl Fn(&VecDeque<(i64, f64)>) -> Vec<(i64, f64)>,
    ) -> Vec<SeriesPoints> {
        let mut found: Vec<SeriesPoints> = self
            .series
            .iter()
            .filter(|(key, _)| key.matches(name, matchers))
            .map(|(key, points)| SeriesPoints {
                key: key.clone(),
                points: pick(points),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(target: &str) -> SeriesKey {
        SeriesKey::new("up", [("target".to_string(), target.to_string())])
    }

    #[test]
    fn history_is_bounded_in_time_and_in_series() {
        let mut store = Store::new(10_000, 2);
        for t in 0..100 {
            store.push(key("a"), t * 1000, t as f64);
        }
        assert_eq!(store.point_count(), 11, "only the last 10 s are kept");
        store.push(key("b"), 99_000, 1.0);
        store.push(key("c"), 99_000, 1.0);
        assert_eq!(store.series_count(), 2);
        assert_eq!(store.refused, 1);
        store.prune(200_000);
        assert_eq!(store.series_count(), 0);
    }

    #[test]
    fn queries_select_by_label() {
        let mut store = Store::new(60_000, 10);
        store.push(key("a"), 1_000, 1.0);
        store.push(key("a"), 2_000, 0.0);
        store.push(key("b"), 2_000, 1.0);
        let a = store.instant("up", &[("target".into(), "a".into())]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].points, [(2_000, 0.0)]);
        assert_eq!(store.instant("up", &[]).len(), 2);
        assert_eq!(
            store.instant("up", &[("target".into(), "*".into())]).len(),
            2
        );
        assert_eq!(
            store.instant("up", &[("target".into(), "b*".into())]).len(),
            1
        );
        assert_eq!(
            store.range("up", &[("target".into(), "a".into())], 0, 1_500)[0].points,
            [(1_000, 1.0)]
        );
    }
}
