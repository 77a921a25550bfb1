//! What a failed engine API call means for the user, in one place for every caller.

use crate::error::{Error, ErrorCode};

/// A failed engine call that is not about a missing thing: the engine went away.
pub fn engine_error(e: bollard::errors::Error) -> Error {
    Error::new(
        ErrorCode::EngineUnavailable,
        format!("the container engine did not answer as expected: {e}"),
    )
}
