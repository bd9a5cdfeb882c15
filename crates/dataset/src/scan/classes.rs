//! Class folders merged across roots by name, case-insensitively: `Cats` in one root and `cats`
//! in another are one class, spelled as the first root that has it spells it.

use super::{Scanned, TaggedRoot};
use crate::report::{ClassMerge, ClassSource, ScanReport};
use crate::roots::RootListing;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Every class folder of every root, keyed by its lowercase name (so iterated sorted by it).
pub(super) struct ClassFolders {
    by_key: BTreeMap<String, ClassInfo>,
}

struct ClassInfo {
    /// The spelling of the first root that has this class.
    name: String,
    /// Each folder filed under this class: (root index, folder as spelled there).
    sources: Vec<(usize, String)>,
}

impl ClassFolders {
    pub(super) fn merge(listings: &[RootListing]) -> Self {
        let mut by_key: BTreeMap<String, ClassInfo> = BTreeMap::new();
        for (root, listing) in listings.iter().enumerate() {
            for folder in &listing.class_folders {
                let info = by_key
                    .entry(folder.to_lowercase())
                    .or_insert_with(|| ClassInfo {
                        name: folder.clone(),
                        sources: Vec::new(),
                    });
                info.sources.push((root, folder.clone()));
            }
        }
        ClassFolders { by_key }
    }

    /// The class's name as the manifest and the report spell it.
    pub(super) fn name(&self, key: &str) -> &str {
        &self.by_key[key].name
    }
}

/// Puts the classes with at least one usable image into the manifest, sorted by name, and
/// reports the empty ones and the merges worth a warning. Returns each class key's index in the
/// manifest's classes.
pub(super) fn file_classes(report: &mut ScanReport, scanned: &Scanned) -> HashMap<String, u32> {
    let with_images: HashSet<&str> = scanned
        .found
        .iter()
        .map(|found| found.class_key.as_str())
        .collect();
    let mut class_index = HashMap::new();
    for (key, info) in &scanned.classes.by_key {
        if with_images.contains(key.as_str()) {
            class_index.insert(key.clone(), report.manifest.classes.len() as u32);
            report.manifest.classes.push(info.name.clone());
        } else {
            report.empty_classes.push(info.name.clone());
        }
        if let Some(merge) = merge_worth_telling(info, &scanned.roots) {
            report.merged_classes.push(merge);
        }
    }
    class_index
}

/// A class spelled differently somewhere, or (when subsets are drawn by seed) gathered from
/// several roots: the user may not have meant them to be one class. Explicit subset roots are
/// expected to share their classes.
fn merge_worth_telling(info: &ClassInfo, roots: &[TaggedRoot]) -> Option<ClassMerge> {
    let distinct_roots = info.sources.windows(2).any(|w| w[0].0 != w[1].0);
    let respelled = info.sources.iter().any(|(_, folder)| folder != &info.name);
    let is_subset_scan = info
        .sources
        .iter()
        .any(|(root, _)| roots[*root].subset.is_some());
    if !(respelled || (distinct_roots && !is_subset_scan)) {
        return None;
    }
    Some(ClassMerge {
        class: info.name.clone(),
        sources: info
            .sources
            .iter()
            .map(|(root, folder)| ClassSource {
                root: roots[*root].path.display().to_string(),
                folder: folder.clone(),
            })
            .collect(),
    })
}
