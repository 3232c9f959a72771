//! The one source of randomness in this crate: the operating system's generator.

/// Fills `buf` from the OS generator. There is no safe way to go on without randomness
/// (salts, keys), so a failing generator aborts the operation loudly.
pub(crate) fn fill(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the operating system's random number generator failed: {e}");
    }
}
