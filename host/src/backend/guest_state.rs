//! The host-side state of one guest's Store: its WASI context, resource table, memory cap and
//! the time budget of the call it is running.

use super::memory_limit::MemoryLimiter;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The host-side state of one guest.
pub struct GuestState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub budget: CallBudget,
}

/// The CPU time one guest call may take: a call past it has run away.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallBudget {
    /// The calling thread's CPU time when the call began.
    pub started: Duration,
    /// How much of it the call may use from `started` on.
    pub limit: Duration,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
