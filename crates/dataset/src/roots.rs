//! Turning a root (a folder, a zip archive, or a folder inside a zip archive written as
//! `data.zip/inner/folder`) into the list of files in its class folders.
//!
//! Layout: `<root>/<class>/<images...>` (images may sit in subfolders of a class folder). When a
//! root holds nothing but one folder without files of its own (`data.zip` holding `dataset/…`),
//! that folder is stepped into, as often as needed. Hidden entries (dot files, `__MACOSX`) are
//! skipped; anything that resolves outside the root is rejected.

use crate::error::{Error, Result};
use crate::filetype::is_hidden_name;
use crate::zip_archive::SharedArchive;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use walkdir::WalkDir;

/// Where one file's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    File(PathBuf),
    ZipEntry {
        archive: SharedArchive,
        index: usize,
    },
}

/// A file found in a class folder, not yet read.
#[derive(Debug)]
pub(crate) struct Candidate {
    /// Path relative to the root, '/'-separated (for zips: the path inside the archive).
    pub rel_path: String,
    /// The class folder's name as spelled in this root.
    pub class_folder: String,
    /// Full path for messages: `<root>/<rel_path>` or `<archive>/<name in archive>`.
    pub display: String,
    pub location: Location,
}

/// A path refused with the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileProblem {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub(crate) struct RootListing {
    pub candidates: Vec<Candidate>,
    /// Every class folder seen, including empty ones, as spelled.
    pub class_folders: BTreeSet<String>,
    pub hidden_skipped: usize,
    /// Files beside the class folders rather than in one.
    pub loose_files: Vec<String>,
    pub rejected: Vec<FileProblem>,
    /// The folder(s) stepped into, '/'-separated, when the root wrapped its class folders.
    pub stepped_into: Option<String>,
}

pub(crate) fn list_root(root: &Path) -> Result<RootListing> {
    if root.is_dir() {
        return list_folder(root);
    }
    if root.is_file() {
        let archive = SharedArchive::open(root).map_err(|error| match error {
            Error::Zip { .. } if !looks_like_zip_name(root) => Error::NotADatasetRoot {
                path: root.to_owned(),
            },
            other => other,
        })?;
        return list_zip(archive, "");
    }
    // `archive.zip/inner/folder`: find the archive among the ancestors.
    for ancestor in root.ancestors().skip(1) {
        if ancestor.is_file() {
            let inner = root
                .strip_prefix(ancestor)
                .map(slash_path)
                .unwrap_or_default();
            let archive = SharedArchive::open(ancestor)?;
            return list_zip(archive, &inner);
        }
        if ancestor.is_dir() {
            break;
        }
    }
    Err(Error::RootNotFound {
        path: root.to_owned(),
    })
}

fn looks_like_zip_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("zip"))
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn list_folder(root: &Path) -> Result<RootListing> {
    let canonical_root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let mut listing = RootListing::default();
    let mut class_level = root.to_owned();
    let mut stepped = Vec::new();
    loop {
        let children = read_dir_sorted(&class_level)?;
        let visible: Vec<&PathBuf> = children
            .iter()
            .filter(|p| !is_hidden_path_name(p))
            .collect();
        let step_into = match visible.as_slice() {
            [only] if only.is_dir() && !only.is_symlink() => {
                let inner = read_dir_sorted(only)?;
                let has_own_files = inner.iter().any(|p| !is_hidden_path_name(p) && !p.is_dir());
                let has_folders = inner.iter().any(|p| !is_hidden_path_name(p) && p.is_dir());
                (!has_own_files && has_folders).then(|| (*only).clone())
            }
            _ => None,
        };
        match step_into {
            Some(inner) => {
                stepped.push(file_name(&inner));
                class_level = inner;
            }
            None => break,
        }
    }
    if !stepped.is_empty() {
        listing.stepped_into = Some(stepped.join("/"));
    }

    for child in read_dir_sorted(&class_level)? {
        let name = file_name(&child);
        let display = child.display().to_string();
        if is_hidden_name(&name) {
            listing.hidden_skipped += 1;
            continue;
        }
        if child.is_symlink() && !resolves_inside(&child, &canonical_root) {
            listing.rejected.push(escape_problem(display));
            continue;
        }
        if !child.is_dir() {
            listing.loose_files.push(display);
            continue;
        }
        listing.class_folders.insert(name.clone());
        walk_class_folder(root, &canonical_root, &child, &name, &mut listing);
    }
    Ok(listing)
}

fn walk_class_folder(
    root: &Path,
    canonical_root: &Path,
    class_dir: &Path,
    class_name: &str,
    listing: &mut RootListing,
) {
    let mut hidden = 0;
    let mut rejected = Vec::new();
    let walker = WalkDir::new(class_dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            if entry.depth() == 0 {
                return true;
            }
            if is_hidden_name(&entry.file_name().to_string_lossy()) {
                hidden += 1;
                return false;
            }
            if entry.path_is_symlink() && !resolves_inside(entry.path(), canonical_root) {
                rejected.push(escape_problem(entry.path().display().to_string()));
                return false;
            }
            true
        });
    let mut found = Vec::new();
    let mut walk_errors = Vec::new();
    for entry in walker {
        match entry {
            Ok(entry) if entry.file_type().is_file() => found.push(entry),
            Ok(_) => {}
            Err(error) => walk_errors.push(FileProblem {
                path: error.path().map_or_else(
                    || class_dir.display().to_string(),
                    |p| p.display().to_string(),
                ),
                reason: error.to_string(),
            }),
        }
    }
    listing.hidden_skipped += hidden;
    listing.rejected.extend(rejected);
    listing.rejected.extend(walk_errors);
    for entry in found {
        let path = entry.path().to_owned();
        let rel_path = path
            .strip_prefix(root)
            .map(slash_path)
            .unwrap_or_else(|_| slash_path(&path));
        listing.candidates.push(Candidate {
            rel_path,
            class_folder: class_name.to_owned(),
            display: path.display().to_string(),
            location: Location::File(path),
        });
    }
}

fn escape_problem(path: String) -> FileProblem {
    FileProblem {
        path,
        reason: "symbolic link leads outside the dataset root".to_owned(),
    }
}

fn resolves_inside(path: &Path, canonical_root: &Path) -> bool {
    path.canonicalize()
        .is_ok_and(|target| target.starts_with(canonical_root))
}

fn is_hidden_path_name(path: &Path) -> bool {
    is_hidden_name(&file_name(path))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io(dir, e))?;
    paths.sort();
    Ok(paths)
}

/// A zip entry name split into '/'-separated parts, or why it is refused.
fn zip_entry_parts(name: &str) -> std::result::Result<Vec<&str>, &'static str> {
    let is_absolute = name.starts_with('/')
        || Path::new(name)
            .components()
            .any(|c| matches!(c, Component::Prefix(_)))
        || name
            .split('/')
            .next()
            .is_some_and(|first| first.len() == 2 && first.ends_with(':'));
    if is_absolute {
        return Err("absolute path inside the archive");
    }
    let parts: Vec<&str> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err("path inside the archive climbs out with `..`");
    }
    Ok(parts)
}

/// A visible entry of an archive, inside the folder the root names.
struct ZipEntry {
    index: usize,
    /// The entry's name as written in the archive (for messages).
    name: String,
    /// The normalised path inside the archive, '/'-separated.
    rel_path: String,
    /// The path's parts below the folder the root names.
    below: Vec<String>,
    is_dir: bool,
}

fn list_zip(archive: SharedArchive, inner: &str) -> Result<RootListing> {
    let mut listing = RootListing::default();
    let entries = entries_below(&archive, inner, &mut listing)?;
    let stepped = wrapping_folders(&entries);
    if !stepped.is_empty() {
        listing.stepped_into = Some(stepped.join("/"));
    }
    file_zip_entries(&archive, entries, stepped.len(), &mut listing);
    listing
        .candidates
        .sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(listing)
}

/// The visible entries inside the folder `inner` of the archive ('' for all of it). Entries
/// that escape or are symbolic links are rejected into `listing`, hidden ones counted there
/// (a hidden folder once).
fn entries_below(
    archive: &SharedArchive,
    inner: &str,
    listing: &mut RootListing,
) -> Result<Vec<ZipEntry>> {
    let archive_path = archive.path();
    let inner_parts: Vec<&str> = inner.split('/').filter(|p| !p.is_empty()).collect();
    let mut hidden_prefixes = BTreeSet::new();
    let mut visible = Vec::new();
    let mut inner_seen = inner_parts.is_empty();
    for index in 0..archive.len() {
        let info = archive
            .entry_info(index)
            .map_err(|e| Error::io(archive_path.join(format!("#{index}")), e))?;
        let refuse = |reason: &str| FileProblem {
            path: format!("{}/{}", archive_path.display(), info.name),
            reason: reason.to_owned(),
        };
        let parts = match zip_entry_parts(&info.name) {
            Ok(parts) => parts,
            Err(reason) => {
                listing.rejected.push(refuse(reason));
                continue;
            }
        };
        if !parts.starts_with(&inner_parts) {
            continue;
        }
        inner_seen = true;
        let below: Vec<String> = parts[inner_parts.len()..]
            .iter()
            .map(|p| p.to_string())
            .collect();
        if below.is_empty() {
            continue;
        }
        if let Some(hidden_at) = below.iter().position(|p| is_hidden_name(p)) {
            hidden_prefixes.insert(below[..=hidden_at].join("/"));
            continue;
        }
        if info.is_symlink {
            listing
                .rejected
                .push(refuse("symbolic link inside the archive"));
            continue;
        }
        visible.push(ZipEntry {
            index,
            rel_path: parts.join("/"),
            below,
            is_dir: info.is_dir,
            name: info.name,
        });
    }
    if !inner_seen {
        return Err(Error::NotInArchive {
            archive: archive_path.to_owned(),
            inner: inner.to_owned(),
        });
    }
    listing.hidden_skipped = hidden_prefixes.len();
    Ok(visible)
}

/// The lone folders that wrap the class folders, outermost first: stepped into as often as
/// the archive nests them.
fn wrapping_folders(entries: &[ZipEntry]) -> Vec<String> {
    let mut stepped = Vec::new();
    loop {
        let depth = stepped.len();
        // Top-level folder name -> (has files of its own, has folders).
        let mut tops = BTreeMap::<&str, (bool, bool)>::new();
        let mut top_level_file = false;
        for entry in entries {
            let rest = &entry.below[depth..];
            match rest {
                [] => {}
                [_] if !entry.is_dir => top_level_file = true,
                [first, ..] => {
                    let slot = tops.entry(first.as_str()).or_default();
                    if rest.len() == 2 && !entry.is_dir {
                        slot.0 = true;
                    }
                    if rest.len() >= 3 || (rest.len() == 2 && entry.is_dir) {
                        slot.1 = true;
                    }
                }
            }
        }
        match (top_level_file, tops.len(), tops.iter().next()) {
            (false, 1, Some((only, (false, true)))) => stepped.push(only.to_string()),
            _ => return stepped,
        }
    }
}

/// Sorts the entries `depth` folders down into class folders, their files (candidates) and
/// loose files beside them.
fn file_zip_entries(
    archive: &SharedArchive,
    entries: Vec<ZipEntry>,
    depth: usize,
    listing: &mut RootListing,
) {
    for entry in entries {
        let rest = &entry.below[depth..];
        let display = format!("{}/{}", archive.path().display(), entry.name);
        match (rest, entry.is_dir) {
            ([], _) => {}
            ([_], false) => listing.loose_files.push(display),
            ([class, ..], true) => {
                listing.class_folders.insert(class.clone());
            }
            ([class, ..], false) => {
                listing.class_folders.insert(class.clone());
                listing.candidates.push(Candidate {
                    rel_path: entry.rel_path,
                    class_folder: class.clone(),
                    display,
                    location: Location::ZipEntry {
                        archive: archive.clone(),
                        index: entry.index,
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_names_that_escape_are_refused() {
        assert!(zip_entry_parts("../evil.png").is_err());
        assert!(zip_entry_parts("a/../../evil.png").is_err());
        assert!(zip_entry_parts("/etc/passwd").is_err());
        assert!(zip_entry_parts("C:/evil.png").is_err());
        assert_eq!(
            zip_entry_parts("a/./b/c.png").unwrap(),
            vec!["a", "b", "c.png"]
        );
    }
}
