package kmsg

// katka patch: the tagged-field checks of the Produce and Fetch responses'
// partitions compare fields instead of calling reflect.DeepEqual on a freshly
// built default. Upstream's check boxes both structs into interfaces (two
// allocations) and walks them by reflection for every partition of every
// response: with 4,096 partitions it was a tenth of a broker's CPU per fetch.
// The result is the same as DeepEqual's: every field at its default and no
// unknown-tags map (DeepEqual tells a nil map from an empty one).

// isDefault reports whether v equals its Default().
func (v *ProduceResponseTopicPartitionCurrentLeader) isDefault() bool {
	return v.LeaderID == -1 && v.LeaderEpoch == -1 && v.UnknownTags.keyvals == nil
}

// isDefault reports whether v equals its Default().
func (v *FetchResponseTopicPartitionDivergingEpoch) isDefault() bool {
	return v.Epoch == -1 && v.EndOffset == -1 && v.UnknownTags.keyvals == nil
}

// isDefault reports whether v equals its Default().
func (v *FetchResponseTopicPartitionCurrentLeader) isDefault() bool {
	return v.LeaderID == -1 && v.LeaderEpoch == -1 && v.UnknownTags.keyvals == nil
}

// isDefault reports whether v equals its Default().
func (v *FetchResponseTopicPartitionSnapshotID) isDefault() bool {
	return v.EndOffset == -1 && v.Epoch == -1 && v.UnknownTags.keyvals == nil
}
