//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are carried as `u16` values in host order that represent the ones-complement sum of big-endian 16-bit
//! words, *not yet complemented*. A header's checksum field holds `!sum`; a received header verifies when the sum
//! over it (field included) is `0xffff`.
//!
//! Speed: the sum is byte-order independent (RFC 1071 §2(B)) and may be taken over wider words with end-around
//! carry (§2(C)), so [`data`] adds native-endian 64-bit words with carry (32 bytes per step), folds once at the
//! end and swaps bytes only then. That is several times faster than the textbook byte-pair loop on the 20-60
//! byte headers and the small payloads synack checksums per packet.

use core::net::Ipv4Addr;

/// Folds a wide accumulator of 16-bit words into a 16-bit ones-complement sum.
///
/// Each halving adds the two halves with end-around carry, so a nonzero input never folds to zero: the result
/// is the unique representative in `1..=0xffff` of the sum modulo `0xffff` (or 0 for 0).
#[inline]
fn fold(acc: u64) -> u16 {
    let (sum, carry) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let acc = sum + u32::from(carry);
    let (sum, carry) = (acc as u16).overflowing_add((acc >> 16) as u16);
    sum + u16::from(carry)
}

/// `acc + w` in ones-complement arithmetic on 64-bit words: the carry out wraps around (RFC 1071 §2(C)).
#[inline(always)]
fn add_wrapping_carry(acc: u64, w: u64) -> u64 {
    let (sum, carry) = acc.overflowing_add(w);
    sum + u64::from(carry)
}

/// The native-endian 64-bit word in an 8-byte slice.
#[inline(always)]
fn word(bytes: &[u8; 8]) -> u64 {
    u64::from_ne_bytes(*bytes)
}

/// Ones-complement sum of `data` as big-endian 16-bit words, an odd last byte padded with zero (RFC 1071).
///
/// The result is not complemented; see the module documentation.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    data_with(0, data)
}

/// `combine(&[initial, data(bytes)])` in one pass and one fold: the TCP checksum starts from the pseudo-header.
#[inline]
pub fn data_with(initial: u16, bytes: &[u8]) -> u16 {
    // The accumulator holds native-order words, so the big-endian `initial` goes in byte-swapped (on
    // little-endian hosts).
    sum_native(u64::from(initial.to_be()), bytes)
}

/// `combine(&[pseudo_header_v4(src, dst, protocol, bytes.len() as u16), data(bytes)])` without folding the
/// pseudo-header on its own: the sum a TCP segment's checksum covers.
#[inline]
pub fn pseudo_header_v4_with(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, bytes: &[u8]) -> u16 {
    // The pseudo-header's words in native order (addresses as they lie in memory, the two numbers swapped to
    // big-endian); five small terms cannot overflow.
    let initial = u64::from(u32::from_ne_bytes(src.octets()))
        + u64::from(u32::from_ne_bytes(dst.octets()))
        + u64::from(u16::from(protocol).to_be())
        + u64::from((bytes.len() as u16).to_be());
    sum_native(initial, bytes)
}

/// Whether `bytes` (a received TCP or UDP segment, checksum field included) and its IPv4 pseudo-header sum to
/// `0xffff`, i.e. whether its checksum verifies. `false` for 64 KiB or more, which no IPv4 payload can be.
///
/// The same sum as [`pseudo_header_v4_with`], written for the receive path: inlined into the caller and no byte
/// swap, which cannot change whether the sum is `0xffff`. Received segments are mostly 32 to 100 bytes, so the
/// loop takes 32 bytes a step, then at most one 16- and one 8-byte step, and the last 1 to 7
/// bytes are one load of the segment's last 8 bytes, shifted so that only the bytes not yet summed remain, in the
/// places they hold in a word of their own (the bytes shifted in are zero, as RFC 1071 pads an odd byte), rather
/// than a cascade of 4-, 2- and 1-byte steps.
#[inline(always)]
pub fn verify_pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, bytes: &[u8]) -> bool {
    let Ok(len) = u16::try_from(bytes.len()) else {
        return false;
    };
    let mut acc = u64::from(u32::from_ne_bytes(src.octets()))
        + u64::from(u32::from_ne_bytes(dst.octets()))
        + u64::from(u16::from(protocol).to_be())
        + u64::from(len.to_be());
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        if let Ok(block) = <&[u8; 32]>::try_from(block) {
            acc = add_pair(add_pair(acc, block.first_chunk()), block.last_chunk());
        }
    }
    let mut rest = blocks.remainder();
    if let Some((pair, after)) = rest.split_first_chunk::<16>() {
        acc = add_pair(acc, Some(pair));
        rest = after;
    }
    if let Some((w, after)) = rest.split_first_chunk::<8>() {
        acc = add_wrapping_carry(acc, word(w));
        rest = after;
    }
    if !rest.is_empty() {
        match bytes.last_chunk::<8>() {
            Some(last) => {
                // `rest` is the last 1 to 7 bytes and starts at a multiple of 8, so in a word of their own they
                // sit at the lowest addresses: shift the bytes already summed out of the loaded word.
                let shift = 8 * (8 - rest.len() as u32);
                let w = word(last);
                let w = if cfg!(target_endian = "little") {
                    w >> shift
                } else {
                    w << shift
                };
                acc = add_wrapping_carry(acc, w);
            }
            None => acc = add_tail(acc, rest),
        }
    }
    fold(acc) == 0xffff
}

/// Adds 16 bytes to `acc` as two native 64-bit words (the halves of a u128, in whichever order: the sum does not
/// care); `None`, which the callers' constant offsets rule out, adds nothing.
#[inline(always)]
fn add_pair(acc: u64, pair: Option<&[u8; 16]>) -> u64 {
    match pair {
        Some(pair) => {
            let pair = u128::from_ne_bytes(*pair);
            add_wrapping_carry(add_wrapping_carry(acc, pair as u64), (pair >> 64) as u64)
        }
        None => acc,
    }
}

/// Adds the last 0 to 7 bytes of a sum to `acc` (native order, an odd byte padded with zero).
#[inline(always)]
fn add_tail(mut acc: u64, mut rest: &[u8]) -> u64 {
    if let Some((w, after)) = rest.split_first_chunk::<4>() {
        acc = add_wrapping_carry(acc, u64::from(u32::from_ne_bytes(*w)));
        rest = after;
    }
    if let Some((w, after)) = rest.split_first_chunk::<2>() {
        acc = add_wrapping_carry(acc, u64::from(u16::from_ne_bytes(*w)));
        rest = after;
    }
    if let [last] = rest {
        // A lone byte is the high half of a big-endian word; in native order that is this word.
        acc = add_wrapping_carry(acc, u64::from(u16::from_ne_bytes([*last, 0])));
    }
    acc
}

/// Adds `bytes` to an accumulator of native-order words and folds; the result is big-endian.
#[inline]
fn sum_native(initial: u64, bytes: &[u8]) -> u16 {
    // 64-bit words with end-around carry (RFC 1071 §2(C)), four per step: a sum modulo 2^64 - 1 folds to the
    // same sum modulo 2^16 - 1, and is zero only for all-zero input, like the 16-bit sum.
    let data = bytes;
    let mut acc: u64 = initial;
    let mut blocks = data.chunks_exact(32);
    for block in &mut blocks {
        for w in block.chunks_exact(8) {
            if let Ok(w) = <&[u8; 8]>::try_from(w) {
                acc = add_wrapping_carry(acc, word(w));
            }
        }
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        if let Ok(w) = <&[u8; 8]>::try_from(w) {
            acc = add_wrapping_carry(acc, word(w));
        }
    }
    acc = add_tail(acc, words.remainder());
    u16::from_be(fold(acc))
}

/// Folds a plain sum of 16-bit word values (host integers, each at most `0xffff`) into their ones-complement sum.
///
/// For a header summed from the values it holds rather than from its bytes (the IPv4 header of a frame being
/// written): up to 2^48 words fit in the accumulator, so callers just add them up.
#[inline]
pub fn fold_words(acc: u64) -> u16 {
    fold(acc)
}

/// Ones-complement addition of partial sums (each over a part that starts at an even offset).
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The sum of the IPv4 pseudo-header that TCP and UDP checksums cover (RFC 9293 §3.1).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let acc = u64::from(s >> 16)
        + u64::from(s & 0xffff)
        + u64::from(d >> 16)
        + u64::from(d & 0xffff)
        + u64::from(protocol)
        + u64::from(length);
    fold(acc)
}

/// RFC 1624 eqn. 3: the new checksum field after one 16-bit word of the covered data changed from `old` to `new`,
/// without summing the data again: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old) + u64::from(new))
}

/// [`update`] for a 32-bit field (an IPv4 address, a sequence number): two words at once.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = update(checksum, (old >> 16) as u16, (new >> 16) as u16);
    update(c, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious byte-pair loop, as RFC 1071 §4.1 writes it: the reference the fast sum is checked against.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from_be_bytes([pair[0], 0])
            };
            acc += u32::from(word);
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn data_rfc1071_example_sums_to_ddf2() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        assert_eq!(data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn data_real_ipv4_header_verifies() {
        // An IPv4 header captured from Linux (198.18.0.1 -> 198.18.0.2, TCP, checksum 0x4fd4 in place).
        let header = [
            0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12,
            0x00, 0x02,
        ];
        let field = !data(&header);
        let mut filled = header;
        filled[10..12].copy_from_slice(&field.to_be_bytes());
        assert_eq!(data(&filled), 0xffff);
        assert_eq!(field, reference_checksum(&header));
    }

    fn reference_checksum(header: &[u8]) -> u16 {
        !reference(header)
    }

    #[test]
    fn data_odd_length_pads_last_byte() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0xab]), 0x12 * 256 + 0x34 + 0xab00);
    }

    #[test]
    fn pseudo_header_v4_matches_summing_its_bytes() {
        let src = Ipv4Addr::new(198, 18, 0, 1);
        let dst = Ipv4Addr::new(198, 19, 255, 254);
        let mut bytes = [0u8; 12];
        bytes[0..4].copy_from_slice(&src.octets());
        bytes[4..8].copy_from_slice(&dst.octets());
        bytes[9] = 6;
        bytes[10..12].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(pseudo_header_v4(src, dst, 6, 40), reference(&bytes));
    }

    #[test]
    fn verify_pseudo_header_v4_every_length_and_tail() {
        // Every length up to 80 (each tail of 0 to 15 bytes after the 16-byte steps, and the short inputs that
        // cannot load 8 bytes), fixed to verify through each position of the checksum word.
        let (src, dst) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(10, 255, 3, 77));
        for len in 0..=80usize {
            let mut bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(151).wrapping_add(7)).collect();
            let whole = pseudo_header_v4_with(src, dst, 6, &bytes);
            assert_eq!(
                verify_pseudo_header_v4(src, dst, 6, &bytes),
                whole == 0xffff,
                "len {len}"
            );
            if len >= 2 {
                let at = (len / 2) & !1;
                bytes[at..at + 2].copy_from_slice(&[0, 0]);
                let field = !pseudo_header_v4_with(src, dst, 6, &bytes);
                bytes[at..at + 2].copy_from_slice(&field.to_be_bytes());
                assert!(verify_pseudo_header_v4(src, dst, 6, &bytes), "len {len} fixed");
                bytes[len - 1] ^= 0x01;
                assert!(
                    !verify_pseudo_header_v4(src, dst, 6, &bytes),
                    "len {len} corrupted last byte"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn data_with_equals_combine(initial in any::<u16>(), bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(data_with(initial, &bytes), combine(&[initial, data(&bytes)]));
        }

        #[test]
        fn pseudo_header_v4_with_equals_combine(src in any::<u32>(), dst in any::<u32>(), protocol in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let whole = pseudo_header_v4_with(src, dst, protocol, &bytes);
            let parts = combine(&[pseudo_header_v4(src, dst, protocol, bytes.len() as u16), data(&bytes)]);
            prop_assert_eq!(whole, parts);
        }

        #[test]
        fn verify_pseudo_header_v4_agrees_with_pseudo_header_v4_with(src in any::<u32>(), dst in any::<u32>(), protocol in any::<u8>(), mut bytes in proptest::collection::vec(any::<u8>(), 2..300), fix in any::<bool>()) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            if fix {
                // Make the sum verify, as a received segment's does: fill the first word like a checksum field.
                bytes[0..2].copy_from_slice(&[0, 0]);
                let field = !pseudo_header_v4_with(src, dst, protocol, &bytes);
                bytes[0..2].copy_from_slice(&field.to_be_bytes());
            }
            let whole = pseudo_header_v4_with(src, dst, protocol, &bytes);
            prop_assert_eq!(verify_pseudo_header_v4(src, dst, protocol, &bytes), whole == 0xffff);
            if fix {
                prop_assert!(verify_pseudo_header_v4(src, dst, protocol, &bytes));
            }
        }

        #[test]
        fn fold_any_accumulator_matches_modulo(acc in any::<u64>()) {
            let folded = fold(acc);
            let expected = (acc % 0xffff) as u16;
            prop_assert!(folded == expected || (folded == 0xffff && expected == 0 && acc != 0));
            prop_assert_eq!(folded == 0, acc == 0);
        }

        #[test]
        fn data_any_bytes_matches_reference(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            // 0x0000 and 0xffff are the same number in ones-complement; compare modulo that.
            let fast = data(&bytes);
            let slow = reference(&bytes);
            prop_assert!(fast == slow || (fast == 0xffff && slow == 0) || (fast == 0 && slow == 0xffff));
        }

        #[test]
        fn combine_of_split_equals_whole(bytes in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..300) {
            let cut = (cut * 2).min(bytes.len() & !1);
            let whole = data(&bytes);
            let parts = combine(&[data(&bytes[..cut]), data(&bytes[cut..])]);
            prop_assert!(whole == parts || (whole ^ parts) == 0xffff && (whole == 0 || parts == 0));
        }

        #[test]
        fn update_equals_recompute(mut bytes in proptest::collection::vec(any::<u8>(), 4..200), word in any::<u16>(), at in 0usize..100) {
            let len = bytes.len() & !1;
            bytes.truncate(len);
            let at = (at * 2) % len;
            let before = !data(&bytes);
            let old = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            bytes[at..at + 2].copy_from_slice(&word.to_be_bytes());
            let after = !data(&bytes);
            let incremental = update(before, old, word);
            // Both are valid encodings of the same sum: equal, or +0/-0 of each other.
            prop_assert!(incremental == after || (incremental ^ after) == 0xffff && (after == 0 || after == 0xffff));
        }
    }
}
