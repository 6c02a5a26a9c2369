//! Writing the list into a real Kamailio: the Kamailio enforcer's first full replace of
//! 10,000 and 100,000 addresses (`htable.setxi` over JSON-RPC, 8 requests in flight over
//! kept-alive connections), a second replace (every entry refreshed), and `remove` from a
//! fresh enforcer (dump + delete of the node's entries). Kamailio runs in a network
//! namespace this bench creates and removes (root, `ip` and `kamailio` needed).
//!
//! Run: `cargo bench -p fraudmesh-node --bench kamailio`.

#[path = "../tests/it/common/mod.rs"]
#[allow(dead_code)]
mod common;

use common::kamailio::RpcKamailio;
use common::netns::{self, Lan};
use fraudmesh_node::enforce::kamailio::{KamailioConfig, KamailioEnforcer};
use fraudmesh_node::enforce::{Enforcer, NetBlock};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    netns::require(&["ip", "kamailio"]);
    let lan = Lan::new("kbench");
    let kam_addr = lan.far();
    let tmp = tempfile::tempdir()?;
    let mut kam = RpcKamailio::new(&lan, &tmp.path().join("kamailio"));
    kam.start_with_memory("256", "128");
    let enforcer = || {
        KamailioEnforcer::new(KamailioConfig {
            url: format!("http://{kam_addr}:5071/RPC"),
            ..KamailioConfig::default()
        })
    };
    let rt = tokio::runtime::Runtime::new()?;
    println!("Kamailio enforcer, addresses written over JSON-RPC");
    for count in [10_000u32, 100_000] {
        let entries: Vec<NetBlock> = (0..count)
            .map(|i| {
                let net = format!("172.{}.{}.{}/32", 16 + (i >> 16), (i >> 8) & 255, i & 255).parse()?;
                Ok(NetBlock {
                    net,
                    until: fraudmesh_node::now_ms() + 3_600_000,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let mut e = enforcer();
        rt.block_on(async {
            let t = Instant::now();
            e.replace(&entries, fraudmesh_node::now_ms()).await?;
            let first = t.elapsed();
            let t = Instant::now();
            e.replace(&entries, fraudmesh_node::now_ms()).await?;
            let second = t.elapsed();
            let t = Instant::now();
            enforcer().remove().await?;
            println!(
                "{count:>7}: first replace {first:.2?}  second replace {second:.2?}  remove (dump + delete) {:.2?}",
                t.elapsed()
            );
            anyhow::Ok(())
        })?;
        anyhow::ensure!(kam.dump().is_empty(), "remove left entries behind");
    }
    Ok(())
}
