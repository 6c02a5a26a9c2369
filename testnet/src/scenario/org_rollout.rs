//! `org-rollout`: a provider rolls fraudmesh out with one organisation key instead of
//! peer ids. Every node's config trusts only organisations (`[[trust.orgs]]`: the
//! provider A at 1.0 and a partner provider B at 0.5), never a peer id; the testnet holds
//! the organisation keys and signs every endorsement itself (as the provider's admin
//! laptop would), and publishes each one through node 0 only (`POST /v1/endorsements`).
//!
//! Roles: node 1 is the member that gets revoked, the last node joins late, the two
//! before it are members of B; every other node is a member of A.
//!
//! 1. Every member of A reports one target while still unendorsed (a stranger
//!    everywhere: held, blocked by nobody but itself); then its endorsement is
//!    published. Endorsement → trusted: from just before the `POST` until each node
//!    blocks that target (`since` in `GET /v1/blocklist`, the shared clock: no polling).
//! 2. The late node starts, catches up on every endorsement (it blocks every member's
//!    target), reports a target, and its fresh endorsement makes every node block it.
//! 3. Node 1 is revoked: the block only its report caused is lifted on every other
//!    node (revocation → lifted is polled: each node is asked every [`LIFT_POLL`], the
//!    figure is the time of the first answer saying "not blocked", an upper bound), and
//!    its new reports count nowhere but on itself.
//! 4. Endorsements of a B member signed by an untrusted key, expired, or forged (signed
//!    by another key than the organisation they name), posted to node 0 and gossiped by
//!    a rogue libp2p peer into another node, are refused and change nothing (checked
//!    once a stranger's sighting another rogue sent after them reached every node): one B
//!    member's report blocks nothing, a second B member's report blocks everywhere.

use super::wave::Sent;
use super::{attackers, Blocked, Coverage, Ctx, Outcome, CONVERGE_DEADLINE, MESH_DEADLINE, POLL};
use crate::client::{add_endorsement, blocked_since, endorsement_count, report_scan, Api};
use crate::cluster::{NodeSpec, OrgEntry, Tweak};
use crate::report::Percentiles;
use crate::rogue::{self, Rogue};
use anyhow::{bail, Context};
use base64::Engine as _;
use fraudmesh::endorsement::{self, LINE_PREFIX};
use fraudmesh::identity::Identity;
use fraudmesh::proto;
use fraudmesh_node::daemon::config::Config;
use fraudmesh_node::daemon::dir::NodeDir;
use fraudmesh_node::now_ms;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often each node is asked whether the revoked member's target is still blocked.
const LIFT_POLL: Duration = Duration::from_millis(10);
/// The organisations' endorsements' time to live.
const TTL_MS: u64 = 180 * 86_400_000;
/// How many nodes start at once.
const START_BATCH: usize = 8;
/// B's weight on every node: two of its members are needed to block.
const PARTNER_WEIGHT: f64 = 0.5;

/// The keys of the run: the provider, its partner, and a key no node trusts.
struct Orgs {
    provider: Identity,
    partner: Identity,
    untrusted: Identity,
}

impl Orgs {
    /// The same keys for the layout and the run (from the run's seed).
    fn of(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6f72_672d_726f_6c6c);
        Self {
            provider: Identity::from_secret(rng.gen()),
            partner: Identity::from_secret(rng.gen()),
            untrusted: Identity::from_secret(rng.gen()),
        }
    }
}

/// Who is who in a cluster of `n` nodes.
struct Roles {
    n: usize,
}

impl Roles {
    const PUBLISHER: usize = 0;
    const REVOKED: usize = 1;

    fn late(&self) -> usize {
        self.n - 1
    }

    fn partner_members(&self) -> [usize; 2] {
        [self.n - 3, self.n - 2]
    }

    /// The nodes running from the start.
    fn initial(&self) -> Vec<usize> {
        (0..self.n - 1).collect()
    }

    /// The provider's members present from the start.
    fn provider_members(&self) -> Vec<usize> {
        (0..self.n - 3).collect()
    }

    fn role(&self, i: usize) -> &'static str {
        match i {
            Self::PUBLISHER => "publisher",
            Self::REVOKED => "revoked",
            _ if i == self.late() => "late",
            _ if self.partner_members().contains(&i) => "partner",
            _ => "member",
        }
    }
}

/// The smallest cluster with every role: the publisher, the revoked member, two partner
/// members and the late node.
pub(super) const MIN_NODES: usize = 5;

/// Every node trusts the provider at 1.0 and the partner at [`PARTNER_WEIGHT`], and no
/// peer id.
pub(super) fn layout(args: &super::RunArgs) -> Vec<NodeSpec> {
    let orgs = Orgs::of(args.seed);
    let roles = Roles { n: args.nodes };
    let entries = vec![
        OrgEntry {
            id: orgs.provider.public().peer_id(),
            name: "provider".to_string(),
            weight: 1.0,
        },
        OrgEntry {
            id: orgs.partner.public().peer_id(),
            name: "partner".to_string(),
            weight: PARTNER_WEIGHT,
        },
    ];
    // Trusted peers bypass the per-IP bound on incoming connections; endorsed members do
    // not, and every node here connects from 127.0.0.1.
    let nodes = u32::try_from(args.nodes).unwrap_or(u32::MAX);
    let tweak: Tweak = Arc::new(move |c| c.net.max_incoming_per_ip = c.net.max_incoming_per_ip.max(nodes));
    (0..args.nodes)
        .map(|i| NodeSpec {
            role: Some(roles.role(i)),
            tweak: Some(tweak.clone()),
            ..NodeSpec::org_only(entries.clone())
        })
        .collect()
}

/// What every phase needs: the keys, the roles, the targets, node 0's API.
struct Plan {
    orgs: Orgs,
    roles: Roles,
    /// Node `i`'s first target (`i` < N), then the revoked member's second one, the
    /// partner's and the rogue's canary.
    targets: Vec<String>,
    publisher: Api,
}

impl Plan {
    fn target_of(&self, i: usize) -> &str {
        &self.targets[i]
    }

    fn revoked_later(&self) -> &str {
        &self.targets[self.roles.n]
    }

    fn partner_target(&self) -> &str {
        &self.targets[self.roles.n + 1]
    }

    fn canary(&self) -> &str {
        &self.targets[self.roles.n + 2]
    }

    /// How many endorsement records every node holds once every phase before the bad
    /// endorsements is done: one per provider member (node 1's is its revocation), the
    /// late node's, two partner members'.
    fn records_held(&self) -> usize {
        self.roles.provider_members().len() + 3
    }
}

/// Runs `org-rollout`.
pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.args.nodes;
    let roles = Roles { n };
    let initial = roles.initial();
    config_figures(ctx)?;
    // A few at a time: fifty debug builds starting at once on two cores miss the start
    // deadline.
    for batch in initial.chunks(START_BATCH) {
        ctx.start_nodes(batch).await?;
    }
    ctx.wait_mesh(&initial).await?;
    let plan = Plan {
        orgs: Orgs::of(ctx.args.seed),
        roles,
        targets: attackers(&mut ctx.rng, n + 3),
        publisher: ctx.api(Roles::PUBLISHER)?.clone(),
    };
    let (wave_start, sent, blocked) = endorse_members(ctx, &plan).await?;
    late_member(ctx, &plan, &sent).await?;
    revocation(ctx, &plan).await?;
    partner(ctx, &plan).await?;
    let mut outcome = Outcome::new(wave_start, initial.clone(), sent, blocked);
    outcome.blockers = Some(initial);
    Ok(outcome)
}

/// Phase 1: every provider member present reports a target while unendorsed; then each
/// one's endorsement (and the partner members') is published through node 0. Returns
/// when the first was published, each member's (target, endorsement time) as a report,
/// and the blocklists once every node blocks every member's target.
async fn endorse_members(ctx: &mut Ctx, plan: &Plan) -> anyhow::Result<(u64, Vec<Sent>, Blocked)> {
    let initial = plan.roles.initial();
    let members = plan.roles.provider_members();
    for &m in &members {
        report_scan(ctx.api(m)?, plan.target_of(m)).await?;
    }
    wait_records(ctx, &initial, members.len()).await?;
    let reported: Vec<(usize, String)> = members.iter().map(|&m| (m, plan.target_of(m).to_string())).collect();
    let early = blockers_besides(ctx, &initial, &reported).await?;
    ctx.expect(
        "an unendorsed member's report blocks nothing but on itself",
        early == 0,
        format!("{early} (node, target) pairs blocked by other nodes before any endorsement"),
    );
    let wave_start = now_ms();
    ctx.phase("endorsing", (members.len() + 2) as u64);
    let mut sent = Vec::with_capacity(members.len());
    for &m in &members {
        let line = endorse_line(ctx, &plan.orgs.provider, m, &format!("pbx-{m:03}"))?;
        let at_ms = now_ms();
        add_endorsement(&plan.publisher, &line)
            .await
            .with_context(|| format!("endorsing node {m}"))?;
        sent.push(Sent {
            target: plan.target_of(m).to_string(),
            reporter: m,
            at_ms,
        });
        ctx.bar.inc(1);
    }
    for b in plan.roles.partner_members() {
        let line = endorse_line(ctx, &plan.orgs.partner, b, &format!("partner-{b:03}"))?;
        add_endorsement(&plan.publisher, &line)
            .await
            .with_context(|| format!("endorsing node {b}"))?;
        ctx.bar.inc(1);
    }
    let want = initial.iter().map(|&i| (i, members.len())).collect();
    let (_, blocked) = ctx.wait_blocked(&initial, &want, CONVERGE_DEADLINE).await?;
    let coverage = Coverage::of(&blocked, &initial, &sent);
    ctx.expect(
        "endorsements published through one node make every member trusted everywhere",
        coverage.complete(),
        coverage.figure(),
    );
    let everywhere = trusted_everywhere(&sent, &blocked, &initial);
    ctx.figure(
        "endorse_to_trusted_everywhere_ms",
        serde_json::to_value(Percentiles::of(&everywhere))?,
    );
    Ok((wave_start, sent, blocked))
}

/// Phase 2: the late node starts and catches up on every endorsement (it blocks every
/// member's target), reports a target, and its fresh endorsement makes every node block
/// it.
async fn late_member(ctx: &mut Ctx, plan: &Plan, sent: &[Sent]) -> anyhow::Result<()> {
    let n = plan.roles.n;
    let late = plan.roles.late();
    let joined_at = now_ms();
    ctx.start_nodes(&[late]).await?;
    let want = HashMap::from([(late, sent.len())]);
    let (_, late_blocked) = ctx.wait_blocked(&[late], &want, CONVERGE_DEADLINE).await?;
    let caught = Coverage::of(&late_blocked, &[late], sent);
    let catch_up = late_blocked
        .get(&late)
        .and_then(|b| b.values().max().copied())
        .map_or(0, |t| t.saturating_sub(joined_at));
    ctx.figure("late_catch_up_ms", catch_up);
    ctx.expect(
        "the late node catches up on every endorsement",
        caught.complete(),
        format!("{}, {catch_up} ms after it started", caught.figure()),
    );
    let all = ctx.all();
    ctx.wait_mesh(&all).await?;
    let target = plan.target_of(late);
    report_scan(ctx.api(late)?, target).await?;
    wait_held(ctx, &all, target, late).await?;
    let line = endorse_line(ctx, &plan.orgs.provider, late, "pbx-late")?;
    let at_ms = now_ms();
    add_endorsement(&plan.publisher, &line)
        .await
        .context("endorsing the late node")?;
    let lat = wait_target_blocked(ctx, &all, target, late, at_ms).await?;
    let p = Percentiles::of(&lat);
    ctx.figure("late_endorse_to_trusted_ms", serde_json::to_value(p)?);
    ctx.expect(
        "a node endorsed after it joined is trusted everywhere",
        lat.len() == n - 1,
        format!(
            "{}/{} other nodes block its target, the last {:.0} ms after the endorsement",
            lat.len(),
            n - 1,
            p.max
        ),
    );
    Ok(())
}

/// Phase 3: node 1 is revoked through node 0; the block its report caused alone is
/// lifted on every other node, and its new report counts nowhere but on itself.
async fn revocation(ctx: &mut Ctx, plan: &Plan) -> anyhow::Result<()> {
    let n = plan.roles.n;
    let revoked = Roles::REVOKED;
    let all = ctx.all();
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != revoked).collect();
    let line = endorsement::revoke(&plan.orgs.provider, ctx.cluster_key(revoked)?, now_ms())?.to_line();
    let at_ms = now_ms();
    add_endorsement(&plan.publisher, &line)
        .await
        .context("revoking node 1")?;
    let lifted = wait_lifted(ctx, &others, plan.target_of(revoked), at_ms).await?;
    let lift = Percentiles::of(&lifted);
    ctx.figure("revoke_to_lifted_ms", serde_json::to_value(lift)?);
    ctx.figure("revoke_to_lifted_poll_ms", LIFT_POLL.as_millis() as u64);
    ctx.expect(
        "a revoked member's block is lifted on every other node",
        lifted.len() == others.len(),
        format!(
            "lifted on {}/{} nodes, the last {:.0} ms after the revocation (polled every {} ms)",
            lifted.len(),
            others.len(),
            lift.max,
            LIFT_POLL.as_millis()
        ),
    );
    let later = plan.revoked_later();
    report_scan(ctx.api(revoked)?, later).await?;
    wait_held(ctx, &all, later, revoked).await?;
    let counted = blockers_besides(ctx, &all, &[(revoked, later.to_string())]).await?;
    ctx.expect(
        "a revoked member's new reports count nowhere but on itself",
        counted == 0,
        format!("{counted}/{} other nodes block its new target", n - 1),
    );
    Ok(())
}

/// Phase 4: a partner member reports; bad endorsements of it change nothing; one partner
/// member blocks nothing, the second one's report of the same target blocks everywhere.
async fn partner(ctx: &mut Ctx, plan: &Plan) -> anyhow::Result<()> {
    let n = plan.roles.n;
    let all = ctx.all();
    let [b1, b2] = plan.roles.partner_members();
    let target = plan.partner_target();
    report_scan(ctx.api(b1)?, target).await?;
    wait_held(ctx, &all, target, b1).await?;
    let held = plan.records_held();
    wait_endorsements(ctx, &all, held).await?;
    ctx.figure("endorsements_per_node", held);
    let bad = bad_endorsements(ctx, &plan.orgs, b1)?;
    let via = n - 4; // not the publisher: the gossiped ones enter elsewhere
    let answers = publish_bad(ctx, plan, &bad, via).await?;
    let accepted = answers.iter().filter(|r| r.ends_with("ACCEPTED")).count();
    let changed = endorsement_counts(ctx, &all)
        .await?
        .iter()
        .filter(|&&c| c != held)
        .count();
    let one = blockers_besides(ctx, &all, &[(b1, target.to_string())]).await?;
    ctx.figure("bad_endorsements", serde_json::to_value(&answers)?);
    ctx.expect(
        "endorsements by an untrusted key, expired or forged are refused and change nothing",
        accepted == 0 && changed == 0 && one == 0,
        format!(
            "{accepted}/{} accepted by node 0, {changed} nodes' endorsements changed, {one} other nodes block the target",
            bad.len()
        ),
    );
    ctx.expect(
        "one member of an organisation trusted at 0.5 blocks nothing",
        one == 0,
        format!("{one}/{} other nodes block its target", n - 1),
    );
    let at_ms = now_ms();
    report_scan(ctx.api(b2)?, target).await?;
    let two = wait_target_blocked(ctx, &all, target, b2, at_ms).await?;
    ctx.figure(
        "partner_second_report_to_blocked_ms",
        serde_json::to_value(Percentiles::of(&two))?,
    );
    ctx.expect(
        "two members of an organisation trusted at 0.5 block everywhere",
        two.len() == n - 1,
        format!("{}/{} other nodes block the target", two.len(), n - 1),
    );
    Ok(())
}

impl Ctx {
    /// Node `i`'s public key.
    fn cluster_key(&self, i: usize) -> anyhow::Result<fraudmesh::identity::PublicKey> {
        self.cluster.members[i]
            .peer_id
            .parse()
            .with_context(|| format!("node {i}'s peer id"))
    }
}

/// An endorsement of node `i` by `org`, as one line.
fn endorse_line(ctx: &Ctx, org: &Identity, i: usize, name: &str) -> anyhow::Result<String> {
    Ok(endorsement::endorse(org, ctx.cluster_key(i)?, name, now_ms(), TTL_MS)?.to_line())
}

/// Endorsements of node `member` that must change nothing: by a key no node trusts,
/// expired, and forged (naming the provider, signed by the untrusted key).
fn bad_endorsements(
    ctx: &Ctx,
    orgs: &Orgs,
    member: usize,
) -> anyhow::Result<Vec<(&'static str, proto::SignedEndorsement)>> {
    let key = ctx.cluster_key(member)?;
    let now = now_ms();
    let untrusted = endorsement::endorse(&orgs.untrusted, key, "rogue", now, TTL_MS)?.to_proto();
    let hour = 3_600_000;
    let expired = endorsement::endorse(&orgs.provider, key, "expired", now - 2 * hour, hour)?.to_proto();
    let mut forged = endorsement::endorse(&orgs.untrusted, key, "forged", now, TTL_MS)?.to_proto();
    let mut claim = proto::Endorsement::decode(forged.payload.as_ref()).context("decoding a payload")?;
    claim.org = orgs.provider.public().as_bytes().to_vec().into();
    forged.payload = claim.encode_to_vec().into();
    Ok(vec![
        ("untrusted key", untrusted),
        ("expired", expired),
        ("forged", forged),
    ])
}

/// The one-line form of a signed endorsement, whether or not it verifies.
fn line_of(signed: &proto::SignedEndorsement) -> String {
    format!(
        "{LINE_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed.encode_to_vec())
    )
}

/// Posts each bad endorsement to node 0, and has a rogue libp2p peer gossip each into
/// node `via` (one envelope each); then a second rogue peer sends a stranger's sighting
/// of the canary into the same node (the first may be cut off for the forgery), and
/// this waits until every node holds it. Returns what node 0 answered to each.
async fn publish_bad(
    ctx: &mut Ctx,
    plan: &Plan,
    bad: &[(&'static str, proto::SignedEndorsement)],
    via: usize,
) -> anyhow::Result<Vec<String>> {
    let mut answers = Vec::new();
    for (what, signed) in bad {
        match add_endorsement(&plan.publisher, &line_of(signed)).await {
            Ok(()) => answers.push(format!("{what}: ACCEPTED")),
            Err(e) => answers.push(format!("{what}: {e:#}")),
        }
    }
    let addr: libp2p::Multiaddr = ctx.cluster.members[via].addr().parse().context("node address")?;
    let mut forger = Rogue::start(std::slice::from_ref(&addr))?;
    let mut herald = Rogue::start(&[addr])?;
    forger.wait_subscribed(1, MESH_DEADLINE).await?;
    herald.wait_subscribed(1, MESH_DEADLINE).await?;
    for (_, signed) in bad {
        let envelope = proto::Envelope {
            endorsements: vec![signed.clone()],
            ..Default::default()
        };
        forger.publish(envelope.encode_to_vec()).await?;
    }
    forger.wait_published(bad.len(), MESH_DEADLINE).await?;
    let stranger = Identity::from_secret(ctx.rng.gen());
    herald
        .publish(rogue::stranger_sighting(&stranger, plan.canary(), now_ms())?)
        .await?;
    herald.wait_published(1, MESH_DEADLINE).await?;
    let all = ctx.all();
    wait_held_by(ctx, &all, plan.canary(), &stranger.public().peer_id()).await?;
    Ok(answers)
}

/// The figures of the nodes' configs: trust entries per node now, and before (every
/// other node's peer id).
fn config_figures(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (mut peers, mut orgs) = (0, 0);
    for m in &ctx.cluster.members {
        let c = Config::load(&NodeDir::new(&m.dir).config())?;
        peers = peers.max(c.trust.peers.len());
        orgs = orgs.max(c.trust.orgs.len());
    }
    let before = ctx.args.nodes - 1;
    ctx.figure("config_trust_peers_before", before);
    ctx.figure("config_trust_peers", peers);
    ctx.figure("config_trust_orgs", orgs);
    ctx.expect(
        "every node's config holds organisations only, no peer id",
        peers == 0 && orgs == 2,
        format!("{peers} peer ids and {orgs} organisations per node (before: {before} peer ids)"),
    );
    Ok(())
}

/// For each endorsed member, when the last other node blocked its target after the
/// endorsement, ms.
fn trusted_everywhere(sent: &[Sent], blocked: &Blocked, nodes: &[usize]) -> Vec<f64> {
    sent.iter()
        .filter_map(|s| {
            let others = nodes.iter().filter(|&&i| i != s.reporter);
            let times: Option<Vec<u64>> = others.map(|i| blocked.get(i)?.get(&s.target).copied()).collect();
            Some(times?.into_iter().max()?.saturating_sub(s.at_ms) as f64)
        })
        .collect()
}

/// Waits until every node in `nodes` holds at least `records` records.
async fn wait_records(ctx: &mut Ctx, nodes: &[usize], records: usize) -> anyhow::Result<()> {
    ctx.phase("spreading", nodes.len() as u64);
    let apis = ctx.apis(nodes)?;
    let end = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let mut have = 0;
        for (_, api) in &apis {
            if api.status().await?.records >= records {
                have += 1;
            }
        }
        ctx.bar.set_position(have);
        if have as usize == apis.len() {
            return Ok(());
        }
        if Instant::now() > end {
            bail!(
                "{have}/{} nodes hold the {records} members' reports after {CONVERGE_DEADLINE:?}",
                apis.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every node in `nodes` holds node `reporter`'s sighting of `target`.
async fn wait_held(ctx: &mut Ctx, nodes: &[usize], target: &str, reporter: usize) -> anyhow::Result<()> {
    let peer = ctx.cluster.members[reporter].peer_id.clone();
    wait_held_by(ctx, nodes, target, &peer).await
}

/// Waits until every node in `nodes` holds a sighting of `target` by the key `peer`.
async fn wait_held_by(ctx: &mut Ctx, nodes: &[usize], target: &str, peer: &str) -> anyhow::Result<()> {
    ctx.phase("spreading", nodes.len() as u64);
    let apis = ctx.apis(nodes)?;
    let end = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let mut have = 0;
        for (_, api) in &apis {
            if api.check(target).await?.reporters.iter().any(|r| r == peer) {
                have += 1;
            }
        }
        ctx.bar.set_position(have);
        if have as usize == apis.len() {
            return Ok(());
        }
        if Instant::now() > end {
            bail!(
                "{have}/{} nodes hold {peer}'s report of {target} after {CONVERGE_DEADLINE:?}",
                apis.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How many (node, target) pairs are blocked by nodes other than the target's reporter.
async fn blockers_besides(ctx: &Ctx, nodes: &[usize], reported: &[(usize, String)]) -> anyhow::Result<usize> {
    let mut count = 0;
    for &i in nodes {
        let blocked = blocked_since(ctx.api(i)?).await?;
        count += reported
            .iter()
            .filter(|(r, t)| *r != i && blocked.contains_key(t))
            .count();
    }
    Ok(count)
}

/// Waits until every node in `nodes` blocks `target` (or the deadline); returns each
/// node's (but `reporter`'s) time from `at_ms` until it blocked, ms, from `since`.
async fn wait_target_blocked(
    ctx: &mut Ctx,
    nodes: &[usize],
    target: &str,
    reporter: usize,
    at_ms: u64,
) -> anyhow::Result<Vec<f64>> {
    ctx.phase("blocking", nodes.len() as u64);
    let apis = ctx.apis(nodes)?;
    let end = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let mut have = 0;
        for (_, api) in &apis {
            if api.check(target).await?.blocked {
                have += 1;
            }
        }
        ctx.bar.set_position(have);
        if have as usize == apis.len() || Instant::now() > end {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let mut out = Vec::new();
    for (i, api) in &apis {
        if *i == reporter {
            continue;
        }
        if let Some(&since) = blocked_since(api).await?.get(target) {
            out.push(since.saturating_sub(at_ms) as f64);
        }
    }
    Ok(out)
}

/// Asks every node in `nodes` at once, each every [`LIFT_POLL`], until it no longer
/// blocks `target` (or the deadline); returns each node's time from `at_ms` to its first
/// answer saying so, ms.
async fn wait_lifted(ctx: &mut Ctx, nodes: &[usize], target: &str, at_ms: u64) -> anyhow::Result<Vec<f64>> {
    ctx.phase("lifting", nodes.len() as u64);
    let tasks: Vec<_> = ctx
        .apis(nodes)?
        .into_iter()
        .map(|(_, api)| tokio::spawn(poll_lifted(api, target.to_string(), ctx.bar.clone())))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        if let Some(lifted) = t.await.context("a polling task failed")?? {
            out.push(lifted.saturating_sub(at_ms) as f64);
        }
    }
    Ok(out)
}

/// When `api`'s node first answered that `target` is not blocked (`None`: not within
/// the deadline).
async fn poll_lifted(api: Api, target: String, bar: indicatif::ProgressBar) -> anyhow::Result<Option<u64>> {
    let end = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let blocked = api.check(&target).await?.blocked;
        let answered = now_ms();
        if !blocked {
            bar.inc(1);
            return Ok(Some(answered));
        }
        if Instant::now() > end {
            return Ok(None);
        }
        tokio::time::sleep(LIFT_POLL).await;
    }
}

/// Waits until every node in `nodes` holds `records` endorsement records.
async fn wait_endorsements(ctx: &mut Ctx, nodes: &[usize], records: usize) -> anyhow::Result<()> {
    ctx.phase("endorsements", nodes.len() as u64);
    let end = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let counts = endorsement_counts(ctx, nodes).await?;
        let have = counts.iter().filter(|&&c| c == records).count();
        ctx.bar.set_position(have as u64);
        if have == nodes.len() {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("the nodes hold {counts:?} endorsements, not {records} each, after {CONVERGE_DEADLINE:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How many endorsements each node holds.
async fn endorsement_counts(ctx: &Ctx, nodes: &[usize]) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::with_capacity(nodes.len());
    for &i in nodes {
        out.push(endorsement_count(ctx.api(i)?).await?);
    }
    Ok(out)
}
