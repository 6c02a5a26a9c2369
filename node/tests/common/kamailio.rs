//! A real Kamailio running scripts/kamailio/example-pbx.cfg (fraudmesh.cfg,
//! fraudmesh-detect.cfg and fraudmesh-calls.cfg together) inside a network namespace of
//! the test's own, and sipp scenarios sent to it from addresses on the test's side of
//! the veth pair.

use super::netns::Netns;
use super::{wait_for, DEADLINE};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shipped example that includes every fragment.
pub const EXAMPLE_PBX_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kamailio/example-pbx.cfg");

/// The test users' passwords (example-pbx.cfg's defaults).
pub const PASS_1001: &str = "secret1001";

/// A Kamailio running example-pbx.cfg inside a namespace, SIP on `addr`:5060, its log
/// (stderr, `-E`) in `dir/kamailio.log`. Killed (its whole process group) on drop.
pub struct Pbx {
    pub addr: String,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Pbx {
    /// Writes the config (example-pbx.cfg with this test's `defines`, each
    /// `NAME value`), checks it with `kamailio -c`, starts it and waits until it answers
    /// OPTIONS from `probe_from`.
    pub fn start(ns: &Netns, addr: &str, defines: &[(&str, &str)], dir: &Path, probe_from: &str) -> Self {
        std::fs::create_dir_all(dir.join("run")).expect("kamailio dir");
        let mut cfg = format!("#!KAMAILIO\n#!define EXAMPLE_SIP_LISTEN udp:{addr}:5060\n");
        for (name, value) in defines {
            cfg.push_str(&format!("#!define {name} {value}\n"));
        }
        cfg.push_str(&format!("include_file \"{EXAMPLE_PBX_CFG}\"\n"));
        let cfg_path = dir.join("test.cfg");
        std::fs::write(&cfg_path, cfg).expect("writing test.cfg");
        let command = |extra: &[&str]| {
            let mut c = ns.command("kamailio");
            c.args(extra).arg("-f").arg(&cfg_path);
            c
        };
        let check = command(&["-c"]).output().expect("running kamailio -c");
        assert!(
            check.status.success(),
            "kamailio -c refused the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(dir.join("kamailio.log")).expect("kamailio.log");
        let run = dir.join("run");
        let child = {
            use std::os::unix::process::CommandExt;
            command(&["-DD", "-E", "-m", "64", "-M", "16"])
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
        let mut pbx = Self {
            addr: addr.to_string(),
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        wait_for("Kamailio to answer OPTIONS", DEADLINE, || {
            if let Some(status) = pbx.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("kamailio exited with {status}: {}", pbx.log_tail());
            }
            options_answered(probe_from, addr).then_some(())
        });
        pbx
    }

    /// The log file Kamailio writes (for `[[detect.logs]] path`).
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

impl Drop for Pbx {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let group = format!("-{}", c.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).output();
        let _ = c.wait();
        // Wait (bounded) until every process of the group is gone, so the namespace can go.
        for _ in 0..100 {
            let alive = Command::new("kill")
                .args(["-0", "--", &group])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
    let head = |cseq: u32, auth: &str| {
        format!(
            r#"
      INVITE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
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
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
"#
        )
    };
    let after = if expect == 200 {
        format!(
            r#"
  <send><![CDATA[{}
    ]]></send>
  <send retrans="500"><![CDATA[
      BYE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
  <recv response="200"/>"#,
            ack(2).replace(
                "[last_Via:]",
                "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
            )
        )
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
        head(2, "\n      [authentication]"),
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
