//! The running stack, started in named steps — shops, then the gateway with
//! their addresses, then the monitor with every part as a target, then a
//! wait until each is ready — and stopped in order: the gateway (it drains)
//! and the monitor first, then the shops.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::StackConfig;
use crate::logs::{LogPolicy, PartLog};
use crate::part::{self, Kind, Part, PartSpec, PartView};
use crate::timeline::Timeline;
use crate::{StackError, Urls};

/// How long a part may take to become ready (migrations, health checks).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A stage of the stack, stopped together.
struct Stage {
    stop: watch::Sender<bool>,
    supervisors: Vec<JoinHandle<()>>,
}

impl Stage {
    fn new() -> Stage {
        Stage {
            stop: watch::channel(false).0,
            supervisors: Vec::new(),
        }
    }

    fn supervise(&mut self, part: &Arc<Part>, config: &StackConfig) {
        let backoff = (config.restart_backoff, config.max_restart_backoff);
        let task = Arc::clone(part).supervise(self.stop.subscribe(), backoff, config.stop_grace);
        self.supervisors.push(tokio::spawn(task));
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for supervisor in self.supervisors {
            let _ = supervisor.await;
        }
    }
}

pub(crate) struct Stack {
    config: StackConfig,
    exe: PathBuf,
    logs: LogPolicy,
    timeline: Arc<Timeline>,
    shops: Vec<Arc<Part>>,
    gateway: Option<Arc<Part>>,
    monitor: Option<Arc<Part>>,
    /// The gateway and the monitor: stopped first.
    front: Stage,
    /// The shops: stopped once nothing sends them traffic.
    back: Stage,
}

impl Stack {
    /// Starts every part and waits until each is ready.
    pub(crate) async fn start(
        config: StackConfig,
        exe: PathBuf,
        logs: LogPolicy,
    ) -> Result<Stack, StackError> {
        let timeline = Timeline::start(config.admin_token.clone());
        let mut stack = Stack {
            config,
            exe,
            logs,
            timeline,
            shops: Vec::new(),
            gateway: None,
            monitor: None,
            front: Stage::new(),
            back: Stage::new(),
        };
        stack.start_shops();
        if stack.config.gateway {
            stack.start_gateway().await?;
        }
        stack.start_monitor().await?;
        stack.wait_until_ready().await?;
        Ok(stack)
    }

    fn spec(&self, name: String, kind: Kind, args: Vec<String>, listen: &str) -> PartSpec {
        PartSpec {
            log: PartLog::open(&self.logs, &name),
            name,
            kind,
            exe: self.exe.clone(),
            args,
            listen: listen.to_string(),
            admin_token: self.config.admin_token.clone(),
            timeline: Arc::clone(&self.timeline),
        }
    }

    /// The primary shops and the backups, all on the one database; the
    /// first seeds the demo sale.
    fn start_shops(&mut self) {
        let config = &self.config;
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
            let shop = Part::new(self.spec(name, kind, args, "127.0.0.1:0"));
            self.back.supervise(&shop, &self.config);
            self.shops.push(shop);
        }
    }

    /// The gateway, with every shop as a backend (backups in the backup
    /// pool), once each has printed its address.
    async fn start_gateway(&mut self) -> Result<(), StackError> {
        let config = &self.config;
        let mut args = vec![
            "--admin-listen".to_string(),
            config.gateway_admin_listen.clone(),
        ];
        for proxy in &config.trusted_proxies {
            args.extend(["--trust-proxy".to_string(), proxy.clone()]);
        }
        for shop in &self.shops {
            let addr = address(shop).await?;
            let flag = match shop.spec.kind {
                Kind::Backup => "--backup",
                _ => "--backend",
            };
            args.push(flag.to_string());
            args.push(format!(
                "{}={}",
                shop.spec.name,
                addr.trim_start_matches("http://")
            ));
        }
        let listen = config.listen.clone();
        let gateway = Part::new(self.spec("gateway".into(), Kind::Gateway, args, &listen));
        self.front.supervise(&gateway, &self.config);
        address(&gateway).await?;
        self.gateway = Some(gateway);
        Ok(())
    }

    /// The monitor, scraping every part (the gateway on its admin address)
    /// and following the gateway's events; the stack's own events go to it
    /// from now on.
    async fn start_monitor(&mut self) -> Result<(), StackError> {
        let mut args = vec![
            "--incidents-db".to_string(),
            self.config.incidents_db.clone(),
        ];
        for part in self.shops.iter().chain(&self.gateway) {
            let url = match part.spec.kind {
                Kind::Gateway => {
                    let admin = part.view().admin_addr.unwrap_or_default();
                    args.extend([
                        "--gateway".to_string(),
                        format!("{}={admin}", part.spec.name),
                    ]);
                    admin
                }
                _ => address(part).await?,
            };
            args.extend(["--target".to_string(), format!("{}={url}", part.spec.name)]);
        }
        let listen = self.config.monitor_listen.clone();
        let monitor = Part::new(self.spec("monitor".into(), Kind::Monitor, args, &listen));
        self.front.supervise(&monitor, &self.config);
        let url = address(&monitor).await?;
        self.timeline.set_monitor(&url);
        self.monitor = Some(monitor);
        Ok(())
    }

    /// Up means ready: migrations done, the gateway's checks passing.
    async fn wait_until_ready(&self) -> Result<(), StackError> {
        for part in self.parts() {
            let addr = match part.spec.kind {
                Kind::Gateway => part.view().admin_addr.unwrap_or_default(),
                _ => address(&part).await?,
            };
            if !part::wait_ready(&addr, "/readyz", READY_WITHIN).await {
                return Err(StackError::NotReady {
                    part: part.spec.name.clone(),
                    seconds: READY_WITHIN.as_secs(),
                });
            }
        }
        Ok(())
    }

    /// Every part: shops, gateway, monitor.
    pub(crate) fn parts(&self) -> Vec<Arc<Part>> {
        let mut parts = self.shops.clone();
        parts.extend(self.gateway.iter().cloned());
        parts.extend(self.monitor.iter().cloned());
        parts
    }

    pub(crate) fn views(&self) -> Vec<PartView> {
        self.parts().iter().map(|p| p.view()).collect()
    }

    /// Where a person finds it; `control` is the control API's address.
    pub(crate) fn urls(&self, control: String) -> Urls {
        let addr = |part: &Option<Arc<Part>>| part.as_ref().and_then(|p| p.view().addr);
        Urls {
            // Without a gateway (the original outage's architecture)
            // customers reach the first shop.
            storefront: addr(&self.gateway)
                .or_else(|| self.shops.first().and_then(|s| s.view().addr))
                .unwrap_or_default(),
            gateway_admin: self
                .gateway
                .as_ref()
                .and_then(|g| g.view().admin_addr)
                .unwrap_or_default(),
            monitor: addr(&self.monitor).unwrap_or_default(),
            control,
            admin_token: self.config.admin_token.clone(),
        }
    }

    /// Stops the gateway (it drains) and the monitor, then the shops.
    pub(crate) async fn stop(self) {
        tracing::info!("stopping the stack: gateway first, then the shops");
        self.front.stop().await;
        self.back.stop().await;
    }
}

/// The address a part printed, once it has.
async fn address(part: &Part) -> Result<String, StackError> {
    part.addr().await.ok_or_else(|| StackError::NoAddress {
        part: part.spec.name.clone(),
    })
}
