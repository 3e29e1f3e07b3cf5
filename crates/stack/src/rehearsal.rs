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
use std::time::Duration;

use flashguard_drill::{Console, Report, Scenario, Target};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::config::{StackConfigError, StackFile};
use crate::control::ControlServer;
use crate::logs::{Echo, LogPolicy};
use crate::stack::Stack;
use crate::StackError;

/// Which story the rehearsal tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Story {
    /// A surge to twenty times normal traffic, a shop SIGKILLed in it.
    FlashSaleWithACrash,
    /// Ten times what the shops can serve (measured, each shop under a
    /// CPU quota), a waiting room in front, a shop SIGKILLed mid-surge.
    BeyondCapacity,
}

impl Story {
    /// The drill's requests in flight at once, the same for flashguard and
    /// its baseline. Beyond capacity, customers in a waiting room come back
    /// often: more lanes, so those whose order waits do not hold up the
    /// others' visits.
    fn connections(self) -> usize {
        match self {
            Story::FlashSaleWithACrash => 256,
            Story::BeyondCapacity => 2_048,
        }
    }
}

/// Each shop's CPU in the beyond-capacity story, in cores: small enough
/// that ten times what three such shops serve is within the drill's reach
/// on two cores (BENCHMARKS.md).
const SHOP_CPU: f64 = 0.05;
/// The beyond-capacity surge at full scale, in s.
const SURGE_S: f64 = 24.0;

/// The autoscaled story, at every scale (they are about processes
/// starting and stopping, not the story's length): the sale opens
/// `BEFORE_S` in, `LEAD_S` after the autoscaler sees it coming; after it
/// closes, `AFTER_S` of quiet browsing, in which a scale-down window of
/// `DOWN_WINDOW_S` (the default is 5 min) passes and the shops added are
/// removed one a step.
const BEFORE_S: f64 = 7.0;
const LEAD_S: u64 = 5;
const DOWN_WINDOW_S: u64 = 6;
const AFTER_S: f64 = 14.0;

/// What a run of the drill is given: a scenario as it is, or one sized
/// from the capacity measured once the shops run.
enum Plan {
    Fixed(Scenario),
    Measured {
        surge_s: f64,
        /// The story told to an autoscaled stack: a sale window with time
        /// before and after it.
        scaling: bool,
    },
}

/// What to rehearse, and where.
#[derive(Debug, Clone)]
pub struct Rehearsal {
    pub story: Story,
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
    /// Beyond capacity only: start with two shops and let `up`'s
    /// autoscaler add up to two more during the surge.
    pub autoscale: bool,
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
    #[error("measuring the shops' capacity: {0}")]
    Calibration(#[from] crate::calibrate::CalibrationError),
    #[error("--autoscale goes with --scenario beyond-capacity")]
    AutoscaleNeedsBeyondCapacity,
}

/// Runs the rehearsal, telling `console` how it goes.
pub async fn rehearse(
    rehearsal: &Rehearsal,
    console: Arc<Console>,
) -> Result<Rehearsed, RehearsalError> {
    if !(rehearsal.scale > 0.0 && rehearsal.scale <= 1.0) {
        return Err(RehearsalError::Scale(rehearsal.scale));
    }
    if rehearsal.autoscale && rehearsal.story != Story::BeyondCapacity {
        return Err(RehearsalError::AutoscaleNeedsBeyondCapacity);
    }
    let dir = &rehearsal.report_dir;
    create_dir(dir)?;
    let logs = dir.join("logs");
    let (plan, front) = match rehearsal.story {
        Story::FlashSaleWithACrash => (
            Plan::Fixed(Scenario::flash_sale_with_a_crash().scaled(rehearsal.scale)),
            StackFile::default(),
        ),
        Story::BeyondCapacity => (
            Plan::Measured {
                surge_s: SURGE_S * rehearsal.scale,
                scaling: rehearsal.autoscale,
            },
            StackFile {
                shop_cpu: Some(SHOP_CPU),
                shops: if rehearsal.autoscale { 2 } else { 3 },
                // Two shops, a third planned for the sale (added before it
                // opens), a fourth if the surge asks; back to two after
                // it, the scale-down window shortened for a story of a
                // minute.
                autoscale: rehearsal.autoscale.then(|| crate::config::AutoscaleFile {
                    min_shops: Some(2),
                    max_shops: Some(4),
                    planned_shops: Some(3),
                    down_window_s: DOWN_WINDOW_S,
                    lead_s: LEAD_S,
                    ..Default::default()
                }),
                ..StackFile::default()
            },
        ),
    };
    let (report, scenario, postmortem) =
        run_on(rehearsal, front, &plan, dir, &logs, &console).await?;
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
        // The same shop as one of flashguard's.
        shop_cpu: match rehearsal.story {
            Story::BeyondCapacity => Some(SHOP_CPU),
            Story::FlashSaleWithACrash => None,
        },
        ..StackFile::default()
    };
    let mut single = scenario.clone();
    match rehearsal.story {
        Story::FlashSaleWithACrash => {
            for action in &mut single.chaos {
                action.part = "shop-1".into();
            }
        }
        // The single server falls over from the load alone: no chaos.
        Story::BeyondCapacity => single.chaos.clear(),
    }
    let (baseline, _, _) = run_on(
        rehearsal,
        stack,
        &Plan::Fixed(single),
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

/// The waiting room for a stack that serves `capacity` customers a
/// second: on from the start, first in first out, starting at the
/// capacity and letting in up to twice it (the rate follows the
/// backends' load in between), the
/// product API guarded too (the drill's customers browse it), the sale's
/// item watched for selling out.
fn room_for(capacity: f64, sku: &str) -> flashguard_gateway::room::RoomFile {
    use flashguard_gateway::room::{Activation, RoomFile};
    let mut paths = RoomFile::default().paths;
    paths.push("/api/products/*".into());
    RoomFile {
        activation: Activation::Always,
        paths,
        key: Some(uuid::Uuid::new_v4().simple().to_string()),
        admit_per_s: (capacity * 2.0).max(2.0),
        min_admit_per_s: (capacity / 20.0).max(1.0),
        initial_admit_per_s: Some(capacity.max(1.0)),
        max_active: 1_000_000,
        skus: vec![sku.to_string()],
        ..RoomFile::default()
    }
}

/// Starts a fresh stack from `stack` (its own SQLite file in `dir`, free
/// ports), runs the planned scenario against it (sized from the shops'
/// measured capacity when the plan says so), writes the postmortem draft,
/// stops it, and returns the report and the scenario run.
async fn run_on(
    rehearsal: &Rehearsal,
    stack: StackFile,
    plan: &Plan,
    dir: &Path,
    logs: &Path,
    console: &Arc<Console>,
) -> Result<(Report, Scenario, Result<PathBuf, String>), RehearsalError> {
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
    let database_url = format!("sqlite://{}", dir.join("rehearsal.db").display());
    let config = stack.private(dir, database_url).validate()?;
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
    let autoscale = config.autoscale.clone();
    // The room may let in what the most shops the autoscaler may run serve.
    let growth = autoscale.as_ref().map_or(1.0, |(rules, _)| {
        f64::from(rules.max_shops) / config.shops as f64
    });
    let mut running = Stack::start_back(config, rehearsal.exe.clone(), policy).await?;
    if let Some(note) = &running.quota_note {
        console.step(note);
    }
    let scenario = match plan {
        Plan::Fixed(scenario) => scenario.clone(),
        Plan::Measured { surge_s, scaling } => {
            let shops = running.shop_urls().await?;
            console.step(&format!(
                "measuring what the shops serve ({} each): customers straight to each for 3 s",
                running
                    .quota_note
                    .as_ref()
                    .map_or(format!("{:.0} % of a core", SHOP_CPU * 100.0), |_| {
                        "no quota".into()
                    })
            ));
            let capacity = crate::calibrate::capacity(
                &shops,
                &running.urls(String::new()).admin_token,
                Duration::from_secs(3),
            )
            .await?;
            let scenario = if *scaling {
                let mut scenario =
                    Scenario::beyond_capacity_scaling(capacity, *surge_s, BEFORE_S, AFTER_S);
                scenario.name = format!(
                    "beyond capacity, autoscaled (scale-down window {DOWN_WINDOW_S} s, not 5 min)"
                );
                scenario
            } else {
                Scenario::beyond_capacity(capacity, *surge_s)
            };
            console.step(&format!(
                "the shops serve {capacity:.0} customers/s: {:.0} a second will come for {surge_s:.0} s, \
                 {} units in stock; a waiting room in front{}",
                scenario.phases[1].rate,
                scenario.items[0].stock,
                if *scaling {
                    format!(
                        "; the sale opens {BEFORE_S:.0} s in and closes with the surge, \
                         {AFTER_S:.0} s of quiet follow"
                    )
                } else {
                    String::new()
                }
            ));
            running.set_waiting_room(room_for(capacity * growth, &scenario.items[0].sku));
            scenario
        }
    };
    running.start_front().await?;
    let control = ControlServer::start(
        control,
        running.part_list(),
        running.admin_token().to_string(),
    )?;
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
        connections: rehearsal.story.connections(),
        monitor: Some(urls.monitor.clone()),
        // A rehearsal's own stack serves plain HTTP on loopback.
        tls: None,
    };
    let progress: Arc<dyn flashguard_drill::Progress> = Arc::clone(console) as _;
    let drill = flashguard_drill::drill(&target, &scenario, dir, progress);
    let report = match autoscale {
        Some((rules, step)) => {
            console.step(&format!(
                "autoscaling between {} and {} shops every {} ms: {} planned from {} s before the sale, \
                 none removed while it is open, then down after {} s of less load",
                rules.min_shops,
                rules.max_shops,
                step.as_millis(),
                rules.planned.unwrap_or(rules.max_shops),
                rules.lead.as_secs(),
                rules.down_window.as_secs(),
            ));
            let report = tokio::select! {
                report = drill => report,
                () = crate::scaling::drive(&mut running, rules, step) => {
                    Err(anyhow::anyhow!("the autoscaler stopped"))
                }
            };
            console.step(&format!(
                "{} shops at the end of the sale",
                running.primaries()
            ));
            report
        }
        None => drill.await,
    };
    let postmortem = match &report {
        Ok(_) => flashguard_drill::write_postmortem(&urls.monitor, dir)
            .await
            .map_err(|err| format!("{err:#}")),
        Err(_) => Err("the drill did not finish".to_string()),
    };
    console.step("stopping the stack");
    running.stop().await;
    control.stop().await;
    Ok((report.map_err(RehearsalError::Drill)?, scenario, postmortem))
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
