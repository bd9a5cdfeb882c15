//! What counts as hidden, and what counts as an image: by extension first, then by magic bytes
//! for files whose extension says nothing (images saved without one are common).

use image::ImageFormat;

/// Extensions of the formats Easel decodes.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "jpe", "png", "webp", "gif", "bmp"];

/// Dot files and folders, and the resource-fork folder macOS puts into zip archives.
pub fn is_hidden_name(name: &str) -> bool {
    name.starts_with('.') || name == "__MACOSX"
}

pub fn has_image_extension(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => IMAGE_EXTENSIONS
            .iter()
            .any(|known| ext.eq_ignore_ascii_case(known)),
        _ => false,
    }
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// An image format this build decodes.
    Image(ImageFormat),
    /// An image format recognised but not decoded (e.g. TIFF): worth telling the user.
    UnsupportedImage(ImageFormat),
    NotAnImage,
}

pub fn sniff(head: &[u8]) -> Sniffed {
    match image::guess_format(head) {
        Ok(format) if format.reading_enabled() => Sniffed::Image(format),
        Ok(format) => Sniffed::UnsupportedImage(format),
        Err(_) => Sniffed::NotAnImage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_case_insensitive_and_need_a_stem() {
        assert!(has_image_extension("a.JPG"));
        assert!(has_image_extension("b.webp"));
        assert!(!has_image_extension(".png"));
        assert!(!has_image_extension("notes.txt"));
        assert!(!has_image_extension("png"));
    }

    #[test]
    fn hidden_names() {
        assert!(is_hidden_name(".DS_Store"));
        assert!(is_hidden_name("__MACOSX"));
        assert!(!is_hidden_name("cat.png"));
    }

    #[test]
    fn sniff_tells_png_from_text() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n0000"),
            Sniffed::Image(ImageFormat::Png)
        );
        assert_eq!(sniff(b"hello world"), Sniffed::NotAnImage);
        assert!(matches!(
            sniff(b"II*\x00rest"),
            Sniffed::UnsupportedImage(ImageFormat::Tiff)
        ));
    }
}
