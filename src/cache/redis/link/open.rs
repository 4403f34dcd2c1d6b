//! Opening the link: the URL parsed, the connection built (lazily) in a runtime of its own on a
//! background thread, and a short wait for the first heartbeat.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo};
use tokio::sync::{broadcast, mpsc};

use super::{publish_connected, Keys, Link, Op, QUEUE, WRITE_TIMEOUT};
use crate::cache::check::Rules;
use crate::cache::redis::RedisOptions;
use crate::cache::MemoryStore;
use crate::error::Error;
use crate::redact::url as redact;

/// Parses the URL, builds the connection (lazily: no I/O yet) inside a runtime of its own on
/// a background thread, and waits a little for the first heartbeat.
pub(crate) fn start(
    options: RedisOptions,
    rules: Rules,
    memory: MemoryStore,
) -> Result<(Arc<Link>, mpsc::Sender<Op>), Error> {
    let shown = redact(&options.url);
    let bad = |e: &dyn std::fmt::Display| {
        Error::Config(format!(
            "bad Redis URL {shown}: {e}; expected redis://[user][:password@]host[:port][/db] \
             or rediss:// for TLS"
        ))
    };
    let info = options
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| bad(&e))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings)).map_err(|e| bad(&e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the Redis runtime: {e}")))?;
    let (push_tx, push_rx) = mpsc::channel::<PushInfo>(QUEUE);
    let config = ConnectionManagerConfig::new()
        .set_push_sender(move |info: PushInfo| push_tx.try_send(info))
        .set_automatic_resubscription()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(WRITE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let conn = {
        let _in_runtime = runtime.enter();
        ConnectionManager::new_lazy_with_config(client, config).map_err(|e| bad(&e))?
    };
    let prefix = format!("{}:{}", options.namespace, rules.fingerprint());
    let link = Arc::new(Link {
        conn,
        keys: Keys {
            channel: format!("{prefix}:events"),
            prefix,
        },
        rules: RwLock::new(Arc::new(rules)),
        memory,
        shown,
        me: instance_name(),
        options,
        up: AtomicBool::new(false),
        slow_until: AtomicU64::new(0),
        born: std::time::Instant::now(),
        notes: broadcast::channel(QUEUE).0,
        counters: Default::default(),
    });
    // Down until the first heartbeat answers: shown from the start.
    publish_connected();
    let (ops_tx, ops_rx) = mpsc::channel(QUEUE);
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let bg = Arc::clone(&link);
    std::thread::Builder::new()
        .name("tls-fallback-redis".into())
        .spawn(move || runtime.block_on(bg.run(ops_rx, push_rx, first_tx)))
        .map_err(|e| Error::Config(format!("cannot start the Redis thread: {e}")))?;
    let _ = first_rx.recv_timeout(Duration::from_millis(1500));
    Ok((link, ops_tx))
}

/// A name no other instance uses: host, process and a random part.
fn instance_name() -> String {
    let mut random = [0u8; 8];
    let _ = openssl::rand::rand_bytes(&mut random);
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}/{}/{hex}", std::process::id())
}
