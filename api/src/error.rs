//! Error responses, all with a JSON body: `{"errors":[...]}` for request faults (400, 422),
//! `{"error","message"}` for the rest; and reading a JSON body under the contract's rules.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

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
    /// 404: no such route.
    NotFound(String),
    /// 405: the route exists, not with this method.
    MethodNotAllowed(String),
    /// 503: busy past the queue (with Retry-After) or unable to serve.
    Unavailable { message: String, retry_after_sec: Option<u32> },
}

impl ApiError {
    /// 400: the model refused the request (`reason` says why).
    pub fn refused(reason: String) -> Self {
        ApiError::Invalid(vec![FieldError {
            field: "body".into(),
            constraint: "model".into(),
            message: reason,
            value: None,
        }])
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::MalformedJson(_) | ApiError::Invalid(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Timeout(_) => 408,
            ApiError::Conflict(_) => 409,
            ApiError::TooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Unprocessable(_) => 422,
            ApiError::Unavailable { .. } => 503,
        }
    }

    /// Error code and message of the faults that are not about the request's fields.
    pub fn summary(&self) -> Option<(&'static str, String)> {
        Some(match self {
            ApiError::UnsupportedMediaType(message) => ("UNSUPPORTED_MEDIA_TYPE", message.clone()),
            ApiError::TooLarge(limit) => {
                ("PAYLOAD_TOO_LARGE", format!("the request body is larger than {limit} bytes"))
            }
            ApiError::Timeout(limit) => {
                ("REQUEST_TIMEOUT", format!("the request body did not arrive within {} s", limit.as_secs_f64()))
            }
            ApiError::Conflict(message) => ("CONFLICT", message.clone()),
            ApiError::NotFound(message) => ("NOT_FOUND", message.clone()),
            ApiError::MethodNotAllowed(message) => ("METHOD_NOT_ALLOWED", message.clone()),
            ApiError::Unavailable { message, .. } => ("UNAVAILABLE", message.clone()),
            ApiError::MalformedJson(_) | ApiError::Invalid(_) | ApiError::Unprocessable(_) => return None,
        })
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let field = |constraint: &str, message: &str| json!([{ "field": "body", "constraint": constraint, "message": message }]);
        match self {
            ApiError::MalformedJson(message) => json!({ "errors": field("json", message) }),
            ApiError::Invalid(errors) => json!({ "errors": errors }),
            ApiError::Unprocessable(message) => json!({ "errors": field("schema", message) }),
            _ => {
                let (code, message) = self.summary().expect("every other fault has a summary");
                json!({ "error": code, "message": message })
            }
        }
    }

    /// The headers that go with the status: Retry-After on 503, Connection: close on 408.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::Unavailable { retry_after_sec: Some(seconds), .. } => vec![("retry-after", seconds.to_string())],
            ApiError::Timeout(_) => vec![("connection", "close".to_string())],
            _ => vec![],
        }
    }
}

/// 415 unless `content_type` is JSON; checked before the body is read.
pub fn check_json_content_type(content_type: &str) -> Result<(), ApiError> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!("Content-Type must be application/json, got {content_type:?}")))
}

/// Parses `bytes` as JSON (400) of type `T` (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
    serde_json::from_value(value).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        use axum::http::StatusCode;
        let status = StatusCode::from_u16(self.status()).expect("every status is valid");
        let mut response = (status, axum::Json(self.body())).into_response();
        self.add_headers(&mut response);
        response
    }
}

#[cfg(feature = "axum")]
impl ApiError {
    /// Adds [`ApiError::headers`] to `response`.
    pub fn add_headers(&self, response: &mut axum::response::Response) {
        use axum::http::{HeaderName, HeaderValue};
        for (name, value) in self.headers() {
            let value = HeaderValue::from_str(&value).expect("header values are ASCII");
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
}
