//! Reading a JSON request body under the contract's rules: JSON content type (415), size limit
//! (413), time limit (408), well-formed UTF-8 JSON (400), the expected shape (422).

use super::RequestLimits;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use llorch_api::error::{ApiError, check_json_content_type, parse_json};
use serde::de::DeserializeOwned;

/// Parses `body` as JSON of type `T`; the whole body must arrive within `limits.body_timeout`.
pub async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limits: &RequestLimits,
) -> Result<T, ApiError> {
    let limit = limits.max_body_bytes;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    check_json_content_type(content_type)?;
    let bytes = tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::Timeout(limits.body_timeout))?
        .map_err(|e| {
            if e.into_inner().is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge(limit)
            } else {
                ApiError::MalformedJson("the body could not be read".to_string())
            }
        })?;
    parse_json(&bytes)
}
