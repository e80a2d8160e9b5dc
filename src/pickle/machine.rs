//! The pickle virtual machine: reads opcodes and builds a [`Value`] tree. Memoised objects are
//! tracked while they are still on the stack, so a later GET sees the object as it ended up (after
//! its APPENDS/SETITEMS/BUILD), which is what Python's shared references give.

use std::collections::HashMap;
use std::sync::Arc;

use super::value::Value;

struct Item {
    value: Value,
    id: u64,
}

enum MemoEntry {
    /// The object has left the stack; this is its final state.
    Frozen(Value),
    /// The object (by id) is still on the stack and may still change.
    Live(u64),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: HashMap<u64, MemoEntry>,
    live: HashMap<u64, Vec<u64>>,
    next_id: u64,
}

/// Decodes one pickle from `data`. Errors say which opcode at which byte offset failed.
pub fn parse(data: &[u8]) -> Result<Value, String> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        live: HashMap::new(),
        next_id: 0,
    };
    m.run()
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("truncated: wanted {n} bytes at offset {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u64, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as u64)
    }

    fn u32(&mut self) -> Result<u64, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()) as u64)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated: missing newline")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "non-utf8 text argument")?;
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, value: Value) {
        self.next_id += 1;
        self.stack.push(Item {
            value,
            id: self.next_id,
        });
    }

    fn freeze(&mut self, item: &Item) {
        if let Some(keys) = self.live.remove(&item.id) {
            for key in keys {
                self.memo.insert(key, MemoEntry::Frozen(item.value.clone()));
            }
        }
    }

    fn pop(&mut self) -> Result<Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("stack underflow below a mark".into());
        }
        let item = self.stack.pop().ok_or("stack underflow")?;
        self.freeze(&item);
        Ok(item.value)
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("no mark on the stack")?;
        let items: Vec<Item> = self.stack.drain(mark..).collect();
        for item in &items {
            self.freeze(item);
        }
        Ok(items.into_iter().map(|i| i.value).collect())
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("no object above the mark".into());
        }
        self.stack
            .last_mut()
            .map(|i| &mut i.value)
            .ok_or_else(|| "empty stack".to_string())
    }

    /// The memo key of a PUT or GET opcode: a byte (`q`, `h`), 4 bytes (`r`, `j`), a decimal line
    /// (`p`, `g`), or MEMOIZE's next free key (0x94).
    fn memo_key(&mut self, op: u8) -> Result<u64, String> {
        match op {
            b'q' | b'h' => Ok(self.u8()? as u64),
            b'r' | b'j' => self.u32(),
            0x94 => Ok(self.memo.len() as u64),
            _ => {
                let line = self.line()?;
                line.parse()
                    .map_err(|_| format!("bad memo key {line:?} (opcode {:?})", op as char))
            }
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<(), String> {
        let id = self.stack.last().ok_or("PUT on an empty stack")?.id;
        self.memo.insert(key, MemoEntry::Live(id));
        self.live.entry(id).or_default().push(key);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), String> {
        let value = match self.memo.get(&key) {
            Some(MemoEntry::Frozen(v)) => v.clone(),
            Some(MemoEntry::Live(id)) => self
                .stack
                .iter()
                .rev()
                .find(|i| i.id == *id)
                .map(|i| i.value.clone())
                .ok_or("memo refers to a vanished object")?,
            None => return Err(format!("memo key {key} was never stored")),
        };
        self.push(value);
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> Result<Value, String> {
        let n = usize::try_from(n).map_err(|_| "length overflow")?;
        Ok(Value::Bytes(Arc::from(self.take(n)?)))
    }

    fn text(&mut self, n: u64) -> Result<Value, String> {
        let n = usize::try_from(n).map_err(|_| "length overflow")?;
        let raw = self.take(n)?;
        Ok(Value::Str(
            std::str::from_utf8(raw)
                .map_err(|_| "invalid utf-8 in a str")?
                .to_string(),
        ))
    }

    fn long(&mut self, n: u64) -> Result<Value, String> {
        let n = usize::try_from(n).map_err(|_| "length overflow")?;
        let raw = self.take(n)?;
        Ok(long_from_bytes(raw))
    }

    fn set_items(&mut self, pairs: Vec<Value>) -> Result<(), String> {
        if !pairs.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of items".into());
        }
        let target = self.top()?;
        let mut it = pairs.into_iter();
        let entries = match target {
            Value::Dict(d) => d,
            // OrderedDict() and friends: collect the items as the object's dict state.
            Value::Reduce { .. } => {
                let obj = std::mem::replace(target, Value::None);
                *target = Value::Build {
                    object: Box::new(obj),
                    state: Box::new(Value::Dict(Vec::new())),
                };
                match target {
                    Value::Build { state, .. } => match state.as_mut() {
                        Value::Dict(d) => d,
                        _ => unreachable!(),
                    },
                    _ => unreachable!(),
                }
            }
            Value::Build { state, .. } => match state.as_mut() {
                Value::Dict(d) => d,
                other => return Err(format!("SETITEM on a built {}", other.kind())),
            },
            other => return Err(format!("SETITEM on a {}", other.kind())),
        };
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Some(slot) = entries.iter_mut().find(|(key, _)| *key == k) {
                slot.1 = v;
            } else {
                entries.push((k, v));
            }
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.top()? {
            Value::List(l) => {
                l.extend(items);
                Ok(())
            }
            Value::Set(s) => {
                s.extend(items);
                Ok(())
            }
            other => Err(format!("APPEND on a {}", other.kind())),
        }
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8().map_err(|_| "no STOP opcode before the end")?;
            self.step(op)
                .map_err(|e| format!("opcode 0x{op:02x} at byte {at}: {e}"))?;
            if op == b'.' {
                let value = self.pop()?;
                return Ok(value);
            }
        }
    }

    fn step(&mut self, op: u8) -> Result<(), String> {
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("unsupported protocol {proto}"));
                }
            }
            0x95 => {
                self.u64()?; // FRAME: frames are inline, the length is only a hint
            }
            b'.' => {}
            b'(' => self.marks.push(self.stack.len()),
            b'}' => self.push(Value::Dict(Vec::new())),
            b']' => self.push(Value::List(Vec::new())),
            b')' => self.push(Value::Tuple(Vec::new())),
            0x8f => self.push(Value::Set(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(items));
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Value::List(items));
            }
            b'd' => {
                let items = self.pop_mark()?;
                self.push(Value::Dict(Vec::new()));
                self.set_items(items)?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Value::Set(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Value::Tuple(items));
            }
            b'a' => {
                let item = self.pop()?;
                self.append(vec![item])?;
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                self.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = self.u16()?;
                self.push(Value::Int(v as i64));
            }
            0x8a => {
                let n = self.u8()? as u64;
                let v = self.long(n)?;
                self.push(v);
            }
            0x8b => {
                let n = self.u32()?;
                let v = self.long(n)?;
                self.push(v);
            }
            b'I' => {
                let line = self.line()?;
                let v = match line {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    _ => Value::Int(line.parse().map_err(|_| format!("bad INT {line:?}"))?),
                };
                self.push(v);
            }
            b'L' => {
                let line = self.line()?.trim_end_matches('L');
                let v = line.parse().map_err(|_| format!("bad LONG {line:?}"))?;
                self.push(Value::Int(v));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                self.push(Value::Float(v));
            }
            b'F' => {
                let line = self.line()?;
                let v = line.parse().map_err(|_| format!("bad FLOAT {line:?}"))?;
                self.push(Value::Float(v));
            }
            b'X' => {
                let n = self.u32()?;
                let v = self.text(n)?;
                self.push(v);
            }
            0x8c => {
                let n = self.u8()? as u64;
                let v = self.text(n)?;
                self.push(v);
            }
            0x8d => {
                let n = self.u64()?;
                let v = self.text(n)?;
                self.push(v);
            }
            b'V' => {
                let line = self.line()?.to_string();
                self.push(Value::Str(line));
            }
            b'S' => {
                let line = self.line()?;
                let v = unquote_py2_string(line)?;
                self.push(Value::Bytes(Arc::from(v)));
            }
            b'T' | b'B' => {
                let n = self.u32()?;
                let v = self.bytes(n)?;
                self.push(v);
            }
            b'U' | b'C' => {
                let n = self.u8()? as u64;
                let v = self.bytes(n)?;
                self.push(v);
            }
            0x8e | 0x96 => {
                let n = self.u64()?;
                let v = self.bytes(n)?;
                self.push(v);
            }
            0x97 | 0x98 => return Err("out-of-band buffers are not supported".into()),
            b'c' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.push(Value::Global { module, name });
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => {
                        self.push(Value::Global { module, name })
                    }
                    _ => return Err("STACK_GLOBAL needs two str".into()),
                }
            }
            b'i' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                let args = self.pop_mark()?;
                self.push(Value::Reduce {
                    callable: Box::new(Value::Global { module, name }),
                    args: Box::new(Value::Tuple(args)),
                });
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err("OBJ without a class".into());
                }
                let class = items.remove(0);
                self.push(Value::Reduce {
                    callable: Box::new(class),
                    args: Box::new(Value::Tuple(items)),
                });
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push(Value::Reduce {
                    callable: Box::new(callable),
                    args: Box::new(args),
                });
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push(Value::Reduce {
                    callable: Box::new(callable),
                    args: Box::new(args),
                });
            }
            b'b' => {
                let state = self.pop()?;
                let top = self.top()?;
                let object = std::mem::replace(top, Value::None);
                *top = Value::Build {
                    object: Box::new(object),
                    state: Box::new(state),
                };
            }
            b'Q' => {
                let pid = self.pop()?;
                self.push(Value::PersistentId(Box::new(pid)));
            }
            b'P' => {
                let pid = self.line()?.to_string();
                self.push(Value::PersistentId(Box::new(Value::Str(pid))));
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.push(v);
            }
            b'q' | b'r' | b'p' | 0x94 => {
                let k = self.memo_key(op)?;
                self.memo_put(k)?;
            }
            b'h' | b'j' | b'g' => {
                let k = self.memo_key(op)?;
                self.memo_get(k)?;
            }
            other => return Err(format!("unknown opcode 0x{other:02x}")),
        }
        Ok(())
    }
}

/// LONG1/LONG4 payload: little-endian two's complement.
fn long_from_bytes(raw: &[u8]) -> Value {
    if raw.is_empty() {
        return Value::Int(0);
    }
    if raw.len() <= 8 {
        let negative = raw[raw.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..raw.len()].copy_from_slice(raw);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(raw.to_vec())
    }
}

/// Protocol 0 `STRING` argument: a quoted Python 2 string literal with backslash escapes.
fn unquote_py2_string(line: &str) -> Result<Vec<u8>, String> {
    let b = line.as_bytes();
    if b.len() < 2 || b[0] != b[b.len() - 1] || !(b[0] == b'\'' || b[0] == b'"') {
        return Err(format!("bad STRING literal {line:?}"));
    }
    let inner = &b[1..b.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            i += 1;
            match inner[i] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'x' if i + 2 < inner.len() => {
                    let hex =
                        std::str::from_utf8(&inner[i + 1..i + 3]).map_err(|e| e.to_string())?;
                    out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                    i += 2;
                }
                other => out.push(other),
            }
        } else {
            out.push(inner[i]);
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The byte strings are CPython 3.11's `pickle.dumps(..., protocol=N)` output, printed and pasted,
    // except the Python 2 one, assembled by hand from `pickletools`' opcode table.

    #[test]
    fn decodes_a_protocol_4_dict_with_memo_references() {
        // pickle.dumps({'a': [1, 2], 'b': 'a'}, protocol=4) -- 'a' is memoised and fetched back.
        let data: &[u8] = b"\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01K\x02e\x8c\x01b\x94h\x01u.";
        let v = parse(data).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Value::List(vec![Value::Int(1), Value::Int(2)]))
        );
        assert_eq!(v.get("b"), Some(&Value::Str("a".into())));
    }

    #[test]
    fn a_memoised_list_is_seen_after_it_was_filled() {
        // x = [1]; pickle.dumps([x, x], protocol=2): the second element is a GET of the first.
        let data: &[u8] = b"\x80\x02]q\x00(]q\x01K\x01ah\x01e.";
        let v = parse(data).unwrap();
        let inner = Value::List(vec![Value::Int(1)]);
        assert_eq!(v, Value::List(vec![inner.clone(), inner]));
    }

    #[test]
    fn python2_strings_and_longs() {
        // Python 2's pickle.dumps(('ab', 2**70, -1), 2): a str is SHORT_BINSTRING there.
        let data: &[u8] = b"\x80\x02U\x02abq\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@J\xff\xff\xff\xff\x87q\x01.";
        let v = parse(data).unwrap();
        let items = v.as_seq().unwrap();
        assert_eq!(items[0].as_text(), Some("ab"));
        assert!(matches!(items[1], Value::BigInt(_)));
        assert_eq!(items[2], Value::Int(-1));
    }

    #[test]
    fn protocol_0_text_opcodes() {
        // pickle.dumps((1, 'x', True), protocol=0)
        let data: &[u8] = b"(I1\nVx\np0\nI01\ntp1\n.";
        let v = parse(data).unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::Int(1),
                Value::Str("x".into()),
                Value::Bool(true)
            ])
        );
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let data: &[u8] = b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x05a";
        let err = parse(data).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        assert!(parse(b"").is_err());
        assert!(parse(b"\x80\x04u.").is_err());
    }
}
