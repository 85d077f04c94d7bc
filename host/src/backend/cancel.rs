//! The active jobs: a cancel flag per job, set by `/cancel` or a vanished client and checked by
//! the slots between guest calls. Closing the registry at shutdown and registering a
//! job happen under one lock, so no job is accepted once the shutdown began.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The active (queued or running) jobs and their cancel flags.
#[derive(Default)]
pub struct CancelRegistry {
    state: Mutex<Registry>,
    /// Woken whenever the last active job leaves.
    emptied: Notify,
}

#[derive(Default)]
struct Registry {
    active: HashMap<String, Arc<AtomicBool>>,
    /// Set when the worker began shutting down: no job may register after it.
    closed: bool,
}

/// Why a job could not register.
#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// A job with this id is already queued or running.
    Duplicate,
    /// The worker is shutting down.
    Closed,
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

    /// Takes the job off the active list, so a new job may register its id: when the job sends
    /// its terminal event (its client may reuse the id at once), and at the latest when the
    /// guard is dropped. A later call leaves alone a new job registered under the same id.
    pub fn release(&self) {
        let mut state = self.registry.lock();
        if state.active.get(&self.job_id).is_some_and(|flag| Arc::ptr_eq(flag, &self.flag)) {
            state.active.remove(&self.job_id);
            if state.active.is_empty() {
                self.registry.emptied.notify_waiters();
            }
        }
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.release();
    }
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `job_id`, unless a job with that id is active or the registry is closed.
    pub fn register(self: &Arc<Self>, job_id: &str) -> Result<CancelGuard, RegisterError> {
        let mut state = self.lock();
        if state.closed {
            return Err(RegisterError::Closed);
        }
        if state.active.contains_key(job_id) {
            return Err(RegisterError::Duplicate);
        }
        let flag = Arc::new(AtomicBool::new(false));
        state.active.insert(job_id.to_string(), flag.clone());
        Ok(CancelGuard { registry: self.clone(), job_id: job_id.to_string(), flag })
    }

    /// Refuses every later registration. Returns whether this call closed it, and the number
    /// of jobs active at that moment: exactly the jobs that will still run.
    pub fn close(&self) -> (bool, usize) {
        let mut state = self.lock();
        (!std::mem::replace(&mut state.closed, true), state.active.len())
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Asks `job_id` to stop; false when no such job is active.
    pub fn cancel(&self, job_id: &str) -> bool {
        self.lock().active.get(job_id).map(|flag| flag.store(true, Ordering::Relaxed)).is_some()
    }

    /// Number of active jobs.
    pub fn len(&self) -> usize {
        self.lock().active.len()
    }

    /// True when no job is active.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once no job is active.
    pub async fn wait_until_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a job leaving in between still wakes it.
            emptied.as_mut().enable();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_job_registers_after_close_and_duplicates_are_refused() {
        let registry = Arc::new(CancelRegistry::default());
        let first = registry.register("a").unwrap();
        assert_eq!(registry.register("a").err(), Some(RegisterError::Duplicate));
        assert_eq!(registry.close(), (true, 1));
        assert_eq!(registry.close(), (false, 1));
        assert_eq!(registry.register("b").err(), Some(RegisterError::Closed));
        assert!(registry.cancel("a") && first.is_cancelled());
        drop(first);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_released_id_registers_again_and_the_old_guard_leaves_the_new_job_alone() {
        let registry = Arc::new(CancelRegistry::default());
        let first = registry.register("a").unwrap();
        first.release();
        assert!(registry.is_empty());
        let second = registry.register("a").expect("a released id registers again");
        first.release();
        drop(first);
        assert_eq!(registry.len(), 1, "the first guard removed the second job");
        assert!(registry.cancel("a") && second.is_cancelled());
        drop(second);
        assert!(registry.is_empty());
    }
}
