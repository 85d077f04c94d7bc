//! The requests of `/execute`, `/tokenize` and `/detokenize` and their rules; every broken rule
//! is reported, not just the first.

use crate::error::{ApiError, FieldError};
use serde::Deserialize;
use serde_json::Number;
use std::time::Duration;

/// Largest request body by default, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Time a client has by default to send a request's body once its headers arrived.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Wall-clock limit of one job by default.
pub const DEFAULT_INFERENCE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 32768;
/// Most tokens one job may generate.
pub const MAX_TOKENS: u64 = 2048;
/// Longest job id, in bytes.
pub const MAX_JOB_ID_BYTES: usize = 256;
/// Most stop strings.
pub const MAX_STOPS: usize = 4;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 100;
/// Most token ids `/detokenize` takes.
pub const MAX_DETOKENIZE_TOKENS: usize = 32768;
/// Most out-of-range ids listed one by one; the rest are counted in one more entry.
const MAX_LISTED_ERRORS: usize = 16;

/// The `/execute` body. Integers arrive as JSON numbers so that an out-of-range value is a
/// broken rule (400) while a value of the wrong type is a schema error (422).
#[derive(Debug, Deserialize)]
pub struct ExecuteRequest {
    pub job_id: String,
    pub prompt: String,
    pub max_tokens: Number,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<Number>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub stop: Option<Vec<String>>,
    pub seed: Option<Number>,
}

/// An `/execute` request after every rule passed.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    pub job_id: String,
    pub prompt: String,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
}

fn broken(field: &str, constraint: &str, message: String, value: Option<String>) -> FieldError {
    FieldError { field: field.into(), constraint: constraint.into(), message, value }
}

/// A whole number in `min..=max`, or the rule it breaks (then `min` stands in for it).
fn integer(errors: &mut Vec<FieldError>, field: &str, n: &Number, min: u64, max: u64) -> u64 {
    let message = match (n.as_u64(), n.as_f64()) {
        (Some(v), _) if (min..=max).contains(&v) => return v,
        (Some(v), _) if v < min => format!("{field} must be at least {min} (got {v})"),
        (Some(v), _) => format!("{field} must be at most {max} (got {v})"),
        (None, Some(f)) if f.fract() != 0.0 => format!("{field} must be a whole number (got {n})"),
        (None, Some(f)) if f < 0.0 => format!("{field} must be at least {min} (got {n})"),
        _ => format!("{field} must be at most {max} (got {n})"),
    };
    errors.push(broken(field, &format!("range({min}..={max})"), message, Some(n.to_string())));
    min
}

/// A number in `min..=max` (default when absent), or the rule it breaks.
fn number(errors: &mut Vec<FieldError>, field: &str, v: Option<f64>, default: f64, min: f64, max: f64) -> f32 {
    let Some(v) = v else { return default as f32 };
    let constraint = format!("range({min:.1}..={max:.1})");
    if v < min {
        errors.push(broken(
            field,
            &constraint,
            format!("{field} must be at least {min:.1} (got {v})"),
            Some(v.to_string()),
        ));
    } else if v > max {
        errors.push(broken(
            field,
            &constraint,
            format!("{field} must be at most {max:.1} (got {v})"),
            Some(v.to_string()),
        ));
    }
    v as f32
}

impl ExecuteRequest {
    /// Checks every rule that does not need the tokenizer; `vocab_size` bounds `top_k`.
    pub fn validate(self, vocab_size: u32) -> Result<ValidRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.job_id.is_empty() {
            errors.push(broken("job_id", "non_empty", "job_id must not be empty".into(), None));
        } else if self.job_id.len() > MAX_JOB_ID_BYTES {
            errors.push(broken(
                "job_id",
                &format!("max_length({MAX_JOB_ID_BYTES})"),
                format!("job_id must be at most {MAX_JOB_ID_BYTES} bytes (got {})", self.job_id.len()),
                None,
            ));
        }
        let chars = self.prompt.chars().count();
        if chars == 0 {
            errors.push(broken("prompt", "length(1..=32768)", "prompt must not be empty".into(), None));
        } else if chars > MAX_PROMPT_CHARS {
            errors.push(broken(
                "prompt",
                "length(1..=32768)",
                format!("prompt must be at most {MAX_PROMPT_CHARS} characters (got {chars})"),
                None,
            ));
        }
        let max_tokens = integer(&mut errors, "max_tokens", &self.max_tokens, 1, MAX_TOKENS) as u32;
        let temperature = number(&mut errors, "temperature", self.temperature, 1.0, 0.0, 2.0);
        let top_p = number(&mut errors, "top_p", self.top_p, 1.0, 0.0, 1.0);
        let top_k = match &self.top_k {
            Some(n) => integer(&mut errors, "top_k", n, 0, vocab_size as u64) as u32,
            None => 0,
        };
        let min_p = number(&mut errors, "min_p", self.min_p, 0.0, 0.0, 1.0);
        let repetition_penalty = number(&mut errors, "repetition_penalty", self.repetition_penalty, 1.0, 0.0, 2.0);
        let stop = self.stop.unwrap_or_default();
        if stop.len() > MAX_STOPS {
            errors.push(broken(
                "stop",
                &format!("max_items({MAX_STOPS})"),
                format!("stop must have at most {MAX_STOPS} entries (got {})", stop.len()),
                None,
            ));
        } else {
            for (i, s) in stop.iter().enumerate() {
                if s.is_empty() || s.len() > MAX_STOP_BYTES {
                    errors.push(broken(
                        &format!("stop[{i}]"),
                        &format!("length(1..={MAX_STOP_BYTES})"),
                        format!("each stop string must be 1 to {MAX_STOP_BYTES} bytes (got {})", s.len()),
                        None,
                    ));
                }
            }
        }
        let seed = self.seed.as_ref().map(|n| integer(&mut errors, "seed", n, 0, u64::MAX));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ValidRequest {
            job_id: self.job_id,
            prompt: self.prompt,
            max_tokens,
            temperature,
            top_p,
            top_k,
            min_p,
            repetition_penalty,
            stop,
            seed,
        })
    }
}

/// 400 when the prompt's tokens plus `max_tokens` exceed the context.
pub fn check_context(request: &ValidRequest, prompt_tokens: usize, context: u32) -> Result<(), ApiError> {
    let needed = prompt_tokens + request.max_tokens as usize;
    if needed <= context as usize {
        return Ok(());
    }
    Err(ApiError::Invalid(vec![FieldError {
        field: "max_tokens".into(),
        constraint: format!("prompt_tokens + max_tokens <= context_length({context})"),
        message: format!(
            "the prompt has {prompt_tokens} tokens; with max_tokens {} that is {needed}, over the model's context length {context}",
            request.max_tokens
        ),
        value: Some(request.max_tokens.to_string()),
    }]))
}

/// The `/tokenize` body.
#[derive(Debug, Deserialize)]
pub struct TokenizeRequest {
    pub text: String,
}

impl TokenizeRequest {
    /// The text, if it is no longer than a prompt may be.
    pub fn validate(self) -> Result<String, ApiError> {
        let chars = self.text.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(ApiError::Invalid(vec![FieldError {
                field: "text".into(),
                constraint: format!("length(0..={MAX_PROMPT_CHARS})"),
                message: format!("text must be at most {MAX_PROMPT_CHARS} characters (got {chars})"),
                value: None,
            }]));
        }
        Ok(self.text)
    }
}

/// The `/detokenize` body.
#[derive(Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

impl DetokenizeRequest {
    /// The token ids, if there are not too many and each is in the vocabulary of `vocab`.
    pub fn validate(self, vocab: u32) -> Result<Vec<u32>, ApiError> {
        let out_of_range: Vec<(usize, u32)> =
            self.tokens.iter().copied().enumerate().filter(|&(_, id)| id >= vocab).collect();
        let mut errors: Vec<FieldError> = out_of_range
            .iter()
            .take(MAX_LISTED_ERRORS)
            .map(|&(i, id)| FieldError {
                field: format!("tokens[{i}]"),
                constraint: format!("range(0..{vocab})"),
                message: format!("token id {id} is outside the vocabulary of {vocab}"),
                value: Some(id.to_string()),
            })
            .collect();
        if out_of_range.len() > MAX_LISTED_ERRORS {
            let more = out_of_range.len() - MAX_LISTED_ERRORS;
            errors.push(FieldError {
                field: "tokens".into(),
                constraint: format!("range(0..{vocab})"),
                message: format!("{more} more token ids are outside the vocabulary of {vocab}"),
                value: None,
            });
        }
        if self.tokens.len() > MAX_DETOKENIZE_TOKENS {
            errors.push(FieldError {
                field: "tokens".into(),
                constraint: format!("max_items({MAX_DETOKENIZE_TOKENS})"),
                message: format!("at most {MAX_DETOKENIZE_TOKENS} tokens (got {})", self.tokens.len()),
                value: None,
            });
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        Ok(self.tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: serde_json::Value) -> ExecuteRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn accepts_defaults() {
        let valid = request(json!({"job_id": "j", "prompt": "Hi", "max_tokens": 5})).validate(50257).unwrap();
        assert_eq!((valid.max_tokens, valid.temperature, valid.top_p, valid.top_k), (5, 1.0, 1.0, 0));
        assert_eq!((valid.min_p, valid.repetition_penalty, valid.seed), (0.0, 1.0, None));
    }

    #[test]
    fn lists_every_broken_rule() {
        let errors = request(json!({
            "job_id": "", "prompt": "", "max_tokens": 0, "temperature": 2.5, "top_p": -0.1,
            "top_k": 60000, "min_p": 1.5, "repetition_penalty": 3, "stop": ["", "a"], "seed": -1
        }))
        .validate(50257)
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "job_id",
                "prompt",
                "max_tokens",
                "temperature",
                "top_p",
                "top_k",
                "min_p",
                "repetition_penalty",
                "stop[0]",
                "seed"
            ]
        );
        let temperature = &errors[3];
        assert_eq!(temperature.constraint, "range(0.0..=2.0)");
        assert_eq!(temperature.message, "temperature must be at most 2.0 (got 2.5)");
        assert_eq!(temperature.value.as_deref(), Some("2.5"));
    }

    #[test]
    fn bounds_are_inclusive() {
        let valid = request(json!({
            "job_id": "x".repeat(256), "prompt": "p".repeat(32768), "max_tokens": 2048, "temperature": 2.0,
            "top_p": 0.0, "top_k": 50257, "min_p": 1.0, "repetition_penalty": 0.0, "seed": u64::MAX,
            "stop": ["s".repeat(100), "b", "c", "d"]
        }))
        .validate(50257)
        .unwrap();
        assert_eq!(valid.seed, Some(u64::MAX));
        let errors = request(json!({"job_id": "x".repeat(257), "prompt": "p".repeat(32769), "max_tokens": 2049,
            "stop": ["a", "b", "c", "d", "e"]}))
        .validate(50257)
        .unwrap_err();
        assert_eq!(errors.len(), 4);
    }
}
