//! `flashguard incident ack ID --as NAME` (and `resolve`): the monitor's
//! incident API from a terminal, for whoever is on call.

use anyhow::Context;

use crate::cli::{IncidentAction, IncidentArgs};

pub(crate) async fn incident(args: IncidentArgs) -> anyhow::Result<()> {
    let (id, by, verb) = match &args.action {
        IncidentAction::Ack { id, by } => (*id, by, "ack"),
        IncidentAction::Resolve { id, by } => (*id, by, "resolve"),
    };
    let monitor = args.monitor.trim_end_matches('/');
    let mut body = serde_json::json!({ "by": by });
    if verb == "ack" {
        body["via"] = serde_json::json!("cli");
    }
    let mut request = reqwest::Client::new()
        .post(format!("{monitor}/api/incidents/{id}/{verb}"))
        .timeout(std::time::Duration::from_secs(10))
        .json(&body);
    if let Some(token) = &args.admin_token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("reaching the monitor at {monitor}"))?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "the monitor answered {status}: {}",
        answer["detail"]
            .as_str()
            .or(answer["error"].as_str())
            .unwrap_or("no reason given")
    );
    match verb {
        "ack" => println!(
            "incident {id} acknowledged by {by}: escalation stops until {}",
            answer["until_ms"]
                .as_i64()
                .and_then(|ms| time::OffsetDateTime::from_unix_timestamp(ms / 1000).ok())
                .and_then(|t| t
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok())
                .unwrap_or_default()
        ),
        _ => println!("incident {id} resolved by {by}; everyone paged is told"),
    }
    Ok(())
}
