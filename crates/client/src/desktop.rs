//! The desktop app's local link between its window process and its tray process: where the
//! tray listens and how a window connects ([`stigmer_protocol::desktop`] says what they say).
//! A Unix socket in Stigmer's private data folder; on Windows a named pipe, which other users
//! may not write to.

use std::io;

use stigmer_protocol::local::Paths;
use tokio::io::{AsyncRead, AsyncWrite};

/// One connection, either way.
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub type Stream = Box<dyn Duplex>;

#[cfg(unix)]
mod imp {
    use super::*;
    use tokio::net::{UnixListener, UnixStream};

    pub struct Listener(std::os::unix::net::UnixListener, Option<UnixListener>);

    /// Bind where the tray listens. Call it holding the tray's lock: a socket left by a tray
    /// process that died is stale, and is replaced.
    pub fn bind(paths: &Paths) -> io::Result<Listener> {
        let path = stigmer_protocol::desktop::socket(paths);
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        Ok(Listener(listener, None))
    }

    impl Listener {
        /// The next window (on a Tokio runtime).
        pub async fn accept(&mut self) -> io::Result<Stream> {
            if self.1.is_none() {
                self.1 = Some(UnixListener::from_std(self.0.try_clone()?)?);
            }
            let (s, _) = self.1.as_ref().expect("made above").accept().await?;
            Ok(Box::new(s))
        }
    }

    pub async fn connect(paths: &Paths) -> io::Result<Stream> {
        let s = UnixStream::connect(stigmer_protocol::desktop::socket(paths)).await?;
        Ok(Box::new(s))
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};

    /// The pipe's name, from the socket path (so one per Stigmer home).
    fn name(paths: &Paths) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        stigmer_protocol::desktop::socket(paths).hash(&mut h);
        format!(r"\\.\pipe\stigmer-desktop-{:016x}", h.finish())
    }

    pub struct Listener(String, Option<NamedPipeServer>);

    pub fn bind(paths: &Paths) -> io::Result<Listener> {
        Ok(Listener(name(paths), None))
    }

    impl Listener {
        pub async fn accept(&mut self) -> io::Result<Stream> {
            let server = match self.1.take() {
                Some(s) => s,
                None => ServerOptions::new()
                    .first_pipe_instance(true)
                    .create(&self.0)?,
            };
            server.connect().await?;
            self.1 = Some(ServerOptions::new().create(&self.0)?);
            Ok(Box::new(server))
        }
    }

    pub async fn connect(paths: &Paths) -> io::Result<Stream> {
        Ok(Box::new(ClientOptions::new().open(name(paths))?))
    }
}

pub use imp::{bind, connect, Listener};
