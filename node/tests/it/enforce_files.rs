//! The file enforcer and the enforcer runner against a real node: lists written in each
//! format as reports and retractions happen, the hook, `fraudmesh enforce status`,
//! recovery after a failure without a restart, and `fraudmesh enforce --remove`.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The four list files of [`node_with_lists`]: in each format, one with a hook, one in
/// a directory that does not exist yet.
struct Lists {
    /// A custom template (an XML ACL) with a hook that appends to `hook_log`.
    plain: PathBuf,
    hook_log: PathBuf,
    ipset: PathBuf,
    json: PathBuf,
    /// In `late/`, which does not exist when the node starts.
    late: PathBuf,
    hooked: PathBuf,
}

impl Lists {
    /// The enforcer's name of the file in `late/`.
    fn late_name(&self) -> String {
        format!("file:{}", self.hooked.display())
    }
}

/// A node (not started) writing [`Lists`].
fn node_with_lists() -> (Node, Lists) {
    let n = Node::init(&[]);
    let out = n.dir.parent().unwrap().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let late = n.dir.parent().unwrap().join("late");
    let l = Lists {
        plain: out.join("acl.xml"),
        hook_log: out.join("hook.log"),
        ipset: out.join("fraudmesh.ipset"),
        json: out.join("list.json"),
        hooked: late.join("list.txt"),
        late,
    };
    n.append_config(&format!(
        r#"[[enforce.files]]
path = "{plain}"
header = "<include>"
line = '<node type="deny" cidr="{{cidr}}"/>'
footer = "</include>"
hook = ["sh", "-c", "echo reloaded >> {hook_log}"]
min_interval = "0s"

[[enforce.files]]
path = "{ipset}"
format = "ipset"
ipset_name = "fm_test"
min_interval = "0s"

[[enforce.files]]
path = "{json}"
format = "json"

[[enforce.files]]
path = "{hooked}"
min_interval = "0s"
"#,
        plain = l.plain.display(),
        hook_log = l.hook_log.display(),
        ipset = l.ipset.display(),
        json = l.json.display(),
        hooked = l.hooked.display(),
    ));
    cli_ok(&n.dir, &["check-config"]);
    (n, l)
}

/// Asserts that `ipset restore` takes the file (in a namespace of the test's own) and
/// then lists `fm_test6` holding `entry`.
fn assert_ipset_restores(file: &Path, entry: &str) {
    netns::require(&["ip", "ipset"]);
    let ns = netns::Netns::new("ipset");
    let restored = ns
        .command("sh")
        .args([
            "-c",
            &format!("ipset restore < {} && ipset list fm_test6", file.display()),
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success() && listed.contains(entry),
        "{listed}{}",
        String::from_utf8_lossy(&restored.stderr)
    );
}

/// One story: each step's files follow from the decisions and failures before it (the
/// late directory's recovery, the diff after the first full sync, --remove at the end).
#[test]
fn list_files_follow_the_decisions_and_recover_from_failures() {
    let (mut n, l) = node_with_lists();
    let (plain, ipset, json, hooked, late) = (&l.plain, &l.ipset, &l.json, &l.hooked, &l.late);
    let late_name = l.late_name();
    n.start();

    // On start, every file gets the (empty) list; the one whose directory is missing fails
    // and keeps retrying without stopping the node.
    wait_for("the empty list written", DEADLINE, || {
        (read(plain) == "<include>\n</include>\n" && read(json).contains("\"count\": 0")).then_some(())
    });
    let st = wait_for("the failing enforcer to report its error", DEADLINE, || {
        let st = cli_json(&n.dir, &["enforce", "status", "--json"]);
        (enforcer(&st, &late_name)["errors"].as_u64() >= Some(1)).then_some(st)
    });
    let bad = enforcer(&st, &late_name);
    assert_eq!(bad["state"], "retrying", "{bad}");
    assert!(bad["last_error"].as_str().unwrap().contains("late/list.txt"), "{bad}");
    let file_applies: f64 = n
        .scrape()
        .samples("fraudmesh_enforce_applies_total")
        .filter(|s| s.label("enforcer").is_some_and(|e| e.starts_with("file:")))
        .map(|s| s.value)
        .sum();
    assert!(file_applies > 0.0);

    n.report(&["192.0.2.10", "2001:db8::/48", "+4190066"]);
    wait_for("the plain list to hold both entries", DEADLINE, || {
        (read(plain)
            == "<include>\n<node type=\"deny\" cidr=\"192.0.2.10/32\"/>\n<node type=\"deny\" cidr=\"2001:db8::/48\"/>\n</include>\n")
            .then_some(())
    });
    wait_for("the ipset and JSON lists", DEADLINE, || {
        let j: Value = serde_json::from_str(&read(json)).ok()?;
        let i = read(ipset);
        (j["count"] == 2
            && i.contains("add fm_test 192.0.2.10 timeout ")
            && i.contains("add fm_test6 2001:db8::/48 timeout "))
        .then_some(())
    });
    assert!(!read(json).contains("4190066"), "numbers are not enforced");
    // The ipset file is what `ipset restore` takes.
    assert_ipset_restores(ipset, "2001:db8::/48 timeout");

    // The directory appears: the failing enforcer recovers by itself with the full list.
    std::fs::create_dir_all(late).unwrap();
    wait_for("the late file after recovery", Duration::from_secs(60), || {
        (read(hooked) == "192.0.2.10\n2001:db8::/48\n").then_some(())
    });
    let st = wait_for("the recovered state", DEADLINE, || {
        let st = cli_json(&n.dir, &["enforce", "status", "--json"]);
        (enforcer(&st, &late_name)["state"] == "ok").then_some(st)
    });
    let good = enforcer(&st, &late_name);
    assert_eq!(good["entries"], 2, "{good}");
    assert!(good["full_syncs"].as_u64() >= Some(1), "{good}");

    // A retraction takes the entry out again.
    cli_ok(&n.dir, &["retract", "192.0.2.10"]);
    wait_for("the retraction in every file", DEADLINE, || {
        let j: Value = serde_json::from_str(&read(json)).ok()?;
        (!read(plain).contains("192.0.2.10") && !read(ipset).contains("192.0.2.10") && j["count"] == 1).then_some(())
    });
    let st = cli_json(&n.dir, &["enforce", "status", "--json"]);
    // Started on an empty list, the first change is a diff, not another full replace.
    assert_eq!(
        enforcer(&st, &format!("file:{}", plain.display()))["full_syncs"],
        1,
        "{st}"
    );
    for e in st["enforcers"].as_array().unwrap() {
        assert_eq!(e["entries"], 1, "{e}");
        assert!(e["last_apply"].as_u64().is_some(), "{e}");
    }
    assert!(read(&l.hook_log).lines().count() >= 3, "the hook ran after each write");
    let text = cli_ok(&n.dir, &["enforce", "status"]);
    assert!(text.contains("ok, 1 entries"), "{text}");

    // --remove is refused while the node runs; afterwards it empties every list.
    let refused = cli(&n.dir, &["enforce", "--remove"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop it first"));
    assert!(n.stop().success());
    assert!(
        read(plain).contains("2001:db8::/48"),
        "entries stay in place across a stop"
    );
    let removed = cli_ok(&n.dir, &["enforce", "--remove"]);
    assert_eq!(removed.lines().count(), 4, "{removed}");
    assert_eq!(read(plain), "<include>\n</include>\n");
    assert!(!read(ipset).contains("add "));
    assert!(read(json).contains("\"count\": 0"));
}

#[test]
fn bad_enforcer_config_is_refused_with_the_key() {
    let n = Node::init(&[]);
    n.append_config("[[enforce.files]]\npath = \"/tmp/x\"\nline = \"deny={nope}\"");
    let out = cli(&n.dir, &["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("enforce.files[0].line") && err.contains("{nope}"), "{err}");
    let n = Node::init(&[]);
    n.append_config("[[enforce.files]]\npath = \"/tmp/x\"\nformat = \"csv\"");
    let err = String::from_utf8_lossy(&cli(&n.dir, &["check-config"]).stderr).into_owned();
    assert!(err.contains("format") && err.contains("csv"), "{err}");
    // No enforcers: status says so, and --remove has nothing to do.
    let n = Node::init(&[]);
    assert!(cli_ok(&n.dir, &["enforce", "--remove"]).contains("nothing to remove"));
    assert!(
        !cli(&n.dir, &["enforce"]).status.success(),
        "enforce alone says what to do"
    );
}
