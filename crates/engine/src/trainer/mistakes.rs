//! The images the best weights get wrong on the held-out splits (validation and test): each with
//! its path, true class and most likely classes, the most confident mistakes first, and small
//! JPEG thumbnails of those the run page shows.

use super::data::RunData;
use super::feature_cache::FeatureCache;
use super::trainee::Trainee;
use super::validation::TopClasses;
use crate::Result;
use easel_dataset::Manifest;
use easel_report::{MAX_THUMBNAILS, Mistake};
use serde::Serialize;
use tch::{Device, Tensor};

/// Longest side of a thumbnail, in pixels: enough to recognise the image on the page, small
/// enough that 200 of them stay around a megabyte.
const THUMBNAIL_SIDE: u32 = 128;
const THUMBNAIL_QUALITY: u8 = 85;

/// One wrong image: where it is and the classes the weights ranked first, by index.
#[derive(Debug, Clone)]
pub struct WrongImage {
    pub split: &'static str,
    pub path: String,
    /// The image's place in the manifest.
    index: i64,
    /// Its true class.
    label: usize,
    /// The most likely classes with their probabilities, most likely first (never empty).
    ranked: Vec<(usize, f64)>,
}

impl WrongImage {
    fn predicted(&self) -> (usize, f64) {
        self.ranked[0]
    }
}

/// One wrong image as `mistakes.json` lists it: classes by name.
#[derive(Debug, Serialize)]
pub struct ListedMistake<'a> {
    split: &'static str,
    path: &'a str,
    #[serde(rename = "true")]
    true_class: &'a str,
    predicted: &'a str,
    probability: f64,
    /// The most likely classes, most likely first.
    top: Vec<(&'a str, f64)>,
}

/// The mistakes on the held-out splits.
pub struct Mistakes {
    /// Every wrong image, the most confident first.
    pub wrong: Vec<WrongImage>,
    /// Images examined (validation and test).
    pub examined: usize,
}

/// The mistakes of the trainee's (best) weights on the validation and test images, from their
/// most likely classes when the run has them (the best epoch's validation, the test evaluation),
/// else from a pass over the split.
pub fn find_mistakes(
    trainee: &Trainee,
    data: &RunData,
    features: Option<&FeatureCache>,
    manifest: &Manifest,
    known: [Option<&TopClasses>; 2],
) -> Result<Mistakes> {
    let mut wrong = Vec::new();
    let mut examined = 0;
    let splits = [("validation", &data.validation), ("test", &data.test)];
    for ((split, indices), known) in splits.into_iter().zip(known) {
        if indices.is_empty() {
            continue;
        }
        examined += indices.len();
        let computed;
        let top = match known {
            Some(top) => top,
            None => {
                computed = data.evaluate(trainee, features, indices).top;
                &computed
            }
        };
        let classes: Vec<Vec<i64>> = Vec::try_from(top.classes.to_device(Device::Cpu))?;
        let probabilities: Vec<Vec<f32>> = Vec::try_from(top.probabilities.to_device(Device::Cpu))?;
        for ((&index, classes), probabilities) in indices.iter().zip(classes).zip(probabilities) {
            let entry = &manifest.entries[index as usize];
            let label = entry.class as usize;
            let ranked: Vec<(usize, f64)> = classes
                .iter()
                .zip(&probabilities)
                .map(|(&class, &p)| (class as usize, f64::from(p)))
                .collect();
            if ranked.first().is_none_or(|&(class, _)| class == label) {
                continue;
            }
            wrong.push(WrongImage {
                split,
                path: entry.path.clone(),
                index,
                label,
                ranked,
            });
        }
    }
    wrong.sort_by(|a, b| b.predicted().1.total_cmp(&a.predicted().1));
    Ok(Mistakes { wrong, examined })
}

impl Mistakes {
    /// Every mistake's (true, predicted) classes.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        self.wrong
            .iter()
            .map(|image| (image.label, image.predicted().0))
            .collect()
    }

    /// Every mistake as `mistakes.json` lists it, the most confident first.
    pub fn listing<'a>(&'a self, classes: &'a [String]) -> Vec<ListedMistake<'a>> {
        let name = |class: usize| classes[class].as_str();
        self.wrong
            .iter()
            .map(|image| ListedMistake {
                split: image.split,
                path: &image.path,
                true_class: name(image.label),
                predicted: name(image.predicted().0),
                probability: image.predicted().1,
                top: image.ranked.iter().map(|&(c, p)| (name(c), p)).collect(),
            })
            .collect()
    }

    /// The most confident mistakes (at most [`MAX_THUMBNAILS`]) with thumbnails, for the page.
    pub fn shown(&self, data: &RunData) -> Vec<Mistake> {
        self.wrong
            .iter()
            .take(MAX_THUMBNAILS)
            .map(|image| Mistake {
                split: image.split,
                path: image.path.clone(),
                true_class: image.label,
                top: image.ranked.clone(),
                thumbnail_jpeg: thumbnail(&data.source.pixels(image.index)),
            })
            .collect()
    }
}

/// A JPEG of u8 CHW pixels, its longest side at most [`THUMBNAIL_SIDE`]; empty if it cannot be
/// encoded (the page then shows the caption alone).
fn thumbnail(pixels: &Tensor) -> Vec<u8> {
    let size = pixels.size();
    let (height, width) = (size[1] as u32, size[2] as u32);
    let hwc: Vec<u8> =
        Vec::try_from(pixels.permute([1, 2, 0]).contiguous().flatten(0, -1)).unwrap_or_default();
    let Some(image) = image::RgbImage::from_raw(width, height, hwc) else {
        return Vec::new();
    };
    let image = if width.max(height) > THUMBNAIL_SIDE {
        image::DynamicImage::ImageRgb8(image)
            .resize(
                THUMBNAIL_SIDE,
                THUMBNAIL_SIDE,
                image::imageops::FilterType::Triangle,
            )
            .to_rgb8()
    } else {
        image
    };
    let mut jpeg = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_QUALITY);
    match image.write_with_encoder(encoder) {
        Ok(()) => jpeg,
        Err(_) => Vec::new(),
    }
}
