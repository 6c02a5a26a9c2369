//! What each CLI command does. Commands other than `init`, `run`, `check-config` and
//! `id` talk to the running node through its API.

use crate::cli::{
    AccountsCommand, BouncersCommand, CallsCommand, Command, DetectCommand, EnforceCommand, InitArgs, ReportArgs,
};
use crate::daemon::config::{self, Config, TrustedPeer};
use crate::daemon::{self, dir::NodeDir};
use crate::http::bouncers::Bouncers;
use crate::http::client::{Client, Hints};
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
            let v = connect(&dir)?
                .delete(&format!("/v1/sightings/{}", encode(&target)))
                .await?;
            println!("retracted {}", v["retracted"].as_str().unwrap_or(&target));
        }
        Command::Check { target, json } => {
            let v = connect(&dir)?.get(&format!("/v1/check/{}", encode(&target))).await?;
            show(&v, json, print_check);
        }
        Command::List { json } => show(&connect(&dir)?.get("/v1/blocklist").await?, json, print_list),
        Command::Status { json } => show(&connect(&dir)?.get("/v1/status").await?, json, print_status),
        Command::Peers { json } => show(&connect(&dir)?.get("/v1/peers").await?, json, print_peers),
        Command::Bouncers { command } => bouncers(&dir, command)?,
        Command::Calls {
            command: CallsCommand::Check { account, to, json },
        } => {
            let path = format!("/v1/calls/check?account={}&to={}", encode(&account), encode(&to));
            let v = connect(&dir)?.get(&path).await?;
            show(&v, json, print_call);
        }
        Command::Accounts {
            command: AccountsCommand::List { json },
        } => show(&connect(&dir)?.get("/v1/accounts").await?, json, print_accounts),
        Command::Accounts {
            command: AccountsCommand::Unlock { account },
        } => {
            let v = connect(&dir)?
                .post(&format!("/v1/accounts/{}/unlock", encode(&account)), &json!({}))
                .await?;
            if v["unlocked"] == true {
                println!("unlocked {account}");
            } else {
                println!("{account} was not locked");
            }
        }
        Command::Audit(args) => return crate::cli::audit::command(&dir, args).await,
        Command::Detect {
            command: DetectCommand::Test { file, format, json },
        } => detect_test(&dir, &file, format.as_deref(), json)?,
        Command::Enforce { remove: true, .. } => return enforce_remove(&dir).await,
        Command::Enforce {
            command: Some(EnforceCommand::Status { json }),
            ..
        } => show(&connect(&dir)?.get("/v1/enforce").await?, json, print_enforce),
        Command::Enforce { .. } => bail!("say what to do: fraudmesh enforce status, or fraudmesh enforce --remove"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `detect test FILE`: replays a log through the patterns and thresholds.
fn detect_test(dir: &NodeDir, file: &std::path::Path, format: Option<&str>, json: bool) -> anyhow::Result<()> {
    use fraudmesh::detect::logs::{self, Format, Outcome};
    use fraudmesh::detect::pipeline::{Pipeline, Verdict};
    let format = match format {
        None => None,
        Some(f) => Some(
            Format::parse(f)
                .ok_or_else(|| anyhow::anyhow!("--format: {f:?} is not one of asterisk, freeswitch, kamailio"))?,
        ),
    };
    // The directory's settings when it has a config; the defaults otherwise.
    let detect = config::check(dir)?.detect;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut pipeline = Pipeline::new(detect.rules.clone());
    let (mut events, mut ambiguous, mut reports) = (Vec::new(), Vec::new(), Vec::new());
    let mut clock = 0;
    let mut lines = 0;
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        lines += 1;
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches('\r');
        clock = logs::timestamp(line).unwrap_or(clock).max(clock);
        match detect.interpret(line, format) {
            Outcome::Event(e) => {
                events.push(json!({
                    "line": i + 1, "kind": e.kind.label(), "source": e.source.to_string(),
                    "username": e.username, "pattern": e.pattern,
                }));
                let verdict = pipeline.observe(e.kind, e.source, e.username.as_deref(), clock);
                if let Verdict::Detected(d) = verdict {
                    reports.push(json!({
                        "line": i + 1, "source": d.source.to_string(), "kind": d.kind.label(),
                        "sighting_kind": d.kind.sighting_kind().as_str(),
                        "count": d.count, "seconds": d.last_at.saturating_sub(d.first_at).div_ceil(1000),
                        "usernames": d.usernames,
                    }));
                }
            }
            Outcome::Ambiguous(p) => ambiguous.push(json!({ "line": i + 1, "pattern": p })),
            Outcome::Unknown => {}
        }
    }
    let doc = json!({
        "file": file.display().to_string(), "lines": lines, "patterns_version": logs::PATTERNS_VERSION,
        "events": events, "ambiguous": ambiguous, "reports": reports,
    });
    if json {
        println!("{doc}");
        return Ok(());
    }
    for e in doc["events"].as_array().into_iter().flatten() {
        let user = e["username"].as_str().map(|u| format!(" user {u}")).unwrap_or_default();
        println!(
            "line {}: {} from {}{user} ({})",
            e["line"],
            e["kind"].as_str().unwrap_or("?"),
            e["source"].as_str().unwrap_or("?"),
            e["pattern"].as_str().unwrap_or("?")
        );
    }
    for a in doc["ambiguous"].as_array().into_iter().flatten() {
        println!(
            "line {}: ignored: its address field appears more than once ({})",
            a["line"],
            a["pattern"].as_str().unwrap_or("?")
        );
    }
    let reports = doc["reports"].as_array().cloned().unwrap_or_default();
    if !reports.is_empty() {
        println!("would report:");
    }
    for r in &reports {
        println!(
            "  {} as {} ({} x{} in {}s, usernames: {}) at line {}",
            r["source"].as_str().unwrap_or("?"),
            r["sighting_kind"].as_str().unwrap_or("?"),
            r["kind"].as_str().unwrap_or("?"),
            r["count"],
            r["seconds"],
            r["usernames"]
                .as_array()
                .map(|u| u.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
            r["line"],
        );
    }
    println!(
        "{} lines, {} events, {} ignored as ambiguous, {} reports",
        lines,
        doc["events"].as_array().map_or(0, Vec::len),
        doc["ambiguous"].as_array().map_or(0, Vec::len),
        reports.len()
    );
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

fn print_call(v: &Value) {
    let verdict = if v["allow"] == true { "ALLOW" } else { "DENY" };
    println!(
        "{verdict} ({}): {}",
        v["rule"].as_str().unwrap_or("?"),
        v["reason"].as_str().unwrap_or("")
    );
}

fn print_accounts(v: &Value) {
    let Some(all) = v["accounts"].as_array().filter(|a| !a.is_empty()) else {
        println!("no account has called in the last day");
        return;
    };
    for a in all {
        let lock = match a["lock_reason"].as_str() {
            Some(r) => format!("LOCKED since {} ({r})", time(&a["locked_since"])),
            None => "ok".into(),
        };
        println!(
            "{}: {lock}; calls {} last hour, {} last day ({} international), {} in progress, {} min last day",
            a["account"].as_str().unwrap_or("?"),
            a["calls_last_hour"],
            a["calls_last_day"],
            a["international_last_day"],
            a["active"],
            a["minutes_last_day"],
        );
    }
}

fn print_enforce(v: &Value) {
    let Some(all) = v["enforcers"].as_array().filter(|a| !a.is_empty()) else {
        println!("no enforcers are configured (see [enforce] in the config)");
        return;
    };
    for e in all {
        let last = if e["last_apply"].is_null() {
            "never".to_string()
        } else {
            format!(
                "{} ({:.1} ms)",
                time(&e["last_apply"]),
                e["last_apply_ms"].as_f64().unwrap_or(0.0)
            )
        };
        println!(
            "{}: {}, {} entries, last apply {}, {} applies ({} full), {} errors",
            e["name"].as_str().unwrap_or("?"),
            e["state"].as_str().unwrap_or("?"),
            e["entries"],
            last,
            e["applies"],
            e["full_syncs"],
            e["errors"],
        );
        if let Some(err) = e["last_error"].as_str() {
            println!("  last error {}: {err}", time(&e["last_error_at"]));
        }
    }
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
                    println!("{}  added {}", x.name, time(&json!(x.created)));
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

/// A client of the node that runs from DIR: `node.json` names its API while it runs,
/// else the config's API address is tried.
fn connect(dir: &NodeDir) -> anyhow::Result<Client> {
    let api = match dir.running() {
        Some(rt) => rt.api,
        None => config::load(dir)?.node.api,
    };
    let hints = Hints {
        not_running: Some(format!("start it with: fraudmesh --dir {} run", dir.root().display())),
        no_token: Some(format!("no API token at {}", dir.token().display())),
    };
    Ok(Client::new(&api, dir.load_token().ok())?.with_hints(hints))
}

/// Prints one JSON document, or the human form.
fn show(v: &Value, json: bool, human: fn(&Value)) {
    if json {
        println!("{v}");
    } else {
        human(v);
    }
}

/// Percent-encodes a target for a URL path (prefixes contain '/', IPv6 ':').
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    std::fs::write(dir.config(), text).with_context(|| format!("writing {}", dir.config().display()))?;
    println!("{peer_id}");
    for addr in &config.node.listen {
        let addr: Multiaddr = addr.parse()?;
        println!("{}", dialable(&addr, &peer_id));
    }
    eprintln!(
        "initialised {} — start the node with: fraudmesh --dir {} run",
        dir.root().display(),
        dir.root().display()
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
        "config OK: {source}\n  listen {}\n  api {}\n  seeds {}, trusted peers {}",
        s.listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        s.api,
        s.seeds.len(),
        s.policy.trust().trusted.len()
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
        let mut body = json!({ "targets": chunk, "kind": args.kind });
        if let Some(ttl) = &args.ttl {
            body["ttl"] = json!(ttl);
        }
        if let Some(reason) = &args.reason {
            body["reason"] = json!(reason);
        }
        let v = client.post("/v1/sightings", &body).await?;
        accepted += v["accepted"].as_u64().unwrap_or(0);
    }
    println!("reported {accepted} target(s)");
    Ok(())
}

fn time(ms: &Value) -> String {
    match ms.as_u64() {
        Some(ms) => crate::time::rfc3339(ms),
        None => "-".into(),
    }
}

fn print_check(v: &Value) {
    let target = v["target"].as_str().unwrap_or("?");
    let reporters = v["reporters"].as_array().map(Vec::len).unwrap_or(0);
    if v["blocked"].as_bool() == Some(true) {
        println!(
            "{target}: BLOCKED until {} ({reporters} reporter(s))",
            time(&v["until"])
        );
    } else {
        println!("{target}: not blocked ({reporters} reporter(s))");
    }
    for m in v["matches"].as_array().into_iter().flatten() {
        let note = if m["allowlisted"].as_bool() == Some(true) {
            " (allowlisted)"
        } else {
            ""
        };
        println!(
            "  {} score {}{} reporters: {}",
            m["target"].as_str().unwrap_or("?"),
            m["score"],
            note,
            m["reporters"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
    }
}

fn print_list(v: &Value) {
    let list = v["blocked"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("nothing blocked");
        return;
    }
    println!("{:<42} {:<22} {:>9} {:>6}", "TARGET", "UNTIL", "REPORTERS", "SCORE");
    for d in list {
        println!(
            "{:<42} {:<22} {:>9} {:>6}",
            d["target"].as_str().unwrap_or("?"),
            time(&d["until"]),
            d["reporters"].as_array().map(Vec::len).unwrap_or(0),
            d["score"]
        );
    }
}

fn print_status(v: &Value) {
    println!("peer id   {}", v["peer_id"].as_str().unwrap_or("?"));
    println!("version   {}", v["version"].as_str().unwrap_or("?"));
    println!("peers     {} ({} gossiping)", v["peers"], v["gossip_peers"]);
    println!("records   {}", v["records"]);
    println!("blocked   {}", v["blocked"]);
    println!("uptime    {}s", v["uptime_s"]);
    for a in v["listen"].as_array().into_iter().flatten() {
        println!("listen    {}", a.as_str().unwrap_or("?"));
    }
}

fn print_peers(v: &Value) {
    let list = v["peers"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no peers connected");
        return;
    }
    println!("{:<54} {:<28} {:>7} {:>6}", "PEER", "ADDRESS", "RTT MS", "GOSSIP");
    for p in list {
        println!(
            "{:<54} {:<28} {:>7} {:>6}",
            p["peer_id"].as_str().unwrap_or("?"),
            p["address"].as_str().unwrap_or("?"),
            p["rtt_ms"]
                .as_u64()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            if p["gossip"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
        );
    }
}
