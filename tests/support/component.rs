//! The real guest component, compiled by the worker's own runtime and called in-process.

use llorch_cpud::backend::component_cache::ComponentCache;
use llorch_cpud::backend::guest::{Guest, GuestLimits};
use llorch_cpud::backend::model_file::ModelFile;
use llorch_cpud::backend::runtime::Runtime;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The runtime shared by every test of this process (one compile, cached under target/).
pub fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let cache = ComponentCache::open(&super::scratch("component-cache")).expect("the cache opens");
            Runtime::new(Some(cache)).expect("the runtime starts")
        })
        .clone()
}

/// A guest with `model` loaded, under a 4 GiB memory cap, and the guest memory size as the
/// host measures it.
pub fn load_measured(model: &Path) -> (Guest, Arc<AtomicU64>) {
    let limits = GuestLimits { memory_bytes: 4 << 30, load_timeout: Duration::from_secs(300) };
    let file = ModelFile::open(model, limits.memory_bytes).expect("the model file opens");
    let memory = Arc::new(AtomicU64::new(0));
    let guest = Guest::load(&runtime(), &file, &limits, memory.clone())
        .unwrap_or_else(|e| panic!("loading {}: {e}", model.display()));
    (guest, memory)
}

/// A guest with `model` loaded, under a 4 GiB memory cap.
pub fn load(model: &Path) -> Guest {
    load_measured(model).0
}

/// A deadline far enough for any single test call.
pub fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(300)
}

/// Block-0 activations and logits of the bundled model for "Hello." ([15496, 13]), computed
/// once per process by the real component.
pub fn hello_checkpoints() -> &'static [llorch_cpud::backend::checking::Tensor] {
    static CHECKPOINTS: OnceLock<Vec<llorch_cpud::backend::checking::Tensor>> = OnceLock::new();
    CHECKPOINTS.get_or_init(|| load(&super::kjv()).checkpoints(&[15496, 13], deadline()).expect("checkpoints"))
}

/// Compares the component's activation `name` for "Hello." with transformers' within
/// `tolerance`.
pub fn compare_hello_checkpoint(name: &str, tolerance: f32) {
    let reference = super::reference::tensors("kjv-fortunes-18m", "checkpoints_hello.safetensors");
    let (_, want_shape, want) =
        reference.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("reference has no {name}"));
    let got = hello_checkpoints().iter().find(|t| t.name == name).unwrap_or_else(|| panic!("component has no {name}"));
    let got_shape: Vec<usize> = got.shape.iter().map(|&d| d as usize).collect();
    super::assert_close(name, &got_shape, &got.data, want_shape, want, tolerance);
}

/// Runs a generation in `guest`, alone in a batch, to its end; returns every token and the finish.
pub fn generate_all(
    guest: &mut Guest,
    prompt: &[u32],
    options: &llorch_cpud::backend::wit::GenerateOptions,
) -> (Vec<llorch_cpud::backend::wit::Token>, llorch_cpud::backend::wit::Finish) {
    use llorch_cpud::backend::wit::Step;
    let batch = guest.batch(64, deadline()).expect("a batch");
    let id = guest.add(batch, prompt, options, deadline()).expect("generation starts");
    let mut tokens = Vec::new();
    let finish = 'run: loop {
        for step in guest.step(batch, deadline()).expect("a step") {
            assert_eq!(step.id, id);
            match step.step {
                Step::Prefill(_) => {}
                Step::Token(token) => tokens.push(token),
                Step::Finished(finish) => break 'run finish,
            }
        }
    };
    guest.drop_batch(batch, deadline()).expect("batch freed");
    (tokens, finish)
}
