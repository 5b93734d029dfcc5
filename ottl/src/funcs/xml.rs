//! `ParseXML` and `ParseSimplifiedXML`: an XML document as a map, in otelcol's two shapes. The
//! document is read by roxmltree (no DTDs, no external entities). Nesting deeper than
//! [`MAX_DEPTH`] is an error rather than a deep recursion: otelcol's bound is 10,000, which would
//! not fit the stack of a pipeline thread here.

use super::{arg, want_str, Func};
use crate::{kv, Call, Target, Value};
use vigil_core::otlp::common::v1::{AnyValue, KeyValue};

/// The deepest element nesting read.
pub const MAX_DEPTH: usize = 128;

pub(super) fn call(c: &Call, t: &dyn Target) -> Option<Result<Value, String>> {
    let f = c.func;
    if !matches!(f, Func::ParseXml | Func::ParseSimplifiedXml) {
        return None;
    }
    Some((|| {
        let what = if f == Func::ParseXml {
            "ParseXML"
        } else {
            "ParseSimplifiedXML"
        };
        let s = want_str(f, arg(c, 0, t)?)?;
        let doc = roxmltree::Document::parse(&s).map_err(|e| format!("{what}: {e}"))?;
        let root = doc.root_element();
        if f == Func::ParseXml {
            element(root, 0).map(Value::Map)
        } else {
            let v = simplified(root, 0)?.unwrap_or(Value::Str(String::new()));
            Ok(Value::Map(vec![kv(root.tag_name().name(), v)]))
        }
    })())
}

fn too_deep() -> String {
    format!("XML nests deeper than {MAX_DEPTH} elements")
}

/// The text directly inside an element (text and CDATA), joined and trimmed.
fn own_text(n: roxmltree::Node<'_, '_>) -> String {
    let mut s = String::new();
    for ch in n.children().filter(|c| c.is_text()) {
        s.push_str(ch.text().unwrap_or_default());
    }
    s.trim().to_string()
}

/// `ParseXML`'s shape: `tag`, and when present `attributes`, `content` and `children`.
fn element(n: roxmltree::Node<'_, '_>, depth: usize) -> Result<Vec<KeyValue>, String> {
    if depth >= MAX_DEPTH {
        return Err(format!("ParseXML: {}", too_deep()));
    }
    let mut m = vec![kv("tag", Value::Str(n.tag_name().name().to_string()))];
    let attrs: Vec<KeyValue> = n
        .attributes()
        .map(|a| kv(a.name(), Value::Str(a.value().to_string())))
        .collect();
    if !attrs.is_empty() {
        m.push(kv("attributes", Value::Map(attrs)));
    }
    let content = own_text(n);
    if !content.is_empty() {
        m.push(kv("content", Value::Str(content)));
    }
    let mut children: Vec<AnyValue> = Vec::new();
    for ch in n.children().filter(|c| c.is_element()) {
        children.push(Value::Map(element(ch, depth + 1)?).into_any());
    }
    if !children.is_empty() {
        m.push(kv("children", Value::List(children)));
    }
    Ok(m)
}

/// `ParseSimplifiedXML`'s shape: an element with child elements is a map of them (text beside them
/// and attributes ignored), one with only text is that text, and an empty one is `None` (dropped,
/// though it still makes its siblings of the same tag a list).
fn simplified(n: roxmltree::Node<'_, '_>, depth: usize) -> Result<Option<Value>, String> {
    if depth >= MAX_DEPTH {
        return Err(format!("ParseSimplifiedXML: {}", too_deep()));
    }
    let kids: Vec<_> = n.children().filter(|c| c.is_element()).collect();
    if kids.is_empty() {
        let text = own_text(n);
        return Ok((!text.is_empty()).then_some(Value::Str(text)));
    }
    // (tag, values, count of elements with that tag, empty ones included)
    let mut groups: Vec<(String, Vec<Value>, usize)> = Vec::new();
    for k in kids {
        let tag = k.tag_name().name().to_string();
        let v = simplified(k, depth + 1)?;
        let i = match groups.iter().position(|g| g.0 == tag) {
            Some(i) => i,
            None => {
                groups.push((tag, Vec::new(), 0));
                groups.len() - 1
            }
        };
        groups[i].2 += 1;
        if let Some(v) = v {
            groups[i].1.push(v);
        }
    }
    let mut m = Vec::with_capacity(groups.len());
    for (tag, mut vals, count) in groups {
        if count > 1 {
            m.push(kv(
                tag,
                Value::List(vals.into_iter().map(Value::into_any).collect()),
            ));
        } else if let Some(v) = vals.pop() {
            m.push(kv(tag, v));
        }
    }
    Ok(Some(Value::Map(m)))
}
