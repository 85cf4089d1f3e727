//! Certificate reload without a restart: the `ringway-tls` thread re-reads every certificate and
//! key file once a second and, when one changed, rebuilds that listener's [`ListenerTls`].
//!
//! Files are compared by content, not mtime, so a rename over the file, an in-place rewrite and
//! a symlink swap (Kubernetes secrets) are all seen. A rebuild that fails (half-written file, a
//! key that does not match the new certificate yet) is logged and the listener keeps serving the
//! previous certificates; the next change is tried again. New snapshots reach the workers over one
//! channel each, like membership snapshots; a worker adopts them at its housekeeping tick, so
//! handshakes never wait on this thread and never see a half-built configuration.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use super::server::{chain_config, ChainResumption, ListenerTls};
use crate::config::{Bootstrap, CodecType, DataSource, DownstreamTls};

/// How often certificate files are re-read.
pub const POLL: Duration = Duration::from_secs(1);

/// Every listener's TLS, indexed like `Bootstrap::listeners` (`None` for plain listeners).
pub type ListenerTlsSet = Arc<Vec<Option<Arc<ListenerTls>>>>;

/// A worker's view of the listeners' TLS: the current set and the channel new sets arrive on.
pub struct TlsWatch {
    rx: Option<Receiver<ListenerTlsSet>>,
    current: ListenerTlsSet,
}

impl TlsWatch {
    /// Adopts the newest published set, if one arrived. Returns true on change.
    pub fn refresh(&mut self) -> bool {
        let mut changed = false;
        if let Some(rx) = &self.rx {
            while let Ok(set) = rx.try_recv() {
                self.current = set;
                changed = true;
            }
        }
        changed
    }

    /// The TLS of listener `i`, for one handshake.
    pub fn listener(&self, i: usize) -> Option<Arc<ListenerTls>> {
        self.current.get(i).cloned().flatten()
    }
}

struct ListenerState {
    name: String,
    tls: DownstreamTls,
    codec: CodecType,
    resumption: Vec<ChainResumption>,
    /// Every certificate and key file of the listener with the content last seen.
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl ListenerState {
    fn build(&self) -> Result<ListenerTls, String> {
        let mut configs = Vec::with_capacity(self.tls.chains.len());
        for (i, (chain, resumption)) in self.tls.chains.iter().zip(&self.resumption).enumerate() {
            let mut keys = Vec::with_capacity(chain.context.certificates.len());
            for (j, c) in chain.context.certificates.iter().enumerate() {
                let key = super::load_certificate(c)
                    .map_err(|e| format!("filter_chains[{i}] tls_certificates[{j}]: {e}"))?;
                keys.push(Arc::new(key));
            }
            configs.push(chain_config(&chain.context, self.codec, keys, resumption)?);
        }
        Ok(ListenerTls::new(&self.tls, configs))
    }

    /// Re-reads the files; true when any changed since the last look.
    fn files_changed(&mut self) -> bool {
        let mut changed = false;
        for (path, seen) in &mut self.files {
            let now = std::fs::read(&*path).ok();
            if now != *seen {
                *seen = now;
                changed = true;
            }
        }
        changed
    }
}

/// Builds the listeners' TLS at start-up and keeps it current afterwards.
pub struct ServerTlsBuilder {
    listeners: Vec<Option<ListenerState>>,
    current: ListenerTlsSet,
    senders: Vec<Sender<ListenerTlsSet>>,
}

impl ServerTlsBuilder {
    /// Builds every TLS listener; an error names the listener (start-up then fails).
    pub fn new(cfg: &Bootstrap) -> Result<ServerTlsBuilder, String> {
        let mut listeners = Vec::with_capacity(cfg.listeners.len());
        let mut current = Vec::with_capacity(cfg.listeners.len());
        for l in &cfg.listeners {
            let Some(tls) = &l.tls else {
                listeners.push(None);
                current.push(None);
                continue;
            };
            let mut resumption = Vec::with_capacity(tls.chains.len());
            let mut files = Vec::new();
            for chain in &tls.chains {
                resumption.push(ChainResumption::new(&chain.context)?);
                for c in &chain.context.certificates {
                    for src in [&c.certificate_chain, &c.private_key] {
                        if let DataSource::File(p) = src {
                            files.push((p.clone(), std::fs::read(p).ok()));
                        }
                    }
                }
            }
            let state = ListenerState {
                name: l.name.clone(),
                tls: tls.clone(),
                codec: l.hcm.codec_type,
                resumption,
                files,
            };
            let built = state
                .build()
                .map_err(|e| format!("listener '{}': {e}", l.name))?;
            current.push(Some(Arc::new(built)));
            listeners.push(Some(state));
        }
        Ok(ServerTlsBuilder {
            listeners,
            current: Arc::new(current),
            senders: Vec::new(),
        })
    }

    /// A watch for one worker, starting from the current set.
    pub fn subscribe(&mut self) -> TlsWatch {
        let (tx, rx) = channel();
        self.senders.push(tx);
        TlsWatch {
            rx: Some(rx),
            current: self.current.clone(),
        }
    }

    /// The current set, for a consumer that does not follow reloads.
    pub fn current(&self) -> ListenerTlsSet {
        self.current.clone()
    }

    fn watches_files(&self) -> bool {
        self.listeners.iter().flatten().any(|l| !l.files.is_empty())
    }

    /// Checks the files once; rebuilds and publishes what changed. True when a set was published.
    pub fn poll(&mut self) -> bool {
        let mut next: Option<Vec<Option<Arc<ListenerTls>>>> = None;
        for (i, state) in self.listeners.iter_mut().enumerate() {
            let Some(state) = state else { continue };
            if !state.files_changed() {
                continue;
            }
            match state.build() {
                Ok(built) => {
                    info!("listener '{}': certificates reloaded", state.name);
                    let set = next.get_or_insert_with(|| self.current.to_vec());
                    if let Some(slot) = set.get_mut(i) {
                        *slot = Some(Arc::new(built));
                    }
                }
                Err(e) => error!(
                    "listener '{}': certificate reload failed, keeping the previous certificates: {e}",
                    state.name
                ),
            }
        }
        let Some(next) = next else { return false };
        self.current = Arc::new(next);
        let current = &self.current;
        self.senders.retain(|tx| tx.send(current.clone()).is_ok());
        true
    }

    /// Starts the `ringway-tls` thread when some listener reads its certificates from files.
    pub fn spawn(mut self) {
        if !self.watches_files() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("ringway-tls".into())
            .spawn(move || loop {
                std::thread::sleep(POLL);
                self.poll();
            });
        if let Err(e) = spawned {
            error!("cannot start the certificate reload thread: {e}; certificates will not be reloaded");
        }
    }
}
