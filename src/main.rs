//! The `flashguard` binary: one subcommand per part. It parses arguments,
//! installs tracing, loads config, binds the socket and hands over to the
//! part's `run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

/// The proxy and the shop allocate per request; mimalloc's thread-local
/// free lists measurably beat the system allocator there (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flashguard",
    version,
    about = "Keeps an online store up, and correct, through a flash sale."
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a shop: catalog, flash-sale stock, idempotent orders, storefront.
    Shop(ShopArgs),
    /// Run the gateway: load balancing with failover in front of the shops.
    Gateway(GatewayArgs),
    /// Run the whole stack on this machine: shops, backups, gateway, supervised.
    Up(UpArgs),
    /// Watch every part and the host: scrape each second, keep a bounded history, answer queries.
    Monitor(MonitorArgs),
    /// Throw a flash sale (and chaos) at a running system and check every invariant.
    Drill(DrillArgs),
    /// Start the stack, run the built-in flash sale with a crash, report, tear down.
    Rehearse(RehearseArgs),
}

#[derive(clap::Args)]
struct MonitorArgs {
    /// TOML config file; every setting has a default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:8003.
    #[arg(long)]
    listen: Option<String>,
    /// A target to scrape, NAME=URL (its /metrics); repeatable, added to the file's.
    #[arg(long = "target", value_name = "NAME=URL")]
    targets: Vec<String>,
    /// Collection interval in ms. Default 1000.
    #[arg(long)]
    interval_ms: Option<u64>,
    /// History kept, in seconds. Default 3600.
    #[arg(long)]
    retention_s: Option<u64>,
    /// Alert rules (TOML); a bad file is refused naming the rule and field.
    /// Without it, the default rules (README).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Print the rules as a Prometheus rule file and exit.
    #[arg(long)]
    export_rules: bool,
    /// A webhook to post the Alertmanager webhook payload (v4) to; repeatable.
    #[arg(long = "webhook", value_name = "URL")]
    webhooks: Vec<String>,
    /// An Alertmanager to post alerts to (its /api/v2/alerts); repeatable.
    #[arg(long = "alertmanager", value_name = "URL")]
    alertmanagers: Vec<String>,
    /// A gateway's admin API, NAME=URL, whose backend state changes go on
    /// incident timelines (with --admin-token); repeatable.
    #[arg(long = "gateway", value_name = "NAME=URL")]
    gateways: Vec<String>,
    /// The incident file (SQLite). Default flashguard-incidents.sqlite.
    #[arg(long)]
    incidents_db: Option<String>,
    /// Required of writes to the incident API; sent to gateways' admin APIs.
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(clap::Args)]
struct DrillArgs {
    /// The storefront: flashguard's gateway, a shop, or any server speaking the shop API.
    #[arg(long)]
    target: String,
    /// Scenario file (TOML); default the built-in flash sale with a crash.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// The stack's control API, for the scenario's chaos actions.
    #[arg(long)]
    control: Option<String>,
    /// Admin token of the target (for setting up items and the export).
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Where report.json goes.
    #[arg(long, default_value = "flashguard-report")]
    report_dir: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// The monitor, told when the drill starts and what it found, for the
    /// incident timeline and the postmortem.
    #[arg(long)]
    monitor: Option<String>,
}

#[derive(clap::Args)]
struct RehearseArgs {
    /// Where report.json goes.
    #[arg(long, default_value = "flashguard-report")]
    report_dir: PathBuf,
    /// Run the scenario in this share of its time (rates unchanged), e.g. 0.25.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Also run it against the original outage's architecture (one shop,
    /// no gateway, no shedding) and report both side by side.
    #[arg(long)]
    baseline: bool,
}

#[derive(clap::Args)]
struct UpArgs {
    /// TOML config file; every setting has a default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where customers connect (the gateway). Default 127.0.0.1:8000.
    #[arg(long)]
    listen: Option<String>,
    /// Admin token for every part; a random one if unset.
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// TOML config file; every setting has a default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address customers connect to. Default 127.0.0.1:8000.
    #[arg(long)]
    listen: Option<String>,
    /// Address of the admin API, /metrics and probes. Default 127.0.0.1:8001.
    #[arg(long)]
    admin_listen: Option<String>,
    /// A primary backend, NAME=IP:PORT (repeatable).
    #[arg(long = "backend", value_name = "NAME=ADDR")]
    backends: Vec<String>,
    /// A backup backend, NAME=IP:PORT (repeatable); serves only when no
    /// primary can.
    #[arg(long = "backup", value_name = "NAME=ADDR")]
    backups: Vec<String>,
    /// Bearer token for the admin API; without it the admin calls answer 403.
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A proxy (IP) whose X-Forwarded-For names the client; repeatable,
    /// added to the file's trusted_proxies.
    #[arg(long = "trust-proxy", value_name = "IP")]
    trusted_proxies: Vec<String>,
}

#[derive(clap::Args)]
struct ShopArgs {
    /// Address to listen on (port 0 picks a free port). Default 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    /// sqlite://PATH or postgres://... Default sqlite://flashguard.db.
    #[arg(long)]
    db: Option<String>,
    /// TOML config file; every setting has a default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed a demo flash sale if the store has none of its items.
    #[arg(long)]
    demo: bool,
    /// Bearer token for the admin API; without it the admin API is off.
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    flashguard_telemetry::init_tracing(cli.log_json);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = match cli.command {
        Command::Shop(args) => runtime.block_on(shop(args)),
        Command::Gateway(args) => runtime.block_on(gateway(args)),
        Command::Up(args) => runtime.block_on(up(args)),
        Command::Monitor(args) => runtime.block_on(monitor(args)),
        Command::Drill(args) => runtime.block_on(drill(args)),
        Command::Rehearse(args) => runtime.block_on(rehearse(args)),
    };
    // Do not wait for blocking threads: one may sit in a read of stdin
    // (the parent watch) that only ends when the parent does.
    runtime.shutdown_background();
    result
}

async fn shop(args: ShopArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => flashguard_shop::ConfigFile::load(path)?,
        None => flashguard_shop::ConfigFile::default(),
    };
    let mut config = file.validate()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(db) = args.db {
        config.database_url = db;
    }
    config.demo |= args.demo;
    config.admin_token = args.admin_token.filter(|token| !token.trim().is_empty());
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("listening on http://{addr}");
    flashguard_shop::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    use flashguard_gateway::{BackendFile, ConfigFile, Pool};
    let mut file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    if let Some(listen) = args.listen {
        file.listen = listen;
    }
    if let Some(admin_listen) = args.admin_listen {
        file.admin_listen = admin_listen;
    }
    if args.admin_token.is_some() {
        file.admin_token = args.admin_token;
    }
    file.trusted_proxies.extend(args.trusted_proxies);
    let flagged = [
        ("backend", Pool::Primary, &args.backends),
        ("backup", Pool::Backup, &args.backups),
    ];
    for (flag, pool, list) in flagged {
        for entry in list {
            let (name, addr) = entry
                .split_once('=')
                .with_context(|| format!("--{flag} {entry}: expected NAME=IP:PORT"))?;
            file.backends.push(BackendFile {
                name: name.to_string(),
                addr: addr.to_string(),
                pool,
            });
        }
    }
    let config = file.validate()?;
    let proxy = flashguard_gateway::bind(&config.listen, config.reuse_port)?;
    let admin = flashguard_gateway::bind(&config.admin_listen, false)?;
    println!("listening on http://{}", proxy.local_addr()?);
    println!("admin on http://{}", admin.local_addr()?);
    let listeners = flashguard_gateway::Listeners { proxy, admin };
    flashguard_gateway::run(listeners, config, args.config, shutdown_signal()).await?;
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut file = match &args.config {
        Some(path) => flashguard_stack::StackFile::load(path)?,
        None => flashguard_stack::StackFile::default(),
    };
    if let Some(listen) = args.listen {
        file.listen = listen;
    }
    if args.admin_token.is_some() {
        file.admin_token = args.admin_token;
    }
    let config = file.validate()?;
    let control = TcpListener::bind(&config.control_listen)
        .await
        .with_context(|| format!("binding {}", config.control_listen))?;
    let exe = std::env::current_exe().context("finding the flashguard binary")?;
    let ready = |urls: &flashguard_stack::Urls| {
        println!("storefront on {}", urls.storefront);
        println!(
            "gateway admin on {}  (metrics at /metrics)",
            urls.gateway_admin
        );
        println!("monitor on {}", urls.monitor);
        println!("admin token {}", urls.admin_token);
        println!("control on {}", urls.control);
    };
    flashguard_stack::run(control, config, exe, ready, shutdown_signal()).await?;
    Ok(())
}

async fn monitor(args: MonitorArgs) -> anyhow::Result<()> {
    let mut file = match &args.config {
        Some(path) => flashguard_monitor::MonitorFile::load(path)?,
        None => flashguard_monitor::MonitorFile::default(),
    };
    if let Some(listen) = args.listen {
        file.listen = listen;
    }
    if let Some(interval) = args.interval_ms {
        file.interval_ms = interval;
    }
    if let Some(retention) = args.retention_s {
        file.retention_s = retention;
    }
    if let Some(rules) = &args.rules {
        file.rules = Some(rules.display().to_string());
    }
    for entry in &args.targets {
        file.add_target(entry)?;
    }
    file.webhooks.extend(args.webhooks);
    file.alertmanagers.extend(args.alertmanagers);
    for entry in &args.gateways {
        file.add_gateway(entry)?;
    }
    if let Some(path) = args.incidents_db {
        file.incidents_db = path;
    }
    if args.admin_token.is_some() {
        file.admin_token = args.admin_token;
    }
    let listen = file.listen.clone();
    let config = file.validate()?;
    if args.export_rules {
        print!("{}", flashguard_monitor::prometheus_rules(&config.rules));
        return Ok(());
    }
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    flashguard_monitor::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn drill(args: DrillArgs) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(path) => flashguard_drill::Scenario::load(path)?,
        None => flashguard_drill::Scenario::flash_sale_with_a_crash(),
    };
    let target = flashguard_drill::Target {
        url: args.target.trim_end_matches('/').to_string(),
        control: args.control.map(|c| c.trim_end_matches('/').to_string()),
        admin_token: args.admin_token,
        connections: args.connections,
        monitor: args.monitor.map(|m| m.trim_end_matches('/').to_string()),
    };
    let report = flashguard_drill::drill(&target, &scenario, &args.report_dir, true).await?;
    if let Some(monitor) = &target.monitor {
        match flashguard_drill::write_postmortem(monitor, &args.report_dir).await {
            Ok(path) => println!("postmortem draft: {}", path.display()),
            Err(err) => println!("no postmortem: {err:#}"),
        }
    }
    finish(&report, &args.report_dir)
}

async fn rehearse(args: RehearseArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.scale > 0.0 && args.scale <= 1.0,
        "--scale must be above 0 and at most 1"
    );
    let scenario = flashguard_drill::Scenario::flash_sale_with_a_crash().scaled(args.scale);
    let dir = &args.report_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let report = tokio::select! {
        report = rehearse_on(flashguard_stack::StackFile::default(), &scenario, dir) => report?,
        () = shutdown_signal() => anyhow::bail!("interrupted"),
    };
    if !args.baseline {
        return finish(&report, dir);
    }
    // The original outage's architecture: one shop, no gateway, no load
    // shedding, nobody restarting it until the scenario's own restart.
    let baseline_dir = dir.join("baseline");
    std::fs::create_dir_all(&baseline_dir)?;
    let no_shedding = baseline_dir.join("shop.toml");
    std::fs::write(
        &no_shedding,
        "[limits]\nmax_concurrent_requests = 1000000\nrequest_timeout_ms = 600000\n\
         [orders]\nlane_capacity = 1000000\n",
    )?;
    let stack = flashguard_stack::StackFile {
        shops: 1,
        backups: 0,
        gateway: false,
        shop_config: Some(no_shedding.display().to_string()),
        restart_backoff_ms: 3_600_000,
        max_restart_backoff_ms: 3_600_000,
        ..flashguard_stack::StackFile::default()
    };
    let mut single = scenario.clone();
    for action in &mut single.chaos {
        action.part = "shop-1".into();
    }
    let baseline = tokio::select! {
        report = rehearse_on(stack, &single, &baseline_dir) => report?,
        () = shutdown_signal() => anyhow::bail!("interrupted"),
    };
    println!(
        "baseline (one shop, no gateway, no shedding):\n{}\n",
        baseline.summary()
    );
    println!("flashguard:");
    flashguard_drill::write_html(dir, &[("flashguard", &report), ("baseline", &baseline)])?;
    println!("side by side: {}", dir.join("report.html").display());
    finish(&report, dir)
}

/// Starts a fresh stack (its own SQLite file in `dir`, free ports), runs the
/// scenario against it, stops it, and returns the report.
async fn rehearse_on(
    stack: flashguard_stack::StackFile,
    scenario: &flashguard_drill::Scenario,
    dir: &std::path::Path,
) -> anyhow::Result<flashguard_drill::Report> {
    for stale in [
        "rehearsal.db",
        "rehearsal.db-wal",
        "rehearsal.db-shm",
        "incidents.sqlite",
        "incidents.sqlite-wal",
        "incidents.sqlite-shm",
        "postmortem.md",
    ] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let config = flashguard_stack::StackFile {
        database_url: format!("sqlite://{}", dir.join("rehearsal.db").display()),
        demo: false,
        listen: "127.0.0.1:0".into(),
        gateway_admin_listen: "127.0.0.1:0".into(),
        control_listen: "127.0.0.1:0".into(),
        monitor_listen: "127.0.0.1:0".into(),
        incidents_db: dir.join("incidents.sqlite").display().to_string(),
        ..stack
    }
    .validate()?;
    let control = TcpListener::bind(&config.control_listen).await?;
    let exe = std::env::current_exe().context("finding the flashguard binary")?;
    let (urls_tx, urls_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stack = tokio::spawn(flashguard_stack::run(
        control,
        config,
        exe,
        move |urls| {
            let _ = urls_tx.send(urls.clone());
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let urls = urls_rx.await.context("the stack did not come up")?;
    println!(
        "stack up: storefront {}, control {}",
        urls.storefront, urls.control
    );
    let target = flashguard_drill::Target {
        url: urls.storefront.clone(),
        control: Some(urls.control.clone()),
        admin_token: urls.admin_token.clone(),
        connections: 256,
        monitor: Some(urls.monitor.clone()),
    };
    let report = flashguard_drill::drill(&target, scenario, dir, true).await;
    if report.is_ok() {
        match flashguard_drill::write_postmortem(&urls.monitor, dir).await {
            Ok(path) => println!("postmortem draft: {}", path.display()),
            Err(err) => println!("no postmortem: {err:#}"),
        }
    }
    let _ = stop_tx.send(());
    stack.await.context("the stack task")??;
    report
}

/// Prints the summary; an error (exit status 1) unless the drill passed.
fn finish(report: &flashguard_drill::Report, dir: &std::path::Path) -> anyhow::Result<()> {
    println!("{}", report.summary());
    println!("report: {}", dir.join("report.json").display());
    anyhow::ensure!(report.passed, "the drill failed: see the report");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C, or, for a part started by `flashguard
/// up` (FLASHGUARD_EXIT_WITH_PARENT), when its parent is gone: the pipe on
/// stdin closes even if the parent was SIGKILLed.
async fn shutdown_signal() {
    let parent_gone = async {
        if std::env::var_os("FLASHGUARD_EXIT_WITH_PARENT").is_none() {
            return std::future::pending::<()>().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = stop_signal() => {}
        () = parent_gone => tracing::info!("parent process gone; stopping"),
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C will stop it");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stopping"),
    }
}
