//! flashguard's stack: every part on one machine, supervised. Shops start
//! first (their addresses go to the gateway), then the gateway; a part that
//! dies is restarted with back-off on the same address; on stop the gateway
//! drains first, then the shops. Children exit when the stack does, even
//! if it is SIGKILLed (they watch a pipe from it).

mod config;
mod control;
mod part;
mod timeline;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{StackConfig, StackConfigError, StackFile};
pub use part::{Kind, PartState, PartView};

use part::{Part, PartSpec};

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
    #[error("{part} did not come up: it printed no address")]
    NoAddress { part: String },
    #[error("{part} did not become ready within {seconds} s")]
    NotReady { part: String, seconds: u64 },
    #[error("control API: {0}")]
    Control(std::io::Error),
}

/// Runs the stack until `shutdown` completes. `exe` is the flashguard
/// binary the parts run; `ready` is called once every part is up.
pub async fn run(
    control: TcpListener,
    config: StackConfig,
    exe: PathBuf,
    ready: impl FnOnce(&Urls),
    shutdown: impl Future<Output = ()>,
) -> Result<(), StackError> {
    let (stop_shops, shops_stopping) = watch::channel(false);
    let (stop_gateway, gateway_stopping) = watch::channel(false);
    let gateway_stopping_for_monitor = gateway_stopping.clone();
    let backoff = (config.restart_backoff, config.max_restart_backoff);
    let timeline = timeline::Timeline::start(config.admin_token.clone());
    let spec = |name: String, kind, args: Vec<String>, listen: &str| PartSpec {
        name,
        kind,
        exe: exe.clone(),
        args,
        listen: listen.to_string(),
        admin_token: config.admin_token.clone(),
        timeline: Arc::clone(&timeline),
    };
    let mut shops = Vec::new();
    for n in 0..config.shops + config.backups {
        let (name, kind) = if n < config.shops {
            (format!("shop-{}", n + 1), Kind::Shop)
        } else {
            (format!("backup-{}", n - config.shops + 1), Kind::Backup)
        };
        let mut args = vec!["--db".to_string(), config.database_url.clone()];
        if n == 0 && config.demo {
            args.push("--demo".into());
        }
        if let Some(shop_config) = &config.shop_config {
            args.extend(["--config".to_string(), shop_config.clone()]);
        }
        shops.push(Part::new(spec(name, kind, args, "127.0.0.1:0")));
    }
    let mut supervisors = Vec::new();
    for shop in &shops {
        let task = Arc::clone(shop).supervise(shops_stopping.clone(), backoff, config.stop_grace);
        supervisors.push(tokio::spawn(task));
    }
    let mut parts = shops.clone();
    let mut gateway_task = None;
    let (storefront, gateway_admin) = if config.gateway {
        let mut gateway_args = vec![
            "--admin-listen".to_string(),
            config.gateway_admin_listen.clone(),
        ];
        for proxy in &config.trusted_proxies {
            gateway_args.extend(["--trust-proxy".to_string(), proxy.clone()]);
        }
        for shop in &shops {
            let addr = shop.addr().await.ok_or_else(|| StackError::NoAddress {
                part: shop.spec.name.clone(),
            })?;
            let flag = if shop.spec.kind == Kind::Backup {
                "--backup"
            } else {
                "--backend"
            };
            gateway_args.push(flag.to_string());
            gateway_args.push(format!(
                "{}={}",
                shop.spec.name,
                addr.trim_start_matches("http://")
            ));
        }
        let gateway = Part::new(spec(
            "gateway".into(),
            Kind::Gateway,
            gateway_args,
            &config.listen,
        ));
        gateway_task = Some(tokio::spawn(Arc::clone(&gateway).supervise(
            gateway_stopping,
            backoff,
            config.stop_grace,
        )));
        let storefront = gateway.addr().await.ok_or_else(|| StackError::NoAddress {
            part: "gateway".into(),
        })?;
        parts.push(Arc::clone(&gateway));
        (storefront, gateway.view().admin_addr.unwrap_or_default())
    } else {
        // The original outage's architecture: customers reach one shop.
        let storefront = shops[0].addr().await.ok_or_else(|| StackError::NoAddress {
            part: shops[0].spec.name.clone(),
        })?;
        (storefront, String::new())
    };
    // The monitor watches every part: each shop's /metrics, and the
    // gateway's on its admin address.
    let mut monitor_args = vec!["--incidents-db".to_string(), config.incidents_db.clone()];
    for part in &parts {
        let url = match part.spec.kind {
            Kind::Gateway => {
                let admin = part.view().admin_addr.unwrap_or_default();
                monitor_args.push("--gateway".to_string());
                monitor_args.push(format!("{}={admin}", part.spec.name));
                admin
            }
            _ => part.addr().await.unwrap_or_default(),
        };
        monitor_args.push("--target".to_string());
        monitor_args.push(format!("{}={url}", part.spec.name));
    }
    let monitor = Part::new(spec(
        "monitor".into(),
        Kind::Monitor,
        monitor_args,
        &config.monitor_listen,
    ));
    let monitor_task = tokio::spawn(Arc::clone(&monitor).supervise(
        gateway_stopping_for_monitor,
        backoff,
        config.stop_grace,
    ));
    let monitor_url = monitor.addr().await.ok_or_else(|| StackError::NoAddress {
        part: "monitor".into(),
    })?;
    parts.push(monitor);
    timeline.set_monitor(&monitor_url);
    // Up means ready: migrations done, health checks passing.
    const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
    for part in &parts {
        let (addr, path) = match part.spec.kind {
            Kind::Gateway => (part.view().admin_addr.unwrap_or_default(), "/readyz"),
            _ => (part.addr().await.unwrap_or_default(), "/readyz"),
        };
        if !part::wait_ready(&addr, path, READY_WITHIN).await {
            return Err(StackError::NotReady {
                part: part.spec.name.clone(),
                seconds: READY_WITHIN.as_secs(),
            });
        }
    }
    let parts = Arc::new(parts);
    let control_addr = control.local_addr().map_err(StackError::Control)?;
    let (stop_control, mut control_stopping) = watch::channel(false);
    let app = control::router(Arc::clone(&parts));
    let control_server = tokio::spawn(async move {
        axum::serve(control, app)
            .with_graceful_shutdown(async move {
                let _ = control_stopping.wait_for(|stop| *stop).await;
            })
            .await
    });
    ready(&Urls {
        storefront,
        gateway_admin,
        monitor: monitor_url,
        control: format!("http://{control_addr}"),
        admin_token: config.admin_token.clone(),
    });

    shutdown.await;
    tracing::info!("stopping the stack: gateway first, then the shops");
    let _ = stop_gateway.send(true);
    if let Some(gateway_task) = gateway_task {
        let _ = gateway_task.await;
    }
    let _ = monitor_task.await;
    let _ = stop_shops.send(true);
    for supervisor in supervisors {
        let _ = supervisor.await;
    }
    let _ = stop_control.send(true);
    let _ = control_server.await;
    Ok(())
}
