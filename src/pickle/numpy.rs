//! numpy arrays inside a pickle. numpy pickles an array as
//! `_reconstruct(ndarray, (0,), b'b')` + BUILD `(version, shape, dtype, is_fortran, raw)` (protocols
//! 2–4, numpy 1.x and 2.x, which renamed `numpy.core` to `numpy._core`), or, with protocol 5, as
//! `_frombuffer(buffer, dtype, shape, order)`. A dtype is `dtype(code, False, True)` + BUILD
//! `(3, byteorder, ...)`. Object arrays carry a list of Python objects instead of raw bytes.

use std::sync::Arc;

use super::value::Value;

#[derive(Debug, Clone)]
pub struct NdArray {
    /// numpy's dtype code, e.g. `u1`, `i8`, `f4`, `O`.
    pub dtype: String,
    /// `<`, `>`, `|` (not applicable) or `=` (native).
    pub byteorder: char,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    pub data: ArrayData,
}

#[derive(Debug, Clone)]
pub enum ArrayData {
    Bytes(Arc<[u8]>),
    Objects(Vec<Value>),
}

impl NdArray {
    /// Recognises a numpy array in a value tree.
    pub fn from_value(value: &Value) -> Result<NdArray, String> {
        match value {
            Value::Build { object, state } => {
                let Value::Reduce { callable, .. } = object.as_ref() else {
                    return Err(format!(
                        "expected an ndarray, found a built {}",
                        object.kind()
                    ));
                };
                let name = callable.global_name().unwrap_or_default();
                if !name.ends_with("multiarray._reconstruct") {
                    return Err(format!("expected numpy's _reconstruct, found {name:?}"));
                }
                let s = state.as_seq().ok_or("ndarray state is not a tuple")?;
                if s.len() != 5 {
                    return Err(format!("ndarray state has {} fields, expected 5", s.len()));
                }
                let shape = shape_of(&s[1])?;
                let (dtype, byteorder) = dtype_of(&s[2])?;
                let fortran_order = matches!(s[3], Value::Bool(true) | Value::Int(1));
                let data = match &s[4] {
                    Value::Str(t) => ArrayData::Bytes(Arc::from(latin1_bytes(t)?)),
                    Value::List(items) => ArrayData::Objects(items.clone()),
                    other => ArrayData::Bytes(
                        other
                            .to_bytes()
                            .ok_or_else(|| format!("ndarray data is a {}", other.kind()))?,
                    ),
                };
                let array = NdArray {
                    dtype,
                    byteorder,
                    shape,
                    fortran_order,
                    data,
                };
                array.check_length()?;
                Ok(array)
            }
            Value::Reduce { callable, args } => {
                let name = callable.global_name().unwrap_or_default();
                if !name.ends_with("numeric._frombuffer") {
                    return Err(format!("expected an ndarray, found a call of {name:?}"));
                }
                let a = args.as_seq().ok_or("_frombuffer args are not a tuple")?;
                if a.len() != 4 {
                    return Err("_frombuffer takes 4 arguments".into());
                }
                let bytes = a[0].to_bytes().ok_or("_frombuffer buffer is not bytes")?;
                let (dtype, byteorder) = dtype_of(&a[1])?;
                let shape = shape_of(&a[2])?;
                let fortran_order = a[3].as_text() == Some("F");
                let array = NdArray {
                    dtype,
                    byteorder,
                    shape,
                    fortran_order,
                    data: ArrayData::Bytes(bytes),
                };
                array.check_length()?;
                Ok(array)
            }
            other => Err(format!("expected an ndarray, found a {}", other.kind())),
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per element of a numeric dtype.
    pub fn item_size(&self) -> Option<usize> {
        let digits: String = self.dtype.chars().skip(1).collect();
        match self.dtype.chars().next()? {
            'u' | 'i' | 'f' | 'b' => digits.parse().ok(),
            '?' => Some(1),
            _ => None,
        }
    }

    fn check_length(&self) -> Result<(), String> {
        match (&self.data, self.item_size()) {
            (ArrayData::Bytes(b), Some(size)) if b.len() != self.len() * size => Err(format!(
                "ndarray of shape {:?} and dtype {} needs {} bytes, has {}",
                self.shape,
                self.dtype,
                self.len() * size,
                b.len()
            )),
            (ArrayData::Objects(o), _) if o.len() != self.len() => Err(format!(
                "object ndarray of shape {:?} holds {} items",
                self.shape,
                o.len()
            )),
            _ => Ok(()),
        }
    }

    /// The raw bytes of a `uint8` array in C order.
    pub fn as_u8(&self) -> Result<&Arc<[u8]>, String> {
        match (&self.data, self.dtype.as_str()) {
            (ArrayData::Bytes(b), "u1") if !self.fortran_order => Ok(b),
            _ => Err(format!(
                "expected a C-ordered uint8 array, found dtype {} (fortran order: {})",
                self.dtype, self.fortran_order
            )),
        }
    }

    /// The elements of an integer array (any width, either byte order) as i64.
    pub fn to_i64(&self) -> Result<Vec<i64>, String> {
        let ArrayData::Bytes(bytes) = &self.data else {
            if let ArrayData::Objects(items) = &self.data {
                return items
                    .iter()
                    .map(|v| {
                        v.as_int()
                            .ok_or_else(|| format!("non-integer {}", v.kind()))
                    })
                    .collect();
            }
            unreachable!()
        };
        let size = self.item_size().ok_or("not a numeric dtype")?;
        let signed = self.dtype.starts_with('i');
        if !(self.dtype.starts_with('i') || self.dtype.starts_with('u')) {
            return Err(format!(
                "expected an integer array, found dtype {}",
                self.dtype
            ));
        }
        let big = self.byteorder == '>';
        Ok(bytes
            .chunks_exact(size)
            .map(|c| {
                let mut buf = [0u8; 8];
                if big {
                    for (i, b) in c.iter().rev().enumerate() {
                        buf[i] = *b;
                    }
                } else {
                    buf[..size].copy_from_slice(c);
                }
                if signed && buf[size - 1] & 0x80 != 0 {
                    for b in buf.iter_mut().skip(size) {
                        *b = 0xff;
                    }
                }
                i64::from_le_bytes(buf)
            })
            .collect())
    }
}

fn shape_of(v: &Value) -> Result<Vec<usize>, String> {
    v.as_usize_seq()
        .ok_or_else(|| "shape is not a tuple of non-negative ints".to_string())
}

/// `dtype('u1', False, True)` with its BUILD state → ("u1", byte order).
fn dtype_of(v: &Value) -> Result<(String, char), String> {
    let (reduce, state) = match v {
        Value::Build { object, state } => (object.as_ref(), Some(state.as_ref())),
        other => (other, None),
    };
    let Value::Reduce { callable, args } = reduce else {
        return Err(format!("dtype is a {}", reduce.kind()));
    };
    if !callable
        .global_name()
        .unwrap_or_default()
        .ends_with("dtype")
    {
        return Err("dtype is not numpy.dtype(...)".into());
    }
    let code = args
        .as_seq()
        .and_then(|a| a.first())
        .and_then(|c| c.as_text())
        .ok_or("dtype has no type code")?;
    let (code, mut order) = match code.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (&code[1..], c),
        _ => (code, '|'),
    };
    if let Some(order_field) = state
        .and_then(|s| s.as_seq())
        .and_then(|s| s.get(1))
        .and_then(|o| o.as_text())
    {
        order = order_field.chars().next().unwrap_or(order);
    }
    if order == '=' {
        order = '<';
    }
    Ok((code.to_string(), order))
}

/// Python 2 pickles read with `encoding='latin1'` give str; map it back to its bytes.
fn latin1_bytes(text: &str) -> Result<Vec<u8>, String> {
    text.chars()
        .map(|c| u8::try_from(c as u32).map_err(|_| "non-latin1 array data".to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn reads_a_uint8_array_and_an_int64_array_as_numpy_1_writes_them() {
        // pickle.dumps({'x': np.arange(6, dtype=np.uint8).reshape(2, 3),
        //               'y': np.array([1, -2], dtype=np.int64)}, protocol=4) with numpy 1.26.
        let data = include_bytes!("../../tests/fixtures/numpy_arrays_protocol4.pkl");
        check_x_and_y(data);
    }

    #[test]
    fn reads_protocol_5_frombuffer_arrays() {
        // The same dict as above, pickle.dumps(..., protocol=5): numpy uses _frombuffer there.
        let data = include_bytes!("../../tests/fixtures/numpy_arrays_protocol5.pkl");
        check_x_and_y(data);
    }

    /// The dict `{'x': uint8 [[0, 1, 2], [3, 4, 5]], 'y': int [1, -2]}` the fixtures pickle.
    fn check_x_and_y(data: &[u8]) {
        let v = parse(data).unwrap();
        let x = NdArray::from_value(v.get("x").unwrap()).unwrap();
        assert_eq!(x.shape, vec![2, 3]);
        assert_eq!(&x.as_u8().unwrap()[..], &[0, 1, 2, 3, 4, 5]);
        let y = NdArray::from_value(v.get("y").unwrap()).unwrap();
        assert_eq!(y.to_i64().unwrap(), vec![1, -2]);
    }

    #[test]
    fn reads_protocol_2_lists_of_arrays_and_big_endian_ints() {
        // pickle.dumps({'items': [np.frombuffer(b'\x89PNGab', np.uint8), np.frombuffer(b'\x89PNGcde', np.uint8)],
        //               'be': np.array([3, -4], dtype='>i4')}, protocol=2) with numpy 1.26.
        let data = include_bytes!("../../tests/fixtures/numpy_arrays_protocol2.pkl");
        let v = parse(data).unwrap();
        let items = v.get("items").unwrap().as_seq().unwrap();
        let second = NdArray::from_value(&items[1]).unwrap();
        assert_eq!(&second.as_u8().unwrap()[..], b"\x89PNGcde");
        let be = NdArray::from_value(v.get("be").unwrap()).unwrap();
        assert_eq!(be.byteorder, '>');
        assert_eq!(be.to_i64().unwrap(), vec![3, -4]);
    }
}
