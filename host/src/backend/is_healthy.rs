//! Whether the guest can take work: ready, or being rebuilt after a failure.

use std::sync::RwLock;

/// The guest's health as `/health` reports it.
#[derive(Default)]
pub struct Health {
    /// None when ready; otherwise why not.
    unavailable: RwLock<Option<String>>,
}

impl Health {
    /// Ok when the guest can take work, else the reason it cannot.
    pub fn is_healthy(&self) -> Result<(), String> {
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
