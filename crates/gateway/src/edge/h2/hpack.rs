//! HPACK (RFC 7541): the client's header blocks decoded with a dynamic
//! table of at most `TABLE_SIZE` bytes; answers encoded without one, each
//! name by the static table where it is there and every value sent as it
//! is, as HAProxy does. An answer's values change from one to the next
//! (date, length, request id), so a table would mostly hold what is not
//! sent again, and Huffman coding them costs more CPU than the bytes it
//! saves on a connection that is not short of bandwidth.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use httlib_huffman::DecoderSpeed;

/// The dynamic table size this server allows a client's encoder (the
/// protocol's default; it is never announced otherwise).
pub(crate) const TABLE_SIZE: usize = 4_096;

/// RFC 7541 Appendix A.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Why a header block could not be decoded: the connection's HPACK state
/// is lost with it (a connection error, `COMPRESSION_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HPACK: {0}")]
pub(crate) struct CompressionError(&'static str);

/// A table entry costs its bytes and 32 more (RFC 7541 section 4.1).
fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

pub(crate) struct Decoder {
    /// Newest first.
    table: VecDeque<(Bytes, Bytes)>,
    size: usize,
    max: usize,
    huffman: Vec<u8>,
    check: Vec<u8>,
}

/// What a header block decoded to, as far as its size goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded {
    Whole,
    /// Its header list was larger than the limit: no field past the limit
    /// was given, though the whole block was decoded (the table must stay
    /// as the client's encoder has it). How large it would have been.
    TooLarge(usize),
}

impl Decoder {
    pub(crate) fn new() -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max: TABLE_SIZE,
            huffman: Vec::new(),
            check: Vec::new(),
        }
    }

    /// Decodes one whole header block, giving each field to `field` while
    /// the list stays within `limit` bytes (counted as RFC 9113's
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` counts).
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        limit: usize,
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<Decoded, CompressionError> {
        let mut at = 0;
        let mut listed = 0usize;
        let mut fields_seen = false;
        while at < block.len() {
            let first = block[at];
            if first & 0x80 != 0 {
                // Indexed field.
                let index = integer(block, &mut at, 7)?;
                let (name, value) = self.entry(index)?;
                listed = listed.saturating_add(entry_size(name, value));
                if listed <= limit {
                    field(name, value);
                }
                fields_seen = true;
            } else if first & 0xe0 == 0x20 {
                // Table size update: only before the first field.
                if fields_seen {
                    return Err(CompressionError("table size update after a field"));
                }
                let size = integer(block, &mut at, 5)?;
                if size > TABLE_SIZE {
                    return Err(CompressionError("table size update above the limit"));
                }
                self.max = size;
                self.evict(0);
            } else {
                // Literal: with indexing (01), without (0000) or never
                // indexed (0001).
                let (prefix, indexing) = if first & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let index = integer(block, &mut at, prefix)?;
                let name = if index == 0 {
                    self.string(block, &mut at)?
                } else {
                    self.entry(index)?.0.clone()
                };
                let value = self.string(block, &mut at)?;
                listed = listed.saturating_add(entry_size(&name, &value));
                if listed <= limit {
                    field(&name, &value);
                }
                if indexing {
                    self.insert(name, value);
                }
                fields_seen = true;
            }
        }
        Ok(if listed <= limit {
            Decoded::Whole
        } else {
            Decoded::TooLarge(listed)
        })
    }

    fn entry(&self, index: usize) -> Result<(&Bytes, &Bytes), CompressionError> {
        static STATIC_BYTES: std::sync::OnceLock<Vec<(Bytes, Bytes)>> = std::sync::OnceLock::new();
        let statics = STATIC_BYTES.get_or_init(|| {
            STATIC
                .iter()
                .map(|(n, v)| (Bytes::from_static(n), Bytes::from_static(v)))
                .collect()
        });
        match index {
            0 => Err(CompressionError("index 0")),
            1..=61 => {
                let (name, value) = &statics[index - 1];
                Ok((name, value))
            }
            _ => self
                .table
                .get(index - 62)
                .map(|(name, value)| (name, value))
                .ok_or(CompressionError("index beyond the table")),
        }
    }

    fn string(&mut self, block: &[u8], at: &mut usize) -> Result<Bytes, CompressionError> {
        let huffman = block.get(*at).ok_or(CompressionError("string cut short"))? & 0x80 != 0;
        let len = integer(block, at, 7)?;
        let raw = block
            .get(*at..at.saturating_add(len))
            .ok_or(CompressionError("string cut short"))?;
        *at += len;
        if !huffman {
            return Ok(Bytes::copy_from_slice(raw));
        }
        self.huffman.clear();
        httlib_huffman::decode(raw, &mut self.huffman, DecoderSpeed::FourBits)
            .map_err(|_| CompressionError("bad Huffman code"))?;
        // The padding must be the EOS code's first bits, at most 7 of them
        // (RFC 7541 section 5.2), which the decoder does not check: the
        // canonical code encodes the string back to the same bytes only
        // then.
        self.check.clear();
        let again = httlib_huffman::encode(&self.huffman, &mut self.check);
        if again.is_err() || self.check != raw {
            return Err(CompressionError("bad Huffman padding"));
        }
        Ok(Bytes::copy_from_slice(&self.huffman))
    }

    fn insert(&mut self, name: Bytes, value: Bytes) {
        let size = entry_size(&name, &value);
        if size > self.max {
            // An entry larger than the table empties it (RFC 7541 4.4).
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front((name, value));
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((name, value)) = self.table.pop_back() else {
                break;
            };
            self.size -= entry_size(&name, &value);
        }
    }
}

/// An integer of `prefix` bits (RFC 7541 section 5.1), at most 2^28: no
/// length or index here is near it.
fn integer(block: &[u8], at: &mut usize, prefix: u8) -> Result<usize, CompressionError> {
    let cut = CompressionError("integer cut short");
    let mask = (1usize << prefix) - 1;
    let mut value = usize::from(*block.get(*at).ok_or(cut)?) & mask;
    *at += 1;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(*at).ok_or(cut)?;
        *at += 1;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(CompressionError("integer too large"));
        }
    }
}

fn put_integer(out: &mut BytesMut, first: u8, prefix: u8, value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.put_u8(first | value as u8);
        return;
    }
    out.put_u8(first | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.put_u8(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

fn put_string(out: &mut BytesMut, bytes: &[u8]) {
    put_integer(out, 0, 7, bytes.len());
    out.put_slice(bytes);
}

/// Writes `:status` (indexed when the static table has it).
pub(crate) fn put_status(out: &mut BytesMut, status: u16) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if index != 0 {
        out.put_u8(0x80 | index);
        return;
    }
    put_integer(out, 0x00, 4, 8);
    put_string(out, itoa::Buffer::new().format(status).as_bytes());
}

/// Writes one field, not indexed: its name by the static table where it
/// is there, lowercased otherwise (an HTTP/1.1 backend's names may not be).
pub(crate) fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    match static_name(name) {
        Some(index) => put_integer(out, 0x00, 4, index),
        None => {
            out.put_u8(0x00);
            put_integer(out, 0, 7, name.len());
            out.extend(name.iter().map(u8::to_ascii_lowercase));
        }
    }
    put_string(out, value);
}

/// The static table's index of a field name that answers carry, whatever
/// its case.
fn static_name(name: &[u8]) -> Option<usize> {
    let mut lower = [0u8; 32];
    let lower = lower.get_mut(..name.len())?;
    for (to, from) in lower.iter_mut().zip(name) {
        *to = from.to_ascii_lowercase();
    }
    Some(match &*lower {
        b"accept-ranges" => 18,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"date" => 33,
        b"etag" => 34,
        b"expires" => 36,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        let whole = decoder
            .decode(block, 1 << 20, |n, v| {
                fields.push((
                    String::from_utf8(n.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                ))
            })
            .unwrap();
        assert_eq!(whole, Decoded::Whole);
        fields
    }

    fn hex(text: &str) -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_rfc_requests_with_huffman_decode_and_fill_the_table() {
        // RFC 7541 C.4: three requests on one connection, Huffman-coded.
        let mut decoder = Decoder::new();
        let first = decode_all(
            &mut decoder,
            &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
        );
        assert_eq!(
            first,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(decoder.size, 57);
        let second = decode_all(&mut decoder, &hex("8286 84be 5886 a8eb 1064 9cbf"));
        assert_eq!(second[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(second[4], ("cache-control".into(), "no-cache".into()));
        assert_eq!(decoder.size, 110);
        let third = decode_all(
            &mut decoder,
            &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        );
        assert_eq!(third[1], (":scheme".into(), "https".into()));
        assert_eq!(third[2], (":path".into(), "/index.html".into()));
        assert_eq!(third[4], ("custom-key".into(), "custom-value".into()));
        assert_eq!(decoder.size, 164);
    }

    #[test]
    fn bad_blocks_are_compression_errors() {
        for block in [
            &[0x80][..],                           // index 0
            &[0xbe],                               // index 62, table empty
            &[0x82, 0x3f, 0xe1, 0x1f],             // size update after a field, and too large
            &[0x3f, 0xe2, 0x1f],                   // size update above 4,096
            &[0x41, 0x85, 0xf1],                   // string cut short
            &[0x41, 0x81, 0x00],                   // Huffman padding not of ones
            &[0x41, 0x82, 0xff, 0xff],             // Huffman padding longer than 7 bits
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // integer too large
        ] {
            assert!(
                Decoder::new().decode(block, 1 << 20, |_, _| {}).is_err(),
                "{block:x?}"
            );
        }
    }

    #[test]
    fn a_list_past_the_limit_is_decoded_whole_but_not_given() {
        let mut decoder = Decoder::new();
        // x-big: 100 a's, put in the table; then referenced twice.
        let mut block = vec![0x40, 5];
        block.extend_from_slice(b"x-big");
        block.push(100);
        block.extend(std::iter::repeat_n(b'a', 100));
        block.extend([0xbe, 0xbe]);
        let mut given = 0;
        let decoded = decoder.decode(&block, 300, |_, _| given += 1).unwrap();
        assert_eq!(decoded, Decoded::TooLarge(3 * 137));
        assert_eq!(given, 2);
        assert_eq!(
            decoder.table.len(),
            1,
            "the table stays as the client has it"
        );
    }

    #[test]
    fn the_table_evicts_the_oldest_and_a_size_update_shrinks_it() {
        let mut decoder = Decoder::new();
        let mut block = Vec::new();
        for n in 0..50u8 {
            block.extend([0x40, 1, b'a' + n % 26, 60]);
            block.extend(std::iter::repeat_n(n, 60));
        }
        decoder.decode(&block, 1 << 20, |_, _| {}).unwrap();
        // Each entry is 93 bytes: 44 fit in 4,096.
        assert_eq!(decoder.table.len(), 44);
        assert!(decoder.size <= TABLE_SIZE);
        assert_eq!(decoder.table[0].1[0], 49, "newest first");
        decoder
            .decode(&[0x3f, 0xe1, 0x01], 1 << 20, |_, _| {})
            .unwrap(); // size 256
        assert_eq!(decoder.table.len(), 2);
    }

    #[test]
    fn what_is_encoded_decodes_back() {
        let mut out = BytesMut::new();
        put_status(&mut out, 200);
        put_status(&mut out, 503);
        put_field(&mut out, b"Content-Type", b"application/json");
        put_field(&mut out, b"X-Request-Id", &[b'z'; 200]);
        let fields = decode_all(&mut Decoder::new(), &out);
        assert_eq!(fields[0], (":status".into(), "200".into()));
        assert_eq!(fields[1], (":status".into(), "503".into()));
        assert_eq!(
            fields[2],
            ("content-type".into(), "application/json".into())
        );
        assert_eq!(fields[3], ("x-request-id".into(), "z".repeat(200)));
        assert_eq!(out[0], 0x88);
    }
}
