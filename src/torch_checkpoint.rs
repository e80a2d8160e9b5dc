//! Reading PyTorch checkpoints (`torch.save`'s zip format) in Rust, without Python: the archive holds
//! `<name>/data.pkl` (a pickle whose tensors are `torch._utils._rebuild_tensor_v2(storage, offset,
//! size, stride, …)` calls, storages referenced by persistent id `('storage', torch.FloatStorage, key,
//! location, numel)`) and one raw little-endian file per storage, `<name>/data/<key>`. Strides are
//! honoured, so non-contiguous tensors and several tensors sharing one storage read correctly.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::pickle::{parse, Value};

/// One tensor, its values in row-major order (widened to f64; int64 values beyond 2^53 lose precision).
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    /// `float32`, `float16`, `bfloat16`, `float64`, `int64`, `int32`, `int16`, `int8`, `uint8` or `bool`.
    pub dtype: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// Reads every tensor of a state dict saved with `torch.save(model.state_dict(), path)` (or wrapped as
/// `{"params": state_dict}` / `{"state_dict": …}`, as several few-shot codebases save it).
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, TorchTensor>> {
    let bad = |message: String| Error::Pickle {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        bad(format!(
            "not a torch zip checkpoint ({e}); legacy (pre-1.6) checkpoints are not supported"
        ))
    })?;
    let mut members: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        members.insert(f.name().to_string(), bytes);
    }
    let pkl_name = members
        .keys()
        .find(|k| k.ends_with("/data.pkl") || *k == "data.pkl")
        .cloned()
        .ok_or_else(|| bad("no data.pkl in the archive".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if let Some(order) = members.get(&format!("{prefix}byteorder")) {
        if order.as_slice() != b"little" {
            return Err(bad("big-endian checkpoints are not supported".into()));
        }
    }
    let root = parse(&members[&pkl_name]).map_err(&bad)?;
    let mut entries = root.as_dict().ok_or_else(|| {
        bad(format!(
            "the pickle holds a {}, not a state dict",
            root.kind()
        ))
    })?;
    // `torch.save(dict(params=model.state_dict()))` (RENet, FEAT) and `{"state_dict": ...}` wrap the
    // state dict in a one-key dict: look inside
    if let [(key, inner)] = entries {
        if matches!(key.as_text(), Some("params" | "state_dict" | "model")) {
            if let Some(d) = inner.as_dict() {
                entries = d;
            }
        }
    }
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        let name = key
            .as_text()
            .ok_or_else(|| bad("a state-dict key is not text".into()))?;
        let tensor = rebuild(value, &members, &prefix).map_err(|m| bad(format!("{name}: {m}")))?;
        out.insert(name.to_string(), tensor);
    }
    Ok(out)
}

fn rebuild(
    value: &Value,
    members: &HashMap<String, Vec<u8>>,
    prefix: &str,
) -> std::result::Result<TorchTensor, String> {
    let Value::Reduce { callable, args } = value else {
        return Err(format!("expected a tensor, found a {}", value.kind()));
    };
    let func = callable.global_name().unwrap_or_default();
    let args = args.as_seq().ok_or("tensor arguments are not a tuple")?;
    if func == "torch._utils._rebuild_parameter" {
        return rebuild(args.first().ok_or("empty parameter")?, members, prefix);
    }
    if func != "torch._utils._rebuild_tensor_v2" {
        return Err(format!("unsupported tensor constructor {func}"));
    }
    let [storage, offset, size, stride, ..] = args else {
        return Err("_rebuild_tensor_v2 needs storage, offset, size and stride".into());
    };
    let Value::PersistentId(pid) = storage else {
        return Err("the storage is not a persistent id".into());
    };
    let pid = pid.as_seq().ok_or("malformed storage id")?;
    let (storage_type, key) = match pid {
        [kind, ty, key, _location, _numel] if kind.as_text() == Some("storage") => (
            ty.global_name().unwrap_or_default(),
            key.as_text().ok_or("storage key is not text")?,
        ),
        _ => return Err("malformed storage id".into()),
    };
    let (dtype, width) = match storage_type.rsplit('.').next().unwrap_or("") {
        "FloatStorage" => ("float32", 4),
        "DoubleStorage" => ("float64", 8),
        "HalfStorage" => ("float16", 2),
        "BFloat16Storage" => ("bfloat16", 2),
        "LongStorage" => ("int64", 8),
        "IntStorage" => ("int32", 4),
        "ShortStorage" => ("int16", 2),
        "CharStorage" => ("int8", 1),
        "ByteStorage" => ("uint8", 1),
        "BoolStorage" => ("bool", 1),
        other => return Err(format!("unsupported storage type {other}")),
    };
    let bytes = members
        .get(&format!("{prefix}data/{key}"))
        .ok_or_else(|| format!("storage {key} is missing from the archive"))?;
    let ints = |v: &Value| -> std::result::Result<Vec<usize>, String> {
        v.as_usize_seq()
            .ok_or_else(|| "bad size or stride: not a tuple of non-negative ints".to_string())
    };
    let shape = ints(size)?;
    let strides = ints(stride)?;
    let offset = offset
        .as_int()
        .and_then(|o| usize::try_from(o).ok())
        .ok_or("bad storage offset")?;
    if strides.len() != shape.len() {
        return Err("size and stride differ in length".into());
    }
    let count: usize = shape.iter().product();
    let mut values = Vec::with_capacity(count);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..count {
        let element = offset
            + index
                .iter()
                .zip(&strides)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        let raw = bytes
            .get(element * width..(element + 1) * width)
            .ok_or_else(|| format!("element {element} is outside storage {key}"))?;
        values.push(decode(dtype, raw));
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(TorchTensor {
        dtype: dtype.to_string(),
        shape,
        values,
    })
}

fn decode(dtype: &str, raw: &[u8]) -> f64 {
    match dtype {
        "float32" => f32::from_le_bytes(raw.try_into().unwrap()) as f64,
        "float64" => f64::from_le_bytes(raw.try_into().unwrap()),
        "float16" => f16_to_f32(u16::from_le_bytes(raw.try_into().unwrap())) as f64,
        "bfloat16" => {
            f32::from_bits((u16::from_le_bytes(raw.try_into().unwrap()) as u32) << 16) as f64
        }
        "int64" => i64::from_le_bytes(raw.try_into().unwrap()) as f64,
        "int32" => i32::from_le_bytes(raw.try_into().unwrap()) as f64,
        "int16" => i16::from_le_bytes(raw.try_into().unwrap()) as f64,
        "int8" => raw[0] as i8 as f64,
        _ => raw[0] as f64,
    }
}

/// IEEE 754 half precision to single.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
