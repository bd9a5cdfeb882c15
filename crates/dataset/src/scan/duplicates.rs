//! Files with identical content: grouped for the report, and with `ScanOptions::deduplicate`
//! one copy kept per class and subset.

use super::Scanned;
use crate::manifest::Subset;
use crate::report::{DuplicateFile, DuplicateGroup, ScanReport};

/// Reports every group of identical files (by digest, each group's files sorted by path) and,
/// with `deduplicate`, marks all but the first copy filed under the same class and subset as
/// dropped.
pub(super) fn group(report: &mut ScanReport, scanned: &mut Scanned, deduplicate: bool) {
    let found = &scanned.found;
    let mut by_digest: Vec<usize> = (0..found.len()).collect();
    // A stable sort: the copies of one digest stay in the order they were found.
    by_digest.sort_by(|&a, &b| found[a].digest.cmp(&found[b].digest));
    let groups: Vec<&[usize]> = by_digest
        .chunk_by(|&a, &b| found[a].digest == found[b].digest)
        .filter(|copies| copies.len() >= 2)
        .collect();
    for copies in groups {
        let digest = scanned.found[copies[0]].digest.clone();
        let files = copies_by_path(scanned, copies);
        if deduplicate {
            report.duplicates_dropped += drop_extra_copies(scanned, &files);
        }
        report.duplicates.push(DuplicateGroup {
            digest,
            files: files.into_iter().map(|(_, file)| file).collect(),
        });
    }
}

/// The copies (index into `found`, as reported), sorted by path.
fn copies_by_path(scanned: &Scanned, copies: &[usize]) -> Vec<(usize, DuplicateFile)> {
    let mut files: Vec<(usize, DuplicateFile)> = copies
        .iter()
        .map(|&index| {
            let item = &scanned.found[index];
            let file = DuplicateFile {
                path: item.candidate.display.clone(),
                class: scanned.classes.name(&item.class_key).to_owned(),
                subset: scanned.roots[item.root].subset,
            };
            (index, file)
        })
        .collect();
    files.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    files
}

/// Marks every copy after the first of its class and subset as dropped; returns how many.
fn drop_extra_copies(scanned: &mut Scanned, files: &[(usize, DuplicateFile)]) -> usize {
    let mut kept: Vec<(String, Option<Subset>)> = Vec::new();
    let mut dropped = 0;
    for (index, file) in files {
        let item = &mut scanned.found[*index];
        let key = (item.class_key.clone(), file.subset);
        if kept.contains(&key) {
            item.dropped = true;
            dropped += 1;
        } else {
            kept.push(key);
        }
    }
    dropped
}
