//! How the API reads requests and answers errors: `{"error": {"code": "...", "message":
//! "..."}}` with the code's HTTP status, for bad JSON, bad queries and unknown routes too.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use stigmer_protocol::replies::ErrorBody;

use crate::error::{Error, ErrorCode};

/// An error as the API returns it: `{"error": {"code": "...", "message": "..."}}`.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { error: self.0 })).into_response()
    }
}

/// `Json` whose rejections are API errors with codes.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiError(json_rejection(rejection))),
        }
    }
}

/// Body fields read as protocol enums whose wrong word has a code of its own, the same code the
/// config file and the CLI give it (a mode is `INVALID_MODE` everywhere).
const FIELD_CODES: [(&str, ErrorCode); 2] = [
    ("mode", ErrorCode::InvalidMode),
    ("policy", ErrorCode::InvalidSetting),
];

/// A body that did not fit its type: `FIELD: why`, with the field's own code when it has one.
fn data_error(text: String) -> Error {
    // axum says "Failed to deserialize the JSON body into the target type: PATH: WHY at line L
    // column C".
    let detail = text
        .split_once("target type: ")
        .map_or(text.as_str(), |(_, d)| d);
    let detail = detail.rsplit_once(" at line ").map_or(detail, |(d, _)| d);
    let field = detail.split_once(": ").map(|(f, _)| f);
    match FIELD_CODES.iter().find(|(name, _)| Some(*name) == field) {
        Some((_, code)) => Error::new(*code, detail),
        None => Error::new(ErrorCode::InvalidRequest, text),
    }
}

fn json_rejection(r: JsonRejection) -> Error {
    let text = r.body_text();
    match r {
        JsonRejection::JsonDataError(_) => data_error(text),
        JsonRejection::JsonSyntaxError(_) => Error::new(ErrorCode::InvalidJson, text),
        JsonRejection::MissingJsonContentType(_) => Error::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Error::new(
                ErrorCode::BodyTooLarge,
                format!(
                    "the request body is over the {} KiB limit",
                    super::BODY_LIMIT / 1024
                ),
            )
        }
        _ => Error::new(ErrorCode::InvalidRequest, text),
    }
}

/// `Query` whose rejections are API errors with codes.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(ApiQuery(q.0)),
            Err(r @ QueryRejection::FailedToDeserializeQueryString(_)) | Err(r) => Err(ApiError(
                Error::new(ErrorCode::InvalidRequest, r.body_text()),
            )),
        }
    }
}

pub async fn not_found() -> ApiError {
    ApiError(Error::new(
        ErrorCode::NotFound,
        "no such API route; the routes are listed at /v1/openapi.json",
    ))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError(Error::new(
        ErrorCode::MethodNotAllowed,
        "this method is not allowed here; see /v1/openapi.json",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_word_in_an_enum_field_keeps_its_code() {
        let axum = |detail: &str| {
            format!(
                "Failed to deserialize the JSON body into the target type: {detail} at line 1 column 9"
            )
        };
        let e = data_error(axum("mode: `auto` is not an execution mode"));
        assert_eq!(e.code, ErrorCode::InvalidMode);
        assert_eq!(e.message, "mode: `auto` is not an execution mode");
        let e = data_error(axum("policy: `x` is not a valid value for sandbox.network"));
        assert_eq!(e.code, ErrorCode::InvalidSetting);
        let e = data_error(axum("limit: invalid type: string \"x\", expected u64"));
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.starts_with("Failed to deserialize"));
    }
}
