//! What a command changed in its folder, and the contents that let it be undone (issue 22):
//! [`scan`] walks a folder into a manifest and tells two manifests apart; [`store`] keeps file
//! contents by hash; [`beneath`] reaches files only through the folder's handle; [`record`]
//! takes a run's before and after and keeps the difference with the history; [`undo`] puts
//! a run's files back as they were.

#[cfg(target_os = "linux")]
pub mod beneath;
pub mod diff;
pub mod folder;
mod look;
pub mod record;
pub mod scan;
pub mod store;
#[cfg(target_os = "linux")]
pub mod undo;
#[cfg(target_os = "linux")]
pub mod watch;
