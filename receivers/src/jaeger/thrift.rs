//! Thrift's binary and compact encodings of Jaeger's `Batch` (jaeger-idl `jaeger.thrift`), and the
//! agent's `emitBatch` message that carries one over UDP (`agent.thrift`).
//!
//! Hand-written rather than the `thrift` crate's protocols plus generated code: those allocate a
//! string's or list's declared length before checking it against the input (`vec![0; len]` on a
//! length read from the wire), so a five-byte UDP packet could ask for gigabytes; and the crate's
//! code generator is a C++ program that would have to run at build time. Here every length is
//! checked against the bytes that remain before anything is allocated, nesting is bounded, and
//! unknown fields are skipped as Thrift requires, in about three hundred lines for the six structs.

use super::model::{JSpan, Log, Process, SpanRef, Tag, TagValue};
use std::fmt;

/// Which of Thrift's encodings a buffer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Binary,
    Compact,
}

#[derive(Debug)]
pub(crate) struct ThriftError(pub String);

impl fmt::Display for ThriftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, ThriftError>;

fn bad<T>(msg: impl Into<String>) -> Result<T> {
    Err(ThriftError(msg.into()))
}

/// Thrift's value types, with the two encodings' numbers mapped onto one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Byte,
    I16,
    I32,
    I64,
    Double,
    Binary,
    List,
    Set,
    Map,
    Struct,
}

/// How deep structs and containers may nest; Jaeger's own structs nest three deep.
const MAX_DEPTH: u32 = 32;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    proto: Protocol,
    depth: u32,
    /// Compact: the id of the last field read in each open struct (field ids are deltas).
    last_field: Vec<i16>,
    /// Compact: a bool field's value travels in its header.
    pending_bool: Option<bool>,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], proto: Protocol) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            proto,
            depth: 0,
            last_field: Vec::new(),
            pending_bool: None,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return bad(format!(
                "truncated: {n} bytes needed at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return bad("varint overflows 64 bits");
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bad("varint longer than 10 bytes")
    }

    fn zigzag(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn i16(&mut self) -> Result<i16> {
        match self.proto {
            Protocol::Binary => Ok(i16::from_be_bytes(self.be()?)),
            Protocol::Compact => i16::try_from(self.zigzag()?).or_else(|_| bad("i16 out of range")),
        }
    }

    fn i32(&mut self) -> Result<i32> {
        match self.proto {
            Protocol::Binary => Ok(i32::from_be_bytes(self.be()?)),
            Protocol::Compact => i32::try_from(self.zigzag()?).or_else(|_| bad("i32 out of range")),
        }
    }

    fn i64(&mut self) -> Result<i64> {
        match self.proto {
            Protocol::Binary => Ok(i64::from_be_bytes(self.be()?)),
            Protocol::Compact => self.zigzag(),
        }
    }

    fn double(&mut self) -> Result<f64> {
        match self.proto {
            Protocol::Binary => Ok(f64::from_be_bytes(self.be()?)),
            Protocol::Compact => Ok(f64::from_le_bytes(self.be()?)),
        }
    }

    fn bool(&mut self) -> Result<bool> {
        if let Some(b) = self.pending_bool.take() {
            return Ok(b);
        }
        let b = self.u8()?;
        Ok(match self.proto {
            Protocol::Binary => b != 0,
            Protocol::Compact => b == 1,
        })
    }

    /// A length, checked against what is left before anything is allocated for it.
    fn len(&mut self, min_each: usize) -> Result<usize> {
        let n = match self.proto {
            Protocol::Binary => {
                let n = i32::from_be_bytes(self.be()?);
                usize::try_from(n).or_else(|_| bad(format!("negative length {n}")))?
            }
            Protocol::Compact => usize::try_from(self.varint()?).unwrap_or(usize::MAX),
        };
        if n.saturating_mul(min_each) > self.remaining() {
            return bad(format!(
                "length {n} at offset {} is more than the {} bytes left",
                self.pos,
                self.remaining()
            ));
        }
        Ok(n)
    }

    fn binary(&mut self) -> Result<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String> {
        // Go's thrift takes any bytes as a string; invalid UTF-8 is replaced, not refused.
        Ok(String::from_utf8_lossy(self.binary()?).into_owned())
    }

    fn ty(&self, b: u8) -> Result<Ty> {
        let t = match (self.proto, b) {
            (Protocol::Binary, 2) => Ty::Bool,
            (Protocol::Binary, 3) => Ty::Byte,
            (Protocol::Binary, 4) => Ty::Double,
            (Protocol::Binary, 6) => Ty::I16,
            (Protocol::Binary, 8) => Ty::I32,
            (Protocol::Binary, 10) => Ty::I64,
            (Protocol::Binary, 11) => Ty::Binary,
            (Protocol::Binary, 12) => Ty::Struct,
            (Protocol::Binary, 13) => Ty::Map,
            (Protocol::Binary, 14) => Ty::Set,
            (Protocol::Binary, 15) => Ty::List,
            (Protocol::Compact, 1 | 2) => Ty::Bool,
            (Protocol::Compact, 3) => Ty::Byte,
            (Protocol::Compact, 4) => Ty::I16,
            (Protocol::Compact, 5) => Ty::I32,
            (Protocol::Compact, 6) => Ty::I64,
            (Protocol::Compact, 7) => Ty::Double,
            (Protocol::Compact, 8) => Ty::Binary,
            (Protocol::Compact, 9) => Ty::List,
            (Protocol::Compact, 10) => Ty::Set,
            (Protocol::Compact, 11) => Ty::Map,
            (Protocol::Compact, 12) => Ty::Struct,
            _ => return bad(format!("unknown thrift type {b} at offset {}", self.pos)),
        };
        Ok(t)
    }

    /// The next field's id and type, or `None` at the struct's end.
    fn field(&mut self) -> Result<Option<(i16, Ty)>> {
        let b = self.u8()?;
        if b == 0 {
            return Ok(None);
        }
        match self.proto {
            Protocol::Binary => {
                let t = self.ty(b)?;
                Ok(Some((self.i16()?, t)))
            }
            Protocol::Compact => {
                let t = self.ty(b & 0x0f)?;
                let delta = i16::from(b >> 4);
                let last = self.last_field.last().copied().unwrap_or(0);
                let id = if delta == 0 {
                    self.i16()?
                } else {
                    last.wrapping_add(delta)
                };
                if let Some(l) = self.last_field.last_mut() {
                    *l = id;
                }
                if t == Ty::Bool {
                    self.pending_bool = Some(b & 0x0f == 1);
                }
                Ok(Some((id, t)))
            }
        }
    }

    /// A list's (or set's) element type and length.
    fn list(&mut self) -> Result<(Ty, usize)> {
        match self.proto {
            Protocol::Binary => {
                let b = self.u8()?;
                let t = self.ty(b)?;
                Ok((t, self.len(1)?))
            }
            Protocol::Compact => {
                let b = self.u8()?;
                let t = self.ty(b & 0x0f)?;
                let n = if b >> 4 == 0x0f {
                    self.len(1)?
                } else {
                    usize::from(b >> 4)
                };
                Ok((t, n))
            }
        }
    }

    /// Reads a struct, handing each field to `f`, which returns `false` for a field it does not
    /// know; those are skipped.
    fn read_struct(&mut self, mut f: impl FnMut(&mut Self, i16, Ty) -> Result<bool>) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return bad("structs nest too deep");
        }
        self.last_field.push(0);
        while let Some((id, t)) = self.field()? {
            if !f(self, id, t)? {
                self.skip(t)?;
            }
            self.pending_bool = None;
        }
        self.last_field.pop();
        self.depth -= 1;
        Ok(())
    }

    fn skip(&mut self, t: Ty) -> Result<()> {
        match t {
            Ty::Bool => {
                self.bool()?;
            }
            Ty::Byte => {
                self.take(1)?;
            }
            Ty::I16 => {
                self.i16()?;
            }
            Ty::I32 => {
                self.i32()?;
            }
            Ty::I64 => {
                self.i64()?;
            }
            Ty::Double => {
                self.take(8)?;
            }
            Ty::Binary => {
                self.binary()?;
            }
            Ty::Struct => self.read_struct(|_, _, _| Ok(false))?,
            Ty::List | Ty::Set => {
                let (et, n) = self.list()?;
                self.nested(|r| (0..n).try_for_each(|_| r.skip(et)))?;
            }
            Ty::Map => {
                let (kt, vt, n) = self.map()?;
                self.nested(|r| {
                    (0..n).try_for_each(|_| {
                        r.skip(kt)?;
                        r.skip(vt)
                    })
                })?;
            }
        }
        Ok(())
    }

    fn map(&mut self) -> Result<(Ty, Ty, usize)> {
        match self.proto {
            Protocol::Binary => {
                let (k, v) = (self.u8()?, self.u8()?);
                let (k, v) = (self.ty(k)?, self.ty(v)?);
                Ok((k, v, self.len(1)?))
            }
            Protocol::Compact => {
                let n = self.len(1)?;
                if n == 0 {
                    return Ok((Ty::Byte, Ty::Byte, 0));
                }
                let b = self.u8()?;
                Ok((self.ty(b >> 4)?, self.ty(b & 0x0f)?, n))
            }
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return bad("containers nest too deep");
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// A `list<struct>` of `read`'s structs. Each element takes at least one byte (its stop), so
    /// the length check bounds the allocation by the input.
    fn struct_list<T>(
        &mut self,
        t: Ty,
        mut read: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        if t != Ty::List {
            self.skip(t)?;
            return Ok(Vec::new());
        }
        let (et, n) = self.list()?;
        if et != Ty::Struct {
            self.nested(|r| (0..n).try_for_each(|_| r.skip(et)))?;
            return Ok(Vec::new());
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(read(self)?);
        }
        Ok(v)
    }
}

fn id16(high: i64, low: i64) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&high.to_be_bytes());
    a[8..].copy_from_slice(&low.to_be_bytes());
    a
}

fn micros(us: i64) -> u64 {
    // otelcol converts with uint64(us) * 1000; a negative time wraps there and is clamped here.
    u64::try_from(us).unwrap_or(0).saturating_mul(1000)
}

fn tag(r: &mut Reader<'_>) -> Result<Tag> {
    let mut key = String::new();
    let mut vtype = 0i32;
    let (mut s, mut d, mut b, mut l, mut bin) = (None, None, None, None, None);
    r.read_struct(|r, id, t| {
        match (id, t) {
            (1, Ty::Binary) => key = r.string()?,
            (2, Ty::I32) => vtype = r.i32()?,
            (3, Ty::Binary) => s = Some(r.string()?),
            (4, Ty::Double) => d = Some(r.double()?),
            (5, Ty::Bool) => b = Some(r.bool()?),
            (6, Ty::I64) => l = Some(r.i64()?),
            (7, Ty::Binary) => bin = Some(r.binary()?.to_vec()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    // jaeger.thrift's TagType: STRING, DOUBLE, BOOL, LONG, BINARY.
    let value = match vtype {
        0 => TagValue::Str(s.unwrap_or_default()),
        1 => TagValue::F64(d.unwrap_or_default()),
        2 => TagValue::Bool(b.unwrap_or_default()),
        3 => TagValue::I64(l.unwrap_or_default()),
        4 => TagValue::Bytes(bin.unwrap_or_default()),
        other => TagValue::Unknown(other),
    };
    Ok(Tag { key, value })
}

fn log(r: &mut Reader<'_>) -> Result<Log> {
    let mut out = Log {
        time_unix_nano: 0,
        fields: Vec::new(),
    };
    r.read_struct(|r, id, t| {
        match (id, t) {
            (1, Ty::I64) => out.time_unix_nano = micros(r.i64()?),
            (2, _) => out.fields = r.struct_list(t, tag)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(out)
}

fn span_ref(r: &mut Reader<'_>) -> Result<SpanRef> {
    let (mut kind, mut low, mut high, mut span) = (0, 0, 0, 0);
    r.read_struct(|r, id, t| {
        match (id, t) {
            (1, Ty::I32) => kind = r.i32()?,
            (2, Ty::I64) => low = r.i64()?,
            (3, Ty::I64) => high = r.i64()?,
            (4, Ty::I64) => span = r.i64()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(SpanRef {
        follows_from: kind == 1,
        trace_id: id16(high, low),
        span_id: span.to_be_bytes(),
    })
}

fn span(r: &mut Reader<'_>) -> Result<JSpan> {
    let mut s = JSpan::default();
    let (mut low, mut high, mut start, mut duration) = (0i64, 0i64, 0i64, 0i64);
    r.read_struct(|r, id, t| {
        match (id, t) {
            (1, Ty::I64) => low = r.i64()?,
            (2, Ty::I64) => high = r.i64()?,
            (3, Ty::I64) => s.span_id = r.i64()?.to_be_bytes(),
            (4, Ty::I64) => s.parent_span_id = r.i64()?.to_be_bytes(),
            (5, Ty::Binary) => s.operation_name = r.string()?,
            (6, _) => s.references = r.struct_list(t, span_ref)?,
            (7, Ty::I32) => s.flags = i64::from(r.i32()?),
            (8, Ty::I64) => start = r.i64()?,
            (9, Ty::I64) => duration = r.i64()?,
            (10, _) => s.tags = r.struct_list(t, tag)?,
            (11, _) => s.logs = r.struct_list(t, log)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    s.trace_id = id16(high, low);
    s.start_unix_nano = micros(start);
    s.duration_nano = micros(duration);
    Ok(s)
}

fn process(r: &mut Reader<'_>) -> Result<Process> {
    let mut p = Process::default();
    r.read_struct(|r, id, t| {
        match (id, t) {
            (1, Ty::Binary) => p.service_name = r.string()?,
            (2, _) => p.tags = r.struct_list(t, tag)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// A decoded `Batch`: its process and spans.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub process: Option<Process>,
    pub spans: Vec<JSpan>,
}

fn batch(r: &mut Reader<'_>) -> Result<Batch> {
    let mut b = Batch::default();
    r.read_struct(|r, id, t| {
        match (id, t) {
            (1, Ty::Struct) => b.process = Some(process(r)?),
            (2, _) => b.spans = r.struct_list(t, span)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(b)
}

/// A `Batch` struct on its own: the body of `POST /api/traces` (binary encoding).
pub(crate) fn decode_batch(buf: &[u8], proto: Protocol) -> Result<Batch> {
    let mut r = Reader::new(buf, proto);
    batch(&mut r)
}

/// What an agent UDP packet asked for.
#[derive(Debug)]
pub(crate) enum AgentCall {
    EmitBatch(Batch),
    /// `emitZipkinBatch`, or any other method: otelcol's agent handler refuses them too.
    Other(String),
}

/// An `Agent` service message (`emitBatch(1: Batch batch)`), as jaeger clients send it in one UDP
/// datagram: compact encoding on 6831, binary on 6832.
pub(crate) fn decode_agent_message(buf: &[u8], proto: Protocol) -> Result<AgentCall> {
    let mut r = Reader::new(buf, proto);
    let name = match proto {
        Protocol::Compact => {
            if r.u8()? != 0x82 {
                return bad("not a thrift compact message (protocol id is not 0x82)");
            }
            let vt = r.u8()?;
            if vt & 0x1f != 1 {
                return bad(format!(
                    "unsupported compact protocol version {}",
                    vt & 0x1f
                ));
            }
            let _seq = r.varint()?;
            r.string()?
        }
        Protocol::Binary => {
            let first = i32::from_be_bytes(r.be()?);
            if first < 0 {
                // Strict: version and type in one word, then the name and the sequence id.
                if (first as u32) & 0xffff_0000 != 0x8001_0000 {
                    return bad(format!("unsupported binary protocol version {first:#x}"));
                }
                let name = r.string()?;
                r.i32()?;
                name
            } else {
                // Old style: the name's length, the name, a type byte and the sequence id.
                let n = usize::try_from(first).unwrap_or(usize::MAX);
                let name = String::from_utf8_lossy(r.take(n)?).into_owned();
                r.u8()?;
                r.i32()?;
                name
            }
        }
    };
    if name != "emitBatch" {
        return Ok(AgentCall::Other(name));
    }
    let mut out = None;
    r.read_struct(|r, id, t| {
        if id == 1 && t == Ty::Struct {
            out = Some(batch(r)?);
            return Ok(true);
        }
        Ok(false)
    })?;
    match out {
        Some(b) => Ok(AgentCall::EmitBatch(b)),
        None => bad("emitBatch without its batch argument"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal Thrift writer for tests: enough to build the structs the decoder reads.
    pub(crate) struct W {
        pub out: Vec<u8>,
        proto: Protocol,
        last: Vec<i16>,
    }

    impl W {
        pub fn new(proto: Protocol) -> W {
            W {
                out: Vec::new(),
                proto,
                last: vec![0],
            }
        }
        fn varint(&mut self, mut v: u64) {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.out.push(b);
                    return;
                }
                self.out.push(b | 0x80);
            }
        }
        fn zz(&mut self, v: i64) {
            self.varint(((v << 1) ^ (v >> 63)) as u64);
        }
        /// Field header; `bt`/`ct` are the binary and compact type numbers.
        pub fn field(&mut self, id: i16, bt: u8, ct: u8) {
            match self.proto {
                Protocol::Binary => {
                    self.out.push(bt);
                    self.out.extend_from_slice(&id.to_be_bytes());
                }
                Protocol::Compact => {
                    let last = *self.last.last().unwrap();
                    let d = id - last;
                    if d > 0 && d <= 15 {
                        self.out.push(((d as u8) << 4) | ct);
                    } else {
                        self.out.push(ct);
                        self.zz(i64::from(id));
                    }
                    *self.last.last_mut().unwrap() = id;
                }
            }
        }
        pub fn begin(&mut self) {
            self.last.push(0);
        }
        pub fn end(&mut self) {
            self.out.push(0);
            self.last.pop();
        }
        pub fn i64f(&mut self, id: i16, v: i64) {
            self.field(id, 10, 6);
            match self.proto {
                Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
                Protocol::Compact => self.zz(v),
            }
        }
        pub fn i32f(&mut self, id: i16, v: i32) {
            self.field(id, 8, 5);
            match self.proto {
                Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
                Protocol::Compact => self.zz(i64::from(v)),
            }
        }
        pub fn strf(&mut self, id: i16, s: &str) {
            self.field(id, 11, 8);
            self.raw_str(s);
        }
        pub fn raw_str(&mut self, s: &str) {
            match self.proto {
                Protocol::Binary => self.out.extend_from_slice(&(s.len() as i32).to_be_bytes()),
                Protocol::Compact => self.varint(s.len() as u64),
            }
            self.out.extend_from_slice(s.as_bytes());
        }
        pub fn list_struct(&mut self, id: i16, n: usize) {
            self.field(id, 15, 9);
            match self.proto {
                Protocol::Binary => {
                    self.out.push(12);
                    self.out.extend_from_slice(&(n as i32).to_be_bytes());
                }
                Protocol::Compact => {
                    if n < 15 {
                        self.out.push(((n as u8) << 4) | 12);
                    } else {
                        self.out.push(0xfc);
                        self.varint(n as u64);
                    }
                }
            }
        }
        pub fn struct_field(&mut self, id: i16) {
            self.field(id, 12, 12);
        }
    }

    /// A batch of one process with tags and `n` spans named `op<i>`, each with a string tag.
    pub(crate) fn batch_bytes(proto: Protocol, n: usize) -> Vec<u8> {
        let mut w = W::new(proto);
        write_batch(&mut w, n);
        w.out
    }

    fn write_batch(w: &mut W, n: usize) {
        w.begin();
        w.struct_field(1);
        w.begin();
        w.strf(1, "svc");
        w.list_struct(2, 1);
        w.begin();
        w.strf(1, "hostname");
        w.i32f(2, 0);
        w.strf(3, "h1");
        w.end();
        w.end();
        w.list_struct(2, n);
        for i in 0..n {
            w.begin();
            w.i64f(1, 7);
            w.i64f(2, 0);
            w.i64f(3, i as i64 + 1);
            w.i64f(4, 0);
            w.strf(5, &format!("op{i}"));
            w.i32f(7, 1);
            w.i64f(8, 1_700_000_000_000_000);
            w.i64f(9, 1500);
            w.list_struct(10, 1);
            w.begin();
            w.strf(1, "k");
            w.i32f(2, 0);
            w.strf(3, "v");
            w.end();
            w.end();
        }
        w.end();
    }

    #[test]
    fn both_encodings_decode_the_same_batch() {
        for proto in [Protocol::Binary, Protocol::Compact] {
            let b = decode_batch(&batch_bytes(proto, 3), proto).unwrap();
            let p = b.process.unwrap();
            assert_eq!(p.service_name, "svc");
            assert_eq!(p.tags[0].value, TagValue::Str("h1".into()));
            assert_eq!(b.spans.len(), 3);
            assert_eq!(b.spans[2].operation_name, "op2");
            assert_eq!(b.spans[2].span_id, 3i64.to_be_bytes());
            assert_eq!(b.spans[0].trace_id[15], 7);
            assert_eq!(b.spans[0].start_unix_nano, 1_700_000_000_000_000_000);
            assert_eq!(b.spans[0].duration_nano, 1_500_000);
            assert_eq!(b.spans[0].tags[0].key, "k");
        }
    }

    #[test]
    fn agent_messages_in_both_encodings() {
        let mut w = W::new(Protocol::Compact);
        w.out.extend_from_slice(&[0x82, 0x81, 0x01]);
        w.raw_str("emitBatch");
        w.begin();
        w.struct_field(1);
        write_batch(&mut w, 2);
        w.end();
        match decode_agent_message(&w.out, Protocol::Compact).unwrap() {
            AgentCall::EmitBatch(b) => assert_eq!(b.spans.len(), 2),
            other => panic!("{other:?}"),
        }
        let mut w = W::new(Protocol::Binary);
        w.out.extend_from_slice(&0x8001_0004u32.to_be_bytes());
        w.raw_str("emitBatch");
        w.out.extend_from_slice(&1i32.to_be_bytes());
        w.begin();
        w.struct_field(1);
        write_batch(&mut w, 1);
        w.end();
        match decode_agent_message(&w.out, Protocol::Binary).unwrap() {
            AgentCall::EmitBatch(b) => assert_eq!(b.spans.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lengths_beyond_the_input_are_refused_before_allocating() {
        // A list header claiming two billion spans, in five bytes.
        let buf = [0x0f, 0x00, 0x02, 0x0c, 0x7f, 0xff, 0xff, 0xff];
        let e = decode_batch(&buf, Protocol::Binary).unwrap_err();
        assert!(e.0.contains("more than"), "{e}");
        let buf = [0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode_batch(&buf, Protocol::Compact).is_err());
        // Truncated input and deep nesting fail cleanly.
        let full = batch_bytes(Protocol::Compact, 2);
        for cut in 0..full.len() {
            let _ = decode_batch(&full[..cut], Protocol::Compact);
        }
        let deep: Vec<u8> = std::iter::repeat_n([0x1c], 1000).flatten().collect();
        assert!(decode_batch(&deep, Protocol::Compact).is_err());
    }

    proptest::proptest! {
        /// Whatever arrives in a datagram or a body, decoding and translating end in a value or
        /// an error, never a panic or an allocation beyond the input.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            for p in [Protocol::Binary, Protocol::Compact] {
                if let Ok(batch) = decode_batch(&b, p) {
                    let _ = super::super::model::thrift_batch(batch.process, batch.spans, &mut super::super::model::Budget::new(1 << 20));
                }
                let _ = decode_agent_message(&b, p);
            }
            let _ = super::super::proto::post_spans(&bytes::Bytes::from(b.clone()), 1 << 20);
        }

        /// Valid batches with a few bytes changed: the decoder meets plausible lengths and types.
        #[test]
        fn mutated_batches_never_panic(flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6)) {
            for p in [Protocol::Binary, Protocol::Compact] {
                let mut b = batch_bytes(p, 3);
                for (i, v) in &flips {
                    let n = b.len();
                    b[i % n] = *v;
                }
                if let Ok(batch) = decode_batch(&b, p) {
                    let _ = super::super::model::thrift_batch(batch.process, batch.spans, &mut super::super::model::Budget::new(1 << 20));
                }
            }
        }
    }
}
