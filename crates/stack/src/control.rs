//! The control API the drill's chaos actions use: list the parts, and kill,
//! stop, continue or restart one of them. Every call but `/healthz` needs
//! the stack's admin token: whoever reaches this port could otherwise
//! stop the store.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flashguard_telemetry::{ChaosAction, EventKind};
use nix::sys::signal::Signal;
use serde_json::json;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::part::{signal, Part, PartState};
use crate::StackError;

/// The parts the control API knows: shared with the stack, which adds and
/// removes the shops its autoscaler starts and stops.
pub(crate) type PartList = Arc<std::sync::RwLock<Vec<Arc<Part>>>>;

/// The control API serving on its listener until stopped.
pub(crate) struct ControlServer {
    url: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ControlServer {
    pub(crate) fn start(
        listener: TcpListener,
        parts: PartList,
        admin_token: String,
    ) -> Result<ControlServer, StackError> {
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(StackError::Control)?
        );
        let (stop, mut stopping) = watch::channel(false);
        let app = router(parts, admin_token);
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            })
            .await
        });
        Ok(ControlServer { url, stop, task })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn router(parts: PartList, admin_token: String) -> Router {
    let token = Arc::new(admin_token);
    Router::new()
        .route("/parts", get(list))
        .route("/parts/{name}/{action}", post(act))
        .route_layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let token = Arc::clone(&token);
                async move {
                    match flashguard_telemetry::check_bearer(Some(&token), request.headers()) {
                        Ok(()) => next.run(request).await,
                        Err(_) => error(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "send Authorization: Bearer <the stack's admin token>",
                        ),
                    }
                }
            },
        ))
        .route("/healthz", get(flashguard_telemetry::healthz))
        .with_state(parts)
        .layer(axum::middleware::from_fn_with_state(
            flashguard_telemetry::FailedAuth::new(),
            flashguard_telemetry::limit_failed_auth,
        ))
}

async fn list(State(parts): State<PartList>) -> Response {
    let parts = parts.read().unwrap_or_else(|p| p.into_inner());
    Json(parts.iter().map(|p| p.view()).collect::<Vec<_>>()).into_response()
}

use flashguard_telemetry::json_error as error;

async fn act(
    State(parts): State<PartList>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let found = parts
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|p| p.spec.name == name)
        .cloned();
    let Some(part) = found else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_part",
            &format!("no part named {name}"),
        );
    };
    let Some(action) = ChaosAction::parse(&action) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_action",
            &format!("{action} is not kill, stop, continue or restart"),
        );
    };
    let (sig, state) = match action {
        ChaosAction::Restart => {
            part.spec.timeline.record(
                EventKind::Chaos,
                &name,
                format!("chaos: restart {name}"),
                json!({ "action": action, "pid": part.pid() }),
            );
            part.request_restart();
            return (StatusCode::ACCEPTED, Json(part.view())).into_response();
        }
        ChaosAction::Kill => (Signal::SIGKILL, None),
        ChaosAction::Stop => (Signal::SIGSTOP, Some(PartState::Stopped)),
        ChaosAction::Continue => (Signal::SIGCONT, Some(PartState::Running)),
    };
    let Some(pid) = part.pid() else {
        return error(
            StatusCode::CONFLICT,
            "not_running",
            &format!("{name} has no process right now"),
        );
    };
    if !signal(pid, sig) {
        return error(
            StatusCode::CONFLICT,
            "not_running",
            &format!("{name} (pid {pid}) is gone"),
        );
    }
    tracing::warn!(part = %name, pid, %action, "chaos action");
    part.spec.timeline.record(
        EventKind::Chaos,
        &name,
        format!("chaos: {action} {name} (pid {pid})"),
        json!({ "action": action, "pid": pid }),
    );
    if let Some(state) = state {
        part.set_state(state);
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({ "name": name, "pid": pid, "action": action })),
    )
        .into_response()
}
