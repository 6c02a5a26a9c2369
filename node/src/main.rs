//! The `fraudmesh` binary: parse the command line, run the command.

use anyhow::Context;
use clap::Parser;
use fraudmesh_node::cli::commands;
use fraudmesh_node::cli::{Cli, Command};
use fraudmesh_node::daemon::dir::NodeDir;
use std::path::PathBuf;
use std::process::ExitCode;

fn default_dir() -> PathBuf {
    // Root runs the node as a system service; anyone else keeps it in their home.
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        PathBuf::from("/var/lib/fraudmesh")
    } else {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".fraudmesh")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = NodeDir::new(cli.dir.clone().unwrap_or_else(default_dir));
    init_tracing(matches!(cli.command, Command::Run));
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::Run) {
        // The node's own work runs below the API and the call policy (daemon::serve_api).
        runtime.on_thread_start(fraudmesh_node::priority::background);
    }
    let result = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(commands::dispatch(cli.command, dir)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(daemon: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FRAUDMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if daemon { "info" } else { "warn" }));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if daemon {
        // A panic anywhere means a state we did not plan for: exit rather than limp on
        // (systemd restarts the node; every acknowledged write is already on disk).
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            std::process::exit(101);
        }));
    }
}
