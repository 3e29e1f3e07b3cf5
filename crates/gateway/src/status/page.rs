//! The status page's four forms: HTML for people (no script, refreshes
//! itself every 30 s), `/status.json`, an Atom feed of the public updates,
//! and `/api/v2/summary.json` in Statuspage's shape.

use serde_json::{json, Value};

use flashguard_telemetry::rfc3339;

use crate::html::{escape, NO_ICON};

use super::{Component, ComponentState, PublicIncident, StatusBoard, UpdateStatus};

/// The page's overall indicator, from its worst component (Statuspage's
/// `none`, `minor`, `major`, `critical`).
fn indicator(components: &[Component]) -> (&'static str, &'static str) {
    match components.iter().map(|c| c.status).max() {
        Some(ComponentState::MajorOutage) => ("critical", "Major outage"),
        Some(ComponentState::PartialOutage) => ("major", "Partial outage"),
        Some(ComponentState::DegradedPerformance) => ("minor", "Degraded performance"),
        Some(ComponentState::UnderMaintenance) => ("maintenance", "Under maintenance"),
        _ => ("none", "All systems operational"),
    }
}

fn update_words(status: UpdateStatus) -> &'static str {
    match status {
        UpdateStatus::Investigating => "Investigating",
        UpdateStatus::Identified => "Identified",
        UpdateStatus::Monitoring => "Monitoring",
        UpdateStatus::Resolved => "Resolved",
    }
}

/// Open incidents first (newest first), then the resolved ones.
fn ordered(incidents: &[PublicIncident]) -> Vec<&PublicIncident> {
    let mut list: Vec<&PublicIncident> = incidents.iter().collect();
    let newest = |i: &PublicIncident| i.updates.first().map_or(0, |u| u.at_ms);
    list.sort_by_key(|i| {
        (
            i.status() == UpdateStatus::Resolved,
            std::cmp::Reverse(newest(i)),
        )
    });
    list
}

pub(crate) fn html(board: &StatusBoard, components: &[Component], now_ms: i64) -> String {
    let (published, _) = board.published();
    let (level, words) = indicator(components);
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{NO_ICON}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <title>{title} status</title>\
         <link rel=\"alternate\" type=\"application/atom+xml\" href=\"/status/feed.atom\">\
         <style>body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:44em;padding:0 1em;color:#111}}\
         .banner{{padding:1em;border-radius:6px;font-size:1.2em}}.none{{background:#dcfce7}}\
         .minor,.maintenance{{background:#fef9c3}}.major{{background:#fed7aa}}.critical{{background:#fecaca}}\
         table{{width:100%;border-collapse:collapse}}td{{padding:.5em;border-bottom:1px solid #ddd}}\
         .operational{{color:#15803d}}.degraded_performance,.under_maintenance{{color:#a16207}}\
         .partial_outage{{color:#c2410c}}.major_outage{{color:#b91c1c}}.muted{{color:#666}}</style></head>\
         <body><h1>{title}</h1><p id=\"indicator\" class=\"banner {level}\" data-indicator=\"{level}\">{words}</p>\
         <h2>Components</h2><table id=\"components\">",
        title = escape(&board.title),
    );
    for c in components {
        out.push_str(&format!(
            "<tr data-component=\"{name}\" data-status=\"{status}\"><td>{label}</td>\
             <td class=\"{status}\">{words}</td></tr>",
            name = c.name,
            label = label(c.name),
            status = c.status.code(),
            words = c.status.words(),
        ));
        if let Some(description) = &c.description {
            out.push_str(&format!(
                "<tr><td colspan=\"2\" class=\"muted\">{}</td></tr>",
                escape(description)
            ));
        }
    }
    out.push_str("</table><h2>Incidents</h2>");
    let incidents = ordered(&published.incidents);
    if incidents.is_empty() {
        out.push_str("<p class=\"muted\">No incidents reported.</p>");
    }
    for incident in incidents {
        out.push_str(&format!(
            "<section class=\"incident\" data-incident=\"{}\" data-status=\"{}\"><h3>{}</h3>",
            incident.id,
            incident.status().code(),
            escape(&incident.name)
        ));
        for update in &incident.updates {
            out.push_str(&format!(
                "<p><strong>{}</strong> — {} <span class=\"muted\">({} UTC)</span></p>",
                update_words(update.status),
                escape(&update.body),
                rfc3339(update.at_ms)
            ));
        }
        out.push_str("</section>");
    }
    let upcoming: Vec<_> = published
        .maintenance
        .iter()
        .filter(|m| m.to_ms > now_ms)
        .collect();
    if !upcoming.is_empty() {
        out.push_str("<h2>Scheduled maintenance</h2>");
        for m in upcoming {
            out.push_str(&format!(
                "<p class=\"maintenance-window\">{} — {} to {} UTC ({})</p>",
                escape(&m.name),
                rfc3339(m.from_ms),
                rfc3339(m.to_ms),
                escape(&m.components.join(", "))
            ));
        }
    }
    out.push_str(
        "<p class=\"muted\">This page is served by the store's gateway, apart from the shop, \
         so it answers when the shop cannot. <a href=\"/status.json\">JSON</a> · \
         <a href=\"/status/feed.atom\">Atom feed</a></p></body></html>",
    );
    out
}

fn label(name: &str) -> &'static str {
    match name {
        "storefront" => "Storefront",
        "checkout" => "Checkout",
        "sale" => "The sale",
        _ => "Waiting room",
    }
}

pub(crate) fn json(board: &StatusBoard, components: &[Component], now_ms: i64) -> Value {
    let (published, _) = board.published();
    let (level, words) = indicator(components);
    json!({
        "page": { "name": board.title, "updated_at": rfc3339(now_ms) },
        "status": { "indicator": level, "description": words },
        "components": components,
        "incidents": ordered(&published.incidents)
            .into_iter()
            .filter(|i| i.status() != UpdateStatus::Resolved)
            .collect::<Vec<_>>(),
        "scheduled_maintenances": published.maintenance.iter().filter(|m| m.to_ms > now_ms).collect::<Vec<_>>(),
    })
}

/// `/api/v2/summary.json` as Atlassian Statuspage serves it, for the
/// widgets and aggregators that read that.
pub(crate) fn summary(board: &StatusBoard, components: &[Component], now_ms: i64) -> Value {
    let (published, _) = board.published();
    let (level, words) = indicator(components);
    let components: Vec<Value> = components
        .iter()
        .enumerate()
        .map(|(n, c)| {
            json!({
                "id": c.name,
                "name": label(c.name),
                "status": c.status,
                "description": c.description,
                "position": n + 1,
                "updated_at": rfc3339(now_ms),
            })
        })
        .collect();
    let incidents: Vec<Value> = ordered(&published.incidents)
        .into_iter()
        .filter(|i| i.status() != UpdateStatus::Resolved)
        .map(|i| {
            json!({
                "id": i.id.to_string(),
                "name": i.name,
                "status": i.status(),
                "created_at": rfc3339(i.updates.last().map_or(now_ms, |u| u.at_ms)),
                "updated_at": rfc3339(i.updates.first().map_or(now_ms, |u| u.at_ms)),
                "incident_updates": i.updates.iter().map(|u| json!({
                    "status": u.status,
                    "body": u.body,
                    "created_at": rfc3339(u.at_ms),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "page": { "id": "flashguard", "name": board.title, "url": "/status", "updated_at": rfc3339(now_ms) },
        "status": { "indicator": level, "description": words },
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": published.maintenance.iter().filter(|m| m.to_ms > now_ms).map(|m| json!({
            "name": m.name,
            "scheduled_for": rfc3339(m.from_ms),
            "scheduled_until": rfc3339(m.to_ms),
            "components": m.components,
        })).collect::<Vec<_>>(),
    })
}

/// Every public update as an Atom entry, newest first.
pub(crate) fn atom(board: &StatusBoard, now_ms: i64) -> String {
    let (published, _) = board.published();
    let mut entries: Vec<(&PublicIncident, &super::PublicUpdate)> = published
        .incidents
        .iter()
        .flat_map(|i| i.updates.iter().map(move |u| (i, u)))
        .collect();
    entries.sort_by_key(|(_, u)| std::cmp::Reverse(u.at_ms));
    let updated = entries.first().map_or(now_ms, |(_, u)| u.at_ms);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\
         <id>urn:flashguard:status</id><title>{} status</title><updated>{}</updated>\
         <link rel=\"alternate\" href=\"/status\"/>",
        escape(&board.title),
        rfc3339(updated)
    );
    for (incident, update) in entries {
        out.push_str(&format!(
            "<entry><id>urn:flashguard:incident:{}:{}</id><title>{}: {}</title><updated>{}</updated>\
             <content type=\"text\">{}</content></entry>",
            incident.id,
            update.at_ms,
            update_words(update.status),
            escape(&incident.name),
            rfc3339(update.at_ms),
            escape(&update.body)
        ));
    }
    out.push_str("</feed>");
    out
}
