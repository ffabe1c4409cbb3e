//! A/B of the HTTP/1.1 client behind the webhook seam (issue 19): Tocsin's lean client
//! (`tocsin_notify::http1`, the production path for plain `http://`), hyper's own client
//! connection API (`hyper::client::conn::http1`, a connection per task from a small pool), and
//! reqwest (the path for everything else). Each iteration sends 2,000 webhook-sized POSTs, 64
//! at a time, to a minimal keep-alive server on its own thread; the server's cost is the same
//! for all three. Run: `cargo bench -p tocsin-notify --bench http_client`.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUESTS: usize = 2_000;
const CONCURRENCY: usize = 64;

/// A server that answers every request on a connection with an empty 200, as fast as it can.
fn server() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut have = 0;
                    loop {
                        // Requests end with their body: answer once a full request is read.
                        let Ok(n) = s.read(&mut buf[have..]).await else { return };
                        if n == 0 {
                            return;
                        }
                        have += n;
                        while let Some(end) = find_request(&buf[..have]) {
                            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                                .await
                                .is_err()
                            {
                                return;
                            }
                            buf.copy_within(end..have, 0);
                            have -= end;
                        }
                    }
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// The length of the first complete request in `b` (head plus `content-length` body).
fn find_request(b: &[u8]) -> Option<usize> {
    let head = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&b[..head]).ok()?;
    let len: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (b.len() >= head + len).then_some(head + len)
}

fn body() -> Vec<u8> {
    // About a one-alert webhook payload.
    let mut b = br#"{"receiver":"r","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"A","instance":"i:9100"},"annotations":{"summary":"s"},"startsAt":"2026-12-07T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"0123456789abcdef"}],"#.to_vec();
    b.extend_from_slice(br#""groupLabels":{"alertname":"A"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://t","version":"4","groupKey":"{}:{alertname=\"A\"}","truncatedAlerts":0}"#);
    b
}

async fn run<F, Fut>(send: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = REQUESTS / CONCURRENCY;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let send = send.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    send().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

type Pool = Arc<Mutex<Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>>;

/// hyper's connection API with a pool of ready connections (each driven by its own task).
async fn hyper_send(pool: Pool, addr: std::net::SocketAddr, body: Bytes) {
    let taken = pool.lock().unwrap().pop();
    let mut sender = match taken {
        Some(s) => s,
        None => {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = tcp.set_nodelay(true);
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn);
            s
        }
    };
    sender.ready().await.unwrap();
    let req = hyper::Request::post("/hook")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("user-agent", "Tocsin/bench")
        .body(Full::new(body))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let _ = resp.into_body().collect().await.unwrap();
    pool.lock().unwrap().push(sender);
}

fn bench(c: &mut Criterion) {
    let addr = server();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = reqwest::Url::parse(&format!("http://{addr}/hook")).unwrap();
    let body = body();
    let mut g = c.benchmark_group("webhook_client_2000_posts_64_at_once");
    g.sample_size(20);

    let origin = Arc::new(tocsin_notify::http1::Origin::of(&url).unwrap());
    let request = Arc::new(tocsin_notify::http1::encode(
        "POST",
        &url,
        origin.host(),
        "Tocsin/bench",
        None,
        &[],
        Some(("application/json", &body)),
    ));
    g.bench_function("lean_http1", |b| {
        b.iter(|| {
            let (origin, request) = (origin.clone(), request.clone());
            rt.block_on(run(move || {
                let (origin, request) = (origin.clone(), request.clone());
                async move {
                    let r = origin.send(&request).await.unwrap();
                    assert_eq!(r.status, 200);
                }
            }));
        });
    });

    let pool: Pool = Arc::default();
    let shared = Bytes::from(body.clone());
    g.bench_function("hyper_conn_http1", |b| {
        b.iter(|| {
            let (pool, shared) = (pool.clone(), shared.clone());
            rt.block_on(run(move || hyper_send(pool.clone(), addr, shared.clone())));
        });
    });

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    g.bench_function("reqwest", |b| {
        b.iter(|| {
            let (client, url, body) = (client.clone(), url.clone(), shared.clone());
            rt.block_on(run(move || {
                let (client, url, body) = (client.clone(), url.clone(), body.clone());
                async move {
                    let r = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }));
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
