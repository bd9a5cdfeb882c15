//! Pretrained backbones from safetensors and PyTorch's zip format: loaded when they fit, refused
//! with every problem listed when they do not.

use super::spec;
use crate::Error;
use crate::models::*;
use crate::weights::*;
use easel_spec::{Architecture, Pooling};
use easel_test_support::mutations::only_changed_within;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// vgg11_bn: 8 convs x (weight, bias) + 8 batch norms x (weight, bias, running_mean, running_var).
const VGG11_BN_BACKBONE_TENSORS: usize = 48;
const VGG11_BN_NORMS: [usize; 8] = [1, 5, 9, 12, 16, 19, 23, 26];

fn model_vs(architecture: Architecture, head: &[u32], pooling: Pooling, classes: i64) -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    build_classifier(
        &vs.root(),
        &spec(architecture, head, pooling, 0.0),
        classes,
        (32, 32),
    )
    .unwrap();
    vs
}

/// Running statistics start as zeros/ones; give them values a faulty loader could not fake.
fn scramble_running_stats(vs: &VarStore) {
    tch::no_grad(|| {
        for (name, mut tensor) in vs.variables() {
            if name.ends_with("running_mean") || name.ends_with("running_var") {
                tensor.copy_(&Tensor::rand(tensor.size(), (Kind::Float, Device::Cpu)));
            }
        }
    });
}

fn write(path: &Path, tensors: &BTreeMap<String, Tensor>) {
    let named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    Tensor::write_safetensors(&named, path).unwrap();
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/models/tests/fixtures")
        .join(name)
}

fn weights_problems(result: crate::Result<LoadReport>) -> Vec<String> {
    match result {
        Err(Error::Weights { problems, .. }) => problems,
        other => panic!("expected a weights error, got {other:?}"),
    }
}

#[test]
fn a_saved_backbone_loads_into_a_model_with_another_head_and_stays_frozen() {
    tch::manual_seed(10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backbone.safetensors");
    let source = model_vs(Architecture::Vgg11Bn, &[16], Pooling::Avg, 3);
    scramble_running_stats(&source);
    assert_eq!(
        save_backbone(&source, &path).unwrap(),
        VGG11_BN_BACKBONE_TENSORS
    );
    let saved = read_named_tensors(&path).unwrap();
    assert_eq!(saved.len(), VGG11_BN_BACKBONE_TENSORS);
    assert!(
        saved.keys().all(|name| name.starts_with("features.")),
        "only the backbone is saved"
    );

    tch::manual_seed(11);
    let target_model = spec(Architecture::Vgg11Bn, &[8, 4], Pooling::Flatten, 0.0);
    let mut target = VarStore::new(Device::Cpu);
    let classifier = build_classifier(&target.root(), &target_model, 5, (32, 32)).unwrap();
    let report = load_pretrained_backbone(&mut target, &path).unwrap();
    assert_eq!(report.format, WeightsFormat::Safetensors);
    assert_eq!(report.tensors_loaded, VGG11_BN_BACKBONE_TENSORS);
    assert!(
        report.ignored.is_empty() && report.notes.is_empty(),
        "{report:?}"
    );

    let source_tensors = source.variables();
    for (name, tensor) in target
        .variables()
        .iter()
        .filter(|(name, _)| name.starts_with("features."))
    {
        assert!(
            tensor.equal(&source_tensors[name]),
            "{name} differs after loading"
        );
    }

    set_backbone_trainable(&target, false);
    let counts = parameter_counts(&target_model, 5, (32, 32)).unwrap();
    assert_eq!(count_parameters(&target), (counts.total(), counts.head));
    let images = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let labels = Tensor::from_slice(&[1_i64, 4]);
    classifier
        .forward_t(&images, true)
        .cross_entropy_for_logits(&labels)
        .backward();
    for (name, tensor) in target.variables() {
        let learnable = !name.contains("running_");
        if name.starts_with("features.") {
            assert!(!tensor.requires_grad(), "{name} is frozen");
            assert!(
                !tensor.grad().defined(),
                "{name} got a gradient while frozen"
            );
        } else if learnable {
            assert!(
                tensor.requires_grad() && tensor.grad().defined(),
                "{name} trains"
            );
        }
    }
}

#[test]
fn a_full_state_dict_loads_its_backbone_and_reports_what_it_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.safetensors");
    let source = model_vs(Architecture::Vgg11Bn, &[16], Pooling::Avg, 3);
    scramble_running_stats(&source);
    let mut tensors: BTreeMap<String, Tensor> = source.variables().into_iter().collect();
    for norm in VGG11_BN_NORMS {
        let counter = Tensor::scalar_tensor(7, (Kind::Int64, Device::Cpu));
        tensors.insert(format!("features.{norm}.num_batches_tracked"), counter);
    }
    write(&path, &tensors);

    let mut target = model_vs(Architecture::Vgg11Bn, &[32, 32], Pooling::Flatten, 9);
    let report = load_pretrained_backbone(&mut target, &path).unwrap();
    assert_eq!(report.tensors_loaded, VGG11_BN_BACKBONE_TENSORS);
    assert_eq!(
        report.ignored.len(),
        4 + VGG11_BN_NORMS.len(),
        "{:?}",
        report.ignored
    );
    assert!(report.ignored.contains(&"classifier.0.weight".to_string()));
    assert!(
        report
            .ignored
            .contains(&"features.26.num_batches_tracked".to_string())
    );
    let notes = report.notes.join("\n");
    assert!(
        notes.contains("4 classifier.* tensors") && notes.contains("8 batch-norm"),
        "{notes}"
    );
    let loaded = target.variables();
    assert!(loaded["features.26.running_var"].equal(&tensors["features.26.running_var"]));
}

#[test]
fn a_file_that_does_not_fit_lists_every_offending_tensor_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    let source = model_vs(Architecture::Vgg11, &[8], Pooling::Avg, 3);
    let mut tensors: BTreeMap<String, Tensor> = source.variables().into_iter().collect();
    tensors.remove("features.3.bias");
    tensors.insert(
        "features.0.weight".into(),
        Tensor::zeros([32, 3, 3, 3], (Kind::Float, Device::Cpu)),
    );
    tensors.insert(
        "features.99.weight".into(),
        Tensor::zeros([4], (Kind::Float, Device::Cpu)),
    );
    write(&path, &tensors);

    let mut target = model_vs(Architecture::Vgg11, &[8], Pooling::Avg, 3);
    let before = target.variables()["features.8.weight"].copy();
    let result = load_pretrained_backbone(&mut target, &path);
    let message = result.as_ref().map(|_| ()).unwrap_err().to_string();
    let problems = weights_problems(result);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(message.contains("missing features.3.bias"), "{message}");
    assert!(message.contains(
        "features.0.weight has shape [32, 3, 3, 3] in the file, the model needs [64, 3, 3, 3]"
    ));
    assert!(
        message.contains("unexpected features.99.weight"),
        "{message}"
    );
    assert!(message.contains("broken.safetensors"), "{message}");
    assert!(
        target.variables()["features.8.weight"].equal(&before),
        "a failed load copies nothing"
    );
}

#[test]
fn another_architectures_backbone_is_refused_naming_every_tensor_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vgg13.safetensors");
    let vgg13 = model_vs(Architecture::Vgg13, &[8], Pooling::Avg, 3);
    save_backbone(&vgg13, &path).unwrap();
    let file: BTreeMap<String, Tensor> = read_named_tensors(&path).unwrap().into_iter().collect();

    let mut vgg11 = model_vs(Architecture::Vgg11, &[8], Pooling::Avg, 3);
    let model: BTreeMap<String, Tensor> = vgg11
        .variables()
        .into_iter()
        .filter(|(name, _)| name.starts_with("features."))
        .collect();
    let mut offending: Vec<&String> = model
        .iter()
        .filter(|(name, tensor)| {
            file.get(*name)
                .is_none_or(|found| found.size() != tensor.size())
        })
        .map(|(name, _)| name)
        .collect();
    offending.extend(file.keys().filter(|name| !model.contains_key(*name)));
    assert!(
        offending.len() > 10,
        "vgg13 and vgg11 differ a lot: {offending:?}"
    );

    let problems = weights_problems(load_pretrained_backbone(&mut vgg11, &path));
    assert_eq!(problems.len(), offending.len(), "{problems:?}");
    for name in offending {
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains(&format!("{name} "))),
            "{name} not listed"
        );
    }
}

#[test]
fn a_file_without_torchvision_names_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keras.safetensors");
    let tensors = BTreeMap::from([(
        "conv2d_1.kernel".to_string(),
        Tensor::zeros([3], (Kind::Float, Device::Cpu)),
    )]);
    write(&path, &tensors);
    let mut target = model_vs(Architecture::SmallCnn, &[8], Pooling::Avg, 3);
    let problems = weights_problems(load_pretrained_backbone(&mut target, &path));
    assert!(
        problems[0].contains("no tensor is named features.*")
            && problems[0].contains("conv2d_1.kernel")
    );
    assert_eq!(
        problems.len(),
        1 + 4,
        "the hint plus the four missing small_cnn tensors"
    );
}

#[test]
fn unreadable_files_explain_how_to_convert_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = model_vs(Architecture::SmallCnn, &[8], Pooling::Avg, 3);

    let legacy = dir.path().join("legacy.pth");
    std::fs::write(&legacy, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let message = load_pretrained_backbone(&mut target, &legacy)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("legacy")
            && message.contains("save_file(")
            && message.contains("torch.load("),
        "{message}"
    );

    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, b"these are not weights").unwrap();
    let message = load_pretrained_backbone(&mut target, &text)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("neither") && message.contains("save_file("),
        "{message}"
    );

    let missing = dir.path().join("absent.safetensors");
    assert!(matches!(
        load_pretrained_backbone(&mut target, &missing),
        Err(Error::Io { .. })
    ));

    let headless = VarStore::new(Device::Cpu);
    assert!(matches!(
        save_backbone(&headless, &dir.path().join("x.safetensors")),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn a_torch_saved_state_dict_loads_its_backbone() {
    // Written by fixtures/make_torch_state_dict.py with PyTorch 2.11: tensor k in sorted name
    // order holds arange(numel) / numel + k.
    let path = fixture("small_cnn_state_dict.pt");
    let mut target = model_vs(Architecture::SmallCnn, &[8], Pooling::Avg, 3);
    let report = load_pretrained_backbone(&mut target, &path).unwrap();
    assert_eq!(report.format, WeightsFormat::PytorchArchive);
    assert_eq!(report.tensors_loaded, 4);
    assert_eq!(
        report.ignored,
        vec![
            "classifier.0.bias".to_string(),
            "classifier.0.weight".to_string()
        ]
    );

    let sorted_names = [
        "classifier.0.bias",
        "classifier.0.weight",
        "features.0.bias",
        "features.0.weight",
        "features.3.bias",
        "features.3.weight",
    ];
    let loaded = target.variables();
    for (k, name) in sorted_names
        .iter()
        .enumerate()
        .filter(|(_, name)| name.starts_with("features."))
    {
        let tensor = &loaded[*name];
        let numel = tensor.numel() as i64;
        let expected = (Tensor::arange(numel, (Kind::Float, Device::Cpu)) / numel as f64
            + k as f64)
            .reshape(tensor.size());
        assert!(
            tensor.allclose(&expected, 0.0, 1e-6, false),
            "{name} holds other values"
        );
    }
}

#[test]
fn a_wrapped_data_parallel_checkpoint_is_unwrapped_and_its_views_rebuilt() {
    // {"epoch", "optimizer", "state_dict": OrderedDict("module.features.0.weight": a transposed
    // view at storage offset 4, "module.features.0.bias": bf16, "...num_batches_tracked": int64)}.
    let path = fixture("wrapped_checkpoint.pt");
    let tensors = read_named_tensors(&path).unwrap();
    assert_eq!(tensors.len(), 3, "{:?}", tensors.keys());
    let base = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([3, 4]);
    assert!(tensors["module.features.0.weight"].equal(&base.narrow(0, 1, 2).tr()));
    let bias = &tensors["module.features.0.bias"];
    assert_eq!(bias.kind(), Kind::BFloat16);
    assert_eq!(
        Vec::<f32>::try_from(bias.to_kind(Kind::Float)).unwrap(),
        vec![0.5, -1.5]
    );
    let counter = &tensors["module.features.1.num_batches_tracked"];
    assert_eq!((counter.kind(), counter.int64_value(&[])), (Kind::Int64, 7));

    let mut target = model_vs(Architecture::SmallCnn, &[8], Pooling::Avg, 3);
    let problems = weights_problems(load_pretrained_backbone(&mut target, &path)).join("\n");
    assert!(
        !problems.contains("module."),
        "the DataParallel prefix is removed: {problems}"
    );
    assert!(
        problems.contains("features.0.weight has shape [4, 2] in the file"),
        "{problems}"
    );
    assert!(problems.contains("missing features.3.weight"), "{problems}");
    assert!(!problems.contains("num_batches_tracked"), "{problems}");
}

/// A zip of `(name, bytes)` records, deflated.
fn write_zip(path: &Path, records: &[(&str, &[u8])]) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in records {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// The message of the error `path` gets as a pretrained backbone.
fn refusal(path: &Path) -> String {
    let mut target = model_vs(Architecture::SmallCnn, &[8], Pooling::Avg, 3);
    weights_problems(load_pretrained_backbone(&mut target, path)).join("\n")
}

/// `{"w": _rebuild_tensor_v2(storage "0" of 2 floats, offset 0, size (2,), stride (1,), False, {})}`.
const ARCHIVE_PICKLE: &[u8] = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(\
    (X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQ\
    K\x00K\x02\x85K\x01\x85\x89}tRu.";
/// The values in storage "0".
const STORAGE: [f32; 2] = [1.5, -2.0];
/// Bytes of `ARCHIVE_PICKLE` (offsets from `pickletools.dis`) that cannot change the tensor: the
/// key's character, the device name and the storage's element count, which nothing reads.
const NAME_AND_UNREAD: [Range<usize>; 3] = [9..10, 88..91, 92..93];
/// The payloads of the tensor's offset, size and stride (one byte each).
const OFFSET_AT: usize = 96;
const SIZE_AT: usize = 98;
const STRIDE_AT: usize = 101;
/// Up to here the pickle has described the tensor completely (its REDUCE included).
const TENSOR_DESCRIBED: usize = 107;

/// Reasons a `torch.save` archive whose zip is sound is refused, besides the pickle reader's.
const ARCHIVE_REFUSALS: [&str; 5] = [
    "the pickle holds no dict of tensors",
    "the pickle's dict holds no tensors by name",
    "holds more values than its storage's",
    "out of bounds for storage",
    "specified file not found in archive",
];

/// The first words of each refusal of a weights file.
const WEIGHTS_REFUSALS: [&str; 5] = [
    "cannot read this torch.save archive: ",
    "cannot read this legacy torch.save file: ",
    "this zip archive holds no data.pkl",
    "this is neither a safetensors file nor a PyTorch file",
    "this is a TorchScript archive",
];

/// A weights file read without panicking: its tensors by name, or the problem it was refused for.
fn read_or_refusal(path: &Path, case: &str) -> Result<HashMap<String, Tensor>, String> {
    match std::panic::catch_unwind(|| read_named_tensors(path)) {
        Err(_) => panic!("{case} panicked"),
        Ok(read) => read.map_err(|error| {
            let problems = weights_problems(Err(error));
            assert_eq!(problems.len(), 1, "{case}: {problems:?}");
            let problem = problems.into_iter().next().unwrap_or_default();
            assert!(
                WEIGHTS_REFUSALS
                    .iter()
                    .any(|start| problem.starts_with(start)),
                "{case}: refused for an unforeseen reason: {problem}"
            );
            problem
        }),
    }
}

fn values(tensor: &Tensor) -> Vec<f32> {
    Vec::try_from(tensor.flatten(0, -1)).unwrap()
}

/// What a mutant of `ARCHIVE_PICKLE` that reads back must have read. Every tensor is a float
/// view inside the storage. The original's bytes up to the described tensor give the original
/// tensor; a changed name or unread byte gives the original tensor, maybe under another name;
/// a changed offset, size or stride gives exactly the view they describe, and must be read
/// when that view lies inside the storage.
fn check_read_back(
    mutant: &[u8],
    read: &Result<HashMap<String, Tensor>, String>,
    case: &str,
) -> bool {
    if let Ok(tensors) = read {
        assert!(!tensors.is_empty(), "{case}");
        for (name, tensor) in tensors {
            assert_eq!(tensor.kind(), Kind::Float, "{case}: {name}");
            assert!(tensor.numel() <= STORAGE.len(), "{case}: {name}");
            assert!(
                values(tensor).iter().all(|v| STORAGE.contains(v)),
                "{case}: {name} holds values the storage does not"
            );
        }
    }
    let original = |tensor: &Tensor| tensor.size() == [2] && values(tensor) == STORAGE;
    if mutant[..TENSOR_DESCRIBED.min(mutant.len())] == ARCHIVE_PICKLE[..TENSOR_DESCRIBED]
        && let Ok(tensors) = read
    {
        assert!(tensors.len() == 1 && original(&tensors["w"]), "{case}");
    }
    if only_changed_within(ARCHIVE_PICKLE, mutant, &NAME_AND_UNREAD) {
        if let Ok(tensors) = read {
            assert!(
                tensors.len() == 1 && tensors.values().all(original),
                "{case}"
            );
        }
        return true;
    }
    let view = [
        OFFSET_AT..OFFSET_AT + 1,
        SIZE_AT..SIZE_AT + 1,
        STRIDE_AT..STRIDE_AT + 1,
    ];
    if !only_changed_within(ARCHIVE_PICKLE, mutant, &view) {
        return false;
    }
    let (offset, size, stride) = (
        usize::from(mutant[OFFSET_AT]),
        usize::from(mutant[SIZE_AT]),
        usize::from(mutant[STRIDE_AT]),
    );
    let inside =
        size <= STORAGE.len() && (size == 0 || offset + (size - 1) * stride < STORAGE.len());
    match read {
        Ok(tensors) => {
            assert!(
                inside || size == 0,
                "{case}: a view outside its storage was read"
            );
            let expected: Vec<f32> = (0..size).map(|i| STORAGE[offset + i * stride]).collect();
            assert_eq!(tensors["w"].size(), [size as i64], "{case}");
            assert_eq!(values(&tensors["w"]), expected, "{case}");
        }
        Err(problem) => assert!(
            !inside || size == 0,
            "{case}: a view inside its storage was refused: {problem}"
        ),
    }
    true
}

/// Property: a damaged torch.save archive loads or is refused, never panics or allocates what
/// it cannot back; a refusal gives one of the reader's reasons, and what loads holds what the
/// bytes describe (see `check_read_back`). Mutants of the pickle inside a well-formed zip reach
/// the reader past the zip's checksums; mutants of the whole zip exercise its headers, and the
/// checksums make whatever loads the original. Each outcome comes up many times, so a reader
/// refusing or accepting everything fails (seeded, bounded).
#[test]
fn mutated_weights_archives_load_or_are_refused() {
    use easel_test_support::mutations::mutants;
    let storage: Vec<u8> = STORAGE.iter().flat_map(|v| v.to_le_bytes()).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.pt");
    let archive = |pickle: &[u8]| {
        write_zip(
            &path,
            &[("archive/data.pkl", pickle), ("archive/data/0", &storage)],
        )
    };
    archive(ARCHIVE_PICKLE);
    let valid = read_named_tensors(&path).expect("the unmutated archive loads");
    assert_eq!(valid["w"].size(), [2]);
    assert_eq!(values(&valid["w"]), STORAGE);

    let (mut accepted, mut refused, mut predicted) = (0, 0, 0);
    for (index, mutant) in mutants(ARCHIVE_PICKLE, 6000, 31).into_iter().enumerate() {
        let case = format!("pickle mutant {index}");
        archive(&mutant);
        let read = read_or_refusal(&path, &case);
        match &read {
            Ok(_) => accepted += 1,
            Err(problem) => {
                refused += 1;
                let reason = problem
                    .strip_prefix("cannot read this torch.save archive: ")
                    .unwrap_or_else(|| panic!("{case}: {problem}"));
                assert!(
                    PICKLE_REFUSALS
                        .iter()
                        .chain(&ARCHIVE_REFUSALS)
                        .any(|known| reason.contains(known)),
                    "{case}: refused for an unforeseen reason: {reason}"
                );
            }
        }
        predicted += usize::from(check_read_back(&mutant, &read, &case));
    }
    assert!(
        accepted >= 60 && refused >= 3000 && predicted >= 15,
        "pickle mutants: {accepted} accepted, {refused} refused, {predicted} predicted"
    );

    archive(ARCHIVE_PICKLE);
    let zip = std::fs::read(&path).unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for (index, mutant) in mutants(&zip, 2000, 32).into_iter().enumerate() {
        let case = format!("zip mutant {index}");
        std::fs::write(&path, &mutant).unwrap();
        match read_or_refusal(&path, &case) {
            Ok(tensors) => {
                accepted += 1;
                assert_eq!(tensors.len(), 1, "{case}");
                assert_eq!(values(&tensors["w"]), STORAGE, "{case}");
                assert_eq!(tensors["w"].size(), [2], "{case}");
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted >= 20 && refused >= 1000,
        "zip mutants: {accepted} accepted, {refused} refused"
    );
}

#[test]
fn a_zip_that_is_no_pytorch_file_is_refused_without_reaching_libtorch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dataset.pt");
    write_zip(&path, &[("cats/1.png", b"\x89PNG not really")]);
    let message = refusal(&path);
    assert!(message.contains("holds no data.pkl"), "{message}");
}

#[test]
fn a_torchscript_archive_is_refused_without_reaching_libtorch() {
    // Real `torch.jit.save` output whose `__setstate__` prints a marker and raises: libtorch's
    // loader would run it and fail with "failed in the TorchScript interpreter".
    let path = easel_test_support::torch_fixture("torchscript_setstate.pt");
    let message = refusal(&path);
    assert!(
        message.contains("TorchScript archive")
            && message.contains("never runs code")
            && message.contains("Accepted formats: safetensors")
            && message.contains("torch.jit.load(")
            && !message.contains("TorchScript interpreter"),
        "{message}"
    );
}

#[test]
fn a_record_inflating_far_past_its_archive_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.pt");
    // 64 MiB of zeros deflate to about 64 KiB.
    let zeros = vec![0u8; 64 << 20];
    write_zip(&path, &[("archive/data.pkl", &zeros)]);
    let message = refusal(&path);
    assert!(
        message.contains("archive/data.pkl: the record states 67108864 bytes"),
        "{message}"
    );
}

#[test]
fn a_tensor_viewing_more_values_than_its_storage_is_refused() {
    // {"w": _rebuild_tensor_v2(storage of 1 float, 0, (100000, 100000), (0, 0), False, {})}: a
    // 40 GB tensor from 4 bytes.
    let pickle: &[u8] = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(\
        (X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ\
        K\x00J\xa0\x86\x01\x00J\xa0\x86\x01\x00\x86K\x00K\x00\x86\x89}tRu.";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broadcast.pt");
    write_zip(
        &path,
        &[
            ("archive/data.pkl", pickle),
            ("archive/data/0", &1.0f32.to_le_bytes()),
        ],
    );
    let message = refusal(&path);
    assert!(
        message.contains("w: its shape [100000, 100000] holds more values than its storage's 1"),
        "{message}"
    );
}
