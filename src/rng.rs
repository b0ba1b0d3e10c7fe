//! Seed derivation: every random draw of a session comes from generators
//! seeded from (run seed, session index), so the content of a session never
//! depends on execution order, batch size, thread count or sharding.
//!
//! ChaCha8 is used because its output stream is specified and stable across
//! platforms and `rand_chacha` releases of the same major version.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator type behind every seeded draw.
pub type SessionRng = ChaCha8Rng;

/// SplitMix64 finaliser: a bijective mix, so distinct inputs never collide
/// and neighbouring session indexes get unrelated seeds.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of session `index` in a run seeded with `run_seed`.
pub fn session_seed(run_seed: u64, index: u64) -> u64 {
    mix64(mix64(run_seed) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

/// Independent streams inside one session. Separate streams keep, say, the
/// latent draw unchanged when a generation consumes a different number of
/// random numbers.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Session-level latent variables.
    SessionLatents,
    /// Turn-level latent variables of user turn `n`.
    TurnLatents(u32),
    /// Token sampling of the user simulator at user turn `n`.
    UserSampling(u32),
    /// Token sampling of the system at its reply `n`.
    SystemSampling(u32),
    /// The target length of user turn `n` (its own stream, so turning the
    /// length latent on or off leaves every other draw as it was).
    TurnLength(u32),
    /// Token sampling of user turn `n`'s `k`-th resample (`k` ≥ 1), after
    /// the role guard rejected the draw before it.
    UserResample(u32, u8),
    /// The exemplars shown at user turn `n`.
    Exemplars(u32),
    /// The real dialogues of the transcript prefix: a run-level draw (seed
    /// it with the run seed), so sessions share the prefix.
    TranscriptPrefix,
    /// The real seeker whose typing rates the session takes (`[style]`).
    Style,
    /// Which style rules user turn `n` shows.
    TurnStyle(u32),
    /// Token sampling of best-of-N candidate `k` (`k` ≥ 1; candidate 0 is
    /// the draw's own stream) of user turn `n`'s draw `r` (0: the first
    /// draw, `r` ≥ 1: the guard's `r`-th resample).
    UserCandidate(u32, u8, u8),
    /// Whether the system opens the conversation
    /// (`conversation.system_opens`).
    SystemOpens,
    /// The first word of user turn `n` (`[first_word]`; its own stream, so
    /// turning it on or off leaves every other draw as it was).
    TurnFirstWord(u32),
}

impl Stream {
    fn code(self) -> u64 {
        match self {
            Stream::SessionLatents => 1,
            Stream::TurnLatents(n) => (2 << 32) | u64::from(n),
            Stream::UserSampling(n) => (3 << 32) | u64::from(n),
            Stream::SystemSampling(n) => (4 << 32) | u64::from(n),
            Stream::TurnLength(n) => (5 << 32) | u64::from(n),
            Stream::UserResample(n, k) => (6 << 40) | (u64::from(k) << 32) | u64::from(n),
            Stream::Exemplars(n) => (7 << 32) | u64::from(n),
            Stream::TranscriptPrefix => 8,
            Stream::Style => 9,
            Stream::TurnStyle(n) => (10 << 32) | u64::from(n),
            Stream::UserCandidate(n, r, k) => {
                (11 << 48) | (u64::from(r) << 40) | (u64::from(k) << 32) | u64::from(n)
            }
            Stream::SystemOpens => 12,
            Stream::TurnFirstWord(n) => (13 << 32) | u64::from(n),
        }
    }
}

/// Seed of one stream of a session.
pub fn stream_seed(session_seed: u64, stream: Stream) -> u64 {
    mix64(session_seed ^ mix64(stream.code()))
}

/// A generator for one stream of a session.
pub fn stream_rng(session_seed: u64, stream: Stream) -> SessionRng {
    SessionRng::seed_from_u64(stream_seed(session_seed, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn seeds_differ_by_index_and_run() {
        let a = session_seed(42, 0);
        assert_ne!(a, session_seed(42, 1));
        assert_ne!(a, session_seed(43, 0));
        assert_eq!(a, session_seed(42, 0));
    }

    #[test]
    fn streams_are_independent_and_reproducible() {
        let s = session_seed(7, 3);
        let x: u64 = stream_rng(s, Stream::UserSampling(0)).random();
        let y: u64 = stream_rng(s, Stream::UserSampling(1)).random();
        let z: u64 = stream_rng(s, Stream::SystemSampling(0)).random();
        assert_ne!(x, y);
        assert_ne!(x, z);
        assert_eq!(x, stream_rng(s, Stream::UserSampling(0)).random::<u64>());
    }
}
