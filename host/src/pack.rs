//! `llorch-cpud pack`: the component with a model loaded into it, written as one file.

use crate::backend::component_cache::ComponentCache;
use crate::backend::guest::GuestLimits;
use crate::backend::memory_limit::default_memory_cap;
use crate::backend::model_file::ModelFile;
use crate::backend::runtime::Runtime;
use crate::backend::snapshot;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// Loads `model` into the guest as the worker does (the same checks, the same errors), snapshots
/// it (with F32 and F16 weights quantized to Q8_0 when `quantize_q8_0`) and writes the snapshot
/// to `output`. `cache` keeps the instrumented component compiled.
pub fn pack(model: &Path, output: &Path, quantize_q8_0: bool, cache: Option<&Path>) -> Result<()> {
    let cache = cache.map(ComponentCache::open).transpose()?;
    let len = std::fs::metadata(model).with_context(|| format!("cannot read model file {}", model.display()))?.len();
    let limits = GuestLimits { memory_bytes: default_memory_cap(len), load_timeout: Duration::from_secs(300) };
    let file = ModelFile::open(model, limits.memory_bytes)?.quantized(quantize_q8_0);
    let runtime = Runtime::new(cache)?;
    let component =
        snapshot::make(&runtime, &file, &limits).map_err(|e| anyhow::anyhow!("cannot load the model: {e}"))?;
    std::fs::write(output, &component).with_context(|| format!("cannot write {}", output.display()))?;
    tracing::info!("packed {} into {} ({} bytes)", model.display(), output.display(), component.len());
    Ok(())
}
