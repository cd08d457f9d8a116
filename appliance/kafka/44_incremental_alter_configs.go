package kafka

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// handleIncrementalAlterConfigs sets, deletes (reverts to the default),
// appends to or subtracts from topic configs. All changes to one resource are
// validated before any is applied.
func (s *Server) handleIncrementalAlterConfigs(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for i := range req.Resources {
		rr := &req.Resources[i]
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if err := s.alterTopicConfigs(c.remote, rr, req.ValidateOnly); err != nil {
			sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}

// alterTopicConfigs applies one resource's changes. Internal topics answer
// INVALID_TOPIC_EXCEPTION: katka sets their retention and cleanup itself.
func (s *Server) alterTopicConfigs(client string, rr *kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) error {
	if rr.ResourceType != kmsg.ConfigResourceTypeTopic {
		return codeErrorf(errInvalidRequest, "only topic configs can be altered; broker settings live in katka.yaml")
	}
	if broker.InternalTopic(rr.ResourceName) {
		return s.internalTopicError(client, "alter the config of", rr.ResourceName)
	}
	info, err := s.b.Topic(rr.ResourceName)
	if err != nil {
		return err
	}
	cfg := info.Config
	seen := map[string]bool{}
	for _, kv := range rr.Configs {
		if seen[kv.Name] {
			return codeErrorf(errInvalidRequest, "config %s is altered more than once", kv.Name)
		}
		seen[kv.Name] = true
		d := findTopicConfig(kv.Name)
		if d == nil {
			return codeErrorf(errInvalidConfig, "unknown or unsupported topic config %q (supported: %s)", kv.Name, supportedConfigNames())
		}
		switch kv.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if err := setTopicConfig(&cfg, kv.Name, kv.Value); err != nil {
				return err
			}
		case kmsg.IncrementalAlterConfigOpDelete:
			if d.clear == nil {
				return codeErrorf(errInvalidConfig, "topic config %s is fixed", kv.Name)
			}
			d.clear(&cfg)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if d.typ != kmsg.ConfigTypeList {
				return codeErrorf(errInvalidConfig, "config %s is not a list; append and subtract apply to lists only", kv.Name)
			}
			if kv.Value == nil {
				return codeErrorf(errInvalidConfig, "null value for topic config %q", kv.Name)
			}
			cur := splitList(d.get(cfg))
			for _, v := range splitList(*kv.Value) {
				if kv.Op == kmsg.IncrementalAlterConfigOpAppend {
					if !contains(cur, v) {
						cur = append(cur, v)
					}
				} else {
					cur = remove(cur, v)
				}
			}
			joined := strings.Join(cur, ",")
			if err := setTopicConfig(&cfg, kv.Name, &joined); err != nil {
				return err
			}
		default:
			return codeErrorf(errInvalidRequest, "unknown config operation %d", kv.Op)
		}
	}
	if validateOnly {
		return nil
	}
	if err := s.b.SetTopicConfig(rr.ResourceName, cfg); err != nil {
		return err
	}
	s.log.Info("kafka topic config altered", "topic", rr.ResourceName)
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

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func remove(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
