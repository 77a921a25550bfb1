//! What a command changed in its folder, and the contents that let it be undone (issue 22's
//! groundwork): [`scan`] walks a folder into a manifest and tells two manifests apart;
//! [`store`] keeps file contents by hash, read through the folder's handle. Not yet wired into
//! runs: the recorder, its history table, the API, the CLI and the window come next.

pub mod record;
pub mod scan;
pub mod store;
