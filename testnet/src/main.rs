//! `fraudmesh-testnet`: a local mesh of many fraudmesh nodes, attacked and broken on
//! purpose, with a convergence report. See `fraudmesh-testnet --help`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fraudmesh_testnet::scenario::{self, RunArgs, Scenario};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Many fraudmesh nodes on one machine: scenarios, convergence, plots.
#[derive(Debug, Parser)]
#[command(name = "fraudmesh-testnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start N real `fraudmesh` processes on 127.0.0.1, run a scenario, check its
    /// expectations (exit status 1 when one fails) and write DIR/report.json and plots.
    Run {
        /// Nodes to start.
        #[arg(long, default_value_t = 8)]
        nodes: usize,
        /// The first K nodes are everyone's seed peers.
        #[arg(long, value_name = "K", default_value_t = 2)]
        seeds: usize,
        /// What to do to the mesh.
        #[arg(long, value_enum, default_value = "attack-wave")]
        scenario: Scenario,
        /// Random seed: targets, reporters and the fault schedule.
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// Output directory (node directories, report.json, plots); must not hold a
        /// testnet yet. Default: ./testnet-SCENARIO-UNIXTIME.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Attack targets reported.
        #[arg(long, default_value_t = 200)]
        targets: usize,
        /// Reports per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Nodes that report.
        #[arg(long, default_value_t = 4)]
        reporters: usize,
        /// The fraudmesh binary. Default: `fraudmesh` beside this program, else on PATH.
        #[arg(long, value_name = "PATH", env = "FRAUDMESH_BIN")]
        bin: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// After the scenario, keep the nodes running until Ctrl-C (to poke them by hand).
        #[arg(long)]
        hold: bool,
    },
}

/// `fraudmesh` beside this executable, else the one on PATH.
fn default_bin() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("fraudmesh")))
        .filter(|p| p.is_file());
    beside.unwrap_or_else(|| {
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("fraudmesh"))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| PathBuf::from("fraudmesh"))
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FRAUDMESH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    match cli.command {
        Command::Run {
            nodes,
            seeds,
            scenario,
            seed,
            out,
            targets,
            rate,
            reporters,
            bin,
            quiet,
            hold,
        } => {
            let out = out.unwrap_or_else(|| {
                let secs = fraudmesh_node::now_ms() / 1000;
                PathBuf::from(format!("testnet-{}-{secs}", scenario.name()))
            });
            let args = RunArgs {
                nodes,
                seeds: seeds.min(nodes),
                scenario,
                seed,
                out: out.clone(),
                bin: bin.unwrap_or_else(default_bin),
                targets,
                rate,
                reporters,
                progress: !quiet && std::io::stderr().is_terminal(),
                hold,
            };
            args.validate()?;
            let report = rt.block_on(scenario::run(args))?;
            if !hold {
                print!("{}", report.table());
            }
            println!("\nreport: {}", out.join("report.json").display());
            for p in &report.plots {
                println!("plot:   {}", out.join(p).display());
            }
            Ok(report.passed())
        }
    }
}
