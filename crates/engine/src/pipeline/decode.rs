//! One image file to RGB u8 pixels at the training size, in CHW order (what the model reads).

use crate::{Error, Result};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use std::io::Cursor;

/// Decodes `bytes` (JPEG, PNG, WebP, GIF, BMP), applies the EXIF orientation, converts grayscale
/// or RGBA to RGB (alpha dropped, as PIL's `convert("RGB")` does) and resizes to `height`x`width`.
/// The pixel limit is checked from the header, before any pixel is decoded.
pub fn decode_rgb_chw(
    bytes: &[u8],
    name: &str,
    max_pixels: u64,
    height: u32,
    width: u32,
) -> Result<Vec<u8>> {
    let image_error = |err: &dyn std::fmt::Display| Error::Image {
        name: name.to_string(),
        message: err.to_string(),
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_error(&e))?;
    let mut limits = Limits::default();
    // Our own pixel limit is the real guard; the allocation cap only has to admit what it allows
    // (16-bit RGBA is 8 bytes a pixel).
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(512 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| image_error(&e))?;
    let (image_width, image_height) = decoder.dimensions();
    let pixels = u64::from(image_width) * u64::from(image_height);
    if pixels > max_pixels {
        return Err(Error::ImageTooLarge {
            name: name.to_string(),
            width: image_width,
            height: image_height,
            pixels,
            limit: max_pixels,
        });
    }
    if pixels == 0 {
        return Err(image_error(&"image has no pixels"));
    }
    let orientation = decoder.orientation().map_err(|e| image_error(&e))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| image_error(&e))?;
    image.apply_orientation(orientation);
    if image.width() != width || image.height() != height {
        image = image.resize_exact(width, height, FilterType::Triangle);
    }
    Ok(hwc_to_chw(
        &image.into_rgb8().into_raw(),
        height as usize,
        width as usize,
    ))
}

fn hwc_to_chw(hwc: &[u8], height: usize, width: usize) -> Vec<u8> {
    let plane = height * width;
    let mut chw = vec![0u8; 3 * plane];
    for (pixel, rgb) in hwc.chunks_exact(3).enumerate() {
        chw[pixel] = rgb[0];
        chw[plane + pixel] = rgb[1];
        chw[2 * plane + pixel] = rgb[2];
    }
    chw
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgba, RgbaImage};

    fn png(image: DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn grayscale_becomes_three_equal_planes() {
        let gray = GrayImage::from_fn(4, 4, |x, y| Luma([(x * 10 + y) as u8]));
        let chw = decode_rgb_chw(&png(gray.into()), "g.png", 1000, 4, 4).unwrap();
        assert_eq!(chw.len(), 48);
        assert_eq!(chw[..16], chw[16..32]);
        assert_eq!(chw[..16], chw[32..]);
        assert_eq!(chw[1], 10); // x = 1, y = 0
    }

    #[test]
    fn rgba_drops_alpha_and_resizes() {
        let rgba = RgbaImage::from_pixel(8, 6, Rgba([200, 100, 50, 0]));
        let chw = decode_rgb_chw(&png(rgba.into()), "a.png", 1000, 3, 5).unwrap();
        assert_eq!(chw.len(), 3 * 3 * 5);
        assert!(chw[..15].iter().all(|&v| v == 200));
        assert!(chw[15..30].iter().all(|&v| v == 100));
        assert!(chw[30..].iter().all(|&v| v == 50));
    }

    #[test]
    fn too_many_pixels_is_refused_before_decoding() {
        let big = GrayImage::new(100, 50);
        let err = decode_rgb_chw(&png(big.into()), "class/huge.png", 4999, 8, 8).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("class/huge.png"), "{message}");
        assert!(message.contains("100x50"), "{message}");
        assert!(message.contains("4999"), "{message}");
    }

    #[test]
    fn garbage_names_the_file() {
        let err = decode_rgb_chw(b"not an image", "x/bad.jpg", 1000, 8, 8).unwrap_err();
        assert!(err.to_string().contains("x/bad.jpg"));
    }
}
