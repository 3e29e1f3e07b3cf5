//! A timeline event: something that happened, when, and who said so.

use flashguard_telemetry::EventKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    #[serde(default)]
    pub id: i64,
    /// Unix ms; the monitor's clock when absent.
    #[serde(default)]
    pub at_ms: i64,
    /// Who saw it: `monitor`, `gateway`, `stack`, `drill`, `person`.
    pub source: String,
    /// What it was.
    pub kind: EventKind,
    /// The part, backend or alert it is about.
    #[serde(default)]
    pub subject: String,
    /// One human sentence.
    pub summary: String,
    /// Figures behind it, for the postmortem.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Event {
    pub(crate) fn new(
        at_ms: i64,
        source: &str,
        kind: EventKind,
        subject: &str,
        summary: impl Into<String>,
        data: serde_json::Value,
    ) -> Event {
        Event {
            id: 0,
            at_ms,
            source: source.into(),
            kind,
            subject: subject.into(),
            summary: summary.into(),
            data,
        }
    }

    /// The refusal of a kind that may not be posted.
    pub(crate) fn postable_kinds() -> String {
        let postable: Vec<&str> = EventKind::POSTABLE.iter().map(|k| k.as_str()).collect();
        format!("kind: must be one of {}", postable.join(", "))
    }

    /// Why a posted event is refused, naming the field.
    pub(crate) fn refusal(&self) -> Option<String> {
        let short = |field: &str, value: &str, max: usize| {
            (value.is_empty() || value.len() > max)
                .then(|| format!("{field}: must be 1 to {max} characters"))
        };
        if !self.kind.is_postable() {
            return Some(Event::postable_kinds());
        }
        short("source", &self.source, 64)
            .or_else(|| short("summary", &self.summary, 2000))
            .or_else(|| {
                (self.subject.len() > 128).then(|| "subject: at most 128 characters".into())
            })
            .or_else(|| (self.at_ms < 0).then(|| "at_ms: must be unix milliseconds".into()))
    }
}
