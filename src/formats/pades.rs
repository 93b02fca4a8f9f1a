//! PAdES baseline B-B (EN 319 142-1) for PDF documents: each signature is an incremental
//! update appended to the current revision, never changing a byte before it.
//!
//! The existing PDF is only read (with lopdf, which follows cross-reference streams and object
//! streams); the update is written here: a signature dictionary with a reserved `/Contents`, a
//! signature field merged with its widget annotation (a visible stamp in its own appearance
//! stream, on a grid of the last page), the page with the widget added to its
//! `/Annots`, the AcroForm with the field added to `/Fields` (SigFlags 3), and a new
//! cross-reference section (a table, or a stream when the previous section is one) whose
//! trailer points back with `/Prev`. Preparation computes the SHA-256 of the bytes the
//! `/ByteRange` covers; completion writes the CMS into `/Contents`. Pure: no I/O.

use super::FormatError;
use lopdf::{Dictionary, Object, ObjectId};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::io::Write as _;

/// PAdES settings (`[pades]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PadesSettings {
    /// Bytes reserved for the CMS in each signature's `/Contents` (written as twice as many
    /// hex digits). A CMS larger than this (long chains, large CRLs) refuses the completion.
    pub contents_bytes: usize,
    /// The `/Location` written in each signature dictionary (empty: none).
    pub location: String,
}

impl Default for PadesSettings {
    fn default() -> Self {
        PadesSettings {
            contents_bytes: 32 * 1024,
            location: String::new(),
        }
    }
}

/// What one signature step writes besides the CMS.
#[derive(Debug, Clone, Default)]
pub struct SignatureClaims {
    /// "Visa", "Signature" or "Cachet", with "pour le compte de X" when delegated.
    pub reason: String,
    pub location: String,
    /// Unix seconds, written as `/M`.
    pub time: i64,
    /// The RGS level of the certificate, shown in the stamp (`RGS **`).
    pub level: Option<u8>,
}

/// A prepared incremental update waiting for its CMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Prepared {
    /// Length of the revision the update is appended to.
    pub base_len: u64,
    /// The update, `/Contents` filled with zeros.
    pub update: Vec<u8>,
    /// Offset in `update` of the first hex digit of `/Contents`.
    pub contents_at: u64,
    /// Hex digits reserved.
    pub contents_len: u64,
    /// The signature field's name.
    pub field: String,
}

/// What a parsed PDF offers to an update.
struct Pdf {
    doc: lopdf::Document,
    /// Offset of the last cross-reference section.
    startxref: u64,
    /// Whether that section is a cross-reference stream.
    xref_stream: bool,
}

fn invalid(m: impl Into<String>) -> FormatError {
    FormatError::Invalid(m.into())
}

/// Checks a PDF at submission: it parses, is not encrypted, and is not certified with DocMDP
/// P=1 (no change allowed, so no signature could be added).
pub fn check(content: &[u8]) -> Result<(), FormatError> {
    parse(content).map(|_| ())
}

fn parse(content: &[u8]) -> Result<Pdf, FormatError> {
    if !content.starts_with(b"%PDF-") {
        return Err(invalid("not a PDF: it does not start with %PDF-"));
    }
    let doc = match lopdf::Document::load_mem(content) {
        Ok(d) => d,
        Err(e) => {
            if matches!(e, lopdf::Error::Decryption(_)) || contains(content, b"/Encrypt") {
                return Err(encrypted());
            }
            return Err(invalid(format!("the PDF does not parse: {e}")));
        }
    };
    if doc.trailer.has(b"Encrypt") || doc.is_encrypted() {
        return Err(encrypted());
    }
    let root = root_id(&doc)?;
    let catalog = doc
        .get_dictionary(root)
        .map_err(|e| invalid(format!("the PDF catalog: {e}")))?;
    if docmdp_p(&doc, catalog) == Some(1) {
        return Err(invalid(
            "the PDF is certified with DocMDP P=1 (no change allowed): it cannot be signed",
        ));
    }
    if doc.get_pages().is_empty() {
        return Err(invalid("the PDF has no page"));
    }
    let startxref = last_startxref(content)?;
    let at = usize::try_from(startxref)
        .ok()
        .filter(|&a| a < content.len())
        .ok_or_else(|| invalid("the PDF's startxref points outside the file"))?;
    let xref_stream = !content[at..].starts_with(b"xref");
    Ok(Pdf {
        doc,
        startxref,
        xref_stream,
    })
}

fn encrypted() -> FormatError {
    invalid("the PDF is encrypted: submit it without encryption")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn root_id(doc: &lopdf::Document) -> Result<ObjectId, FormatError> {
    doc.trailer
        .get(b"Root")
        .and_then(Object::as_reference)
        .map_err(|_| invalid("the PDF trailer has no /Root"))
}

fn resolve<'a>(doc: &'a lopdf::Document, o: &'a Object) -> Option<&'a Object> {
    doc.dereference(o).ok().map(|(_, o)| o)
}

/// The /P of a DocMDP certification, if the document is certified.
fn docmdp_p(doc: &lopdf::Document, catalog: &Dictionary) -> Option<i64> {
    let perms = resolve(doc, catalog.get(b"Perms").ok()?)?.as_dict().ok()?;
    let sig = resolve(doc, perms.get(b"DocMDP").ok()?)?.as_dict().ok()?;
    let refs = resolve(doc, sig.get(b"Reference").ok()?)?.as_array().ok()?;
    for r in refs {
        let Some(Ok(r)) = resolve(doc, r).map(Object::as_dict) else {
            continue;
        };
        if r.get(b"TransformMethod").and_then(Object::as_name).ok() != Some(b"DocMDP") {
            continue;
        }
        let p = r
            .get(b"TransformParams")
            .ok()
            .and_then(|t| resolve(doc, t))
            .and_then(|t| t.as_dict().ok())
            .and_then(|t| t.get(b"P").ok())
            .and_then(|p| p.as_i64().ok())
            .unwrap_or(2);
        return Some(p);
    }
    Some(2)
}

fn last_startxref(content: &[u8]) -> Result<u64, FormatError> {
    let tail_from = content.len().saturating_sub(2048);
    let tail = &content[tail_from..];
    let pos = tail
        .windows(9)
        .rposition(|w| w == b"startxref")
        .ok_or_else(|| invalid("the PDF has no startxref"))?;
    let digits: String = tail[pos + 9..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits
        .parse()
        .map_err(|_| invalid("the PDF's startxref is not a number"))
}

/// The common name of a DER certificate (else its whole subject).
fn signer_name(cert_der: &[u8]) -> String {
    let Ok(cert) = openssl::x509::X509::from_der(cert_der) else {
        return String::new();
    };
    let subject = cert.subject_name();
    subject
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_default()
}

/// Builds the update for one signature over `content` and the SHA-256 of what its
/// `/ByteRange` covers.
pub fn prepare(
    content: &[u8],
    cert_der: &[u8],
    claims: &SignatureClaims,
    settings: &PadesSettings,
) -> Result<(Prepared, [u8; 32]), FormatError> {
    let pdf = parse(content)?;
    let doc = &pdf.doc;
    let root = root_id(doc)?;
    let size = doc
        .trailer
        .get(b"Size")
        .and_then(Object::as_i64)
        .ok()
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or(0)
        .max(doc.max_id + 1);
    let sig_id: ObjectId = (size, 0);
    let field_id: ObjectId = (size + 1, 0);
    let ap_id: ObjectId = (size + 2, 0);
    let xref_id: ObjectId = (size + 3, 0);
    let field_name = format!("Signature{}", size);

    let pages = doc.get_pages();
    let (_, &page_id) = pages
        .iter()
        .next_back()
        .ok_or_else(|| invalid("the PDF has no page"))?;
    let mut page = doc
        .get_dictionary(page_id)
        .map_err(|e| invalid(format!("the PDF's last page: {e}")))?
        .clone();
    let mut annots = match page.get(b"Annots").ok().and_then(|a| resolve(doc, a)) {
        Some(Object::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    annots.push(Object::Reference(field_id));
    page.set("Annots", Object::Array(annots));

    let catalog = doc
        .get_dictionary(root)
        .map_err(|e| invalid(format!("the PDF catalog: {e}")))?;
    let (acro_id, mut acro) = match catalog.get(b"AcroForm") {
        Ok(Object::Reference(id)) => (
            Some(*id),
            doc.get_dictionary(*id)
                .map_err(|e| invalid(format!("the PDF's AcroForm: {e}")))?
                .clone(),
        ),
        Ok(Object::Dictionary(d)) => (None, d.clone()),
        _ => (None, Dictionary::new()),
    };
    let mut fields = match acro.get(b"Fields").ok().and_then(|f| resolve(doc, f)) {
        Some(Object::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    // Stamps already on the document: the new one takes the next cell of the grid.
    let earlier_signatures = fields
        .iter()
        .filter_map(|f| resolve(doc, f).and_then(|f| f.as_dict().ok()))
        .filter(|f| f.get(b"FT").and_then(Object::as_name).ok() == Some(b"Sig"))
        .count();
    let media = page_box(doc, page_id);
    let rect = stamp_rect(media, earlier_signatures);
    fields.push(Object::Reference(field_id));
    acro.set("Fields", Object::Array(fields));
    acro.set("SigFlags", Object::Integer(3));
    let mut rewritten: Vec<(ObjectId, Object)> = vec![(page_id, Object::Dictionary(page))];
    match acro_id {
        Some(id) => rewritten.push((id, Object::Dictionary(acro))),
        None => {
            let mut cat = catalog.clone();
            cat.set("AcroForm", Object::Dictionary(acro));
            rewritten.push((root, Object::Dictionary(cat)));
        }
    }

    let contents_len = settings.contents_bytes.max(1024) * 2;
    let name = signer_name(cert_der);
    // The update, object by object, with offsets relative to its start.
    let mut out: Vec<u8> = Vec::new();
    if !matches!(content.last(), Some(b'\n' | b'\r')) {
        out.push(b'\n');
    }
    let base_len = content.len() as u64;
    let mut offsets: Vec<(ObjectId, u64)> = Vec::new();

    // The signature dictionary, written by hand for the placeholders.
    offsets.push((sig_id, base_len + out.len() as u64));
    out.extend_from_slice(format!("{} 0 obj\n<</Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /ByteRange ", sig_id.0).as_bytes());
    let byte_range_at = out.len();
    out.extend_from_slice(&[b' '; BYTE_RANGE_WIDTH]);
    out.extend_from_slice(b" /Contents <");
    let contents_at = out.len();
    out.resize(out.len() + contents_len, b'0');
    out.extend_from_slice(b"> /M ");
    write_text(&mut out, &pdf_date(claims.time));
    if !name.is_empty() {
        out.extend_from_slice(b" /Name ");
        write_text(&mut out, &name);
    }
    out.extend_from_slice(b" /Reason ");
    write_text(&mut out, &claims.reason);
    if !claims.location.is_empty() {
        out.extend_from_slice(b" /Location ");
        write_text(&mut out, &claims.location);
    }
    out.extend_from_slice(b">>\nendobj\n");

    // The field merged with its widget (invisible: an empty rectangle).
    let mut field = Dictionary::new();
    field.set("Type", Object::Name(b"Annot".to_vec()));
    field.set("Subtype", Object::Name(b"Widget".to_vec()));
    field.set("FT", Object::Name(b"Sig".to_vec()));
    field.set(
        "T",
        Object::String(field_name.as_bytes().to_vec(), Default::default()),
    );
    field.set("V", Object::Reference(sig_id));
    field.set("F", Object::Integer(132));
    field.set(
        "Rect",
        Object::Array(rect.iter().map(|&v| Object::Real(v)).collect()),
    );
    field.set("P", Object::Reference(page_id));
    let mut ap = Dictionary::new();
    ap.set("N", Object::Reference(ap_id));
    field.set("AP", Object::Dictionary(ap));
    offsets.push((field_id, base_len + out.len() as u64));
    write_indirect(&mut out, field_id, &Object::Dictionary(field));

    // The visible stamp, drawn in the widget's own appearance stream (never in the page).
    offsets.push((ap_id, base_len + out.len() as u64));
    let stamp = stamp_stream(&name, &claims.reason, claims.time, claims.level);
    out.extend_from_slice(
        format!(
            "{} 0 obj\n<</Type /XObject /Subtype /Form /BBox [0 0 {STAMP_W} {STAMP_H}] /Resources <</Font <</F1 <</Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding>>>>>> /Length {}>>\nstream\n",
            ap_id.0,
            stamp.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&stamp);
    out.extend_from_slice(b"\nendstream\nendobj\n");
    for (id, o) in &rewritten {
        offsets.push((*id, base_len + out.len() as u64));
        write_indirect(&mut out, *id, o);
    }

    // The trailer entries carried over.
    let mut trailer = Dictionary::new();
    trailer.set("Root", Object::Reference(root));
    for key in [&b"Info"[..], b"ID"] {
        if let Ok(v) = pdf.doc.trailer.get(key) {
            trailer.set(key.to_vec(), v.clone());
        }
    }
    trailer.set("Prev", Object::Integer(pdf.startxref as i64));
    let xref_at = base_len + out.len() as u64;
    if pdf.xref_stream {
        offsets.push((xref_id, xref_at));
        offsets.sort_by_key(|(id, _)| *id);
        let mut data = Vec::with_capacity(offsets.len() * 7);
        let mut index = Vec::new();
        for run in runs(&offsets) {
            index.push(Object::Integer(i64::from(run[0].0 .0)));
            index.push(Object::Integer(run.len() as i64));
            for ((_, gen), off) in run {
                data.push(1u8);
                data.extend_from_slice(&(*off as u32).to_be_bytes());
                data.extend_from_slice(&gen.to_be_bytes());
            }
        }
        trailer.set("Type", Object::Name(b"XRef".to_vec()));
        trailer.set("Size", Object::Integer(i64::from(xref_id.0) + 1));
        trailer.set("W", Object::Array(vec![1.into(), 4.into(), 2.into()]));
        trailer.set("Index", Object::Array(index));
        trailer.set("Length", Object::Integer(data.len() as i64));
        out.extend_from_slice(format!("{} 0 obj\n", xref_id.0).as_bytes());
        write_object(&mut out, &Object::Dictionary(trailer));
        out.extend_from_slice(b"\nstream\n");
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\nendstream\nendobj\n");
    } else {
        offsets.sort_by_key(|(id, _)| *id);
        out.extend_from_slice(b"xref\n");
        for run in runs(&offsets) {
            out.extend_from_slice(format!("{} {}\n", run[0].0 .0, run.len()).as_bytes());
            for ((_, gen), off) in run {
                out.extend_from_slice(format!("{off:010} {gen:05} n\r\n").as_bytes());
            }
        }
        trailer.set("Size", Object::Integer(i64::from(size) + 3));
        out.extend_from_slice(b"trailer\n");
        write_object(&mut out, &Object::Dictionary(trailer));
        out.push(b'\n');
    }
    out.extend_from_slice(format!("startxref\n{xref_at}\n%%EOF\n").as_bytes());

    // The byte range: everything but the `/Contents` hex string with its delimiters.
    let total = base_len + out.len() as u64;
    let a = base_len + contents_at as u64 - 1;
    let b = base_len + (contents_at + contents_len) as u64 + 1;
    let range = format!("[0 {a} {b} {}]", total - b);
    if range.len() > BYTE_RANGE_WIDTH {
        return Err(invalid("the PDF is too large to sign"));
    }
    out[byte_range_at..byte_range_at + range.len()].copy_from_slice(range.as_bytes());
    let mut h = sha2::Sha256::new();
    h.update(content);
    let rel_a = (a - base_len) as usize;
    let rel_b = (b - base_len) as usize;
    h.update(&out[..rel_a]);
    h.update(&out[rel_b..]);
    Ok((
        Prepared {
            base_len,
            update: out,
            contents_at: contents_at as u64,
            contents_len: contents_len as u64,
            field: field_name,
        },
        h.finalize().into(),
    ))
}

/// A stamp's size in points.
const STAMP_W: u32 = 180;
const STAMP_H: u32 = 56;

/// The page's /MediaBox (looked up the page tree), else A4.
fn page_box(doc: &lopdf::Document, page: ObjectId) -> [f32; 4] {
    let mut id = Some(page);
    for _ in 0..32 {
        let Some(d) = id.and_then(|i| doc.get_dictionary(i).ok()) else {
            break;
        };
        if let Some(Ok(a)) = d
            .get(b"MediaBox")
            .ok()
            .and_then(|m| resolve(doc, m))
            .map(Object::as_array)
        {
            let v: Vec<f32> = a
                .iter()
                .filter_map(|x| {
                    x.as_float()
                        .ok()
                        .or_else(|| x.as_i64().ok().map(|i| i as f32))
                })
                .collect();
            if let [a, b, c, d] = v[..] {
                return [a, b, c, d];
            }
        }
        id = d.get(b"Parent").and_then(Object::as_reference).ok();
    }
    [0.0, 0.0, 595.0, 842.0]
}

/// The `k`-th cell of a grid of stamps from the bottom left of the page, row by row, so that
/// successive stamps never overlap.
fn stamp_rect(media: [f32; 4], k: usize) -> [f32; 4] {
    let (w, h) = (STAMP_W as f32, STAMP_H as f32);
    let margin = 24.0;
    let gap = 8.0;
    let width = (media[2] - media[0] - 2.0 * margin).max(w);
    let cols = ((width + gap) / (w + gap)).floor().max(1.0) as usize;
    let (row, col) = (k / cols, k % cols);
    let x = media[0] + margin + col as f32 * (w + gap);
    let y = media[1] + margin + row as f32 * (h + gap);
    [x, y, x + w, y + h]
}

/// A line of text in a content stream: WinAnsi (Latin-1 here), other characters as `?`.
fn stamp_text(s: &str) -> Vec<u8> {
    let mut out = vec![b'('];
    for c in s.chars() {
        let b = u32::from(c);
        let b = if b < 0x100 { b as u8 } else { b'?' };
        if matches!(b, b'(' | b')' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b')');
    out
}

/// The stamp: a framed box with the signer, the reason (with the delegation), the date and the
/// RGS level.
fn stamp_stream(name: &str, reason: &str, time: i64, level: Option<u8>) -> Vec<u8> {
    let date = crate::pki::time::format_rfc3339(time)
        .replace('T', " ")
        .replace('Z', " UTC");
    let mut s = format!(
        "q 0.94 0.96 1 rg 0 0 {STAMP_W} {STAMP_H} re f 0.1 0.2 0.6 RG 1 w 0.5 0.5 {} {} re S Q\nBT 0 0 0 rg /F1 8 Tf 6 {} Td 10 TL\n",
        STAMP_W - 1,
        STAMP_H - 1,
        STAMP_H - 14
    )
    .into_bytes();
    for line in [
        format!("Sign\u{e9} par {name}"),
        reason.to_owned(),
        format!("le {date}"),
        match level {
            Some(l) if l > 0 => format!("RGS {} - PAdES", "*".repeat(usize::from(l.min(3)))),
            _ => "PAdES".to_owned(),
        },
    ] {
        s.extend_from_slice(&stamp_text(&line));
        s.extend_from_slice(b" Tj T*\n");
    }
    s.extend_from_slice(b"ET");
    s
}

/// Room for `[0 a b c]` with three numbers of up to 15 digits.
const BYTE_RANGE_WIDTH: usize = 56;

/// Consecutive object numbers grouped for the cross-reference subsections.
fn runs(sorted: &[(ObjectId, u64)]) -> Vec<&[(ObjectId, u64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=sorted.len() {
        if i == sorted.len() || sorted[i].0 .0 != sorted[i - 1].0 .0 + 1 {
            out.push(&sorted[start..i]);
            start = i;
        }
    }
    out
}

/// The revision with `cms` in the prepared `/Contents`.
pub fn embed(content: &[u8], prepared: &Prepared, cms: &[u8]) -> Result<Vec<u8>, FormatError> {
    if content.len() as u64 != prepared.base_len {
        return Err(FormatError::Internal(
            "the revision prepared is not the one given".into(),
        ));
    }
    let hex = hex::encode_upper(cms);
    if hex.len() as u64 > prepared.contents_len {
        return Err(FormatError::Refused(format!(
            "the CMS ({} bytes) exceeds the space reserved in the PDF ({} bytes): raise \
             pades.contents_bytes",
            cms.len(),
            prepared.contents_len / 2
        )));
    }
    let mut out = Vec::with_capacity(content.len() + prepared.update.len());
    out.extend_from_slice(content);
    let at = out.len() + prepared.contents_at as usize;
    out.extend_from_slice(&prepared.update);
    out.get_mut(at..at + hex.len())
        .ok_or_else(|| FormatError::Internal("the prepared update is truncated".into()))?
        .copy_from_slice(hex.as_bytes());
    Ok(out)
}

/// `D:YYYYMMDDHHmmSS+00'00'`.
fn pdf_date(unix: i64) -> String {
    let t = crate::pki::time::format_rfc3339(unix);
    // "YYYY-MM-DDTHH:MM:SSZ"
    let digits: String = t.chars().filter(char::is_ascii_digit).take(14).collect();
    format!("D:{digits}+00'00'")
}

/// A text string: ASCII as a literal, otherwise UTF-16BE with its byte order mark, in hex.
fn write_text(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        out.push(b'(');
        for b in s.bytes() {
            if matches!(b, b'(' | b')' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b')');
    } else {
        out.extend_from_slice(b"<FEFF");
        for u in s.encode_utf16() {
            let _ = write!(out, "{u:04X}");
        }
        out.push(b'>');
    }
}

fn write_indirect(out: &mut Vec<u8>, id: ObjectId, o: &Object) {
    let _ = writeln!(out, "{} {} obj", id.0, id.1);
    write_object(out, o);
    out.extend_from_slice(b"\nendobj\n");
}

fn write_name(out: &mut Vec<u8>, n: &[u8]) {
    out.push(b'/');
    for &b in n {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'*' | b',') {
            out.push(b);
        } else {
            let _ = write!(out, "#{b:02X}");
        }
    }
}

/// Serializes a (non-stream) object; strings are written in hex.
fn write_object(out: &mut Vec<u8>, o: &Object) {
    match o {
        Object::Null => out.extend_from_slice(b"null"),
        Object::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Object::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Object::Real(r) => {
            let s = format!("{r:.6}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            out.extend_from_slice(if s.is_empty() || s == "-" {
                b"0"
            } else {
                s.as_bytes()
            });
        }
        Object::Name(n) => write_name(out, n),
        Object::String(s, _) => {
            out.push(b'<');
            out.extend_from_slice(hex::encode_upper(s).as_bytes());
            out.push(b'>');
        }
        Object::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_object(out, x);
            }
            out.push(b']');
        }
        Object::Dictionary(d) => {
            out.extend_from_slice(b"<<");
            for (k, v) in d.iter() {
                write_name(out, k);
                out.push(b' ');
                write_object(out, v);
            }
            out.extend_from_slice(b">>");
        }
        // Streams are never rewritten (pages and forms are dictionaries); a stream where a
        // dictionary was expected is written as its dictionary.
        Object::Stream(s) => write_object(out, &Object::Dictionary(s.dict.clone())),
        Object::Reference((n, g)) => {
            let _ = write!(out, "{n} {g} R");
        }
    }
}

/// One signature found in a PDF, as a validator needs it.
#[derive(Debug, Clone)]
pub struct FoundSignature {
    /// The field's name (`/T`).
    pub field: String,
    /// The bytes the `/ByteRange` covers.
    pub covered: Vec<u8>,
    /// The CMS from `/Contents`, without its zero padding.
    pub cms: Vec<u8>,
    /// `/M` in Unix seconds (the signer's claim).
    pub time: Option<i64>,
    /// The revision (1-based, in file order) whose end the range reaches, if it reaches one.
    pub revision: Option<usize>,
    /// Revisions in the file.
    pub revisions: usize,
    /// Whether the range is `[0 a b c]` with `b + c` the end of a revision and nothing but the
    /// `/Contents` string left out.
    pub covers_whole_revision: bool,
    /// Bytes appended after the range (later revisions).
    pub later_bytes: u64,
}

/// The ends of the revisions: the offset after each `%%EOF` and its end of line.
fn revision_ends(content: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = content[i..].windows(5).position(|w| w == b"%%EOF") {
        let mut end = i + p + 5;
        while end < content.len() && matches!(content[end], b'\r' | b'\n') {
            end += 1;
        }
        out.push(end as u64);
        i = i + p + 5;
    }
    out
}

/// The length of one DER element at the start of `b` (the CMS without the padding after it).
fn der_len(b: &[u8]) -> Option<usize> {
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for k in 0..n {
        len = (len << 8) | usize::from(*b.get(2 + k)?);
    }
    Some(2 + n + len)
}

fn pdf_time(s: &[u8]) -> Option<i64> {
    let t = std::str::from_utf8(s).ok()?.trim_start_matches("D:");
    let d: String = t.chars().take(14).collect();
    if d.len() < 14 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[8..10],
        &d[10..12],
        &d[12..14]
    );
    crate::pki::time::parse_rfc3339(&rfc).ok()
}

/// Every signature field with a value in the PDF, in the order of their ranges.
pub fn signatures(content: &[u8]) -> Result<Vec<FoundSignature>, FormatError> {
    let pdf = parse(content)?;
    let doc = &pdf.doc;
    let root = root_id(doc)?;
    let catalog = doc
        .get_dictionary(root)
        .map_err(|e| invalid(format!("the PDF catalog: {e}")))?;
    let fields = catalog
        .get(b"AcroForm")
        .ok()
        .and_then(|a| resolve(doc, a))
        .and_then(|a| a.as_dict().ok())
        .and_then(|a| a.get(b"Fields").ok())
        .and_then(|f| resolve(doc, f))
        .and_then(|f| f.as_array().ok())
        .cloned()
        .unwrap_or_default();
    let ends = revision_ends(content);
    let mut out = Vec::new();
    for f in &fields {
        let Some(Ok(field)) = resolve(doc, f).map(Object::as_dict) else {
            continue;
        };
        if field.get(b"FT").and_then(Object::as_name).ok() != Some(b"Sig") {
            continue;
        }
        let Some(Ok(sig)) = field
            .get(b"V")
            .ok()
            .and_then(|v| resolve(doc, v))
            .map(Object::as_dict)
        else {
            continue;
        };
        let name = match field.get(b"T") {
            Ok(Object::String(s, _)) => String::from_utf8_lossy(s).into_owned(),
            _ => String::new(),
        };
        let range: Vec<u64> = sig
            .get(b"ByteRange")
            .and_then(Object::as_array)
            .map_err(|_| invalid(format!("signature '{name}' has no /ByteRange")))?
            .iter()
            .filter_map(|o| o.as_i64().ok().and_then(|v| u64::try_from(v).ok()))
            .collect();
        let [a0, a1, b0, b1] = range[..] else {
            return Err(invalid(format!(
                "signature '{name}': its /ByteRange is not four numbers"
            )));
        };
        let len = content.len() as u64;
        if a0 != 0 || a1 > b0 || b0.checked_add(b1).is_none_or(|e| e > len) {
            return Err(invalid(format!(
                "signature '{name}': its /ByteRange lies outside the file"
            )));
        }
        let (a1u, b0u, endu) = (a1 as usize, b0 as usize, (b0 + b1) as usize);
        let mut covered = Vec::with_capacity(a1u + endu - b0u);
        covered.extend_from_slice(&content[..a1u]);
        covered.extend_from_slice(&content[b0u..endu]);
        let contents = match sig.get(b"Contents") {
            Ok(Object::String(s, _)) => s.clone(),
            _ => return Err(invalid(format!("signature '{name}' has no /Contents"))),
        };
        let cms_len = der_len(&contents)
            .filter(|&l| l <= contents.len())
            .unwrap_or(contents.len());
        // The gap must be exactly the hex string `<...>` of /Contents.
        let gap = &content[a1u..b0u];
        let whole_gap = gap.first() == Some(&b'<')
            && gap.last() == Some(&b'>')
            && gap[1..gap.len() - 1].iter().all(|b| b.is_ascii_hexdigit());
        let end = b0 + b1;
        let revision = ends.iter().position(|&e| e == end).map(|i| i + 1);
        out.push(FoundSignature {
            field: name,
            covered,
            cms: contents[..cms_len].to_vec(),
            time: match sig.get(b"M") {
                Ok(Object::String(s, _)) => pdf_time(s),
                _ => None,
            },
            revision,
            revisions: ends.len(),
            covers_whole_revision: whole_gap && revision.is_some(),
            later_bytes: len - end,
        });
    }
    out.sort_by_key(|s| s.covered.len());
    Ok(out)
}
