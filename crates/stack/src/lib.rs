//! flashguard's stack: every part on one machine, supervised (`up`), and
//! the rehearsal that starts one, throws a flash sale at it and tears it
//! down (`rehearse`). Shops start first (their addresses go to the
//! gateway), then the gateway, then the monitor (`stack`); a part that dies
//! is restarted with back-off on the same address (`part`); on stop the
//! gateway drains first, then the shops. Children exit when the stack
//! does, even if it is SIGKILLed (they watch a pipe from it); their logs go
//! to files (`logs`).

mod autoscale;
mod calibrate;
mod config;
mod control;
pub mod cpu_quota;
mod logs;
mod part;
mod plan;
mod rehearsal;
mod scaling;
mod stack;
mod timeline;

use std::future::Future;
use std::path::PathBuf;

use tokio::net::TcpListener;

pub use autoscale::{AutoscaleRules, Autoscaler, Decision, SaleWindow, Signals};
pub use calibrate::CalibrationError;
pub use config::{AutoscaleFile, StackConfig, StackConfigError, StackFile};
pub use logs::{Echo, LogPolicy};
pub use part::{Kind, PartState, PartView};
pub use plan::{plan, CapacityPlan, PlanError, PlanRequest, Step};
pub use rehearsal::{rehearse, Rehearsal, RehearsalError, Rehearsed, Story};

use control::ControlServer;
use stack::Stack;

/// Where a person finds the running stack.
#[derive(Debug, Clone)]
pub struct Urls {
    pub storefront: String,
    pub gateway_admin: String,
    pub monitor: String,
    pub control: String,
    pub admin_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("scaling: {0}")]
    Scaling(String),
    #[error("{part} did not come up: it printed no address")]
    NoAddress { part: String },
    #[error("{part} did not become ready within {seconds} s")]
    NotReady { part: String, seconds: u64 },
    #[error("control API: {0}")]
    Control(std::io::Error),
    #[error("writing the gateway's config: {0}")]
    GatewayConfig(std::io::Error),
}

/// Runs the stack until `shutdown` completes. `exe` is the flashguard
/// binary the parts run, `logs` says where their logs go; `ready` is
/// called once every part is up, with where to find it and each part.
pub async fn run(
    control: TcpListener,
    config: StackConfig,
    exe: PathBuf,
    logs: LogPolicy,
    ready: impl FnOnce(&Urls, &[PartView]),
    shutdown: impl Future<Output = ()>,
) -> Result<(), StackError> {
    let autoscale = config.autoscale.clone();
    let mut stack = Stack::start(config, exe, logs).await?;
    let control =
        ControlServer::start(control, stack.part_list(), stack.admin_token().to_string())?;
    ready(&stack.urls(control.url().to_string()), &stack.views());
    match autoscale {
        Some((rules, step)) => {
            tokio::select! {
                () = shutdown => {}
                () = scaling::drive(&mut stack, rules, step) => {}
            }
        }
        None => shutdown.await,
    }
    stack.stop().await;
    control.stop().await;
    Ok(())
}
