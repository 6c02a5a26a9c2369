//! Following logs: a file across rotation (rename + new file), truncation (copytruncate,
//! noticed by its size or by its first bytes changing) and its absence (it may appear
//! later), or a systemd unit's journal through `journalctl --follow`. Each complete line goes
//! through the patterns of the log's format (one [`Reader`] per log, which remembers what
//! later lines are judged by), then the operator's patterns for that format.
//!
//! A file that exists when the node starts is read from its end (old attacks were dealt
//! with before the restart); a file that appears later, or replaces a rotated one, is
//! read from its beginning. Files are polled every 250 ms, as fail2ban's polling backend
//! does: no inotify limits, works on every filesystem.

use super::{Detect, Observed, Sink, Source};
use crate::backoff::Backoff;
use fraudmesh::detect::logs::{Format, Outcome, Reader, MAX_LINE};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// How often a file is checked for new lines.
const POLL: Duration = Duration::from_millis(250);
/// Most bytes read from a file per poll (the rest next time).
const CHUNK: usize = 1 << 20;
/// First wait before `journalctl` is started again.
const JOURNAL_MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait before `journalctl` is started again.
const JOURNAL_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A log to follow.
pub struct Follower {
    source: Source,
}

impl Follower {
    /// A follower of `source`.
    pub fn new(source: Source) -> Self {
        Self { source }
    }
}

/// Splits bytes into lines, keeping an unfinished last line for later and dropping
/// lines longer than [`MAX_LINE`].
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
    skipping: bool,
}

impl Lines {
    /// Feeds bytes; calls `line` for each complete line.
    pub fn feed(&mut self, bytes: &[u8], mut line: impl FnMut(&str)) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.ends_with(b"\n");
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            if !self.skipping {
                if self.partial.len() + body.len() > MAX_LINE {
                    self.partial.clear();
                    self.skipping = true;
                } else {
                    self.partial.extend_from_slice(body);
                }
            }
            if complete {
                if !self.skipping {
                    let text = String::from_utf8_lossy(&self.partial);
                    line(text.trim_end_matches('\r'));
                }
                self.partial.clear();
                self.skipping = false;
            }
        }
    }
}

/// File names that syslog daemons write for every local program: any local user can put
/// lines there (`logger`), forged as any program's.
const SHARED_SYSLOG: &[&str] = &["syslog", "messages", "user.log", "daemon.log"];

/// Starts following; lines become [`Observed`] events on `tx`.
pub fn spawn(
    follower: Follower,
    format: Format,
    detect: Detect,
    sink: Sink,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    if let Source::File(path) = &follower.source {
        if path.file_name().is_some_and(|n| SHARED_SYSLOG.iter().any(|s| n == *s)) {
            tracing::warn!(
                path = %path.display(), format = format.label(),
                "following a syslog file every local program writes to: any local user can forge its lines \
                 (logger); prefer the stack's own log file or `journal = \"UNIT\"`"
            );
        }
    }
    let mut reader = Reader::new(format);
    let handle = move |line: &str| match detect.interpret(&mut reader, line, crate::now_ms()) {
        Outcome::Event(e) => {
            let ev = Observed {
                kind: e.kind,
                source: e.source,
                username: e.username,
                method: None,
                user_agent: None,
                via: e.pattern.to_string(),
                proof: e.proof,
            };
            sink.send(ev);
        }
        Outcome::Ambiguous(pattern) => {
            sink.metrics().detect_ambiguous.inc();
            tracing::debug!(
                pattern,
                line,
                "a log line whose address field cannot be located unambiguously: ignored"
            );
        }
        Outcome::Unknown => {}
    };
    match follower.source {
        Source::File(path) => tokio::spawn(follow_file(path, handle, shutdown)),
        Source::Journal(unit) => tokio::spawn(follow_journal(unit, handle, shutdown)),
    }
}

/// Bytes of a file's start remembered to notice it was truncated and rewritten.
const HEAD: usize = 256;

/// An open file and where reading stopped.
struct Open {
    file: File,
    ino: (u64, u64),
    pos: u64,
    /// The file's first bytes (up to [`HEAD`]) as last seen.
    head: Vec<u8>,
}

impl Open {
    /// Opens `path` to read from its end (`from_end`, for a file there when the node
    /// starts) or its start; `None` when it cannot seek there (tried again next poll).
    fn at(path: &Path, from_end: bool) -> std::io::Result<Option<Self>> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let pos = if from_end { meta.len() } else { 0 };
        if file.seek(SeekFrom::Start(pos)).is_err() {
            return Ok(None);
        }
        tracing::info!(path = %path.display(), from = if from_end { "end" } else { "start" }, "following log file");
        let mut o = Open {
            file,
            ino: (meta.dev(), meta.ino()),
            pos,
            head: Vec::new(),
        };
        o.truncated(meta.len()); // remembers the head
        Ok(Some(o))
    }

    /// Whether the file was truncated (and perhaps rewritten past where reading stopped):
    /// shorter than the read position, or its first bytes changed — as fail2ban
    /// checks, since copytruncate followed by new lines can leave the size unchanged.
    fn truncated(&mut self, len: u64) -> bool {
        use std::os::unix::fs::FileExt;
        if len < self.pos {
            return true;
        }
        let mut now = vec![0u8; HEAD.min(len as usize)];
        let Ok(n) = self.file.read_at(&mut now, 0) else {
            return false;
        };
        now.truncate(n);
        let common = self.head.len().min(now.len());
        if now[..common] != self.head[..common] {
            return true;
        }
        if now.len() > self.head.len() {
            self.head = now;
        }
        false
    }
}

async fn follow_file(path: PathBuf, mut handle: impl FnMut(&str), mut shutdown: watch::Receiver<bool>) {
    let mut open: Option<Open> = None;
    let mut lines = Lines::default();
    let mut at_start = true;
    let mut warned_missing = false;
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = every.tick() => {}
        }
        if open.is_none() {
            match Open::at(&path, at_start) {
                Ok(None) => continue,
                Ok(Some(o)) => {
                    open = Some(o);
                    lines = Lines::default();
                    warned_missing = false;
                }
                Err(e) => {
                    if !warned_missing {
                        tracing::warn!(path = %path.display(), error = %e, "log file not readable yet; waiting for it");
                        warned_missing = true;
                    }
                }
            }
            at_start = false;
        }
        let Some(o) = open.as_mut() else { continue };
        // Read what is new, then look at what the path is now.
        if read_new(o, &path, &mut lines, &mut handle) >= CHUNK {
            continue; // more to read before looking for rotation
        }
        match std::fs::metadata(&path) {
            Ok(meta) if (meta.dev(), meta.ino()) != o.ino => {
                // Lines written to the old file since the read above.
                read_new(o, &path, &mut lines, &mut handle);
                tracing::info!(path = %path.display(), "log file rotated: following the new one");
                open = None;
            }
            Ok(meta) if o.truncated(meta.len()) => {
                tracing::info!(path = %path.display(), "log file truncated: reading from its start");
                if o.file.seek(SeekFrom::Start(0)).is_ok() {
                    o.pos = 0;
                    o.head.clear();
                    lines = Lines::default();
                }
            }
            Ok(_) => {}
            Err(_) => {
                // Renamed away and not yet recreated: the old file is read to its end.
                open = None;
            }
        }
    }
}

/// Reads up to [`CHUNK`] new bytes into lines; returns how many were read.
fn read_new(o: &mut Open, path: &Path, lines: &mut Lines, handle: &mut impl FnMut(&str)) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while total < CHUNK {
        match o.file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                o.pos += n as u64;
                total += n;
                lines.feed(&buf[..n], &mut *handle);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "reading log file");
                break;
            }
        }
    }
    total
}

async fn follow_journal(unit: String, mut handle: impl FnMut(&str), mut shutdown: watch::Receiver<bool>) {
    use tokio::io::AsyncBufReadExt;
    let mut backoff = Backoff::new(JOURNAL_MIN_BACKOFF, JOURNAL_MAX_BACKOFF);
    loop {
        let child = tokio::process::Command::new("journalctl")
            .args(["--follow", "--lines=0", "--output=cat", "--unit", &unit])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(mut child) => {
                tracing::info!(%unit, "following the journal");
                if let Some(out) = child.stdout.take() {
                    let mut reader = tokio::io::BufReader::new(out).lines();
                    loop {
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            line = reader.next_line() => match line {
                                Ok(Some(l)) => {
                                    backoff.reset();
                                    if l.len() <= MAX_LINE { handle(&l) }
                                }
                                _ => break,
                            },
                        }
                    }
                }
                tracing::warn!(%unit, "journalctl ended; starting it again");
            }
            Err(e) => tracing::warn!(%unit, error = %e, "starting journalctl failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks_and_overlong_ones_dropped() {
        let mut l = Lines::default();
        let mut got = Vec::new();
        l.feed(b"one\r\ntw", |s| got.push(s.to_string()));
        l.feed(b"o\nthr", |s| got.push(s.to_string()));
        assert_eq!(got, vec!["one", "two"]);
        let long = vec![b'x'; MAX_LINE + 10];
        l.feed(&long, |s| got.push(s.to_string()));
        l.feed(b"\nfour\n", |s| got.push(s.to_string()));
        assert_eq!(
            got,
            vec!["one", "two", "four"],
            "the overlong line (with 'thr') is dropped whole"
        );
    }
}
