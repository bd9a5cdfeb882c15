//! Property: any bytes given as an image decode to exactly the training size or fail naming the
//! file; never a panic or an allocation past the pixel limit (seeded mutants of a real PNG,
//! JPEG, GIF and BMP, a bounded run).

use std::io::Cursor;

use easel_engine::pipeline::decode::decode_rgb_chw;
use easel_test_support::mutations::mutants;

#[test]
fn mutated_images_decode_to_the_training_size_or_fail_by_name() {
    let image = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]));
    for (seed, format) in [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::Gif,
        image::ImageFormat::Bmp,
    ]
    .into_iter()
    .enumerate()
    {
        let mut valid = Cursor::new(Vec::new());
        image.write_to(&mut valid, format).unwrap();
        for (index, mutant) in mutants(valid.get_ref(), 400, 40 + seed as u64)
            .into_iter()
            .enumerate()
        {
            let name = format!("{format:?}-{index}");
            match decode_rgb_chw(&mutant, &name, 1_000_000, 16, 16) {
                Ok(pixels) => assert_eq!(pixels.len(), 3 * 16 * 16, "{name}"),
                Err(error) => assert!(error.to_string().contains(&name), "{name}: {error}"),
            }
        }
    }
}
