//! The server as a network service: health, reflection, the event stream, graceful shutdown,
//! TLS and client-certificate authentication.

mod common;
use common::*;
use paraph::proto;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

#[tokio::test]
async fn health_and_reflection_are_served() {
    let srv = TestServer::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(srv.channel());
    for service in [
        "",
        "paraph.v1.DocumentService",
        "paraph.v1.AdminService",
        "paraph.v1.CircuitService",
    ] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut refl = ServerReflectionClient::new(srv.channel());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("{msg:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "paraph.v1.AdminService",
        "paraph.v1.CircuitService",
        "paraph.v1.DocumentService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn watchers_receive_the_changes_that_concern_them_and_streams_end_at_shutdown() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-w").await;
    create_circuit(&srv, &org, "ab", vec![visa(&["alice"]), visa(&["bob"])]).await;
    create_circuit(&srv, &org, "b", vec![visa(&["bob"])]).await;
    let watch = |who: &str| {
        let mut d = srv.docs(org.token(who), None);
        async move {
            d.watch_events(proto::WatchEventsRequest {})
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut alice = watch("alice").await;
    let mut bob = watch("bob").await;
    let mut audit = watch("audit").await;
    let mut fin = watch("finance").await;

    let d1 = submit(&srv, &org, "ab", &[]).await;
    let d2 = submit(&srv, &org, "b", &[]).await;
    // Alice is concerned by d1 only; bob by d2 first (d1 reaches him later).
    let e = next_event(&mut alice).await;
    assert_eq!(
        (e.document_id.as_str(), e.kind.as_str()),
        (d1.id.as_str(), "submitted")
    );
    let e = next_event(&mut alice).await;
    assert_eq!(
        (e.document_id.as_str(), e.kind.as_str(), e.step),
        (d1.id.as_str(), "step_activated", 0)
    );
    let e = next_event(&mut bob).await;
    assert_eq!(
        e.document_id, d2.id,
        "bob must not see d1 before it reaches him"
    );
    next_event(&mut bob).await;
    approve(&srv, &org, "alice", &d1.id, Some(0)).await.unwrap();
    let kinds: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let e = next_event(&mut bob).await;
            assert_eq!(e.document_id, d1.id);
            v.push(e.kind);
        }
        v
    };
    assert_eq!(kinds, ["approved", "step_completed", "step_activated"]);
    // The auditor and the submitter see everything of their concern, in order.
    let mut seen = Vec::new();
    for _ in 0..7 {
        let e = next_event(&mut audit).await;
        seen.push((e.document_id, e.kind));
    }
    assert_eq!(seen[0], (d1.id.clone(), "submitted".to_string()));
    assert_eq!(seen[6], (d1.id.clone(), "step_activated".to_string()));
    let e = next_event(&mut fin).await;
    assert_eq!(e.document_id, d1.id);
    assert_eq!(e.title, "Mandat 2026-001");

    // Graceful shutdown ends open streams instead of hanging on them.
    tokio::time::timeout(Duration::from_secs(20), srv.stop())
        .await
        .expect("shutdown hung on a watch stream");
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = alice.message().await {}
    })
    .await;
    assert!(end.is_ok(), "the watch stream did not end at shutdown");
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
    with_identity: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(dir.join("ca.pem")).unwrap(),
        ))
        .domain_name("localhost");
    if with_identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(dir.join("client.pem")).unwrap(),
            std::fs::read(dir.join("client.key")).unwrap(),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn tls_and_client_certificate_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    std::fs::create_dir(&certs).unwrap();
    common::make_tls_material(&certs);
    let tls = paraph::config::TlsSettings {
        cert: certs.join("server.pem"),
        key: certs.join("server.key"),
        client_ca: Some(certs.join("ca.pem")),
    };
    let mut settings = paraph::config::Settings {
        data: dir.path().join("data"),
        tls: Some(tls),
        idle_timeout_secs: 1,
        ..Default::default()
    };
    let (svc, boot) =
        paraph::server::open(&settings, std::sync::Arc::new(paraph::clock::SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let s2 = settings.clone();
    let handle = tokio::spawn(async move {
        paraph::server::serve(svc, &s2, listener, async {
            let _ = rx.await;
        })
        .await
    });
    let operator = boot.unwrap().token;

    // With a client certificate: served.
    let ch = tls_channel(addr, &certs, true).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    let mut admin = proto::admin_service_client::AdminServiceClient::new(ch.clone());
    let mut req = tonic::Request::new(proto::ListUsersRequest {});
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {operator}").parse().unwrap(),
    );
    req.metadata_mut()
        .insert("x-paraph-tenant", "default".parse().unwrap());
    admin.list_users(req).await.unwrap();
    // Over TLS too, a connection with a call open (a watch) stays while an idle one, here one
    // that never begins its handshake, is closed after idle_timeout_secs.
    let mut watch = proto::document_service_client::DocumentServiceClient::new(ch.clone());
    let mut req = tonic::Request::new(proto::WatchEventsRequest {});
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {operator}").parse().unwrap(),
    );
    req.metadata_mut()
        .insert("x-paraph-tenant", "default".parse().unwrap());
    let mut watch = watch.watch_events(req).await.unwrap().into_inner();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 256];
        while let Ok(n) = idle.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection stayed open");
    let next = tokio::time::timeout(std::time::Duration::from_millis(300), watch.message()).await;
    assert!(next.is_err(), "the watch ended: {next:?}");
    // Without one: the handshake or the first call fails.
    let refused = match tls_channel(addr, &certs, false).await {
        Err(_) => true,
        Ok(ch) => tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    // Plain text against the TLS port fails too.
    let plain = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new()
            })
            .await
            .is_err());
    }
    let _ = stop.send(());
    handle.await.unwrap().unwrap();
    // A missing key file is a clear startup error.
    settings.tls.as_mut().unwrap().key = certs.join("missing.key");
    let (svc, _) =
        paraph::server::open(&settings, std::sync::Arc::new(paraph::clock::SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = paraph::server::serve(svc, &settings, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS key") && err.contains("missing.key"),
        "{err}"
    );
}
