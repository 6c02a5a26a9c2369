//! fraudmesh-testnet: will start N real `fraudmesh` nodes on 127.0.0.1, run attack
//! scenarios and report convergence. Until that lands (issue 4) it only explains itself.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") || args.is_empty() {
        println!("fraudmesh-testnet: local multi-node testnet (not implemented yet; see scripts/testnet.sh)");
        return Ok(());
    }
    anyhow::bail!("fraudmesh-testnet {}: not implemented yet", args.join(" "))
}
