//! `/v1/completions` and `/v1/models` in the shape of the OpenAI API, on the same engine,
//! validation and cancel-on-disconnect as `/execute`. GPT-2 has no chat template, so there is no
//! `/v1/chat/completions`.

use super::AppState;
use super::body::json_body;
use super::execute::{keep_alive, shutting_down, start_job};
use crate::backend::job::{EndReason, Failure, JobEvent};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use llorch_api::error::{ApiError, FieldError};
use llorch_api::request::ExecuteRequest;
use serde::Deserialize;
use serde_json::{Number, Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// Tokens generated when a request does not say, as in the OpenAI API.
const DEFAULT_MAX_TOKENS: u64 = 16;

/// The parameters this worker reads; others an OpenAI client may send are ignored.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: String,
    pub max_tokens: Option<Number>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Option<Stop>,
    pub seed: Option<Number>,
    pub n: Option<Number>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// What every chunk and answer of one completion shares.
struct Completion {
    id: String,
    created: u64,
    model: String,
}

impl Completion {
    fn object(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }
}

/// OpenAI's finish reason for an `end` event's stop reason.
fn finish_reason(reason: EndReason) -> &'static str {
    if reason == EndReason::MaxTokens { "length" } else { "stop" }
}

fn usage(prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// An error in OpenAI's shape: `{"error":{"message","type","param","code"}}`.
fn openai_error(status: StatusCode, message: String, kind: &str, param: Option<&str>, code: &str) -> Response {
    let body = json!({ "error": { "message": message, "type": kind, "param": param, "code": code } });
    (status, Json(body)).into_response()
}

/// The worker's errors in OpenAI's shape; request faults are 400 `invalid_request_error`.
fn from_api_error(error: ApiError) -> Response {
    let invalid = |message: String, param: Option<&str>, code: &str| {
        openai_error(StatusCode::BAD_REQUEST, message, "invalid_request_error", param, code)
    };
    match error {
        ApiError::MalformedJson(message) => invalid(message, None, "invalid_json"),
        ApiError::Unprocessable(message) => invalid(message, None, "invalid_type"),
        ApiError::Invalid(errors) => {
            let message = errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ");
            let first = errors.first();
            let context = first.is_some_and(|e| e.constraint.starts_with("prompt_tokens + max_tokens"));
            let code = if context { "context_length_exceeded" } else { "invalid_value" };
            invalid(message, first.map(|e| e.field.as_str()), code)
        }
        other => {
            // The rest keep their status and headers (Retry-After on 503, Connection: close on
            // 408); only the body takes OpenAI's shape.
            let status = StatusCode::from_u16(other.status()).expect("every status is valid");
            let (code, message) = other.summary().expect("every other fault has a summary");
            let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
            let mut response = openai_error(status, message, kind, None, &code.to_ascii_lowercase());
            other.add_headers(&mut response);
            response
        }
    }
}

/// A generation error event in OpenAI's shape.
fn from_failure(failure: Failure, message: &str) -> Value {
    let kind = if failure == Failure::InvalidRequest { "invalid_request_error" } else { "server_error" };
    json!({ "error": { "message": message, "type": kind, "param": null, "code": failure.code().to_ascii_lowercase() } })
}

/// This request as an `/execute` request, so the same rules apply.
fn to_execute(request: CompletionRequest, id: &str) -> Result<ExecuteRequest, ApiError> {
    if let Some(n) = &request.n
        && n.as_u64() != Some(1)
    {
        return Err(ApiError::Invalid(vec![FieldError {
            field: "n".into(),
            constraint: "equal(1)".into(),
            message: format!("n must be 1 (got {n}): this worker generates one completion per request"),
            value: Some(n.to_string()),
        }]));
    }
    Ok(ExecuteRequest {
        job_id: id.to_string(),
        prompt: request.prompt,
        max_tokens: request.max_tokens.unwrap_or_else(|| DEFAULT_MAX_TOKENS.into()),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: None,
        min_p: None,
        repetition_penalty: None,
        stop: request.stop.map(|stop| match stop {
            Stop::One(s) => vec![s],
            Stop::Many(list) => list,
        }),
        seed: request.seed,
    })
}

pub async fn completions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let arrived = Instant::now();
    match start(&state, &headers, body, arrived).await {
        Ok((completion, receiver, stream, include_usage)) if stream => {
            stream_completion(&state, completion, receiver, include_usage)
        }
        Ok((completion, receiver, _, _)) => collect_completion(completion, receiver).await,
        Err(error) => from_api_error(error),
    }
}

/// Validates the request and starts its job.
async fn start(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    arrived: Instant,
) -> Result<(Completion, UnboundedReceiver<JobEvent>, bool, bool), ApiError> {
    if state.is_shutting_down() {
        return Err(shutting_down());
    }
    let request: CompletionRequest = json_body(headers, body, &state.limits).await?;
    let stream = request.stream;
    let include_usage = request.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let completion = Completion {
        id: format!("cmpl-{:016x}", getrandom::u64().unwrap_or_default()),
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        model: request.model.clone().unwrap_or_else(|| state.backend.info.name.clone()),
    };
    let request = to_execute(request, &completion.id)?;
    let request = request.validate(state.backend.info.vocab_size).map_err(ApiError::Invalid)?;
    let receiver = start_job(state, request, arrived).await?;
    Ok((completion, receiver, stream, include_usage))
}

/// Waits for the whole completion. A client that leaves drops this future and the receiver
/// with it, which cancels the job.
async fn collect_completion(completion: Completion, mut receiver: UnboundedReceiver<JobEvent>) -> Response {
    let (mut text, mut prompt_tokens) = (String::new(), 0);
    while let Some(event) = receiver.recv().await {
        match event {
            JobEvent::Started { prompt_tokens: n, .. } => prompt_tokens = n,
            JobEvent::Text(t) => text.push_str(&t),
            JobEvent::End { tokens_out, reason, .. } => {
                let choice = json!([{ "text": text, "index": 0, "logprobs": null,
                    "finish_reason": finish_reason(reason) }]);
                let mut answer = completion.object(choice);
                answer["usage"] = usage(prompt_tokens, tokens_out);
                return Json(answer).into_response();
            }
            JobEvent::Failed { failure, message } => {
                let status = if failure == Failure::InvalidRequest {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                return (status, Json(from_failure(failure, &message))).into_response();
            }
        }
    }
    let message = "the job ended without a result".to_string();
    openai_error(StatusCode::INTERNAL_SERVER_ERROR, message, "server_error", None, "inference_failed")
}

/// Streams chunks as tokens are produced, then `data: [DONE]`. A task turns events into
/// chunks; when the client leaves, its sends fail, the task ends and drops the receiver, which
/// cancels the job.
fn stream_completion(
    state: &AppState,
    completion: Completion,
    mut receiver: UnboundedReceiver<JobEvent>,
    include_usage: bool,
) -> Response {
    let (chunks, out) = tokio::sync::mpsc::unbounded_channel::<Result<SseEvent, Infallible>>();
    tokio::spawn(async move {
        let send = |value: Value| chunks.send(Ok(SseEvent::default().data(value.to_string()))).is_ok();
        let chunk = |text: &str, finish: Value| {
            let mut chunk = completion.object(json!([{ "text": text, "index": 0, "logprobs": null,
                "finish_reason": finish }]));
            if include_usage {
                chunk["usage"] = Value::Null;
            }
            chunk
        };
        let mut prompt_tokens = 0;
        loop {
            // A client that leaves during a quiet prefill is noticed at once, not at the next
            // token.
            let event = tokio::select! {
                event = receiver.recv() => event,
                () = chunks.closed() => return,
            };
            let Some(event) = event else { break };
            let sent = match event {
                JobEvent::Started { prompt_tokens: n, .. } => {
                    prompt_tokens = n;
                    true
                }
                JobEvent::Text(t) => send(chunk(&t, Value::Null)),
                JobEvent::End { tokens_out, reason, .. } => {
                    send(chunk("", json!(finish_reason(reason))))
                        && (!include_usage || {
                            let mut last = completion.object(json!([]));
                            last["usage"] = usage(prompt_tokens, tokens_out);
                            send(last)
                        })
                }
                JobEvent::Failed { failure, message } => send(from_failure(failure, &message)),
            };
            if !sent {
                return;
            }
        }
        let _ = chunks.send(Ok(SseEvent::default().data("[DONE]")));
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(out);
    Sse::new(stream).keep_alive(keep_alive(state)).into_response()
}

/// `GET /v1/models`: the one model this worker serves.
pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    let model = json!({ "id": state.backend.info.name, "object": "model", "created": 0, "owned_by": "llorch-cpud" });
    Json(json!({ "object": "list", "data": [model] })).into_response()
}
