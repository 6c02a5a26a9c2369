//! `fraudmesh org …`: an organisation's key and the endorsements and revocations it
//! signs. Meant for the provider's admin laptop: nothing here talks to a node; the lines
//! printed are published with `fraudmesh endorsements add` (or `POST /v1/endorsements`)
//! on any node of the mesh.

use super::OrgCommand;
use crate::daemon::dir::{create_key_file, load_key_file};
use anyhow::{anyhow, bail, Context};
use fraudmesh::endorsement::{self, EndorsementKind, EndorsementRecord, LINE_PREFIX, MAX_TTL_MS};
use fraudmesh::identity::{Identity, PublicKey};
use fraudmesh::Millis;
use std::path::Path;

/// Most members in one `org renew --from FILE`.
pub const MAX_RENEW: usize = 100_000;

/// Runs one `org` subcommand.
pub fn command(command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Init { key } => {
            let org = create_key_file(&key)?;
            println!("{}", org.public().peer_id());
            eprintln!(
                "organisation key written to {} (mode 0600): keep it offline and backed up.\n\
                 Trust it on each node: [[trust.orgs]] id = \"{}\" name = \"…\" weight = 1.0 \
                 (or fraudmesh init --trust-org {}); endorse a node: fraudmesh org endorse --key {} PEER_ID --name NAME",
                key.display(),
                org.public().peer_id(),
                org.public().peer_id(),
                key.display()
            );
        }
        OrgCommand::Endorse {
            key,
            peer_id,
            name,
            ttl,
        } => {
            let ttl = ttl_ms(&ttl)?;
            let member = member(&peer_id)?;
            let org = load_key_file(&key)?;
            println!("{}", endorse(&org, member, &name, crate::now_ms(), ttl)?.to_line());
        }
        OrgCommand::Revoke { key, peer_id } => {
            let member = member(&peer_id)?;
            let org = load_key_file(&key)?;
            not_self(&org, &member)?;
            let rec = endorsement::revoke(&org, member, crate::now_ms()).context("signing the revocation")?;
            println!("{}", rec.to_line());
        }
        OrgCommand::Renew { key, from, ttl } => {
            let ttl = ttl_ms(&ttl)?;
            let org = load_key_file(&key)?;
            let members = renewals(&org, &from)?;
            // Sign everything before printing anything: one bad member prints nothing.
            let now = crate::now_ms();
            let lines = members
                .iter()
                .map(|(member, name)| {
                    endorse(&org, *member, name, now, ttl)
                        .map(|r| r.to_line())
                        .with_context(|| format!("renewing {}", member.peer_id()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for l in lines {
                println!("{l}");
            }
            eprintln!("renewed {} endorsement(s)", members.len());
        }
    }
    Ok(())
}

/// A duration text (`180d`, `12h`) as ms: at least 1 s, at most the protocol's 400 days.
pub fn ttl_ms(text: &str) -> anyhow::Result<Millis> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| anyhow!("--ttl {text:?}: not a duration such as 180d or 12h ({e})"))?;
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if !(1000..=MAX_TTL_MS).contains(&ms) {
        bail!(
            "--ttl {text:?}: must be between 1s and {}d (the protocol's bound)",
            MAX_TTL_MS / 86_400_000
        );
    }
    Ok(ms)
}

/// A member's peer id as a key.
fn member(peer_id: &str) -> anyhow::Result<PublicKey> {
    peer_id
        .trim()
        .parse()
        .with_context(|| format!("{peer_id:?} is not a node's peer id (12D3KooW…, `fraudmesh id` on the node)"))
}

/// Refuses an organisation endorsing or revoking itself.
fn not_self(org: &Identity, member: &PublicKey) -> anyhow::Result<()> {
    if org.public() == *member {
        bail!("that is the organisation's own id: endorse its nodes' peer ids (`fraudmesh id` on each)");
    }
    Ok(())
}

/// Signs one endorsement, with the core's refusal as the error.
fn endorse(
    org: &Identity,
    member: PublicKey,
    name: &str,
    now: Millis,
    ttl: Millis,
) -> anyhow::Result<EndorsementRecord> {
    not_self(org, &member)?;
    endorsement::endorse(org, member, name, now, ttl)
        .with_context(|| format!("endorsing {} as {name:?}", member.peer_id()))
}

/// The members of `org` listed in FILE (endorsement lines of `org`, or `PEER_ID NAME`),
/// each once; any bad line is an error naming it.
fn renewals(org: &Identity, from: &Path) -> anyhow::Result<Vec<(PublicKey, String)>> {
    let text = std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    let mut out: Vec<(PublicKey, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{} line {}", from.display(), i + 1);
        let (member, name) = if line.starts_with(LINE_PREFIX) {
            let rec = decode_any_time(line).with_context(at)?;
            let e = rec.endorsement();
            if e.org != org.public() {
                bail!(
                    "{}: signed by organisation {}, not by this key ({})",
                    at(),
                    e.org.peer_id(),
                    org.public().peer_id()
                );
            }
            if e.kind != EndorsementKind::Endorse {
                bail!(
                    "{}: a revocation of {}; a revoked node is not renewed (remove the line)",
                    at(),
                    e.member.peer_id()
                );
            }
            (e.member, e.name.clone())
        } else {
            let mut words = line.split_whitespace();
            let (Some(id), Some(name), None) = (words.next(), words.next(), words.next()) else {
                bail!("{}: expected an endorsement line or `PEER_ID NAME`", at());
            };
            (member(id).with_context(at)?, name.to_string())
        };
        if out.iter().any(|(m, _)| *m == member) {
            bail!("{}: {} is listed twice", at(), member.peer_id());
        }
        out.push((member, name));
        if out.len() > MAX_RENEW {
            bail!("{}: more than {MAX_RENEW} members; split the file", from.display());
        }
    }
    if out.is_empty() {
        bail!("{}: no members listed", from.display());
    }
    Ok(out)
}

/// An endorsement line verified whatever the time now: the one being renewed may have
/// expired already. Format, bounds and signature are checked as always; the clock window
/// is opened wide (issued no later than 0 + unbounded skew, expiring after 0).
fn decode_any_time(line: &str) -> anyhow::Result<EndorsementRecord> {
    endorsement::parse_line(line, 0, Millis::MAX).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_durations_within_the_protocols_bound() {
        assert_eq!(ttl_ms("180d").unwrap(), 180 * 86_400_000);
        assert_eq!(ttl_ms("12h").unwrap(), 12 * 3_600_000);
        assert_eq!(ttl_ms("400d").unwrap(), MAX_TTL_MS);
        for bad in ["401d", "0s", "500ms", "forever", "", "-1d"] {
            let err = format!("{:#}", ttl_ms(bad).unwrap_err());
            assert!(err.contains("--ttl"), "{bad}: {err}");
        }
    }

    #[test]
    fn renew_reads_lines_of_this_org_and_peer_id_name_pairs() {
        let org = Identity::from_secret([3; 32]);
        let other = Identity::from_secret([4; 32]);
        let a = Identity::from_secret([5; 32]).public();
        let b = Identity::from_secret([6; 32]).public();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("members");
        // An endorsement that has long expired is still renewed.
        let old = endorsement::endorse(&org, a, "pbx-a", 1_000_000, 86_400_000)
            .unwrap()
            .to_line();
        std::fs::write(&file, format!("# members\n{old}\n\n{} pbx-b\n", b.peer_id())).unwrap();
        assert_eq!(
            renewals(&org, &file).unwrap(),
            vec![(a, "pbx-a".to_string()), (b, "pbx-b".to_string())]
        );

        let foreign = endorsement::endorse(&other, a, "pbx-a", 1_000_000, 86_400_000)
            .unwrap()
            .to_line();
        let revoked = endorsement::revoke(&org, a, 1_000_000).unwrap().to_line();
        let mut forged = old.clone();
        forged.pop();
        forged.push(if old.ends_with('A') { 'B' } else { 'A' });
        for (text, needle) in [
            (foreign, "not by this key"),
            (revoked, "a revocation"),
            (format!("{} pbx-b\n{} pbx-c", b.peer_id(), b.peer_id()), "line 2: "),
            ("bob pbx".to_string(), "not a node's peer id"),
            (b.peer_id(), "PEER_ID NAME"),
            (forged, "line 1"),
            ("# nothing\n".to_string(), "no members"),
        ] {
            std::fs::write(&file, &text).unwrap();
            let err = format!("{:#}", renewals(&org, &file).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
