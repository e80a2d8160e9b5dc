//! The PyTorch checkpoint reader on a file written by real PyTorch: mixed dtypes, a scalar, a
//! non-contiguous (transposed) tensor and two tensors sharing one storage, against the values PyTorch
//! itself listed in `small_state_dict.expected.json`.

use std::path::PathBuf;

use fewshot::torch_checkpoint::read_state_dict;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn every_tensor_matches_what_pytorch_wrote() {
    let tensors = read_state_dict(&fixtures().join("small_state_dict.pth")).unwrap();
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("small_state_dict.expected.json")).unwrap(),
    )
    .unwrap();
    let expected = expected.as_object().unwrap();
    assert_eq!(tensors.len(), expected.len());
    for (name, want) in expected {
        let got = &tensors[name];
        assert_eq!(got.dtype, want["dtype"].as_str().unwrap(), "{name}");
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(got.shape, shape, "{name}");
        let values: Vec<f64> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.values, values, "{name}: values differ");
    }
    // shared.b is row 1 of shared.a (one storage, an offset)
    assert_eq!(
        tensors["shared.b"].values[..],
        tensors["shared.a"].values[12..24]
    );
}

#[test]
fn a_non_checkpoint_is_a_clear_error() {
    let text = read_state_dict(&fixtures().join("ravi-train.csv"))
        .unwrap_err()
        .to_string();
    assert!(text.contains("not a torch zip checkpoint"), "{text}");
}

/// Interop: `fewshot eval --torch-backbone` loads another codebase's PyTorch checkpoint into the cell's
/// backbone before scoring. A checkpoint that is not a whole backbone (the fixture holds three of
/// ResNet-18's layers) is refused with the file and the missing names, before any episode runs.
#[test]
fn a_partial_torch_backbone_is_refused_with_the_missing_names() {
    use fewshot::eval::cell_eval::{eval_cell, Weights};
    use fewshot::manifest::cell::CellConfig;
    use fewshot::manifest::model::{BackboneConfig, BackboneKind};

    fewshot::threads::pin_thread_count();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(repo.join("manifests/cells/ci/omniglot-conv4-protonet-5w1s.toml"))
            .unwrap();
    let mut cell = CellConfig::from_toml(&text).unwrap();
    cell.backbone = BackboneConfig::default_for(BackboneKind::Resnet18, 1);
    let runs = tempfile::tempdir().unwrap();
    let paths = fewshot::model::run_context::RunPaths {
        data_dir: crate::real_data::prepared_data_dir(),
        manifests: repo.join("manifests"),
        runs: runs.path().to_path_buf(),
    };
    let weights = Weights::TorchBackbone {
        checkpoint: fixtures().join("small_state_dict.pth"),
        key_map: None,
    };
    let err = eval_cell(&cell, &paths, &candle_core::Device::Cpu, &weights)
        .unwrap_err()
        .to_string();
    assert!(err.contains("small_state_dict.pth"), "{err}");
    assert!(err.contains("missing from the checkpoint"), "{err}");
    assert!(!runs.path().join(cell.hash()).join("eval.json").exists());
}
