//! Writing files so that a crash leaves the old content or the new one, never half, and
//! so that whoever else can write the directory cannot redirect the write.

use anyhow::Context;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Temporary names tried before giving up (each is random: a clash means someone is
/// planting files).
const ATTEMPTS: usize = 16;

/// Writes `bytes` to `path` with permissions `mode`: a temporary file in the same
/// directory is written, synced, renamed over `path`, and the directory synced, so a
/// reader (or a restart after a crash) sees the old file or the new one.
///
/// The temporary file's name is random (`.NAME.<16 hex>.tmp`) and it is created with
/// `O_CREAT | O_EXCL`, which never follows a symbolic link nor opens an existing file: a
/// user who can write the directory (a PBX user in `/etc/asterisk`) cannot make the node
/// write another file by planting a link at the temporary name; such a name is skipped.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    write_with_names(path, bytes, mode, || hex_suffix(rand::random()))
}

fn hex_suffix(n: u64) -> String {
    format!("{n:016x}")
}

/// [`write_atomically`] with the temporary names' random parts drawn from `suffix`.
fn write_with_names(path: &Path, bytes: &[u8], mode: u32, mut suffix: impl FnMut() -> String) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let (tmp, mut f) = create_temporary(dir, &name, mode, &mut suffix).with_context(|| {
        format!(
            "writing {}: creating a temporary file in {}",
            path.display(),
            dir.display()
        )
    })?;
    let result = (|| {
        // The mode given at creation is masked by the umask; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Creates a new file `.NAME.<suffix>.tmp` in `dir`, trying fresh suffixes while a name
/// is taken (by a file or a planted link, neither of which is opened).
fn create_temporary(
    dir: &Path,
    name: &str,
    mode: u32,
    suffix: &mut impl FnMut() -> String,
) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let tmp = dir.join(format!(".{name}.{}.tmp", suffix()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name left")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(names(dir.path()), ["list.txt"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let err = write_atomically(Path::new("/nonexistent-fraudmesh-dir/x"), b"x", 0o644).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent-fraudmesh-dir/x"), "{err:#}");
    }

    /// A user who can write the directory plants links where the temporary file could
    /// be: at the name older versions used (`.NAME.PID.tmp`) and at the very name the
    /// next write will try. Neither is followed; the file they point to is untouched.
    #[test]
    fn planted_links_at_temporary_names_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("shadow");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("list.txt");
        let old_name = dir.path().join(format!(".list.txt.{}.tmp", std::process::id()));
        let guessed = dir.path().join(".list.txt.0000000000000001.tmp");
        std::os::unix::fs::symlink(&victim, &old_name).unwrap();
        std::os::unix::fs::symlink(&victim, &guessed).unwrap();

        write_atomically(&path, b"list one\n", 0o644).unwrap();
        let mut n = 0;
        write_with_names(&path, b"list two\n", 0o644, || {
            n += 1;
            hex_suffix(n)
        })
        .unwrap();
        assert_eq!(n, 2, "the guessed name was taken, the next one used");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "list two\n");
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        for link in [&old_name, &guessed] {
            assert!(std::fs::symlink_metadata(link).unwrap().file_type().is_symlink());
        }
        assert_eq!(names(dir.path()).len(), 3, "no temporary left: {:?}", names(dir.path()));

        // Every name taken: an error, nothing followed.
        let err = write_with_names(&path, b"x", 0o644, || hex_suffix(1)).unwrap_err();
        assert!(format!("{err:#}").contains("temporary"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "list two\n");
    }
}
