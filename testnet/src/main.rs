//! `fraudmesh-testnet`: a local mesh of many fraudmesh nodes, attacked and broken on
//! purpose, with a convergence report. See `fraudmesh-testnet --help`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fraudmesh_testnet::inproc::InprocArgs;
use fraudmesh_testnet::scenario::{self, RunArgs, Scenario};
use fraudmesh_testnet::sim::SimArgs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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
    /// Scenarios: attack-wave, late-join, churn, partition, poison, and spoof (needs root:
    /// the nodes and an attacker run in network namespaces it makes and removes).
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
        /// flood: fresh stranger keys, each publishing a full burst (100) of records;
        /// lower it for a quick run.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        flood_keys: usize,
    },
    /// Run N real node stacks (engine, sled store, libp2p swarm) in this one process over
    /// libp2p's memory transport; with --baseline also bare gossipsub on the same graph.
    Inproc(InprocCmd),
    /// Simulate the gossip of N nodes (deterministic, seeded): delivery ratio, hops,
    /// copies received per node per sighting.
    Sim(SimCmd),
}

/// `inproc` flags.
#[derive(Debug, clap::Args)]
struct InprocCmd {
    /// Node stacks.
    #[arg(long, default_value_t = 300)]
    nodes: usize,
    /// Also run bare gossipsub with the same graph, payload size and rate.
    #[arg(long)]
    baseline: bool,
    /// Sightings per second, all nodes together.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Peers each node dials.
    #[arg(long, default_value_t = 6)]
    degree: usize,
    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Write DIR/inproc.json too.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// `sim` flags.
#[derive(Debug, clap::Args)]
struct SimCmd {
    /// Nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Mesh degree (gossipsub D).
    #[arg(long, default_value_t = 6)]
    degree: usize,
    /// Sightings published from random nodes.
    #[arg(long, default_value_t = 100)]
    sightings: usize,
    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Model IDONTWANT on first receipt (rust-libp2p sends it only for messages of 1 kB
    /// and more, so the node's 150-byte envelopes go without).
    #[arg(long)]
    idontwant: bool,
    /// Probability that a transmission is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Validation delay before forwarding, µs.
    #[arg(long, default_value_t = 100)]
    validation_us: u64,
    /// Least link latency, µs.
    #[arg(long, default_value_t = 200)]
    latency_min_us: u64,
    /// Largest link latency, µs.
    #[arg(long, default_value_t = 5000)]
    latency_max_us: u64,
    /// Write DIR/sim.json too.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
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
    if let Command::Sim(c) = &cli.command {
        return sim(c);
    }
    let runtime = || tokio::runtime::Runtime::new().context("starting the runtime");
    match cli.command {
        Command::Sim(_) => unreachable!("handled above"),
        Command::Inproc(c) => {
            let args = InprocArgs {
                nodes: c.nodes,
                baseline: c.baseline,
                rate: c.rate,
                duration_s: c.duration,
                degree: c.degree,
                seed: c.seed,
            };
            let report = runtime()?.block_on(fraudmesh_testnet::inproc::run(&args))?;
            output(&report, report.table(), c.out.as_deref(), "inproc.json", c.json)?;
            Ok(true)
        }
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
            flood_keys,
        } => {
            let out = out.unwrap_or_else(|| {
                let secs = fraudmesh_node::now_ms() / 1000;
                PathBuf::from(format!("testnet-{}-{secs}", scenario.name()))
            });
            let mut args = RunArgs {
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
                lab: None,
                flood_keys,
            };
            args.validate()?;
            // Before the runtime: its threads start in the namespaces `spoof` runs in. The
            // namespaces go when `lab` is dropped, after the runtime (declared later).
            let lab = scenario::isolate(&args)?;
            args.lab = lab.clone();
            let rt = runtime()?;
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

fn sim(c: &SimCmd) -> anyhow::Result<bool> {
    let args = SimArgs {
        nodes: c.nodes,
        degree: c.degree,
        sightings: c.sightings,
        seed: c.seed,
        idontwant: c.idontwant,
        validation_delay_us: c.validation_us,
        latency_min_us: c.latency_min_us,
        latency_max_us: c.latency_max_us,
        loss: c.loss,
    };
    let report = fraudmesh_testnet::sim::run(&args)?;
    output(&report, report.table(), c.out.as_deref(), "sim.json", c.json)?;
    Ok(true)
}

/// Writes `report` as `dir/file` when there is a directory, and prints it as JSON or as
/// its table.
fn output(
    report: &impl serde::Serialize,
    table: String,
    dir: Option<&Path>,
    file: &str,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(file);
        std::fs::write(&path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{table}");
    }
    Ok(())
}
