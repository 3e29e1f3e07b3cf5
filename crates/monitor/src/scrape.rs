//! Scraping: one target's `/metrics` read and checked into samples. A
//! plain function of the target; what becomes of the samples is the tick's
//! business (`monitor::tick`).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Target;
use crate::exposition;
use crate::store::SeriesKey;

/// What one scrape of a target found.
#[derive(Debug)]
pub(crate) struct Scrape {
    /// Its samples, or why there are none (the target is down).
    pub(crate) samples: Result<Vec<(SeriesKey, f64)>, String>,
    pub(crate) duration: Duration,
}

/// A target's last scrape, for `GET /api/targets`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetStatus {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) up: bool,
    /// Why it is down, when it is.
    pub(crate) reason: Option<String>,
    pub(crate) last_scrape_ms: i64,
    pub(crate) duration_ms: f64,
    pub(crate) samples: usize,
}

/// Reads `target`'s `/metrics`; every sample line is checked, so a target
/// that serves something else is down and the reason names the line.
pub(crate) async fn scrape(http: &reqwest::Client, target: &Target) -> Scrape {
    let started = Instant::now();
    let url = format!("{}/metrics", target.url.trim_end_matches('/'));
    let samples = match http.get(&url).send().await {
        Ok(response) if response.status().is_success() => match response.text().await {
            Ok(text) => exposition::parse(&text, &target.name),
            Err(err) => Err(format!("reading the body: {err}")),
        },
        Ok(response) => Err(format!("answered {}", response.status())),
        Err(err) => Err(format!("unreachable: {err}")),
    };
    Scrape {
        samples,
        duration: started.elapsed(),
    }
}

impl Scrape {
    /// The target's row in `GET /api/targets` after this scrape.
    pub(crate) fn status(&self, target: &Target, at_ms: i64) -> TargetStatus {
        TargetStatus {
            name: target.name.clone(),
            url: target.url.clone(),
            up: self.samples.is_ok(),
            reason: self.samples.as_ref().err().cloned(),
            last_scrape_ms: at_ms,
            duration_ms: self.duration.as_secs_f64() * 1000.0,
            samples: self.samples.as_ref().map_or(0, Vec::len),
        }
    }
}
