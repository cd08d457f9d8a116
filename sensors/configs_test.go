package sensors_test

import (
	"log/slog"
	"testing"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
	_ "github.com/katka-io/katka/sensors/all"
)

// TestShippedConfigsStart loads and validates the ready configs and builds their
// inputs on a real broker, as `katka serve --config` does.
func TestShippedConfigsStart(t *testing.T) {
	for _, name := range []string{"katka.yaml", "factory.yaml", "vehicle.yaml"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Load("../configs/" + name)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("configs/%s does not validate:\n%v", name, err)
			}
			b, err := broker.Open(broker.Options{DataDir: t.TempDir(), AutoCreate: true, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ins, err := sensors.Build(cfg.Sensors, sensors.Env{Broker: b})
			if err != nil {
				t.Fatalf("configs/%s: %v", name, err)
			}
			if len(ins) == 0 {
				t.Fatalf("configs/%s starts no input", name)
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	names := sensors.Names()
	for _, want := range []string{"modbus", "mqtt", "simulated", "system"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("input %s not registered (have %v)", want, names)
		}
	}
	if len(sensors.Collectors()) == 0 {
		t.Error("no collectors registered")
	}
}
