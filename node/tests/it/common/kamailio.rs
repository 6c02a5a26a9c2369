//! A real Kamailio running scripts/kamailio/example-pbx.cfg (fraudmesh.cfg,
//! fraudmesh-detect.cfg and fraudmesh-calls.cfg together) inside a network namespace of
//! the test's own, and sipp scenarios sent to it from addresses on the test's side of
//! the veth pair.

use super::netns::{Lan, Netns};
use super::{wait_for, DEADLINE};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shipped example that includes every fragment.
pub const EXAMPLE_PBX_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kamailio/example-pbx.cfg");

/// The shipped example of the enforcement fragment alone.
pub const EXAMPLE_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kamailio/example.cfg");

/// The test users' passwords (example-pbx.cfg's defaults).
pub const PASS_1001: &str = "secret1001";

/// A Kamailio process inside a namespace, in the foreground and its own process group,
/// with its config in `dir/test.cfg` and its log (stderr, `-E`) appended to
/// `dir/kamailio.log`. Killed (its whole group) on drop.
pub struct Kamailio {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Kamailio {
    /// Writes `cfg` and checks it with `kamailio -c`.
    pub fn new(ns: &Netns, cfg: &str, dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("run")).expect("kamailio dir");
        std::fs::write(dir.join("test.cfg"), cfg).expect("writing test.cfg");
        let k = Self {
            ns: ns.name.clone(),
            dir: dir.to_path_buf(),
            child: None,
        };
        let check = k.command(&["-c"]).output().expect("running kamailio -c");
        assert!(
            check.status.success(),
            "kamailio -c refused the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        k
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "kamailio"])
            .args(extra)
            .arg("-f")
            .arg(self.dir.join("test.cfg"));
        c
    }

    /// Starts it with `shm_mb` MB of shared and `pkg_mb` MB of private memory per process
    /// and waits until `ready` (named `what`) holds.
    pub fn start(&mut self, shm_mb: &str, pkg_mb: &str, what: &str, mut ready: impl FnMut() -> bool) {
        assert!(self.child.is_none(), "kamailio already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("kamailio.log");
        let run = self.dir.join("run");
        let child = {
            use std::os::unix::process::CommandExt;
            self.command(&["-DD", "-E", "-m", shm_mb, "-M", pkg_mb])
                .arg("-Y")
                .arg(&run)
                .arg("-P")
                .arg(run.join("kamailio.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("starting kamailio")
        };
        self.child = Some(child);
        wait_for(what, DEADLINE, || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("kamailio exited with {status}: {}", self.log_tail());
            }
            ready().then_some(())
        });
    }

    /// SIGKILL to every process of it, then waits (bounded) until they are all gone, so
    /// its namespace can go.
    pub fn kill9(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let group = format!("-{}", c.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).output();
        let _ = c.wait();
        for _ in 0..200 {
            let alive = Command::new("kill")
                .args(["-0", "--", &group])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Kamailio's processes did not end after SIGKILL");
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kamailio.log")
    }

    /// The log's last lines (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Already failing: kill without asserting that it worked.
            if let Some(c) = &self.child {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", c.id())])
                    .output();
            }
            return;
        }
        self.kill9();
    }
}

/// A Kamailio running example-pbx.cfg in a [`Lan`]'s namespace, SIP on `addr`:5060 and
/// JSON-RPC on `addr`:5071 (the namespace's end of the pair; RPC open to the test's end).
pub struct Pbx {
    pub addr: String,
    kamailio: Kamailio,
}

impl Pbx {
    /// Writes the config (example-pbx.cfg with this test's `defines`, each
    /// `NAME value`), checks it with `kamailio -c`, starts it and waits until it answers
    /// OPTIONS from the test's end of the pair.
    pub fn start(lan: &Lan, defines: &[(&str, &str)], dir: &Path) -> Self {
        let (addr, probe_from) = (lan.far(), lan.near());
        let mut cfg = format!(
            "#!KAMAILIO\n\
             #!define EXAMPLE_SIP_LISTEN udp:{addr}:5060\n\
             #!define FRAUDMESH_RPC_LISTEN tcp:{addr}:5071\n\
             #!define FRAUDMESH_RPC_CLIENT {probe_from}\n"
        );
        for (name, value) in defines {
            cfg.push_str(&format!("#!define {name} {value}\n"));
        }
        cfg.push_str(&format!("include_file \"{EXAMPLE_PBX_CFG}\"\n"));
        let mut kamailio = Kamailio::new(&lan.ns, &cfg, dir);
        kamailio.start("64", "16", "Kamailio to answer OPTIONS", || {
            options_answered(&probe_from, &addr)
        });
        Self { addr, kamailio }
    }

    /// Adds a user (any bytes but NUL in its name) with `password` to example-pbx.cfg's
    /// `example_users` table, over JSON-RPC.
    pub fn add_user(&self, user: &str, password: &str) {
        let rpc = format!("{}:5071", self.addr);
        let r = try_rpc(&rpc, "htable.sets", json!(["example_users", user, password]))
            .unwrap_or_else(|e| panic!("htable.sets {user}: {e}\n{}", self.log_tail()));
        assert!(r.get("error").is_none(), "htable.sets {user}: {r}");
    }

    /// The log file Kamailio writes (for `[[detect.logs]] path`).
    pub fn log_path(&self) -> PathBuf {
        self.kamailio.log_path()
    }

    /// The log's last lines (for failure messages).
    pub fn log_tail(&self) -> String {
        self.kamailio.log_tail()
    }
}

/// Sends SIP OPTIONS from `from` to `to`:5060 over UDP; whether a 200 came back.
pub fn options_answered(from: &str, to: &str) -> bool {
    let s = UdpSocket::bind((from, 0)).unwrap_or_else(|e| panic!("binding {from}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    let port = s.local_addr().expect("local addr").port();
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let msg = format!(
        "OPTIONS sip:ping@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from}:{port};rport;branch=z9hG4bK{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{from}>;tag={n}\r\n\
         To: <sip:ping@{to}>\r\n\
         Call-ID: {n}@{from}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.send_to(msg.as_bytes(), (to, 5060)).expect("sending OPTIONS");
    let mut buf = [0u8; 4096];
    match s.recv(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"SIP/2.0 200"),
        Err(_) => false,
    }
}

/// A REGISTER for `user` that answers the 401 challenge with sipp's `-au`/`-ap`
/// credentials and expects `expect` (200 when they are right, 401 when not).
pub fn register_scenario(expect: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Expires: 3600
      User-Agent: fraudmesh-test-phone
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      [authentication]
      Max-Forwards: 70
      Expires: 3600
      User-Agent: fraudmesh-test-phone
      Content-Length: 0

    ]]>
  </send>
  <recv response="{expect}"/>
</scenario>
"#
    )
}

/// An INVITE from `[service]` (the authenticated user) to `number` that answers the
/// 407 challenge with sipp's `-au`/`-ap` credentials, then expects 200 (ACK, BYE, 200)
/// or a final `expect` (ACK).
pub fn invite_scenario(number: &str, expect: u16) -> String {
    Invite::new(number, expect).scenario()
}

/// An INVITE scenario (see [`invite_scenario`]) with what a test changes: the From
/// header and whether an answered call is hung up. The Call-ID is sipp's `[call_id]`
/// (`-cid_str` sets it, see [`sipp_with`]).
pub struct Invite {
    number: String,
    expect: u16,
    from: String,
    before_credentials: String,
    bye: bool,
}

impl Invite {
    /// From `<sip:[service]@[remote_ip]>` with sipp's own tag, hung up when answered.
    pub fn new(number: &str, expect: u16) -> Self {
        Self {
            number: number.to_string(),
            expect,
            from: "From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]".to_string(),
            before_credentials: String::new(),
            bye: true,
        }
    }

    /// The From tag `tag` (so that later runs can send BYEs of this dialog).
    pub fn with_from_tag(mut self, tag: &str) -> Self {
        self.from = format!("From: <sip:[service]@[remote_ip]>;tag={tag}");
        self
    }

    /// The whole From header as written (continuation lines start with `\x20`: sipp
    /// strips leading blanks from a scenario's lines, not that escape).
    pub fn with_from_header(mut self, header: &str) -> Self {
        self.from = header.to_string();
        self
    }

    /// A header line in the authenticated INVITE right before sipp's credentials.
    pub fn before_credentials(mut self, header: &str) -> Self {
        self.before_credentials = format!("\n      {header}");
        self
    }

    /// Answered, the call is not hung up (ACK only).
    pub fn no_bye(mut self) -> Self {
        self.bye = false;
        self
    }

    /// The scenario's XML.
    pub fn scenario(&self) -> String {
        let (number, expect, from) = (&self.number, self.expect, &self.from);
        let head = |cseq: u32, auth: &str| {
            format!(
                r#"
      INVITE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {from}
      To: <sip:{number}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:[service]@[local_ip]:[local_port]>{auth}
      Max-Forwards: 70
      User-Agent: fraudmesh-test-phone
      Content-Length: 0
"#
            )
        };
        let ack = |cseq: u32| {
            format!(
                r#"
      ACK sip:{number}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      {from}
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
"#
            )
        };
        let after = if expect == 200 {
            let ack = format!(
                "\n  <send><![CDATA[{}\n    ]]></send>",
                ack(2).replace(
                    "[last_Via:]",
                    "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
                )
            );
            let bye = if self.bye {
                format!(
                    r#"
  <send retrans="500"><![CDATA[
      BYE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {from}
      [last_To:]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
  <recv response="200"/>"#
                )
            } else {
                String::new()
            };
            format!("{ack}{bye}")
        } else {
            format!("\n  <send><![CDATA[{}\n    ]]></send>", ack(2))
        };
        format!(
            r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="invite">
  <send retrans="500"><![CDATA[{}
    ]]></send>
  <recv response="407" auth="true"/>
  <send><![CDATA[{}
    ]]></send>
  <send retrans="500"><![CDATA[{}
    ]]></send>
  <recv response="{expect}"/>{after}
</scenario>
"#,
            head(1, ""),
            ack(1),
            head(2, &format!("{}\n      [authentication]", self.before_credentials)),
        )
    }
}

/// A BYE alone, from `[service]` with From tag `from_tag` to `number`, with To tag
/// `to_tag` (`None`: no To tag, outside any dialog), Call-ID `[call_id]` (set it with
/// `-cid_str`); expects 200.
pub fn bye_scenario(number: &str, from_tag: &str, to_tag: Option<&str>) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bye">
  <send retrans="500"><![CDATA[
      BYE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag={from_tag}
      To: <sip:{number}@[remote_ip]>{to_tag}
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
  <recv response="200"/>
</scenario>
"#
    )
}

/// What one sipp run did: its exit status and the messages it sent and received.
pub struct SippRun {
    pub ok: bool,
    pub messages: String,
    pub stderr: String,
}

/// Runs `scenario` (XML text) with sipp from `from` to `to`:5060 as `user` with
/// password `password`, `calls` calls one after another. `ok` is sipp's exit status 0:
/// every call went as the scenario says.
pub fn sipp(dir: &Path, scenario: &str, from: &str, to: &str, user: &str, password: &str, calls: u32) -> SippRun {
    sipp_with(dir, scenario, from, to, user, password, calls, &[])
}

/// [`sipp`] with more of sipp's options, e.g. `["-cid_str", "CALL-ID"]` (the Call-ID, as
/// is when it holds no `%`).
#[allow(clippy::too_many_arguments)]
pub fn sipp_with(
    dir: &Path,
    scenario: &str,
    from: &str,
    to: &str,
    user: &str,
    password: &str,
    calls: u32,
    extra: &[&str],
) -> SippRun {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("scenario-{n}.xml"));
    let messages = dir.join(format!("messages-{n}.log"));
    std::fs::write(&file, scenario).expect("writing the scenario");
    let out = Command::new("sipp")
        .arg(format!("{to}:5060"))
        .arg("-sf")
        .arg(&file)
        .args(["-i", from, "-s", user, "-au", user, "-ap", password])
        .args(["-m", &calls.to_string(), "-l", "1", "-r", "10"])
        .args(extra)
        .args([
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
        ])
        .arg(&messages)
        .current_dir(dir)
        .output()
        .expect("running sipp");
    SippRun {
        ok: out.status.success(),
        messages: std::fs::read_to_string(&messages).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A Kamailio running example.cfg in a [`Lan`]'s namespace, SIP on `addr`:5060 and
/// JSON-RPC on `addr`:5071 (the namespace's end of the pair), open to RPC from the /24.
pub struct RpcKamailio {
    addr: String,
    kamailio: Kamailio,
}

impl RpcKamailio {
    /// Writes the config (example.cfg with this test's addresses) and checks it.
    pub fn new(lan: &Lan, dir: &Path) -> Self {
        let (addr, rpc_clients) = (lan.far(), lan.cidr());
        let cfg = format!(
            "#!KAMAILIO\n\
             #!define EXAMPLE_SIP_LISTEN udp:{addr}:5060\n\
             #!define FRAUDMESH_RPC_LISTEN tcp:{addr}:5071\n\
             #!define FRAUDMESH_RPC_CLIENT {rpc_clients}\n\
             include_file \"{EXAMPLE_CFG}\"\n"
        );
        Self {
            kamailio: Kamailio::new(&lan.ns, &cfg, dir),
            addr,
        }
    }

    /// Starts it and waits until RPC answers.
    pub fn start(&mut self) {
        self.start_with_memory("64", "16");
    }

    /// Starts it with `shm_mb` MB of shared memory and `pkg_mb` MB of private memory per
    /// process.
    pub fn start_with_memory(&mut self, shm_mb: &str, pkg_mb: &str) {
        let rpc = self.rpc_addr();
        self.kamailio.start(shm_mb, pkg_mb, "Kamailio's JSON-RPC", || {
            try_rpc(&rpc, "core.uptime", json!([])).is_ok()
        });
    }

    pub fn kill9(&mut self) {
        self.kamailio.kill9();
    }

    pub fn rpc_addr(&self) -> String {
        format!("{}:5071", self.addr)
    }

    pub fn rpc(&self, method: &str, params: Value) -> Value {
        try_rpc(&self.rpc_addr(), method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}\n{}", self.kamailio.log_tail()))
    }

    /// The table's entries as (key, value).
    pub fn dump(&self) -> Vec<(String, Value)> {
        let r = self.rpc("htable.dump", json!(["ipban"]));
        let mut items: Vec<(String, Value)> = r["result"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["slot"].as_array().cloned().unwrap_or_default())
            .map(|i| (i["name"].as_str().unwrap_or_default().to_string(), i["value"].clone()))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items
    }
}

/// One JSON-RPC call over HTTP to `addr`; the parsed answer or why there is none.
pub fn try_rpc(addr: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    let mut s = TcpStream::connect_timeout(&addr.parse().map_err(|e| format!("{e}"))?, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST /RPC HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // Kamailio keeps the connection open: read the head, then Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("reading from {addr}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{addr} closed the connection: {}",
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no Content-Length: {head}"))?;
        if buf.len() >= end + 4 + len {
            return serde_json::from_slice(&buf[end + 4..end + 4 + len]).map_err(|e| format!("{e}"));
        }
    }
}
