//! Error responses, all with a JSON body: `{"errors":[...]}` for request faults (400, 422),
//! `{"error","message"}` for the rest.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// One broken rule of a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub constraint: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Everything a handler can answer instead of success.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not JSON.
    MalformedJson(String),
    /// 400: rules broken, every one listed.
    Invalid(Vec<FieldError>),
    /// 422: JSON of the wrong shape (types, missing fields).
    Unprocessable(String),
    /// 415: the content type is not JSON.
    UnsupportedMediaType(String),
    /// 413: the body is over the limit.
    TooLarge(usize),
    /// 408: the body did not arrive in time; the connection is closed.
    Timeout(std::time::Duration),
    /// 409: a job with this id is already queued or running.
    Conflict(String),
    /// 503: busy past the queue (with Retry-After) or unable to serve.
    Unavailable { message: String, retry_after_sec: Option<u32> },
}

impl ApiError {
    /// Status, error code and message of the faults that are not about the request's fields.
    pub fn summary(&self) -> Option<(StatusCode, &'static str, String)> {
        Some(match self {
            ApiError::UnsupportedMediaType(message) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", message.clone())
            }
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the request body is larger than {limit} bytes"),
            ),
            ApiError::Timeout(limit) => (
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!("the request body did not arrive within {} s", limit.as_secs_f64()),
            ),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, "CONFLICT", message.clone()),
            ApiError::Unavailable { message, .. } => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message.clone()),
            ApiError::MalformedJson(_) | ApiError::Invalid(_) | ApiError::Unprocessable(_) => return None,
        })
    }

    /// The headers that go with the status: Retry-After on 503, Connection: close on 408.
    pub fn headers(&self) -> Vec<(header::HeaderName, HeaderValue)> {
        match self {
            ApiError::Unavailable { retry_after_sec: Some(seconds), .. } => {
                vec![(header::RETRY_AFTER, HeaderValue::from(*seconds))]
            }
            ApiError::Timeout(_) => vec![(header::CONNECTION, HeaderValue::from_static("close"))],
            _ => vec![],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let fields = |status: StatusCode, errors: serde_json::Value| {
            (status, axum::Json(json!({ "errors": errors }))).into_response()
        };
        let mut response = match &self {
            ApiError::MalformedJson(message) => {
                fields(StatusCode::BAD_REQUEST, json!([{ "field": "body", "constraint": "json", "message": message }]))
            }
            ApiError::Invalid(errors) => fields(StatusCode::BAD_REQUEST, json!(errors)),
            ApiError::Unprocessable(message) => fields(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!([{ "field": "body", "constraint": "schema", "message": message }]),
            ),
            _ => {
                let (status, code, message) = self.summary().expect("every other fault has a summary");
                (status, axum::Json(json!({ "error": code, "message": message }))).into_response()
            }
        };
        response.headers_mut().extend(self.headers());
        response
    }
}
