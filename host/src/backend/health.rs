//! Whether the worker can take work, as `/health` tells it: which slots are up, and why the
//! others are not (loading, rebuilding a failed guest, failed for good, thread gone).

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// One slot's health, written by its thread.
pub struct SlotHealth {
    /// None when up; otherwise why not.
    unavailable: RwLock<Option<String>>,
    /// Cleared when the slot's thread ends, however it ends.
    thread_alive: AtomicBool,
}

impl SlotHealth {
    fn new(unavailable: Option<String>) -> Self {
        SlotHealth { unavailable: RwLock::new(unavailable), thread_alive: AtomicBool::new(true) }
    }

    /// Ok when the slot can take work, else the reason it cannot.
    pub fn is_up(&self) -> Result<(), String> {
        let unavailable = self.unavailable.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !self.thread_alive.load(Ordering::SeqCst) {
            return Err(unavailable.unwrap_or_else(|| "the inference thread has stopped".into()));
        }
        unavailable.map_or(Ok(()), Err)
    }

    /// Marks the slot unavailable for `reason`.
    pub fn set_unavailable(&self, reason: String) {
        *self.unavailable.write().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Marks the slot ready.
    pub fn set_ready(&self) {
        *self.unavailable.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Marks a slot's thread dead when dropped: held by the thread, so a panic marks it too.
pub struct ThreadAlive<'a>(pub &'a SlotHealth);

impl Drop for ThreadAlive<'_> {
    fn drop(&mut self) {
        self.0.thread_alive.store(false, Ordering::SeqCst);
    }
}

/// The health of every slot.
pub struct Health {
    slots: Vec<SlotHealth>,
}

impl Health {
    /// `slots` slots, the first ready (its model is loaded before the worker reports ready) and
    /// the others loading.
    pub fn new(slots: usize) -> Self {
        let loading = |i| (i > 0).then(|| "loading the model".to_string());
        Health { slots: (0..slots).map(|i| SlotHealth::new(loading(i))).collect() }
    }

    /// The health of slot `index`.
    pub fn slot(&self, index: usize) -> &SlotHealth {
        &self.slots[index]
    }

    /// Ok when at least one slot takes work, else why none does.
    pub fn is_healthy(&self) -> Result<(), String> {
        let mut reasons = self.slots.iter().map(SlotHealth::is_up);
        match reasons.find_map(Result::ok) {
            Some(()) => Ok(()),
            None => Err(self.slots[0].is_up().err().unwrap_or_default()),
        }
    }

    /// Slots that take work.
    pub fn slots_up(&self) -> usize {
        self.slots.iter().filter(|s| s.is_up().is_ok()).count()
    }

    /// Slots in all.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_thread_that_panics_leaves_its_slot_down() {
        let health = Arc::new(Health::new(1));
        assert_eq!(health.is_healthy(), Ok(()));
        let shared = health.clone();
        let thread = std::thread::spawn(move || {
            let _alive = ThreadAlive(shared.slot(0));
            panic!("the inference thread dies");
        });
        assert!(thread.join().is_err());
        assert_eq!(health.is_healthy(), Err("the inference thread has stopped".to_string()));
        // Nothing the thread wrote before can make it look ready again.
        health.slot(0).set_ready();
        assert!(health.is_healthy().is_err());
    }

    #[test]
    fn the_worker_is_healthy_while_any_slot_is_up() {
        let health = Health::new(3);
        assert_eq!((health.slots_up(), health.slots()), (1, 3));
        health.slot(0).set_unavailable("rebuilding the guest".into());
        assert_eq!(health.is_healthy(), Err("rebuilding the guest".to_string()));
        health.slot(2).set_ready();
        assert_eq!(health.is_healthy(), Ok(()));
        assert_eq!(health.slots_up(), 1);
    }
}
