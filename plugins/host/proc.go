package host

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/katka-io/katka/plugins/proto"
	"github.com/katka-io/katka/plugins/sdk"
)

// proc is one running plugin process and its gRPC client.
type proc struct {
	client *plugin.Client
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	pid    int

	partitioner pb.PartitionerClient
	processor   pb.ProcessorClient
	sink        pb.SinkClient
	source      pb.SourceClient
}

// afterVerify, when set by a test, runs after the executable's sha256 was
// checked and before it is executed (to swap the file on disk in between).
var afterVerify func(m Manifest)

// startProc verifies m's executable and starts it; the returned proc is
// connected but not configured.
func startProc(m Manifest, startTimeout time.Duration, log *slog.Logger) (*proc, error) {
	if log == nil {
		log = slog.Default()
	}
	// On Linux, cmd runs a sealed in-memory copy whose sha256 was checked
	// (launch_linux.go), so go-plugin's own check of a path (SecureConfig)
	// would add nothing but a second window.
	cmd, sealed, err := pluginCmd(m)
	if err != nil {
		return nil, err
	}
	defer sealed.Close() // the child holds its own descriptor once started
	// The plugin runs in katka's working directory, so relative paths in its
	// settings mean what they mean in katka's config; its own directory is
	// in KATKA_PLUGIN_DIR. Its environment is the minimal one of pluginEnv,
	// not katka's (SkipHostEnv).
	cmd.Env = pluginEnv(m, nil)
	cmd.SysProcAttr = sysProcAttr()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          plugin.PluginSet{m.Kind: &sdk.GRPCPlugin{Kind: m.Kind}},
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
		Stderr:           &logWriter{log: log},
		// What the plugin writes to os.Stdout/os.Stderr after go-plugin's
		// Serve redirected them arrives over gRPC; log it too.
		SyncStdout:   &logWriter{log: log},
		SyncStderr:   &logWriter{log: log},
		StartTimeout: startTimeout,
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes), grpc.MaxCallSendMsgSize(sdk.MaxMessageBytes))},
	})
	p := &proc{client: client, cmd: cmd}
	rpc, err := client.Client()
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("plugin %s: start %s: %w", m.Name, m.Path(), err)
	}
	raw, err := rpc.Dispense(m.Kind)
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("plugin %s: dispense %s: %w", m.Name, m.Kind, err)
	}
	conn, ok := raw.(*grpc.ClientConn)
	if !ok {
		p.kill()
		return nil, fmt.Errorf("plugin %s: unexpected client type %T", m.Name, raw)
	}
	p.conn = conn
	if cmd.Process != nil {
		p.pid = cmd.Process.Pid
	}
	switch m.Kind {
	case sdk.KindPartitioner:
		p.partitioner = pb.NewPartitionerClient(conn)
	case sdk.KindProcessor:
		p.processor = pb.NewProcessorClient(conn)
	case sdk.KindSink:
		p.sink = pb.NewSinkClient(conn)
	case sdk.KindSource:
		p.source = pb.NewSourceClient(conn)
	}
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool { return p.client.Exited() }

// kill ends the process at once (SIGKILL) and releases the client. A plugin
// that hangs gets no graceful shutdown: katka's positions make that safe.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	done := make(chan struct{})
	go func() { p.client.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// configure sends the settings (and a processor's saved state).
func (p *proc) configure(ctx context.Context, req *pb.ConfigureRequest) error {
	var err error
	switch {
	case p.partitioner != nil:
		_, err = p.partitioner.Configure(ctx, req)
	case p.processor != nil:
		_, err = p.processor.Configure(ctx, req)
	case p.sink != nil:
		_, err = p.sink.Configure(ctx, req)
	case p.source != nil:
		_, err = p.source.Configure(ctx, req)
	}
	return err
}
