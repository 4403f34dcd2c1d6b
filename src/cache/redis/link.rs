//! The Redis side of [`super::RedisStore`]: the connection (redis-rs's connection manager over
//! RESP3, which reconnects and resubscribes by itself), the background loop (heartbeat,
//! subscription, write queue, received messages), the bounded read and the fleet lock.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use super::RedisOptions;
use crate::cache::check::{self, Invalid, Rules, MAX_DECISION_BYTES};
use crate::cache::{unix_ms, Decision, DecisionStore, MemoryStore, SharedStats};
use crate::policy::HostKey;
use crate::stats::metric_names as names;

mod open;

pub(crate) use open::start;

/// How often the link checks Redis (and notices it is back).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// The bound on a write or a heartbeat (off the connection path).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pending writes; past it a write is dropped (and counted as an error).
const QUEUE: usize = 1024;
/// The largest message accepted from the channel: one decision and its envelope.
const MAX_MESSAGE_BYTES: usize = MAX_DECISION_BYTES + 1024;
/// Deletes the lock only if this instance still holds it.
const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

/// A write for the background loop.
pub(crate) enum Op {
    Learn(HostKey, Arc<Decision>),
    /// Forget what was learned up to this date (ms).
    Forget(HostKey, u64),
    Release(HostKey),
    /// Answers once every write queued before it is done.
    Flush(std::sync::mpsc::Sender<()>),
}

/// The key layout: `<namespace>:<fingerprint>:d:<host>:<port>` for decisions,
/// `...:lock:<host>:<port>` for the fleet lock, `...:events` for the channel.
pub(crate) struct Keys {
    pub(crate) prefix: String,
    pub(crate) channel: String,
}

impl Keys {
    pub(crate) fn decision(&self, key: &HostKey) -> String {
        format!("{}:d:{}:{}", self.prefix, key.host, key.port)
    }
    fn lock(&self, key: &HostKey) -> String {
        format!("{}:lock:{}:{}", self.prefix, key.host, key.port)
    }
}

/// One message on the channel.
#[derive(Serialize, Deserialize)]
struct Message {
    /// The instance that sent it (its own messages come back to it).
    from: String,
    host: String,
    port: u16,
    #[serde(flatten)]
    event: Event,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Event {
    Learn { decision: Decision },
    Forget { before_ms: u64 },
    Done,
}

/// The counters of [`SharedStats`], also sent to the `metrics` facade.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Read,
    Published,
    Received,
    Dropped,
    Errors,
}

impl Counter {
    fn metric(self) -> &'static str {
        match self {
            Counter::Read => names::REDIS_READ,
            Counter::Published => names::REDIS_PUBLISHED,
            Counter::Received => names::REDIS_RECEIVED,
            Counter::Dropped => names::REDIS_DROPPED_INVALID,
            Counter::Errors => names::REDIS_ERRORS,
        }
    }
}

/// How long first contacts walk alone, without asking Redis, after a request to it ran out of
/// the read timeout.
pub(crate) const SLOW_FOR: Duration = Duration::from_secs(1);

/// Everything the store and its background loop share.
pub(crate) struct Link {
    conn: ConnectionManager,
    /// What values are checked against; replaced when a layer rebuilt by a reload keeps this
    /// store ([`Link::set_rules`]). The key prefix stays: it depends on the ladder alone.
    rules: RwLock<Arc<Rules>>,
    pub(crate) keys: Keys,
    pub(crate) memory: MemoryStore,
    /// The URL as logs may show it.
    pub(crate) shown: String,
    /// This instance's name on the channel and in locks.
    me: String,
    options: RedisOptions,
    /// The last heartbeat worked.
    pub(crate) up: AtomicBool,
    /// Until when (ms since `born`, a monotonic clock: a wall clock stepped back would stop
    /// the asking for as long) Redis counts as slow: a read or lock request that ran out of the
    /// read timeout makes first contacts walk alone, without asking, for [`SLOW_FOR`], so a
    /// first contact adds at most one read timeout, not one for the read and one for the lock
    /// (and not one each until the heartbeat marks Redis down).
    slow_until: AtomicU64,
    /// When this link was made: the origin of `slow_until`.
    born: std::time::Instant,
    /// A host concluded elsewhere (learned, forgotten, lock released): for fleet waiters.
    notes: broadcast::Sender<HostKey>,
    counters: [AtomicU64; 5],
}

/// The links of this process whose last heartbeat worked: the `tls_fallback_redis_connected`
/// gauge (1 or 0 with one store).
static CONNECTED: AtomicUsize = AtomicUsize::new(0);

fn publish_connected() {
    let up = CONNECTED.load(Ordering::Acquire);
    metrics::gauge!(names::REDIS_CONNECTED).set(up as f64);
}

impl Link {
    /// The rules values are checked against now.
    pub(crate) fn rules(&self) -> Arc<Rules> {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&rules)
    }

    /// Checks values against `rules` from now on (a layer rebuilt with another policy or TTL
    /// keeps this store). `rules` must be for the same ladder: the key prefix is not changed.
    pub(crate) fn set_rules(&self, rules: Rules) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }

    pub(crate) fn count(&self, c: Counter) {
        self.counters[c as usize].fetch_add(1, Ordering::Relaxed);
        metrics::counter!(c.metric()).increment(1);
    }

    pub(crate) fn stats(&self) -> SharedStats {
        let get = |c: Counter| self.counters[c as usize].load(Ordering::Relaxed);
        SharedStats {
            read: get(Counter::Read),
            published: get(Counter::Published),
            received: get(Counter::Received),
            dropped_invalid: get(Counter::Dropped),
            errors: get(Counter::Errors),
            connected: self.up.load(Ordering::Acquire),
        }
    }

    /// A value from Redis that failed the gate: dropped, with a WARN unless merely expired.
    fn refuse(&self, key: &str, via: &str, why: &Invalid) {
        if why.is_suspicious() {
            self.count(Counter::Dropped);
            tracing::warn!(key, via, %why, "shared TLS fallback decision from Redis ignored");
        } else {
            tracing::debug!(key, via, %why, "shared TLS fallback decision from Redis ignored");
        }
    }

    /// The background loop: heartbeat, writes in order, received messages. Ends when the
    /// store (the last sender of writes) is gone.
    async fn run(
        self: Arc<Self>,
        mut ops: mpsc::Receiver<Op>,
        mut pushes: mpsc::Receiver<PushInfo>,
        first: std::sync::mpsc::Sender<()>,
    ) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = Some(first);
        let mut warned = false;
        loop {
            tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => self.write(op).await,
                    None => {
                        // The store is gone: its link no longer counts as connected.
                        self.set_up(false);
                        return;
                    }
                },
                Some(push) = pushes.recv() => self.receive(push),
                _ = tick.tick() => {
                    self.heartbeat(&mut warned).await;
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
    }

    /// Checks Redis; on the way back up, subscribes again (the connection manager also
    /// resubscribes by itself; a second SUBSCRIBE is harmless). Logs one WARN per outage.
    async fn heartbeat(&self, warned: &mut bool) {
        let mut conn = self.conn.clone();
        let ping = redis::cmd("PING");
        let alive = tokio::time::timeout(WRITE_TIMEOUT, ping.query_async::<Value>(&mut conn))
            .await
            .map_err(|_| "no answer within a second".to_string())
            .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()));
        let alive = match alive {
            Ok(()) if !self.up.load(Ordering::Acquire) => {
                let sub = conn.subscribe(&self.keys.channel);
                match tokio::time::timeout(WRITE_TIMEOUT, sub).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("cannot subscribe: {e}")),
                    Err(_) => Err("cannot subscribe: no answer within a second".into()),
                }
            }
            other => other,
        };
        match alive {
            Ok(()) => {
                if self.set_up(true) {
                    tracing::info!(redis = %self.shown, prefix = %self.keys.prefix,
                        "Redis reachable: sharing TLS fallback decisions");
                }
                *warned = false;
            }
            Err(e) => {
                self.set_up(false);
                if !*warned {
                    *warned = true;
                    self.count(Counter::Errors);
                    tracing::warn!(redis = %self.shown, error = %e,
                        "Redis unreachable: learning alone, reconnecting in the background");
                }
            }
        }
    }

    /// Marks the link up or down (true if that changed it) and publishes the process's count
    /// of links up, on every heartbeat: a recorder installed after the store was opened (the
    /// proxy's) shows the right value within one heartbeat.
    fn set_up(&self, up: bool) -> bool {
        let changed = self.up.swap(up, Ordering::AcqRel) != up;
        match (changed, up) {
            (true, true) => CONNECTED.fetch_add(1, Ordering::AcqRel),
            (true, false) => CONNECTED.fetch_sub(1, Ordering::AcqRel),
            (false, _) => 0,
        };
        publish_connected();
        changed
    }

    /// One write: the decision with its remaining lifetime, a forget, a lock release; each
    /// published on the channel in the same round trip.
    async fn write(&self, op: Op) {
        if !self.up.load(Ordering::Acquire) && !matches!(op, Op::Flush(_)) {
            self.count(Counter::Errors);
            return;
        }
        let mut pipe = redis::pipe();
        let (key, event) = match op {
            Op::Learn(key, d) => {
                let age = unix_ms().saturating_sub(d.learned_at_ms);
                let left = self.rules().ttl.as_millis().saturating_sub(u128::from(age));
                let Ok(value) = serde_json::to_vec(&*d) else {
                    return;
                };
                if left == 0 {
                    return;
                }
                let px = u64::try_from(left).unwrap_or(u64::MAX);
                pipe.cmd("SET")
                    .arg(self.keys.decision(&key))
                    .arg(value)
                    .arg("PX")
                    .arg(px);
                (key, Event::Learn { decision: copy(&d) })
            }
            Op::Forget(key, before_ms) => {
                pipe.cmd("DEL").arg(self.keys.decision(&key));
                (key, Event::Forget { before_ms })
            }
            Op::Release(key) => {
                pipe.cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(self.keys.lock(&key))
                    .arg(&self.me);
                (key, Event::Done)
            }
            Op::Flush(done) => {
                let _ = done.send(());
                return;
            }
        };
        let message = Message {
            from: self.me.clone(),
            host: key.host.to_string(),
            port: key.port,
            event,
        };
        let Ok(payload) = serde_json::to_vec(&message) else {
            return;
        };
        pipe.cmd("PUBLISH").arg(&self.keys.channel).arg(payload);
        let mut conn = self.conn.clone();
        match tokio::time::timeout(WRITE_TIMEOUT, pipe.exec_async(&mut conn)).await {
            Ok(Ok(())) => self.count(Counter::Published),
            Ok(Err(e)) => self.write_failed(&key, &e.to_string()),
            Err(_) => self.write_failed(&key, "no answer within a second"),
        }
    }

    fn write_failed(&self, key: &HostKey, error: &str) {
        self.count(Counter::Errors);
        tracing::debug!(host = %key, error, "a shared write to Redis failed");
    }

    /// A message from the channel: checked, then applied to the local store (never written
    /// back: that would echo around the fleet).
    fn receive(&self, push: PushInfo) {
        if push.kind != PushKind::Message {
            return;
        }
        let Some(Value::BulkString(payload)) = push.data.get(1) else {
            return;
        };
        let via = self.keys.channel.as_str();
        if payload.len() > MAX_MESSAGE_BYTES {
            return self.refuse(via, "publish", &Invalid::TooLarge(payload.len()));
        }
        let message: Message = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => return self.refuse(via, "publish", &Invalid::Malformed(e.to_string())),
        };
        if message.from == self.me {
            return;
        }
        let key = HostKey::new(&message.host, message.port);
        match message.event {
            Event::Learn { decision } => {
                if let Err(why) = self.rules().check(&key, &decision, unix_ms()) {
                    return self.refuse(&self.keys.decision(&key), "publish", &why);
                }
                // A local decision newer than the one announced stays, unless it is dated in
                // the future (a forged date must not block the fleet's real decisions).
                let now = unix_ms();
                let decision = self.as_local(decision);
                // A decision of its own for the same rung, already confirmed here, stays too
                // (a reshape is not made provisional again).
                let keep_here = self.memory.get(&key).is_some_and(|d| {
                    !d.provisional
                        && ((d.learned_at_ms > decision.learned_at_ms && d.learned_at_ms <= now)
                            || (decision.provisional && d.rung == decision.rung))
                });
                if !keep_here {
                    self.memory.put(key.clone(), Arc::new(decision));
                }
                self.count(Counter::Received);
            }
            Event::Forget { before_ms } => {
                // An entry dated after the forget survives it (a newer decision), but not one
                // dated in the future of this clock: the gate lets such dates in (clock skew),
                // and a forged one must not outlive a fleet-wide forget.
                let now = unix_ms();
                let survives = |d: &Decision| d.learned_at_ms > before_ms && d.learned_at_ms <= now;
                if self.memory.get(&key).is_some_and(|d| !survives(&d)) {
                    self.memory.remove(&key);
                }
                self.count(Counter::Received);
            }
            Event::Done => {}
        }
        let _ = self.notes.send(key);
    }

    /// A decision from another instance as this one may use it: one for a rung that only
    /// reshapes the hello (SCSV cannot vouch for it, and a Redis writer could use it to take
    /// HTTP/2 or the post-quantum key share from a healthy host) is provisional here, so this
    /// instance's next walk starts from the top and confirms it, or finds the rung above works.
    fn as_local(&self, mut d: Decision) -> Decision {
        d.source = crate::cache::DecisionSource::Redis;
        if self.rules().reshapes(d.rung) && !d.provisional {
            d.into_provisional()
        } else {
            d
        }
    }

    /// Whether a first contact asks Redis: it is up, and no request ran out of time lately.
    fn usable(&self) -> bool {
        self.up.load(Ordering::Acquire) && self.age_ms() >= self.slow_until.load(Ordering::Relaxed)
    }

    /// Milliseconds since this link was made.
    fn age_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request ran out of the read timeout: walk alone for [`SLOW_FOR`].
    fn slow(&self) {
        let until = self.age_ms().saturating_add(SLOW_FOR.as_millis() as u64);
        self.slow_until.fetch_max(until, Ordering::Relaxed);
    }

    /// On a local miss: one read bounded by the read timeout, checked by the gate, kept in
    /// the local store. Nothing when Redis is known to be down (no added latency).
    pub(crate) async fn fetch(&self, key: &HostKey) -> Option<Arc<Decision>> {
        if !self.usable() {
            return None;
        }
        let name = self.keys.decision(key);
        let mut cmd = redis::cmd("GETRANGE");
        // At most one byte more than a decision may have: a huge value is never read whole.
        cmd.arg(&name).arg(0).arg(MAX_DECISION_BYTES);
        let mut conn = self.conn.clone();
        let read = tokio::time::timeout(self.options.read_timeout, cmd.query_async(&mut conn));
        let bytes: Vec<u8> = match read.await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                self.count(Counter::Errors);
                if e.is_timeout() {
                    // The client's own response timeout, when it is the shorter one.
                    self.slow();
                }
                tracing::debug!(key = %name, error = %e, "shared decision read failed");
                return None;
            }
            Err(_) => {
                self.count(Counter::Errors);
                self.slow();
                tracing::debug!(key = %name, "shared decision read timed out; walking alone");
                return None;
            }
        };
        if bytes.is_empty() {
            return None;
        }
        let checked = check::parse(&bytes).and_then(|d| {
            self.rules().check(key, &d, unix_ms())?;
            Ok(d)
        });
        match checked {
            Ok(d) => {
                let d = Arc::new(self.as_local(d));
                self.memory.put(key.clone(), Arc::clone(&d));
                self.count(Counter::Read);
                Some(d)
            }
            Err(why) => {
                self.refuse(&name, "read", &why);
                None
            }
        }
    }

    /// Fleet-wide single flight: `Some(true)` = this instance holds the lock and walks;
    /// `Some(false)` = another instance concluded while we waited; `None` = walk alone
    /// (Redis down or slow, or nothing came within `wait`).
    pub(crate) async fn flight(&self, key: &HostKey, wait: Duration) -> Option<bool> {
        if !self.usable() {
            return None;
        }
        // Listen before asking: a release right after our failed SET is not missed.
        let mut notes = self.notes.subscribe();
        let px = u64::try_from(self.options.lock_time.as_millis()).unwrap_or(u64::MAX);
        let mut set = redis::cmd("SET");
        set.arg(self.keys.lock(key))
            .arg(&self.me)
            .arg("NX")
            .arg("PX")
            .arg(px.max(1));
        let mut conn = self.conn.clone();
        let taken = tokio::time::timeout(self.options.read_timeout, set.query_async(&mut conn));
        match taken.await {
            Ok(Ok(Some::<String>(_))) => return Some(true),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                self.count(Counter::Errors);
                if e.is_timeout() {
                    self.slow();
                }
                return None;
            }
            Err(_) => {
                self.count(Counter::Errors);
                self.slow();
                return None;
            }
        }
        // Past the lock time the lock is gone anyway (a lost holder): walk.
        let deadline = tokio::time::Instant::now() + wait.min(self.options.lock_time);
        loop {
            match tokio::time::timeout_at(deadline, notes.recv()).await {
                Ok(Ok(k)) if &k == key => return Some(false),
                Ok(Ok(_)) => {}
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    if self.memory.get(key).is_some() {
                        return Some(false);
                    }
                }
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return None,
            }
        }
    }
}

/// A plain copy of a decision for a message (the use counter is local).
fn copy(d: &Decision) -> Decision {
    Decision {
        rung: d.rung,
        profile: Arc::clone(&d.profile),
        reason: d.reason.clone(),
        learned_at_ms: d.learned_at_ms,
        uses: AtomicU64::new(0),
        provisional: false,
        source: d.source,
    }
}
