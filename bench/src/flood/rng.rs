//! The flood's random numbers: the simulator's seedable generator ([`synack::sim::Rng`], xoshiro256**), so a
//! run can be repeated exactly. Spoofed addresses, ports and sequence numbers only need to look unrelated to a
//! receiver's hash and to differ from frame to frame; nothing here is a secret.

pub use synack::sim::Rng;

/// A seed from the clock, for runs that do not ask for a fixed one.
pub fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// The next 32 random bits of `rng` (its high half, the better-mixed one).
pub fn next_u32(rng: &mut Rng) -> u32 {
    (rng.next_u64() >> 32) as u32
}
