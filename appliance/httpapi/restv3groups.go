package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// Confluent REST Proxy v3 consumer groups: the groups of katka's group
// coordinator (classic and KIP-848 ones, REST consumers included), their
// members, and each partition's lag and the group's lag summary.

// groupMember is a member of a group and its assignment.
type groupMember struct {
	id, instance, client string
	assigned             []restTP
}

// groupView is what v3 shows of a group.
type groupView struct {
	id, state, assignor string
	simple              bool
	members             []groupMember
	committed           map[restTP]int64
}

// groupList lists the groups of this node's coordinators (every group on a
// single node, those of the partitions it leads in a cell) the caller may
// describe.
func (s *Server) groupList(r *http.Request) ([]string, error) {
	gcs, err := s.groupCoordinators()
	if err != nil {
		return nil, err
	}
	req := kmsg.NewPtrListGroupsRequest()
	req.Version = 5
	var out []string
	for i, gc := range gcs {
		resp, err := gc.ListGroups(req)
		if err != nil {
			if len(gcs) == 1 {
				return nil, err
			}
			s.log.Debug("group listing: a coordinator closed meanwhile", "coordinator", i, "err", err)
			continue // handed over meanwhile: its groups are another node's now
		}
		for _, g := range resp.Groups {
			if s.allowed(r, auth.ResourceGroup, g.Group, auth.OpDescribe) {
				out = append(out, g.Group)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// describeGroup gathers group g from the coordinator; ok is false when the
// coordinator does not know it.
func (s *Server) describeGroup(g string) (groupView, bool, error) {
	gc, err := s.groupCoordinator(g)
	if err != nil {
		return groupView{}, false, err
	}
	v := groupView{id: g, committed: map[restTP]int64{}}
	cd := kmsg.NewPtrConsumerGroupDescribeRequest()
	cd.Groups = []string{g}
	cresp, err := gc.ConsumerDescribe(cd, s.rp.topics())
	if err != nil {
		return v, false, err
	}
	found := false
	if d := cresp.Groups[0]; d.ErrorCode == 0 {
		found, v.state, v.assignor = true, d.State, d.AssignorName
		for _, m := range d.Members {
			gm := groupMember{id: m.MemberID, client: m.ClientID}
			if m.InstanceID != nil {
				gm.instance = *m.InstanceID
			}
			for _, tp := range m.Assignment.TopicPartitions {
				for _, p := range tp.Partitions {
					gm.assigned = append(gm.assigned, restTP{tp.Topic, p})
				}
			}
			v.members = append(v.members, gm)
		}
	} else {
		dg := kmsg.NewPtrDescribeGroupsRequest()
		dg.Version, dg.Groups = 5, []string{g}
		dresp, err := gc.DescribeGroups(dg)
		if err != nil {
			return v, false, err
		}
		if d := dresp.Groups[0]; d.ErrorCode == 0 && d.State != "Dead" {
			found, v.state, v.assignor = true, d.State, d.Protocol
			v.simple = d.ProtocolType == "" && len(d.Members) == 0
			for _, m := range d.Members {
				gm := groupMember{id: m.MemberID, client: m.ClientID}
				if m.InstanceID != nil {
					gm.instance = *m.InstanceID
				}
				var a kmsg.ConsumerMemberAssignment
				if d.ProtocolType == "consumer" && a.ReadFrom(m.MemberAssignment) == nil {
					for _, t := range a.Topics {
						for _, p := range t.Partitions {
							gm.assigned = append(gm.assigned, restTP{t.Topic, p})
						}
					}
				}
				v.members = append(v.members, gm)
			}
		}
	}
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Version, of.Group = 7, g
	oresp, err := gc.FetchOffsets(of)
	if err != nil {
		return v, false, err
	}
	for _, t := range oresp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 && p.Offset >= 0 {
				v.committed[restTP{t.Topic, p.Partition}] = p.Offset
				found = true
			}
		}
	}
	return v, found, nil
}

type v3GroupJSON struct {
	v3Base
	ConsumerGroupID   string  `json:"consumer_group_id"`
	IsSimple          bool    `json:"is_simple"`
	PartitionAssignor string  `json:"partition_assignor"`
	State             string  `json:"state"`
	Coordinator       related `json:"coordinator"`
	Consumers         related `json:"consumers"`
	LagSummary        related `json:"lag_summary"`
}

func (s *Server) v3GroupJSON(r *http.Request, v groupView) v3GroupJSON {
	base := s.clusterBase(r) + "/consumer-groups/" + v.id
	state := strings.ToUpper(v.state)
	if state == "" {
		state = "EMPTY"
	}
	return v3GroupJSON{
		v3Base:          s.base("KafkaConsumerGroup", base, "/consumer-group="+v.id),
		ConsumerGroupID: v.id, IsSimple: v.simple, PartitionAssignor: v.assignor, State: state,
		Coordinator: related{s.clusterBase(r) + "/brokers/0"}, Consumers: related{base + "/consumers"}, LagSummary: related{base + "/lag-summary"},
	}
}

// v3Group answers the path's group after the DESCRIBE check, or 404.
func (s *Server) v3Group(w http.ResponseWriter, r *http.Request) (groupView, bool) {
	if !s.v3ClusterOK(w, r) {
		return groupView{}, false
	}
	g := r.PathValue("group")
	if !s.allowed(r, auth.ResourceGroup, g, auth.OpDescribe) {
		restDenied(w, mediaV3, "Not authorized to access group: "+g)
		return groupView{}, false
	}
	v, ok, err := s.describeGroup(g)
	if err != nil {
		s.v3Fail(w, r, err)
		return v, false
	}
	if !ok {
		writeRest(w, http.StatusNotFound, mediaV3, restError{http.StatusNotFound, "Consumer group " + g + " does not exist."})
		return v, false
	}
	return v, true
}

func (s *Server) v3Groups(w http.ResponseWriter, r *http.Request) {
	if !s.v3ClusterOK(w, r) {
		return
	}
	ids, err := s.groupList(r)
	if err != nil {
		s.v3Fail(w, r, err)
		return
	}
	out := v3List{Kind: "KafkaConsumerGroupList", Metadata: v3Meta{Self: s.clusterBase(r) + "/consumer-groups"}, Data: []any{}}
	for _, g := range ids {
		if v, ok, err := s.describeGroup(g); err == nil && ok {
			out.Data = append(out.Data, s.v3GroupJSON(r, v))
		}
	}
	writeRest(w, http.StatusOK, mediaV3, out)
}

func (s *Server) v3GroupGet(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.v3Group(w, r); ok {
		writeRest(w, http.StatusOK, mediaV3, s.v3GroupJSON(r, v))
	}
}

type v3ConsumerJSON struct {
	v3Base
	ConsumerGroupID string  `json:"consumer_group_id"`
	ConsumerID      string  `json:"consumer_id"`
	InstanceID      *string `json:"instance_id"`
	ClientID        string  `json:"client_id"`
	Assignments     related `json:"assignments"`
}

func (s *Server) v3GroupConsumers(w http.ResponseWriter, r *http.Request) {
	v, ok := s.v3Group(w, r)
	if !ok {
		return
	}
	base := s.clusterBase(r) + "/consumer-groups/" + v.id + "/consumers"
	out := v3List{Kind: "KafkaConsumerList", Metadata: v3Meta{Self: base}, Data: []any{}}
	for _, m := range v.members {
		c := v3ConsumerJSON{v3Base: s.base("KafkaConsumer", base+"/"+m.id, "/consumer-group="+v.id+"/consumer="+m.id),
			ConsumerGroupID: v.id, ConsumerID: m.id, ClientID: m.client, Assignments: related{base + "/" + m.id + "/assignments"}}
		if m.instance != "" {
			c.InstanceID = &m.instance
		}
		out.Data = append(out.Data, c)
	}
	writeRest(w, http.StatusOK, mediaV3, out)
}

// v3LagJSON is a KafkaConsumerLag: one partition's committed offset and lag.
type v3LagJSON struct {
	v3Base
	ConsumerGroupID string `json:"consumer_group_id"`
	TopicName       string `json:"topic_name"`
	PartitionID     int32  `json:"partition_id"`
	CurrentOffset   int64  `json:"current_offset"`
	LogEndOffset    int64  `json:"log_end_offset"`
	Lag             int64  `json:"lag"`
	ConsumerID      string `json:"consumer_id"`
	InstanceID      string `json:"instance_id,omitempty"`
	ClientID        string `json:"client_id"`
}

// lags lists the lag of every partition the group committed an offset for
// or has assigned, that the caller may describe, sorted by topic and partition.
func (s *Server) lags(r *http.Request, v groupView) []v3LagJSON {
	owner := map[restTP]groupMember{}
	tps := map[restTP]bool{}
	for _, m := range v.members {
		for _, tp := range m.assigned {
			owner[tp], tps[tp] = m, true
		}
	}
	for tp := range v.committed {
		tps[tp] = true
	}
	base := s.clusterBase(r) + "/consumer-groups/" + v.id + "/lags/"
	var out []v3LagJSON
	for tp := range tps {
		if !s.allowed(r, auth.ResourceTopic, tp.Topic, auth.OpDescribe) {
			continue
		}
		info, err := s.b.PartitionInfo(tp.Topic, tp.Partition)
		if err != nil {
			continue
		}
		cur, ok := v.committed[tp]
		if !ok {
			cur = info.LogStartOffset // nothing committed: all of the log is behind
		}
		m := owner[tp]
		out = append(out, v3LagJSON{v3Base: s.base("KafkaConsumerLag", base+tp.Topic+"/partitions/"+strconv.Itoa(int(tp.Partition)), "/consumer-group="+v.id+"/lag="+tp.Topic+"/partition="+strconv.Itoa(int(tp.Partition))),
			ConsumerGroupID: v.id, TopicName: tp.Topic, PartitionID: tp.Partition,
			CurrentOffset: cur, LogEndOffset: info.HighWatermark, Lag: max(0, info.HighWatermark-cur), ConsumerID: m.id, InstanceID: m.instance, ClientID: m.client})
	}
	slices.SortFunc(out, func(a, b v3LagJSON) int {
		if c := strings.Compare(a.TopicName, b.TopicName); c != 0 {
			return c
		}
		return int(a.PartitionID - b.PartitionID)
	})
	return out
}

func (s *Server) v3GroupLags(w http.ResponseWriter, r *http.Request) {
	v, ok := s.v3Group(w, r)
	if !ok {
		return
	}
	out := v3List{Kind: "KafkaConsumerLagList", Metadata: v3Meta{Self: s.clusterBase(r) + "/consumer-groups/" + v.id + "/lags"}, Data: []any{}}
	for _, l := range s.lags(r, v) {
		out.Data = append(out.Data, l)
	}
	writeRest(w, http.StatusOK, mediaV3, out)
}

// v3LagSummaryJSON is a KafkaConsumerGroupLagSummary.
type v3LagSummaryJSON struct {
	v3Base
	ConsumerGroupID   string  `json:"consumer_group_id"`
	MaxLagConsumerID  string  `json:"max_lag_consumer_id"`
	MaxLagInstanceID  *string `json:"max_lag_instance_id"`
	MaxLagClientID    string  `json:"max_lag_client_id"`
	MaxLagTopicName   string  `json:"max_lag_topic_name"`
	MaxLagPartitionID int32   `json:"max_lag_partition_id"`
	MaxLag            int64   `json:"max_lag"`
	TotalLag          int64   `json:"total_lag"`
	MaxLagConsumer    related `json:"max_lag_consumer"`
	MaxLagPartition   related `json:"max_lag_partition"`
}

func (s *Server) v3GroupLagSummary(w http.ResponseWriter, r *http.Request) {
	v, ok := s.v3Group(w, r)
	if !ok {
		return
	}
	base := s.clusterBase(r)
	out := v3LagSummaryJSON{v3Base: s.base("KafkaConsumerGroupLagSummary", base+"/consumer-groups/"+v.id+"/lag-summary", "/consumer-group="+v.id+"/lag-summary"),
		ConsumerGroupID: v.id}
	var maxL *v3LagJSON
	for _, l := range s.lags(r, v) {
		out.TotalLag += l.Lag
		if maxL == nil || l.Lag > maxL.Lag {
			maxL = &l
		}
	}
	if maxL != nil {
		out.MaxLag, out.MaxLagTopicName, out.MaxLagPartitionID = maxL.Lag, maxL.TopicName, maxL.PartitionID
		out.MaxLagConsumerID, out.MaxLagClientID = maxL.ConsumerID, maxL.ClientID
		if maxL.InstanceID != "" {
			out.MaxLagInstanceID = &maxL.InstanceID
		}
		out.MaxLagConsumer = related{base + "/consumer-groups/" + v.id + "/consumers/" + maxL.ConsumerID}
		out.MaxLagPartition = related{base + "/topics/" + maxL.TopicName + "/partitions/" + strconv.Itoa(int(maxL.PartitionID))}
	}
	writeRest(w, http.StatusOK, mediaV3, out)
}
