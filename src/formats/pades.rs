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
    /// The step's stamp place, an invisible signature, a certification.
    pub pdf: crate::domain::PdfOptions,
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

/// What a circuit's PDF options need to know of a document.
#[derive(Debug, Clone, Copy, Default)]
pub struct PdfFacts {
    pub pages: usize,
    /// Already certified (DocMDP P=2 or P=3).
    pub certified: bool,
    /// Already signed (a signature field with a value).
    pub signed: bool,
}

impl PdfFacts {
    /// Whether a circuit's steps fit this PDF: a stamp's page exists, and a certifying seal
    /// does not meet an earlier certification. The message names the step.
    pub fn fits(&self, steps: &[crate::domain::StepDef]) -> Result<(), (String, String)> {
        for (i, s) in steps.iter().enumerate() {
            if let Some(st) = s.pdf.stamp {
                let n = self.pages as i64;
                let p = i64::from(st.page);
                if p.abs() > n {
                    return Err((
                        format!("steps[{i}].stamp.page"),
                        format!("the circuit puts a stamp on page {p} but the PDF has {n} pages"),
                    ));
                }
            }
            if s.pdf.certify && (self.certified || self.signed) {
                return Err((
                    format!("steps[{i}].certify"),
                    "the PDF is already signed and the circuit's seal would certify it (a \
                     certification is the PDF's first signature)"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// Checks a PDF at submission: it parses, is not encrypted, and is not certified with DocMDP
/// P=1 (no change allowed, so no signature could be added); returns what the circuit's PDF
/// options are checked against.
pub fn check(content: &[u8]) -> Result<PdfFacts, FormatError> {
    let pdf = parse(content)?;
    let certified = root_id(&pdf.doc)
        .ok()
        .and_then(|r| pdf.doc.get_dictionary(r).ok())
        .is_some_and(|c| docmdp_p(&pdf.doc, c).is_some());
    let signed = signature_fields(&pdf.doc).iter().any(|f| f.has(b"V"));
    Ok(PdfFacts {
        pages: pdf.doc.get_pages().len(),
        certified,
        signed,
    })
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

/// The signature fields of the AcroForm.
fn signature_fields(doc: &lopdf::Document) -> Vec<&Dictionary> {
    let Some(catalog) = root_id(doc).ok().and_then(|r| doc.get_dictionary(r).ok()) else {
        return Vec::new();
    };
    let fields = catalog
        .get(b"AcroForm")
        .ok()
        .and_then(|a| resolve(doc, a))
        .and_then(|a| a.as_dict().ok())
        .and_then(|a| a.get(b"Fields").ok())
        .and_then(|f| resolve(doc, f))
        .and_then(|f| f.as_array().ok());
    fields
        .into_iter()
        .flatten()
        .filter_map(|f| resolve(doc, f).and_then(|f| f.as_dict().ok()))
        .filter(|f| f.get(b"FT").and_then(Object::as_name).ok() == Some(b"Sig"))
        .collect()
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

    let catalog = doc
        .get_dictionary(root)
        .map_err(|e| invalid(format!("the PDF catalog: {e}")))?;
    if claims.pdf.certify
        && (docmdp_p(doc, catalog).is_some() || signature_fields(doc).iter().any(|f| f.has(b"V")))
    {
        return Err(FormatError::Refused(
            "the PDF is already signed: a certification is its first signature".into(),
        ));
    }
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
    // Stamps already on the document: the new one takes the next cell of the grid; the
    // signatures already made number the tag (`#signature#`, then `#signature_2#`, …).
    let sig_fields: Vec<&Dictionary> = fields
        .iter()
        .filter_map(|f| resolve(doc, f).and_then(|f| f.as_dict().ok()))
        .filter(|f| f.get(b"FT").and_then(Object::as_name).ok() == Some(b"Sig"))
        .collect();
    let earlier_signatures = sig_fields.len();
    let signed = sig_fields.iter().filter(|f| f.has(b"V")).count();
    // A certified PDF takes no new visible signature: readers allow only invisible ones (or
    // filling fields that were there) after a certification.
    let mut options = claims.pdf.clone();
    if docmdp_p(doc, catalog).is_some() {
        options.invisible = true;
        options.stamp = None;
    }
    let place = placement(doc, &options, signed + 1, earlier_signatures)?;
    let page_id = place.page;
    let mut page = doc
        .get_dictionary(page_id)
        .map_err(|e| invalid(format!("the PDF's page: {e}")))?
        .clone();
    let mut rewritten: Vec<(ObjectId, Object)> = Vec::new();
    // The page's /Annots grows by the widget (an indirect array is rewritten in place).
    match page.get(b"Annots") {
        Ok(Object::Reference(aid)) => {
            let mut annots = match doc.get_object(*aid) {
                Ok(Object::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            annots.push(Object::Reference(field_id));
            rewritten.push((*aid, Object::Array(annots)));
        }
        other => {
            let mut annots = match other {
                Ok(Object::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            annots.push(Object::Reference(field_id));
            page.set("Annots", Object::Array(annots));
            rewritten.push((page_id, Object::Dictionary(page)));
        }
    }
    fields.push(Object::Reference(field_id));
    acro.set("Fields", Object::Array(fields));
    acro.set("SigFlags", Object::Integer(3));
    let mut cat = None;
    match acro_id {
        Some(id) => rewritten.push((id, Object::Dictionary(acro))),
        None => {
            let mut c = catalog.clone();
            c.set("AcroForm", Object::Dictionary(acro));
            cat = Some(c);
        }
    }
    if claims.pdf.certify {
        // The catalog names the certification signature (DocMDP), other permissions kept.
        let c = cat.get_or_insert_with(|| catalog.clone());
        let mut perms = match c.get(b"Perms").ok().and_then(|p| resolve(doc, p)) {
            Some(Object::Dictionary(d)) => d.clone(),
            _ => Dictionary::new(),
        };
        perms.set("DocMDP", Object::Reference(sig_id));
        c.set("Perms", Object::Dictionary(perms));
    }
    if let Some(c) = cat {
        rewritten.push((root, Object::Dictionary(c)));
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
    if claims.pdf.certify {
        out.extend_from_slice(
            b" /Reference [<</Type /SigRef /TransformMethod /DocMDP /TransformParams <</Type /TransformParams /P 2 /V /1.2>>>>]",
        );
    }
    out.extend_from_slice(b">>\nendobj\n");

    // The field merged with its widget (an invisible signature has an empty rectangle and no
    // appearance).
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
    let rect = place.stamp.map_or([0.0; 4], |s| s.rect);
    field.set(
        "Rect",
        Object::Array(rect.iter().map(|&v| Object::Real(v)).collect()),
    );
    field.set("P", Object::Reference(page_id));
    if place.stamp.is_some() {
        let mut ap = Dictionary::new();
        ap.set("N", Object::Reference(ap_id));
        field.set("AP", Object::Dictionary(ap));
    }
    offsets.push((field_id, base_len + out.len() as u64));
    write_indirect(&mut out, field_id, &Object::Dictionary(field));

    // The visible stamp, drawn in the widget's own appearance stream (never in the page),
    // turned against the page's /Rotate so that the reader sees it upright.
    if let Some(st) = place.stamp {
        offsets.push((ap_id, base_len + out.len() as u64));
        let stamp = stamp_stream(&name, &claims.reason, claims.time, claims.level, st.size);
        let matrix = match st.rotate {
            90 => "0 1 -1 0 0 0",
            180 => "-1 0 0 -1 0 0",
            270 => "0 -1 1 0 0 0",
            _ => "1 0 0 1 0 0",
        };
        out.extend_from_slice(
            format!(
                "{} 0 obj\n<</Type /XObject /Subtype /Form /BBox [0 0 {} {}] /Matrix [{matrix}] /Resources <</Font <</F1 <</Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding>>>>>> /Length {}>>\nstream\n",
                ap_id.0,
                num(st.size.0),
                num(st.size.1),
                stamp.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&stamp);
        out.extend_from_slice(b"\nendstream\nendobj\n");
    }
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

/// The `k`-th cell of a grid of stamps from the bottom left of a page `w` points wide (as
/// displayed), row by row, so that successive stamps never overlap.
fn grid_cell(w: f32, k: usize) -> [f32; 4] {
    let (sw, sh) = (STAMP_W as f32, STAMP_H as f32);
    let margin = 24.0;
    let gap = 8.0;
    let width = (w - 2.0 * margin).max(sw);
    let cols = ((width + gap) / (sw + gap)).floor().max(1.0) as usize;
    let (row, col) = (k / cols, k % cols);
    let x = margin + col as f32 * (sw + gap);
    let y = margin + row as f32 * (sh + gap);
    [x, y, x + sw, y + sh]
}

/// Where a signature goes: its page, and its stamp unless it is invisible.
struct Placement {
    page: ObjectId,
    stamp: Option<Stamp>,
}

#[derive(Clone, Copy)]
struct Stamp {
    /// The widget's rectangle in the page's user space.
    rect: [f32; 4],
    /// The stamp's width and height as the reader sees them.
    size: (f32, f32),
    /// The page's /Rotate (0, 90, 180 or 270).
    rotate: i64,
}

/// The page's /Rotate (inherited), as 0, 90, 180 or 270.
fn page_rotate(doc: &lopdf::Document, page: ObjectId) -> i64 {
    let mut id = Some(page);
    for _ in 0..32 {
        let Some(d) = id.and_then(|i| doc.get_dictionary(i).ok()) else {
            break;
        };
        if let Some(r) = d
            .get(b"Rotate")
            .ok()
            .and_then(|r| resolve(doc, r))
            .and_then(|r| r.as_i64().ok())
        {
            return (r.rem_euclid(360) / 90) * 90;
        }
        id = d.get(b"Parent").and_then(Object::as_reference).ok();
    }
    0
}

/// Where the step's signature goes: the tag `#signature#` (`#signature_N#` for the N-th
/// signature) in the text of a page, else the step's page and coordinates, else the next cell
/// of the grid on the last page. Coordinates are taken on the page as displayed (after its
/// /Rotate) and turned into the page's user space.
fn placement(
    doc: &lopdf::Document,
    pdf: &crate::domain::PdfOptions,
    ordinal: usize,
    earlier: usize,
) -> Result<Placement, FormatError> {
    let pages = doc.get_pages();
    let last = *pages
        .values()
        .next_back()
        .ok_or_else(|| invalid("the PDF has no page"))?;
    if pdf.invisible {
        return Ok(Placement {
            page: last,
            stamp: None,
        });
    }
    let shown = |page: ObjectId| {
        let media = page_box(doc, page);
        let rotate = page_rotate(doc, page);
        let (w, h) = (media[2] - media[0], media[3] - media[1]);
        let (dw, dh) = if rotate % 180 == 90 { (h, w) } else { (w, h) };
        (media, rotate, dw, dh)
    };
    // From the displayed page to user space.
    let to_user = |media: [f32; 4], rotate: i64, r: [f32; 4]| -> [f32; 4] {
        let (w, h) = (media[2] - media[0], media[3] - media[1]);
        let map = |x: f32, y: f32| match rotate {
            90 => (w - y, x),
            180 => (w - x, h - y),
            270 => (y, h - x),
            _ => (x, y),
        };
        let (a, b) = (map(r[0], r[1]), map(r[2], r[3]));
        [
            media[0] + a.0.min(b.0),
            media[1] + a.1.min(b.1),
            media[0] + a.0.max(b.0),
            media[1] + a.1.max(b.1),
        ]
    };
    let size = pdf.stamp.map_or((STAMP_W as f32, STAMP_H as f32), |s| {
        (s.width as f32, s.height as f32)
    });
    let stamp_at = |page: ObjectId, r: [f32; 4]| {
        let (media, rotate, dw, dh) = shown(page);
        // Kept on the page.
        let (w, h) = (r[2] - r[0], r[3] - r[1]);
        let x = r[0].min(dw - w).max(0.0);
        let y = r[1].min(dh - h).max(0.0);
        Placement {
            page,
            stamp: Some(Stamp {
                rect: to_user(media, rotate, [x, y, x + w, y + h]),
                size: (w, h),
                rotate,
            }),
        }
    };
    if let Some((page, x, y, font)) = find_tag(doc, &pages, ordinal) {
        // The stamp's top left corner on the tag's, covering it.
        let (media, rotate, _, _) = shown(page);
        let (w, h) = (media[2] - media[0], media[3] - media[1]);
        let (ux, uy) = (x - media[0], y - media[1]);
        let (dx, dy) = match rotate {
            90 => (uy, w - ux),
            180 => (w - ux, h - uy),
            270 => (h - uy, ux),
            _ => (ux, uy),
        };
        let top = dy + font;
        return Ok(stamp_at(page, [dx, top - size.1, dx + size.0, top]));
    }
    if let Some(s) = pdf.stamp {
        let n = pages.len() as i64;
        let k = if s.page < 0 {
            n + 1 + i64::from(s.page)
        } else {
            i64::from(s.page)
        };
        let page = u32::try_from(k)
            .ok()
            .and_then(|k| pages.get(&k))
            .ok_or_else(|| {
                FormatError::Refused(format!(
                    "the circuit places the stamp on page {} but the PDF has {n} pages",
                    s.page
                ))
            })?;
        let (x, y) = (s.x as f32, s.y as f32);
        return Ok(stamp_at(*page, [x, y, x + size.0, y + size.1]));
    }
    let (_, _, dw, _) = shown(last);
    Ok(stamp_at(last, grid_cell(dw, earlier)))
}

/// The tag of the `ordinal`-th signature: `#signature#`, then `#signature_2#`, …
fn tag(ordinal: usize) -> Vec<u8> {
    if ordinal <= 1 {
        b"#signature#".to_vec()
    } else {
        format!("#signature_{ordinal}#").into_bytes()
    }
}

/// Most bytes of decoded content read from one page when looking for a tag.
const MAX_TAG_PAGE_BYTES: usize = 32 * 1024 * 1024;

/// The first place where the tag of the `ordinal`-th signature is shown, in the pages' order:
/// the page, the user space position of the tag's baseline start, and the font size there.
/// Text shown by `Tj`, `TJ` (the strings of one array joined), `'` and `"`, positioned by
/// `Td`, `TD`, `Tm`, `T*` and the graphics state's `cm`; a tag in the middle of a string is
/// located by an average glyph width. Fonts whose codes are not ASCII are not read.
fn find_tag(
    doc: &lopdf::Document,
    pages: &std::collections::BTreeMap<u32, ObjectId>,
    ordinal: usize,
) -> Option<(ObjectId, f32, f32, f32)> {
    let tag = tag(ordinal);
    let first = (ordinal <= 1).then(|| b"#signature_1#".to_vec());
    for &page in pages.values() {
        let Ok(content) = doc.get_page_content_with_limit(page, MAX_TAG_PAGE_BYTES) else {
            continue;
        };
        // Only pages where the tag may be: written as is, in hex, or split in a TJ array.
        let maybe = contains(&content, &tag)
            || first.as_ref().is_some_and(|f| contains(&content, f))
            || has_hex_string(&content)
            || (contains(&content, b"TJ") && contains(&content, b"#"));
        if !maybe {
            continue;
        }
        let Ok(ops) = lopdf::content::Content::decode(&content) else {
            continue;
        };
        if let Some((x, y, f)) = tag_in(&ops.operations, &tag, first.as_deref()) {
            return Some((page, x, y, f));
        }
    }
    None
}

/// Whether a content stream holds a hex string (`<` then a hex digit, not a `<<` dictionary).
fn has_hex_string(content: &[u8]) -> bool {
    content.windows(3).any(|w| {
        w[0] != b'<' && w[1] == b'<' && (w[2].is_ascii_hexdigit() || w[2].is_ascii_whitespace())
    }) || content.first() == Some(&b'<') && content.get(1).is_some_and(u8::is_ascii_hexdigit)
}

type Matrix = [f32; 6];
const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// `a` then `b`.
fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

fn number(o: &Object) -> Option<f32> {
    match o {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) => Some(*r),
        _ => None,
    }
}

/// Where `tag` (or `alt`) is shown in these operations: (x, y, font size) in user space.
fn tag_in(
    ops: &[lopdf::content::Operation],
    tag: &[u8],
    alt: Option<&[u8]>,
) -> Option<(f32, f32, f32)> {
    let mut ctm = IDENTITY;
    let mut stack: Vec<Matrix> = Vec::new();
    let (mut tm, mut tlm) = (IDENTITY, IDENTITY);
    let (mut leading, mut size) = (0.0f32, 12.0f32);
    for op in ops {
        let n = |i: usize| op.operands.get(i).and_then(number);
        let mut shown: Option<Vec<u8>> = None;
        match op.operator.as_str() {
            "q" => stack.push(ctm),
            "Q" => ctm = stack.pop().unwrap_or(IDENTITY),
            "cm" => {
                if let (Some(a), Some(b), Some(c), Some(d), Some(e), Some(f)) =
                    (n(0), n(1), n(2), n(3), n(4), n(5))
                {
                    ctm = mul(&[a, b, c, d, e, f], &ctm);
                }
            }
            "BT" => {
                tm = IDENTITY;
                tlm = IDENTITY;
            }
            "Td" | "TD" => {
                if let (Some(tx), Some(ty)) = (n(0), n(1)) {
                    tlm = mul(&[1.0, 0.0, 0.0, 1.0, tx, ty], &tlm);
                    tm = tlm;
                    if op.operator == "TD" {
                        leading = -ty;
                    }
                }
            }
            "Tm" => {
                if let (Some(a), Some(b), Some(c), Some(d), Some(e), Some(f)) =
                    (n(0), n(1), n(2), n(3), n(4), n(5))
                {
                    tlm = [a, b, c, d, e, f];
                    tm = tlm;
                }
            }
            "TL" => leading = n(0).unwrap_or(leading),
            "Tf" => size = n(1).unwrap_or(size),
            "T*" => {
                tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -leading], &tlm);
                tm = tlm;
            }
            "Tj" | "'" | "\"" => {
                if op.operator != "Tj" {
                    tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -leading], &tlm);
                    tm = tlm;
                }
                if let Some(Object::String(s, _)) = op.operands.last() {
                    shown = Some(s.clone());
                }
            }
            "TJ" => {
                if let Some(Object::Array(a)) = op.operands.first() {
                    let mut joined = Vec::new();
                    for x in a {
                        if let Object::String(s, _) = x {
                            joined.extend_from_slice(s);
                        }
                    }
                    shown = Some(joined);
                }
            }
            _ => {}
        }
        let Some(text) = shown else { continue };
        let at = text
            .windows(tag.len())
            .position(|w| w == tag)
            .or_else(|| alt.and_then(|a| text.windows(a.len()).position(|w| w == a)));
        if let Some(at) = at {
            // About half an em per glyph before the tag.
            let dx = at as f32 * size * 0.5;
            let m = mul(&mul(&[1.0, 0.0, 0.0, 1.0, dx, 0.0], &tm), &ctm);
            let scale = (m[2] * m[2] + m[3] * m[3]).sqrt();
            return Some((m[4], m[5], size.abs() * scale));
        }
    }
    None
}

/// A number in a content stream or a dictionary.
fn num(v: f32) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The WinAnsiEncoding code of a character, if it has one.
fn win_ansi(c: char) -> Option<u8> {
    let u = u32::from(c);
    match u {
        0x20..=0x7e | 0xa0..=0xff => Some(u as u8),
        _ => {
            const HIGH: [(char, u8); 27] = [
                ('\u{20ac}', 0x80),
                ('\u{201a}', 0x82),
                ('\u{0192}', 0x83),
                ('\u{201e}', 0x84),
                ('\u{2026}', 0x85),
                ('\u{2020}', 0x86),
                ('\u{2021}', 0x87),
                ('\u{02c6}', 0x88),
                ('\u{2030}', 0x89),
                ('\u{0160}', 0x8a),
                ('\u{2039}', 0x8b),
                ('\u{0152}', 0x8c),
                ('\u{017d}', 0x8e),
                ('\u{2018}', 0x91),
                ('\u{2019}', 0x92),
                ('\u{201c}', 0x93),
                ('\u{201d}', 0x94),
                ('\u{2022}', 0x95),
                ('\u{2013}', 0x96),
                ('\u{2014}', 0x97),
                ('\u{02dc}', 0x98),
                ('\u{2122}', 0x99),
                ('\u{0161}', 0x9a),
                ('\u{203a}', 0x9b),
                ('\u{0153}', 0x9c),
                ('\u{017e}', 0x9e),
                ('\u{0178}', 0x9f),
            ];
            HIGH.iter().find(|(h, _)| *h == c).map(|(_, b)| *b)
        }
    }
}

/// The base letters of Latin Extended-A (U+0100 to U+017F), `?` for the ligatures.
const LATIN_EXTENDED_A: &[u8; 128] =
    b"AaAaAaCcCcCcCcDdDdEeEeEeEeEeGgGgGgGgHhHhIiIiIiIiIi??JjKkkLlLlLlLlLlNnNnNnnNnOoOoOo??RrRrRrSsSsSsSsTtTtTtUuUuUuUuUuUuWwYyYZzZzZzs";

/// A line of text in a content stream, in WinAnsiEncoding (with €, Œ, œ, ’, “ ” …). A
/// letter it lacks prints as its base letter (Ł as L, ő as o), as on identity documents;
/// anything else (other scripts, symbols) as `?`, never silently dropped. The signature
/// dictionary's `/Name` keeps the exact name.
fn stamp_text(s: &str) -> Vec<u8> {
    let mut out = vec![b'('];
    for c in s.chars() {
        let b = match win_ansi(c) {
            Some(b) => b,
            None => match u32::from(c) {
                u @ 0x100..=0x17f => LATIN_EXTENDED_A[(u - 0x100) as usize],
                0x2000..=0x200a | 0x202f => b' ',
                0x2010..=0x2012 => b'-',
                _ => b'?',
            },
        };
        if matches!(b, b'(' | b')' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b')');
    out
}

/// The stamp: a framed box of `size` with the signer, the reason (with the delegation), the
/// date and the RGS level, the text scaled to the box.
fn stamp_stream(
    name: &str,
    reason: &str,
    time: i64,
    level: Option<u8>,
    size: (f32, f32),
) -> Vec<u8> {
    let date = crate::pki::time::format_rfc3339(time)
        .replace('T', " ")
        .replace('Z', " UTC");
    let (w, h) = size;
    let k = (w / STAMP_W as f32).min(h / STAMP_H as f32);
    let mut s = format!(
        "q 0.94 0.96 1 rg 0 0 {} {} re f 0.1 0.2 0.6 RG 1 w 0.5 0.5 {} {} re S Q\nq {} 0 0 {} 0 {} cm\nBT 0 0 0 rg /F1 8 Tf 6 {} Td 10 TL\n",
        num(w),
        num(h),
        num(w - 1.0),
        num(h - 1.0),
        num(k),
        num(k),
        num(h - STAMP_H as f32 * k),
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
    s.extend_from_slice(b"ET Q");
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
    /// The first change later revisions made to what the signature covers beyond the allowed
    /// additions (see [`disallowed_change`]), if any.
    pub modified_after: Option<String>,
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
        let modified_after = match revision {
            Some(_) if end < len => disallowed_change(&content[..end as usize], doc)?,
            _ => None,
        };
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
            modified_after,
        });
    }
    out.sort_by_key(|s| s.covered.len());
    Ok(out)
}

/// What later revisions changed in the revision `signed` beyond what signing allows: new
/// signature fields with their widgets and appearance streams, a page's `/Annots` and the
/// AcroForm's `/Fields` growing by those widgets (and its `/SigFlags`), the catalog gaining a
/// `/DSS` (a certification, `/Perms`, after a signature is not allowed; after a certification
/// only invisible signatures may be added). New objects are harmless by
/// themselves (only a changed old object can make a reader use them). Anything else, such as
/// a page's contents or any other object rewritten or deleted, is described, the first found.
pub fn disallowed_change(
    signed: &[u8],
    now: &lopdf::Document,
) -> Result<Option<String>, FormatError> {
    let then = lopdf::Document::load_mem(signed)
        .map_err(|e| invalid(format!("a signed revision does not parse: {e}")))?;
    let old_root = root_id(&then).ok();
    let old_acro = old_root
        .and_then(|r| then.get_dictionary(r).ok())
        .and_then(|c| c.get(b"AcroForm").ok())
        .and_then(|a| a.as_reference().ok());
    // After a certification, only invisible signatures may be added (as readers judge it).
    let certified = old_root
        .and_then(|r| then.get_dictionary(r).ok())
        .is_some_and(|c| docmdp_p(&then, c).is_some());
    let grows = |a: &[Object], b: &[Object]| grows_by_signatures(&then, now, a, b, certified);
    for (id, old) in &then.objects {
        let Some(new) = now.objects.get(id) else {
            return Ok(Some(format!("object {} {} was deleted", id.0, id.1)));
        };
        if new == old {
            continue;
        }
        let allowed = match (old, new) {
            (Object::Array(a), Object::Array(b)) => grows(a, b),
            (Object::Dictionary(a), Object::Dictionary(b)) => {
                if Some(*id) == old_root {
                    catalog_change_allowed(&then, now, a, b, &grows)
                } else if Some(*id) == old_acro {
                    acroform_change_allowed(&then, now, a, b, &grows)
                } else if a.get(b"Type").and_then(Object::as_name).ok() == Some(b"Page") {
                    dict_diff(a, b).iter().all(|k| k == b"Annots")
                        && grows(&array_of(&then, a, b"Annots"), &array_of(now, b, b"Annots"))
                } else {
                    false
                }
            }
            _ => false,
        };
        if !allowed {
            return Ok(Some(format!(
                "object {} {} ({}) was rewritten by a later revision",
                id.0,
                id.1,
                describe(&then, *id, old)
            )));
        }
    }
    Ok(None)
}

/// What an object is, for a report.
fn describe(doc: &lopdf::Document, id: ObjectId, o: &Object) -> &'static str {
    let is_content = doc
        .get_pages()
        .values()
        .any(|&p| doc.get_page_contents(p).contains(&id));
    if is_content {
        return "a page's contents";
    }
    let dict = match o {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    };
    match dict
        .and_then(|d| d.get(b"Type").ok())
        .and_then(|t| t.as_name().ok())
    {
        Some(b"Page") => "a page",
        Some(b"Pages") => "the page tree",
        Some(b"Catalog") => "the catalog",
        Some(b"Annot") => "an annotation",
        Some(b"XObject") => "an image or form",
        Some(b"Font") => "a font",
        Some(b"Sig") => "a signature",
        _ if matches!(o, Object::Stream(_)) => "a stream",
        _ => "an object",
    }
}

/// The keys whose values differ between two dictionaries.
fn dict_diff(a: &Dictionary, b: &Dictionary) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for (k, v) in a.iter() {
        if b.get(k).ok() != Some(v) {
            keys.push(k.clone());
        }
    }
    for (k, _) in b.iter() {
        if !a.has(k) {
            keys.push(k.clone());
        }
    }
    keys
}

/// The array under `key` (direct or indirect), empty when there is none.
fn array_of(doc: &lopdf::Document, d: &Dictionary, key: &[u8]) -> Vec<Object> {
    match d.get(key).ok().and_then(|a| resolve(doc, a)) {
        Some(Object::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

/// Whether `new` is `old` followed by references to new signature fields (or their widgets),
/// invisible ones only when `invisible_only`.
fn grows_by_signatures(
    then: &lopdf::Document,
    now: &lopdf::Document,
    old: &[Object],
    new: &[Object],
    invisible_only: bool,
) -> bool {
    new.len() >= old.len()
        && new[..old.len()] == *old
        && new[old.len()..].iter().all(|o| {
            let Ok(id) = o.as_reference() else {
                return false;
            };
            !then.objects.contains_key(&id)
                && is_signature_field(now, id)
                && (!invisible_only || is_invisible(now, id))
        })
}

/// A widget whose rectangle has no area (or a field without one).
fn is_invisible(doc: &lopdf::Document, id: ObjectId) -> bool {
    let Ok(d) = doc.get_dictionary(id) else {
        return false;
    };
    let Ok(r) = d.get(b"Rect").and_then(Object::as_array) else {
        return true;
    };
    let v: Vec<f32> = r.iter().filter_map(number).collect();
    match v[..] {
        [x0, y0, x1, y1] => (x1 - x0).abs() < f32::EPSILON || (y1 - y0).abs() < f32::EPSILON,
        _ => false,
    }
}

/// A signature field, or the widget of one.
fn is_signature_field(doc: &lopdf::Document, id: ObjectId) -> bool {
    let Ok(d) = doc.get_dictionary(id) else {
        return false;
    };
    let sig = |d: &Dictionary| d.get(b"FT").and_then(Object::as_name).ok() == Some(b"Sig");
    sig(d)
        || d.get(b"Parent")
            .and_then(Object::as_reference)
            .ok()
            .and_then(|p| doc.get_dictionary(p).ok())
            .is_some_and(sig)
}

type Grows<'a> = dyn Fn(&[Object], &[Object]) -> bool + 'a;

fn acroform_change_allowed(
    then: &lopdf::Document,
    now: &lopdf::Document,
    a: &Dictionary,
    b: &Dictionary,
    grows: &Grows<'_>,
) -> bool {
    dict_diff(a, b).iter().all(|k| match k.as_slice() {
        b"Fields" => grows(&array_of(then, a, b"Fields"), &array_of(now, b, b"Fields")),
        b"SigFlags" => true,
        _ => false,
    })
}

fn catalog_change_allowed(
    then: &lopdf::Document,
    now: &lopdf::Document,
    a: &Dictionary,
    b: &Dictionary,
    grows: &Grows<'_>,
) -> bool {
    let inline = |d: &Dictionary| match d.get(b"AcroForm") {
        Ok(Object::Dictionary(f)) => Some(f.clone()),
        Ok(_) => None,
        Err(_) => Some(Dictionary::new()),
    };
    dict_diff(a, b).iter().all(|k| match k.as_slice() {
        b"AcroForm" => match (inline(a), inline(b)) {
            (Some(x), Some(y)) => acroform_change_allowed(then, now, &x, &y, grows),
            // A new AcroForm object holding only signature fields.
            (Some(x), None) if x.is_empty() => b
                .get(b"AcroForm")
                .and_then(Object::as_reference)
                .ok()
                .filter(|id| !then.objects.contains_key(id))
                .and_then(|id| now.get_dictionary(id).ok())
                .is_some_and(|y| acroform_change_allowed(then, now, &x, y, grows)),
            _ => false,
        },
        b"DSS" => !a.has(b"DSS"),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_text_is_win_ansi_with_base_letters_and_question_marks() {
        assert_eq!(
            stamp_text("Œuvre – l’été: 5 € “oui” œ"),
            b"(\x8cuvre \x96 l\x92\xe9t\xe9: 5 \x80 \x93oui\x94 \x9c)".to_vec()
        );
        assert_eq!(
            stamp_text("Łukasz Dvořák (Ő)"),
            b"(Lukasz Dvor\xe1k \\(O\\))".to_vec()
        );
        assert_eq!(stamp_text("東京 Иван"), b"(?? ????)".to_vec());
    }

    #[test]
    fn a_tag_is_found_through_td_tm_cm_and_tj_arrays() {
        use lopdf::content::Content;
        let ops = |s: &str| Content::decode(s.as_bytes()).unwrap().operations;
        let (x, y, f) = tag_in(
            &ops("q 1 0 0 1 10 20 cm BT /F1 10 Tf 50 100 Td (x) Tj 0 -20 Td [(#sig) -5 (nature#)] TJ ET Q"),
            b"#signature#",
            None,
        )
        .unwrap();
        assert_eq!((x, y, f), (60.0, 100.0, 10.0));
        let (x, y, _) = tag_in(
            &ops("BT /F1 12 Tf 2 0 0 2 100 300 Tm 14 TL T* (#signature_2#) Tj ET"),
            b"#signature_2#",
            None,
        )
        .unwrap();
        assert_eq!((x, y), (100.0, 272.0));
        assert!(tag_in(&ops("BT (#signature_2#) Tj ET"), b"#signature#", None).is_none());
        // Marked content and inline dictionaries are not hex strings; `<23...>` is.
        assert!(!has_hex_string(b"/P <</MCID 0>> BDC BT (x) Tj ET EMC"));
        assert!(has_hex_string(b"BT <2373> Tj ET"));
    }
}
