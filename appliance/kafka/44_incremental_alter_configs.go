package kafka

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// handleIncrementalAlterConfigs sets, deletes (reverts to the default),
// appends to or subtracts from topic configs. All changes to one resource are
// validated before any is applied; validate_only applies none. Broker
// resources answer as Kafka answers a change of a config that is not
// dynamically updatable.
func (s *Server) handleIncrementalAlterConfigs(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for i := range req.Resources {
		rr := &req.Resources[i]
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if err := s.authConfigResource(ctx, c, rr.ResourceType, rr.ResourceName, auth.OpAlterConfigs); err != nil {
			sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		names := make([]string, len(rr.Configs))
		for i, kv := range rr.Configs {
			names[i] = kv.Name
		}
		err := alterResource(rr.ResourceType, rr.ResourceName, names, func() error {
			return s.incrementalAlterTopic(c.remote, rr, req.ValidateOnly)
		})
		if err != nil {
			sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}

// incrementalAlterTopic applies one topic's changes to its overrides.
// Internal topics answer INVALID_TOPIC_EXCEPTION (katka sets their retention
// and cleanup itself); a missing topic UNKNOWN_TOPIC_OR_PARTITION before any
// config is looked at, as in Kafka.
func (s *Server) incrementalAlterTopic(client string, rr *kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) error {
	if broker.InternalTopic(rr.ResourceName) {
		return s.internalTopicError(client, "alter the config of", rr.ResourceName)
	}
	info, err := s.b.Topic(rr.ResourceName)
	if err != nil {
		return err
	}
	current := map[string]string{}
	for _, v := range s.b.TopicConfigValues(info.Config) {
		current[v.Def.Name] = v.Value
	}
	set := make(map[string]string, len(info.Config.Overrides)+len(rr.Configs))
	for k, v := range info.Config.Overrides {
		set[k] = v
	}
	seen := map[string]bool{}
	for _, kv := range rr.Configs {
		if seen[kv.Name] {
			return codeErrorf(errInvalidRequest, "Error due to duplicate config keys: %s", kv.Name)
		}
		seen[kv.Name] = true
		d, known := broker.LookupTopicConfig(kv.Name)
		if kv.Op == kmsg.IncrementalAlterConfigOpDelete {
			delete(set, kv.Name) // an unknown name is not set: nothing to delete, as in Kafka
			continue
		}
		if !known {
			return codeErrorf(errInvalidConfig, "Unknown topic config name: %s", kv.Name)
		}
		if kv.Value == nil {
			return codeErrorf(errInvalidRequest, "Null value not supported for : %s", kv.Name)
		}
		value := *kv.Value
		switch kv.Op {
		case kmsg.IncrementalAlterConfigOpSet:
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if d.Type != broker.ConfigList {
				verb := "append"
				if kv.Op == kmsg.IncrementalAlterConfigOpSubtract {
					verb = "subtract"
				}
				return codeErrorf(errInvalidConfig, "Config value %s is not allowed for config key: %s", verb, kv.Name)
			}
			cur := splitList(current[kv.Name])
			for _, v := range splitList(value) {
				if kv.Op == kmsg.IncrementalAlterConfigOpAppend {
					if !slices.Contains(cur, v) {
						cur = append(cur, v)
					}
				} else {
					cur = slices.DeleteFunc(cur, func(x string) bool { return x == v })
				}
			}
			value = strings.Join(cur, ",")
		default:
			return codeErrorf(errInvalidRequest, "unknown config operation %d", kv.Op)
		}
		v, err := d.Check(value)
		if err != nil {
			return configError(err)
		}
		set[kv.Name] = v
	}
	if err := broker.CheckTopicOverrides(set); err != nil {
		return configError(err)
	}
	if validateOnly {
		return nil
	}
	if err := s.b.SetTopicOverrides(rr.ResourceName, set); err != nil {
		return configError(err)
	}
	s.log.Info("kafka topic config altered", "topic", rr.ResourceName, "api", "IncrementalAlterConfigs")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
