//! Train/validation/test splits and small subsets, stratified per class and repeatable: each
//! class gets its own ChaCha generator seeded from the run's seed and the class name, so the same
//! seed gives the same split on every machine, and adding a class leaves the others' split alone.

use crate::error::{Error, Result};
use crate::manifest::{Manifest, Subset};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Indices into `Manifest::entries`, each list ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

impl Split {
    pub fn get(&self, subset: Subset) -> &[usize] {
        match subset {
            Subset::Train => &self.train,
            Subset::Validation => &self.validation,
            Subset::Test => &self.test,
        }
    }
}

/// Splits a manifest by seed, per class. Every class with at least 2 images gets at least one
/// validation image when `validation_fraction > 0`, and keeps at least one training image.
///
/// With explicit subsets (entries carrying [`Subset`]), those are respected: entries marked
/// validation/test stay there, and a fraction is drawn from the training entries only for a
/// subset that no entry names (e.g. explicit train and test folders, validation drawn by seed).
pub fn split(
    manifest: &Manifest,
    validation_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Result<Split> {
    check_fraction("validation fraction", validation_fraction)?;
    check_fraction("test fraction", test_fraction)?;
    if validation_fraction + test_fraction >= 1.0 {
        return Err(Error::InvalidSplit {
            reason: format!(
                "validation fraction {validation_fraction} + test fraction {test_fraction} leaves nothing to train on"
            ),
        });
    }
    let mut result = Split::default();
    let mut pool = Vec::new();
    let explicit = manifest.has_explicit_subsets();
    let named = |subset| manifest.entries.iter().any(|e| e.subset == Some(subset));
    let (draw_validation, draw_test) = if explicit {
        (!named(Subset::Validation), !named(Subset::Test))
    } else {
        (true, true)
    };
    for (index, entry) in manifest.entries.iter().enumerate() {
        match entry.subset {
            Some(Subset::Validation) => result.validation.push(index),
            Some(Subset::Test) => result.test.push(index),
            Some(Subset::Train) | None => pool.push(index),
        }
    }
    let validation_fraction = if draw_validation {
        validation_fraction
    } else {
        0.0
    };
    let test_fraction = if draw_test { test_fraction } else { 0.0 };

    for (class, mut members) in by_class(manifest, &pool) {
        shuffle(&mut members, seed, "split", &manifest.classes[class]);
        let (validation, test) = split_counts(members.len(), validation_fraction, test_fraction);
        result.validation.extend_from_slice(&members[..validation]);
        result
            .test
            .extend_from_slice(&members[validation..validation + test]);
        result
            .train
            .extend_from_slice(&members[validation + test..]);
    }
    result.train.sort_unstable();
    result.validation.sort_unstable();
    result.test.sort_unstable();
    Ok(result)
}

fn check_fraction(what: &str, value: f64) -> Result<()> {
    if value.is_finite() && (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidSplit {
            reason: format!("{what} must be at least 0 and below 1, got {value}"),
        })
    }
}

/// How many of a class's `n` images go to validation and test.
fn split_counts(n: usize, validation_fraction: f64, test_fraction: f64) -> (usize, usize) {
    let mut validation = (n as f64 * validation_fraction).round() as usize;
    let mut test = (n as f64 * test_fraction).round() as usize;
    if validation_fraction > 0.0 && n >= 2 {
        validation = validation.max(1);
    }
    if test_fraction > 0.0 && n >= validation + 2 {
        test = test.max(1);
    }
    // Keep at least one training image; give up test images first.
    while validation + test >= n && validation + test > 0 {
        if test > 0 {
            test -= 1;
        } else {
            validation -= 1;
        }
    }
    (validation, test)
}

/// At most `max_images` entries of the whole manifest, in proportion to class sizes (every class
/// keeps at least one image while `max_images` allows). Ascending indices.
pub fn stratified_subset(manifest: &Manifest, max_images: usize, seed: u64) -> Vec<usize> {
    let all: Vec<usize> = (0..manifest.entries.len()).collect();
    stratified_subset_of(manifest, &all, max_images, seed)
}

/// Like [`stratified_subset`], drawn from `pool` (e.g. a split's training indices).
pub fn stratified_subset_of(
    manifest: &Manifest,
    pool: &[usize],
    max_images: usize,
    seed: u64,
) -> Vec<usize> {
    let groups = by_class(manifest, pool);
    let total: usize = groups.iter().map(|(_, members)| members.len()).sum();
    if max_images >= total {
        let mut all: Vec<usize> = groups.into_iter().flat_map(|(_, m)| m).collect();
        all.sort_unstable();
        return all;
    }
    let quotas: Vec<f64> = groups
        .iter()
        .map(|(_, members)| max_images as f64 * members.len() as f64 / total as f64)
        .collect();
    let mut taken: Vec<usize> = groups
        .iter()
        .zip(&quotas)
        .map(|((_, members), quota)| {
            let floor = quota.floor() as usize;
            let at_least_one = usize::from(max_images >= groups.len());
            floor.max(at_least_one).min(members.len())
        })
        .collect();
    // Bring the sum to exactly max_images: add where the quota is most underserved, remove
    // where it is most overserved (never below one image per class when that is affordable).
    let mut sum: usize = taken.iter().sum();
    while sum < max_images {
        let best = (0..groups.len())
            .filter(|&c| taken[c] < groups[c].1.len())
            .max_by(|&a, &b| {
                (quotas[a] - taken[a] as f64).total_cmp(&(quotas[b] - taken[b] as f64))
            });
        let Some(class) = best else { break };
        taken[class] += 1;
        sum += 1;
    }
    while sum > max_images {
        let floor = usize::from(max_images >= groups.len());
        let best = (0..groups.len())
            .filter(|&c| taken[c] > floor)
            .max_by(|&a, &b| {
                (taken[a] as f64 - quotas[a]).total_cmp(&(taken[b] as f64 - quotas[b]))
            });
        let Some(class) = best else { break };
        taken[class] -= 1;
        sum -= 1;
    }
    let mut chosen = Vec::with_capacity(max_images);
    for ((class, mut members), count) in groups.into_iter().zip(taken) {
        shuffle(&mut members, seed, "subset", &manifest.classes[class]);
        chosen.extend_from_slice(&members[..count]);
    }
    chosen.sort_unstable();
    chosen
}

/// `pool` grouped by class (classes in manifest order, members ascending), empty classes left out.
fn by_class(manifest: &Manifest, pool: &[usize]) -> Vec<(usize, Vec<usize>)> {
    let mut groups = vec![Vec::new(); manifest.classes.len()];
    for &index in pool {
        if let Some(group) = manifest
            .entries
            .get(index)
            .and_then(|e| groups.get_mut(e.class as usize))
        {
            group.push(index);
        }
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, members)| !members.is_empty())
        .map(|(class, mut members)| {
            members.sort_unstable();
            (class, members)
        })
        .collect()
}

fn shuffle(members: &mut [usize], seed: u64, purpose: &str, class_name: &str) {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(purpose.as_bytes());
    hasher.update(&[0]);
    hasher.update(class_name.as_bytes());
    let mut rng = ChaCha8Rng::from_seed(*hasher.finalize().as_bytes());
    members.shuffle(&mut rng);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_a_training_image_and_a_validation_image() {
        assert_eq!(split_counts(1, 0.2, 0.0), (0, 0));
        assert_eq!(split_counts(2, 0.2, 0.0), (1, 0));
        assert_eq!(split_counts(2, 0.2, 0.2), (1, 0));
        assert_eq!(split_counts(3, 0.2, 0.2), (1, 1));
        assert_eq!(split_counts(10, 0.2, 0.1), (2, 1));
        assert_eq!(split_counts(100, 0.0, 0.0), (0, 0));
    }
}
