package kmsg

import (
	"reflect"
	"testing"
)

// TestIsDefaultMatchesDeepEqual: the patched checks answer as upstream's
// reflect.DeepEqual against a fresh default did, for defaults, each field
// changed, an empty unknown-tags map and a set tag.
func TestIsDefaultMatchesDeepEqual(t *testing.T) {
	empty := Tags{keyvals: map[uint32][]byte{}}
	var one Tags
	one.Set(7, []byte{1})
	tagsCases := []Tags{{}, empty, one}
	check := func(name string, got bool, v, def any) {
		t.Helper()
		if want := reflect.DeepEqual(v, def); got != want {
			t.Errorf("%s %+v: isDefault %v, DeepEqual %v", name, v, got, want)
		}
	}
	for _, tags := range tagsCases {
		for _, a := range []int32{-1, 0, 5} {
			for _, b := range []int64{-1, 0, 9} {
				pl := ProduceResponseTopicPartitionCurrentLeader{LeaderID: a, LeaderEpoch: int32(b), UnknownTags: tags}
				check("produce current leader", pl.isDefault(), pl, NewProduceResponseTopicPartitionCurrentLeader())
				de := FetchResponseTopicPartitionDivergingEpoch{Epoch: a, EndOffset: b, UnknownTags: tags}
				check("diverging epoch", de.isDefault(), de, NewFetchResponseTopicPartitionDivergingEpoch())
				fl := FetchResponseTopicPartitionCurrentLeader{LeaderID: a, LeaderEpoch: int32(b), UnknownTags: tags}
				check("fetch current leader", fl.isDefault(), fl, NewFetchResponseTopicPartitionCurrentLeader())
				si := FetchResponseTopicPartitionSnapshotID{Epoch: a, EndOffset: b, UnknownTags: tags}
				check("snapshot id", si.isDefault(), si, NewFetchResponseTopicPartitionSnapshotID())
			}
		}
	}
}

// fetchResponse returns a Fetch response of n partitions of one topic, every
// partition with default tagged fields except every tenth's current leader.
func fetchResponse(version int16, n int) *FetchResponse {
	resp := NewPtrFetchResponse()
	resp.SetVersion(version)
	topic := NewFetchResponseTopic()
	topic.Topic = "t"
	for i := range n {
		p := NewFetchResponseTopicPartition()
		p.Partition = int32(i)
		p.HighWatermark = int64(i)
		if i%10 == 0 {
			p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = 3, 4
		}
		topic.Partitions = append(topic.Partitions, p)
	}
	resp.Topics = append(resp.Topics, topic)
	return resp
}

// TestFetchResponseTagsRoundTrip: a flexible Fetch response with some
// partitions' tagged fields set decodes back to what was encoded.
func TestFetchResponseTagsRoundTrip(t *testing.T) {
	for _, version := range []int16{12, 16} {
		resp := fetchResponse(version, 50)
		resp.Topics[0].Partitions[3].SnapshotID.Epoch, resp.Topics[0].Partitions[3].SnapshotID.EndOffset = 2, 77
		resp.Topics[0].Partitions[4].DivergingEpoch.Epoch = 1
		back := NewPtrFetchResponse()
		back.SetVersion(version)
		if err := back.ReadFrom(resp.AppendTo(nil)); err != nil {
			t.Fatalf("v%d: %v", version, err)
		}
		// (v13+ names the topic by ID only, so compare the partitions.)
		if len(back.Topics) != 1 || !reflect.DeepEqual(resp.Topics[0].Partitions, back.Topics[0].Partitions) {
			t.Fatalf("v%d: decoded partitions differ from the encoded ones", version)
		}
	}
}

// TestFetchResponseEncodeAllocations: encoding a 1,000-partition Fetch
// response into a buffer large enough allocates only for the partitions
// whose tags are set (upstream allocated twice per tagged field per
// partition: 6,000 times).
func TestFetchResponseEncodeAllocations(t *testing.T) {
	resp := fetchResponse(16, 1000)
	buf := make([]byte, 0, 1<<20)
	allocs := testing.AllocsPerRun(20, func() { buf = resp.AppendTo(buf[:0]) })
	if allocs > 150 {
		t.Fatalf("encoding 1,000 partitions allocated %.0f times, want at most 150 (one per partition with a tag set: 100)", allocs)
	}
}
