//! Bounded, seeded mutation of valid inputs for the readers' property tests: every reader of
//! outside bytes (spec, manifest, chunks, pickle, torch archive, image headers) must answer each
//! mutant with a value or an error, never a panic, a hang or an allocation the input cannot back.
//! Deterministic, so a failure names the seed and mutant that reproduce it.

use std::ops::Range;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `count` mutants of `valid`, each one to four edits: a flipped bit, an interesting byte
/// (0, 0xff, a digit, a quote, a bracket), a cut, a removed or repeated run, the end cut off.
pub fn mutants(valid: &[u8], count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut bytes = valid.to_vec();
            for _ in 0..rng.random_range(1..=4) {
                mutate(&mut bytes, &mut rng);
            }
            bytes
        })
        .collect()
}

const INTERESTING: &[u8] = b"\x00\xff\x7f\x80019\"'[]{}=.-\n#e";

fn mutate(bytes: &mut Vec<u8>, rng: &mut StdRng) {
    if bytes.is_empty() {
        bytes.push(INTERESTING[rng.random_range(0..INTERESTING.len())]);
        return;
    }
    let at = rng.random_range(0..bytes.len());
    match rng.random_range(0..6) {
        0 => bytes[at] ^= 1 << rng.random_range(0..8),
        1 => bytes[at] = INTERESTING[rng.random_range(0..INTERESTING.len())],
        2 => {
            let end = (at + rng.random_range(1..=16)).min(bytes.len());
            bytes.drain(at..end);
        }
        3 => {
            let end = (at + rng.random_range(1..=16)).min(bytes.len());
            let run = bytes[at..end].to_vec();
            for _ in 0..rng.random_range(1..=8) {
                bytes.splice(at..at, run.iter().copied());
            }
        }
        4 => bytes.truncate(at),
        _ => bytes.insert(at, INTERESTING[rng.random_range(0..INTERESTING.len())]),
    }
}

/// Whether `mutant` is `valid` with bytes changed inside `ranges` only (so what those bytes
/// mean is all a reader may read differently).
pub fn only_changed_within(valid: &[u8], mutant: &[u8], ranges: &[Range<usize>]) -> bool {
    mutant.len() == valid.len()
        && valid
            .iter()
            .zip(mutant)
            .enumerate()
            .all(|(at, (a, b))| a == b || ranges.iter().any(|range| range.contains(&at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_are_repeatable_and_differ_from_the_input() {
        let valid = b"name = \"x\"\n[train]\nepochs = 3\n";
        let first = mutants(valid, 50, 7);
        assert_eq!(first, mutants(valid, 50, 7));
        assert!(first.iter().filter(|m| m.as_slice() != valid).count() > 45);
    }
}
