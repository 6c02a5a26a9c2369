//! Network namespaces and veth pairs that a test creates and removes, so firewall and
//! SIP tests never touch the host's own firewall or send traffic anywhere else.
//!
//! Needs root and `ip` (iproute2); `scripts/test.sh` installs what is missing and CI runs
//! as root. A test that needs them fails with a clear message rather than skipping.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e} (scripts/test.sh installs what tests need)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Why a test cannot create namespaces and run `programs` here (not root, a program not
/// on PATH), or `None` when it can.
pub fn missing(programs: &[&str]) -> Option<String> {
    let uid = run("id", &["-u"]);
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(
            "this test creates network namespaces and needs root: run scripts/test.sh as root (CI does)".into(),
        );
    }
    programs
        .iter()
        .find(|p| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .map(|p| format!("{p} is missing: scripts/test.sh installs it (apt-get)"))
}

/// Panics unless the test runs as root with every program in `programs` on PATH.
pub fn require(programs: &[&str]) {
    if let Some(why) = missing(programs) {
        panic!("{why}");
    }
}

/// A network namespace, deleted (with everything in it) on drop.
pub struct Netns {
    /// Its name, for `ip netns exec NAME …`.
    pub name: String,
}

impl Netns {
    /// A new namespace with its loopback up; `tag` makes the name readable.
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "fm-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.exec("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside, panicking on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A `Command` that runs `program` inside.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The argv prefix that runs a program inside (for enforcer `command` settings).
    pub fn prefix(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.name.clone()]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A private /24 for one test: 10.X.Y.0 with X, Y from the process id and a counter,
/// so parallel tests and runs do not collide.
pub fn subnet() -> String {
    let n = std::process::id() * 7 + NEXT.fetch_add(1, Ordering::Relaxed);
    format!("10.{}.{}", 100 + (n / 250) % 150, n % 250)
}

/// Joins two places with a veth pair: `a` (None = the test's own namespace) gets
/// `addr_a`, `b` gets `addr_b`, both /24 and up. The pair goes away with the namespace.
pub fn veth(a: Option<&Netns>, addr_a: &str, b: &Netns, addr_b: &str) {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let (va, vb) = (
        format!("fma{}x{id}", std::process::id() % 100_000),
        format!("fmb{}x{id}", std::process::id() % 100_000),
    );
    run("ip", &["link", "add", &va, "type", "veth", "peer", "name", &vb]);
    run("ip", &["link", "set", &vb, "netns", &b.name]);
    b.exec("ip", &["addr", "add", &format!("{addr_b}/24"), "dev", &vb]);
    b.exec("ip", &["link", "set", &vb, "up"]);
    match a {
        Some(ns) => {
            run("ip", &["link", "set", &va, "netns", &ns.name]);
            ns.exec("ip", &["addr", "add", &format!("{addr_a}/24"), "dev", &va]);
            ns.exec("ip", &["link", "set", &va, "up"]);
        }
        None => {
            run("ip", &["addr", "add", &format!("{addr_a}/24"), "dev", &va]);
            run("ip", &["link", "set", &va, "up"]);
        }
    }
}

/// Adds another address (/32) to the test's end of a veth pair whose address is `addr_a`.
pub fn add_addr(on_same_link_as: &str, addr: &str) {
    let out = run("ip", &["-o", "addr", "show", "to", on_same_link_as]);
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no link holds {on_same_link_as}"))
        .to_string();
    run("ip", &["addr", "add", &format!("{addr}/32"), "dev", &dev]);
}

/// A namespace of the test's own joined to the test by a veth pair on a private /24
/// (see [`subnet`]): the test's end is `.1`, the namespace's `.2`.
pub struct Lan {
    /// The namespace.
    pub ns: Netns,
    /// The /24's first three octets, `10.X.Y`.
    pub net: String,
}

impl Lan {
    /// A new namespace (`tag` makes its name readable) and the veth pair to it.
    pub fn new(tag: &str) -> Self {
        let net = subnet();
        let ns = Netns::new(tag);
        veth(None, &format!("{net}.1"), &ns, &format!("{net}.2"));
        Self { ns, net }
    }

    /// `10.X.Y.host`.
    pub fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.net)
    }

    /// The test's end of the pair (`.1`).
    pub fn near(&self) -> String {
        self.addr(1)
    }

    /// The namespace's end of the pair (`.2`).
    pub fn far(&self) -> String {
        self.addr(2)
    }

    /// The whole /24, `10.X.Y.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}.0/24", self.net)
    }

    /// Adds `.host` to the test's end (another source on the test's side); returns it.
    pub fn add_near(&self, host: u8) -> String {
        let addr = self.addr(host);
        add_addr(&self.near(), &addr);
        addr
    }
}
