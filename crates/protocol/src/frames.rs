//! A binary framing of a run's stream, for clients that want raw speed (the `stigmer` CLI).
//!
//! Asked for with `Accept: application/vnd.stigmer.frames`. Each frame is one kind byte, a
//! 4-byte big-endian length, then that many bytes. Kind 0 carries the same JSON object as an
//! NDJSON line (`started`, `finished`, `heartbeat`); kinds 1 and 2 carry raw stdout and stderr
//! bytes, no base64, no escaping.

use bytes::{Buf, Bytes, BytesMut};

pub const MEDIA_TYPE: &str = "application/vnd.stigmer.frames";
pub const KIND_JSON: u8 = 0;
pub const KIND_STDOUT: u8 = 1;
pub const KIND_STDERR: u8 = 2;
const HEADER: usize = 5;

pub fn encode(kind: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Reassembles frames from the chunks a response body arrives in.
#[derive(Default)]
pub struct Decoder {
    pending: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Option<(u8, Bytes)> {
        if self.pending.len() < HEADER {
            return None;
        }
        let len = u32::from_be_bytes(self.pending[1..HEADER].try_into().ok()?) as usize;
        if self.pending.len() < HEADER + len {
            return None;
        }
        let kind = self.pending[0];
        self.pending.advance(HEADER);
        Some((kind, self.pending.split_to(len).freeze()))
    }

    /// Bytes received that do not make a whole frame yet.
    pub fn leftover(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode(KIND_JSON, b"{\"type\":\"started\"}"));
        wire.extend_from_slice(&encode(KIND_STDOUT, &[0, 1, 2, 255, b'\n']));
        wire.extend_from_slice(&encode(KIND_STDERR, b""));
        for split in 1..wire.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in wire.chunks(split) {
                d.push(piece);
                while let Some(f) = d.next_frame() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3, "split {split}");
            assert_eq!(
                got[1],
                (KIND_STDOUT, Bytes::from_static(&[0, 1, 2, 255, b'\n']))
            );
            assert_eq!(d.leftover(), 0);
        }
    }
}
