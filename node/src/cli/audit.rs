//! `fraudmesh audit`: runs the PBX audit once from the command line and prints its report.

use crate::audit::{self, report, Options, EXIT_HIGH};
use crate::cli::AuditArgs;
use crate::daemon::{config, dir::NodeDir};
use anyhow::Context;
use std::process::ExitCode;

/// `fraudmesh audit`: the flags' sources, or `[audit]` of DIR's config (or its defaults)
/// when none is given. Exit status [`EXIT_HIGH`] when a high finding exists.
pub async fn command(dir: &NodeDir, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let options = if args.asterisk.is_none() && args.freeswitch.is_none() && args.probe.is_empty() {
        let config = config::load(dir)?;
        config.audit.validate()?;
        config.audit.options()
    } else {
        Options::explicit(args.asterisk, args.freeswitch, args.probe)
    };
    let report = tokio::task::spawn_blocking(move || audit::run(&options))
        .await
        .context("the audit thread")?;
    if args.json {
        println!("{}", serde_json::to_string(&report).context("encoding the report")?);
    } else {
        print!("{}", report::human(&report));
    }
    Ok(if report.has_high() {
        ExitCode::from(EXIT_HIGH)
    } else {
        ExitCode::SUCCESS
    })
}
