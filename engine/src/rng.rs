//! Seeded randomness: the only source of random choices in protocol code.
//!
//! Every random decision (the first queue a producer tries, client instance ids, jitter, the
//! shuffle of name-server addresses) draws from an [`Rng`] created from a seed, so that a
//! simulation run replays exactly from its seed. ChaCha8 is used because its output for a
//! given seed is fixed by its specification, so recorded seeds keep reproducing across
//! dependency upgrades.

use std::sync::{Arc, Mutex};

use rand::{Rng as _, RngExt as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded, thread-safe pseudo-random generator.
#[derive(Debug)]
pub struct Rng {
    inner: Mutex<ChaCha8Rng>,
}

/// The generator shared by the components of one process or simulated node.
pub type SharedRng = Arc<Rng>;

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn from_seed(seed: u64) -> Self {
        Self {
            inner: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// A shared generator whose whole output is determined by `seed`.
    pub fn shared(seed: u64) -> SharedRng {
        Arc::new(Self::from_seed(seed))
    }

    /// An independent generator for a sub-component, seeded from this one, so that adding
    /// draws in one component does not shift the draws of another.
    pub fn fork(&self) -> Rng {
        Rng::from_seed(self.next_u64())
    }

    /// A uniformly distributed 64-bit value.
    pub fn next_u64(&self) -> u64 {
        self.lock().next_u64()
    }

    /// A uniformly distributed value in `range` (which must not be empty).
    pub fn below(&self, bound: u64) -> u64 {
        assert!(bound > 0, "Rng::below needs a positive bound");
        self.lock().random_range(0..bound)
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&self, p: f64) -> bool {
        self.lock().random_bool(p.clamp(0.0, 1.0))
    }

    /// Shuffles `items` in place.
    pub fn shuffle<T>(&self, items: &mut [T]) {
        let mut rng = self.lock();
        // Fisher–Yates, written out so the draw sequence depends only on this file.
        for i in (1..items.len()).rev() {
            let j = rng.random_range(0..=i);
            items.swap(i, j);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChaCha8Rng> {
        // A panic while drawing a number cannot leave the generator half-updated in a way that
        // matters, so a poisoned lock is recovered rather than propagated.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_sequence() {
        let a = Rng::from_seed(42);
        let b = Rng::from_seed(42);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
    }

    #[test]
    fn shuffle_is_a_permutation_and_reproducible() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        Rng::from_seed(7).shuffle(&mut a);
        Rng::from_seed(7).shuffle(&mut b);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_in_range() {
        let rng = Rng::from_seed(1);
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
