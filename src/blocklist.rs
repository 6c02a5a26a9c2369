//! TEMPORARY stub, replaced by the real structure.
use ipnet::IpNet;
use std::net::IpAddr;
#[derive(Default)]
pub struct BlocklistBuilder {
    nets: Vec<IpNet>,
    nums: Vec<String>,
}
#[derive(Default, Debug, Clone)]
pub struct Blocklist {
    nets: Vec<IpNet>,
    nums: Vec<String>,
}
impl BlocklistBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert_net(&mut self, net: IpNet) {
        self.nets.push(net)
    }
    pub fn insert_number_prefix(&mut self, d: &str) {
        self.nums.push(d.to_string())
    }
    pub fn build(self) -> Blocklist {
        Blocklist {
            nets: self.nets,
            nums: self.nums,
        }
    }
}
impl Blocklist {
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }
    pub fn blocked_number_prefix(&self, d: &str) -> Option<&str> {
        self.nums
            .iter()
            .filter(|n| d.starts_with(n.as_str()))
            .max_by_key(|n| n.len())
            .map(|s| s.as_str())
    }
    pub fn host_count(&self) -> usize {
        0
    }
    pub fn prefix_count(&self) -> usize {
        0
    }
    pub fn number_count(&self) -> usize {
        0
    }
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}
