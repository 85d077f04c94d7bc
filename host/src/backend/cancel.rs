//! Cancellation: a flag per active job, set by `/cancel` or a vanished client and checked by
//! the inference thread between guest calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The active (queued or running) jobs and their cancel flags.
#[derive(Default)]
pub struct CancelRegistry {
    active: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

/// Keeps a job registered until dropped.
pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    job_id: String,
    pub flag: Arc<AtomicBool>,
}

impl CancelGuard {
    /// True once the job was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry.active.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.job_id);
    }
}

impl CancelRegistry {
    /// Registers `job_id`; None when a job with that id is already active.
    pub fn register(self: &Arc<Self>, job_id: &str) -> Option<CancelGuard> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.contains_key(job_id) {
            return None;
        }
        let flag = Arc::new(AtomicBool::new(false));
        active.insert(job_id.to_string(), flag.clone());
        Some(CancelGuard { registry: self.clone(), job_id: job_id.to_string(), flag })
    }

    /// Asks `job_id` to stop; false when no such job is active.
    pub fn cancel(&self, job_id: &str) -> bool {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active.get(job_id).map(|flag| flag.store(true, Ordering::Relaxed)).is_some()
    }

    /// Number of active jobs.
    pub fn len(&self) -> usize {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no job is active.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
