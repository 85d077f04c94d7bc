//! Whether the worker can take work, as `/health` tells it: ready, rebuilding a failed guest,
//! failed for good, or with its inference thread gone.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The guest's health, written by the inference thread.
pub struct Health {
    /// None when ready; otherwise why not.
    unavailable: RwLock<Option<String>>,
    /// Cleared when the inference thread ends, however it ends.
    thread_alive: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health { unavailable: RwLock::new(None), thread_alive: AtomicBool::new(true) }
    }
}

/// Marks the inference thread dead when dropped: held by the thread, so a panic marks it too.
pub struct ThreadAlive<'a>(pub &'a Health);

impl Drop for ThreadAlive<'_> {
    fn drop(&mut self) {
        self.0.thread_alive.store(false, Ordering::SeqCst);
    }
}

impl Health {
    /// Ok when the guest can take work, else the reason it cannot.
    pub fn is_healthy(&self) -> Result<(), String> {
        if !self.thread_alive.load(Ordering::SeqCst) {
            let reason = self.unavailable.read().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(reason.unwrap_or_else(|| "the inference thread has stopped".into()));
        }
        match &*self.unavailable.read().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    /// Marks the guest unavailable for `reason`.
    pub fn set_unavailable(&self, reason: String) {
        *self.unavailable.write().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Marks the guest ready.
    pub fn set_ready(&self) {
        *self.unavailable.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_thread_that_panics_leaves_the_worker_unhealthy() {
        let health = Arc::new(Health::default());
        assert_eq!(health.is_healthy(), Ok(()));
        let shared = health.clone();
        let thread = std::thread::spawn(move || {
            let _alive = ThreadAlive(&shared);
            panic!("the inference thread dies");
        });
        assert!(thread.join().is_err());
        assert_eq!(health.is_healthy(), Err("the inference thread has stopped".to_string()));
        // Nothing the thread wrote before can make it look ready again.
        health.set_ready();
        assert!(health.is_healthy().is_err());
    }
}
