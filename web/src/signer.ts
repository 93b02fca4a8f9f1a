// The officer's software certificate, in the page only: a PKCS#12 file opened with its
// passphrase (pkijs on WebCrypto: PBES2/AES/PBKDF2 as OpenSSL 3 writes them, MAC checked), the
// private key imported as a non-extractable WebCrypto key, and signatures made with it. Neither
// the key nor the passphrase ever leaves the page.
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

const SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2";
const KEY_BAG = "1.2.840.113549.1.12.10.1.1";
const CERT_BAG = "1.2.840.113549.1.12.10.1.3";
const EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const RSA_ENCRYPTION = "1.2.840.113549.1.1.1";
const MESSAGE_DIGEST = "1.2.840.113549.1.9.4";
const CURVES: Record<string, string> = {
  "1.2.840.10045.3.1.7": "P-256",
  "1.3.132.0.34": "P-384",
  "1.3.132.0.35": "P-521",
};

export class P12Error extends Error {
  constructor(public kind: "passphrase" | "format" | "key", message: string) {
    super(message);
  }
}

export interface Signer {
  /** DER certificates, the signer's first. */
  chain: Uint8Array[];
  /** The signer's subject, for display. */
  subject: string;
  kind: "ECDSA" | "RSA";
  key: CryptoKey;
}

function ab(u: Uint8Array): ArrayBuffer {
  return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
}

function subjectOf(c: pkijs.Certificate): string {
  return c.subject.typesAndValues
    .map((tv) => String(tv.value.valueBlock.value))
    .join(", ");
}

/** Opens a PKCS#12 file. A wrong passphrase fails the integrity check (P12Error "passphrase"). */
export async function openP12(file: Uint8Array, passphrase: string): Promise<Signer> {
  const pw = ab(new TextEncoder().encode(passphrase));
  let pfx: pkijs.PFX;
  try {
    pfx = pkijs.PFX.fromBER(ab(file));
  } catch {
    throw new P12Error("format", "not a PKCS#12 file");
  }
  try {
    await pfx.parseInternalValues({ password: pw, checkIntegrity: true });
  } catch {
    throw new P12Error("passphrase", "wrong passphrase or damaged file");
  }
  const auth = pfx.parsedValue?.authenticatedSafe;
  if (!auth) throw new P12Error("format", "no authenticated safe");
  try {
    await auth.parseInternalValues({
      safeContents: auth.safeContents.map(() => ({ password: pw })),
    });
  } catch {
    throw new P12Error("passphrase", "cannot decrypt the certificates");
  }
  const certs: pkijs.Certificate[] = [];
  const ders = new Map<pkijs.Certificate, Uint8Array>();
  let pkcs8: ArrayBuffer | undefined;
  let keyAlg = "";
  let curveOid = "";
  for (const sc of auth.parsedValue?.safeContents ?? []) {
    for (const bag of sc.value.safeBags) {
      if (bag.bagId === SHROUDED_KEY_BAG || bag.bagId === KEY_BAG) {
        let info: pkijs.PrivateKeyInfo;
        if (bag.bagId === SHROUDED_KEY_BAG) {
          const shrouded = bag.bagValue as pkijs.PKCS8ShroudedKeyBag;
          try {
            // Public in pkijs's JavaScript; its typings mark it protected.
            await (shrouded as unknown as { parseInternalValues(p: { password: ArrayBuffer }): Promise<void> }).parseInternalValues({ password: pw });
          } catch {
            throw new P12Error("passphrase", "cannot decrypt the private key");
          }
          if (!shrouded.parsedValue) throw new P12Error("key", "no private key");
          info = shrouded.parsedValue;
        } else {
          info = bag.bagValue as unknown as pkijs.PrivateKeyInfo;
        }
        pkcs8 = info.toSchema().toBER(false);
        keyAlg = info.privateKeyAlgorithm.algorithmId;
        const params = info.privateKeyAlgorithm.algorithmParams;
        if (params instanceof asn1js.ObjectIdentifier) curveOid = params.valueBlock.toString();
      } else if (bag.bagId === CERT_BAG) {
        const cb = bag.bagValue as pkijs.CertBag;
        if (cb.parsedValue instanceof pkijs.Certificate && cb.certValue instanceof asn1js.OctetString) {
          // The certificate exactly as issued (its DER inside the bag), never re-encoded.
          certs.push(cb.parsedValue);
          ders.set(cb.parsedValue, new Uint8Array(cb.certValue.valueBlock.valueHexView));
        }
      }
    }
  }
  if (!pkcs8) throw new P12Error("key", "the file holds no private key");
  if (certs.length === 0) throw new P12Error("key", "the file holds no certificate");
  // The signer's certificate is the one that issued none of the others.
  const issues = (a: pkijs.Certificate, b: pkijs.Certificate) =>
    a !== b && a.subject.isEqual(b.issuer);
  const leaf = certs.find((c) => !certs.some((o) => issues(c, o))) ?? certs[0];
  const chain = [leaf, ...certs.filter((c) => c !== leaf)].map((c) => ders.get(c) as Uint8Array);
  let key: CryptoKey;
  let kind: "ECDSA" | "RSA";
  if (keyAlg === EC_PUBLIC_KEY) {
    const namedCurve = CURVES[curveOid];
    if (!namedCurve) throw new P12Error("key", `unsupported curve ${curveOid}`);
    kind = "ECDSA";
    key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "ECDSA", namedCurve }, false, [
      "sign",
    ]);
  } else if (keyAlg === RSA_ENCRYPTION) {
    kind = "RSA";
    key = await crypto.subtle.importKey(
      "pkcs8",
      pkcs8,
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      false,
      ["sign"],
    );
  } else {
    throw new P12Error("key", `unsupported key type ${keyAlg}`);
  }
  return { chain, subject: subjectOf(leaf), kind, key };
}

/** Signs `data` (SHA-256) for the algorithm the server names; ECDSA values in DER as CMS wants. */
export async function sign(s: Signer, algorithm: string, data: Uint8Array): Promise<Uint8Array> {
  if (algorithm === "ECDSA_SHA256" && s.kind === "ECDSA") {
    const raw = new Uint8Array(
      await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, s.key, ab(data)),
    );
    return ecdsaDer(raw);
  }
  if (algorithm === "RSA_PKCS1_SHA256" && s.kind === "RSA") {
    return new Uint8Array(await crypto.subtle.sign({ name: "RSASSA-PKCS1-v1_5" }, s.key, ab(data)));
  }
  throw new Error(`the server asks for ${algorithm}, the key is ${s.kind}`);
}

/** r||s (IEEE P1363) to DER SEQUENCE { INTEGER r, INTEGER s }. */
export function ecdsaDer(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  const int = (b: Uint8Array) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    let v = b.slice(i);
    if (v[0] & 0x80) v = Uint8Array.of(0, ...v);
    return Uint8Array.of(0x02, ...len(v.length), ...v);
  };
  const r = int(raw.slice(0, half));
  const s = int(raw.slice(half));
  return Uint8Array.of(0x30, ...len(r.length + s.length), ...r, ...s);
}

function len(n: number): number[] {
  if (n < 0x80) return [n];
  if (n < 0x100) return [0x81, n];
  return [0x82, n >> 8, n & 0xff];
}

/** The message-digest value of DER signed attributes (exactly one, one value), or null. */
export function messageDigest(signedAttrs: Uint8Array): Uint8Array | null {
  const parsed = asn1js.fromBER(ab(signedAttrs));
  if (parsed.offset === -1 || !(parsed.result instanceof asn1js.Set)) return null;
  const found: Uint8Array[] = [];
  for (const attr of parsed.result.valueBlock.value) {
    if (!(attr instanceof asn1js.Sequence)) return null;
    const [oid, values] = attr.valueBlock.value;
    if (!(oid instanceof asn1js.ObjectIdentifier) || !(values instanceof asn1js.Set)) return null;
    if (oid.valueBlock.toString() !== MESSAGE_DIGEST) continue;
    if (values.valueBlock.value.length !== 1) return null;
    const v = values.valueBlock.value[0];
    if (!(v instanceof asn1js.OctetString)) return null;
    found.push(new Uint8Array(v.valueBlock.valueHexView));
  }
  return found.length === 1 ? found[0] : null;
}

export async function sha256Hex(data: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", ab(data)));
  return hex(d);
}

export function hex(d: Uint8Array): string {
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}
