//! `audit`: the PBX configuration readers behind `fraudmesh audit` and the scheduled
//! audit (`audit::run`): Asterisk's pjsip.conf / sip.conf / voicemail.conf / manager.conf /
//! http.conf (with `#include`s) and FreeSWITCH's XML (vars.xml, the user directory,
//! event_socket.conf.xml), read from a scratch directory the input is written to.
//!
//! Input: files separated by NUL bytes; each file's first byte picks its name (see
//! `FILES`), the rest is its text.
//!
//! Properties: an audit is deterministic; a secret (a `secret`, `password` or
//! `vm-password` value, or a voicemail PIN, written once in the input) never appears in
//! the report (findings say the file and line, never the value); every finding's file is
//! one the report says it read; nothing panics.
#![no_main]

use fraudmesh_node::audit::{report, run, Options};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The files an input can write (Asterisk's under `asterisk/`, FreeSWITCH's under
/// `freeswitch/`).
const FILES: [&str; 9] = [
    "asterisk/pjsip.conf",
    "asterisk/sip.conf",
    "asterisk/voicemail.conf",
    "asterisk/manager.conf",
    "asterisk/http.conf",
    "asterisk/pjsip.d/extra.conf",
    "freeswitch/vars.xml",
    "freeswitch/directory/default/1000.xml",
    "freeswitch/autoload_configs/event_socket.conf.xml",
];

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("fraudmesh-fuzz-audit-{}", std::process::id()))
    })
}

/// Values written after a secret's key, alphanumeric and long enough not to occur in a
/// report by chance.
fn secrets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        let lower = l.to_ascii_lowercase();
        let value = if lower.starts_with("secret") || lower.starts_with("password") {
            l.split_once('=').map(|(_, v)| v.trim_start_matches('>').trim())
        } else if lower.contains("password\"") {
            lower
                .find("value=\"")
                .map(|i| l[i + 7..].split('"').next().unwrap_or_default())
        } else {
            None
        };
        if let Some(v) = value {
            let v = v.split(';').next().unwrap_or_default().trim();
            if v.len() >= 12 && v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                out.push(v.to_string());
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = std::fs::remove_dir_all(dir);
    for d in [
        "asterisk/pjsip.d",
        "freeswitch/directory/default",
        "freeswitch/autoload_configs",
    ] {
        std::fs::create_dir_all(dir.join(d)).expect("scratch directory");
    }
    let mut all = String::new();
    for file in data.split(|&b| b == 0) {
        let Some((&which, text)) = file.split_first() else {
            continue;
        };
        std::fs::write(dir.join(FILES[which as usize % FILES.len()]), text).expect("scratch file");
        all.push_str(&String::from_utf8_lossy(text));
        all.push('\n');
    }
    let options = Options::explicit(Some(dir.join("asterisk")), Some(dir.join("freeswitch")), Vec::new());
    let first = run(&options);
    assert_eq!(first, run(&options), "the audit is not deterministic");
    let text = report::human(&first);
    let json = format!("{first:?}");
    for s in secrets(&all) {
        if all.matches(s.as_str()).count() == 1 {
            assert!(
                !text.contains(&s) && !json.contains(&s),
                "the secret {s:?} is in the report:\n{text}"
            );
        }
    }
    for f in &first.findings {
        if let Some(file) = &f.file {
            assert!(first.files.contains(file), "a finding in {file}, a file not read");
        }
    }
});
