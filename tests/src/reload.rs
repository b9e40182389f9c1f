//! Hot reload: Envoy with its listener delivered by file-based LDS
//! (`dynamic_resources.lds_config.path_config_source` with a `watched_directory`), so a test
//! can change a filter's configuration while Envoy runs, the way a control plane or a
//! ConfigMap swap does in production.
//!
//! The bootstrap is the one [`EnvoyBuilder`] generates (same clusters, same filter entries),
//! with the listener moved out of `static_resources` into `<dir>/lds/lds.json`. Updates are
//! written to a staging directory next to it and renamed into place: the atomic move Envoy's
//! file watcher reacts to (a file edited in place can be read half-written).

use crate::{envoy_config, spawn, work_dir, Envoy, EnvoyBuilder, Filter, Upstream};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An Envoy whose listener comes from a watched LDS file.
pub struct LdsEnvoy {
    pub envoy: Envoy,
    lds_dir: PathBuf,
    staging_dir: PathBuf,
    version: u32,
    upstream_port: u16,
    clusters: Vec<Value>,
    transport_socket: Option<Value>,
    hcm_extra: serde_json::Map<String, Value>,
    route_extra: serde_json::Map<String, Value>,
}

/// What Envoy did with an LDS update, read from `listener_manager.lds.update_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdsOutcome {
    Accepted,
    Rejected,
    /// Neither counter moved within the wait.
    NoChange,
}

impl EnvoyBuilder {
    /// Start Envoy with the listener (and these builder's filters) delivered by file-based
    /// LDS instead of `static_resources`. Config files ([`EnvoyBuilder::config_file`]) are not
    /// supported here. Panics (failing the test) if Envoy does not become ready.
    pub fn start_lds(self) -> LdsEnvoy {
        match self.try_start_lds() {
            Ok(e) => e,
            Err(log) => panic!("envoy (LDS) did not start:\n{log}"),
        }
    }

    pub fn try_start_lds(self) -> Result<LdsEnvoy, String> {
        let upstream = self.upstream.clone().unwrap_or_else(Upstream::echo);
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = crate::free_port();
            let admin_port = crate::free_port();
            let mut bootstrap = envoy_config(port, admin_port, upstream.port(), &self.filters, &self.clusters, self.transport_socket.as_ref(), &self.hcm_extra, &self.route_extra);
            let listener = listener_resource(&bootstrap);
            let dir = work_dir();
            let lds_dir = dir.join("lds");
            let staging_dir = dir.join("lds-staging");
            for d in [&lds_dir, &staging_dir] {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            }
            let lds_path = lds_dir.join("lds.json");
            std::fs::write(&lds_path, discovery_response(1, listener).to_string()).map_err(|e| format!("{}: {e}", lds_path.display()))?;
            if let Some(sr) = bootstrap["static_resources"].as_object_mut() {
                sr.remove("listeners");
            }
            bootstrap["node"] = json!({"id": "e2e-lds", "cluster": "e2e"});
            bootstrap["dynamic_resources"] = json!({
                "lds_config": {
                    "resource_api_version": "V3",
                    "path_config_source": {"path": lds_path.to_string_lossy(), "watched_directory": {"path": lds_dir.to_string_lossy()}}
                }
            });
            let config_path = dir.join("envoy.json");
            let log_path = dir.join("envoy.log");
            std::fs::write(&config_path, serde_json::to_vec_pretty(&bootstrap).unwrap_or_default()).map_err(|e| format!("cannot write config: {e}"))?;
            let child = spawn(&config_path, &log_path, self.concurrency, &self.process_env).map_err(|e| format!("cannot start {}: {e}", crate::envoy_bin().display()))?;
            let mut envoy = Envoy { child, port, admin_port, log_path, config_path, upstream: upstream.clone() };
            match envoy.wait_ready().and_then(|()| wait_listening(&envoy)) {
                Ok(()) => {
                    return Ok(LdsEnvoy {
                        envoy,
                        lds_dir,
                        staging_dir,
                        version: 1,
                        upstream_port: upstream.port(),
                        clusters: self.clusters,
                        transport_socket: self.transport_socket,
                        hcm_extra: self.hcm_extra,
                        route_extra: self.route_extra,
                    })
                }
                Err(e) => {
                    last_err = e;
                    if !last_err.contains("Address already in use") {
                        return Err(last_err);
                    }
                }
            }
        }
        Err(last_err)
    }
}

/// The generated listener as an LDS resource.
fn listener_resource(bootstrap: &Value) -> Value {
    let mut l = bootstrap["static_resources"]["listeners"][0].clone();
    l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    l
}

fn discovery_response(version: u32, listener: Value) -> Value {
    json!({"version_info": version.to_string(), "resources": [listener]})
}

/// The listener answers (LDS listeners are added after `/ready` can already be 200).
fn wait_listening(e: &Envoy) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", e.port)).is_ok() && e.admin("/listeners").contains(&format!(":{}", e.port)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("the LDS listener never came up:\n{}", e.logs()))
}

impl LdsEnvoy {
    /// Replace the listener's HTTP filters (everything else unchanged) by renaming a new LDS
    /// file into the watched directory, and wait (bounded) for Envoy to accept or reject it.
    pub fn update_filters(&mut self, filters: Vec<Filter>) -> LdsOutcome {
        let listener = self.listener(&filters);
        self.write_listener(listener)
    }

    /// The listener resource for these filters (same ports, clusters and HCM settings).
    pub fn listener(&self, filters: &[Filter]) -> Value {
        let entries: Vec<Value> = filters.iter().enumerate().map(|(i, f)| f.to_envoy(&format!("{}-{i}", f.module))).collect();
        self.listener_raw(&entries)
    }

    /// Like [`LdsEnvoy::listener`] with raw `http_filters` entries.
    pub fn listener_raw(&self, filters: &[Value]) -> Value {
        let bootstrap = envoy_config(self.envoy.port, self.envoy.admin_port, self.upstream_port, filters, &self.clusters, self.transport_socket.as_ref(), &self.hcm_extra, &self.route_extra);
        listener_resource(&bootstrap)
    }

    /// Write any listener resource (e.g. with a misspelled field) and wait for the outcome.
    pub fn write_listener(&mut self, listener: Value) -> LdsOutcome {
        let accepted = self.lds_counter("update_success");
        let rejected = self.lds_counter("update_rejected");
        self.version += 1;
        let staged = self.staging_dir.join("lds.json");
        let body = discovery_response(self.version, listener).to_string();
        if std::fs::write(&staged, body).is_err() || std::fs::rename(&staged, self.lds_dir.join("lds.json")).is_err() {
            return LdsOutcome::NoChange;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.lds_counter("update_rejected") > rejected {
                return LdsOutcome::Rejected;
            }
            if self.lds_counter("update_success") > accepted {
                return LdsOutcome::Accepted;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        LdsOutcome::NoChange
    }

    /// `listener_manager.lds.<name>` (0 when absent).
    pub fn lds_counter(&self, name: &str) -> u64 {
        self.envoy.counter(&format!("listener_manager.lds.{name}")).unwrap_or(0)
    }

    /// Wait (bounded) until no listener is warming: after an accepted update, new
    /// connections are served by the new filter chain once it is warm.
    pub fn wait_warm(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.envoy.counter("listener_manager.total_listeners_warming") == Some(0) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl std::ops::Deref for LdsEnvoy {
    type Target = Envoy;
    fn deref(&self) -> &Envoy {
        &self.envoy
    }
}
