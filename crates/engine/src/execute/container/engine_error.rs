//! What a failed engine API call means for the user, in one place for every caller.

use crate::error::{Error, ErrorCode};

/// A failed engine call that is not about a missing thing: the engine went away.
pub fn engine_error(e: bollard::errors::Error) -> Error {
    Error::new(
        ErrorCode::EngineUnavailable,
        format!("the container engine did not answer as expected: {e}"),
    )
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_error_keeps_its_source() {
        let e = engine_error(bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        });
        assert_eq!(e.code, ErrorCode::EngineUnavailable);
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source
            .downcast_ref::<bollard::errors::Error>()
            .is_some_and(|b| b.to_string().contains("boom")));
        // Not on the wire.
        assert!(!serde_json::to_string(&e).unwrap().contains("source"));
    }
}
