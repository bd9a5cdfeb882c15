//! A small pickle reader for what `torch.save(state_dict)` writes: dicts (including
//! `collections.OrderedDict`, which libtorch's own unpickler turns into None) of tensors rebuilt
//! by `torch._utils._rebuild_tensor_v2` from persistent storage ids.
//!
//! It evaluates nothing: unknown globals and calls become opaque values, so a hostile pickle can
//! at worst be refused. Protocols 2 to 5 are understood (torch.save uses 2). What a few bytes of
//! pickle could otherwise make unbounded is capped: values nest at most `MAX_DEPTH` deep (a
//! deeper one would overflow the stack when dropped), and memo recalls and DUPs copy at most
//! `MAX_COPIED_VALUES` values in all (each copy of a memoized list of memoized lists doubles).

use std::collections::HashMap;
use tch::Kind;

/// Where a tensor's values live in the archive and how to view them.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Name of the storage record: the archive holds its bytes at `<prefix>/data/<key>`.
    pub storage_key: String,
    pub kind: Kind,
    /// Offset, size and stride in elements, as `Tensor::as_strided` takes them.
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global {
        module: String,
        name: String,
    },
    /// A tensor storage: its record key and, for the legacy format's storage views, where the
    /// view starts inside that record (in elements).
    Storage {
        key: String,
        kind: Kind,
        element_offset: i64,
    },
    /// An integer too wide for i64 (LONG1 of more than 8 bytes), as its little-endian bytes:
    /// the legacy format's magic number is one.
    BigInt(Vec<u8>),
    Tensor(TensorRef),
    /// A call or object this reader does not model; kept only to keep the stack shape right.
    Opaque(String),
}

/// Deepest nesting of containers a pickle may build; a state dict nests 3 or 4 deep.
pub const MAX_DEPTH: usize = 64;

/// Most values memo recalls and DUPs may copy in one pickle; a state dict copies a few per
/// tensor.
pub const MAX_COPIED_VALUES: u64 = 1 << 20;

/// Most values (and MARKs) the pickle's stack may hold at once; a state dict's SETITEMS batches
/// hold a few thousand.
pub const MAX_STACK: usize = 1 << 20;

/// A fragment of each reason this reader refuses a pickle for: tests check that a damaged pickle
/// is refused for one of these, never for a reason nobody foresaw.
#[cfg(test)]
pub(crate) const REFUSALS: &[&str] = &[
    "stack grows past",
    "pickle ends early",
    "STACK_GLOBAL without names",
    "unsupported pickle opcode",
    "invalid UTF-8 string",
    "unterminated GLOBAL name",
    "pickle pops past a MARK",
    "pickle stack empty",
    "pickle stack too short",
    "no MARK before",
    "memoizing an empty stack",
    "unknown memo",
    "values through its memo",
    "APPEND to a non-list",
    "SETITEM on a non-dict",
    "nests containers more than",
    "odd number of dict items",
    "DUP on an empty stack",
    "persistent id is not a tuple",
    "storage without a type",
    "unsupported storage type",
    "storage view without an offset",
    "persistent id is not a tensor storage",
    "OrderedDict item is not a pair",
    "parameter without a tensor",
    "tensor rebuilt from unexpected arguments",
    "tensor offset out of range",
    "expected an integer",
];

/// Parses a pickle into its top value. Errors name the opcode and byte offset.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    parse_prefix(bytes).map(|parsed| parsed.value)
}

/// One pickle read from the start of a byte string.
pub struct Parsed {
    pub value: Value,
    /// Bytes it took, up to and including STOP (the legacy torch.save format is several pickles
    /// in a row).
    pub length: usize,
    /// Every storage a persistent id named, with its element type, used by a tensor or not.
    pub storages: HashMap<String, Kind>,
}

pub fn parse_prefix(bytes: &[u8]) -> Result<Parsed, String> {
    let mut machine = Machine {
        bytes,
        position: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: HashMap::new(),
        copied: 0,
    };
    let value = machine.run()?;
    Ok(Parsed {
        value,
        length: machine.position,
        storages: machine.storages,
    })
}

struct Machine<'a> {
    bytes: &'a [u8],
    position: usize,
    stack: Vec<Value>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: HashMap<String, Kind>,
    /// Values copied by memo recalls and DUPs so far.
    copied: u64,
}

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.position;
            if self.stack.len().max(self.marks.len()) > MAX_STACK {
                return Err(format!(
                    "the pickle's stack grows past {MAX_STACK} values (at byte {at}); no weights \
                     file's does"
                ));
            }
            let opcode = self.take(1)?[0];
            match opcode {
                0x80 => drop(self.take(1)?), // PROTO
                0x95 => drop(self.take(8)?), // FRAME
                b'.' => return self.pop(),   // STOP
                _ => {
                    let known = self.container(opcode, at)?
                        || self.scalar(opcode)?
                        || self.text(opcode, at)?
                        || self.memo_or_stack(opcode, at)?
                        || self.object(opcode, at)?;
                    if !known {
                        return Err(format!(
                            "unsupported pickle opcode 0x{opcode:02x} at byte {at}"
                        ));
                    }
                }
            }
        }
    }

    /// Tuples, lists, dicts and the MARKs that delimit their items; false for another opcode.
    fn container(&mut self, opcode: u8, at: usize) -> Result<bool, String> {
        match opcode {
            b'(' => self.marks.push(self.stack.len()),         // MARK
            b')' => self.stack.push(Value::Tuple(Vec::new())), // EMPTY_TUPLE
            b't' => {
                let items = contained(self.pop_mark()?, at)?;
                self.stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let count = usize::from(opcode - 0x84);
                let items = contained(self.pop_n(count)?, at)?;
                self.stack.push(Value::Tuple(items));
            }
            b']' => self.stack.push(Value::List(Vec::new())),
            b'l' => {
                let items = contained(self.pop_mark()?, at)?;
                self.stack.push(Value::List(items));
            }
            b'a' => {
                let item = contained(vec![self.pop()?], at)?;
                self.extend_list(item)?;
            }
            b'e' => {
                let items = contained(self.pop_mark()?, at)?;
                self.extend_list(items)?;
            }
            b'}' => self.stack.push(Value::Dict(Vec::new())),
            b'd' => {
                let items = contained(self.pop_mark()?, at)?;
                self.stack.push(Value::Dict(pairs(items)?));
            }
            b's' => {
                let items = contained(self.pop_n(2)?, at)?;
                self.extend_dict(pairs(items)?)?;
            }
            b'u' => {
                let items = contained(self.pop_mark()?, at)?;
                self.extend_dict(pairs(items)?)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// None, booleans, integers and floats; false for another opcode.
    fn scalar(&mut self, opcode: u8) -> Result<bool, String> {
        let value = match opcode {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'K' => Value::Int(i64::from(self.take(1)?[0])),
            b'M' => Value::Int(i64::from(u16::from_le_bytes(self.array()?))),
            b'J' => Value::Int(i64::from(i32::from_le_bytes(self.array()?))),
            0x8a => {
                let length = usize::from(self.take(1)?[0]);
                let bytes = self.take(length)?;
                match long(bytes) {
                    Some(value) => Value::Int(value),
                    None => Value::BigInt(bytes.to_vec()),
                }
            }
            b'G' => Value::Float(f64::from_be_bytes(self.array()?)),
            _ => return Ok(false),
        };
        self.stack.push(value);
        Ok(true)
    }

    /// Strings and byte strings; false for another opcode.
    fn text(&mut self, opcode: u8, at: usize) -> Result<bool, String> {
        match opcode {
            b'X' => {
                let length = u32::from_le_bytes(self.array()?) as usize;
                self.push_text(length, at)?;
            }
            0x8c => {
                let length = usize::from(self.take(1)?[0]);
                self.push_text(length, at)?;
            }
            0x8d => {
                let length = u64::from_le_bytes(self.array()?) as usize;
                self.push_text(length, at)?;
            }
            // Python 2's str (BINSTRING, SHORT_BINSTRING): names in files pickled by Python 2.
            b'T' => {
                let length = u32::from_le_bytes(self.array()?) as usize;
                self.push_latin1(length)?;
            }
            b'U' => {
                let length = usize::from(self.take(1)?[0]);
                self.push_latin1(length)?;
            }
            b'B' => {
                let length = u32::from_le_bytes(self.array()?) as usize;
                let bytes = self.take(length)?.to_vec();
                self.stack.push(Value::Bytes(bytes));
            }
            b'C' => {
                let length = usize::from(self.take(1)?[0]);
                let bytes = self.take(length)?.to_vec();
                self.stack.push(Value::Bytes(bytes));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The memo (PUT, GET) and the stack's own moves (POP, POP_MARK, DUP); false for another
    /// opcode.
    fn memo_or_stack(&mut self, opcode: u8, at: usize) -> Result<bool, String> {
        match opcode {
            b'q' => {
                let slot = u32::from(self.take(1)?[0]);
                self.memoize(slot)?;
            }
            b'r' => {
                let slot = u32::from_le_bytes(self.array()?);
                self.memoize(slot)?;
            }
            0x94 => {
                let slot = self.memo.len() as u32;
                self.memoize(slot)?;
            }
            b'h' => {
                let slot = u32::from(self.take(1)?[0]);
                self.recall(slot, at)?;
            }
            b'j' => {
                let slot = u32::from_le_bytes(self.array()?);
                self.recall(slot, at)?;
            }
            b'0' => drop(self.pop()?),
            b'1' => drop(self.pop_mark()?),
            b'2' => {
                let top = self.stack.last().ok_or("DUP on an empty stack")?;
                let top = self.copy(top.clone(), at)?;
                self.stack.push(top);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Globals, calls, objects and tensor storages; false for another opcode.
    fn object(&mut self, opcode: u8, at: usize) -> Result<bool, String> {
        match opcode {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global { module, name });
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => {
                        self.stack.push(Value::Global { module, name })
                    }
                    _ => return Err(format!("STACK_GLOBAL without names at byte {at}")),
                }
            }
            b'Q' => {
                let id = self.pop()?;
                let storage =
                    persistent_storage(id).map_err(|why| format!("{why} at byte {at}"))?;
                if let Value::Storage { key, kind, .. } = &storage {
                    self.storages.entry(key.clone()).or_insert(*kind);
                }
                self.stack.push(storage);
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.stack
                    .push(call(callable, args).map_err(|why| format!("{why} at byte {at}"))?);
            }
            0x81 => {
                let _args = self.pop()?;
                let class = self.pop()?;
                self.stack
                    .push(Value::Opaque(format!("instance of {}", describe(&class))));
            }
            // BUILD sets an object's state (an OrderedDict's `_metadata`): not needed.
            b'b' => drop(self.pop()?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        let end = self
            .position
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| format!("pickle ends early at byte {}", self.position))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.position..];
        let length = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated GLOBAL name")?;
        let text = String::from_utf8_lossy(&rest[..length]).into_owned();
        self.position += length + 1;
        Ok(text)
    }

    fn push_text(&mut self, length: usize, at: usize) -> Result<(), String> {
        let text = std::str::from_utf8(self.take(length)?)
            .map_err(|_| format!("invalid UTF-8 string at byte {at}"))?;
        self.stack.push(Value::Str(text.to_string()));
        Ok(())
    }

    fn push_latin1(&mut self, length: usize) -> Result<(), String> {
        let text = self.take(length)?.iter().map(|&b| char::from(b)).collect();
        self.stack.push(Value::Str(text));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        if self
            .marks
            .last()
            .is_some_and(|&mark| mark >= self.stack.len())
        {
            return Err(format!("pickle pops past a MARK at byte {}", self.position));
        }
        self.stack
            .pop()
            .ok_or_else(|| format!("pickle stack empty at byte {}", self.position))
    }

    fn pop_n(&mut self, count: usize) -> Result<Vec<Value>, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + count {
            return Err(format!("pickle stack too short at byte {}", self.position));
        }
        Ok(self.stack.split_off(self.stack.len() - count))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| format!("no MARK before byte {}", self.position))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn memoize(&mut self, slot: u32) -> Result<(), String> {
        let at = self.position;
        let top = self.stack.last().ok_or("memoizing an empty stack")?;
        let top = self.copy(top.clone(), at)?;
        self.memo.insert(slot, top);
        Ok(())
    }

    fn recall(&mut self, slot: u32, at: usize) -> Result<(), String> {
        let value = self
            .memo
            .get(&slot)
            .ok_or_else(|| format!("unknown memo {slot} at byte {at}"))?;
        let value = self.copy(value.clone(), at)?;
        self.stack.push(value);
        Ok(())
    }

    /// Counts a copy against `MAX_COPIED_VALUES`. (The copy is made before it is counted: it
    /// is no larger than what earlier counted copies allowed.)
    fn copy(&mut self, value: Value, at: usize) -> Result<Value, String> {
        self.copied = self.copied.saturating_add(measure(&value).values);
        if self.copied > MAX_COPIED_VALUES {
            return Err(format!(
                "the pickle copies more than {MAX_COPIED_VALUES} values through its memo (at byte \
                 {at}); no weights file does"
            ));
        }
        Ok(value)
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.stack.last_mut() {
            Some(Value::List(list)) => list.extend(items),
            Some(Value::Opaque(_)) => {}
            _ => return Err(format!("APPEND to a non-list at byte {}", self.position)),
        }
        Ok(())
    }

    /// Adds entries to the dict on top of the stack. Memo copies are snapshots, which is enough
    /// for state_dicts: each dict is filled right after it is created and memoized.
    fn extend_dict(&mut self, entries: Vec<(Value, Value)>) -> Result<(), String> {
        match self.stack.last_mut() {
            Some(Value::Dict(dict)) => dict.extend(entries),
            Some(Value::Opaque(_)) => {}
            _ => return Err(format!("SETITEM on a non-dict at byte {}", self.position)),
        }
        Ok(())
    }
}

/// `items`, about to go into a container, when that container nests at most `MAX_DEPTH`.
fn contained(items: Vec<Value>, at: usize) -> Result<Vec<Value>, String> {
    let deepest = items
        .iter()
        .map(|item| measure(item).depth)
        .max()
        .unwrap_or(0);
    if deepest >= MAX_DEPTH {
        return Err(format!(
            "the pickle nests containers more than {MAX_DEPTH} deep (at byte {at}); no \
             weights file does"
        ));
    }
    Ok(items)
}

/// How many values `value` holds (itself included) and how deep its containers nest (0 for a
/// scalar), walked without recursion so that no value can exhaust the stack.
struct Measure {
    values: u64,
    depth: usize,
}

fn measure(value: &Value) -> Measure {
    let mut measure = Measure {
        values: 0,
        depth: 0,
    };
    let mut pending = vec![(value, 0usize)];
    while let Some((value, depth)) = pending.pop() {
        measure.values += 1;
        measure.depth = measure.depth.max(depth);
        match value {
            Value::Tuple(items) | Value::List(items) => {
                pending.extend(items.iter().map(|item| (item, depth + 1)));
            }
            Value::Dict(entries) => {
                for (key, value) in entries {
                    pending.push((key, depth + 1));
                    pending.push((value, depth + 1));
                }
            }
            _ => {}
        }
    }
    measure
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of dict items".to_string());
    }
    let mut items = items.into_iter();
    let mut pairs = Vec::new();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Two's-complement little-endian integer of up to 8 bytes (LONG1).
fn long(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        return None;
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let mut buffer = if negative { [0xff; 8] } else { [0; 8] };
    buffer[..bytes.len()].copy_from_slice(bytes);
    Some(i64::from_le_bytes(buffer))
}

fn describe(value: &Value) -> String {
    match value {
        Value::Global { module, name } => format!("{module}.{name}"),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

/// torch.save's persistent id: `("storage", torch.FloatStorage, key, location, numel)` in the
/// zip format; the legacy format adds a sixth field, `None` or, for a view of another storage
/// (PyTorch before 0.4), `(view_key, offset, size)` in elements.
fn persistent_storage(id: Value) -> Result<Value, String> {
    let Value::Tuple(fields) = id else {
        return Err("persistent id is not a tuple".to_string());
    };
    match fields.as_slice() {
        [
            Value::Str(tag),
            storage_type,
            Value::Str(key),
            _location,
            rest @ ..,
        ] if tag == "storage" => {
            let Value::Global { name, .. } = storage_type else {
                return Err("storage without a type".to_string());
            };
            let kind =
                storage_kind(name).ok_or_else(|| format!("unsupported storage type {name}"))?;
            let element_offset = match rest.get(1) {
                Some(Value::Tuple(view)) => match view.as_slice() {
                    [_view_key, Value::Int(offset), _size] if *offset >= 0 => *offset,
                    _ => return Err("storage view without an offset".to_string()),
                },
                _ => 0,
            };
            Ok(Value::Storage {
                key: key.clone(),
                kind,
                element_offset,
            })
        }
        _ => Err("persistent id is not a tensor storage".to_string()),
    }
}

fn storage_kind(type_name: &str) -> Option<Kind> {
    Some(match type_name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn call(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global { module, name } = &callable else {
        return Ok(Value::Opaque(format!("call of {}", describe(&callable))));
    };
    let Value::Tuple(args) = args else {
        return Ok(Value::Opaque(format!("call of {module}.{name}")));
    };
    match (module.as_str(), name.as_str()) {
        // Python 3 pickles fill the dict afterwards (SETITEMS); Python 2's pass `[[key, value], ...]`.
        ("collections", "OrderedDict") => Ok(Value::Dict(match args.into_iter().next() {
            Some(Value::List(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::List(pair) | Value::Tuple(pair) if pair.len() == 2 => {
                        let mut pair = pair.into_iter();
                        Ok((
                            pair.next().unwrap_or(Value::None),
                            pair.next().unwrap_or(Value::None),
                        ))
                    }
                    _ => Err("OrderedDict item is not a pair".to_string()),
                })
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        })),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => rebuild_tensor(&args),
        // nn.Parameter wrapping a tensor (whole pickled modules, some checkpoints).
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            match args.into_iter().next() {
                Some(tensor @ Value::Tensor(_)) => Ok(tensor),
                _ => Err("parameter without a tensor".to_string()),
            }
        }
        _ => Ok(Value::Opaque(format!("call of {module}.{name}"))),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, ...)`.
fn rebuild_tensor(args: &[Value]) -> Result<Value, String> {
    match args {
        [
            Value::Storage {
                key,
                kind,
                element_offset,
            },
            Value::Int(offset),
            Value::Tuple(size),
            Value::Tuple(stride),
            ..,
        ] => Ok(Value::Tensor(TensorRef {
            storage_key: key.clone(),
            kind: *kind,
            offset: element_offset
                .checked_add(*offset)
                .filter(|offset| *offset >= 0)
                .ok_or("tensor offset out of range")?,
            size: ints(size)?,
            stride: ints(stride)?,
        })),
        _ => Err("tensor rebuilt from unexpected arguments".to_string()),
    }
}

fn ints(values: &[Value]) -> Result<Vec<i64>, String> {
    values
        .iter()
        .map(|value| match value {
            Value::Int(int) => Ok(*int),
            other => Err(format!("expected an integer, found {other:?}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{
        MAX_COPIED_VALUES, MAX_DEPTH, MAX_STACK, Parsed, REFUSALS, Value, measure, parse,
        parse_prefix,
    };
    use easel_test_support::mutations::only_changed_within;
    use std::ops::Range;

    /// `pickle.dumps(OrderedDict([("a", [1, -300, 2**40, -2**40]), ("b", (1.5, True, None, "x"))]),
    /// protocol=p)` from CPython, for p = 2 and p = 4.
    const PROTOCOL_2: &[u8] = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aq\x02]q\x03(K\x01J\xd4\xfe\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\xffeX\x01\x00\x00\x00bq\x04(G?\xf8\x00\x00\x00\x00\x00\x00\x88NX\x01\x00\x00\x00xq\x05tq\x06u.";
    const PROTOCOL_4: &[u8] = b"\x80\x04\x95Y\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94(\x8c\x01a\x94]\x94(K\x01J\xd4\xfe\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\xffe\x8c\x01b\x94(G?\xf8\x00\x00\x00\x00\x00\x00\x88N\x8c\x01x\x94t\x94u.";

    /// Where `PROTOCOL_2` and `PROTOCOL_4` hold nothing but the values' own bytes: the strings'
    /// characters and the integers' and the float's bytes (offsets from `pickletools.dis`).
    const PROTOCOL_2_PAYLOADS: &[Range<usize>] = &[
        39..40,
        47..48,
        49..53,
        55..61,
        63..69,
        75..76,
        80..88,
        95..96,
    ];
    const PROTOCOL_4_PAYLOADS: &[Range<usize>] = &[
        47..48,
        53..54,
        55..59,
        61..67,
        69..75,
        78..79,
        82..90,
        94..95,
    ];

    /// `value` with its strings, numbers and bytes blanked: what an edit of payloads alone keeps.
    fn skeleton(value: &Value) -> Value {
        let all = |items: &[Value]| items.iter().map(skeleton).collect();
        match value {
            Value::Str(_) => Value::Str(String::new()),
            Value::Int(_) | Value::BigInt(_) => Value::Int(0),
            Value::Float(_) => Value::Float(0.0),
            Value::Bytes(_) => Value::Bytes(Vec::new()),
            Value::Tuple(items) => Value::Tuple(all(items)),
            Value::List(items) => Value::List(all(items)),
            Value::Dict(entries) => Value::Dict(
                entries
                    .iter()
                    .map(|(key, value)| (skeleton(key), skeleton(value)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Property: any bytes parse or are refused, never panic, overflow the stack or exhaust
    /// memory. A refusal gives one of the reader's reasons; a parse ends at a STOP and reads
    /// nothing past it; the original followed by anything parses to the original's value; and
    /// changed values' bytes change values, never the structure. Both outcomes are common, so a
    /// reader refusing or accepting everything fails (seeded mutants of real CPython pickles, a
    /// bounded run).
    #[test]
    fn mutated_pickles_parse_or_are_refused() {
        use easel_test_support::mutations::mutants;
        const COUNT: usize = 5000;
        let cases = [
            (PROTOCOL_2, PROTOCOL_2_PAYLOADS),
            (PROTOCOL_4, PROTOCOL_4_PAYLOADS),
        ];
        for (seed, (valid, payloads)) in cases.into_iter().enumerate() {
            let expected = parse(valid).unwrap();
            let (mut accepted, mut refused, mut payload_edits) = (0, 0, 0);
            for (index, mutant) in mutants(valid, COUNT, seed as u64).into_iter().enumerate() {
                let case = format!("mutant {index} of seed {seed}");
                let parsed = std::panic::catch_unwind(|| parse_prefix(&mutant))
                    .unwrap_or_else(|_| panic!("{case} panicked"));
                let Parsed { value, length, .. } = match parsed {
                    Ok(parsed) => parsed,
                    Err(why) => {
                        refused += 1;
                        assert!(
                            REFUSALS.iter().any(|reason| why.contains(reason)),
                            "{case}: refused for an unforeseen reason: {why}"
                        );
                        continue;
                    }
                };
                accepted += 1;
                let shown = format!("{value:?}");
                assert_eq!(mutant[length - 1], b'.', "{case} ends at a STOP");
                assert_eq!(
                    format!("{:?}", parse(&mutant[..length]).unwrap()),
                    shown,
                    "{case}: bytes past the STOP were read"
                );
                assert!(measure(&value).depth <= MAX_DEPTH, "{case}");
                if mutant.starts_with(valid) {
                    assert_eq!(value, expected, "{case}");
                }
                if only_changed_within(valid, &mutant, payloads) {
                    payload_edits += 1;
                    assert_eq!(skeleton(&value), skeleton(&expected), "{case}: {shown}");
                }
            }
            assert!(
                accepted >= COUNT / 20 && refused >= COUNT / 2 && payload_edits >= 20,
                "seed {seed}: {accepted} accepted, {refused} refused, {payload_edits} with \
                 changed values alone"
            );
        }
    }

    #[test]
    fn ordered_dicts_parse_the_same_in_protocols_2_and_4() {
        let expected = Value::Dict(vec![
            (
                Value::Str("a".into()),
                Value::List(vec![
                    Value::Int(1),
                    Value::Int(-300),
                    Value::Int(1 << 40),
                    Value::Int(-(1 << 40)),
                ]),
            ),
            (
                Value::Str("b".into()),
                Value::Tuple(vec![
                    Value::Float(1.5),
                    Value::Bool(true),
                    Value::None,
                    Value::Str("x".into()),
                ]),
            ),
        ]);
        assert_eq!(parse(PROTOCOL_2).unwrap(), expected);
        assert_eq!(parse(PROTOCOL_4).unwrap(), expected);
    }

    #[test]
    fn python_2_strings_and_ordered_dicts_read_like_python_3_ones() {
        // SHORT_BINSTRING keys; OrderedDict([["a", 1], ("b", 2)]) built from its items argument.
        let built = b"\x80\x02ccollections\nOrderedDict\n]](U\x01aK\x01ea(U\x01bK\x02ta\x85R.";
        assert_eq!(
            parse(built).unwrap(),
            Value::Dict(vec![
                (Value::Str("a".into()), Value::Int(1)),
                (Value::Str("b".into()), Value::Int(2)),
            ])
        );
        let binstring = b"\x80\x02T\x03\x00\x00\x00caf.";
        assert_eq!(parse(binstring).unwrap(), Value::Str("caf".into()));
    }

    #[test]
    fn a_legacy_storage_view_shifts_the_tensor_offset() {
        // _rebuild_tensor(persistent ("storage", torch.FloatStorage, "key", "cpu", 12,
        // ("view", 4, 6)), 1, (2,), (1,)): the view starts 4 elements into "key".
        let pickle = b"\x80\x02ctorch._utils\n_rebuild_tensor\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x03\x00\x00\x00keyX\x03\x00\x00\x00cpuK\x0c(X\x04\x00\x00\x00viewK\x04K\x06ttQK\x01K\x02\x85K\x01\x85tR.";
        let Value::Tensor(tensor) = parse(pickle).unwrap() else {
            panic!("not a tensor")
        };
        assert_eq!(tensor.storage_key, "key");
        assert_eq!(
            (tensor.offset, tensor.size, tensor.stride),
            (5, vec![2], vec![1])
        );
    }

    #[test]
    fn broken_pickles_are_refused_with_the_place() {
        let truncated = &PROTOCOL_2[..40];
        assert!(parse(truncated).unwrap_err().contains("ends early"));
        let unknown = b"\x80\x02\xff.";
        assert_eq!(
            parse(unknown).unwrap_err(),
            "unsupported pickle opcode 0xff at byte 2"
        );
        // A persistent id that is not a tensor storage.
        let bad_storage = b"\x80\x02K\x01Q.";
        assert!(parse(bad_storage).unwrap_err().contains("persistent id"));
    }

    fn refused(pickle: &[u8]) -> String {
        match parse(pickle) {
            Err(why) => why,
            Ok(value) => panic!("parsed: {:?}", std::mem::discriminant(&value)),
        }
    }

    #[test]
    fn memo_copies_that_double_each_step_are_refused_before_memory_runs_out() {
        // L0 = []; Ln = [Ln-1, Ln-1], each memoized: 80 steps would make 2^80 values.
        let mut pickle = b"\x80\x02]q\x00".to_vec();
        for step in 1..80u8 {
            pickle.extend_from_slice(&[b'(', b'h', step - 1, b'h', step - 1, b'l', b'q', step]);
        }
        pickle.push(b'.');
        let why = refused(&pickle);
        assert!(
            why.contains(&format!("more than {MAX_COPIED_VALUES} values")),
            "{why}"
        );
    }

    #[test]
    fn nesting_past_the_limit_is_refused_instead_of_overflowing_the_stack() {
        // A million nested lists: dropping them recursively would overflow the thread's stack.
        let depth = 1_000_000;
        let mut pickle = b"\x80\x02".to_vec();
        pickle.extend(std::iter::repeat_n(b']', depth));
        pickle.extend(std::iter::repeat_n(b'a', depth - 1));
        pickle.push(b'.');
        let why = refused(&pickle);
        assert!(
            why.contains(&format!("more than {MAX_DEPTH} deep")),
            "{why}"
        );
        // Within the limit, nesting is fine.
        let mut pickle = b"\x80\x02".to_vec();
        pickle.extend(std::iter::repeat_n(b']', 10));
        pickle.extend(std::iter::repeat_n(b'a', 9));
        pickle.push(b'.');
        assert!(matches!(parse(&pickle), Ok(Value::List(_))));
    }

    #[test]
    fn a_stack_or_marks_growing_without_end_are_refused() {
        for opcode in [b']', b'('] {
            let mut pickle = b"\x80\x02".to_vec();
            pickle.extend(std::iter::repeat_n(opcode, MAX_STACK + 10));
            pickle.push(b'.');
            let why = refused(&pickle);
            assert!(why.contains("stack grows past"), "{why}");
        }
    }
}
