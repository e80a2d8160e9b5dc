//! Backbones: ResNet-18's parameter names and shapes are torchvision's (checked against the key
//! list PyTorch wrote), every backbone returns its taps at the documented sizes, and PyTorch weights
//! load into variables by name, with errors that name what is missing or misshapen.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use fewshot::backbones::{load_torch_weights, Backbone, BackboneConfig, BackboneKind};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn resnet18_names_and_shapes_are_torchvisions() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Backbone::new(&BackboneConfig::default_for(BackboneKind::Resnet18, 3), vb).unwrap();
    let ours: BTreeMap<String, Vec<usize>> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    let layout: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("resnet18_torchvision_layout.json")).unwrap(),
    )
    .unwrap();
    let theirs: BTreeMap<String, Vec<usize>> = layout
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("fc.") && !k.ends_with("num_batches_tracked"))
        .map(|(k, v)| {
            (
                k.clone(),
                v["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    // 11,176,512 parameters without fc (METHOD.md §2), excluding BN running statistics
    let params: usize = ours
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(params, 11_176_512);
}

#[test]
fn taps_have_the_documented_sizes_at_84x84() {
    let x = Tensor::zeros((2, 3, 84, 84), DType::F32, &Device::Cpu).unwrap();
    for (kind, channels, side) in [
        (BackboneKind::Resnet18, 1024, 3),
        (BackboneKind::Resnet12, 960, 5),
        (BackboneKind::Conv4, 128, 3),
    ] {
        let config = BackboneConfig::default_for(kind, 3);
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let backbone = Backbone::new(&config, vb).unwrap();
        let f = backbone.features(&config, &x, false).unwrap();
        assert_eq!(f.maps.dims(), &[2, channels, side, side], "{kind:?}");
        assert_eq!(f.channels.iter().sum::<usize>(), channels);
    }
}

#[test]
fn pytorch_weights_load_by_name_and_mismatches_are_named() {
    // variables named like the fixture's entries (its float16 conv weight is widened to f32)
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let _ = vb.pp("net").get((4, 3, 3, 3), "conv1.weight").unwrap();
    let conv = vb
        .pp("net")
        .get((4, 4, 3, 3), "layer1.0.conv1.weight")
        .unwrap();
    let _ = vb.pp("other").get(7, "untouched").unwrap();
    assert_eq!(
        load_torch_weights(&varmap, &fixtures().join("small_state_dict.pth"), "net.").unwrap(),
        2
    );
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("small_state_dict.expected.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<f32> = expected["layer1.0.conv1.weight"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let conv_now = varmap.data().lock().unwrap()["net.layer1.0.conv1.weight"]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(conv_now, want);
    drop(conv);
    // a variable the checkpoint lacks, and one of the wrong shape
    let missing = VarMap::new();
    let vb = VarBuilder::from_varmap(&missing, DType::F32, &Device::Cpu);
    let _ = vb.pp("net").get(3, "layer9.weight").unwrap();
    let text = load_torch_weights(&missing, &fixtures().join("small_state_dict.pth"), "net.")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("1 parameters are missing") && text.contains("layer9.weight"),
        "{text}"
    );
    let wrong = VarMap::new();
    let vb = VarBuilder::from_varmap(&wrong, DType::F32, &Device::Cpu);
    let _ = vb.pp("net").get((3, 3), "conv1.weight").unwrap();
    let text = load_torch_weights(&wrong, &fixtures().join("small_state_dict.pth"), "net.")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("conv1.weight") && text.contains("[4, 3, 3, 3]"),
        "{text}"
    );
}
