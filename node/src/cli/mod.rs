//! The command line. This interface is a contract other tools and tests drive: names of
//! commands and flags do not change casually.

pub mod audit;
pub mod commands;
pub mod detect;
pub mod org;
pub mod output;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fraudmesh::detect::logs::Format;
use fraudmesh::sighting::Kind;
use std::path::PathBuf;

/// fraudmesh: a peer-to-peer blocklist for VoIP phone systems.
#[derive(Debug, Parser)]
#[command(name = "fraudmesh", version, about, propagate_version = true)]
pub struct Cli {
    /// The node's directory: config.toml, identity.key, api.token, calls.token and the
    /// database.
    /// Default: /var/lib/fraudmesh as root, ~/.fraudmesh otherwise.
    #[arg(long, global = true, env = "FRAUDMESH_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the node directory: identity, API token, calls token and config.
    Init(InitArgs),
    /// Run the node (with no config.toml, the embedded defaults apply).
    Run,
    /// Validate config.toml without starting.
    CheckConfig,
    /// Print this node's peer id.
    Id,
    /// Report attackers: sign sightings and gossip them to the mesh.
    Report(ReportArgs),
    /// Withdraw this node's sightings of a target.
    Retract {
        /// An address, prefix or +number.
        target: String,
    },
    /// Is this address blocked, and by whom?
    Check {
        /// An IP address (or prefix, or +number).
        target: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// List blocked targets.
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The running node's state.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Connected peers.
    Peers {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The enforcers that apply the list (nftables, Kamailio, files): their state, or
    /// removing what they put in place.
    #[command(args_conflicts_with_subcommands = true)]
    Enforce {
        /// Remove everything the configured enforcers put in place (the nftables table,
        /// Kamailio entries, list files emptied). Stop the node first.
        #[arg(long)]
        remove: bool,
        /// What to show.
        #[command(subcommand)]
        command: Option<EnforceCommand>,
    },
    /// Attack detection from logs.
    Detect {
        /// What to do.
        #[command(subcommand)]
        command: DetectCommand,
    },
    /// Audit the PBX for default PINs, weak passwords and management interfaces open
    /// to the world (no running node needed). Exit status 2 when a high finding exists.
    Audit(AuditArgs),
    /// Call authorisation: explain a decision.
    Calls {
        /// What to do.
        #[command(subcommand)]
        command: CallsCommand,
    },
    /// Calling accounts: their counters and locks.
    Accounts {
        /// What to do.
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// CrowdSec bouncer keys for the decisions API (no running node needed).
    Bouncers {
        /// What to do.
        #[command(subcommand)]
        command: BouncersCommand,
    },
    /// An organisation's key (kept offline): make it, and sign endorsements and
    /// revocations of its nodes as one-line texts (no running node needed).
    Org {
        /// What to do.
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Endorsements: publish signed lines through the running node, list what it holds.
    Endorsements {
        /// What to do.
        #[command(subcommand)]
        command: EndorsementsCommand,
    },
    /// Why a target is or is not blocked: every record on it, who reported it, through
    /// which organisation or config entry it is trusted and with what weight, and whether
    /// it counted.
    Explain {
        /// An address, prefix or +number.
        target: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Never block a target on this node, whatever the mesh says (a local, persistent
    /// override, shown by explain and list); or remove or list such overrides.
    Allow(AllowArgs),
}

/// `org` subcommands. FILE is the organisation's key (hex seed, mode 0600).
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Make a new organisation key in FILE (refuses an existing file) and print the
    /// organisation's id, for `[[trust.orgs]]` (or `fraudmesh init --trust-org ID`).
    Init {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Sign "PEER_ID belongs to this organisation until now + TTL" and print it as one
    /// line, for `fraudmesh endorsements add` on any node.
    Endorse {
        /// The organisation's key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The node's peer id (`fraudmesh id` on it).
        peer_id: String,
        /// The node's name, shown by explain: 1 to 64 of A-Z a-z 0-9 . _ @ : -
        #[arg(long)]
        name: String,
        /// How long the endorsement lasts, e.g. 90d; at most 400d.
        #[arg(long, value_name = "DURATION", default_value = "180d")]
        ttl: String,
    },
    /// Sign a revocation of PEER_ID and print it as one line: once published, the node
    /// counts as a stranger everywhere.
    Revoke {
        /// The organisation's key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The node's peer id.
        peer_id: String,
    },
    /// Renew the endorsements of many nodes at once: one line printed per member.
    Renew {
        /// The organisation's key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The members: endorsement lines of this organisation (e.g. the output of an
        /// earlier endorse or renew), or `PEER_ID NAME` lines; `#` comments and blank
        /// lines skipped.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// How long the new endorsements last; at most 400d.
        #[arg(long, value_name = "DURATION", default_value = "180d")]
        ttl: String,
    },
}

/// `endorsements` subcommands.
#[derive(Debug, Subcommand)]
pub enum EndorsementsCommand {
    /// Publish endorsement or revocation lines through the running node (`-` reads lines
    /// from stdin; blank lines and `#` comments skipped). Every line's format, signature
    /// and times are checked first: one malformed line publishes nothing. The node then
    /// takes them in order and says which it refused (e.g. an organisation it does not
    /// trust); the exit status is 1 if it refused any.
    Add {
        /// `fraudmesh-endorsement:v1:…` lines, or `-`.
        #[arg(required = true, value_name = "LINE")]
        lines: Vec<String>,
    },
    /// The endorsements the running node holds.
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// `allow` arguments: `allow TARGET --reason TEXT [--ttl D]`, `allow --remove TARGET`,
/// `allow --list`.
#[derive(Debug, Args)]
pub struct AllowArgs {
    /// An address, prefix or +number.
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    pub target: Option<String>,
    /// Why (kept with the override, shown by explain and list).
    #[arg(long, value_name = "TEXT", required_unless_present_any = ["remove", "list"], conflicts_with_all = ["remove", "list"])]
    pub reason: Option<String>,
    /// How long the override lasts, e.g. 7d. Default: until removed.
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["remove", "list"])]
    pub ttl: Option<String>,
    /// Remove the override of TARGET.
    #[arg(long, conflicts_with = "list")]
    pub remove: bool,
    /// List the overrides.
    #[arg(long)]
    pub list: bool,
    /// With --list: print one JSON document.
    #[arg(long, requires = "list")]
    pub json: bool,
}

/// `detect` subcommands.
#[derive(Debug, Subcommand)]
pub enum DetectCommand {
    /// Show what a log file would produce: the events of each line and the reports the
    /// thresholds would make (replayed with the lines' own timestamps). Needs no running
    /// node; uses DIR's [detect] settings when DIR has a config, else the defaults.
    Test {
        /// The log file.
        file: PathBuf,
        /// Whose log it is; default: the format of DIR's [[detect.logs]] entry for FILE,
        /// else the one whose patterns recognise most of its lines.
        #[arg(long, value_name = "NAME")]
        format: Option<LogFormat>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// `calls` subcommands.
#[derive(Debug, Subcommand)]
pub enum CallsCommand {
    /// How the running node would decide a call now, without counting it.
    Check {
        /// The calling account.
        #[arg(long)]
        account: String,
        /// The number dialled.
        #[arg(long)]
        to: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// `accounts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Accounts with calls in the last day or a lock.
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Lift an account's lock.
    Unlock {
        /// The account.
        account: String,
    },
}

/// `enforce` subcommands.
#[derive(Debug, Subcommand)]
pub enum EnforceCommand {
    /// Each enforcer's state: last apply, entries, errors.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// `bouncers` subcommands.
#[derive(Debug, Subcommand)]
pub enum BouncersCommand {
    /// Register a bouncer and print its new key (shown once; give it to the bouncer as
    /// its api_key).
    Add {
        /// A name: letters, digits, '.', '_' or '-'.
        name: String,
    },
    /// List registered bouncers.
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Delete a bouncer: its key stops working at once.
    Delete {
        /// Its name.
        name: String,
    },
}

/// `init` flags.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// libp2p listen address (repeatable). Default /ip4/0.0.0.0/tcp/7710.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// API address. Default 127.0.0.1:7711.
    #[arg(long, value_name = "HOST:PORT")]
    pub api: Option<String>,
    /// Seed peer, /ip4/…/tcp/…/p2p/<peer id> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub seed: Vec<String>,
    /// Trust this peer fully (repeatable).
    #[arg(long, value_name = "PEER_ID")]
    pub trust: Vec<String>,
    /// Trust this organisation's endorsed nodes at 1.0 (repeatable; the id `fraudmesh
    /// org init` printed). Its name in the config is `org-1`, `org-2`…: edit it.
    #[arg(long = "trust-org", value_name = "ID")]
    pub trust_org: Vec<String>,
    /// Replace an existing identity, tokens and config.
    #[arg(long)]
    pub force: bool,
}

/// `report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Addresses, prefixes (within the configured bound) or +E.164 numbers.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub targets: Vec<String>,
    /// Read targets from a file, one per line ('#' comments and blank lines skipped).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// What was seen.
    #[arg(long, value_enum, default_value_t = ReportKind::Manual)]
    pub kind: ReportKind,
    /// How long the sighting stays active, e.g. 1h, 7d. Default: policy.default_ttl.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Free-text reason kept as evidence (at most 200 bytes).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `audit` flags. With none of --asterisk, --freeswitch, --probe: `[audit]` of DIR's
/// config (default /etc/asterisk and /etc/freeswitch, each skipped when absent).
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// An Asterisk configuration directory (pjsip.conf, sip.conf, voicemail.conf,
    /// manager.conf, http.conf).
    #[arg(long, value_name = "DIR")]
    pub asterisk: Option<PathBuf>,
    /// A FreeSWITCH configuration directory (vars.xml, directory/, autoload_configs/).
    #[arg(long, value_name = "DIR")]
    pub freeswitch: Option<PathBuf>,
    /// Try TCP connects to 80, 443, 5038, 5060, 8021, 8088 and 8089 on this host
    /// (repeatable; only the hosts named are touched).
    #[arg(long, value_name = "HOST")]
    pub probe: Vec<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// What a report says was seen (`--kind`); retractions have their own command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportKind {
    /// Probing the SIP stack.
    Scan,
    /// Repeated failed authentication.
    AuthFailure,
    /// A flood of INVITEs or other requests.
    InviteFlood,
    /// A toll-fraud attempt or fraud destination number.
    TollFraud,
    /// An operator's manual ban.
    Manual,
}

impl ReportKind {
    /// The core's sighting kind.
    pub fn kind(self) -> Kind {
        match self {
            Self::Scan => Kind::Scan,
            Self::AuthFailure => Kind::AuthFailure,
            Self::InviteFlood => Kind::InviteFlood,
            Self::TollFraud => Kind::TollFraud,
            Self::Manual => Kind::Manual,
        }
    }
}

/// Whose log a file is (`detect test --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Asterisk's messages, full or security log.
    Asterisk,
    /// FreeSWITCH's freeswitch.log.
    Freeswitch,
    /// Kamailio's syslog lines from fraudmesh's cfg.
    Kamailio,
    /// Only the operator's [[detect.patterns]].
    Custom,
}

impl LogFormat {
    /// The core's log format.
    pub fn format(self) -> Format {
        match self {
            Self::Asterisk => Format::Asterisk,
            Self::Freeswitch => Format::FreeSwitch,
            Self::Kamailio => Format::Kamailio,
            Self::Custom => Format::Custom,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_kinds_are_named_as_the_core_names_them() {
        for k in ReportKind::value_variants() {
            let name = k.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(k.kind().as_str()));
        }
    }

    #[test]
    fn log_formats_are_named_as_the_core_names_them() {
        for f in LogFormat::value_variants() {
            let name = f.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(f.format().label()));
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
