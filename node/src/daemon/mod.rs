//! `fraudmesh run`: wires the engine, the network and the API together, writes
//! `node.json` for the CLI, and shuts down gracefully on SIGTERM or SIGINT.

pub mod config;
pub mod dir;

use crate::enforce::{runner::StatusBoard, Enforcers};
use crate::engine::store::{SledStore, Store};
use crate::engine::{self, EngineConfig};
use crate::http::{self, ApiState};
use crate::metrics::Metrics;
use crate::net::{self, NetConfig, Transport};
use anyhow::Context;
use config::Settings;
use dir::{NodeDir, Runtime};
use fraudmesh::identity::Identity;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often the engine's timers run.
const TICK: Duration = Duration::from_millis(50);
/// Local envelopes waiting for the network task.
const PUBLISH_QUEUE: usize = 1024;

/// One node's moving parts without the HTTP API: engine thread, network task and the
/// engine's timer. `run` wraps one in the daemon; `fraudmesh-testnet inproc` starts
/// hundreds in one process.
pub struct Stack {
    /// The engine.
    pub engine: engine::EngineHandle,
    /// The network.
    pub net: net::NetHandle,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    enforcers: Enforcers,
    detectors: Vec<tokio::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    net_task: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
    engine_thread: std::thread::JoinHandle<()>,
}

impl Stack {
    /// Starts the engine on `store` and the network on `transport`.
    pub fn start(
        identity: Identity,
        settings: &Settings,
        store: Box<dyn Store>,
        transport: Transport,
    ) -> anyhow::Result<Self> {
        let keypair = net::keypair(&identity)?;
        let metrics = Arc::new(Metrics::new());
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (engine, engine_thread) = engine::start(
            EngineConfig {
                identity,
                policy: settings.policy.clone(),
                limits: settings.limits,
                strangers: settings.strangers.clone(),
            },
            store,
            metrics.clone(),
            publish_tx,
        )?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (net, net_task) = net::start(
            NetConfig {
                keypair,
                listen: settings.listen.clone(),
                seeds: settings.seeds.clone(),
                trusted: settings.trusted_peers.clone(),
                limits: settings.net.clone(),
                transport,
                nat: settings.nat.clone(),
            },
            engine.clone(),
            publish_rx,
            metrics.clone(),
            shutdown_rx.clone(),
        )?;
        let enforcers = settings.enforce.start(&engine, &metrics, &shutdown_rx);
        let detectors = if settings.detect.is_active() {
            crate::detect::start(
                settings.detect.clone(),
                engine.clone(),
                net.clone(),
                metrics.clone(),
                settings.default_ttl_s,
                shutdown_rx.clone(),
            )?
        } else {
            Vec::new()
        };
        let ticker = {
            let engine = engine.clone();
            let mut shutdown = shutdown_rx;
            tokio::spawn(async move {
                let mut every = tokio::time::interval(TICK);
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = every.tick() => if engine.tick().await.is_err() { break },
                    }
                }
            })
        };
        Ok(Self {
            engine,
            net,
            metrics,
            enforcers,
            detectors,
            shutdown,
            net_task,
            ticker,
            engine_thread,
        })
    }

    /// Every enforcer's state.
    pub fn enforcers(&self) -> StatusBoard {
        self.enforcers.board()
    }

    /// Stops the network, the enforcers and the timer, then waits for the engine to flush and end
    /// (once every other handle of it is gone).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.net_task.await;
        let _ = self.ticker.await;
        self.enforcers.join().await;
        for d in self.detectors {
            let _ = d.await;
        }
        drop(self.engine);
        drop(self.net);
        let thread = self.engine_thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Runs the node until SIGTERM/SIGINT.
pub async fn run(dir: NodeDir) -> anyhow::Result<()> {
    // Validate the config before creating anything in the directory.
    config::check(&dir)?;
    let identity = dir.load_or_create_identity()?;
    let token = dir.load_or_create_token()?;
    let calls_token = dir.load_or_create_calls_token()?;
    let settings = config::load_settings(&dir, identity.public())?;
    let peer_id = identity.public().peer_id();
    let store = SledStore::open(&dir.data(), settings.cache_bytes)?;
    // The call counters have a database of their own (its flush never waits for the
    // ledger's writes); earlier versions' counters in the ledger's database move there.
    let call_store = crate::calls::CallStore::open(&dir.calls_db(), Some(store.db()))?;
    let mut stack = Stack::start(identity, &settings, Box::new(store), Transport::Tcp)?;
    let (calls, calls_task) = crate::calls::start(
        settings.calls.clone(),
        settings.calls_on_error,
        call_store,
        stack.engine.clone(),
        stack.metrics.clone(),
        settings.default_ttl_s,
    )?;

    let listener = tokio::net::TcpListener::bind(settings.api)
        .await
        .with_context(|| format!("binding the API to {}", settings.api))?;
    let api_addr = listener.local_addr()?;
    let listen = stack
        .net
        .wait_listening(settings.listen.len(), Duration::from_secs(5))
        .await;
    let listen: Vec<String> = listen.iter().map(|a| format!("{a}/p2p/{peer_id}")).collect();
    dir.write_runtime(&Runtime {
        pid: std::process::id(),
        peer_id: peer_id.clone(),
        api: api_addr.to_string(),
        listen: listen.clone(),
    })?;
    tracing::info!(%peer_id, api = %api_addr, ?listen, dir = %dir.root().display(), "fraudmesh node running");

    let (audit, audit_task) = crate::audit::schedule::start(&settings.audit, stack.metrics.clone());
    let state = ApiState {
        engine: stack.engine.clone(),
        net: stack.net.clone(),
        metrics: stack.metrics.clone(),
        token_hash: http::hash_secret(&token),
        calls_token_hash: http::hash_secret(&calls_token),
        limits: settings.limits,
        default_ttl_s: settings.default_ttl_s,
        peer_id,
        started: Instant::now(),
        fault_injection: settings.fault_injection,
        bouncers: crate::http::bouncers::Bouncers::new(dir.bouncers()),
        streams: Default::default(),
        enforcers: stack.enforcers(),
        calls,
        audit,
    };
    serve_api(listener, http::router(state)).await?;

    tracing::info!("shutting down");
    // The router (and with it every handle of the call policy) is gone: its actor ends
    // after answering what it holds, then the engine stops.
    let _ = tokio::task::spawn_blocking(move || calls_task.join()).await;
    if let Some(task) = audit_task {
        task.abort();
    }
    stack.stop().await;
    dir.clear_runtime();
    tracing::info!("stopped");
    Ok(())
}

/// Serves the API until SIGTERM/SIGINT, on a thread and runtime of its own: the node's
/// runtime (the network, detection, enforcement) runs below normal priority (see
/// [`crate::priority`]), the API and the call policy at normal priority, so a call is
/// decided without waiting behind a catch-up or a flood.
async fn serve_api(listener: tokio::net::TcpListener, router: axum::Router) -> anyhow::Result<()> {
    let listener = listener.into_std().context("handing the API's socket over")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, mut done) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the API's runtime")
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        axum::serve(listener, router)
                            .with_graceful_shutdown(async {
                                let _ = stopped.await;
                            })
                            .await
                    })
                    .context("serving the API")
                });
            let _ = done_tx.send(served);
        })
        .context("starting the API's thread")?;
    let ended = |r: Result<anyhow::Result<()>, _>| r.unwrap_or_else(|_| Err(anyhow::anyhow!("the API's thread ended")));
    tokio::select! {
        r = &mut done => return ended(r),
        _ = terminated() => {}
    }
    let _ = stop.send(());
    ended(done.await)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, naming the signal.
pub async fn terminated() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
    }
}
