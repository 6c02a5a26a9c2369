//! Endorsements between two real node stacks over TCP on 127.0.0.1 (each with its own
//! sled store): a node that joins late learns an organisation's endorsements by sync and
//! trusts the member's earlier sightings at once; a revocation published afterwards
//! reaches it by gossip and lifts the block.

use fraudmesh::endorsement;
use fraudmesh::identity::Identity;
use fraudmesh::policy::{OrgTrust, Policy, FULL};
use fraudmesh::sighting::{sign, Draft, Evidence, Kind};
use fraudmesh::target::{Bounds, Target};
use fraudmesh_node::daemon::config::{Config, Settings};
use fraudmesh_node::daemon::Stack;
use fraudmesh_node::engine::store::SledStore;
use fraudmesh_node::engine::{EngineHandle, GossipVerdict};
use fraudmesh_node::net::Transport;
use std::future::Future;
use std::time::{Duration, Instant};

/// Longest wait for something another node has to learn.
const DEADLINE: Duration = Duration::from_secs(60);

/// Settings of a node listening on an ephemeral 127.0.0.1 port, dialling `seeds`, trusting
/// only the organisation `org` (no peer ids).
fn settings(identity: &Identity, seeds: Vec<String>, org: &Identity) -> Settings {
    let mut c = Config::default();
    c.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.node.seeds = seeds;
    let mut s = c.settings(identity.public()).unwrap();
    let mut trust = s.policy.trust().clone();
    trust.orgs.insert(
        org.public(),
        OrgTrust {
            name: "acme".into(),
            weight: FULL,
        },
    );
    s.policy = Policy::new(trust, vec![]).unwrap();
    s
}

/// Polls `f` every 50 ms until it holds, for at most [`DEADLINE`].
async fn wait_until<F: Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn blocked(engine: &EngineHandle, target: &Target) -> bool {
    engine.check(target.clone()).await.is_ok_and(|c| c.blocked)
}

#[test]
fn a_late_joiner_learns_endorsements_by_sync_and_trusts_the_member() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let org = Identity::from_secret([90; 32]);
        let member = Identity::from_secret([91; 32]);
        let (a_id, b_id) = (Identity::from_secret([92; 32]), Identity::from_secret([93; 32]));
        let target = Target::parse("203.0.113.7", Bounds::default()).unwrap();
        let now = fraudmesh_node::now_ms();
        let sighting = sign(
            &member,
            Draft {
                target: target.clone(),
                kind: Kind::Scan,
                observed_at: now,
                ttl_s: 3600,
                count: 1,
                evidence: Evidence::default(),
            },
        );

        // A holds the member's sighting (from a stranger: it does not block), then the
        // operator publishes the member's endorsement through A.
        let a_settings = settings(&a_id, vec![], &org);
        let a_store = SledStore::open(&tmp.path().join("a"), a_settings.cache_bytes).unwrap();
        let a_peer = a_id.public().peer_id();
        let mut a = Stack::start(
            Identity::from_secret(a_id.secret_bytes()),
            &a_settings,
            Box::new(a_store),
            Transport::Tcp,
        )
        .unwrap();
        assert_eq!(
            a.engine.ingest(vec![sighting.to_proto()], vec![]).await,
            GossipVerdict::Accept
        );
        assert!(!blocked(&a.engine, &target).await, "a stranger's sighting never blocks");
        let e = endorsement::endorse(&org, member.public(), "pbx-1", now, endorsement::DEFAULT_TTL_MS).unwrap();
        let out = a.engine.endorse(vec![e.clone()]).await.unwrap();
        assert!(out[0].changed);
        assert!(
            blocked(&a.engine, &target).await,
            "endorsed: the member's sighting counts"
        );

        // B starts afterwards with A as its seed: nothing was gossiped to it, so only
        // sync can bring it the endorsement and the sighting.
        let addr = a.net.wait_listening(1, Duration::from_secs(5)).await;
        let seed = format!("{}/p2p/{a_peer}", addr.first().expect("A listens"));
        let b_settings = settings(&b_id, vec![seed], &org);
        let b_store = SledStore::open(&tmp.path().join("b"), b_settings.cache_bytes).unwrap();
        let b = Stack::start(
            Identity::from_secret(b_id.secret_bytes()),
            &b_settings,
            Box::new(b_store),
            Transport::Tcp,
        )
        .unwrap();
        wait_until("B to block through the endorsed member", || blocked(&b.engine, &target)).await;
        let held = b.engine.endorsements().await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].record, e);
        assert!(held[0].active);
        assert_eq!(held[0].org_name, "acme");
        assert!(b.metrics.sync_records_fetched.get() >= 2, "both records came by sync");

        // The member is revoked through A: B lifts the block (gossip, or the next sync).
        let revoke = endorsement::revoke(&org, member.public(), fraudmesh_node::now_ms()).unwrap();
        a.engine.endorse(vec![revoke]).await.unwrap();
        assert!(!blocked(&a.engine, &target).await);
        wait_until("B to lift the block", || async { !blocked(&b.engine, &target).await }).await;
        let held = b.engine.endorsements().await.unwrap();
        assert!(!held[0].active);

        b.stop().await;
        a.stop().await;
    });
}
