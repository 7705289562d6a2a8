//! Consistent-hash ring and cluster membership: decides which node owns which jobs.
