//! Bad input gets a clear error and changes nothing: config files, CLI arguments,
//! targets, API requests, tokens.

use crate::common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn malformed_config_is_refused_by_check_config_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases = [
        ("[node]\nlisten = \"not a list\"\n", "listen"),
        ("[node]\nlisten = [\"/ip4/1.2.3.4/tcp/x\"]\n", "node.listen"),
        ("[trust]\nstranger_cap = 2.0\n", "stranger cap"),
        (
            "[trust]\nthreshold = 1.0\nfavourite_colour = \"red\"\n",
            "unknown field",
        ),
        ("[policy]\nallowlist = [\"10.0.0.300\"]\n", "policy.allowlist[0]"),
        ("[node]\nseeds = [\"/ip4/127.0.0.1/tcp/7710\"]\n", "/p2p/"),
        ("this is not toml", "expected"),
    ];
    for (text, needle) in cases {
        std::fs::write(dir.join("config.toml"), text).unwrap();
        for cmd in [&["check-config"][..], &["run"][..]] {
            let out = cli(dir, cmd);
            assert_eq!(out.status.code(), Some(1), "{cmd:?} with {text:?}");
            let err = stderr(&out);
            assert!(err.contains(needle), "{cmd:?} with {text:?}: {err}");
            assert!(err.contains("config.toml"), "the error names the file: {err}");
        }
    }
    assert!(!dir.join("data").exists(), "a refused config starts nothing");
    std::fs::write(dir.join("config.toml"), "[trust]\nthreshold = 0.8\n").unwrap();
    let ok = cli_ok(dir, &["check-config"]);
    assert!(ok.contains("config OK"), "{ok}");
}

#[test]
fn unknown_flags_and_missing_arguments_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["report", "1.2.3.4", "--bogus"][..],
        &["frobnicate"][..],
        &["report"][..],
        &["check"][..],
        &["init", "--listen"][..],
    ] {
        let out = cli(tmp.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).starts_with("error:"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn init_refuses_to_overwrite_and_bad_init_flags_write_nothing() {
    let node = Node::init(&[]);
    let out = cli(&node.dir, &["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(cli_ok(&node.dir, &["id"]).trim(), node.peer_id, "identity untouched");

    let tmp = tempfile::tempdir().unwrap();
    for flags in [
        &["--trust", "not-a-peer-id"][..],
        &["--seed", "/ip4/127.0.0.1/tcp/1"][..],
        &["--api", "nowhere"][..],
    ] {
        let dir = tmp.path().join("x");
        let mut args = vec!["init"];
        args.extend_from_slice(flags);
        let out = cli(&dir, &args);
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        assert!(!dir.join("identity.key").exists(), "{flags:?} wrote an identity");
    }
}

#[test]
fn bad_reports_on_the_command_line_change_nothing() {
    let mut n = Node::init(&[]);
    n.start();
    let records = |n: &Node| n.status()["records"].as_u64().unwrap();

    for (target, needle) in [
        ("999.1.1.1", "999.1.1.1"),
        ("0.0.0.0/0", "broader than"),
        ("10.0.0.0/8", "broader than"),
        ("0.0.0.0", "unspecified"),
        ("+12ab", "number"),
    ] {
        let out = cli(&n.dir, &["report", target]);
        assert_eq!(out.status.code(), Some(1), "{target}");
        assert!(stderr(&out).contains(needle), "{target}: {}", stderr(&out));
    }
    // One bad line refuses the whole batch.
    let out = cli(&n.dir, &["report", "192.0.2.1", "999.1.1.1"]);
    assert_eq!(out.status.code(), Some(1));
    let out = cli(&n.dir, &["report", "192.0.2.1", "--ttl", "30d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ttl"), "{}", stderr(&out));
    // An unknown kind is a usage error, refused by the argument parser (exit 2) with the
    // kinds it takes.
    let out = cli(&n.dir, &["report", "192.0.2.1", "--kind", "nasty"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid value 'nasty'"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("possible values: scan, auth-failure, invite-flood, toll-fraud, manual"),
        "{}",
        stderr(&out)
    );
    let out = cli(&n.dir, &["check", "999.1.1.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("999.1.1.1"));
    assert_eq!(records(&n), 0);
}

#[test]
fn bad_api_requests_change_nothing() {
    let mut n = Node::init(&[]);
    n.start();
    let records = |n: &Node| n.status()["records"].as_u64().unwrap();
    let api = n.api();
    let token = n.token();
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let good = r#"{"targets":["192.0.2.1"]}"#;

    let (code, body) = http(&api, "POST", "/v1/sightings", &[], good);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("missing token"), "{body}");
    let (code, body) = http(&api, "POST", "/v1/sightings", &[("Authorization", "Bearer nope")], good);
    assert_eq!(code, 403, "{body}");
    let (code, _) = http(&api, "DELETE", "/v1/sightings/192.0.2.1", &[], "");
    assert_eq!(code, 401);
    for bad in [
        "{not json",
        r#"{"targets": "192.0.2.1"}"#,
        r#"{"targets": []}"#,
        r#"{"targets": ["192.0.2.1"], "colour": "red"}"#,
        r#"{"targets": ["192.0.2.1", "999.1.1.1"]}"#,
        r#"{"target": "0.0.0.0/0"}"#,
        r#"{"target": "192.0.2.1", "ttl": "forever"}"#,
        r#"{"target": "192.0.2.1", "kind": "retract"}"#,
    ] {
        let (code, body) = http(&api, "POST", "/v1/sightings", &auth, bad);
        assert_eq!(code, 400, "{bad}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{bad}: {body}"));
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
    // Fault injection is off unless the config turns it on.
    let (code, body) = http(&api, "PUT", "/v1/debug/refuse", &auth, r#"{"peers": []}"#);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("debug.fault_injection"), "{body}");
    let (code, _) = http(&api, "GET", "/v1/check/999.1.1.1", &[], "");
    assert_eq!(code, 400);
    let (code, _) = http(&api, "GET", "/v1/nothing-here", &[], "");
    assert_eq!(code, 404);
    assert_eq!(records(&n), 0, "nothing refused changed anything");

    // And the right request with the right token works.
    let (code, body) = http(&api, "POST", "/v1/sightings", &auth, good);
    assert_eq!(code, 200, "{body}");
    assert_eq!(records(&n), 1);
    assert!(n.is_blocked("192.0.2.1"));
    // The list says since when each target is blocked.
    let list = cli_json(&n.dir, &["list", "--json"]);
    let since = list["blocked"][0]["since"].as_u64().expect("since");
    assert!(since > 1_700_000_000_000, "{list}");
}

#[test]
fn fault_injection_refuses_only_well_formed_requests() {
    let mut n = Node::init(&[]);
    std::fs::write(
        n.dir.join("config.toml"),
        "[node]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\napi = \"127.0.0.1:0\"\n[debug]\nfault_injection = true\n",
    )
    .unwrap();
    n.start();
    let api = n.api();
    let bearer = format!("Bearer {}", n.token());
    let auth = [("Authorization", bearer.as_str())];
    let (code, _) = http(&api, "PUT", "/v1/debug/refuse", &[], r#"{"peers": []}"#);
    assert_eq!(code, 401, "writes need the token");
    for bad in [r#"{"peers": ["not-a-peer"]}"#, r#"{"peer": []}"#, "[]"] {
        let (code, body) = http(&api, "PUT", "/v1/debug/refuse", &auth, bad);
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let other = "12D3KooWLRPJAA5o6xJQyEYB9nRaHq2i7TUEYkuu6zfKQwm4Z5eT";
    let (code, body) = http(
        &api,
        "PUT",
        "/v1/debug/refuse",
        &auth,
        &format!(r#"{{"peers": ["{other}"]}}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(other), "{body}");
    let (code, body) = http(&api, "PUT", "/v1/debug/refuse", &auth, r#"{"peers": []}"#);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""refused":[]"#), "{body}");
}

#[test]
fn commands_without_a_running_node_say_so() {
    let node = Node::init(&[]);
    let out = cli(&node.dir, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no node is running"), "{}", stderr(&out));
}

/// DNS rebinding: a web page whose name an attacker re-points at 127.0.0.1 reaches the
/// API with its own name as `Host`. Only IP addresses and `localhost` are served.
#[test]
fn only_ip_addresses_and_localhost_are_served_as_host() {
    let mut n = Node::init(&[]);
    n.start();
    let api = n.api();
    let port = api.rsplit_once(':').unwrap().1;
    for path in ["/v1/status", "/metrics", "/v1/accounts", "/v1/nothing-here"] {
        for host in ["evil.example", &format!("evil.example:{port}"), "127.0.0.1.nip.io"] {
            let (code, body) = http_host(&api, host, "GET", path, &[], "");
            assert_eq!(code, 421, "{path} as {host}: {body}");
            assert!(body.contains("IP address"), "{body}");
        }
    }
    let bearer = format!("Bearer {}", n.token());
    let (code, body) = http_host(
        &api,
        "evil.example",
        "POST",
        "/v1/sightings",
        &[("Authorization", &bearer), ("Content-Type", "application/json")],
        r#"{"targets":["192.0.2.1"]}"#,
    );
    assert_eq!(code, 421, "{body}");
    for host in [
        api.clone(),
        format!("localhost:{port}"),
        "localhost".into(),
        "127.0.0.1".into(),
    ] {
        let (code, body) = http_host(&api, &host, "GET", "/metrics", &[], "");
        assert_eq!(code, 200, "as {host}: {body}");
    }
    assert_eq!(n.status()["records"], 0, "nothing refused changed anything");
}

/// `fraudmesh run` on DIR, expected to refuse to start: its stderr (killed and failed if
/// it starts after all).
fn run_refused(dir: &std::path::Path) -> String {
    let mut child = std::process::Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .arg("run")
        .env("FRAUDMESH_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning fraudmesh run");
    let status = wait_for("fraudmesh run to refuse", DEADLINE, || {
        if dir.join("node.json").exists() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node started");
        }
        child.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    err
}

#[test]
fn token_files_others_can_read_stop_the_node_from_starting() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::init(&[]);
    let chmod = |name: &str, mode: u32| {
        std::fs::set_permissions(node.dir.join(name), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod("api.token", 0o644);
    let err = run_refused(&node.dir);
    assert!(err.contains("api.token") && err.contains("chmod 600"), "{err}");
    chmod("api.token", 0o640);
    let err = run_refused(&node.dir);
    assert!(err.contains("chmod 600"), "group-readable is refused too: {err}");
    chmod("api.token", 0o600);
    chmod("calls.token", 0o644);
    let err = run_refused(&node.dir);
    assert!(err.contains("calls.token") && err.contains("chmod 640"), "{err}");
    assert!(!node.dir.join("data").exists(), "a refused start opens nothing");

    // The PBX's group may read the calls token; a directory without one gets one.
    chmod("calls.token", 0o640);
    std::fs::remove_file(node.dir.join("calls.token")).unwrap();
    let mut node = node;
    node.start();
    let mode = std::fs::metadata(node.dir.join("calls.token"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(node.calls_token().len(), 64);
}

/// Without a live `node.json` the CLI does not send the token to the configured address:
/// whatever listens there may be another local process waiting for it.
#[test]
fn the_cli_sends_the_token_only_to_a_running_node() {
    use std::io::{Read, Write};
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = impostor.local_addr().unwrap().to_string();
    let node = Node::init(&[]);
    let config = std::fs::read_to_string(node.dir.join("config.toml")).unwrap();
    assert!(config.contains("api = \"127.0.0.1:0\""), "{config}");
    let config = config.replace("api = \"127.0.0.1:0\"", &format!("api = \"{addr}\""));
    std::fs::write(node.dir.join("config.toml"), config).unwrap();
    let token = node.token();
    // A node.json whose pid is gone (a node killed without cleaning up) counts as none.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let stale = serde_json::json!({"pid": pid, "peer_id": node.peer_id, "api": addr, "listen": []});
    for stale_runtime in [false, true] {
        if stale_runtime {
            std::fs::write(node.dir.join("node.json"), stale.to_string()).unwrap();
        }
        for args in [
            &["accounts", "list"][..],
            &["accounts", "unlock", "1001"][..],
            &["calls", "check", "--account", "1001", "--to", "0441234567"][..],
            &["report", "192.0.2.1"][..],
            &["retract", "192.0.2.1"][..],
        ] {
            let out = cli(&node.dir, args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr(&out);
            assert!(
                err.contains("no node is running") && err.contains("run"),
                "{args:?}: {err}"
            );
        }
    }
    impostor.set_nonblocking(true).unwrap();
    assert!(
        matches!(impostor.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no command that needs the token connected"
    );

    // A read that needs no token still tries the configured address, without the token.
    impostor.set_nonblocking(false).unwrap();
    let seen = std::thread::spawn(move || {
        let (mut s, _) = impostor.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let k = s.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            req.extend_from_slice(&buf[..k]);
        }
        let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        String::from_utf8_lossy(&req).into_owned()
    });
    let out = cli(&node.dir, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let req = seen.join().unwrap();
    assert!(req.starts_with("GET /v1/status"), "{req}");
    assert!(!req.to_ascii_lowercase().contains("authorization"), "{req}");
    assert!(!req.contains(&token), "{req}");
}
