//! The public status page, served by the gateway so that it answers when
//! every shop is dead: `/status` (plain HTML, no script), `/status.json`,
//! `/status/feed.atom`, and `/api/v2/summary.json` shaped like Atlassian
//! Statuspage's, so existing widgets and aggregators read it.
//!
//! What it says comes from two places. The monitor pushes what it knows
//! (`PUT /admin/status`): component states from its alerts, open
//! incidents with their public updates, scheduled maintenance. The
//! gateway's own view counts too, and wins when it is worse: with every
//! backend down the storefront and checkout are a major outage even when
//! no monitor is reachable; with the waiting room on, the sale says
//! customers wait in line.

pub(crate) mod page;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::room::page::{Answer, Shape};

/// The status page's answer for `path`, if it is one of its paths.
/// `own` is asked only for the status page's paths: every request passes
/// here, and looking at the backends and the room is not free.
pub(crate) fn answer(board: &StatusBoard, path: &str, own: impl Fn() -> OwnView) -> Option<Answer> {
    enum Form {
        Html,
        Json,
        Atom,
        Summary,
    }
    let form = match path {
        "/status" | "/status/" => Form::Html,
        "/status.json" => Form::Json,
        "/status/feed.atom" => Form::Atom,
        "/api/v2/summary.json" => Form::Summary,
        _ => return None,
    };
    let now = flashguard_telemetry::unix_ms();
    let components = || board.components(own(), now);
    let (shape, body, media) = match form {
        Form::Html => (Shape::Html, page::html(board, &components(), now), None),
        Form::Json => (
            Shape::Json,
            page::json(board, &components(), now).to_string(),
            None,
        ),
        Form::Atom => (
            Shape::Html,
            page::atom(board, now),
            Some("application/atom+xml; charset=utf-8"),
        ),
        Form::Summary => (
            Shape::Json,
            page::summary(board, &components(), now).to_string(),
            None,
        ),
    };
    Some(Answer {
        status: StatusCode::OK,
        shape,
        body,
        ticket: None,
        retry_after_s: None,
        media,
    })
}

/// Atlassian Statuspage's component states, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    Operational,
    UnderMaintenance,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl ComponentState {
    const ALL: [ComponentState; 5] = [
        ComponentState::Operational,
        ComponentState::UnderMaintenance,
        ComponentState::DegradedPerformance,
        ComponentState::PartialOutage,
        ComponentState::MajorOutage,
    ];

    pub(crate) fn code(self) -> &'static str {
        match self {
            ComponentState::Operational => "operational",
            ComponentState::UnderMaintenance => "under_maintenance",
            ComponentState::DegradedPerformance => "degraded_performance",
            ComponentState::PartialOutage => "partial_outage",
            ComponentState::MajorOutage => "major_outage",
        }
    }

    pub(crate) fn words(self) -> &'static str {
        match self {
            ComponentState::Operational => "Operational",
            ComponentState::UnderMaintenance => "Under maintenance",
            ComponentState::DegradedPerformance => "Degraded performance",
            ComponentState::PartialOutage => "Partial outage",
            ComponentState::MajorOutage => "Major outage",
        }
    }
}

/// The components a store's customers know.
pub(crate) const COMPONENTS: [&str; 4] = ["storefront", "checkout", "sale", "waiting_room"];

/// A public incident update's stage (Statuspage's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicUpdate {
    pub status: UpdateStatus,
    pub body: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicIncident {
    pub id: i64,
    pub name: String,
    /// Newest first.
    pub updates: Vec<PublicUpdate>,
}

impl UpdateStatus {
    pub(crate) fn code(self) -> &'static str {
        match self {
            UpdateStatus::Investigating => "investigating",
            UpdateStatus::Identified => "identified",
            UpdateStatus::Monitoring => "monitoring",
            UpdateStatus::Resolved => "resolved",
        }
    }
}

impl PublicIncident {
    pub(crate) fn status(&self) -> UpdateStatus {
        self.updates
            .first()
            .map_or(UpdateStatus::Investigating, |u| u.status)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub components: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentReport {
    pub name: String,
    pub status: ComponentState,
    /// Why, in a customer's words.
    #[serde(default)]
    pub description: Option<String>,
}

/// What the monitor pushes (`PUT /admin/status`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    #[serde(default)]
    pub components: Vec<ComponentReport>,
    #[serde(default)]
    pub incidents: Vec<PublicIncident>,
    #[serde(default)]
    pub maintenance: Vec<Maintenance>,
}

impl Published {
    /// Refuses what the page cannot show, naming the field.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (i, c) in self.components.iter().enumerate() {
            if !COMPONENTS.contains(&c.name.as_str()) {
                return Err(format!(
                    "components[{i}].name: {:?} is not one of {COMPONENTS:?}",
                    c.name
                ));
            }
        }
        for (i, incident) in self.incidents.iter().enumerate() {
            if incident.name.trim().is_empty() || incident.name.len() > 200 {
                return Err(format!("incidents[{i}].name: 1 to 200 characters"));
            }
            if incident.updates.len() > 100 {
                return Err(format!("incidents[{i}].updates: at most 100"));
            }
        }
        if self.incidents.len() > 50 || self.maintenance.len() > 50 {
            return Err("incidents, maintenance: at most 50 each".into());
        }
        Ok(())
    }
}

/// One component as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Component {
    pub(crate) name: &'static str,
    pub(crate) status: ComponentState,
    pub(crate) description: Option<String>,
}

/// What the gateway sees itself, at the moment of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnView {
    /// Backends that could serve (primary or backup, up).
    pub(crate) serving: usize,
    pub(crate) backends: usize,
    /// The waiting room: on, and how many wait.
    pub(crate) room: Option<(bool, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct StatusBoard {
    published: Mutex<(Published, i64)>,
    /// The worst state the monitor pushed for the storefront, checkout or
    /// sale (an index into `ComponentState::ALL`), for the shops' banner:
    /// read on every forwarded request, so kept apart from the lock.
    worst_pushed: AtomicU8,
    /// The page's title, e.g. the store's name.
    pub(crate) title: String,
}

impl StatusBoard {
    pub(crate) fn new(title: String) -> StatusBoard {
        StatusBoard {
            published: Mutex::default(),
            worst_pushed: AtomicU8::new(0),
            title,
        }
    }

    pub(crate) fn publish(&self, published: Published, now_ms: i64) {
        let maintained = published.maintenance.iter().any(|m| {
            m.from_ms <= now_ms
                && now_ms < m.to_ms
                && m.components.iter().any(|c| c != "waiting_room")
        });
        let worst = published
            .components
            .iter()
            .filter(|c| c.name != "waiting_room")
            .map(|c| c.status)
            .chain(maintained.then_some(ComponentState::UnderMaintenance))
            .max()
            .unwrap_or(ComponentState::Operational);
        let index = ComponentState::ALL
            .iter()
            .position(|s| *s == worst)
            .unwrap_or(0);
        self.worst_pushed.store(index as u8, Ordering::Relaxed);
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = (published, now_ms);
    }

    /// What the shops are told (`Flashguard-Status`), when something is
    /// wrong. With every backend down nothing reaches them anyway.
    pub(crate) fn for_shops(&self) -> Option<&'static [u8]> {
        let worst = ComponentState::ALL
            .get(usize::from(self.worst_pushed.load(Ordering::Relaxed)))
            .copied()
            .unwrap_or(ComponentState::Operational);
        (worst != ComponentState::Operational).then(|| worst.code().as_bytes())
    }

    pub(crate) fn published(&self) -> (Published, i64) {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every component's state now: the worst of the monitor's word, a
    /// maintenance window in force, and the gateway's own view.
    pub(crate) fn components(&self, own: OwnView, now_ms: i64) -> Vec<Component> {
        let (published, _) = self.published();
        let all_down = own.backends > 0 && own.serving == 0;
        COMPONENTS
            .iter()
            .filter(|name| **name != "waiting_room" || own.room.is_some())
            .map(|name| {
                let mut status = ComponentState::Operational;
                let mut description = None;
                if let Some(report) = published.components.iter().find(|c| c.name == *name) {
                    status = report.status;
                    description = report.description.clone();
                }
                let maintained = published.maintenance.iter().any(|m| {
                    m.from_ms <= now_ms
                        && now_ms < m.to_ms
                        && m.components.iter().any(|c| c == name)
                });
                if maintained {
                    status = status.max(ComponentState::UnderMaintenance);
                }
                if all_down && *name != "waiting_room" {
                    status = ComponentState::MajorOutage;
                    description = Some("The shop cannot be reached; we are on it.".into());
                }
                if let (&"waiting_room", Some((true, waiting))) = (name, own.room) {
                    description = Some(format!(
                        "High demand: customers wait in line for their turn ({waiting} waiting)."
                    ));
                }
                Component {
                    name,
                    status,
                    description,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(serving: usize, room: Option<(bool, u64)>) -> OwnView {
        OwnView {
            serving,
            backends: 3,
            room,
        }
    }

    fn state(components: &[Component], name: &str) -> ComponentState {
        components.iter().find(|c| c.name == name).unwrap().status
    }

    #[test]
    fn the_gateway_s_own_view_wins_when_every_backend_is_down() {
        let board = StatusBoard::new("Shop".into());
        let all_good = board.components(own(3, None), 0);
        assert!(all_good
            .iter()
            .all(|c| c.status == ComponentState::Operational));
        // No waiting room configured: no such component.
        assert!(all_good.iter().all(|c| c.name != "waiting_room"));
        // The monitor says degraded; the gateway sees nobody serving.
        board.publish(
            Published {
                components: vec![ComponentReport {
                    name: "checkout".into(),
                    status: ComponentState::DegradedPerformance,
                    description: None,
                }],
                ..Published::default()
            },
            0,
        );
        let partial = board.components(own(3, None), 0);
        assert_eq!(
            state(&partial, "checkout"),
            ComponentState::DegradedPerformance
        );
        let dead = board.components(own(0, Some((true, 40))), 0);
        for name in ["storefront", "checkout", "sale"] {
            assert_eq!(state(&dead, name), ComponentState::MajorOutage, "{name}");
        }
        let room = dead.iter().find(|c| c.name == "waiting_room").unwrap();
        assert!(room.description.as_deref().unwrap().contains("40 waiting"));
    }

    #[test]
    fn maintenance_shows_in_its_window_only() {
        let board = StatusBoard::new("Shop".into());
        board.publish(
            Published {
                maintenance: vec![Maintenance {
                    name: "database upgrade".into(),
                    from_ms: 1_000,
                    to_ms: 2_000,
                    components: vec!["checkout".into()],
                }],
                ..Published::default()
            },
            0,
        );
        assert_eq!(
            state(&board.components(own(3, None), 999), "checkout"),
            ComponentState::Operational
        );
        assert_eq!(
            state(&board.components(own(3, None), 1_000), "checkout"),
            ComponentState::UnderMaintenance
        );
        assert_eq!(
            state(&board.components(own(3, None), 2_000), "checkout"),
            ComponentState::Operational
        );
    }

    #[test]
    fn what_the_page_cannot_show_is_refused_naming_the_field() {
        let bad = Published {
            components: vec![ComponentReport {
                name: "kitchen".into(),
                status: ComponentState::MajorOutage,
                description: None,
            }],
            ..Published::default()
        };
        assert!(bad.check().unwrap_err().starts_with("components[0].name"));
    }
}
