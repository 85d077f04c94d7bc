//! `wasi:http/incoming-handler`: the worker HTTP API served by the component itself under
//! `wasmtime serve` (`/health`, `/execute` as SSE, `/tokenize`, `/detokenize`), with the host's
//! rules and bodies from `llorch-api`. Each request runs in a fresh instance, so there is no
//! cancel, no job-id registry and no ready callback.

use crate::component::preloaded_model;
use crate::generation::{GenerateOptions, Generation, Step, StopReason};
use crate::model::Model;
use crate::sampler::SamplingParams;
use llorch_api::error::{ApiError, check_json_content_type, parse_json};
use llorch_api::events::{Event, rfc3339};
use llorch_api::outcome::{EndReason, Failure};
use llorch_api::request::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_INFERENCE_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DetokenizeRequest, ExecuteRequest,
    TokenizeRequest, check_context,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{OutputStream, StreamError};

/// Interval of SSE keep-alive comments on a quiet stream, as the host's default.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Most bytes one `blocking-write-and-flush` takes.
const WRITE_CHUNK: usize = 4096;

struct Server;

impl wasip2::exports::http::incoming_handler::Guest for Server {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_string();
        let method = request.method();
        let answer = match (path.as_str(), method) {
            ("/health", Method::Get) => Ok(health()),
            ("/execute", Method::Post) => match execute(&request) {
                Ok(stream) => return stream.send(out),
                Err(e) => Err(e),
            },
            ("/tokenize", Method::Post) => tokenize(&request),
            ("/detokenize", Method::Post) => detokenize(&request),
            ("/health" | "/execute" | "/tokenize" | "/detokenize", method) => {
                Err(ApiError::MethodNotAllowed(format!("{path} does not take {}", method_name(&method))))
            }
            _ => Err(ApiError::NotFound(format!("no route {path}"))),
        };
        match answer {
            Ok((status, body)) => respond(out, status, &[], &body),
            Err(e) => respond(out, e.status(), &e.headers(), &e.body()),
        }
    }
}

wasip2::http::proxy::export!(Server);

/// The packed model, or 503 when this component has none.
fn model() -> Result<Arc<Model>, ApiError> {
    preloaded_model().ok_or_else(|| ApiError::Unavailable {
        message: "no model is packed into this component (llorch-cpud pack --model FILE.gguf --output FILE.wasm)"
            .into(),
        retry_after_sec: None,
    })
}

/// `/health`: healthy when a model is packed in.
fn health() -> (u16, Value) {
    let mut body = json!({
        "status": "healthy",
        "model_loaded": true,
        "vram_bytes": 0,
        "memory_type": "cpu",
        "memory_bytes": core::arch::wasm32::memory_size::<0>() as u64 * 65536,
    });
    match model() {
        Ok(model) => {
            body["model"] = json!(model.info().name);
            (200, body)
        }
        Err(e) => {
            body["status"] = json!("unhealthy");
            body["model_loaded"] = json!(false);
            body["reason"] = json!(e.summary().map(|(_, message)| message));
            (503, body)
        }
    }
}

fn tokenize(request: &IncomingRequest) -> Result<(u16, Value), ApiError> {
    let model = model()?;
    let text = json_body::<TokenizeRequest>(request)?.validate()?;
    Ok((200, json!({ "tokens": model.tokenizer.encode(&text) })))
}

fn detokenize(request: &IncomingRequest) -> Result<(u16, Value), ApiError> {
    let model = model()?;
    let tokens = json_body::<DetokenizeRequest>(request)?.validate(model.info().vocab_size)?;
    let text = model.tokenizer.decode(&tokens).map_err(|e| ApiError::refused(e.to_string()))?;
    Ok((200, json!({ "text": text })))
}

/// A validated `/execute` request, ready to stream.
struct Execution {
    job_id: String,
    model_name: String,
    generation: Generation,
    seed: u64,
    prompt_tokens: u32,
}

fn execute(request: &IncomingRequest) -> Result<Execution, ApiError> {
    let model = model()?;
    let request = json_body::<ExecuteRequest>(request)?.validate(model.info().vocab_size).map_err(ApiError::Invalid)?;
    let prompt = model.tokenizer.encode(&request.prompt);
    check_context(&request, prompt.len(), model.info().context_length)?;
    let seed = request.seed.unwrap_or_else(wasip2::random::random::get_random_u64);
    let options = GenerateOptions {
        max_tokens: request.max_tokens,
        sampling: SamplingParams {
            temperature: request.temperature,
            top_k: request.top_k,
            top_p: request.top_p,
            min_p: request.min_p,
            repetition_penalty: request.repetition_penalty,
            seed,
        },
        stop: request.stop,
    };
    let model_name = model.info().name.clone();
    let generation = Generation::new(model, &prompt, &options).map_err(|e| ApiError::refused(e.to_string()))?;
    Ok(Execution { job_id: request.job_id, model_name, generation, seed, prompt_tokens: prompt.len() as u32 })
}

impl Execution {
    /// Answers 200 and streams the events as they are generated; stops when the client is gone.
    fn send(mut self, out: ResponseOutparam) {
        let headers = [("content-type", "text/event-stream".to_string()), ("cache-control", "no-cache".to_string())];
        let Some((stream, body)) = open(out, 200, &headers) else { return };
        let started = Instant::now();
        let mut sse = Sse { stream: &stream, last_write: started, tokens: 0 };
        let event = Event::Started {
            job_id: self.job_id,
            model: self.model_name,
            started_at: rfc3339(SystemTime::now()),
            seed: self.seed,
            prompt_tokens: self.prompt_tokens,
        };
        let mut alive = sse.event(&event);
        while alive {
            if started.elapsed() > DEFAULT_INFERENCE_TIMEOUT {
                let message = format!("the job ran past {} s", DEFAULT_INFERENCE_TIMEOUT.as_secs());
                sse.failure(Failure::Timeout, message);
                break;
            }
            alive = match self.generation.next_step() {
                Step::Prefill(_) => sse.keep_alive(),
                Step::Token { text, .. } => sse.text(text),
                Step::Finished(finish) => {
                    let _ = sse.text(finish.text)
                        && sse.event(&Event::End {
                            tokens_out: finish.tokens_out,
                            decode_time_ms: started.elapsed().as_millis() as u64,
                            stop_reason: end_reason(finish.reason).code(),
                            stop_sequence_matched: finish.stop_sequence,
                        });
                    break;
                }
            };
        }
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

/// An open SSE body.
struct Sse<'a> {
    stream: &'a OutputStream,
    last_write: Instant,
    tokens: u32,
}

impl Sse<'_> {
    /// Sends `event`; false once the client is gone.
    fn event(&mut self, event: &Event) -> bool {
        self.write(event.to_wire().as_bytes())
    }

    /// Sends non-empty `text` as the next token event.
    fn text(&mut self, text: String) -> bool {
        if text.is_empty() {
            return true;
        }
        self.tokens += 1;
        self.event(&Event::Token { t: text, i: self.tokens - 1 })
    }

    /// Sends an error event.
    fn failure(&mut self, failure: Failure, message: String) -> bool {
        self.event(&Event::Error { code: failure.code(), message, retriable: failure.retriable() })
    }

    /// A comment when nothing was sent for a while, so proxies keep the stream open.
    fn keep_alive(&mut self) -> bool {
        self.last_write.elapsed() < SSE_KEEPALIVE || self.write(b": keep-alive\n\n")
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        self.last_write = Instant::now();
        write_all(self.stream, bytes)
    }
}

fn end_reason(reason: StopReason) -> EndReason {
    match reason {
        StopReason::MaxTokens => EndReason::MaxTokens,
        StopReason::Eos => EndReason::Eos,
        StopReason::StopSequence => EndReason::StopSequence,
    }
}

/// The request's JSON body, under the host's rules: JSON content type (415), at most
/// `DEFAULT_MAX_BODY_BYTES` (413) arriving within `DEFAULT_BODY_TIMEOUT` (408), valid JSON (400)
/// of the expected shape (422).
fn json_body<T: serde::de::DeserializeOwned>(request: &IncomingRequest) -> Result<T, ApiError> {
    let content_type = request.headers().get("content-type");
    let content_type = content_type.first().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
    check_json_content_type(&content_type)?;
    parse_json(&read_body(request)?)
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let unreadable = || ApiError::MalformedJson("the body could not be read".to_string());
    let body = request.consume().map_err(|()| unreadable())?;
    let stream = body.stream().map_err(|()| unreadable())?;
    let deadline = wasip2::clocks::monotonic_clock::subscribe_duration(DEFAULT_BODY_TIMEOUT.as_nanos() as u64);
    let mut bytes = Vec::new();
    loop {
        let readable = stream.subscribe();
        if wasip2::io::poll::poll(&[&readable, &deadline]) == [1] {
            return Err(ApiError::Timeout(DEFAULT_BODY_TIMEOUT));
        }
        match stream.read((DEFAULT_MAX_BODY_BYTES + 1 - bytes.len()) as u64) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(unreadable()),
        }
        if bytes.len() > DEFAULT_MAX_BODY_BYTES {
            return Err(ApiError::TooLarge(DEFAULT_MAX_BODY_BYTES));
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(body);
    Ok(bytes)
}

/// Sets the response's status and headers and opens its body. Headers wasi:http forbids a guest
/// to set (`connection`) are left to the server.
fn open(out: ResponseOutparam, status: u16, headers: &[(&str, String)]) -> Option<(OutputStream, OutgoingBody)> {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name, value.as_bytes());
    }
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).ok()?;
    let body = response.body().ok()?;
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().ok()?;
    Some((stream, body))
}

/// A whole JSON response.
fn respond(out: ResponseOutparam, status: u16, headers: &[(&'static str, String)], body: &Value) {
    let mut all = vec![("content-type", "application/json".to_string())];
    all.extend_from_slice(headers);
    let Some((stream, outgoing)) = open(out, status, &all) else { return };
    write_all(&stream, body.to_string().as_bytes());
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Writes and flushes `bytes`; false once the client is gone.
fn write_all(stream: &OutputStream, bytes: &[u8]) -> bool {
    bytes.chunks(WRITE_CHUNK).all(|chunk| stream.blocking_write_and_flush(chunk).is_ok())
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(name) => name,
    }
}
