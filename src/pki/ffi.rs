//! The one FFI module of the crate: the few OpenSSL 3 functions that rust-openssl 0.10 does not
//! bind and that path validation needs.
//!
//! - `X509_VERIFY_PARAM_set1_policies`: the RFC 5280 *user-initial-policy-set* (rust-openssl has
//!   no binding; re-implementing section 6.1 policy processing is not an option).
//! - `X509_STORE_CTX_set0_crls`: give the verification context the caller's CRLs (rust-openssl
//!   only loads CRLs from files). In the context rather than the store: OpenSSL looks CRLs up in
//!   the store by the certificate issuer's name only, so an indirect CRL (RFC 5280 cRLIssuer)
//!   would never be found there.
//! - `X509_STORE_CTX_set_verify_cb` and `X509_STORE_CTX_{set,get}_ex_data`: a verify callback
//!   that records every error OpenSSL finds (error code, depth, certificate) and lets the
//!   verification continue, so that [`super::verify`] sees *all* the defects of a path and
//!   chooses the one it reports by its own documented precedence. The callback only ever turns
//!   an error into "record it and go on": the caller treats any recorded error as a refusal, so
//!   continuing can never turn a failure into a pass.
//!
//! Every function here is safe to call: the unsafe blocks only pass pointers obtained from live
//! rust-openssl objects (`ForeignTypeRef::as_ptr`) for the duration of the call, and the
//! ownership rules of each OpenSSL function are stated beside it.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::os::raw::{c_int, c_void};

use foreign_types_shared::{ForeignType, ForeignTypeRef};
use openssl::asn1::Asn1Object;
use openssl::error::ErrorStack;
use openssl::stack::Stack;
use openssl::x509::verify::X509VerifyParamRef;
use openssl::x509::{X509CrlRef, X509StoreContextRef, X509};

type VerifyCb = extern "C" fn(c_int, *mut openssl_sys::X509_STORE_CTX) -> c_int;

// Declarations from <openssl/x509_vfy.h> (OpenSSL 3.0); libcrypto is linked by openssl-sys.
extern "C" {
    /// Copies the policy OIDs (the stack and its objects are not taken over).
    fn X509_VERIFY_PARAM_set1_policies(
        param: *mut openssl_sys::X509_VERIFY_PARAM,
        policies: *mut openssl_sys::stack_st_ASN1_OBJECT,
    ) -> c_int;
    /// Points the context at a stack of CRLs without taking it over: the stack and its CRLs
    /// must outlive the verification, and the caller frees them (`X509_STORE_CTX_cleanup`
    /// does not).
    fn X509_STORE_CTX_set0_crls(
        ctx: *mut openssl_sys::X509_STORE_CTX,
        crls: *mut openssl_sys::stack_st_X509_CRL,
    );
    fn X509_STORE_CTX_set_verify_cb(ctx: *mut openssl_sys::X509_STORE_CTX, verify: VerifyCb);
    fn X509_STORE_CTX_set_ex_data(
        ctx: *mut openssl_sys::X509_STORE_CTX,
        idx: c_int,
        data: *mut c_void,
    ) -> c_int;
    fn X509_STORE_CTX_get_ex_data(
        ctx: *const openssl_sys::X509_STORE_CTX,
        idx: c_int,
    ) -> *mut c_void;
    /// The valid policy tree of the last verification (owned by the context; may be NULL).
    fn X509_STORE_CTX_get0_policy_tree(ctx: *const openssl_sys::X509_STORE_CTX) -> *mut c_void;
    /// The user-constrained policy set (NULL when the initial set was left at anyPolicy).
    fn X509_policy_tree_get0_user_policies(tree: *const c_void) -> *mut c_void;
    /// The authority-constrained policy set.
    fn X509_policy_tree_get0_policies(tree: *const c_void) -> *mut c_void;
    fn X509_policy_node_get0_policy(node: *const c_void) -> *const openssl_sys::ASN1_OBJECT;
}

/// The "app data" slot of an `X509_STORE_CTX` (`X509_STORE_CTX_set_app_data` is this index).
const APP_DATA: c_int = 0;

/// Sets the user-initial-policy-set of `param` (RFC 5280 6.1.1 c). An empty list leaves the
/// OpenSSL default, `{anyPolicy}`.
pub(crate) fn set_initial_policies(
    param: &mut X509VerifyParamRef,
    oids: &[Asn1Object],
) -> Result<(), ErrorStack> {
    if oids.is_empty() {
        return Ok(());
    }
    let mut stack: Stack<Asn1Object> = Stack::new()?;
    for oid in oids {
        stack.push(oid.as_ref().to_owned())?;
    }
    // SAFETY: both pointers come from live objects borrowed for the duration of the call;
    // set1 copies the stack and every object in it, so `stack` may be dropped afterwards.
    let rc = unsafe { X509_VERIFY_PARAM_set1_policies(param.as_ptr(), stack.as_ptr()) };
    if rc == 1 {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

/// Runs `f` with `crls` as the CRLs of the (initialised) context: all of them are candidates
/// for every certificate of the path, and for the path of a CRL issuer OpenSSL validates on the
/// way. The context only borrows them for the duration of `f`.
pub(crate) fn with_crls<T>(
    ctx: &mut X509StoreContextRef,
    crls: &[&X509CrlRef],
    f: impl FnOnce(&mut X509StoreContextRef) -> T,
) -> Result<T, ErrorStack> {
    /// Unsets the context's CRLs and frees the stack (not the CRLs, which it does not own),
    /// whatever happens.
    struct Lent {
        ctx: *mut openssl_sys::X509_STORE_CTX,
        stack: *mut openssl_sys::OPENSSL_STACK,
    }
    impl Drop for Lent {
        fn drop(&mut self) {
            // SAFETY: `ctx` is the live context `with_crls` borrows; `stack` was allocated by
            // OPENSSL_sk_new_null and is freed once, after the context stopped pointing at it.
            unsafe {
                X509_STORE_CTX_set0_crls(self.ctx, std::ptr::null_mut());
                openssl_sys::OPENSSL_sk_free(self.stack);
            }
        }
    }
    // SAFETY: allocation of an empty stack; null is checked.
    let stack = unsafe { openssl_sys::OPENSSL_sk_new_null() };
    if stack.is_null() {
        return Err(ErrorStack::get());
    }
    let lent = Lent {
        ctx: ctx.as_ptr(),
        stack,
    };
    for crl in crls {
        // SAFETY: `stack` is live; the CRL pointers are borrowed from `crls`, which outlives
        // this call, and the stack never frees them.
        if unsafe { openssl_sys::OPENSSL_sk_push(stack, crl.as_ptr() as *const c_void) } <= 0 {
            return Err(ErrorStack::get());
        }
    }
    // SAFETY: live context and stack; `lent` unsets the pointer before the stack is freed.
    unsafe { X509_STORE_CTX_set0_crls(ctx.as_ptr(), stack.cast()) };
    let out = f(ctx);
    drop(lent);
    Ok(out)
}

/// One error reported by OpenSSL during verification.
#[derive(Debug, Clone)]
pub(crate) struct RawFinding {
    /// `X509_V_ERR_*` code.
    pub(crate) error: c_int,
    /// Depth in the chain (0 = leaf).
    pub(crate) depth: u32,
    /// OpenSSL's text for the code.
    pub(crate) text: &'static str,
    /// The certificate the error is about, when OpenSSL names one.
    pub(crate) cert: Option<X509>,
}

type Findings = RefCell<Vec<RawFinding>>;

extern "C" fn record_and_continue(ok: c_int, ctx: *mut openssl_sys::X509_STORE_CTX) -> c_int {
    if ok != 0 {
        return ok;
    }
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: OpenSSL passes the live context being verified; the app data slot holds either
    // null or the `Findings` that `verify_collecting` owns and keeps alive (and clears) around
    // `X509_verify_cert`.
    let (ctx, findings) = unsafe {
        let data = X509_STORE_CTX_get_ex_data(ctx, APP_DATA) as *const Findings;
        (X509StoreContextRef::from_ptr(ctx), data.as_ref())
    };
    let Some(findings) = findings else {
        return 0; // no collector: fail closed, stop here
    };
    let Ok(mut findings) = findings.try_borrow_mut() else {
        return 0;
    };
    let cert = ctx.current_cert().map(|c| c.to_owned());
    let error = ctx.error();
    findings.push(RawFinding {
        error: error.as_raw(),
        text: error.error_string(),
        depth: ctx.error_depth(),
        cert,
    });
    1
}

/// The policies of the valid policy tree that survived RFC 5280 section 6.1 processing, as
/// dotted OIDs: the user-constrained set (authority-constrained set intersected with the
/// initial policy set), or the authority-constrained set when the initial set was anyPolicy.
/// `None` when there is no tree (no policy processing result to rely on).
pub(crate) fn valid_policies(ctx: &X509StoreContextRef) -> Option<Vec<String>> {
    // SAFETY: the context is initialised and verified; the tree, its node stacks and their
    // objects are owned by the context and only read here, before the context is cleaned up.
    unsafe {
        let tree = X509_STORE_CTX_get0_policy_tree(ctx.as_ptr());
        if tree.is_null() {
            return None;
        }
        let mut nodes = X509_policy_tree_get0_user_policies(tree);
        if nodes.is_null() {
            nodes = X509_policy_tree_get0_policies(tree);
        }
        if nodes.is_null() {
            return Some(Vec::new());
        }
        let stack = nodes as *const openssl_sys::OPENSSL_STACK;
        let mut out = Vec::new();
        for i in 0..openssl_sys::OPENSSL_sk_num(stack) {
            let node = openssl_sys::OPENSSL_sk_value(stack, i);
            if node.is_null() {
                continue;
            }
            let obj = X509_policy_node_get0_policy(node);
            if obj.is_null() {
                continue;
            }
            let mut buf = [0u8; 256];
            let n = openssl_sys::OBJ_obj2txt(buf.as_mut_ptr().cast(), buf.len() as c_int, obj, 1);
            let Ok(n) = usize::try_from(n) else { continue };
            if n == 0 || n >= buf.len() {
                // An OID longer than the buffer cannot be named: it matches no allowlist entry.
                continue;
            }
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out.sort();
        out.dedup();
        Some(out)
    }
}

/// Runs `X509_verify_cert` on an initialised context, recording every error instead of stopping
/// at the first. Returns OpenSSL's own verdict and the recorded errors; the caller must treat a
/// non-empty list as a failure whatever the verdict.
pub(crate) fn verify_collecting(
    ctx: &mut X509StoreContextRef,
) -> (Result<bool, ErrorStack>, Vec<RawFinding>) {
    let findings: Findings = RefCell::new(Vec::new());
    // SAFETY: the context is initialised (we are inside `X509StoreContext::init`); the pointer
    // to `findings` stays valid until it is cleared below, after `X509_verify_cert` returned.
    let installed = unsafe {
        X509_STORE_CTX_set_verify_cb(ctx.as_ptr(), record_and_continue);
        X509_STORE_CTX_set_ex_data(
            ctx.as_ptr(),
            APP_DATA,
            &findings as *const Findings as *mut _,
        )
    };
    if installed != 1 {
        return (Err(ErrorStack::get()), Vec::new());
    }
    let verdict = ctx.verify_cert();
    // SAFETY: as above; clearing the slot so nothing can reach `findings` after this frame.
    unsafe {
        X509_STORE_CTX_set_ex_data(ctx.as_ptr(), APP_DATA, std::ptr::null_mut());
    }
    (verdict, findings.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_without_collector_fails_closed() {
        assert_eq!(record_and_continue(0, std::ptr::null_mut()), 0);
        assert_eq!(record_and_continue(1, std::ptr::null_mut()), 1);
    }
}
