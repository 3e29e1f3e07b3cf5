//! The command line: a subcommand per part, each with its flags. Parsed
//! once here into typed values; `main` applies them to each part's config
//! file before validating it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flashguard",
    version,
    about = "Keeps an online store up, and correct, through a flash sale."
)]
pub(crate) struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub(crate) log_json: bool,
    /// Show every log line on the terminal (`up`, `drill` and `rehearse`
    /// otherwise keep it for their own progress; `RUST_LOG` does the same).
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a shop: catalog, flash-sale stock, idempotent orders, storefront.
    Shop(ShopArgs),
    /// Run the gateway: load balancing with failover in front of the shops.
    Gateway(GatewayArgs),
    /// Run the whole stack on this machine: shops, backups, gateway, monitor, supervised.
    Up(UpArgs),
    /// Watch every part and the host: scrape each second, keep a bounded history, answer queries.
    Monitor(MonitorArgs),
    /// Throw a flash sale (and chaos) at a running system and check every invariant.
    Drill(DrillArgs),
    /// Start the stack, run the built-in flash sale with a crash, report, tear down.
    Rehearse(RehearseArgs),
    /// Measure one shop's capacity here and say how many shops a peak needs.
    Plan(PlanArgs),
    /// Acknowledge or resolve an incident at the monitor, as someone on call.
    Incident(IncidentArgs),
}

#[derive(clap::Args)]
pub(crate) struct IncidentArgs {
    #[command(subcommand)]
    pub(crate) action: IncidentAction,
    /// The monitor.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8003")]
    pub(crate) monitor: String,
    /// The monitor's admin token, when it has one.
    #[arg(
        long,
        global = true,
        env = "FLASHGUARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub(crate) admin_token: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum IncidentAction {
    /// Acknowledge: escalation stops, you own it.
    Ack {
        id: i64,
        /// Who acknowledges (on the timeline).
        #[arg(long = "as")]
        by: String,
    },
    /// Resolve: everyone paged is told.
    Resolve {
        id: i64,
        #[arg(long = "as")]
        by: String,
    },
}

#[derive(clap::Args)]
pub(crate) struct PlanArgs {
    /// Customers per second at the peak.
    #[arg(long)]
    pub(crate) peak: f64,
    /// Each shop's CPU, in cores (a cgroup quota, as `up`'s shop_cpu).
    #[arg(long, default_value_t = 0.25)]
    pub(crate) shop_cpu: f64,
    /// A step is carried while its p99 stays within this.
    #[arg(long, default_value_t = 500.0)]
    pub(crate) p99_target_ms: f64,
    /// The store to measure against; default a fresh SQLite file.
    #[arg(long)]
    pub(crate) db: Option<String>,
    /// Where plan.json and the step load's report go.
    #[arg(long, default_value = "flashguard-plan")]
    pub(crate) report_dir: std::path::PathBuf,
    /// Seconds per step of the load.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) step_s: f64,
    /// The first step's customers per second; each step doubles it.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) first_rate: f64,
    /// Steps of the load.
    #[arg(long, default_value_t = 8)]
    pub(crate) steps: usize,
}

#[derive(clap::Args)]
pub(crate) struct MonitorArgs {
    /// TOML config file; every setting has a default.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:8003.
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// A target to scrape, NAME=URL (its /metrics); repeatable, added to the file's.
    #[arg(long = "target", value_name = "NAME=URL")]
    pub(crate) targets: Vec<String>,
    /// Collection interval in ms. Default 1000.
    #[arg(long)]
    pub(crate) interval_ms: Option<u64>,
    /// History kept, in seconds. Default 3600.
    #[arg(long)]
    pub(crate) retention_s: Option<u64>,
    /// Alert rules (TOML); a bad file is refused naming the rule and field.
    /// Without it, the default rules (README).
    #[arg(long)]
    pub(crate) rules: Option<PathBuf>,
    /// Print the rules as a Prometheus rule file and exit.
    #[arg(long)]
    pub(crate) export_rules: bool,
    /// A webhook to post the Alertmanager webhook payload (v4) to; repeatable.
    #[arg(long = "webhook", value_name = "URL")]
    pub(crate) webhooks: Vec<String>,
    /// An Alertmanager to post alerts to (its /api/v2/alerts); repeatable.
    #[arg(long = "alertmanager", value_name = "URL")]
    pub(crate) alertmanagers: Vec<String>,
    /// A gateway's admin API, NAME=URL, whose backend state changes go on
    /// incident timelines (with --admin-token); repeatable.
    #[arg(long = "gateway", value_name = "NAME=URL")]
    pub(crate) gateways: Vec<String>,
    /// The incident file (SQLite). Default flashguard-incidents.sqlite.
    #[arg(long)]
    pub(crate) incidents_db: Option<String>,
    /// A `flashguard plan` (plan.json): the postmortem sizes the shop pool
    /// from one shop's measured capacity.
    #[arg(long)]
    pub(crate) capacity_plan: Option<String>,
    /// Required of writes to the incident API; sent to gateways' admin APIs.
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Load and validate the configuration (file and flags), print
    /// `config ok`, and exit without starting: for checking deployments.
    #[arg(long)]
    pub(crate) check_config: bool,
}

#[derive(clap::Args)]
pub(crate) struct DrillArgs {
    /// The storefront: flashguard's gateway, a shop, or any server speaking
    /// the shop API; http:// or https://.
    #[arg(long)]
    pub(crate) target: String,
    /// For an https:// target: a CA certificate (PEM) its certificate may
    /// be signed by, besides the public roots (a store's own CA).
    #[arg(long, value_name = "PATH")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Scenario file (TOML); default the built-in flash sale with a crash.
    #[arg(long)]
    pub(crate) scenario: Option<PathBuf>,
    /// The stack's control API, for the scenario's chaos actions.
    #[arg(long)]
    pub(crate) control: Option<String>,
    /// Admin token of the target (for setting up items and the export).
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: String,
    /// Where report.json goes.
    #[arg(long, default_value = "flashguard-report")]
    pub(crate) report_dir: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 256)]
    pub(crate) connections: usize,
    /// The monitor, told when the drill starts and what it found, for the
    /// incident timeline and the postmortem.
    #[arg(long)]
    pub(crate) monitor: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct RehearseArgs {
    /// Where report.json goes.
    #[arg(long, default_value = "flashguard-report")]
    pub(crate) report_dir: PathBuf,
    /// Run the scenario in this share of its time (rates unchanged), e.g. 0.25.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) scale: f64,
    /// Also run it against the original outage's architecture (one shop,
    /// no gateway, no shedding) and report both side by side.
    #[arg(long)]
    pub(crate) baseline: bool,
    /// The story: `crash` (a surge to 20x with a shop SIGKILLed) or
    /// `beyond-capacity` (10x what the shops can serve, measured, with a
    /// waiting room in front).
    #[arg(long, value_enum, default_value_t = StoryArg::Crash)]
    pub(crate) scenario: StoryArg,
    /// With `beyond-capacity`: start with two shops and let the autoscaler
    /// add up to two more during the surge.
    #[arg(long)]
    pub(crate) autoscale: bool,
}

/// `rehearse --scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoryArg {
    Crash,
    BeyondCapacity,
}

impl From<StoryArg> for flashguard_stack::Story {
    fn from(arg: StoryArg) -> Self {
        match arg {
            StoryArg::Crash => flashguard_stack::Story::FlashSaleWithACrash,
            StoryArg::BeyondCapacity => flashguard_stack::Story::BeyondCapacity,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// TOML config file; every setting has a default.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Where customers connect (the gateway). Default 127.0.0.1:8000.
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// Admin token for every part; a random one if unset.
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Where every part's log goes, a file each. Default flashguard-logs.
    #[arg(long)]
    pub(crate) logs_dir: Option<PathBuf>,
    /// Put a waiting room in front: `always`, `full` (when the shops are
    /// full) or `off`; its other settings from `[waiting_room]` in the
    /// config file, or their defaults.
    #[arg(long, value_enum)]
    pub(crate) waiting_room: Option<RoomArg>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

/// HTTPS at the gateway from the command line, for quick use.
#[derive(clap::Args)]
pub(crate) struct TlsArgs {
    /// Serve HTTPS on --listen with this certificate chain (PEM, leaf
    /// first); with --tls-key. Sets `[tls] cert`.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM). Sets `[tls] key`.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The certificate and key, when both are given (clap sees to that).
    pub(crate) fn paths(&self) -> Option<(PathBuf, PathBuf)> {
        self.tls_cert.clone().zip(self.tls_key.clone())
    }

    /// Sets `[tls]`'s default certificate, keeping its other settings.
    pub(crate) fn apply(&self, tls: &mut Option<flashguard_gateway::edge::config::TlsFile>) {
        if let Some((cert, key)) = self.paths() {
            flashguard_gateway::edge::config::TlsFile::set_default_certificate(tls, cert, key);
        }
    }
}

/// `up --waiting-room`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RoomArg {
    Off,
    Always,
    Full,
}

impl From<RoomArg> for flashguard_gateway::room::Activation {
    fn from(arg: RoomArg) -> Self {
        use flashguard_gateway::room::Activation;
        match arg {
            RoomArg::Off => Activation::Off,
            RoomArg::Always => Activation::Always,
            RoomArg::Full => Activation::Full,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct GatewayArgs {
    /// TOML config file; every setting has a default.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Address customers connect to. Default 127.0.0.1:8000.
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// Address of the admin API, /metrics and probes. Default 127.0.0.1:8001.
    #[arg(long)]
    pub(crate) admin_listen: Option<String>,
    /// A primary backend, NAME=IP:PORT (repeatable).
    #[arg(long = "backend", value_name = "NAME=ADDR")]
    pub(crate) backends: Vec<String>,
    /// A backup backend, NAME=IP:PORT (repeatable); serves only when no
    /// primary can.
    #[arg(long = "backup", value_name = "NAME=ADDR")]
    pub(crate) backups: Vec<String>,
    /// Primary backends found in DNS, NAME:PORT (repeatable): every address
    /// the name resolves to (a Kubernetes headless Service), followed.
    #[arg(long = "backend-dns", value_name = "NAME:PORT")]
    pub(crate) backend_dns: Vec<String>,
    /// The DNS server for --backend-dns, IP:PORT; default the system's.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) dns_server: Option<String>,
    /// Bearer token for the admin API; without it the admin calls answer 403.
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// A proxy (IP) whose X-Forwarded-For names the client; repeatable,
    /// added to the file's trusted_proxies.
    #[arg(long = "trust-proxy", value_name = "IP")]
    pub(crate) trusted_proxies: Vec<String>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// Load and validate the configuration (file and flags), print
    /// `config ok`, and exit without starting: for checking deployments.
    #[arg(long)]
    pub(crate) check_config: bool,
}

#[derive(clap::Args)]
pub(crate) struct ShopArgs {
    /// Address to listen on (port 0 picks a free port). Default 127.0.0.1:8080.
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// sqlite://PATH or postgres://... Default sqlite://flashguard.db.
    #[arg(long)]
    pub(crate) db: Option<String>,
    /// TOML config file; every setting has a default.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Seed a demo flash sale if the store has none of its items.
    #[arg(long)]
    pub(crate) demo: bool,
    /// Bearer token for the admin API; without it the admin API is off.
    #[arg(long, env = "FLASHGUARD_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Load and validate the configuration (file and flags), print
    /// `config ok`, and exit without starting: for checking deployments.
    #[arg(long)]
    pub(crate) check_config: bool,
}
