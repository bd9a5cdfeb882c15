//! Image folders made on the spot, one folder per class.

use std::path::{Path, PathBuf};

/// Two classes a small CNN separates at once: `dark` and `light` textured `side`x`side` PNGs,
/// `per_class` of each, named `000.png`, `001.png`, ... The same pixels every time.
pub fn dark_and_light_dataset(root: &Path, per_class: u32, side: u32) {
    for (class, base) in [("dark", 30u32), ("light", 200u32)] {
        let folder = root.join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for index in 0..per_class {
            let image = image::RgbImage::from_fn(side, side, |x, y| {
                let texture = (x * 7 + y * 13 + index * 5) % 40;
                let value = (base + texture) as u8;
                image::Rgb([value, value.saturating_sub(10), value])
            });
            image.save(folder.join(format!("{index:03}.png"))).unwrap();
        }
    }
}

/// Noise PNGs (incompressible, so uploads move every byte): classes `a` and `b` under
/// `dir/noise`, `per_class` images of `side`x`side` each, the same pixels for the same `seed`.
pub fn noise_dataset(dir: &Path, per_class: usize, side: u32, seed: u64) -> PathBuf {
    noise_dataset_named(dir, per_class, side, seed, 0)
}

/// Like [`noise_dataset`], each file named by `name_chars` random letters and digits (and its
/// index): long names that do not compress make a large manifest from few images.
pub fn noise_dataset_named(
    dir: &Path,
    per_class: usize,
    side: u32,
    seed: u64,
    name_chars: usize,
) -> PathBuf {
    use rand::{Rng, SeedableRng};
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    let root = dir.join("noise");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for class in ["a", "b"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let image = image::RgbImage::from_fn(side, side, |_, _| image::Rgb(rng.random()));
            let name: String = (0..name_chars)
                .map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())]))
                .collect();
            image
                .save(root.join(class).join(format!("{name}{i}.png")))
                .unwrap();
        }
    }
    root
}

/// The first `per_class` images of the first `classes` classes of the real sample
/// ([`crate::sample_dataset`]), resized to `side`x`side` RGB PNGs under `root/<class>/`: a
/// dataset whose files are already at the model's size, so every reader of them (Easel, ONNX
/// Runtime in Python) sees the same pixels without resizing them its own way.
pub fn sample_digits_at(root: &Path, classes: usize, per_class: usize, side: u32) {
    let sample = crate::sample_dataset();
    let mut class_dirs: Vec<PathBuf> = std::fs::read_dir(&sample)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    class_dirs.sort();
    for class_dir in class_dirs.into_iter().take(classes) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class_dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "png"))
            .collect();
        files.sort();
        let out = root.join(class_dir.file_name().unwrap());
        std::fs::create_dir_all(&out).unwrap();
        for file in files.into_iter().take(per_class) {
            let resized = image::open(&file)
                .unwrap()
                .resize_exact(side, side, image::imageops::FilterType::Triangle)
                .to_rgb8();
            resized.save(out.join(file.file_name().unwrap())).unwrap();
        }
    }
}
