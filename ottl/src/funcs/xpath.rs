//! The XPath XML converters: `GetXML`, `InsertXML`, `RemoveXML`, `ConvertAttributesToElementsXML`
//! and `ConvertTextToElementsXML`. Each reads an XML string, selects nodes with an XPath 1.0
//! expression (sxd-xpath over an sxd-document tree, as otelcol uses antchfx's xpath over xmlquery),
//! edits the tree and writes it back the way xmlquery's `OutputXML` does: no self-closing tags, text
//! trimmed unless `xml:space="preserve"`, `& < > ' "` escaped as Go's `html.EscapeString` does, and the
//! `<?xml …?>` declaration kept only when the input starts with one.
//!
//! As with otelcol, a document may hold several top-level elements or none. It is read inside a
//! wrapper element, and each top-level element becomes a tree of its own (sxd-document's root holds
//! one element), queried in turn: a positional XPath across top-level elements (`/a[2]`) sees one
//! at a time. Differences from otelcol:
//! CDATA sections come back as escaped text (the tree has no CDATA node), whitespace-only text is
//! not wrapped by `ConvertTextToElementsXML` (otelcol writes it as an empty element), and nesting
//! deeper than [`super::xml::MAX_DEPTH`] is an error (checked by roxmltree before the recursive
//! parser runs, so a deep document cannot exhaust a pipeline thread's stack).

use super::{arg, want_str, Func};
use crate::{Call, Expr, Target, Value};
use sxd_document::dom;
use sxd_xpath::nodeset::Node;

const WRAPPER: &str = "vigil-xml-fragment";

fn name(f: Func) -> &'static str {
    match f {
        Func::GetXml => "GetXML",
        Func::InsertXml => "InsertXML",
        Func::RemoveXml => "RemoveXML",
        Func::ConvertAttributesToElementsXml => "ConvertAttributesToElementsXML",
        _ => "ConvertTextToElementsXML",
    }
}

fn compile(f: Func, xpath: &str) -> Result<sxd_xpath::XPath, String> {
    sxd_xpath::Factory::new()
        .build(xpath)
        .map_err(|e| format!("{}: invalid xpath {xpath:?}: {e}", name(f)))?
        .ok_or_else(|| format!("{}: invalid xpath {xpath:?}: it is empty", name(f)))
}

/// The literal arguments, checked when the statement is loaded: the XPath (required by `GetXML`,
/// `InsertXML` and `RemoveXML`, optional for the two conversions) and `elementName`.
pub(super) fn check(f: Func, args: &[Expr]) -> Result<(), String> {
    let what = name(f);
    let optional = matches!(
        f,
        Func::ConvertAttributesToElementsXml | Func::ConvertTextToElementsXml
    );
    match args.get(1) {
        Some(Expr::Lit(Value::Str(x))) if optional && x.is_empty() => {}
        Some(Expr::Lit(Value::Str(x))) => {
            compile(f, x)?;
        }
        None | Some(Expr::Lit(Value::Nil)) if optional => {}
        _ => {
            return Err(format!(
                "{what}: argument 2 (xpath) must be a string literal"
            ))
        }
    }
    if f == Func::ConvertTextToElementsXml {
        match args.get(2) {
            None | Some(Expr::Lit(Value::Nil)) => {}
            Some(Expr::Lit(Value::Str(n))) if n.is_empty() || valid_name(n) => {}
            Some(Expr::Lit(Value::Str(n))) => {
                return Err(format!(
                    "{what}: argument 3 (elementName) {n:?} is not an XML element name"
                ))
            }
            Some(_) => {
                return Err(format!(
                    "{what}: argument 3 (elementName) must be a string literal"
                ))
            }
        }
    }
    Ok(())
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A top-level node of a document.
enum Piece {
    Tree(Box<sxd_document::Package>),
    Comment(String),
    Pi(String, Option<String>),
}

/// A parsed document: its top-level nodes, and the declaration to write back when the input
/// began with one.
struct Parsed {
    pieces: Vec<Piece>,
    declaration: Option<String>,
}

/// The `<?xml …?>` declaration at the start of `s` (after whitespace), and the rest.
fn split_declaration(s: &str) -> (Option<&str>, &str) {
    let t = s.trim_start();
    if t.starts_with("<?xml") && t[5..].starts_with(|c: char| c.is_whitespace() || c == '?') {
        if let Some(end) = t.find("?>") {
            return (Some(&t[5..end]), &t[end + 2..]);
        }
    }
    (None, s)
}

/// The declaration as xmlquery writes it: each pseudo-attribute double-quoted and escaped.
fn declaration(body: &str) -> String {
    let mut out = String::from("<?xml");
    let mut rest = body.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let Some(close) = after[1..].find(q) else {
            break;
        };
        out.push(' ');
        out.push_str(key);
        out.push_str("=\"");
        escape_into(&mut out, &after[1..1 + close]);
        out.push('"');
        rest = after[close + 2..].trim_start();
    }
    out.push_str("?>");
    out
}

fn parse(f: Func, s: &str) -> Result<Parsed, String> {
    let what = name(f);
    let (decl, body) = split_declaration(s);
    let wrapped = format!("<{WRAPPER}>{body}</{WRAPPER}>");
    // roxmltree first: it refuses DTDs and reads without recursion, so the depth can be checked
    // before sxd-document's recursive parser sees the document; it also gives each top-level
    // element's span.
    let doc =
        roxmltree::Document::parse(&wrapped).map_err(|e| format!("{what}: parse xml: {e}"))?;
    let deepest = doc
        .descendants()
        .filter(|n| n.is_element())
        .map(|n| n.ancestors().count())
        .max()
        .unwrap_or(0);
    // The wrapper and roxmltree's root node are two of the ancestors counted.
    if deepest > super::xml::MAX_DEPTH + 2 {
        return Err(format!(
            "{what}: XML nests deeper than {} elements",
            super::xml::MAX_DEPTH
        ));
    }
    let mut pieces = Vec::new();
    for n in doc.root_element().children() {
        match n.node_type() {
            roxmltree::NodeType::Element => {
                let text = wrapped.get(n.range()).unwrap_or_default();
                let package = sxd_document::parser::parse(text)
                    .map_err(|e| format!("{what}: parse xml: {e:?}"))?;
                source_attribute_order(n, &package);
                pieces.push(Piece::Tree(Box::new(package)));
            }
            roxmltree::NodeType::Comment => {
                pieces.push(Piece::Comment(n.text().unwrap_or_default().to_string()))
            }
            roxmltree::NodeType::PI => {
                if let Some(pi) = n.pi() {
                    pieces.push(Piece::Pi(
                        pi.target.to_string(),
                        pi.value.map(str::to_string),
                    ));
                }
            }
            // Text between top-level elements is dropped: xmlquery writes it trimmed, and
            // between elements it is whitespace.
            _ => {}
        }
    }
    let declaration = if s.starts_with("<?xml") {
        decl.map(declaration)
    } else {
        None
    };
    Ok(Parsed {
        pieces,
        declaration,
    })
}

/// Joins neighbouring text nodes (sxd-document's parser splits text at each entity or CDATA
/// section; xmlquery reads it as one text node, trimmed as one).
fn merge_text<'d>(doc: dom::Document<'d>, e: dom::Element<'d>) {
    let children = e.children();
    let split = children.windows(2).any(|w| {
        matches!(
            w,
            [dom::ChildOfElement::Text(_), dom::ChildOfElement::Text(_)]
        )
    });
    if !split {
        return;
    }
    let mut out: Vec<dom::ChildOfElement<'d>> = Vec::with_capacity(children.len());
    let mut text: Option<String> = None;
    for ch in children {
        match ch {
            dom::ChildOfElement::Text(t) => text.get_or_insert_with(String::new).push_str(t.text()),
            other => {
                if let Some(t) = text.take() {
                    out.push(doc.create_text(&t).into());
                }
                out.push(other);
            }
        }
    }
    if let Some(t) = text.take() {
        out.push(doc.create_text(&t).into());
    }
    e.replace_children(out);
}

fn elements_in_order<'d>(e: dom::Element<'d>, out: &mut Vec<dom::Element<'d>>) {
    out.push(e);
    for ch in e.children() {
        if let dom::ChildOfElement::Element(k) = ch {
            elements_in_order(k, out);
        }
    }
}

/// Puts each element's attributes back in the order the document wrote them (sxd-document's
/// parser sorts them by name; xmlquery keeps the document's order). Setting an attribute again
/// moves it to the end, so setting each in source order leaves them in source order.
fn source_attribute_order(n: roxmltree::Node<'_, '_>, package: &sxd_document::Package) {
    let doc = package.as_document();
    let mut sx = Vec::new();
    for ch in doc.root().children() {
        if let dom::ChildOfRoot::Element(e) = ch {
            elements_in_order(e, &mut sx);
        }
    }
    for (r, e) in n.descendants().filter(|d| d.is_element()).zip(sx) {
        merge_text(doc, e);
        if r.attributes().len() < 2 {
            continue;
        }
        let attrs = e.attributes();
        for ra in r.attributes() {
            if let Some(a) = attrs.iter().find(|a| {
                a.name().local_part() == ra.name() && a.name().namespace_uri() == ra.namespace()
            }) {
                let prefix = a.preferred_prefix();
                e.set_attribute_value(a.name(), a.value())
                    .set_preferred_prefix(prefix);
            }
        }
    }
}

fn select<'d>(
    f: Func,
    xpath: &sxd_xpath::XPath,
    doc: &dom::Document<'d>,
) -> Result<Vec<Node<'d>>, String> {
    let ctx = sxd_xpath::Context::new();
    match xpath
        .evaluate(&ctx, doc.root())
        .map_err(|e| format!("{}: xpath: {e}", name(f)))?
    {
        sxd_xpath::Value::Nodeset(ns) => Ok(ns.document_order()),
        _ => Ok(Vec::new()),
    }
}

/// Go's `html.EscapeString`, which xmlquery writes text and attribute values with.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
}

fn qname(prefix: Option<&str>, local: &str) -> String {
    match prefix {
        Some(p) if !p.is_empty() => format!("{p}:{local}"),
        _ => local.to_string(),
    }
}

fn element_prefix<'d>(e: dom::Element<'d>) -> Option<&'d str> {
    let uri = e.name().namespace_uri()?;
    e.preferred_prefix()
        .or_else(|| e.prefix_for_namespace_uri(uri, None))
}

/// `xml:space` on the element, else what its parent had.
fn preserve(e: dom::Element<'_>, inherited: bool) -> bool {
    const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
    match e.attribute_value((XML_NS, "space")) {
        Some("preserve") => true,
        Some("default") => false,
        _ => inherited,
    }
}

fn write_text(out: &mut String, text: &str, preserve: bool) {
    escape_into(out, if preserve { text } else { text.trim() });
}

fn write_element(out: &mut String, e: dom::Element<'_>, inherited: bool) {
    let keep = preserve(e, inherited);
    let tag = qname(element_prefix(e), e.name().local_part());
    out.push('<');
    out.push_str(&tag);
    // The namespace declarations this element makes (those in scope here and not at its parent).
    if let Some(uri) = e.default_namespace_uri() {
        out.push_str(" xmlns=\"");
        escape_into(out, uri);
        out.push('"');
    }
    let parent_ns = match e.parent() {
        Some(dom::ParentOfChild::Element(p)) => p.namespaces_in_scope(),
        _ => Vec::new(),
    };
    for ns in e.namespaces_in_scope() {
        if ns.prefix() == "xml"
            || parent_ns
                .iter()
                .any(|p| p.prefix() == ns.prefix() && p.uri() == ns.uri())
        {
            continue;
        }
        out.push_str(" xmlns:");
        out.push_str(ns.prefix());
        out.push_str("=\"");
        escape_into(out, ns.uri());
        out.push('"');
    }
    for a in e.attributes() {
        let prefix = match a.name().namespace_uri() {
            Some(uri) => a
                .preferred_prefix()
                .or_else(|| e.prefix_for_namespace_uri(uri, None)),
            None => None,
        };
        out.push(' ');
        out.push_str(&qname(prefix, a.name().local_part()));
        out.push_str("=\"");
        escape_into(out, a.value());
        out.push('"');
    }
    out.push('>');
    for ch in e.children() {
        write_child(out, ch, keep);
    }
    out.push_str("</");
    out.push_str(&tag);
    out.push('>');
}

fn write_child(out: &mut String, ch: dom::ChildOfElement<'_>, inherited: bool) {
    match ch {
        dom::ChildOfElement::Element(e) => write_element(out, e, inherited),
        dom::ChildOfElement::Text(t) => write_text(out, t.text(), inherited),
        dom::ChildOfElement::Comment(c) => write_comment(out, c),
        dom::ChildOfElement::ProcessingInstruction(p) => write_pi(out, p),
    }
}

fn write_comment(out: &mut String, c: dom::Comment<'_>) {
    out.push_str("<!--");
    out.push_str(c.text());
    out.push_str("-->");
}

fn write_pi(out: &mut String, p: dom::ProcessingInstruction<'_>) {
    out.push_str("<?");
    out.push_str(p.target());
    if let Some(v) = p.value() {
        out.push(' ');
        out.push_str(v);
    }
    out.push_str("?>");
}

fn write_piece(out: &mut String, piece: &Piece) {
    match piece {
        Piece::Tree(p) => {
            for ch in p.as_document().root().children() {
                match ch {
                    dom::ChildOfRoot::Element(e) => write_element(out, e, false),
                    dom::ChildOfRoot::Comment(c) => write_comment(out, c),
                    dom::ChildOfRoot::ProcessingInstruction(pi) => write_pi(out, pi),
                }
            }
        }
        Piece::Comment(c) => {
            out.push_str("<!--");
            out.push_str(c);
            out.push_str("-->");
        }
        Piece::Pi(target, value) => {
            out.push_str("<?");
            out.push_str(target);
            if let Some(v) = value {
                out.push(' ');
                out.push_str(v);
            }
            out.push_str("?>");
        }
    }
}

fn write_document(p: &Parsed, tail: &str) -> String {
    let mut out = p.declaration.clone().unwrap_or_default();
    for piece in &p.pieces {
        write_piece(&mut out, piece);
    }
    out.push_str(tail);
    out
}

/// A deep copy of `from` (a node of another document) made in `doc`.
fn copy<'d>(doc: dom::Document<'d>, from: dom::ChildOfElement<'_>) -> dom::ChildOfElement<'d> {
    match from {
        dom::ChildOfElement::Element(e) => {
            let n = doc.create_element(e.name());
            n.set_preferred_prefix(e.preferred_prefix());
            if let Some(uri) = e.default_namespace_uri() {
                n.set_default_namespace_uri(Some(uri));
            }
            for ns in e.namespaces_in_scope() {
                if ns.prefix() != "xml" {
                    n.register_prefix(ns.prefix(), ns.uri());
                }
            }
            for a in e.attributes() {
                let na = n.set_attribute_value(a.name(), a.value());
                na.set_preferred_prefix(a.preferred_prefix());
            }
            for ch in e.children() {
                n.append_child(copy(doc, ch));
            }
            n.into()
        }
        dom::ChildOfElement::Text(t) => doc.create_text(t.text()).into(),
        dom::ChildOfElement::Comment(c) => doc.create_comment(c.text()).into(),
        dom::ChildOfElement::ProcessingInstruction(p) => doc
            .create_processing_instruction(p.target(), p.value())
            .into(),
    }
}

/// A top-level node of the sub-document, made in `doc` to be appended to an element.
fn copy_piece<'d>(doc: dom::Document<'d>, piece: &Piece) -> Vec<dom::ChildOfElement<'d>> {
    match piece {
        Piece::Tree(p) => p
            .as_document()
            .root()
            .children()
            .into_iter()
            .map(|ch| match ch {
                dom::ChildOfRoot::Element(e) => copy(doc, e.into()),
                dom::ChildOfRoot::Comment(c) => copy(doc, c.into()),
                dom::ChildOfRoot::ProcessingInstruction(p) => copy(doc, p.into()),
            })
            .collect(),
        Piece::Comment(c) => vec![doc.create_comment(c).into()],
        Piece::Pi(t, v) => vec![doc.create_processing_instruction(t, v.as_deref()).into()],
    }
}

/// The literal xpath argument, or `default` when it is left out or empty.
fn xpath_arg(f: Func, c: &Call, default: &str) -> Result<sxd_xpath::XPath, String> {
    match c.args.get(1) {
        Some(Expr::Lit(Value::Str(x))) if !x.is_empty() => compile(f, x),
        _ => compile(f, default),
    }
}

/// `ConvertTextToElementsXML` on one element: where text sits beside other text or elements, each
/// piece of (non-blank) text becomes an element of its own.
fn wrap_text(doc: dom::Document<'_>, e: dom::Element<'_>, element_name: &str) {
    let children = e.children();
    let (mut values, mut elements) = (0, 0);
    for ch in &children {
        match ch {
            dom::ChildOfElement::Element(k) => {
                wrap_text(doc, *k, element_name);
                elements += 1;
            }
            dom::ChildOfElement::Text(t) if !t.text().trim().is_empty() => values += 1,
            _ => {}
        }
    }
    if values == 0 || values + elements <= 1 {
        return;
    }
    let rebuilt: Vec<dom::ChildOfElement<'_>> = children
        .into_iter()
        .map(|ch| match ch {
            dom::ChildOfElement::Text(t) if !t.text().trim().is_empty() => {
                let w = doc.create_element(element_name);
                w.append_child(doc.create_text(t.text()));
                w.into()
            }
            other => other,
        })
        .collect();
    e.replace_children(rebuilt);
}

pub(super) fn call(c: &Call, t: &dyn Target) -> Option<Result<Value, String>> {
    let f = c.func;
    if !matches!(
        f,
        Func::GetXml
            | Func::InsertXml
            | Func::RemoveXml
            | Func::ConvertAttributesToElementsXml
            | Func::ConvertTextToElementsXml
    ) {
        return None;
    }
    Some((|| {
        let what = name(f);
        let s = want_str(f, arg(c, 0, t)?)?;
        let parsed = parse(f, &s)?;
        let trees = parsed.pieces.iter().filter_map(|p| match p {
            Piece::Tree(p) => Some(p.as_document()),
            _ => None,
        });
        let mut tail = String::new();
        match f {
            Func::GetXml => {
                let xpath = xpath_arg(f, c, "/")?;
                let mut out = String::new();
                for doc in trees {
                    for n in select(f, &xpath, &doc)? {
                        match n {
                            Node::Element(e) => write_element(&mut out, e, false),
                            Node::Text(t) => write_text(&mut out, t.text(), false),
                            Node::Attribute(a) => write_text(&mut out, a.value(), false),
                            _ => {}
                        }
                    }
                }
                return Ok(Value::Str(out));
            }
            Func::InsertXml => {
                let xpath = xpath_arg(f, c, "/")?;
                let sub = parse(f, &want_str(f, arg(c, 2, t)?)?)?;
                let mut at_root = parsed.pieces.is_empty() && {
                    // An empty document has no tree to query; the root is all `/` selects.
                    let probe = sxd_document::Package::new();
                    select(f, &xpath, &probe.as_document())?
                        .iter()
                        .any(|n| matches!(n, Node::Root(_)))
                };
                for doc in trees {
                    for n in select(f, &xpath, &doc)? {
                        match n {
                            Node::Element(e) => {
                                for piece in &sub.pieces {
                                    e.append_children(copy_piece(doc, piece));
                                }
                            }
                            // The sub-document goes once after the last top-level node.
                            Node::Root(_) => at_root = true,
                            Node::Attribute(a) => {
                                return Err(format!(
                                    "{what} XPath selected non-element: {:?}",
                                    a.name().local_part()
                                ))
                            }
                            Node::Text(t) => {
                                return Err(format!(
                                    "{what} XPath selected non-element: {:?}",
                                    t.text()
                                ))
                            }
                            _ => {
                                return Err(format!(
                                    "{what} XPath selected a node that is not an element"
                                ))
                            }
                        }
                    }
                }
                if at_root {
                    for piece in &sub.pieces {
                        write_piece(&mut tail, piece);
                    }
                }
            }
            Func::RemoveXml => {
                let xpath = xpath_arg(f, c, "/")?;
                for doc in trees {
                    for n in select(f, &xpath, &doc)? {
                        match n {
                            Node::Element(e) => e.remove_from_parent(),
                            Node::Attribute(a) => {
                                if let Some(p) = a.parent() {
                                    p.remove_attribute(a.name());
                                }
                            }
                            Node::Text(t) => t.remove_from_parent(),
                            Node::Comment(c) => c.remove_from_parent(),
                            _ => {}
                        }
                    }
                }
            }
            Func::ConvertAttributesToElementsXml => {
                let xpath = xpath_arg(f, c, "//@*")?;
                for doc in trees {
                    let chosen: Vec<dom::Attribute<'_>> = select(f, &xpath, &doc)?
                        .into_iter()
                        .filter_map(|n| match n {
                            Node::Attribute(a) => Some(a),
                            _ => None,
                        })
                        .collect();
                    // Element by element, each one's attributes in the document's order (the
                    // node-set's order among one element's attributes is not the document's).
                    let mut elements = Vec::new();
                    if let Some(root) = doc.root().children().into_iter().find_map(|c| c.element())
                    {
                        elements_in_order(root, &mut elements);
                    }
                    for p in elements {
                        for a in p.attributes() {
                            if chosen.contains(&a) {
                                let e = doc.create_element(a.name().local_part());
                                e.append_child(doc.create_text(a.value()));
                                p.append_child(e);
                                p.remove_attribute(a.name());
                            }
                        }
                    }
                }
            }
            _ => {
                let xpath = xpath_arg(f, c, "/")?;
                let element_name = match c.args.get(2) {
                    Some(Expr::Lit(Value::Str(n))) if !n.is_empty() => n.as_str(),
                    _ => "value",
                };
                for doc in trees {
                    for n in select(f, &xpath, &doc)? {
                        match n {
                            Node::Element(e) => wrap_text(doc, e, element_name),
                            Node::Root(r) => {
                                for e in r.children().into_iter().filter_map(|c| c.element()) {
                                    wrap_text(doc, e, element_name);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(Value::Str(write_document(&parsed, &tail)))
    })())
}
