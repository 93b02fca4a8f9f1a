#!/usr/bin/env python3
"""A finance-software client of paraph, in Python: submits a payment mandate with metadata and
an idempotency key, waits for the end of its circuit through WatchEvents, then downloads its
signatures. Every call is retried safely after a dropped connection: a mutating call is
retried with the *same* idempotency key, so a retry whose first attempt did reach the server
returns the first answer (the same document) instead of creating a second one.

    python3 examples/python/paraph_client.py --addr 127.0.0.1:50051 --token "$FINANCE" \\
        --file mandate.pdf --circuit demo --title 'Mandat 2026-001' --meta amount=1200.50 \\
        --out signatures/

Needs `python3 -m pip install grpcio grpcio-tools`. Prints one JSON object per line on stdout
(submitted, watching, over, signature, done); notes go to stderr. Exit code 0 when the document
completed and its signatures were written, 1 when it ended otherwise (rejected, withdrawn) or
a call failed for good.
"""

import argparse
import json
import os
import sys
import time

import grpc

import paraph_stubs

# Status codes after which the same call, with the same idempotency key, may be sent again:
# the call did not reach the server, or it did and the key makes the retry return the first
# answer. Every other code is final for that request (fix the request or the set-up first).
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,         # connection refused or dropped, server restarting
    grpc.StatusCode.DEADLINE_EXCEEDED,   # no answer in time: maybe done, the key tells
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # server busy (upload budget, queue): later
    grpc.StatusCode.ABORTED,             # lost a race with a concurrent change
}
ATTEMPTS = 8
CHUNK = 64 * 1024


def note(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(**fields):
    print(json.dumps(fields, sort_keys=True), flush=True)


def time_ordered_key():
    """A UUIDv7-style key (RFC 9562): 48 bits of milliseconds, then 80 random bits, in 32 hex
    digits. Keys that grow with time keep the server's idempotency index compact."""
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    return ms.to_bytes(6, "big").hex() + os.urandom(10).hex()


def with_retries(what, call):
    """Runs call() until it succeeds, retrying RETRYABLE codes with a growing pause. Returns
    (answer, attempts)."""
    pause = 0.2
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call(), attempt
        except grpc.RpcError as e:
            if e.code() not in RETRYABLE or attempt == ATTEMPTS:
                raise
            note(f"{what}: {e.code().name} ({e.details()}); attempt {attempt + 1} "
                 f"in {pause:.1f}s with the same idempotency key")
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
    raise AssertionError("unreachable")


class Paraph:
    def __init__(self, pb, addr, token, tenant=None):
        self.pb = pb
        self.metadata = [("authorization", f"Bearer {token}")]
        if tenant:  # only the platform operator names a tenant; other tokens carry theirs
            self.metadata.append(("x-paraph-tenant", tenant))
        self.channel = grpc.insecure_channel(addr)  # grpc.secure_channel(...) behind TLS
        self.docs = pb.document_grpc.DocumentServiceStub(self.channel)
        self.sigs = pb.signature_grpc.SignatureServiceStub(self.channel)

    def submit(self, path, circuit, title, metadata, key):
        """SubmitDocument: a header, then the content in chunks. The idempotency key (and the
        content's SHA-256, which the server folds into the request's fingerprint) make a retry
        return the first document."""
        pb = self.pb
        header = pb.document.SubmitHeader(
            type=pb.common.DOCUMENT_TYPE_MANDATE, title=title, circuit=circuit,
            metadata=metadata, file_name=os.path.basename(path), idempotency_key=key)

        def requests():
            yield pb.document.SubmitDocumentRequest(header=header)
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield pb.document.SubmitDocumentRequest(chunk=chunk)

        return with_retries("SubmitDocument", lambda: self.docs.SubmitDocument(
            requests(), metadata=self.metadata, timeout=60))

    def get(self, doc_id):
        req = self.pb.document.GetDocumentRequest(id=doc_id)
        return with_retries("GetDocument", lambda: self.docs.GetDocument(
            req, metadata=self.metadata, timeout=30))[0]

    def wait_until_over(self, doc_id, timeout):
        """Waits for the document to leave IN_PROGRESS. WatchEvents streams what happens from
        the moment it is opened (nothing is replayed), so the document is read again each time
        a stream is open, and the stream is opened again after a dropped connection."""
        pb = self.pb
        over = {pb.document.DOCUMENT_STATE_COMPLETED, pb.document.DOCUMENT_STATE_REJECTED,
                pb.document.DOCUMENT_STATE_WITHDRAWN}
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"document {doc_id} still in progress after {timeout}s")
            # Each stream lasts at most 30 s: then the document is read again (a safety net).
            stream = self.docs.WatchEvents(pb.document.WatchEventsRequest(),
                                           metadata=self.metadata, timeout=min(left, 30))
            try:
                stream.initial_metadata()  # the server is subscribed once its headers are in
                doc = self.get(doc_id)
                if doc.state in over:
                    return doc
                emit(event="watching", document_id=doc_id,
                     state=pb.document.DocumentState.Name(doc.state))
                for ev in stream:
                    if ev.document_id == doc_id:
                        note(f"event: {ev.kind} ({pb.document.DocumentState.Name(ev.state)})")
                        if ev.state in over:
                            return self.get(doc_id)
            except grpc.RpcError as e:
                # UNAVAILABLE: connection lost; DEADLINE_EXCEEDED: the 30 s are over;
                # DATA_LOSS: events were dropped because this watcher fell behind.
                if e.code() not in RETRYABLE | {grpc.StatusCode.DATA_LOSS}:
                    raise
                note(f"WatchEvents: {e.code().name}; reading the document and watching again")
                time.sleep(0.2)
            finally:
                stream.cancel()

    def signatures(self, doc_id):
        req = self.pb.signature.GetSignaturesRequest(document_id=doc_id)
        return with_retries("GetSignatures", lambda: self.sigs.GetSignatures(
            req, metadata=self.metadata, timeout=60))[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", default=os.environ.get("PARAPH_ADDR", "127.0.0.1:50051"))
    ap.add_argument("--token", default=os.environ.get("PARAPH_TOKEN"))
    ap.add_argument("--tenant", default=os.environ.get("PARAPH_TENANT"),
                    help="only for the platform operator's token")
    ap.add_argument("--file", required=True)
    ap.add_argument("--circuit", required=True)
    ap.add_argument("--title", required=True)
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--idempotency-key", default=None,
                    help="default: a fresh time-ordered key; give the same one to resume")
    ap.add_argument("--out", default="signatures")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for the end")
    ap.add_argument("--proto", default=paraph_stubs.DEFAULT_PROTO)
    a = ap.parse_args()
    if not a.token:
        ap.error("--token or PARAPH_TOKEN is required")
    metadata = {}
    for item in a.meta:
        k, sep, v = item.partition("=")
        if not sep or not k:
            ap.error(f"--meta {item!r}: expected KEY=VALUE")
        metadata[k] = v
    key = a.idempotency_key or time_ordered_key()

    client = Paraph(paraph_stubs.load(a.proto), a.addr, a.token, a.tenant)
    pb = client.pb
    doc, attempts = client.submit(a.file, a.circuit, a.title, metadata, key)
    emit(event="submitted", document_id=doc.id, attempts=attempts, idempotency_key=key,
         sha256=doc.content_sha256)

    doc = client.wait_until_over(doc.id, a.timeout)
    state = pb.document.DocumentState.Name(doc.state)
    emit(event="over", document_id=doc.id, state=state)
    if doc.state != pb.document.DOCUMENT_STATE_COMPLETED:
        return 1

    answer = client.signatures(doc.id)
    os.makedirs(a.out, exist_ok=True)
    for s in answer.signatures:
        path = os.path.join(a.out, f"{doc.id}-{s.index}.p7s")
        with open(path, "wb") as f:
            f.write(s.cms)
        emit(event="signature", file=path, signer=s.signer, seal=s.seal, level=s.level)
    if answer.combined_cms:
        path = os.path.join(a.out, f"{doc.id}-all.p7s")
        with open(path, "wb") as f:
            f.write(answer.combined_cms)
        emit(event="signature", file=path, signer="all", seal=False, level=0)
    emit(event="done", document_id=doc.id, signatures=len(answer.signatures))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:
        note(f"error: {e.code().name}: {e.details()}")
        sys.exit(1)
