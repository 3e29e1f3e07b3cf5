//! Message bodies: a decoder for each framing that works on whatever part
//! of the body has been read, and the chunked encoding for the next hop.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Framing;

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// Where a body's decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    UntilClose,
    Done,
}

impl State {
    pub(crate) fn of(framing: Framing) -> State {
        match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        }
    }
}

/// What the decoder can do with the bytes it has.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Data(Bytes),
    End,
    NeedMore,
}

/// Appends `data` to `out` as one chunk.
pub(crate) fn put_chunk(out: &mut BytesMut, data: &[u8]) {
    out.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// The chunked body's last chunk (no trailers).
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a chunked body is malformed: {what}"),
    )
}

/// Decodes what it can of `buffer`: the body framing's one state machine.
pub(crate) fn step(state: &mut State, buffer: &mut BytesMut) -> io::Result<Step> {
    loop {
        match *state {
            State::Done => return Ok(Step::End),
            State::Length(0) => {
                *state = State::Done;
                return Ok(Step::End);
            }
            State::Length(left) | State::ChunkData(left) => {
                if buffer.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let take = left.min(buffer.len() as u64);
                let data = buffer.split_to(take as usize).freeze();
                let left = left - take;
                *state = match *state {
                    State::Length(_) if left == 0 => State::Done,
                    State::Length(_) => State::Length(left),
                    _ if left == 0 => State::ChunkEnd,
                    _ => State::ChunkData(left),
                };
                return Ok(Step::Data(data));
            }
            State::UntilClose => {
                if buffer.is_empty() {
                    return Ok(Step::NeedMore);
                }
                return Ok(Step::Data(buffer.split().freeze()));
            }
            State::ChunkEnd => {
                if buffer.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                if &buffer[..2] != b"\r\n" {
                    return Err(malformed("no CRLF after a chunk"));
                }
                buffer.advance(2);
                *state = State::ChunkSize;
            }
            State::ChunkSize => {
                let Some(line) = take_line(buffer)? else {
                    return Ok(Step::NeedMore);
                };
                // The size, then optional whitespace before any extension
                // (RFC 9112 §7.1.1); nothing before the digits.
                let digits = line[..]
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii_end();
                let size = std::str::from_utf8(digits)
                    .ok()
                    .filter(|d| {
                        !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_hexdigit())
                    })
                    .and_then(|d| u64::from_str_radix(d, 16).ok())
                    .ok_or_else(|| malformed("a chunk size is not hexadecimal"))?;
                *state = if size == 0 {
                    State::Trailers
                } else {
                    State::ChunkData(size)
                };
            }
            State::Trailers => {
                // Trailers are not passed on; an empty line ends the body.
                let Some(line) = take_line(buffer)? else {
                    return Ok(Step::NeedMore);
                };
                if line.is_empty() {
                    *state = State::Done;
                    return Ok(Step::End);
                }
            }
        }
    }
}

/// Takes one CRLF-ended line off `buffer`, without its CRLF. A bare LF or
/// CR before it is refused: a front proxy that takes a bare LF for a line
/// end would read the bytes after it differently (a request desync).
fn take_line(buffer: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    let Some(at) = buffer.iter().position(|b| matches!(b, b'\r' | b'\n')) else {
        if buffer.len() > MAX_LINE {
            return Err(malformed("a line is too long"));
        }
        return Ok(None);
    };
    match buffer.get(at..at + 2) {
        Some(b"\r\n") => {
            let line = buffer.split_to(at);
            buffer.advance(2);
            Ok(Some(line))
        }
        // A CR at the end of what has arrived: its LF may follow.
        None if buffer[at] == b'\r' => Ok(None),
        _ => Err(malformed("a line does not end in CRLF")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` one byte at a time, as a slow backend would, and
    /// returns the data decoded and whether the body ended.
    fn decode(mut state: State, input: &[u8]) -> io::Result<(Vec<u8>, bool, usize)> {
        let mut buffer = BytesMut::new();
        let mut data = Vec::new();
        for byte in input {
            buffer.extend_from_slice(&[*byte]);
            loop {
                match step(&mut state, &mut buffer)? {
                    Step::Data(bytes) => data.extend_from_slice(&bytes),
                    Step::End => return Ok((data, true, buffer.len())),
                    Step::NeedMore => break,
                }
            }
        }
        Ok((data, false, buffer.len()))
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_reads_cut() {
        let input = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        let (data, ended, left) = decode(State::ChunkSize, input).unwrap();
        assert_eq!(data, b"hello, world");
        assert!(ended);
        assert_eq!(left, 0);
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let (mut state, mut buffer) = (State::Length(3), BytesMut::from("abcdef"));
        assert_eq!(
            step(&mut state, &mut buffer).unwrap(),
            Step::Data(Bytes::from("abc"))
        );
        assert_eq!(step(&mut state, &mut buffer).unwrap(), Step::End);
        assert_eq!(&buffer[..], b"def", "what follows is not part of the body");
        let (data, ended, _) = decode(State::Length(3), b"ab").unwrap();
        assert_eq!((&data[..], ended), (&b"ab"[..], false));
    }

    #[test]
    fn chunk_lines_end_in_crlf_exactly() {
        for input in [
            &b"5;a\nb\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nx-t: 1\n\r\n",
            b"5\rX\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode(State::ChunkSize, input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let (data, ended, _) = decode(State::ChunkSize, b"5 ;a=1\r\nhello\r\n0\r\n\r\n").unwrap();
        assert_eq!(
            (&data[..], ended),
            (&b"hello"[..], true),
            "whitespace before ';' is allowed"
        );
    }

    #[test]
    fn bad_chunks_are_errors() {
        assert!(decode(State::ChunkSize, b"zz\r\n").is_err());
        assert!(decode(State::ChunkSize, b"2\r\nabXY").is_err());
        let endless = vec![b'1'; MAX_LINE + 2];
        assert!(decode(State::ChunkSize, &endless).is_err());
        let (_, ended, _) = decode(State::ChunkSize, b"3\r\nab").unwrap();
        assert!(!ended, "a cut-off body has not ended");
    }
}
