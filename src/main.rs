//! The `flashguard` binary: one subcommand per part. It parses arguments,
//! installs tracing, loads config, binds the socket and hands over to the
//! part's `run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

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
    match cli.command {
        Command::Shop(args) => runtime.block_on(shop(args)),
    }
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

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C will stop the shop");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stopping"),
    }
}
