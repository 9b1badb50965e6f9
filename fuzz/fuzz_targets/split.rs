//! What the fuzz targets share: a hash of the input, and where to cut it
//! so that a codec fed in pieces can be checked against the whole.
#![allow(dead_code)] // each target uses what it needs

/// FNV-1a: values that depend on the input, reproducibly.
pub fn hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Up to four cut points strictly inside `data`, sorted, no repeats,
/// chosen by its hash.
pub fn cuts(data: &[u8]) -> Vec<usize> {
    let len = data.len();
    let mut cuts: Vec<usize> = Vec::new();
    let mut h = hash(data);
    if len > 1 {
        for _ in 0..4 {
            h = h.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            cuts.push(1 + (h % (len as u64 - 1)) as usize);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}
