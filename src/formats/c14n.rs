//! Exclusive XML canonicalization (W3C `xml-exc-c14n#`, without comments) of an element
//! subtree, over a parsed document.
//!
//! Namespace declarations are rendered only where visibly utilized (the element's own prefix,
//! its attributes' prefixes) and not already rendered with the same URI by an output ancestor;
//! no `InclusiveNamespaces` prefix list. An optional node is left out with its subtree: the
//! enveloped-signature transform.

use roxmltree::{Node, NodeId};

/// The exclusive canonical form of the subtree rooted at `apex`, leaving out `exclude`.
/// `src` is the text the document was parsed from (prefixes are read from it).
pub fn exc_c14n(apex: Node<'_, '_>, src: &str, exclude: Option<NodeId>) -> Vec<u8> {
    let mut out = String::with_capacity(apex.range().len());
    // Bindings rendered by output ancestors: (prefix, uri); "" is the default namespace, which
    // the apex's context renders as empty.
    let mut rendered: Vec<(String, String)> = vec![(String::new(), String::new())];
    element(apex, src, exclude, &mut rendered, &mut out);
    out.into_bytes()
}

/// The qualified name of an element as written in the source.
fn element_qname<'s>(node: Node<'_, '_>, src: &'s str) -> &'s str {
    let start = node.range().start + 1;
    let rest = src.get(start..).unwrap_or("");
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    &rest[..end]
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map(|(p, _)| p).unwrap_or("")
}

fn lookup<'r>(rendered: &'r [(String, String)], prefix: &str) -> Option<&'r str> {
    rendered
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u.as_str())
}

fn element(
    node: Node<'_, '_>,
    src: &str,
    exclude: Option<NodeId>,
    rendered: &mut Vec<(String, String)>,
    out: &mut String,
) {
    let qname = element_qname(node, src);
    let mut used: Vec<(String, String)> = Vec::new();
    let eprefix = prefix_of(qname);
    used.push((
        eprefix.to_owned(),
        node.tag_name().namespace().unwrap_or("").to_owned(),
    ));
    let mut attrs: Vec<(&str, &str, &str, &str)> = Vec::new(); // (ns uri, local, qname, value)
    for a in node.attributes() {
        let aq = src.get(a.range_qname()).unwrap_or(a.name());
        let ap = prefix_of(aq);
        let ns = a.namespace().unwrap_or("");
        if !ap.is_empty() && ap != "xml" && !used.iter().any(|(p, _)| p == ap) {
            used.push((ap.to_owned(), ns.to_owned()));
        }
        attrs.push((ns, a.name(), aq, a.value()));
    }
    let mut decls: Vec<(String, String)> = used
        .into_iter()
        .filter(|(p, u)| p != "xml" && lookup(rendered, p) != Some(u.as_str()))
        .collect();
    decls.sort();
    decls.dedup();
    attrs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    out.push('<');
    out.push_str(qname);
    for (p, u) in &decls {
        if p.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(p);
            out.push_str("=\"");
        }
        escape_attr(u, out);
        out.push('"');
    }
    for (_, _, aq, v) in &attrs {
        out.push(' ');
        out.push_str(aq);
        out.push_str("=\"");
        escape_attr(v, out);
        out.push('"');
    }
    out.push('>');
    let mark = rendered.len();
    rendered.extend(decls);
    for child in node.children() {
        if Some(child.id()) == exclude {
            continue;
        }
        if child.is_element() {
            element(child, src, exclude, rendered, out);
        } else if child.is_text() {
            escape_text(child.text().unwrap_or(""), out);
        } else if let Some(pi) = child.pi() {
            out.push_str("<?");
            out.push_str(pi.target);
            if let Some(v) = pi.value {
                out.push(' ');
                out.push_str(v);
            }
            out.push_str("?>");
        }
    }
    rendered.truncate(mark);
    out.push_str("</");
    out.push_str(qname);
    out.push('>');
}

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(xml: &str, id: &str) -> String {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let n = doc
            .descendants()
            .find(|n| n.attribute("Id") == Some(id))
            .unwrap();
        String::from_utf8(exc_c14n(n, xml, None)).unwrap()
    }

    // Expected values produced by lxml: etree.tostring(el, method="c14n", exclusive=True).
    #[test]
    fn known_answers() {
        let xml = "<?xml version=\"1.0\"?>\n<R xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" xmlns=\"urn:d\"><B Id=\"x\" z=\"1\" a:y=\"2&#9;&lt;\" b:c='q\"'>\r\n t&amp;&gt;<a:E/><?pi  data?><!-- c --><![CDATA[<&]]></B></R>";
        assert_eq!(
            canon(xml, "x"),
            "<B xmlns=\"urn:d\" xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" Id=\"x\" z=\"1\" a:y=\"2&#x9;&lt;\" b:c=\"q&quot;\">\n t&amp;&gt;<a:E></a:E><?pi data?>&lt;&amp;</B>"
        );
        let xml = "<R xmlns=\"urn:d\"><P xmlns=\"\"><B Id=\"y\"><C xmlns=\"urn:e\"><D xmlns=\"\"/></C></B></P></R>";
        assert_eq!(
            canon(xml, "y"),
            "<B Id=\"y\"><C xmlns=\"urn:e\"><D xmlns=\"\"></D></C></B>"
        );
        let xml = "<ds:S xmlns:ds=\"urn:ds\" xmlns:x=\"urn:x\"><ds:I Id=\"z\"><ds:M A=\"1\"/><x:P><ds:Q/></x:P></ds:I></ds:S>";
        assert_eq!(
            canon(xml, "z"),
            "<ds:I xmlns:ds=\"urn:ds\" Id=\"z\"><ds:M A=\"1\"></ds:M><x:P xmlns:x=\"urn:x\"><ds:Q></ds:Q></x:P></ds:I>"
        );
    }
}
