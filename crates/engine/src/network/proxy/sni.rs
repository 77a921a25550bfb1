//! The server name a TLS client asks for, read from its first record (the ClientHello): a
//! tunnel opened to an allowed host must not carry a handshake for another one (a CDN routes
//! by that name).

/// The most a ClientHello record may take (a TLS record's limit and its header).
pub(super) const RECORD_LIMIT: usize = 5 + 16384;

/// What the first bytes of a tunnel say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Hello {
    /// Not TLS: nothing to check.
    NotTls,
    /// More bytes are needed for the first record.
    Partial,
    /// A ClientHello, and the name it asks for, if any.
    Name(Option<String>),
}

/// Read the first record in `buf`. A ClientHello that does not fit in its first record, or is
/// malformed, is an error: a name hidden past the part read would go unchecked.
pub(super) fn client_hello(buf: &[u8]) -> Result<Hello, &'static str> {
    if buf.is_empty() {
        return Ok(Hello::Partial);
    }
    if buf[0] != 0x16 {
        return Ok(Hello::NotTls);
    }
    if buf.len() < 5 {
        return Ok(Hello::Partial);
    }
    let len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return Ok(Hello::Partial);
    }
    let mut r = Reader(&buf[5..5 + len]);
    if r.u8()? != 1 {
        return Err("the first TLS message is not a ClientHello");
    }
    let hello_len = r.u24()?;
    if hello_len > r.0.len() {
        return Err("a ClientHello longer than its record");
    }
    let mut r = Reader(&r.0[..hello_len]);
    r.take(2 + 32)?; // version, random
    let n = r.u8()? as usize;
    r.take(n)?; // session id
    let n = r.u16()?;
    r.take(n)?; // cipher suites
    let n = r.u8()? as usize;
    r.take(n)?; // compression
    if r.0.is_empty() {
        return Ok(Hello::Name(None));
    }
    let n = r.u16()?;
    let mut ext = Reader(r.take(n)?);
    let mut name = None;
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let n = ext.u16()?;
        let data = ext.take(n)?;
        if kind == 0 {
            if name.is_some() {
                return Err("two server names");
            }
            name = Some(server_name(data)?);
        }
    }
    Ok(Hello::Name(name))
}

fn server_name(data: &[u8]) -> Result<String, &'static str> {
    let mut r = Reader(data);
    let n = r.u16()?;
    let mut list = Reader(r.take(n)?);
    let mut found = None;
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let n = list.u16()?;
        let name = list.take(n)?;
        if kind == 0 {
            if found.is_some() {
                return Err("two server names");
            }
            let name = std::str::from_utf8(name).map_err(|_| "a server name that is not text")?;
            found = Some(name.to_ascii_lowercase());
        }
    }
    found.ok_or("an empty server name list")
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("a truncated ClientHello");
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u24(&mut self) -> Result<usize, &'static str> {
        let b = self.take(3)?;
        Ok(((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello naming `names`.
    pub(crate) fn hello(names: &[&str]) -> Vec<u8> {
        let mut list = Vec::new();
        for n in names {
            list.push(0u8);
            list.extend_from_slice(&(n.len() as u16).to_be_bytes());
            list.extend_from_slice(n.as_bytes());
        }
        let mut sni = (list.len() as u16).to_be_bytes().to_vec();
        sni.extend_from_slice(&list);
        let mut exts = Vec::new();
        // Another extension first (supported versions), then the name.
        exts.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
        if !names.is_empty() {
            exts.extend_from_slice(&[0x00, 0x00]);
            exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
            exts.extend_from_slice(&sni);
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![1u8];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend_from_slice(&msg);
        rec
    }

    #[test]
    fn the_name_a_handshake_asks_for_is_read() {
        let h = hello(&["Allowed.Test"]);
        assert_eq!(
            client_hello(&h),
            Ok(Hello::Name(Some("allowed.test".into())))
        );
        for cut in [1, 4, 20, h.len() - 1] {
            assert_eq!(client_hello(&h[..cut]), Ok(Hello::Partial), "{cut}");
        }
        assert_eq!(client_hello(&hello(&[])), Ok(Hello::Name(None)));
        assert!(client_hello(&hello(&["a.test", "b.test"])).is_err());
        assert_eq!(client_hello(b"SSH-2.0-x\r\n"), Ok(Hello::NotTls));
        // A handshake that says it is longer than its record is refused, not read in part.
        let mut long = hello(&["a.test"]);
        long[6] = 0x01;
        assert!(client_hello(&long).is_err());
    }
}
