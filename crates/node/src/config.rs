//! What a node is told at start: who it is, where the PMD is, how big its
//! mailbox is and what happens when it overflows. Every limit has a named
//! default here.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ironforge_pmd::launcher::DaemonCommand;
use ironforge_pmd::wire::DEFAULT_MAX_FRAME;

/// Default port of the port-mapper daemon.
pub const DEFAULT_PMD_PORT: u16 = 4369;
/// Environment variable overriding the PMD port.
pub const PMD_PORT_ENV: &str = "IRONFORGE_PMD_PORT";
/// Default mailbox capacity in messages.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 100_000;
/// Default number of frames queued towards one peer before `send` waits.
pub const DEFAULT_PEER_QUEUE: usize = 65_536;
/// Default heartbeat period towards the PMD (its TTL is 15 s).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Default time a handshake may take.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a full mailbox does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Discard the incoming message (Erlang keeps everything; we keep memory bounded).
    #[default]
    DropNewest,
    /// Discard the oldest queued message to make room.
    DropOldest,
    /// Refuse the incoming message; a request gets an error reply at once.
    Reject,
}

impl std::str::FromStr for OverflowPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop-newest" => Ok(OverflowPolicy::DropNewest),
            "drop-oldest" => Ok(OverflowPolicy::DropOldest),
            "reject" => Ok(OverflowPolicy::Reject),
            other => Err(format!(
                "unknown overflow policy '{other}' (expected drop-newest, drop-oldest or reject)"
            )),
        }
    }
}

/// Where the cookie comes from.
#[derive(Debug, Clone, Default)]
pub enum CookieSource {
    /// `IRONFORGE_COOKIE`, else `~/.ironforge/cookie` (created owner-only).
    #[default]
    Default,
    /// This exact secret.
    Value(String),
    /// The file at this path (created owner-only if missing).
    File(PathBuf),
}

/// Configuration of one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Name under which the node registers with its host's PMD.
    pub alias: String,
    pub cookie: CookieSource,
    pub mailbox_capacity: usize,
    pub overflow: OverflowPolicy,
    /// The local PMD; started if none answers and `auto_start_pmd` is set.
    pub pmd_addr: SocketAddr,
    pub auto_start_pmd: bool,
    /// How to start the PMD when none answers; `None` looks for the
    /// `ironforge-pmd` executable next to this program or on PATH.
    pub pmd_command: Option<DaemonCommand>,
    /// Where the node accepts peers; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Host other nodes are told to connect to (default: the listen IP,
    /// or 127.0.0.1 when listening on all interfaces).
    pub advertise_host: Option<String>,
    pub max_frame: usize,
    pub peer_queue: usize,
    pub heartbeat: Duration,
    pub handshake_timeout: Duration,
    /// Allow more than one node in this process (tests, simulations).
    pub allow_multiple: bool,
}

impl NodeConfig {
    /// Defaults for a node called `alias`: PMD on 127.0.0.1 at
    /// `IRONFORGE_PMD_PORT` or 4369, listening on 127.0.0.1 at a free port.
    pub fn new(alias: impl Into<String>) -> Self {
        let pmd_port = std::env::var(PMD_PORT_ENV)
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_PMD_PORT);
        NodeConfig {
            alias: alias.into(),
            cookie: CookieSource::Default,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            overflow: OverflowPolicy::default(),
            pmd_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, pmd_port)),
            auto_start_pmd: true,
            pmd_command: None,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertise_host: None,
            max_frame: DEFAULT_MAX_FRAME,
            peer_queue: DEFAULT_PEER_QUEUE,
            heartbeat: DEFAULT_HEARTBEAT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            allow_multiple: false,
        }
    }

    pub fn cookie(mut self, cookie: impl Into<String>) -> Self {
        self.cookie = CookieSource::Value(cookie.into());
        self
    }

    pub fn pmd_port(mut self, port: u16) -> Self {
        self.pmd_addr.set_port(port);
        self
    }

    pub fn mailbox(mut self, capacity: usize, overflow: OverflowPolicy) -> Self {
        self.mailbox_capacity = capacity;
        self.overflow = overflow;
        self
    }

    pub fn allow_multiple(mut self) -> Self {
        self.allow_multiple = true;
        self
    }
}
