//! The component's command line: `wasmtime run --dir DIR::/models llorch_guest.wasm --model
//! /models/x.gguf --prompt "..."` streams the generated text to stdout; a component packed with
//! its model (`llorch-cpud pack`) needs no `--model`.

use crate::generation::{GenerateOptions, Generation};
use crate::model::{LoadOptions, Model};
use crate::sampler::SamplingParams;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::sync::Arc;

/// `--help` text.
pub const USAGE: &str = "\
Generate text with a GPT-2 GGUF model.

Usage: wasmtime run --dir <model dir>::/models llorch_guest.wasm --model /models/<file>.gguf --prompt <text> [options]

Options:
  --model <path>               GGUF file, as seen inside the component (required unless the
                               component was packed with its model)
  --quantize q8_0              quantize F32 and F16 weights to Q8_0 as they load (faster)
  --prompt <text>              text to continue (required)
  --max-tokens <n>             most tokens to generate [default: 64]
  --temperature <t>            0 is greedy; 0..=2 [default: 1.0]
  --top-k <k>                  keep the k most likely tokens; 0 is off [default: 0]
  --top-p <p>                  nucleus sampling; 1 is off [default: 1.0]
  --min-p <p>                  drop tokens below p × the best; 0 is off [default: 0.0]
  --repetition-penalty <r>     1 is off; 0..=2 [default: 1.0]
  --seed <n>                   seed of the random draws [default: random, printed on stderr]
  --stop <text>                end when this text appears (repeatable, up to 4)
  --help                       show this text
";

/// A parsed command line.
#[derive(Debug, PartialEq)]
pub struct CliArgs {
    pub model: Option<String>,
    pub load: LoadOptions,
    pub prompt: String,
    pub options: GenerateOptions,
    /// False when the seed was drawn at random.
    pub seed_given: bool,
}

/// Parses `args` (without the program name); `Ok(None)` means `--help`.
pub fn parse(args: &[String]) -> Result<Option<CliArgs>, String> {
    let mut model = None;
    let mut load = LoadOptions::default();
    let mut prompt = None;
    let mut options = GenerateOptions {
        max_tokens: 64,
        sampling: SamplingParams { temperature: 1.0, ..SamplingParams::greedy() },
        stop: Vec::new(),
    };
    let mut seed = None;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| format!("{flag} takes {what}, got {value:?}");
        let s = &mut options.sampling;
        match flag.as_str() {
            "--model" => model = Some(value.clone()),
            "--quantize" if value == "q8_0" => load.quantize_q8_0 = true,
            "--quantize" => return Err(format!("--quantize takes q8_0, got {value:?}")),
            "--prompt" => prompt = Some(value.clone()),
            "--max-tokens" => options.max_tokens = value.parse().map_err(|_| number("a whole number"))?,
            "--temperature" => s.temperature = value.parse().map_err(|_| number("a number"))?,
            "--top-k" => s.top_k = value.parse().map_err(|_| number("a whole number"))?,
            "--top-p" => s.top_p = value.parse().map_err(|_| number("a number"))?,
            "--min-p" => s.min_p = value.parse().map_err(|_| number("a number"))?,
            "--repetition-penalty" => s.repetition_penalty = value.parse().map_err(|_| number("a number"))?,
            "--seed" => seed = Some(value.parse().map_err(|_| number("a whole number"))?),
            "--stop" => options.stop.push(value.clone()),
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if options.stop.len() > 4 {
        return Err(format!("at most 4 --stop strings, got {}", options.stop.len()));
    }
    options.sampling.seed = seed.unwrap_or_else(random_seed);
    Ok(Some(CliArgs {
        model,
        load,
        prompt: prompt.ok_or("--prompt is required (see --help)")?,
        options,
        seed_given: seed.is_some(),
    }))
}

/// A seed from the system's random source (std seeds its hash keys from it).
fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Runs the command line with `packed`, the model packed into the component if any; false when
/// it failed (the message is on `err`).
pub fn main(args: &[String], packed: Option<Arc<Model>>, out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let args = match parse(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            let _ = out.write_all(USAGE.as_bytes());
            return true;
        }
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return false;
        }
    };
    if !args.seed_given && args.options.sampling.temperature > 0.0 {
        let _ = writeln!(err, "seed: {}", args.options.sampling.seed);
    }
    let model = match (&args.model, packed) {
        (Some(path), _) => Model::open(path, args.load).map(Arc::new),
        (None, Some(packed)) => Ok(packed),
        (None, None) => {
            let _ = writeln!(err, "error: --model is required: this component has no model packed in (see --help)");
            return false;
        }
    };
    let generation = model.and_then(|model| {
        let tokens = model.tokenizer.encode(&args.prompt);
        Generation::new(model, &tokens, &args.options)
    });
    let mut generation = match generation {
        Ok(generation) => generation,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return false;
        }
    };
    generation.run_to_end(|text| {
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    });
    let _ = writeln!(out);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_every_option() {
        let parsed = parse(&args(&[
            "--model",
            "/m.gguf",
            "--prompt",
            "Hi",
            "--max-tokens",
            "5",
            "--temperature",
            "0.5",
            "--top-k",
            "3",
            "--top-p",
            "0.9",
            "--min-p",
            "0.1",
            "--repetition-penalty",
            "1.2",
            "--seed",
            "9",
            "--stop",
            "\n",
            "--quantize",
            "q8_0",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(parsed.model.as_deref(), Some("/m.gguf"));
        assert!(parsed.load.quantize_q8_0);
        assert_eq!(parsed.prompt, "Hi");
        assert_eq!(parsed.options.max_tokens, 5);
        let s = parsed.options.sampling;
        assert_eq!(
            (s.temperature, s.top_k, s.top_p, s.min_p, s.repetition_penalty, s.seed),
            (0.5, 3, 0.9, 0.1, 1.2, 9)
        );
        assert_eq!(parsed.options.stop, ["\n"]);
        assert!(parsed.seed_given);
    }

    #[test]
    fn reports_bad_options() {
        for (bad, message) in [
            (&["--model", "m"][..], "--prompt is required"),
            (&["--model", "m", "--prompt", "x", "--max-tokens", "many"], "--max-tokens takes a whole number"),
            (&["--model", "m", "--bogus", "1"], "unknown option"),
            (&["--model"], "--model needs a value"),
            (&["--model", "m", "--quantize", "q4_0"], "--quantize takes q8_0"),
        ] {
            let err = parse(&args(bad)).unwrap_err();
            assert!(err.contains(message), "{err}");
        }
        assert_eq!(parse(&args(&["--help"])).unwrap(), None);
    }

    #[test]
    fn a_missing_model_file_is_a_message_and_a_failure() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result =
            main(&args(&["--model", "/no/such.gguf", "--prompt", "x", "--seed", "1"]), None, &mut out, &mut err);
        assert!(!result);
        assert!(String::from_utf8(err).unwrap().starts_with("error: cannot read model: /no/such.gguf"));
    }

    #[test]
    fn without_a_packed_model_the_model_is_required() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert!(!main(&args(&["--prompt", "x", "--seed", "1"]), None, &mut out, &mut err));
        assert!(String::from_utf8(err).unwrap().starts_with("error: --model is required"));
    }
}
