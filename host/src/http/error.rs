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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let simple = |status: StatusCode, code: &str, message: String| {
            (status, axum::Json(json!({ "error": code, "message": message }))).into_response()
        };
        match self {
            ApiError::MalformedJson(message) => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "errors": [{ "field": "body", "constraint": "json", "message": message }] })),
            )
                .into_response(),
            ApiError::Invalid(errors) => {
                (StatusCode::BAD_REQUEST, axum::Json(json!({ "errors": errors }))).into_response()
            }
            ApiError::Unprocessable(message) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({ "errors": [{ "field": "body", "constraint": "schema", "message": message }] })),
            )
                .into_response(),
            ApiError::UnsupportedMediaType(message) => {
                simple(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", message)
            }
            ApiError::TooLarge(limit) => simple(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the request body is larger than {limit} bytes"),
            ),
            ApiError::Timeout(limit) => {
                let mut response = simple(
                    StatusCode::REQUEST_TIMEOUT,
                    "REQUEST_TIMEOUT",
                    format!("the request body did not arrive within {} s", limit.as_secs_f64()),
                );
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
            ApiError::Conflict(message) => simple(StatusCode::CONFLICT, "CONFLICT", message),
            ApiError::Unavailable { message, retry_after_sec } => {
                let mut response = simple(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message);
                if let Some(seconds) = retry_after_sec {
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
        }
    }
}
