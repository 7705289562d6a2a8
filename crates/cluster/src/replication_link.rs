//! The replication follows the ring: every ring change starts a sync round
//! at once, so a member new to a partition's preference list pulls its
//! records without waiting for the anti-entropy period. (A new owner's
//! workflow adoption syncs the gained partitions itself, through the
//! journal's `unfinished`.)

use std::sync::Arc;

use async_trait::async_trait;
use ironforge_ring::Ring;

use crate::ownership::Handover;
use crate::replication::Replication;
use crate::takeover::OwnershipHook;

/// A handle on this member's replication service.
#[derive(Clone)]
pub(crate) struct ReplicationLink(pub(crate) Replication);

#[async_trait]
impl OwnershipHook for ReplicationLink {
    async fn partitions_moved(&self, _handover: &Handover) {}

    async fn ring_changed(&self, _ring: &Arc<Ring>) {
        self.0.membership_changed();
    }
}
