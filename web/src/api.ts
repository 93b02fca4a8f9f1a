// The page's gRPC-Web clients: the same services and authorisation as every other client,
// reached on the page's own origin. The token lives in session storage only (cleared at
// sign-out and when the tab closes) and is sent as `authorization: Bearer …` metadata.
// Another way of signing in (single sign-on) only has to provide a token here.
import { createClient, type Interceptor, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { DocumentService } from "./gen/paraph/v1/document_pb";
import { SignatureService } from "./gen/paraph/v1/signature_pb";
import { DelegationService } from "./gen/paraph/v1/delegation_pb";
import { AuditService } from "./gen/paraph/v1/audit_pb";
import { AdminService } from "./gen/paraph/v1/admin_pb";
import { CircuitService } from "./gen/paraph/v1/circuit_pb";

const KEY = "paraph.token";

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setToken(t: string): void {
  sessionStorage.setItem(KEY, t);
}

export function clearToken(): void {
  sessionStorage.removeItem(KEY);
}

const auth: Interceptor = (next) => async (req) => {
  const t = token();
  if (t) req.header.set("authorization", `Bearer ${t}`);
  return next(req);
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [auth],
});

export const docs: Client<typeof DocumentService> = createClient(DocumentService, transport);
export const sigs: Client<typeof SignatureService> = createClient(SignatureService, transport);
export const dele: Client<typeof DelegationService> = createClient(DelegationService, transport);
export const audit: Client<typeof AuditService> = createClient(AuditService, transport);
export const admin: Client<typeof AdminService> = createClient(AdminService, transport);
export const circuits: Client<typeof CircuitService> = createClient(CircuitService, transport);

/** The whole content of a document (a revision, or the latest). */
export async function content(id: string, signal?: AbortSignal): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of docs.getContent({ id }, { signal })) {
    parts.push(c.data);
    n += c.data.length;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A fresh idempotency key for one user action (its retries reuse it). */
export function idemKey(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return "web-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
