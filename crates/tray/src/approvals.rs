//! The user's answer to a command waiting for approval, from the window's buttons or a
//! notification's.

use crate::state::{shared, update, AppHandle};
use stigmer_protocol::Result;

/// The user's answer to a waiting command (the window's buttons, a notification's).
pub async fn answer(
    app: &AppHandle,
    id: &str,
    decision: stigmer_protocol::clients::Decision,
) -> Result<()> {
    shared(app).api()?.answer_approval(id, decision).await?;
    // The server's `approval_ended` event updates the model; this is for at once.
    update(app, |m| m.waiting.retain(|a| a.id != id));
    Ok(())
}
