//! Checkpoint 25: the compiled component, native code the worker runs, is cached only in a
//! private directory: never in a shared temp directory, never from a directory others can
//! write or another user owns; entries are private, written whole, and stale ones removed.

use crate::support::worker::{Worker, binary, spawn};
use crate::support::{scratch, tiny};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A fresh, empty scratch directory.
fn fresh(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::remove_dir_all(&dir).unwrap();
    dir
}

/// Starts the worker with `cache` and expects exit 1 with one error line containing `needle`.
fn refused(cache: &Path, needle: &str) {
    let mut worker = spawn(&["--model", tiny().to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()]);
    let status = worker.wait_exit(Duration::from_secs(60)).expect("the worker exits");
    assert_eq!(status.code(), Some(1), "{:?}", worker.lines());
    let errors: Vec<_> = worker.lines().into_iter().filter(|l| l.contains("\"level\":\"error\"")).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(needle), "{}", errors[0]);
}

#[test]
fn without_home_nothing_is_cached_in_a_shared_directory() {
    let began = SystemTime::now();
    let mut bare = std::process::Command::new(binary());
    bare.args(["--port", "0", "--model", tiny().to_str().unwrap()]);
    bare.env_remove("HOME").env_remove("XDG_CACHE_HOME").env_remove("LLORCH_CACHE_DIR");
    let worker = Worker::start_command(bare);
    let messages = worker.messages_after("compiled the snapshot");
    let compiled = messages.iter().find(|m| m.starts_with("compiled the snapshot")).unwrap();
    assert!(compiled.ends_with("not cached: no --cache-dir, XDG_CACHE_HOME or HOME"), "{compiled}");
    let shared = std::env::temp_dir().join("llorch-cpud");
    if let Ok(entries) = std::fs::read_dir(&shared) {
        for entry in entries.flatten() {
            let modified = entry.metadata().unwrap().modified().unwrap();
            assert!(modified < began, "{} was written by this worker", entry.path().display());
        }
    }
}

#[test]
fn a_cache_directory_others_can_write_is_refused() {
    let dir = fresh("cache-world-writable");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(&dir, "can be written by group or others (mode 777)");
}

#[test]
fn a_cache_directory_another_user_owns_is_refused() {
    // SAFETY: geteuid has no preconditions.
    let dir = if unsafe { libc::geteuid() } == 0 {
        let dir = fresh("cache-other-owner");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        dir
    } else {
        // Not root: the root directory belongs to someone else.
        "/".into()
    };
    refused(&dir, "not to this user");
}

#[test]
fn entries_are_private_and_stale_ones_are_removed() {
    let dir = fresh("cache-private").join("nested");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("llorch-guest-000000000000000000000000.cwasm"), b"an older build").unwrap();
    let dead_partial = dir.join(".llorch-guest-000000000000000000000000.1.1.partial");
    std::fs::write(&dead_partial, b"half").unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&dead_partial).unwrap().set_modified(two_hours_ago).unwrap();
    let worker = Worker::start(&["--model", tiny().to_str().unwrap(), "--cache-dir", dir.to_str().unwrap()]);
    worker.messages_after("compiled the snapshot");
    // The instrumented component and the snapshot of the model: the older build and the dead
    // partial file are gone.
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    for entry in &entries {
        let name = entry.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("llorch-guest-") && name.ends_with(".cwasm") && !name.contains("000000000000"));
        assert_eq!(std::fs::metadata(entry).unwrap().mode() & 0o777, 0o600);
    }
    assert!(entries.iter().any(|e| e.to_str().unwrap().contains("-model-")), "{entries:?}");
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    // A restart maps the snapshot instead of loading the model and compiling again.
    drop(worker);
    let worker = Worker::start(&["--model", tiny().to_str().unwrap(), "--cache-dir", dir.to_str().unwrap()]);
    let messages = worker.messages_after("model loaded");
    assert!(messages.iter().any(|m| m.starts_with("loaded the compiled snapshot from")), "{messages:?}");
}
