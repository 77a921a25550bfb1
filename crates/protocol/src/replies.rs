//! The API's short answers: acknowledgements (202s), counts, and the error body every failing
//! route returns. Typed here so the server writes and the clients read one shape.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Every error: `{"error": {"code": "...", "message": "..."}}` (`ErrorResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: Error,
}

/// `POST /v1/runs/{id}/cancel` (with the run's id) and `POST /v1/sandbox/cancel` (without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whether something was still going and is now being stopped.
    pub cancelled: bool,
}

/// `POST /v1/runs/stop-all`: how many runs were stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub stopped: u64,
}

/// `POST /v1/shutdown`: the server is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopping {
    pub stopping: bool,
}

/// Work started in the background (an image remade or built); events tell how it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub started: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}
