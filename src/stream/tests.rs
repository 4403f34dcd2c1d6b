//! Tests of the TLS stream: the read skip, against a counted socket and a hostile server.

use super::*;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use openssl::ssl::{Ssl, SslAcceptor, SslConnector, SslMethod};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::testkit::TestPki;

/// The client's socket: counts the reads that reach it.
struct Counted {
    inner: DuplexStream,
    reads: Arc<AtomicUsize>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A task waker that counts its wakes.
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type Client = MaybeHttpsStream<TokioIo<Counted>>;

/// A client `Ssl` for `localhost` that trusts the test CA and reads ahead, as the crate's
/// contexts do.
fn client_ssl() -> Ssl {
    let mut conn = SslConnector::builder(SslMethod::tls_client()).unwrap();
    conn.cert_store_mut()
        .add_cert(TestPki::shared().ca.cert.clone())
        .unwrap();
    conn.set_read_ahead(true);
    conn.build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap()
}

/// A handshaken TLS stream as the connector hands it to hyper (what its `TlsInfo` says is not
/// looked at here).
fn https<T>(s: TlsStream<T>) -> MaybeHttpsStream<T> {
    let info = TlsInfo {
        version: TlsVersion::Tls1_3,
        cipher: "",
        profile: Arc::from("modern"),
        attempts: Arc::from(Vec::new()),
        from_cache: false,
        pinned: false,
        resumed: false,
        alpn: None,
    };
    MaybeHttpsStream::Https(TokioIo::new(s), Arc::new(info))
}

/// A TLS 1.3 connection over an in-memory pipe: the client side as hyper sees it, the
/// server side, and the client's socket read counter.
async fn pair() -> (
    Client,
    tokio_openssl::SslStream<DuplexStream>,
    Arc<AtomicUsize>,
) {
    let pki = TestPki::shared();
    let (c, s) = tokio::io::duplex(64 * 1024);
    let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acc.set_certificate(&pki.localhost.cert).unwrap();
    acc.set_private_key(&pki.localhost.key).unwrap();
    let acc = acc.build();
    let mut server = tokio_openssl::SslStream::new(Ssl::new(acc.context()).unwrap(), s).unwrap();
    let ssl = client_ssl();
    let reads = Arc::new(AtomicUsize::new(0));
    let sock = TokioIo::new(TokioIo::new(Counted {
        inner: c,
        reads: Arc::clone(&reads),
    }));
    let mut client = SslStream::new(ssl, ReadWatch::new(sock, Arc::default())).unwrap();
    let (a, b) = tokio::join!(
        Pin::new(&mut client).connect(),
        Pin::new(&mut server).accept()
    );
    a.unwrap();
    b.unwrap();
    (https(client), server, reads)
}

fn read(s: &mut Client, cx: &mut Context<'_>) -> Poll<Vec<u8>> {
    let mut buf = [0u8; 256];
    let mut rb = hyper::rt::ReadBuf::new(&mut buf);
    match Pin::new(s).poll_read(cx, rb.unfilled()) {
        Poll::Ready(r) => {
            r.unwrap();
            Poll::Ready(rb.filled().to_vec())
        }
        Poll::Pending => Poll::Pending,
    }
}

/// Waits (up to 5 s) until the task waker has been woken more than `n` times.
async fn woken_past(w: &Wakes, n: usize) -> bool {
    woken_within(w, n, 1000).await
}

/// Waits up to `rounds` times 5 ms until the task waker has been woken more than `n` times.
async fn woken_within(w: &Wakes, n: usize, rounds: usize) -> bool {
    for _ in 0..rounds {
        if w.0.load(Ordering::SeqCst) > n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test]
async fn a_read_that_could_only_find_nothing_does_not_reach_tls_or_the_socket() {
    let (mut client, mut server, reads) = pair().await;
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    // Take in what the handshake left (TLS 1.3 session tickets) until a read waits.
    for _ in 0..20 {
        match read(&mut client, &mut cx) {
            Poll::Ready(data) => panic!("a read before anything was sent: {data:?}"),
            Poll::Pending => {
                // More of it may still be on its way: 100 ms without a wake is the end.
                let n = wakes.0.load(Ordering::SeqCst);
                if !woken_within(&wakes, n, 20).await {
                    break;
                }
            }
        }
    }
    // Nothing arrives: polls again and again reach neither OpenSSL nor the socket.
    let before = reads.load(Ordering::SeqCst);
    for _ in 0..5 {
        assert!(read(&mut client, &mut cx).is_pending());
    }
    assert_eq!(
        reads.load(Ordering::SeqCst),
        before,
        "reads that could find nothing"
    );
    // The server answers: the task is woken, and the read gets it.
    let n = wakes.0.load(Ordering::SeqCst);
    server.write_all(b"hello").await.unwrap();
    assert!(woken_past(&wakes, n).await, "the task was not woken");
    assert_eq!(read(&mut client, &mut cx), Poll::Ready(b"hello".to_vec()));
    assert!(reads.load(Ordering::SeqCst) > before);
    // Waiting again: one read finds nothing, the next ones are skipped.
    assert!(read(&mut client, &mut cx).is_pending());
    let waiting = reads.load(Ordering::SeqCst);
    assert!(read(&mut client, &mut cx).is_pending());
    assert_eq!(reads.load(Ordering::SeqCst), waiting);
    // A write is a TLS call that may change what a read finds: the next read goes to
    // OpenSSL again.
    let sent = Pin::new(&mut client).poll_write(&mut cx, b"ping");
    assert!(matches!(sent, Poll::Ready(Ok(4))), "{sent:?}");
    assert!(read(&mut client, &mut cx).is_pending());
    assert_eq!(reads.load(Ordering::SeqCst), waiting + 1);
    let mut got = [0u8; 4];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    // The server closes: the read sees the end.
    let n = wakes.0.load(Ordering::SeqCst);
    server.shutdown().await.unwrap();
    assert!(
        woken_past(&wakes, n).await,
        "the task was not woken for the close"
    );
    assert_eq!(read(&mut client, &mut cx), Poll::Ready(Vec::new()));
}

// ---------------------------------------------------------------------------------------
// Review: hostile upstream over real TCP, hyper driving, connection moved between tasks
// and runtimes.
// ---------------------------------------------------------------------------------------
#[allow(unsafe_code)]
mod hostile {
    use super::*;
    use std::future::Future;
    use std::io::{Read as _, Write as _};
    use std::os::raw::c_int;
    use std::time::Instant;

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use openssl::ssl::{SslContextBuilder, SslStream as BlockingSsl, SslVersion};

    extern "C" {
        fn SSL_key_update(s: *mut openssl_sys::SSL, t: c_int) -> c_int;
        fn SSL_renegotiate(s: *mut openssl_sys::SSL) -> c_int;
        fn SSL_new_session_ticket(s: *mut openssl_sys::SSL) -> c_int;
    }
    fn raw(s: &openssl::ssl::SslRef) -> *mut openssl_sys::SSL {
        s as *const _ as *mut _
    }

    /// Writes at most a few bytes per call (one TCP segment each, nodelay), sometimes
    /// pausing: records arrive split across many segments.
    #[derive(Debug)]
    struct Dribble {
        tcp: std::net::TcpStream,
        seed: u64,
    }
    impl Dribble {
        fn next(&mut self) -> u64 {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            self.seed
        }
    }
    impl std::io::Read for Dribble {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.tcp.read(b)
        }
    }
    impl std::io::Write for Dribble {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let r = self.next();
            let n = b.len().min(1 + (r % 9) as usize);
            if r % 5 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
            self.tcp.write(&b[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            self.tcp.flush()
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum End {
        CloseNotify,
        Rst,
        HalfClose,
    }

    fn read_head(s: &mut BlockingSsl<Dribble>) -> bool {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(1) => got.push(b[0]),
                _ => return false,
            }
        }
        true
    }

    /// One odd thing between records, picked by `k`: a KeyUpdate that asks for one back or a
    /// NewSessionTicket (TLS 1.3), a renegotiation (TLS 1.2), or nothing.
    fn odd(s: &mut BlockingSsl<Dribble>, tls12: bool, k: u64) {
        let raw = raw(s.ssl());
        // Safety: `raw` is the live SSL of `s`, used on this thread only.
        let ok = unsafe {
            match k % 4 {
                0 if !tls12 => SSL_key_update(raw, 1),
                1 if !tls12 => SSL_new_session_ticket(raw),
                2 if tls12 => SSL_renegotiate(raw),
                _ => return,
            }
        };
        assert_eq!(ok, 1);
        s.do_handshake().unwrap();
    }

    /// Ends the connection as `end` says (`s` is dropped, closing the socket, at the end).
    fn finish(mut s: BlockingSsl<Dribble>, end: End, fd: std::os::fd::RawFd) {
        match end {
            End::CloseNotify => {
                let _ = s.shutdown();
            }
            End::Rst => unsafe {
                let l = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &l as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as u32,
                );
            },
            End::HalfClose => {
                let _ = s.get_ref().tcp.shutdown(std::net::Shutdown::Write);
                // Keep the socket open (half-closed) a while.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }

    /// A blocking OpenSSL server that answers `n` requests, doing something odd on each.
    fn server(tls12: bool, n: usize, end: End, seed: u64) -> (u16, std::thread::JoinHandle<()>) {
        let pki = TestPki::shared();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            tcp.set_nodelay(true).unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            let mut b = SslContextBuilder::new(SslMethod::tls_server()).unwrap();
            b.set_certificate(&pki.localhost.cert).unwrap();
            b.set_private_key(&pki.localhost.key).unwrap();
            if tls12 {
                b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
            }
            let ctx = b.build();
            let mut s = openssl::ssl::Ssl::new(&ctx)
                .unwrap()
                .accept(Dribble { tcp, seed })
                .unwrap();
            let mut rnd = seed | 1;
            for i in 0..n {
                if !read_head(&mut s) {
                    panic!("server: request {i} not read");
                }
                rnd ^= rnd << 13;
                rnd ^= rnd >> 7;
                rnd ^= rnd << 17;
                // Let the client park on its read first, sometimes.
                if rnd % 3 == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                }
                let body = vec![b'x'; if i % 4 == 3 { 40_000 } else { 100 }];
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                odd(&mut s, tls12, rnd >> 3);
                s.write_all(head.as_bytes()).unwrap();
                s.flush().unwrap();
                if rnd % 2 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                // Mid-body: KeyUpdate / ticket (1.3), HelloRequest (1.2).
                let (a, z) = body.split_at(body.len() / 2);
                s.write_all(a).unwrap();
                odd(&mut s, tls12, rnd >> 7);
                s.write_all(z).unwrap();
            }
            if tls12 {
                let r = unsafe { openssl_sys::SSL_ctrl(raw(s.ssl()), 12, 0, std::ptr::null_mut()) };
                assert!(r > 0, "no renegotiation happened");
            }
            finish(s, end, fd);
        });
        (port, h)
    }

    type Stream = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
    type Conn = hyper::client::conn::http1::Connection<Stream, Empty<Bytes>>;

    async fn client(port: u16) -> Stream {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut s = SslStream::new(
            client_ssl(),
            ReadWatch::new(TokioIo::new(TokioIo::new(tcp)), Arc::default()),
        )
        .unwrap();
        Pin::new(&mut s).connect().await.unwrap();
        https(s)
    }

    /// Drives `conn` until `handoff` fires (then hands it back) or it ends.
    async fn drive(
        mut conn: Pin<Box<Conn>>,
        handoff: tokio::sync::oneshot::Receiver<()>,
    ) -> Option<Pin<Box<Conn>>> {
        tokio::select! {
            _r = conn.as_mut() => None,
            _ = handoff => Some(conn),
        }
    }

    async fn scenario(tls12: bool, n: usize, end: End, seed: u64, other: &tokio::runtime::Handle) {
        let skips = SKIPS.load(Ordering::Relaxed);
        let (port, server) = server(tls12, n, end, seed);
        let stream = client(port).await;
        let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(stream)
            .await
            .unwrap();
        let mut conn = Box::pin(conn);
        for i in 0..n {
            let (tx, rx) = tokio::sync::oneshot::channel();
            // Alternate the runtime that drives the connection (as a parked connection
            // taken by another worker).
            let task = if i % 2 == 0 {
                tokio::spawn(drive(conn, rx))
            } else {
                other.spawn(drive(conn, rx))
            };
            let t0 = Instant::now();
            let got = tokio::time::timeout(Duration::from_secs(10), async {
                send.ready().await.unwrap();
                let req = hyper::Request::get("/")
                    .header("host", "localhost")
                    .body(Empty::new())
                    .unwrap();
                let res = send.send_request(req).await.unwrap();
                res.into_body().collect().await.unwrap().to_bytes().len()
            })
            .await;
            let len = got.unwrap_or_else(|_| {
                panic!(
                    "request {i} hung (tls12 {tls12}, seed {seed}, {:?})",
                    t0.elapsed()
                )
            });
            assert_eq!(len, if i % 4 == 3 { 40_000 } else { 100 });
            let _ = tx.send(());
            let Some(c) = task.await.unwrap() else {
                assert_eq!(i, n - 1, "connection ended early");
                server.join().unwrap();
                return;
            };
            conn = c;
            if i == n - 1 {
                break;
            }
            // As the pool's `alive`: one poll with a noop waker.
            let mut cx = Context::from_waker(Waker::noop());
            assert!(conn.as_mut().poll(&mut cx).is_pending(), "request {i}");
        }
        // The server ends the connection: the driven connection sees it (no hang).
        assert!(
            SKIPS.load(Ordering::Relaxed) > skips,
            "the skip was never taken"
        );
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        let r = ended.unwrap_or_else(|_| {
            panic!("the end ({end:?}) was not seen (tls12 {tls12}, seed {seed})")
        });
        let _ = r; // Ok for a clean close, an error for RST
        server.join().unwrap();
    }

    fn other_runtime() -> tokio::runtime::Handle {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let h = rt.handle().clone();
        std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
        h
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_upstream_tls13_key_updates_tickets_split_records() {
        let other = other_runtime();
        for seed in 1..=6u64 {
            let end = [End::CloseNotify, End::Rst, End::HalfClose][(seed % 3) as usize];
            scenario(
                false,
                12,
                end,
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                &other,
            )
            .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_upstream_tls12_renegotiation_split_records() {
        let other = other_runtime();
        for seed in 1..=6u64 {
            let end = [End::CloseNotify, End::Rst, End::HalfClose][(seed % 3) as usize];
            scenario(
                true,
                12,
                end,
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                &other,
            )
            .await;
        }
    }
}
