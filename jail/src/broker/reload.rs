//! SIGHUP: read the policy again and move the running shares to it.
//!
//! An invalid file changes nothing. Otherwise, matching shares by tag:
//! 1. removed shares: the socket is removed at once (so a new share may take its path) and the
//!    worker is stopped;
//! 2. changed shares: a socket that moved is released likewise and the new one bound; the
//!    worker is stopped and the new settings start when it has ended;
//! 3. added shares: bound and started; one that cannot start is logged and left out, so the
//!    next SIGHUP tries it again;
//! 4. unchanged shares keep their worker; one that was down is started again.
//!
//! Sockets are released before any is bound, so two shares may even swap sockets.

use std::collections::HashMap;
use std::time::Instant;

use log::{error, info};

use super::socket::BoundSocket;
use super::supervisor::{notify, Down, Supervisor};
use crate::policy::{self, ShareConfig};

impl Supervisor {
    pub(super) fn reload(&mut self) {
        info!("SIGHUP: reloading {}", self.file.display());
        let policy = match policy::load(&self.file) {
            Ok(policy) => policy,
            Err(e) => {
                error!("{e}");
                error!("SIGHUP: the policy was not reloaded; the running shares are unchanged");
                return;
            }
        };
        notify("RELOADING=1");
        if let Err(e) = super::supervisor::ensure_runtime_dir(&policy.broker.runtime_dir) {
            error!("{e}");
        }
        log::set_max_level(policy.broker.log_level);
        self.broker = policy.broker;
        let mut wanted: HashMap<String, ShareConfig> = policy
            .shares
            .iter()
            .map(|s| (s.tag.clone(), s.clone()))
            .collect();
        let now = Instant::now();

        // 1. Removed shares.
        let mut kept = Vec::new();
        for mut share in std::mem::take(&mut self.shares) {
            if wanted.contains_key(&share.config.tag) {
                kept.push(share);
                continue;
            }
            info!(
                "share {:?}: removed from the policy; stopping it",
                share.config.tag
            );
            if let Some(socket) = share.socket.take() {
                socket.remove();
            }
            if let Some(mut child) = share.worker.take() {
                child.stop(now);
                self.retiring.push(child);
            }
        }
        self.shares = kept;

        // 2a. Changed shares release a socket that moved.
        for share in &mut self.shares {
            let new = wanted.get(&share.config.tag);
            if new.is_some_and(|n| n.socket != share.config.socket) {
                if let Some(socket) = share.socket.take() {
                    socket.remove();
                }
            }
        }

        // 2b. Changed shares bind their new socket and restart; unchanged ones revive if down.
        for i in 0..self.shares.len() {
            let Some(new) = wanted.remove(&self.shares[i].config.tag) else {
                continue;
            };
            let share = &mut self.shares[i];
            if new == share.config {
                if share.down.is_some() {
                    info!("share {:?}: was down; starting it again", new.tag);
                    if share.socket.is_none() {
                        match BoundSocket::bind(&new.socket) {
                            Ok(socket) => share.socket = Some(socket),
                            Err(e) => {
                                error!("share {:?}: {e}; the share stays down", new.tag);
                                continue;
                            }
                        }
                    }
                    share.tracker.reset();
                    self.start_worker(i);
                }
                continue;
            }
            info!("share {:?}: settings changed; restarting it", new.tag);
            if share.socket.is_none() {
                match BoundSocket::bind(&new.socket) {
                    Ok(socket) => share.socket = Some(socket),
                    Err(e) => {
                        error!("share {:?}: {e}; the share stays down", new.tag);
                        if let Some(child) = &mut share.worker {
                            child.stop(now);
                        }
                        share.pending = None;
                        share.restart_at = None;
                        share.config = new;
                        share.down = Some(Down::Failed(e.to_string()));
                        continue;
                    }
                }
            }
            share.tracker.reset();
            share.restart_at = None;
            match &mut share.worker {
                Some(child) => {
                    child.stop(now);
                    share.pending = Some(new);
                }
                None => {
                    share.config = new;
                    self.start_worker(i);
                }
            }
        }

        // 3. Added shares, in policy order.
        for config in policy.shares {
            if !wanted.contains_key(&config.tag) {
                continue;
            }
            let tag = config.tag.clone();
            match self.add_share(config) {
                Ok(()) => info!("share {tag:?}: added"),
                Err(e) => error!("{e}; the share was not added (a later SIGHUP retries)"),
            }
        }
        notify("READY=1");
    }
}
