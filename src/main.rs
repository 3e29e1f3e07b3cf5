//! The `flashguard` binary: one subcommand per part. It parses arguments,
//! installs tracing, applies the flags to the loaded config file and
//! validates it, binds the socket and hands over to the part's `run` (or
//! the stack's `rehearse`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

mod cli;
mod incident;
mod plan;

use cli::{Cli, Command, DrillArgs, GatewayArgs, MonitorArgs, RehearseArgs, ShopArgs, UpArgs};

/// The proxy and the shop allocate per request; mimalloc's thread-local
/// free lists measurably beat the system allocator there (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // No transparent huge pages: mimalloc asks for them, and each one
    // turns a few kilobytes in use into 2 MB resident — with ten thousand
    // connections open, about 10 MB of the gateway's memory for nothing.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (json, verbose) = (cli.log_json, cli.verbose);
    let result = match cli.command {
        Command::Shop(args) => {
            server_logs(json);
            runtime.block_on(shop(args))
        }
        Command::Gateway(args) => {
            server_logs(json);
            runtime.block_on(gateway(args))
        }
        Command::Monitor(args) => {
            server_logs(json);
            runtime.block_on(monitor(args))
        }
        Command::Up(args) => runtime.block_on(up(args, json, verbose)),
        Command::Drill(args) => runtime.block_on(drill(args, json, verbose)),
        Command::Rehearse(args) => runtime.block_on(rehearse(args, json, verbose)),
        Command::Plan(args) => runtime.block_on(plan::plan(args)),
        Command::Incident(args) => runtime.block_on(incident::incident(args)),
    };
    // Do not wait for blocking threads: one may sit in a read of stdin
    // (the parent watch) that only ends when the parent does.
    runtime.shutdown_background();
    result
}

/// A server logs everything to standard error.
fn server_logs(json: bool) {
    flashguard_telemetry::init_tracing(flashguard_telemetry::LogSetup {
        json,
        terminal: flashguard_telemetry::TerminalLog::Everything,
        file: None,
    });
}

/// A command a person watches logs to `file` in full and shows `quiet` on
/// the terminal, unless `-v` or `RUST_LOG` ask for everything. Returns
/// whether everything shows (the parts' logs too).
fn watched_logs(
    json: bool,
    verbose: bool,
    quiet: flashguard_telemetry::TerminalLog,
    file: &Path,
) -> anyhow::Result<bool> {
    use flashguard_telemetry::{BoundedLog, LogSetup, TerminalLog, DEFAULT_LOG_BYTES};
    let everything = verbose || std::env::var_os("RUST_LOG").is_some();
    let log = BoundedLog::create(file, DEFAULT_LOG_BYTES)
        .with_context(|| format!("creating {}", file.display()))?;
    flashguard_telemetry::init_tracing(LogSetup {
        json,
        terminal: if everything {
            TerminalLog::Everything
        } else {
            quiet
        },
        file: Some(Arc::new(log)),
    });
    Ok(everything)
}

/// `--check-config`: the configuration was loaded and validated.
fn config_ok() -> anyhow::Result<()> {
    println!("config ok");
    Ok(())
}

async fn shop(args: ShopArgs) -> anyhow::Result<()> {
    let mut file = match &args.config {
        Some(path) => flashguard_shop::ConfigFile::load(path)?,
        None => flashguard_shop::ConfigFile::default(),
    };
    if let Some(listen) = args.listen {
        file.listen = Some(listen);
    }
    if let Some(db) = args.db {
        file.database_url = Some(db);
    }
    file.demo |= args.demo;
    file.admin_token = args.admin_token;
    let config = file.validate()?;
    if args.check_config {
        return config_ok();
    }
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("listening on http://{addr}");
    flashguard_shop::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    use flashguard_gateway::ConfigFile;
    let mut file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let flags = gateway_flags(&args)?;
    flags.apply(&mut file);
    let config = file.validate()?;
    flashguard_gateway::check_tls(&config)?;
    if args.check_config {
        return config_ok();
    }
    let proxy = flashguard_gateway::bind(&config.listen, config.reuse_port)?;
    let admin = flashguard_gateway::bind(&config.admin_listen, false)?;
    let (scheme, admin_scheme) = match &config.tls {
        Some(tls) if tls.admin.is_some() => ("https", "https"),
        Some(_) => ("https", "http"),
        None => ("http", "http"),
    };
    println!("listening on {scheme}://{}", proxy.local_addr()?);
    println!("admin on {admin_scheme}://{}", admin.local_addr()?);
    let redirect = match config
        .tls
        .as_ref()
        .and_then(|tls| tls.redirect_listen.as_ref())
    {
        Some(listen) => {
            let redirect = flashguard_gateway::bind(listen, false)?;
            println!("redirecting to https on http://{}", redirect.local_addr()?);
            Some(redirect)
        }
        None => None,
    };
    let status = match &config.status_listen {
        Some(listen) => {
            let status = flashguard_gateway::bind(listen, false)?;
            println!("status on http://{}", status.local_addr()?);
            Some(status)
        }
        None => None,
    };
    let listeners = flashguard_gateway::Listeners {
        proxy,
        admin,
        status,
        redirect,
    };
    let source = flashguard_gateway::Source {
        path: args.config,
        flags,
    };
    flashguard_gateway::run(listeners, config, source, shutdown_signal()).await?;
    Ok(())
}

/// The gateway's flags, parsed: what is set over its config file, at
/// start and on every reload.
fn gateway_flags(args: &GatewayArgs) -> anyhow::Result<flashguard_gateway::Flags> {
    use flashguard_gateway::{config::BackendDnsFile, BackendFile, Pool};
    let mut backends = Vec::new();
    let flagged = [
        ("backend", Pool::Primary, &args.backends),
        ("backup", Pool::Backup, &args.backups),
    ];
    for (flag, pool, list) in flagged {
        for entry in list {
            let (name, addr) = entry
                .split_once('=')
                .with_context(|| format!("--{flag} {entry}: expected NAME=IP:PORT"))?;
            backends.push(BackendFile {
                name: name.to_string(),
                addr: addr.to_string(),
                pool,
            });
        }
    }
    let mut backend_dns = Vec::new();
    for entry in &args.backend_dns {
        let (name, port) = entry
            .rsplit_once(':')
            .and_then(|(name, port)| Some((name, port.parse::<u16>().ok()?)))
            .with_context(|| format!("--backend-dns {entry}: expected NAME:PORT"))?;
        backend_dns.push(BackendDnsFile {
            name: name.to_string(),
            port,
            pool: Pool::Primary,
        });
    }
    Ok(flashguard_gateway::Flags {
        listen: args.listen.clone(),
        admin_listen: args.admin_listen.clone(),
        admin_token: args.admin_token.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        backends,
        backend_dns,
        dns_server: args.dns_server.clone(),
        tls: args.tls.paths(),
    })
}

async fn up(args: UpArgs, json: bool, verbose: bool) -> anyhow::Result<()> {
    use flashguard_stack::{Echo, LogPolicy};
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
    if let Some(dir) = args.logs_dir {
        file.logs_dir = dir.display().to_string();
    }
    if let Some(activation) = args.waiting_room {
        let mut room = file.waiting_room.take().unwrap_or_default();
        room.activation = activation.into();
        file.waiting_room = Some(room);
    }
    args.tls.apply(&mut file.tls);
    let config = file.validate()?;
    // A bad certificate is refused here, naming its file, not found later
    // as a gateway that never came up.
    if let Some((_, tls)) = &config.tls {
        flashguard_gateway::check_certificates(tls)?;
    }
    let logs_dir = PathBuf::from(&config.logs_dir);
    let problems = flashguard_telemetry::TerminalLog::Problems;
    let everything = watched_logs(json, verbose, problems, &logs_dir.join("up.log"))?;
    let control = TcpListener::bind(&config.control_listen)
        .await
        .with_context(|| format!("binding {}", config.control_listen))?;
    let exe = std::env::current_exe().context("finding the flashguard binary")?;
    let logs = LogPolicy {
        dir: Some(logs_dir.clone()),
        echo: if everything {
            Echo::Everything
        } else {
            Echo::Problems
        },
    };
    let ready = |urls: &flashguard_stack::Urls, parts: &[flashguard_stack::PartView]| {
        println!("storefront on {}", urls.storefront);
        println!(
            "gateway admin on {}  (metrics at /metrics)",
            urls.gateway_admin
        );
        println!("monitor on {}", urls.monitor);
        println!("admin token {}", urls.admin_token);
        println!("control on {}", urls.control);
        for part in parts {
            println!(
                "  {:<10} {:<8} pid {:<7} {}",
                part.name,
                format!("{:?}", part.state).to_lowercase(),
                part.pid.map_or("-".to_string(), |pid| pid.to_string()),
                part.addr.as_deref().unwrap_or("")
            );
        }
        println!(
            "logs in {}/ (a file per part); warnings and errors follow here. Ctrl-C stops.",
            logs_dir.display()
        );
    };
    flashguard_stack::run(control, config, exe, logs, ready, shutdown_signal()).await?;
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
    if args.capacity_plan.is_some() {
        file.capacity_plan = args.capacity_plan;
    }
    if args.admin_token.is_some() {
        file.admin_token = args.admin_token;
    }
    let listen = file.listen.clone();
    let config = file.validate()?;
    if args.check_config {
        return config_ok();
    }
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

async fn drill(args: DrillArgs, json: bool, verbose: bool) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(path) => flashguard_drill::Scenario::load(path)?,
        None => flashguard_drill::Scenario::flash_sale_with_a_crash(),
    };
    let log = args.report_dir.join("logs").join("drill.log");
    let problems = flashguard_telemetry::TerminalLog::Problems;
    watched_logs(json, verbose, problems, &log)?;
    let https = args.target.starts_with("https://");
    let tls = match (https, &args.ca_cert) {
        (true, ca_cert) => Some(flashguard_drill::trust(ca_cert.as_deref())?),
        (false, Some(_)) => anyhow::bail!("--ca-cert is for an https:// --target"),
        (false, None) => None,
    };
    let target = flashguard_drill::Target {
        url: args.target.trim_end_matches('/').to_string(),
        control: args.control.map(|c| c.trim_end_matches('/').to_string()),
        admin_token: args.admin_token,
        connections: args.connections,
        monitor: args.monitor.map(|m| m.trim_end_matches('/').to_string()),
        tls,
    };
    let console = Arc::new(flashguard_drill::Console::new());
    console.step(&format!(
        "throwing \"{}\" at {} for {:.0} s",
        scenario.name,
        target.url,
        scenario.duration().as_secs_f64()
    ));
    let report =
        flashguard_drill::drill(&target, &scenario, &args.report_dir, console.clone()).await?;
    console.summary(&report);
    if let Some(monitor) = &target.monitor {
        match flashguard_drill::write_postmortem(monitor, &args.report_dir).await {
            Ok(path) => println!("postmortem: {}", path.display()),
            Err(err) => println!("no postmortem: {err:#}"),
        }
    }
    println!(
        "report:     {}",
        args.report_dir.join("report.json").display()
    );
    println!("log:        {}", log.display());
    anyhow::ensure!(report.passed, "the drill failed: see the report");
    Ok(())
}

async fn rehearse(args: RehearseArgs, json: bool, verbose: bool) -> anyhow::Result<()> {
    let dir = &args.report_dir;
    let nothing = flashguard_telemetry::TerminalLog::Nothing;
    let log = dir.join("logs").join("rehearse.log");
    let everything = watched_logs(json, verbose, nothing, &log)?;
    let story = flashguard_stack::Story::from(args.scenario);
    let rehearsal = flashguard_stack::Rehearsal {
        story,
        report_dir: dir.clone(),
        scale: args.scale,
        baseline: args.baseline,
        autoscale: args.autoscale,
        exe: std::env::current_exe().context("finding the flashguard binary")?,
        echo: if everything {
            flashguard_stack::Echo::Everything
        } else {
            flashguard_stack::Echo::Nothing
        },
    };
    let console = Arc::new(flashguard_drill::Console::new());
    console.step(&format!(
        "rehearsing {} on this machine (report in {})",
        match story {
            flashguard_stack::Story::FlashSaleWithACrash => "a flash sale with a crash",
            flashguard_stack::Story::BeyondCapacity =>
                "a flash sale beyond the shops' capacity, with a waiting room",
        },
        dir.display()
    ));
    let rehearsed = tokio::select! {
        rehearsed = flashguard_stack::rehearse(&rehearsal, console.clone()) => rehearsed?,
        () = shutdown_signal() => anyhow::bail!("interrupted"),
    };
    if let Some(baseline) = &rehearsed.baseline {
        console.line("\nthe original outage's architecture (one shop, no gateway, no shedding):");
        console.summary(baseline);
        console.line("\nflashguard:");
    }
    console.summary(&rehearsed.report);
    println!();
    println!("report:     {}", dir.join("report.json").display());
    println!("            {}", dir.join("report.html").display());
    match &rehearsed.postmortem {
        Ok(path) => println!("postmortem: {}", path.display()),
        Err(why) => println!("postmortem: none ({why})"),
    }
    println!("logs:       {}/", rehearsed.logs.display());
    anyhow::ensure!(
        rehearsed.report.passed,
        "the rehearsal failed: see the report"
    );
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
