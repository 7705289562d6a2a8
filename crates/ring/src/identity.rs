//! Who a member is on the wire: its node id (the ring member), the transport
//! address it gossips on, and a generation that grows on every restart so a
//! restarted member is told apart from its dead predecessor.

use serde::{Deserialize, Serialize};

/// Identity of one membership instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    /// Node id; this is what the ring places.
    pub name: String,
    /// Transport address (for UDP, `ip:port`).
    pub addr: String,
    /// Process generation, e.g. start time in milliseconds: a restart must
    /// use a larger value than the previous run.
    pub generation: u64,
}

impl MemberId {
    /// Stand-in identity used to announce ourselves to a seed whose name we
    /// do not know yet; SWIM accepts an announce addressed to the right address.
    pub(crate) fn seed(addr: &str) -> Self {
        Self {
            name: String::new(),
            addr: addr.to_owned(),
            generation: 0,
        }
    }
}

impl foca::Identity for MemberId {
    type Addr = String;

    /// A member wrongly declared down rejoins under the next generation.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Two identities on one address: the later generation is the live one.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}
