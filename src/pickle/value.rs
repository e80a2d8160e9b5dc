//! The value tree a pickle decodes to. Classes are not instantiated: a `GLOBAL` stays a name, a
//! `REDUCE` stays (callable, args) and a `BUILD` stays (object, state), so numpy arrays and torch
//! tensors can be read by looking at their parts, without running any Python.

use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64: little-endian two's-complement bytes, as LONG1/LONG4 hold them.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    /// Python 3 `bytes`/`bytearray`, and Python 2 `str` (which is bytes). Shared, because numpy
    /// pickles can hold hundreds of megabytes in one of these.
    Bytes(Arc<[u8]>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// `module.name`, as GLOBAL or STACK_GLOBAL name it.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` or `cls.__new__(cls, *args)`, not evaluated.
    Reduce {
        callable: Box<Value>,
        args: Box<Value>,
    },
    /// `obj.__setstate__(state)`, not evaluated.
    Build {
        object: Box<Value>,
        state: Box<Value>,
    },
    /// A persistent id (torch uses these for tensor storages).
    PersistentId(Box<Value>),
}

impl Value {
    /// The text of a `str`, or of `bytes` that are valid UTF-8 (Python 2 pickles store names as bytes).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&Arc<[u8]>> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Bytes however they were pickled: `bytes`, or Python 3's protocol-2 spelling
    /// `_codecs.encode(text, 'latin1')`.
    pub fn to_bytes(&self) -> Option<Arc<[u8]>> {
        match self {
            Value::Bytes(b) => Some(b.clone()),
            Value::Reduce { callable, args } if callable.global_name()? == "_codecs.encode" => {
                let a = args.as_seq()?;
                let (Value::Str(text), Some("latin1")) = (a.first()?, a.get(1)?.as_text()) else {
                    return None;
                };
                text.chars()
                    .map(|c| u8::try_from(c as u32).ok())
                    .collect::<Option<Vec<u8>>>()
                    .map(Arc::from)
            }
            _ => None,
        }
    }

    /// Elements of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// A list or tuple of non-negative ints (a shape or strides), as `usize`s; `None` if it is not one.
    pub fn as_usize_seq(&self) -> Option<Vec<usize>> {
        self.as_seq()?
            .iter()
            .map(|d| d.as_int().and_then(|i| usize::try_from(i).ok()))
            .collect()
    }

    /// The entries of a dict, also when it is an `OrderedDict` built by REDUCE + SETITEMS.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            Value::Build { state, .. } => state.as_dict(),
            _ => None,
        }
    }

    /// Looks up a dict entry whose key is the text `key` (as `str` or as Python 2 bytes).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
    }

    /// `module.name` when this is a global.
    pub fn global_name(&self) -> Option<String> {
        match self {
            Value::Global { module, name } => Some(format!("{module}.{name}")),
            _ => None,
        }
    }

    /// A short description for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global { .. } => "global",
            Value::Reduce { .. } => "reduce",
            Value::Build { .. } => "build",
            Value::PersistentId(_) => "persistent id",
        }
    }
}
