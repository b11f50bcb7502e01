//! The `fuse_server` target's input format, shared with the seed generator
//! (`examples/gen_corpus.rs`):
//!
//! ```text
//! input  := config:u8 record*
//! record := flags:u8 wlen:u32le rlen:u32le bytes[rlen]
//! ```
//!
//! `config` bit 0 makes the share read-only. Each record is one descriptor chain: `bytes` is
//! the device-readable part and `wlen` the size of the device-writable part (capped at
//! [`MAX_WLEN`]). `flags`:
//! - bits 0-2: fragmentation: 0 puts each side in one descriptor, n cuts both sides into
//!   descriptors of `4 << (2 * n)` bytes (16 B to 64 KiB);
//! - bit 3: the writable part straddles the boundary between the two guest memory regions;
//! - bit 4: overwrite the header's `len` with the real readable length (so mutated requests get
//!   past the length check and reach the opcode handlers).
//!
//! A truncated record ends the input.

/// Largest writable part: a full 1 MiB READ plus its header, with room to spare.
pub const MAX_WLEN: u32 = (1 << 20) + 8192;
/// Largest readable part the harness lays out.
pub const MAX_RLEN: usize = 0xe0000;
/// At most this many requests per input.
pub const MAX_RECORDS: usize = 64;

pub const FLAG_FRAG_MASK: u8 = 0x07;
pub const FLAG_STRADDLE: u8 = 0x08;
pub const FLAG_FIX_LEN: u8 = 0x10;

/// Config bit: serve the share read-only.
pub const CONFIG_READONLY: u8 = 0x01;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub flags: u8,
    pub wlen: u32,
    pub bytes: Vec<u8>,
}

/// Splits an input into its config byte and records.
pub fn decode(data: &[u8]) -> (u8, Vec<Record>) {
    let Some((&config, mut rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut out = Vec::new();
    while rest.len() >= 9 && out.len() < MAX_RECORDS {
        let flags = rest[0];
        let wlen = u32::from_le_bytes(rest[1..5].try_into().unwrap()).min(MAX_WLEN);
        let rlen = u32::from_le_bytes(rest[5..9].try_into().unwrap()) as usize;
        rest = &rest[9..];
        let take = rlen.min(rest.len()).min(MAX_RLEN);
        out.push(Record {
            flags,
            wlen,
            bytes: rest[..take].to_vec(),
        });
        rest = &rest[rlen.min(rest.len())..];
    }
    (config, out)
}

/// The inverse of [`decode`].
pub fn encode(config: u8, records: &[Record]) -> Vec<u8> {
    let mut v = vec![config];
    for r in records {
        v.push(r.flags);
        v.extend_from_slice(&r.wlen.to_le_bytes());
        v.extend_from_slice(&(r.bytes.len() as u32).to_le_bytes());
        v.extend_from_slice(&r.bytes);
    }
    v
}

/// Descriptor size for a fragmentation setting: `None` for one descriptor per side.
pub fn fragment(flags: u8) -> Option<usize> {
    match flags & FLAG_FRAG_MASK {
        0 => None,
        n => Some(4usize << (2 * n as usize).min(14)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let rs = vec![
            Record {
                flags: 3,
                wlen: 100,
                bytes: vec![1, 2, 3],
            },
            Record {
                flags: 0,
                wlen: 0,
                bytes: vec![],
            },
        ];
        assert_eq!(decode(&encode(1, &rs)), (1, rs));
    }
}
