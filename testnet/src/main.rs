//! `fraudmesh-testnet`: see the library documentation.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
