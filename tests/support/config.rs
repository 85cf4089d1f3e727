//! Renders Envoy v3 YAML for the tests: one HTTP listener with an http_connection_manager, any
//! number of STATIC round-robin clusters on 127.0.0.1, routes in order, optional file access log,
//! and the admin listener. String templating on purpose: the output is what an operator would
//! write, and a test can print it. Ports come from `free_port()`.

use super::free_port;

/// Quotes a string as a YAML double-quoted scalar (JSON strings are valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

#[derive(Debug, Clone)]
enum PathMatch {
    Prefix(String),
    Path(String),
}

#[derive(Debug, Clone)]
enum Action {
    Cluster {
        name: String,
        timeout: Option<String>,
        prefix_rewrite: Option<String>,
        retry: Option<(String, u32, Option<String>)>,
        /// Further route-action fields (YAML, unindented, one field per line).
        extra: Vec<String>,
    },
    Direct {
        status: u16,
        body: String,
    },
}

/// One route: a match and what to do with it.
#[derive(Debug, Clone)]
pub struct Route {
    path: PathMatch,
    headers: Vec<(String, String)>,
    action: Action,
}

impl Route {
    /// `match: { prefix }` forwarding to `cluster`.
    pub fn prefix(prefix: &str, cluster: &str) -> Route {
        Route {
            path: PathMatch::Prefix(prefix.into()),
            headers: Vec::new(),
            action: Self::to(cluster),
        }
    }

    /// `match: { path }` (exact) forwarding to `cluster`.
    pub fn path(path: &str, cluster: &str) -> Route {
        Route {
            path: PathMatch::Path(path.into()),
            headers: Vec::new(),
            action: Self::to(cluster),
        }
    }

    /// `match: { prefix }` answered by `direct_response`.
    pub fn direct(prefix: &str, status: u16, body: &str) -> Route {
        Route {
            path: PathMatch::Prefix(prefix.into()),
            headers: Vec::new(),
            action: Action::Direct {
                status,
                body: body.into(),
            },
        }
    }

    fn to(cluster: &str) -> Action {
        Action::Cluster {
            name: cluster.into(),
            timeout: None,
            prefix_rewrite: None,
            retry: None,
            extra: Vec::new(),
        }
    }

    /// Adds route-action fields, e.g. `idle_timeout: 1s`.
    pub fn action_extra(mut self, yaml: &str) -> Route {
        if let Action::Cluster { extra, .. } = &mut self.action {
            extra.push(yaml.into());
        }
        self
    }

    /// Adds an exact header match (`headers: [{name, string_match: {exact}}]`).
    pub fn header(mut self, name: &str, exact: &str) -> Route {
        self.headers.push((name.into(), exact.into()));
        self
    }

    /// `route.timeout`, e.g. "0.5s".
    pub fn timeout(mut self, t: &str) -> Route {
        if let Action::Cluster { timeout, .. } = &mut self.action {
            *timeout = Some(t.into());
        }
        self
    }

    pub fn prefix_rewrite(mut self, p: &str) -> Route {
        if let Action::Cluster { prefix_rewrite, .. } = &mut self.action {
            *prefix_rewrite = Some(p.into());
        }
        self
    }

    /// `route.retry_policy { retry_on, num_retries, per_try_timeout }`.
    pub fn retry(
        mut self,
        retry_on: &str,
        num_retries: u32,
        per_try_timeout: Option<&str>,
    ) -> Route {
        if let Action::Cluster { retry, .. } = &mut self.action {
            *retry = Some((
                retry_on.into(),
                num_retries,
                per_try_timeout.map(Into::into),
            ));
        }
        self
    }

    fn render(&self, out: &mut String) {
        let m = match &self.path {
            PathMatch::Prefix(p) => format!("prefix: {}", q(p)),
            PathMatch::Path(p) => format!("path: {}", q(p)),
        };
        out.push_str(&format!("              - match:\n                  {m}\n"));
        if !self.headers.is_empty() {
            out.push_str("                  headers:\n");
            for (n, v) in &self.headers {
                out.push_str(&format!(
                    "                  - name: {}\n                    string_match: {{ exact: {} }}\n",
                    q(n),
                    q(v)
                ));
            }
        }
        match &self.action {
            Action::Cluster {
                name,
                timeout,
                prefix_rewrite,
                retry,
                extra,
            } => {
                out.push_str(&format!(
                    "                route:\n                  cluster: {}\n",
                    q(name)
                ));
                if let Some(t) = timeout {
                    out.push_str(&format!("                  timeout: {}\n", q(t)));
                }
                if let Some(p) = prefix_rewrite {
                    out.push_str(&format!("                  prefix_rewrite: {}\n", q(p)));
                }
                if let Some((on, n, per_try)) = retry {
                    out.push_str(&format!(
                        "                  retry_policy:\n                    retry_on: {}\n                    num_retries: {n}\n",
                        q(on)
                    ));
                    if let Some(t) = per_try {
                        out.push_str(&format!("                    per_try_timeout: {}\n", q(t)));
                    }
                }
                for line in extra.iter().flat_map(|e| e.lines()) {
                    out.push_str(&format!("                  {line}\n"));
                }
            }
            Action::Direct { status, body } => {
                out.push_str(&format!(
                    "                direct_response:\n                  status: {status}\n                  body:\n                    inline_string: {}\n",
                    q(body)
                ));
            }
        }
    }
}

/// Builder for a whole bootstrap.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    pub listen_port: u16,
    pub admin_port: u16,
    pub stat_prefix: String,
    clusters: Vec<(String, Vec<u16>)>,
    /// EDS clusters: (name, DiscoveryResponse file path).
    eds_clusters: Vec<(String, String)>,
    routes: Vec<Route>,
    access_log: Option<String>,
    /// Extra cluster fields (YAML at cluster level, unindented), by cluster name.
    cluster_extras: Vec<(String, String)>,
    /// Extra http_connection_manager fields (YAML at HCM level, unindented).
    hcm_extras: Vec<String>,
    /// One filter chain per entry, each with these extra chain-level fields (unindented YAML:
    /// `filter_chain_match`, `transport_socket`); empty means one plain chain.
    filter_chains: Vec<String>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    /// A listener and an admin listener on fresh free ports, stat_prefix `ingress_http`.
    pub fn new() -> ConfigBuilder {
        ConfigBuilder {
            listen_port: free_port(),
            admin_port: free_port(),
            stat_prefix: "ingress_http".into(),
            clusters: Vec::new(),
            eds_clusters: Vec::new(),
            routes: Vec::new(),
            access_log: None,
            cluster_extras: Vec::new(),
            hcm_extras: Vec::new(),
            filter_chains: Vec::new(),
        }
    }

    /// The common case: cluster `backend` with the given endpoints, every path routed to it.
    pub fn single(ports: &[u16]) -> ConfigBuilder {
        ConfigBuilder::new()
            .cluster("backend", ports)
            .route(Route::prefix("/", "backend"))
    }

    /// A STATIC ROUND_ROBIN cluster with endpoints on 127.0.0.1 at `ports`.
    pub fn cluster(mut self, name: &str, ports: &[u16]) -> ConfigBuilder {
        self.clusters.push((name.into(), ports.to_vec()));
        self
    }

    /// An EDS ROUND_ROBIN cluster reading its endpoints from the `DiscoveryResponse` file at
    /// `path` (`eds_config.path_config_source.path`).
    pub fn eds_cluster(mut self, name: &str, path: &str) -> ConfigBuilder {
        self.eds_clusters.push((name.into(), path.into()));
        self
    }

    /// Adds fields to cluster `name`, e.g. `"health_checks:\n- timeout: 1s\n  ..."` (written at
    /// the cluster's own level; this indents it).
    pub fn cluster_extra(mut self, name: &str, yaml: &str) -> ConfigBuilder {
        self.cluster_extras.push((name.into(), yaml.into()));
        self
    }

    /// Makes cluster `name` speak HTTP/2 to its endpoints (prior knowledge on plain TCP), the
    /// Envoy v3 way: `typed_extension_protocol_options` with
    /// `explicit_http_config.http2_protocol_options`.
    pub fn h2_cluster(self, name: &str) -> ConfigBuilder {
        self.cluster_extra(
            name,
            "typed_extension_protocol_options:\n  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n    explicit_http_config:\n      http2_protocol_options: {}",
        )
    }

    /// Adds fields to the http_connection_manager (written at its own level; this indents).
    pub fn hcm_extra(mut self, yaml: &str) -> ConfigBuilder {
        self.hcm_extras.push(yaml.into());
        self
    }

    /// HCM `codec_type` (`AUTO`, `HTTP1`, `HTTP2`).
    pub fn codec_type(self, codec: &str) -> ConfigBuilder {
        self.hcm_extra(&format!("codec_type: {codec}"))
    }

    /// HCM `http2_protocol_options` for downstream HTTP/2.
    pub fn http2_protocol_options(
        self,
        max_concurrent_streams: u32,
        initial_stream_window_size: u32,
        initial_connection_window_size: u32,
    ) -> ConfigBuilder {
        self.hcm_extra(&format!(
            "http2_protocol_options:\n  max_concurrent_streams: {max_concurrent_streams}\n  initial_stream_window_size: {initial_stream_window_size}\n  initial_connection_window_size: {initial_connection_window_size}"
        ))
    }

    /// Adds a filter chain (same connection manager as the others) with extra chain-level fields,
    /// e.g. a `transport_socket` and a `filter_chain_match`.
    pub fn filter_chain(mut self, yaml: &str) -> ConfigBuilder {
        self.filter_chains.push(yaml.into());
        self
    }

    pub fn route(mut self, r: Route) -> ConfigBuilder {
        self.routes.push(r);
        self
    }

    pub fn stat_prefix(mut self, p: &str) -> ConfigBuilder {
        self.stat_prefix = p.into();
        self
    }

    /// `envoy.access_loggers.file` to `path` with the default format.
    pub fn access_log(mut self, path: &str) -> ConfigBuilder {
        self.access_log = Some(path.into());
        self
    }

    pub fn render(&self) -> String {
        let mut y = String::new();
        y.push_str("static_resources:\n  listeners:\n  - name: listener_0\n");
        y.push_str(&format!(
            "    address:\n      socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
            self.listen_port
        ));
        y.push_str("    filter_chains:\n");
        let chains_at = y.len();
        y.push_str("    - filters:\n      - name: envoy.filters.network.http_connection_manager\n");
        y.push_str("        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n");
        y.push_str(&format!(
            "          stat_prefix: {}\n",
            q(&self.stat_prefix)
        ));
        // An edge listener: the peer address is the client's, so x-forwarded-for gets it (Envoy
        // appends only with use_remote_address).
        y.push_str("          use_remote_address: true\n");
        for text in &self.hcm_extras {
            for line in text.lines() {
                y.push_str(&format!("          {line}\n"));
            }
        }
        if let Some(path) = &self.access_log {
            y.push_str("          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n");
            y.push_str("              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n");
            y.push_str(&format!("              path: {}\n", q(path)));
        }
        y.push_str(
            "          route_config:\n            name: local_route\n            virtual_hosts:\n",
        );
        y.push_str(
            "            - name: backend\n              domains: [\"*\"]\n              routes:\n",
        );
        for r in &self.routes {
            r.render(&mut y);
        }
        y.push_str("          http_filters:\n          - name: envoy.filters.http.router\n            typed_config:\n");
        y.push_str("              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n");
        if !self.filter_chains.is_empty() {
            let chain = y.split_off(chains_at);
            for extra in &self.filter_chains {
                y.push_str(&chain);
                for line in extra.lines() {
                    y.push_str(&format!("      {line}\n"));
                }
            }
        }
        y.push_str("  clusters:\n");
        for (name, ports) in &self.clusters {
            y.push_str(&format!(
                "  - name: {n}\n    connect_timeout: 1s\n    type: STATIC\n    lb_policy: ROUND_ROBIN\n    load_assignment:\n      cluster_name: {n}\n      endpoints:\n      - lb_endpoints:\n",
                n = q(name)
            ));
            let mut extra = String::new();
            for (_, text) in self.cluster_extras.iter().filter(|(n, _)| n == name) {
                for line in text.lines() {
                    extra.push_str(&format!("    {line}\n"));
                }
            }
            // Before load_assignment's list so the extra fields stay at cluster level.
            let at = y.rfind("    load_assignment:\n").unwrap_or(y.len());
            y.insert_str(at, &extra);
            for p in ports {
                y.push_str(&format!(
                    "        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {p} }}\n"
                ));
            }
        }
        for (name, path) in &self.eds_clusters {
            y.push_str(&format!(
                "  - name: {n}\n    connect_timeout: 1s\n    type: EDS\n    lb_policy: ROUND_ROBIN\n    eds_cluster_config:\n      eds_config:\n        resource_api_version: V3\n        path_config_source:\n          path: {p}\n",
                n = q(name),
                p = q(path)
            ));
        }
        y.push_str(&format!(
            "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
            self.admin_port
        ));
        y
    }
}
