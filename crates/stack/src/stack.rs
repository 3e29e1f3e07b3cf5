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
use crate::cpu_quota::CpuQuotas;
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
    /// The shops' CPU quotas, when asked for and available.
    quotas: Option<CpuQuotas>,
    /// Said once when quotas were asked for but could not be set.
    pub(crate) quota_note: Option<String>,
    /// Shops the autoscaler added, newest last, each with a stage of its
    /// own so that it can be stopped alone.
    scaled: Vec<(Arc<Part>, Stage)>,
    /// Shops the autoscaler has added ever: the next one's number.
    scaled_ever: usize,
    /// The parts as the control API lists them, kept up to date.
    listed: crate::control::PartList,
}

impl Stack {
    /// Starts every part and waits until each is ready.
    pub(crate) async fn start(
        config: StackConfig,
        exe: PathBuf,
        logs: LogPolicy,
    ) -> Result<Stack, StackError> {
        let mut stack = Stack::start_back(config, exe, logs).await?;
        stack.start_front().await?;
        Ok(stack)
    }

    /// Starts the shops and waits until they are ready: what the
    /// rehearsal measures before it sizes the front.
    pub(crate) async fn start_back(
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
            quotas: None,
            quota_note: None,
            scaled: Vec::new(),
            scaled_ever: 0,
            listed: Default::default(),
        };
        stack.start_shops();
        stack.wait_until_ready().await?;
        Ok(stack)
    }

    /// The gateway (when there is one) and the monitor, once the shops
    /// run; `room` replaces the configured waiting room.
    pub(crate) async fn start_front(&mut self) -> Result<(), StackError> {
        if self.config.gateway {
            self.start_gateway().await?;
        }
        self.start_monitor().await?;
        self.wait_until_ready().await
    }

    /// The waiting room the gateway will start with.
    pub(crate) fn set_waiting_room(&mut self, room: flashguard_gateway::room::RoomFile) {
        self.config.waiting_room = Some(room);
    }

    /// The shops' addresses (`http://IP:PORT`), primaries first.
    pub(crate) async fn shop_urls(&self) -> Result<Vec<String>, StackError> {
        let mut urls = Vec::with_capacity(self.shops.len());
        for shop in &self.shops {
            urls.push(address(shop).await?);
        }
        Ok(urls)
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
            cpu_group: None,
        }
    }

    /// The primary shops and the backups, all on the one database; the
    /// first seeds the demo sale.
    fn start_shops(&mut self) {
        if let Some(cores) = self.config.shop_cpu {
            match CpuQuotas::create(cores) {
                Ok(quotas) => self.quotas = Some(quotas),
                Err(err) => {
                    let note = format!(
                        "no CPU quota for the shops ({err}); their capacity is not limited"
                    );
                    tracing::warn!("{note}");
                    self.quota_note = Some(note);
                }
            }
        }
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
            let mut spec = self.spec(name, kind, args, "127.0.0.1:0");
            spec.cpu_group = self.cpu_group(&spec.name);
            let shop = Part::new(spec);
            self.back.supervise(&shop, &self.config);
            self.shops.push(shop);
        }
    }

    /// A part's CPU group, when the shops have quotas.
    fn cpu_group(&self, part: &str) -> Option<PathBuf> {
        let quotas = self.quotas.as_ref()?;
        quotas
            .group(part)
            .map_err(|err| tracing::warn!(part, %err, "no CPU group for the part"))
            .ok()
    }

    /// The gateway, with every shop as a backend (backups in the backup
    /// pool), once each has printed its address; its waiting room and its
    /// TLS, if any, in a gateway.toml beside the logs.
    async fn start_gateway(&mut self) -> Result<(), StackError> {
        let config = &self.config;
        let mut args = vec![
            "--admin-listen".to_string(),
            config.gateway_admin_listen.clone(),
        ];
        if config.waiting_room.is_some() || config.tls.is_some() {
            let path = self.write_gateway_config()?;
            args.extend(["--config".to_string(), path.display().to_string()]);
        }
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
        if let Some(monitor_config) = &self.config.monitor_config {
            args.extend(["--config".to_string(), monitor_config.clone()]);
        }
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

    /// Every part: shops (with those the autoscaler added), gateway,
    /// monitor.
    pub(crate) fn parts(&self) -> Vec<Arc<Part>> {
        let mut parts = self.shops.clone();
        parts.extend(self.scaled.iter().map(|(shop, _)| Arc::clone(shop)));
        parts.extend(self.gateway.iter().cloned());
        parts.extend(self.monitor.iter().cloned());
        parts
    }

    /// The parts for the control API, which follows every shop added or
    /// removed from now on.
    pub(crate) fn part_list(&self) -> crate::control::PartList {
        self.relist();
        Arc::clone(&self.listed)
    }

    fn relist(&self) {
        *self.listed.write().unwrap_or_else(|p| p.into_inner()) = self.parts();
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

    /// gateway.toml with the waiting room and `[tls]`, in the logs folder
    /// (or the system's temporary one). The certificate paths are written
    /// as given: the gateway runs in this process's folder, as relative
    /// paths expect.
    fn write_gateway_config(&self) -> Result<PathBuf, StackError> {
        #[derive(serde::Serialize)]
        struct GatewayFile<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            waiting_room: Option<&'a flashguard_gateway::room::RoomFile>,
            #[serde(skip_serializing_if = "Option::is_none")]
            tls: Option<&'a flashguard_gateway::edge::config::TlsFile>,
        }
        let file = GatewayFile {
            waiting_room: self.config.waiting_room.as_ref(),
            tls: self.config.tls.as_ref().map(|(file, _)| file),
        };
        let dir = self.logs.dir.clone().unwrap_or_else(std::env::temp_dir);
        let path = dir.join(format!("gateway-{}.toml", std::process::id()));
        let text = toml::to_string(&file)
            .map_err(|err| StackError::GatewayConfig(std::io::Error::other(err)))?;
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(StackError::GatewayConfig)?;
        Ok(path)
    }

    /// An autoscaling decision, on the monitor's timeline.
    pub(crate) fn record_scaling(&self, shop: &str, summary: String, data: serde_json::Value) {
        tracing::info!(shop, "{summary}");
        self.timeline.record(
            flashguard_telemetry::EventKind::Scaling,
            shop,
            summary,
            data,
        );
    }

    /// The primary shops' CPU time so far, in s, and the quota of each in
    /// cores: None without quotas (the ratio would mean nothing).
    pub(crate) fn shops_cpu(&self) -> Option<(f64, f64)> {
        let cores = self.quotas.as_ref().and(self.config.shop_cpu)?;
        let pids = self
            .shops
            .iter()
            .filter(|s| s.spec.kind == Kind::Shop)
            .chain(self.scaled.iter().map(|(s, _)| s))
            .filter_map(|s| s.pid());
        let seconds = pids.filter_map(part::cpu_seconds).sum();
        Some((seconds, cores))
    }

    pub(crate) fn admin_token(&self) -> &str {
        &self.config.admin_token
    }

    /// Primary shops serving now: the configured and the added ones.
    pub(crate) fn primaries(&self) -> usize {
        self.config.shops + self.scaled.len()
    }

    /// The gateway's admin API (`http://ADDR`) and the admin token.
    pub(crate) fn gateway_admin(&self) -> Option<(String, String)> {
        let admin = self.gateway.as_ref()?.view().admin_addr?;
        Some((admin, self.config.admin_token.clone()))
    }

    /// Where the catalogue is read: the shops, in turn, not the
    /// gateway, whose answers may be a waiting room's, or over TLS with a
    /// certificate the stack has no reason to trust.
    pub(crate) fn catalogue_sources(&self) -> Vec<String> {
        self.shops
            .iter()
            .filter_map(|shop| shop.view().addr)
            .collect()
    }

    /// One shop more: started (with the shops' quota), ready, warmed with
    /// a few catalogue reads (the pool filled, the code paged in), then
    /// given to the gateway, which ramps it in with slow start. Its name.
    pub(crate) async fn add_shop(&mut self, http: &reqwest::Client) -> Result<String, StackError> {
        self.scaled_ever += 1;
        let name = format!("shop-{}", self.config.shops + self.scaled_ever);
        let mut args = vec!["--db".to_string(), self.config.database_url.clone()];
        if let Some(shop_config) = &self.config.shop_config {
            args.extend(["--config".to_string(), shop_config.clone()]);
        }
        let mut spec = self.spec(name.clone(), Kind::Shop, args, "127.0.0.1:0");
        spec.cpu_group = self.cpu_group(&name);
        let shop = Part::new(spec);
        let mut stage = Stage::new();
        stage.supervise(&shop, &self.config);
        // Ready, warmed, then the gateway's; on any failure the shop is
        // stopped, not left running outside the stack's list.
        let joined = async {
            let addr = address(&shop).await?;
            if !part::wait_ready(&addr, "/readyz", READY_WITHIN).await {
                return Err(StackError::NotReady {
                    part: name.clone(),
                    seconds: READY_WITHIN.as_secs(),
                });
            }
            for _ in 0..5 {
                let _ = http.get(format!("{addr}/api/products")).send().await;
            }
            if let Some((admin, token)) = self.gateway_admin() {
                let body = serde_json::json!({
                    "name": name,
                    "addr": addr.trim_start_matches("http://"),
                    "pool": "primary",
                });
                let added = http
                    .post(format!("{admin}/admin/backends"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|err| {
                        StackError::Scaling(format!("adding {name} to the gateway: {err}"))
                    })?;
                if !added.status().is_success() {
                    return Err(StackError::Scaling(format!(
                        "the gateway refused {name}: {}",
                        added.status()
                    )));
                }
            }
            Ok(addr)
        };
        let addr = match joined.await {
            Ok(addr) => addr,
            Err(err) => {
                stage.stop().await;
                return Err(err);
            }
        };
        // The monitor scrapes it from its next tick (as it does the
        // shops it was started with).
        if let Some(monitor) = self.monitor.as_ref().and_then(|m| m.view().addr) {
            let added = http
                .post(format!("{monitor}/api/targets"))
                .bearer_auth(&self.config.admin_token)
                .json(&serde_json::json!({ "name": name, "url": addr }))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            if let Err(err) = added {
                tracing::warn!(%err, shop = %name, "the monitor was not told of the shop");
            }
        }
        self.scaled.push((shop, stage));
        self.relist();
        Ok(name)
    }

    /// The newest added shop, drained at the gateway (its requests finish
    /// there first), then stopped. Its name; None when none was added.
    pub(crate) async fn remove_shop(&mut self, http: &reqwest::Client) -> Option<String> {
        let (shop, stage) = self.scaled.pop()?;
        self.relist();
        let name = shop.spec.name.clone();
        if let Some((admin, token)) = self.gateway_admin() {
            let _ = http
                .post(format!("{admin}/admin/backends/{name}/drain"))
                .bearer_auth(&token)
                .send()
                .await;
            // Drained means removed from the gateway's list.
            let deadline = tokio::time::Instant::now() + self.config.stop_grace;
            while tokio::time::Instant::now() < deadline {
                let gone = match http
                    .get(format!("{admin}/admin/backends"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(answer) => answer
                        .json::<Vec<serde_json::Value>>()
                        .await
                        .is_ok_and(|list| list.iter().all(|b| b["name"] != name.as_str())),
                    // The gateway is gone: nothing sends the shop traffic.
                    Err(_) => true,
                };
                if gone {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        stage.stop().await;
        if let Some(monitor) = self.monitor.as_ref().and_then(|m| m.view().addr) {
            let _ = http
                .delete(format!("{monitor}/api/targets/{name}"))
                .bearer_auth(&self.config.admin_token)
                .send()
                .await;
        }
        Some(name)
    }

    /// Stops the gateway (it drains) and the monitor, then the shops, and
    /// removes the shops' CPU groups.
    pub(crate) async fn stop(self) {
        tracing::info!("stopping the stack: gateway first, then the shops");
        self.front.stop().await;
        for (_, stage) in self.scaled {
            stage.stop().await;
        }
        self.back.stop().await;
        if let Some(quotas) = &self.quotas {
            quotas.remove();
        }
    }
}

/// The address a part printed, once it has.
async fn address(part: &Part) -> Result<String, StackError> {
    part.addr().await.ok_or_else(|| StackError::NoAddress {
        part: part.spec.name.clone(),
    })
}
