//! The mission's handlers in Rust: `customer_success` and `payments`, by the templates'
//! callables. Each team's binary serves its namespace through the worker runtime's exec
//! bridge: `pnpm exec-worker --namespace payments -- sdks/rust/target/debug/payments-worker`.
pub mod customer_success;
pub mod payments;

/// A short stable id: the same parts always give the same id (FNV-1a, 64 bits; Debian
/// packages no SHA-256 crate, and the ids only need to be stable, not secret).
pub fn stable_id(prefix: &str, parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        // Parts joined with a NUL, as the other languages' ids are.
        let sep: &[u8] = if i > 0 { b"\0" } else { b"" };
        for b in sep.iter().chain(part.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{}_{:016x}", prefix, h)
}
