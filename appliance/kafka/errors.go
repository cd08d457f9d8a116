package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/katka-io/katka/appliance/broker"
)

// Kafka error codes used by this package (see Kafka's Errors.java).
const (
	errNone                     int16 = 0
	errOffsetOutOfRange         int16 = 1
	errCorruptMessage           int16 = 2
	errUnknownTopicOrPartition  int16 = 3
	errNotLeaderOrFollower      int16 = 6
	errRequestTimedOut          int16 = 7
	errMessageTooLarge          int16 = 10
	errNotEnoughReplicas        int16 = 19
	errNotEnoughReplicasAfter   int16 = 20
	errInvalidTopic             int16 = 17
	errInvalidRequiredAcks      int16 = 21
	errUnsupportedVersion       int16 = 35
	errTopicAlreadyExists       int16 = 36
	errInvalidPartitions        int16 = 37
	errInvalidReplicationFactor int16 = 38
	errInvalidReplicaAssignment int16 = 39
	errInvalidConfig            int16 = 40
	errInvalidRequest           int16 = 42
	errOutOfOrderSequence       int16 = 45
	errInvalidProducerEpoch     int16 = 47
	errTransactionalIDAuth      int16 = 53
	errKafkaStorageError        int16 = 56
	errFetchSessionIDNotFound   int16 = 70
	errFencedLeaderEpoch        int16 = 74
	errNoReassignmentInProgress int16 = 85
	errInvalidRecord            int16 = 87
	errUnknownTopicID           int16 = 100
)

// codeError is an error that carries the Kafka error code to answer with.
type codeError struct {
	code int16
	msg  string
}

func (e *codeError) Error() string { return e.msg }

func codeErrorf(code int16, format string, args ...any) error {
	return &codeError{code: code, msg: fmt.Sprintf(format, args...)}
}

// errorCode maps an error from the broker or from request validation to the
// Kafka error code a client expects.
func errorCode(err error) int16 {
	var ce *codeError
	var ke *kerr.Error // errors of the cell (CellView) carry Kafka's
	switch {
	case err == nil:
		return errNone
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ke):
		return ke.Code
	case errors.Is(err, broker.ErrUnknownTopic), errors.Is(err, broker.ErrUnknownPartition):
		return errUnknownTopicOrPartition
	case errors.Is(err, broker.ErrTopicExists):
		return errTopicAlreadyExists
	case errors.Is(err, broker.ErrInvalidTopic):
		return errInvalidTopic
	case errors.Is(err, broker.ErrInvalidPartitions):
		return errInvalidPartitions
	case errors.Is(err, broker.ErrOffsetOutOfRange):
		return errOffsetOutOfRange
	case errors.Is(err, broker.ErrCorrupt):
		return errKafkaStorageError
	case errors.Is(err, broker.ErrNotEnoughReplicas):
		return errNotEnoughReplicas
	case errors.Is(err, broker.ErrNotEnoughReplicasAfterAppend):
		return errNotEnoughReplicasAfter
	case errors.Is(err, broker.ErrNotLeader):
		return errNotLeaderOrFollower
	case errors.Is(err, broker.ErrFencedEpoch):
		return errFencedLeaderEpoch
	case errors.Is(err, broker.ErrReplicationTimeout):
		return errRequestTimedOut
	case errors.Is(err, broker.ErrClosed):
		// Shutting down: the client refreshes metadata and retries elsewhere or later.
		return errNotLeaderOrFollower
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errRequestTimedOut
	default:
		return errKafkaStorageError
	}
}

// errorMessage is the text put into responses that carry one.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	m := err.Error()
	return &m
}
