//! The node runtime: named nodes that find each other through their host's
//! port-mapper daemon, authenticate with a shared cookie, and exchange JSON
//! messages over one TCP connection per pair into bounded mailboxes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ironforge_node::NodeError> {
//! use std::time::Duration;
//! use ironforge_node::{Node, NodeConfig};
//!
//! let node = Node::start(NodeConfig::new("client").cookie("secret")).await?;
//! let answer = node
//!     .request("server", &serde_json::json!({"op": "ping"}), Duration::from_secs(1))
//!     .await?;
//! println!("server answered {}", answer.body());
//! # Ok(()) }
//! ```

mod config;
mod cookie;
mod error;
mod frame;
mod handshake;
mod mailbox;
mod message;
mod node;
mod peer;
mod pmd_link;

pub use config::{
    CookieSource, NodeConfig, OverflowPolicy, DEFAULT_MAILBOX_CAPACITY, DEFAULT_PMD_PORT,
    PMD_PORT_ENV,
};
pub use cookie::COOKIE_ENV;
pub use error::NodeError;
pub use ironforge_pmd::protocol::NodeInfo;
pub use message::Message;
pub use node::{EventStream, NamedMailbox, Node, NodeEvent, NodeStats};
