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
