//! What each CLI command does. Commands other than `init`, `run`, `check-config` and
//! `id` talk to the running node through its API.

use super::output::{self, show};
use super::{
    audit, detect, org, AccountsCommand, AllowArgs, BouncersCommand, CallsCommand, Command, DetectCommand,
    EndorsementsCommand, EnforceCommand, InitArgs, ReportArgs,
};
use crate::daemon::config::{self, Config, TrustedOrg, TrustedPeer};
use crate::daemon::{self, dir::NodeDir};
use crate::http::bouncers::Bouncers;
use crate::http::client::{Client, Hints};
use crate::http::types::{AllowRequest, SightingsRequest, Ttl};
use anyhow::{bail, Context};
use fraudmesh::identity::PublicKey;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde_json::{json, Value};
use std::process::ExitCode;

/// Most targets sent in one request by `report --file`.
const REPORT_CHUNK: usize = 10_000;

/// Runs one command.
pub async fn dispatch(command: Command, dir: NodeDir) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(args) => init(&dir, args)?,
        Command::Run => daemon::run(dir).await?,
        Command::CheckConfig => check_config(&dir)?,
        Command::Id => println!("{}", dir.load_identity()?.public().peer_id()),
        Command::Report(args) => report(&dir, args).await?,
        Command::Retract { target } => {
            let v = connect(&dir)?.retract(&target).await?;
            println!("retracted {}", v.retracted);
        }
        Command::Check { target, json } => show(&connect(&dir)?.check(&target).await?, json, output::check),
        Command::List { json } => show(&connect(&dir)?.blocklist().await?, json, output::list),
        Command::Status { json } => show(&connect(&dir)?.status().await?, json, output::status),
        Command::Peers { json } => show(&connect(&dir)?.peers().await?, json, output::peers),
        Command::Bouncers { command } => bouncers(&dir, command)?,
        Command::Calls {
            command: CallsCommand::Check { account, to, json },
        } => show(&connect(&dir)?.call_check(&account, &to).await?, json, output::call),
        Command::Accounts {
            command: AccountsCommand::List { json },
        } => show(&connect(&dir)?.accounts().await?, json, output::accounts),
        Command::Accounts {
            command: AccountsCommand::Unlock { account },
        } => {
            if connect(&dir)?.unlock(&account).await?.unlocked {
                println!("unlocked {account}");
            } else {
                println!("{account} was not locked");
            }
        }
        Command::Audit(args) => return audit::command(&dir, args).await,
        Command::Detect {
            command: DetectCommand::Test { file, format, json },
        } => detect::command(&dir, &file, format, json)?,
        Command::Enforce { remove: true, .. } => return enforce_remove(&dir).await,
        Command::Enforce {
            command: Some(EnforceCommand::Status { json }),
            ..
        } => show(&connect(&dir)?.enforcers().await?, json, output::enforcers),
        Command::Enforce { .. } => bail!("say what to do: fraudmesh enforce status, or fraudmesh enforce --remove"),
        Command::Org { command } => org::command(command)?,
        Command::Endorsements {
            command: EndorsementsCommand::Add { lines },
        } => return endorsements_add(&dir, lines).await,
        Command::Endorsements {
            command: EndorsementsCommand::List { json },
        } => show(&connect(&dir)?.endorsements().await?, json, output::endorsements),
        Command::Explain { target, json } => {
            check_target(&target)?;
            show(&connect(&dir)?.explain(&target).await?, json, output::explain)
        }
        Command::Allow(args) => allow(&dir, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks a target's syntax before asking the node (breadth is the node's call).
fn check_target(t: &str) -> anyhow::Result<()> {
    let wide = fraudmesh::target::Bounds {
        min_v4_len: 0,
        min_v6_len: 0,
    };
    fraudmesh::target::Target::parse(t, wide).with_context(|| format!("target {t:?}"))?;
    Ok(())
}

/// `endorsements add LINE…|-`: every line checked here first, then published one by one.
async fn endorsements_add(dir: &NodeDir, args: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut lines = Vec::new();
    for a in args {
        if a == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading stdin")?;
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        } else {
            lines.push(a.trim().to_string());
        }
    }
    if lines.is_empty() {
        bail!("no endorsement lines given");
    }
    let now = crate::now_ms();
    let skew = config::load(dir)?
        .policy
        .max_clock_skew
        .as_millis()
        .min(u128::from(u64::MAX)) as u64;
    for (i, l) in lines.iter().enumerate() {
        fraudmesh::endorsement::parse_line(l, now, skew)
            .with_context(|| format!("line {}: {:?}", i + 1, crate::http::state::printable(l, 60)))?;
    }
    let client = connect(dir)?;
    let mut refused = 0;
    for (i, l) in lines.iter().enumerate() {
        match client.add_endorsement(l).await {
            Ok(a) => {
                let e = &a.endorsement;
                let what = if e.kind == "revoke" {
                    format!("revoked {}", e.member)
                } else {
                    format!(
                        "endorsed {} as {} until {}",
                        e.member,
                        e.name,
                        output::time(Some(e.expires_at_ms))
                    )
                };
                let note = if a.changed {
                    ""
                } else {
                    " (already held, or a newer one is)"
                };
                println!("{what} by {}{note}", e.org);
            }
            Err(e) => {
                refused += 1;
                eprintln!("error: line {}: {e:#}", i + 1);
            }
        }
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `allow TARGET --reason TEXT [--ttl D]`, `allow --remove TARGET`, `allow --list`.
async fn allow(dir: &NodeDir, args: AllowArgs) -> anyhow::Result<()> {
    if args.list {
        show(&connect(dir)?.allows().await?, args.json, output::allows);
        return Ok(());
    }
    let target = args.target.context("say which target (or --list)")?;
    check_target(&target)?;
    if args.remove {
        let r = connect(dir)?.unallow(&target).await?;
        println!("removed the override of {}: the mesh decides it again", r.target);
        return Ok(());
    }
    let reason = args.reason.context("say why with --reason TEXT")?;
    if let Some(ttl) = &args.ttl {
        humantime::parse_duration(ttl.trim())
            .map_err(|e| anyhow::anyhow!("--ttl {ttl:?}: not a duration such as 7d ({e})"))?;
    }
    let request = AllowRequest {
        target,
        ttl: args.ttl.map(Ttl::Text),
        reason,
    };
    let a = connect(dir)?.allow(&request).await?;
    let until = match a.allow.until {
        Some(u) => format!("until {}", output::time(Some(u))),
        None => "until removed".to_string(),
    };
    println!("allowed {} {until}: never blocked here", a.allow.target);
    if !a.penalised.is_empty() {
        println!(
            "reporters overridden (they lose weight here, see [trust.reputation]): {}",
            a.penalised.join(", ")
        );
    }
    Ok(())
}

/// `enforce --remove`: every configured enforcer removes what it put in place. Refused
/// while the node runs (it would put everything back).
async fn enforce_remove(dir: &NodeDir) -> anyhow::Result<ExitCode> {
    if let Some(rt) = dir.running() {
        bail!(
            "the node is running (pid {}): stop it first (e.g. systemctl stop fraudmesh), then run this again",
            rt.pid
        );
    }
    let config = config::load(dir)?;
    config.enforce.validate()?;
    let (lines, ok) = config.enforce.remove_all().await;
    if lines.is_empty() {
        println!("no enforcers are configured: nothing to remove");
    }
    for l in lines {
        println!("{l}");
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `bouncers add|list|delete`: edits `DIR/bouncers.json`.
fn bouncers(dir: &NodeDir, command: BouncersCommand) -> anyhow::Result<()> {
    let b = Bouncers::new(dir.bouncers());
    match command {
        BouncersCommand::Add { name } => {
            std::fs::create_dir_all(dir.root()).with_context(|| format!("creating {}", dir.root().display()))?;
            println!("{}", b.add(&name, crate::now_ms())?);
        }
        BouncersCommand::List { json } => {
            let all = b.list()?;
            if json {
                let list: Vec<Value> = all
                    .iter()
                    .map(|b| json!({ "name": b.name, "created": b.created }))
                    .collect();
                println!("{}", json!({ "bouncers": list }));
            } else if all.is_empty() {
                println!("no bouncers (add one: fraudmesh bouncers add NAME)");
            } else {
                for x in all {
                    println!("{}  added {}", x.name, output::time(Some(x.created)));
                }
            }
        }
        BouncersCommand::Delete { name } => {
            b.delete(&name)?;
            println!("deleted {name}");
        }
    }
    Ok(())
}

/// A client of the node that runs from DIR. While it runs, `node.json` names its API and
/// the client holds the token. Without a live `node.json` (missing, or its pid gone) the
/// config's API address is tried for reads that need no token, but the token is never
/// sent there: another local process may have bound that address. Commands that need it
/// say the node is not running.
fn connect(dir: &NodeDir) -> anyhow::Result<Client> {
    let start = format!("start it with: fraudmesh --dir {} run", dir.root().display());
    let (api, token, no_token) = match dir.running() {
        Some(rt) => (
            rt.api,
            dir.load_token().ok(),
            format!("no API token at {}", dir.token().display()),
        ),
        None => (
            config::load(dir)?.node.api,
            None,
            format!(
                "no node is running from {} (no {} with a live pid; the token is sent only to a running node): {start}",
                dir.root().display(),
                dir.runtime().display()
            ),
        ),
    };
    let hints = Hints {
        not_running: Some(start),
        no_token: Some(no_token),
    };
    Ok(Client::new(&api, token)?.with_hints(hints))
}

fn init(dir: &NodeDir, args: InitArgs) -> anyhow::Result<()> {
    if dir.config().exists() && !args.force {
        bail!("{} already exists (use --force to replace it)", dir.config().display());
    }
    let mut config = Config::default();
    if !args.listen.is_empty() {
        config.node.listen = args.listen;
    }
    if let Some(api) = args.api {
        config.node.api = api;
    }
    config.node.seeds = args.seed;
    for t in &args.trust {
        t.parse::<PublicKey>().with_context(|| format!("--trust {t}"))?;
        config.trust.peers.push(TrustedPeer {
            peer_id: t.clone(),
            weight: 1.0,
        });
    }
    for (i, t) in args.trust_org.iter().enumerate() {
        t.parse::<PublicKey>()
            .with_context(|| format!("--trust-org {t}: not an organisation id (12D3KooW…)"))?;
        config.trust.orgs.push(TrustedOrg {
            id: t.clone(),
            name: format!("org-{}", i + 1),
            weight: 1.0,
        });
    }
    // Validate before writing anything, with a throwaway key for the policy check.
    config.settings(config::placeholder_key())?;
    let identity = dir.create_secrets(args.force)?;
    let peer_id = identity.public().peer_id();
    let text = format!(
        "# fraudmesh node configuration, written by `fraudmesh init`.\n\
         # Every key is optional; `fraudmesh check-config` validates this file.\n\
         # The full list of keys with their defaults and meaning:\n{}\n{}",
        crate::daemon::config::DEFAULT_TOML
            .lines()
            .map(|l| format!("#   {l}\n"))
            .collect::<String>(),
        toml::to_string_pretty(&config).context("writing the config")?
    );
    crate::fsutil::write_atomically(&dir.config(), text.as_bytes(), 0o644)?;
    println!("{peer_id}");
    for addr in &config.node.listen {
        let addr: Multiaddr = addr.parse()?;
        println!("{}", dialable(&addr, &peer_id));
    }
    eprintln!(
        "initialised {} — start the node with: fraudmesh --dir {} run\n\
         the SIP stack's token for call authorisation is in {} (mode 0640; let the PBX's group \
         read it, e.g. chgrp asterisk {})",
        dir.root().display(),
        dir.root().display(),
        dir.calls_token().display(),
        dir.calls_token().display()
    );
    Ok(())
}

/// The address peers can dial: an unspecified listen address is shown as 127.0.0.1
/// (replace it with this host's address for other machines).
fn dialable(addr: &Multiaddr, peer_id: &str) -> String {
    let shown: Multiaddr = addr
        .iter()
        .map(|p| match p {
            Protocol::Ip4(ip) if ip.is_unspecified() => Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST),
            Protocol::Ip6(ip) if ip.is_unspecified() => Protocol::Ip6(std::net::Ipv6Addr::LOCALHOST),
            p => p,
        })
        .collect();
    format!("{shown}/p2p/{peer_id}")
}

fn check_config(dir: &NodeDir) -> anyhow::Result<()> {
    let local = match dir.load_identity() {
        Ok(id) => id.public(),
        Err(_) => config::placeholder_key(),
    };
    let s = config::load_settings(dir, local)?;
    let source = if dir.config().exists() {
        dir.config().display().to_string()
    } else {
        "embedded defaults (no config.toml)".to_string()
    };
    println!(
        "config OK: {source}\n  listen {}\n  api {}\n  seeds {}, trusted peers {}, trusted organisations {}",
        s.listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        s.api,
        s.seeds.len(),
        s.policy.trust().trusted.len(),
        s.policy.trust().orgs.len()
    );
    Ok(())
}

async fn report(dir: &NodeDir, args: ReportArgs) -> anyhow::Result<()> {
    let targets: Vec<String> = match &args.file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        None => args.targets.clone(),
    };
    if targets.is_empty() {
        bail!("no targets to report");
    }
    // Check every target locally first: a bad line refuses the whole batch.
    let wide = fraudmesh::target::Bounds {
        min_v4_len: 0,
        min_v6_len: 0,
    };
    for (i, t) in targets.iter().enumerate() {
        // Breadth is the node's call (its config may differ); syntax is checked here.
        fraudmesh::target::Target::parse(t, wide).with_context(|| format!("target {} ({t:?})", i + 1))?;
    }
    let client = connect(dir)?;
    let mut accepted = 0;
    for chunk in targets.chunks(REPORT_CHUNK) {
        let request = SightingsRequest {
            targets: chunk.to_vec(),
            kind: Some(args.kind.kind().as_str().to_string()),
            ttl: args.ttl.clone().map(Ttl::Text),
            reason: args.reason.clone(),
            ..Default::default()
        };
        accepted += client.report(&request).await?.accepted;
    }
    println!("reported {accepted} target(s)");
    Ok(())
}
