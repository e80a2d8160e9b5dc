//! How close each path's backbone gradients are to exact arithmetic:
//! `gradient_accuracy <conv4|resnet12> <images> <size> [image-stream]` builds the backbone three times with the
//! suite's seeded parameters (seed 11) — candle's stock ops in f32, the fast path in f32, the stock
//! ops in f64 as the reference — runs the same seeded images (the benches' stream, 21 unless given)
//! through each in training mode, and
//! back-propagates Σ r·features for a seeded r. Prints, per parameter, ‖g − g₆₄‖₂ / ‖g₆₄‖₂ for both
//! f32 paths (the measurement behind `benches/RESULTS.md`'s gradient-accuracy table; the
//! integration test `backbones.rs` checks the same at a small size).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use fewshot::backbones::{Backbone, BackboneConfig};
use fewshot::layers::OpsPath;
use fewshot::model::fast_ops_check::l2_relative;

#[path = "../benches/shared/protonet_step.rs"]
mod protonet_step;
use protonet_step::{parse_backbone, seeded};

#[global_allocator]
static ALLOCATOR: fewshot::allocator::MiMalloc = fewshot::allocator::MiMalloc;

fn main() {
    fewshot::allocator::keep_freed_pages();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: gradient_accuracy <conv4|resnet12> <images> <size> [image-stream]";
    let parsed = (|| {
        let kind = parse_backbone(args.get(1)?).ok()?;
        let images: usize = args.get(2)?.parse().ok().filter(|&n| n > 1)?;
        let size: usize = args.get(3)?.parse().ok().filter(|&n| n >= 16)?;
        let stream: u64 = match args.get(4) {
            Some(s) => s.parse().ok()?,
            None => 21,
        };
        Some((kind, images, size, stream))
    })();
    let Some((kind, images, size, stream)) = parsed.filter(|_| (4..=5).contains(&args.len()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut config = BackboneConfig::default_for(kind, 3);
    config.taps = vec![4];
    config.pool = 1;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let stock = Backbone::new(&config, vb).unwrap();
    fewshot::model::init::seeded_init(&varmap, 11).unwrap();
    let mut varmap64 = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap64, DType::F64, &Device::Cpu);
    let reference = Backbone::new(&config, vb).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        varmap64
            .set_one(name, var.to_dtype(DType::F64).unwrap())
            .unwrap();
    }
    let mut fast_config = config.clone();
    fast_config.ops = OpsPath::Fast;
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let fast = Backbone::new(&fast_config, vb).unwrap();
    let x = seeded(&[images, 3, size, size], stream);
    let x64 = x.to_dtype(DType::F64).unwrap();
    let out_stock = stock.features(&config, &x, true).unwrap().maps;
    let out_fast = fast.features(&fast_config, &x, true).unwrap().maps;
    let out64 = reference.features(&config, &x64, true).unwrap().maps;
    let r = seeded(out_stock.dims(), 22);
    let r64 = r.to_dtype(DType::F64).unwrap();
    let backward =
        |out: Tensor, r: &Tensor| (out * r).unwrap().sum_all().unwrap().backward().unwrap();
    let (grads_stock, grads_fast) = (backward(out_stock, &r), backward(out_fast, &r));
    let grads64 = backward(out64, &r64);
    let vars = varmap.data().lock().unwrap();
    let vars64 = varmap64.data().lock().unwrap();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    println!("{:<32} {:>12} {:>12}", "parameter", "fast", "stock");
    let (mut worst_fast, mut worst_stock) = (0f64, 0f64);
    for name in names {
        let var = &vars[name];
        let (Some(f), Some(s), Some(want)) = (
            grads_fast.get(var),
            grads_stock.get(var),
            grads64.get(&vars64[name]),
        ) else {
            continue;
        };
        let (f, s) = (l2_relative(f, want).unwrap(), l2_relative(s, want).unwrap());
        println!("{name:<32} {f:>12.3e} {s:>12.3e}");
        worst_fast = worst_fast.max(f);
        worst_stock = worst_stock.max(s);
    }
    println!(
        "RESULT gradient_accuracy backbone={} images={images} size={size} stream={stream} worst_fast={worst_fast:.3e} worst_stock={worst_stock:.3e}",
        args[1]
    );
}
