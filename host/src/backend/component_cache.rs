//! The on-disk cache of the compiled component and of its snapshot with a model loaded.
//! Loading either runs its native code, so they live only in a directory this user owns and
//! nobody else can write, each file is checked the same way through the handle it is read from,
//! files are written whole (temp file, then rename), and entries of other builds are removed.
//!
//! Keys are `<build>` for the component and `<build>-<entry>` for others made from it; snapshots
//! with a model loaded are `<build>-model-<digest>`. Writing an entry removes the entries of
//! other builds and all but the newest four snapshots.

use anyhow::{Context, Result, bail};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Name prefix and suffix of a cache entry.
const PREFIX: &str = "llorch-guest-";
const SUFFIX: &str = ".cwasm";
/// Marks the key of a snapshot with a model loaded.
pub const MODEL: &str = "-model-";
/// Snapshots kept: each is about the size of its model.
const SNAPSHOTS: usize = 4;
/// A temp file older than this was left by a writer that died.
const STALE_PARTIAL: Duration = Duration::from_secs(3600);

/// A private directory of compiled components.
#[derive(Debug)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// Why `path` may not be trusted: another owner, or write access for group or others.
fn untrusted(path: &Path, metadata: &std::fs::Metadata) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if metadata.uid() != me {
        return Some(format!("{} belongs to uid {}, not to this user (uid {me})", path.display(), metadata.uid()));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "{} can be written by group or others (mode {mode:03o}); make it private with chmod 700",
            path.display()
        ));
    }
    None
}

impl ComponentCache {
    /// Opens `dir`, creating it (and missing parents) with mode 0700; refuses a directory that
    /// another user owns or that group or others can write.
    pub fn open(dir: &Path) -> Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create cache directory {}", dir.display()))?;
        let metadata =
            std::fs::metadata(dir).with_context(|| format!("cannot read cache directory {}", dir.display()))?;
        if !metadata.is_dir() {
            bail!("cache directory {} is not a directory", dir.display());
        }
        if let Some(why) = untrusted(dir, &metadata) {
            bail!("refusing cache directory: {why}");
        }
        Ok(ComponentCache { dir: dir.to_path_buf() })
    }

    /// The path of the entry for `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{PREFIX}{key}{SUFFIX}"))
    }

    /// The path of the entry for `key`, to be mapped; None when there is none. An entry that is
    /// a link, belongs to another user or can be written by others is refused. Only this user
    /// can replace it after the check: the directory is private.
    pub fn checked_path(&self, key: &str) -> Result<Option<PathBuf>> {
        let path = self.path(key);
        let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            bail!("{} is not a regular file", path.display());
        }
        if let Some(why) = untrusted(&path, &metadata) {
            bail!("refusing cached component: {why}");
        }
        Ok(Some(path))
    }

    /// Stores `bytes` as the entry for `key`: written to a private temp file, synced, then
    /// renamed into place, so a reader sees the whole file or none. Then removes the entries of
    /// other builds and temp files left by writers that died.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path(key);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let partial = self.dir.join(format!(".{PREFIX}{key}.{}.{nanos}.partial", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut file: File = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            return Err(e).with_context(|| format!("cannot write {}", path.display()));
        }
        self.remove_stale(key);
        Ok(path)
    }

    /// Removes the entries of other builds, all but the newest `SNAPSHOTS` snapshots, and every
    /// temp file older than an hour.
    fn remove_stale(&self, key: &str) {
        let build = format!("{PREFIX}{}", key.split('-').next().unwrap_or(key));
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut stale = Vec::new();
        let mut snapshots = Vec::new();
        for entry in entries.flatten() {
            let (path, name) = (entry.path(), entry.file_name());
            let Some(name) = name.to_str() else { continue };
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
                if !name.starts_with(&build) {
                    stale.push(path);
                } else if name.contains(MODEL) {
                    snapshots.push((modified, path));
                }
            } else if name.starts_with(&format!(".{PREFIX}"))
                && name.ends_with(".partial")
                && modified.elapsed().unwrap_or_default() > STALE_PARTIAL
            {
                stale.push(path);
            }
        }
        snapshots.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        stale.extend(snapshots.into_iter().skip(SNAPSHOTS).map(|(_, path)| path));
        for path in stale {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!("removed stale cache entry {}", path.display()),
                Err(e) => tracing::warn!("cannot remove stale {}: {e}", path.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("llorch-cache-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_a_private_directory_and_round_trips_entries() {
        let dir = scratch("roundtrip").join("nested");
        let cache = ComponentCache::open(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(cache.checked_path("a").unwrap(), None);
        cache.write("a", b"first").unwrap();
        assert_eq!(std::fs::read(cache.checked_path("a").unwrap().unwrap()).unwrap(), b"first");
        assert_eq!(std::fs::metadata(cache.path("a")).unwrap().mode() & 0o777, 0o600);
        // A new build's entry replaces the old one; nothing else is left behind.
        cache.write("b", b"second").unwrap();
        let names = || {
            let mut names: Vec<_> =
                std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            names.sort();
            names
        };
        assert_eq!(names(), ["llorch-guest-b.cwasm"]);
        // Entries of the build stay beside its component; the fifth snapshot replaces the oldest.
        cache.write("b-tool", b"other").unwrap();
        for (i, model) in ["1", "2", "3", "4", "5"].into_iter().enumerate() {
            let key = format!("b-model-{model}");
            cache.write(&key, b"snapshot").unwrap();
            let an_hour_later = SystemTime::UNIX_EPOCH + Duration::from_secs(3600 * (i as u64 + 1));
            File::options().write(true).open(cache.path(&key)).unwrap().set_modified(an_hour_later).unwrap();
        }
        let snapshots: Vec<String> = names().into_iter().filter(|n| n.contains("-model-")).collect();
        assert_eq!(snapshots.len(), 4, "{snapshots:?}");
        assert_eq!(cache.checked_path("b-model-1").unwrap(), None);
        assert_eq!(cache.checked_path("b-model-5").unwrap(), Some(cache.path("b-model-5")));
        assert!(names().contains(&"llorch-guest-b-tool.cwasm".to_string()));
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_directories_and_entries_others_can_write() {
        let dir = scratch("shared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = ComponentCache::open(&dir).unwrap_err().to_string();
        assert!(error.contains("can be written by group or others (mode 777)"), "{error}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let cache = ComponentCache::open(&dir).unwrap();
        cache.write("k", b"code").unwrap();
        std::fs::set_permissions(cache.path("k"), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(cache.checked_path("k").unwrap_err().to_string().contains("refusing cached component"));
        // A link in place of an entry is not followed.
        std::fs::remove_file(cache.path("k")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", cache.path("k")).unwrap();
        assert!(cache.checked_path("k").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
