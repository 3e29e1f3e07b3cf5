//! `flashguard rehearse`: a fresh stack on this machine (its own SQLite
//! file in the report folder, free ports, logs in `logs/`), the built-in
//! flash sale with a crash thrown at it, the report and the monitor's
//! postmortem draft written, the stack torn down. With a baseline, the same
//! sale against the original outage's architecture — one shop, no gateway,
//! no load shedding, nobody restarting it until the scenario does — beside
//! it.
//!
//! It lives here, not in the drill, because it owns processes: the drill
//! only speaks HTTP to whatever it is pointed at, and stays usable against
//! any server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flashguard_drill::{Console, Report, Scenario, Target};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::config::{StackConfigError, StackFile};
use crate::control::ControlServer;
use crate::logs::{Echo, LogPolicy};
use crate::stack::Stack;
use crate::StackError;

/// What to rehearse, and where.
#[derive(Debug, Clone)]
pub struct Rehearsal {
    /// report.json, report.html, postmortem.md and logs/ go here.
    pub report_dir: PathBuf,
    /// The scenario in this share of its time (rates unchanged), above 0
    /// and at most 1.
    pub scale: f64,
    /// Also the original outage's architecture, side by side.
    pub baseline: bool,
    /// The flashguard binary the parts run.
    pub exe: PathBuf,
    /// What of the parts' logs reaches the terminal.
    pub echo: Echo,
}

/// What a rehearsal found.
#[derive(Debug)]
pub struct Rehearsed {
    pub report: Report,
    pub baseline: Option<Report>,
    /// The postmortem draft, or why there is none.
    pub postmortem: Result<PathBuf, String>,
    /// Every part's log.
    pub logs: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RehearsalError {
    #[error("--scale must be above 0 and at most 1, not {0}")]
    Scale(f64),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] StackConfigError),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("the drill: {0:#}")]
    Drill(anyhow::Error),
}

/// Runs the rehearsal, telling `console` how it goes.
pub async fn rehearse(
    rehearsal: &Rehearsal,
    console: Arc<Console>,
) -> Result<Rehearsed, RehearsalError> {
    if !(rehearsal.scale > 0.0 && rehearsal.scale <= 1.0) {
        return Err(RehearsalError::Scale(rehearsal.scale));
    }
    let scenario = Scenario::flash_sale_with_a_crash().scaled(rehearsal.scale);
    let dir = &rehearsal.report_dir;
    create_dir(dir)?;
    let logs = dir.join("logs");
    let (report, postmortem) = run_on(
        rehearsal,
        StackFile::default(),
        &scenario,
        dir,
        &logs,
        &console,
    )
    .await?;
    if !rehearsal.baseline {
        return Ok(Rehearsed {
            report,
            baseline: None,
            postmortem,
            logs,
        });
    }
    console.line("");
    console.step("now the original outage's architecture: one shop, no gateway, no shedding");
    let baseline_dir = dir.join("baseline");
    create_dir(&baseline_dir)?;
    let no_shedding = baseline_dir.join("shop.toml");
    std::fs::write(
        &no_shedding,
        "[limits]\nmax_concurrent_requests = 1000000\nrequest_timeout_ms = 600000\n\
         [orders]\nlane_capacity = 1000000\n",
    )
    .map_err(|source| RehearsalError::Io {
        path: no_shedding.clone(),
        source,
    })?;
    let stack = StackFile {
        shops: 1,
        backups: 0,
        gateway: false,
        shop_config: Some(no_shedding.display().to_string()),
        restart_backoff_ms: 3_600_000,
        max_restart_backoff_ms: 3_600_000,
        ..StackFile::default()
    };
    let mut single = scenario.clone();
    for action in &mut single.chaos {
        action.part = "shop-1".into();
    }
    let (baseline, _) = run_on(
        rehearsal,
        stack,
        &single,
        &baseline_dir,
        &baseline_dir.join("logs"),
        &console,
    )
    .await?;
    flashguard_drill::write_html(dir, &[("flashguard", &report), ("baseline", &baseline)])
        .map_err(RehearsalError::Drill)?;
    Ok(Rehearsed {
        report,
        baseline: Some(baseline),
        postmortem,
        logs,
    })
}

/// Starts a fresh stack from `stack` (its own SQLite file in `dir`, free
/// ports), runs the scenario against it, writes the postmortem draft, stops
/// it, and returns the report.
async fn run_on(
    rehearsal: &Rehearsal,
    stack: StackFile,
    scenario: &Scenario,
    dir: &Path,
    logs: &Path,
    console: &Arc<Console>,
) -> Result<(Report, Result<PathBuf, String>), RehearsalError> {
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
    let config = StackFile {
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
    console.step(&format!(
        "starting {}{}{} and the monitor (logs in {})",
        count(config.shops, "shop"),
        match config.backups {
            0 => String::new(),
            n => format!(", {}", count(n, "backup")),
        },
        if config.gateway {
            ", the gateway"
        } else {
            ", no gateway"
        },
        logs.display()
    ));
    let started = Instant::now();
    let control = TcpListener::bind(&config.control_listen)
        .await
        .map_err(StackError::Control)?;
    let policy = LogPolicy {
        dir: Some(logs.to_path_buf()),
        echo: rehearsal.echo,
    };
    let running = Stack::start(config, rehearsal.exe.clone(), policy).await?;
    let control = ControlServer::start(control, running.parts())?;
    let urls = running.urls(control.url().to_string());
    console.step(&format!(
        "ready in {:.1} s: storefront {}, dashboard {}",
        started.elapsed().as_secs_f64(),
        urls.storefront,
        urls.monitor
    ));
    console.step(&format!(
        "throwing \"{}\" at it for {:.0} s{}",
        scenario.name,
        scenario.duration().as_secs_f64(),
        match scenario.chaos.first() {
            Some(chaos) => format!(", {} {} at {:.0} s", chaos.action, chaos.part, chaos.at_s),
            None => String::new(),
        }
    ));
    let target = Target {
        url: urls.storefront.clone(),
        control: Some(urls.control.clone()),
        admin_token: urls.admin_token.clone(),
        connections: 256,
        monitor: Some(urls.monitor.clone()),
    };
    let progress: Arc<dyn flashguard_drill::Progress> = Arc::clone(console) as _;
    let report = flashguard_drill::drill(&target, scenario, dir, progress).await;
    let postmortem = match &report {
        Ok(_) => flashguard_drill::write_postmortem(&urls.monitor, dir)
            .await
            .map_err(|err| format!("{err:#}")),
        Err(_) => Err("the drill did not finish".to_string()),
    };
    console.step("stopping the stack");
    running.stop().await;
    control.stop().await;
    Ok((report.map_err(RehearsalError::Drill)?, postmortem))
}

fn create_dir(dir: &Path) -> Result<(), RehearsalError> {
    std::fs::create_dir_all(dir).map_err(|source| RehearsalError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// `3 shops`, `1 backup`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
