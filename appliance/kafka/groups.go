package kafka

// groupHandlers returns the consumer-group API handlers (FindCoordinator,
// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ...),
// added to the handler table at init. None yet: the groups issue brings them.
func groupHandlers() map[int16]handler { return nil }
