//! The wire between stigmer's engine and its helper inside a sandbox container: frames over
//! the container's attached stdin (engine to helper) and stdout (helper to engine), so that
//! every run of a warm container goes over one stream, with no new exec.
//!
//! A frame is `kind: u8`, `run id: u32 BE`, `length: u32 BE`, then `length` bytes. Strings in
//! payloads are `u32 BE` length then bytes: arguments are bytes, never re-encoded.

#[cfg(unix)]
pub mod proxy;

/// Engine to helper: start run `id` ([`Start`]).
pub const START: u8 = 1;
/// Engine to helper: end run `id`'s process tree: TERM, then KILL after the grace (`u32` ms).
pub const KILL: u8 = 2;
/// Engine to helper: answer with [`PONG`] (readiness).
pub const PING: u8 = 3;
/// Helper to engine: `version arch` of the helper, in answer to [`PING`].
pub const PONG: u8 = 10;
pub const STDOUT: u8 = 11;
pub const STDERR: u8 = 12;
/// Helper to engine: run `id` ended ([`Exit`]); its output frames all came before.
pub const EXIT: u8 = 13;
/// Helper to engine: run `id` could not start (a UTF-8 reason); nothing ran.
pub const FAILED: u8 = 14;

/// The header's size: kind, id, length.
pub const HEADER: usize = 9;
/// The largest payload either side accepts: anything bigger means the stream is corrupt.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Where the engine puts the helper in each container.
pub const PATH_IN_CONTAINER: &str = "/.stigmer/stigmer-sandbox-helper";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A frame's bytes.
pub fn frame(kind: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    f.push(kind);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One frame read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub id: u32,
    pub payload: Vec<u8>,
}

/// Frames out of a byte stream that arrives in pieces of any size.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed, an error when the stream
    /// cannot be a frame stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let rest = &self.buf[self.start..];
        if rest.len() < HEADER {
            self.compact();
            return Ok(None);
        }
        let len = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(format!("a frame of {len} bytes (at most {MAX_PAYLOAD})"));
        }
        if rest.len() < HEADER + len {
            self.compact();
            return Ok(None);
        }
        let id = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        let frame = Frame {
            kind: rest[0],
            id,
            payload: rest[HEADER..HEADER + len].to_vec(),
        };
        self.start += HEADER + len;
        Ok(Some(frame))
    }

    /// Drop consumed bytes once they are most of the buffer (amortised, no copy per frame).
    fn compact(&mut self) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// What to run: program and arguments, environment changes, working directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Start {
    pub argv: Vec<Vec<u8>>,
    /// Set in the command's environment (over the container's own).
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Removed from the command's environment.
    pub unset: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
}

fn put(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, String> {
        if self.0.len() < 4 {
            return Err("a payload ends early".into());
        }
        let (n, rest) = self.0.split_at(4);
        self.0 = rest;
        Ok(u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        if self.0.len() < n {
            return Err("a payload ends early".into());
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(s.to_vec())
    }

    fn list(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let n = self.u32()? as usize;
        (0..n).map(|_| self.bytes()).collect()
    }
}

impl Start {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_count(&mut out, self.argv.len());
        self.argv.iter().for_each(|a| put(&mut out, a));
        put_count(&mut out, self.env.len());
        for (k, v) in &self.env {
            put(&mut out, k);
            put(&mut out, v);
        }
        put_count(&mut out, self.unset.len());
        self.unset.iter().for_each(|a| put(&mut out, a));
        put(&mut out, &self.cwd);
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Start, String> {
        let mut r = Reader(payload);
        let argv = r.list()?;
        let pairs = r.u32()? as usize;
        let env = (0..pairs)
            .map(|_| Ok((r.bytes()?, r.bytes()?)))
            .collect::<Result<_, String>>()?;
        let unset = r.list()?;
        let cwd = r.bytes()?;
        if argv.is_empty() {
            return Err("no program to run".into());
        }
        Ok(Start {
            argv,
            env,
            unset,
            cwd,
        })
    }
}

/// How a run ended: its exit code, or the signal that ended it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl Exit {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10);
        for v in [self.code, self.signal] {
            match v {
                Some(n) => {
                    out.push(1);
                    out.extend_from_slice(&n.to_be_bytes());
                }
                None => out.push(0),
            }
        }
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Exit, String> {
        let mut rest = payload;
        let mut take = || -> Result<Option<i32>, String> {
            match rest.first() {
                Some(0) => {
                    rest = &rest[1..];
                    Ok(None)
                }
                Some(1) if rest.len() >= 5 => {
                    let n = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
                    rest = &rest[5..];
                    Ok(Some(n))
                }
                _ => Err("an exit status that does not parse".into()),
            }
        };
        Ok(Exit {
            code: take()?,
            signal: take()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let start = Start {
            argv: vec![b"printf".to_vec(), vec![0xff, b'x']],
            env: vec![(b"A".to_vec(), b"1".to_vec())],
            unset: vec![b"PAGER".to_vec()],
            cwd: b"/w".to_vec(),
        };
        let mut bytes = frame(START, 7, &start.encode());
        bytes.extend(frame(
            EXIT,
            7,
            &Exit {
                code: None,
                signal: Some(9),
            }
            .encode(),
        ));
        for step in 1..bytes.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(step) {
                d.push(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 2, "split every {step} bytes");
            assert_eq!(Start::decode(&got[0].payload).unwrap(), start);
            assert_eq!(got[1].id, 7);
            let exit = Exit::decode(&got[1].payload).unwrap();
            assert_eq!((exit.code, exit.signal), (None, Some(9)));
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut d = Decoder::default();
        d.push(&[START, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
        assert!(Start::decode(&[0, 0, 0, 9]).is_err());
        assert!(
            Start::decode(&Start::default().encode()).is_err(),
            "no program"
        );
        assert!(Exit::decode(&[7]).is_err());
    }
}
