//! The incident file: incidents and events in SQLite, so an incident and
//! its timeline survive a restart of the monitor.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use super::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum IncidentDbError {
    #[error("opening the incident file {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("incident file: {0}")]
    Query(#[from] sqlx::Error),
    #[error("incident file: an event's {0}")]
    Unreadable(#[from] flashguard_telemetry::UnknownKind),
}

/// An incident's row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IncidentRow {
    pub id: i64,
    pub title: String,
    pub opened_ms: i64,
    pub resolved_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Db {
    pool: SqlitePool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    opened_ms INTEGER NOT NULL,
    resolved_ms INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    summary TEXT NOT NULL,
    data TEXT NOT NULL,
    -- Set for notes, which belong to one incident whenever they are written.
    incident_id INTEGER REFERENCES incidents(id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events(at_ms);
CREATE INDEX IF NOT EXISTS events_by_incident ON events(incident_id);
";

impl Db {
    pub(crate) async fn open(path: &Path) -> Result<Db, IncidentDbError> {
        let open_error = |source| IncidentDbError::Open {
            path: path.display().to_string(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_error)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(open_error)?;
        Ok(Db { pool })
    }

    pub(crate) async fn insert_event(
        &self,
        event: &Event,
        incident: Option<i64>,
    ) -> Result<i64, IncidentDbError> {
        let row = sqlx::query(
            "INSERT INTO events (at_ms, source, kind, subject, summary, data, incident_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(event.at_ms)
        .bind(&event.source)
        .bind(event.kind.as_str())
        .bind(&event.subject)
        .bind(&event.summary)
        .bind(event.data.to_string())
        .bind(incident)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get(0))
    }

    pub(crate) async fn open_incident(
        &self,
        title: &str,
        opened_ms: i64,
    ) -> Result<i64, IncidentDbError> {
        let row =
            sqlx::query("INSERT INTO incidents (title, opened_ms) VALUES (?, ?) RETURNING id")
                .bind(title)
                .bind(opened_ms)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.get(0))
    }

    pub(crate) async fn resolve_incident(
        &self,
        id: i64,
        resolved_ms: i64,
    ) -> Result<(), IncidentDbError> {
        sqlx::query("UPDATE incidents SET resolved_ms = ? WHERE id = ?")
            .bind(resolved_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn incidents(&self, limit: i64) -> Result<Vec<IncidentRow>, IncidentDbError> {
        let rows = sqlx::query(
            "SELECT id, title, opened_ms, resolved_ms FROM incidents ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(incident_row).collect())
    }

    pub(crate) async fn incident(&self, id: i64) -> Result<Option<IncidentRow>, IncidentDbError> {
        let row =
            sqlx::query("SELECT id, title, opened_ms, resolved_ms FROM incidents WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(incident_row))
    }

    /// The open incident, if any (the newest unresolved one).
    pub(crate) async fn open_one(&self) -> Result<Option<IncidentRow>, IncidentDbError> {
        let row = sqlx::query(
            "SELECT id, title, opened_ms, resolved_ms FROM incidents \
             WHERE resolved_ms IS NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(incident_row))
    }

    /// The incident's events: those written for it (notes) and every
    /// unattached event between `from_ms` and `to_ms`.
    /// With `newest`, only that many of the latest events (still oldest
    /// first); otherwise the first 5,000.
    pub(crate) async fn timeline(
        &self,
        id: i64,
        from_ms: i64,
        to_ms: i64,
        newest: Option<u32>,
    ) -> Result<Vec<Event>, IncidentDbError> {
        let (order, limit) = match newest {
            Some(n) => ("DESC", n),
            None => ("ASC", 5000),
        };
        let rows = sqlx::query(&format!(
            "SELECT id, at_ms, source, kind, subject, summary, data FROM events \
             WHERE incident_id = ? OR (incident_id IS NULL AND at_ms BETWEEN ? AND ?) \
             ORDER BY at_ms {order}, id {order} LIMIT ?"
        ))
        .bind(id)
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows.iter().map(event_row).collect::<Result<Vec<_>, _>>()?;
        if newest.is_some() {
            events.reverse();
        }
        Ok(events)
    }

    /// Every event of one kind between the times, oldest first.
    pub(crate) async fn events_of_kind(
        &self,
        kind: flashguard_telemetry::EventKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Event>, IncidentDbError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, source, kind, subject, summary, data FROM events \
             WHERE kind = ? AND at_ms BETWEEN ? AND ? ORDER BY at_ms, id LIMIT 5000",
        )
        .bind(kind.as_str())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// The newest event time a source recorded, to resume polling it.
    pub(crate) async fn last_event_ms(&self, source: &str) -> Result<i64, IncidentDbError> {
        let row = sqlx::query("SELECT COALESCE(MAX(at_ms), 0) FROM events WHERE source = ?")
            .bind(source)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    /// Forgets events older than `before_ms` that no incident needs.
    pub(crate) async fn prune(&self, before_ms: i64) -> Result<u64, IncidentDbError> {
        let done = sqlx::query(
            "DELETE FROM events WHERE at_ms < ? AND incident_id IS NULL AND NOT EXISTS \
             (SELECT 1 FROM incidents i WHERE events.at_ms BETWEEN i.opened_ms - 600000 \
              AND COALESCE(i.resolved_ms, 9223372036854775807))",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

fn event_row(row: &sqlx::sqlite::SqliteRow) -> Result<Event, IncidentDbError> {
    Ok(Event {
        id: row.get(0),
        at_ms: row.get(1),
        source: row.get(2),
        kind: row.get::<&str, _>(3).parse()?,
        subject: row.get(4),
        summary: row.get(5),
        data: serde_json::from_str(row.get::<&str, _>(6)).unwrap_or_default(),
    })
}

fn incident_row(row: &sqlx::sqlite::SqliteRow) -> IncidentRow {
    IncidentRow {
        id: row.get(0),
        title: row.get(1),
        opened_ms: row.get(2),
        resolved_ms: row.get(3),
    }
}
