//! Deterministic pseudo-random bytes for tests (xorshift): incompressible
//! enough for codec tests, the same for a seed on every run. Standalone (no
//! crate paths) so that the integration tests include it too
//! (`#[path = "../src/test_nar/noise.rs"]`).

/// `len` bytes from `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
