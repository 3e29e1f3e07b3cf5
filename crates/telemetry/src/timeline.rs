//! The kinds of event an incident timeline holds. The monitor keeps the
//! timeline; the stack and the drill post to it: one enum, so a kind is
//! spelled once and an unknown one is refused where it enters.

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An alert started firing (the monitor).
    AlertFiring,
    /// A firing alert stopped (the monitor).
    AlertResolved,
    /// Flash crowd or attack (the monitor's surge analysis).
    SurgeVerdict,
    IncidentOpened,
    IncidentResolved,
    /// A person's note.
    Note,
    /// A gateway's backend changed state (up, down, ejected, ...).
    BackendState,
    /// A gateway's waiting room turned on or off, changed its admission
    /// rate, or learnt the sale sold out.
    WaitingRoom,
    /// A supervised part died, and how (the stack).
    PartExited,
    /// A supervised part came back (the stack).
    PartRestarted,
    /// A chaos action: kill, stop, continue, restart (the stack).
    Chaos,
    DrillStarted,
    /// The drill's figures once it ends.
    DrillReport,
    /// A deployment, posted by whoever deploys.
    Deploy,
    /// The autoscaler added or removed a shop, with why (the stack).
    Scaling,
    /// On call: a page, an escalation, an acknowledgement, a re-page, a
    /// failed delivery, a resolution notice (the monitor; `data.action`
    /// says which).
    OnCall,
    /// A public update for the status page (`investigating`, `identified`,
    /// `monitoring`, `resolved`), written by the on-call.
    PublicUpdate,
}

impl EventKind {
    /// The kinds other processes may post (`POST /api/events`); the monitor
    /// records alerts, surge verdicts, incident changes and notes itself.
    pub const POSTABLE: [EventKind; 8] = [
        EventKind::PartExited,
        EventKind::PartRestarted,
        EventKind::Chaos,
        EventKind::BackendState,
        EventKind::DrillStarted,
        EventKind::DrillReport,
        EventKind::Deploy,
        EventKind::Scaling,
    ];

    pub fn is_postable(self) -> bool {
        Self::POSTABLE.contains(&self)
    }

    /// As stored and sent: `part_exited`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AlertFiring => "alert_firing",
            EventKind::AlertResolved => "alert_resolved",
            EventKind::SurgeVerdict => "surge_verdict",
            EventKind::IncidentOpened => "incident_opened",
            EventKind::IncidentResolved => "incident_resolved",
            EventKind::Note => "note",
            EventKind::BackendState => "backend_state",
            EventKind::WaitingRoom => "waiting_room",
            EventKind::PartExited => "part_exited",
            EventKind::PartRestarted => "part_restarted",
            EventKind::Chaos => "chaos",
            EventKind::DrillStarted => "drill_started",
            EventKind::DrillReport => "drill_report",
            EventKind::Deploy => "deploy",
            EventKind::Scaling => "scaling",
            EventKind::OnCall => "on_call",
            EventKind::PublicUpdate => "public_update",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a chaos action does to a part of the stack: the drill asks, the
/// stack's control API does it (`POST /parts/{name}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChaosAction {
    /// SIGKILL: the process is gone at once.
    Kill,
    /// SIGSTOP: the process hangs, its sockets open.
    Stop,
    /// SIGCONT after a stop.
    Continue,
    /// Stopped gracefully and started again.
    Restart,
}

impl ChaosAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChaosAction::Kill => "kill",
            ChaosAction::Stop => "stop",
            ChaosAction::Continue => "continue",
            ChaosAction::Restart => "restart",
        }
    }

    /// From a path segment; `None` for anything else.
    pub fn parse(text: &str) -> Option<ChaosAction> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
    }
}

impl std::fmt::Display for ChaosAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not an event kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an event kind")]
pub struct UnknownKind(pub String);

impl std::str::FromStr for EventKind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<EventKind, UnknownKind> {
        serde_json::from_value(serde_json::Value::String(text.to_string()))
            .map_err(|_| UnknownKind(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_spelled_the_same_everywhere() {
        let all = [
            EventKind::AlertFiring,
            EventKind::AlertResolved,
            EventKind::SurgeVerdict,
            EventKind::IncidentOpened,
            EventKind::IncidentResolved,
            EventKind::Note,
            EventKind::BackendState,
            EventKind::PartExited,
            EventKind::PartRestarted,
            EventKind::Chaos,
            EventKind::DrillStarted,
            EventKind::DrillReport,
            EventKind::Deploy,
        ];
        for kind in all {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str(), "serde and as_str agree");
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("exploded".parse::<EventKind>().is_err());
        assert!(EventKind::Chaos.is_postable() && !EventKind::AlertFiring.is_postable());
        assert_eq!(ChaosAction::parse("kill"), Some(ChaosAction::Kill));
        assert_eq!(ChaosAction::parse("Kill"), None);
        assert_eq!(ChaosAction::Restart.to_string(), "restart");
    }
}
