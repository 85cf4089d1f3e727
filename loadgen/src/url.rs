//! Target URLs: `http://`, `https://` and `h2c://`, split into what a connection needs. Other
//! schemes get a clear error naming the ones that work.

/// URL scheme of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    /// HTTP/2 over cleartext TCP with prior knowledge.
    H2c,
}

/// Parts of a target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    /// Host header value: the authority as written.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Path and query ("/" when absent).
    pub path: String,
}

/// Split an http://, https:// or h2c:// URL; other schemes get a clear error.
pub fn parse_url(url: &str) -> Result<Target, String> {
    const KNOWN: &str = "http://, https:// or h2c://";
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, rest),
            "https" => (Scheme::Https, rest),
            "h2c" => (Scheme::H2c, rest),
            "h2" => {
                return Err(format!(
                    "{scheme}:// is not a URL scheme: use https:// --http2 for h2 over TLS"
                ))
            }
            "h3" => return Err(format!("{scheme}:// is not supported ({KNOWN})")),
            _ => return Err(format!("unknown scheme {scheme:?} ({KNOWN})")),
        },
        None => return Err(format!("URL {url:?} needs a scheme, e.g. http://{url}")),
    };
    let default_port = if scheme == Scheme::Https { 443 } else { 80 };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = match path.split_once('#') {
        Some((p, _)) => p.to_string(),
        None => path,
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("URL {url:?}: expected http://host[:port]/path"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("URL {url:?}: unclosed IPv6 bracket"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p, url)?,
            None if after.is_empty() => default_port,
            None => return Err(format!("URL {url:?}: junk after IPv6 address")),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), parse_port(p, url)?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("URL {url:?}: empty host"));
    }
    Ok(Target {
        scheme,
        authority: authority.to_string(),
        host,
        port,
        path,
    })
}

fn parse_port(p: &str, url: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("URL {url:?}: bad port {p:?}"))
}
