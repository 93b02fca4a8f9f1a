package paraph.example;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import paraph.v1.Common.DocumentType;
import paraph.v1.DocumentOuterClass.Document;
import paraph.v1.DocumentOuterClass.DocumentEvent;
import paraph.v1.DocumentOuterClass.DocumentState;
import paraph.v1.DocumentOuterClass.GetDocumentRequest;
import paraph.v1.DocumentOuterClass.SubmitDocumentRequest;
import paraph.v1.DocumentOuterClass.SubmitHeader;
import paraph.v1.DocumentOuterClass.WatchEventsRequest;
import paraph.v1.DocumentServiceGrpc;
import paraph.v1.Signature.GetSignaturesRequest;
import paraph.v1.Signature.GetSignaturesResponse;
import paraph.v1.Signature.SignatureInfo;
import paraph.v1.SignatureServiceGrpc;

/**
 * A finance-software client of paraph in Java, the same as examples/python/paraph_client.py:
 * submits a mandate with metadata and an idempotency key, waits for the end of its circuit
 * through WatchEvents, then writes its signatures. A call that fails with a code safe to retry
 * (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED) is sent again with the same
 * idempotency key, so a retry after a lost answer returns the first document, not a second one.
 *
 * <pre>
 * java -cp ... paraph.example.FinanceClient ADDR TOKEN FILE CIRCUIT TITLE OUT_DIR [KEY=VALUE...]
 * </pre>
 */
public final class FinanceClient {
  private static final Set<Status.Code> RETRYABLE =
      EnumSet.of(
          Status.Code.UNAVAILABLE,
          Status.Code.DEADLINE_EXCEEDED,
          Status.Code.RESOURCE_EXHAUSTED,
          Status.Code.ABORTED);
  private static final Set<DocumentState> OVER =
      EnumSet.of(
          DocumentState.DOCUMENT_STATE_COMPLETED,
          DocumentState.DOCUMENT_STATE_REJECTED,
          DocumentState.DOCUMENT_STATE_WITHDRAWN);
  private static final int ATTEMPTS = 8;
  private static final int CHUNK = 64 * 1024;

  private final DocumentServiceGrpc.DocumentServiceStub docsAsync;
  private final DocumentServiceGrpc.DocumentServiceBlockingStub docs;
  private final SignatureServiceGrpc.SignatureServiceBlockingStub sigs;

  FinanceClient(ManagedChannel channel, String token) {
    Metadata headers = new Metadata();
    headers.put(
        Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
    // Only the platform operator adds x-paraph-tenant; other tokens carry their tenant.
    var auth = MetadataUtils.newAttachHeadersInterceptor(headers);
    docsAsync = DocumentServiceGrpc.newStub(channel).withInterceptors(auth);
    docs = DocumentServiceGrpc.newBlockingStub(channel).withInterceptors(auth);
    sigs = SignatureServiceGrpc.newBlockingStub(channel).withInterceptors(auth);
  }

  /** A UUIDv7-style key: 48 bits of milliseconds, then 80 random bits, in 32 hex digits. */
  static String timeOrderedKey() {
    ByteBuffer b = ByteBuffer.allocate(16);
    b.putLong(System.currentTimeMillis() << 16);
    byte[] random = new byte[10];
    new SecureRandom().nextBytes(random);
    b.position(6);
    b.put(random);
    StringBuilder hex = new StringBuilder();
    for (byte x : b.array()) {
      hex.append(String.format("%02x", x));
    }
    return hex.toString();
  }

  /** Runs call until it succeeds, retrying the codes safe to retry with a growing pause. */
  static <T> T withRetries(String what, Supplier<T> call) throws InterruptedException {
    long pauseMs = 200;
    for (int attempt = 1; ; attempt++) {
      try {
        return call.get();
      } catch (StatusRuntimeException e) {
        if (!RETRYABLE.contains(e.getStatus().getCode()) || attempt == ATTEMPTS) {
          throw e;
        }
        System.err.printf(
            "%s: %s; attempt %d with the same idempotency key%n",
            what, e.getStatus().getCode(), attempt + 1);
        Thread.sleep(pauseMs);
        pauseMs = Math.min(pauseMs * 2, 5000);
      }
    }
  }

  /** SubmitDocument (a client stream: the header, then the content in chunks). */
  Document submit(Path file, SubmitHeader header) throws Exception {
    return withRetries(
        "SubmitDocument",
        () -> {
          CompletableFuture<Document> answer = new CompletableFuture<>();
          StreamObserver<SubmitDocumentRequest> upload =
              docsAsync
                  .withDeadlineAfter(60, TimeUnit.SECONDS)
                  .submitDocument(
                      new StreamObserver<Document>() {
                        public void onNext(Document d) {
                          answer.complete(d);
                        }

                        public void onError(Throwable t) {
                          answer.completeExceptionally(t);
                        }

                        public void onCompleted() {}
                      });
          try (InputStream in = Files.newInputStream(file)) {
            upload.onNext(SubmitDocumentRequest.newBuilder().setHeader(header).build());
            byte[] buf = new byte[CHUNK];
            for (int n; (n = in.read(buf)) > 0; ) {
              upload.onNext(
                  SubmitDocumentRequest.newBuilder().setChunk(ByteString.copyFrom(buf, 0, n)).build());
            }
            upload.onCompleted();
            return answer.get();
          } catch (ExecutionException e) {
            if (e.getCause() instanceof StatusRuntimeException s) {
              throw s;
            }
            throw new IllegalStateException(e.getCause());
          } catch (Exception e) {
            upload.onError(e);
            throw new IllegalStateException(e);
          }
        });
  }

  Document get(String id) throws InterruptedException {
    return withRetries(
        "GetDocument",
        () ->
            docs.withDeadlineAfter(30, TimeUnit.SECONDS)
                .getDocument(GetDocumentRequest.newBuilder().setId(id).build()));
  }

  /**
   * Waits for the document to leave IN_PROGRESS. WatchEvents replays nothing: open the stream,
   * read the document, then wait; after a dropped connection, the same again.
   */
  Document waitUntilOver(String id) throws InterruptedException {
    while (true) {
      try {
        Iterator<DocumentEvent> events =
            docs.withDeadlineAfter(30, TimeUnit.SECONDS)
                .watchEvents(WatchEventsRequest.getDefaultInstance());
        Document doc = get(id);
        if (OVER.contains(doc.getState())) {
          return doc;
        }
        while (events.hasNext()) {
          DocumentEvent ev = events.next();
          if (ev.getDocumentId().equals(id) && OVER.contains(ev.getState())) {
            return get(id);
          }
        }
      } catch (StatusRuntimeException e) {
        Status.Code code = e.getStatus().getCode();
        if (!RETRYABLE.contains(code) && code != Status.Code.DATA_LOSS) {
          throw e;
        }
        Thread.sleep(200);
      }
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 6) {
      System.err.println("usage: FinanceClient ADDR TOKEN FILE CIRCUIT TITLE OUT_DIR [KEY=VALUE...]");
      System.exit(2);
    }
    Map<String, String> metadata = new HashMap<>();
    for (int i = 6; i < args.length; i++) {
      String[] kv = args[i].split("=", 2);
      metadata.put(kv[0], kv.length > 1 ? kv[1] : "");
    }
    Path file = Path.of(args[2]);
    String key = timeOrderedKey(); // store it with the mandate before the first attempt
    ManagedChannel channel = ManagedChannelBuilder.forTarget(args[0]).usePlaintext().build();
    try {
      FinanceClient client = new FinanceClient(channel, args[1]);
      SubmitHeader header =
          SubmitHeader.newBuilder()
              .setType(DocumentType.DOCUMENT_TYPE_MANDATE)
              .setCircuit(args[3])
              .setTitle(args[4])
              .putAllMetadata(metadata)
              .setFileName(file.getFileName().toString())
              .setIdempotencyKey(key)
              .build();
      Document doc = client.submit(file, header);
      System.out.println("submitted " + doc.getId() + " key " + key);
      doc = client.waitUntilOver(doc.getId());
      System.out.println("over " + doc.getState());
      if (doc.getState() != DocumentState.DOCUMENT_STATE_COMPLETED) {
        System.exit(1);
      }
      String id = doc.getId();
      GetSignaturesResponse sigs =
          withRetries(
              "GetSignatures",
              () ->
                  client
                      .sigs
                      .withDeadlineAfter(60, TimeUnit.SECONDS)
                      .getSignatures(GetSignaturesRequest.newBuilder().setDocumentId(id).build()));
      Path out = Path.of(args[5]);
      Files.createDirectories(out);
      for (SignatureInfo s : sigs.getSignaturesList()) {
        Path p = out.resolve(id + "-" + s.getIndex() + ".p7s");
        Files.write(p, s.getCms().toByteArray());
        System.out.println("wrote " + p);
      }
    } finally {
      channel.shutdownNow();
    }
  }
}
