package sdk

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/katka-io/katka/plugins/proto"
)

type partitionerServer struct {
	pb.UnimplementedPartitionerServer
	impl Partitioner
}

func (s *partitionerServer) Configure(_ context.Context, r *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	if err := s.impl.Configure(r.GetInstance(), Settings(r.GetSettings())); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configure: %v", err)
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *partitionerServer) Partition(ctx context.Context, r *pb.PartitionRequest) (*pb.PartitionResponse, error) {
	parts, err := s.impl.Partition(ctx, r.GetTopic(), r.GetPartitions(), FromProto(r.GetRecords()))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "partition: %v", err)
	}
	if len(parts) != len(r.GetRecords()) {
		return nil, status.Errorf(codes.Internal, "partition: %d partitions for %d records", len(parts), len(r.GetRecords()))
	}
	return &pb.PartitionResponse{Partitions: parts}, nil
}

type processorServer struct {
	pb.UnimplementedProcessorServer
	impl  Processor
	state *State
}

func (s *processorServer) Configure(_ context.Context, r *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	m := make(map[string][]byte, len(r.GetState()))
	for _, e := range r.GetState() {
		if !e.GetDeleted() {
			m[e.GetKey()] = e.GetValue()
		}
	}
	s.state = NewState(m)
	if err := s.impl.Configure(r.GetInstance(), Settings(r.GetSettings()), s.state); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configure: %v", err)
	}
	s.state.changes() // restoring is not a change
	return &pb.ConfigureResponse{}, nil
}

func (s *processorServer) Process(ctx context.Context, r *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	out, err := s.impl.Process(ctx, FromProto(r.GetRecords()), s.state)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "process: %v", err)
	}
	return &pb.ProcessResponse{Records: ToProto(out), State: s.state.changes()}, nil
}

type sinkServer struct {
	pb.UnimplementedSinkServer
	impl Sink
}

func (s *sinkServer) Configure(_ context.Context, r *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	if err := s.impl.Configure(r.GetInstance(), Settings(r.GetSettings())); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configure: %v", err)
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *sinkServer) Write(ctx context.Context, r *pb.WriteRequest) (*pb.WriteResponse, error) {
	if err := s.impl.Write(ctx, FromProto(r.GetRecords())); err != nil {
		return nil, status.Errorf(codes.Internal, "write: %v", err)
	}
	return &pb.WriteResponse{}, nil
}

type sourceServer struct {
	pb.UnimplementedSourceServer
	impl Source
}

func (s *sourceServer) Configure(_ context.Context, r *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	if err := s.impl.Configure(r.GetInstance(), Settings(r.GetSettings())); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configure: %v", err)
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *sourceServer) Read(r *pb.ReadRequest, stream pb.Source_ReadServer) error {
	err := s.impl.Read(stream.Context(), r.GetPosition(), func(recs []Record, pos []byte) error {
		if err := stream.Send(&pb.SourceBatch{Records: ToProto(recs), Position: pos}); err != nil {
			return fmt.Errorf("send batch: %w", err)
		}
		return nil
	})
	if err != nil && stream.Context().Err() == nil {
		return status.Errorf(codes.Internal, "read: %v", err)
	}
	return nil
}
