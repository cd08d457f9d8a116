package sensors_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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
			t.Chdir("..") // the configs name their files (a DBC, a CAN log) from the repository root
			cfg, err := config.Load("configs/" + name)
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
	for _, want := range []string{"can", "modbus", "mqtt", "simulated", "system"} {
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

// TestInputSamples keeps each input's sample config (sensors/<name>/sample.yaml),
// its defaults and configs/katka.yaml equal: the sample loads to exactly the
// defaults, documents every key of the input's config type, and appears in
// configs/katka.yaml word for word under sensors:.
func TestInputSamples(t *testing.T) {
	shipped, err := os.ReadFile("../configs/katka.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := config.InputNames()
	if len(names) < 4 {
		t.Fatalf("only %v registered", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			sample, _ := config.InputSample(name)
			if !strings.HasPrefix(sample, "#") || !strings.Contains(sample, "\n"+name+":\n") {
				t.Fatalf("sample of %s does not start with its comment and %q:\n%s", name, name+":", sample)
			}
			indented := "  " + strings.ReplaceAll(strings.TrimSuffix(sample, "\n"), "\n", "\n  ") + "\n"
			indented = strings.ReplaceAll(indented, "\n  \n", "\n\n")
			if !strings.Contains(string(shipped), "\n"+indented) {
				t.Errorf("configs/katka.yaml does not hold the sample of %s (sensors/%s/sample.yaml) word for word", name, name)
			}
			path := filepath.Join(t.TempDir(), "katka.yaml")
			if err := os.WriteFile(path, []byte("sensors:\n"+indented), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := config.Default(); !reflect.DeepEqual(got.Sensors.Input(name), want.Sensors.Input(name)) {
				t.Errorf("sample of %s differs from its defaults:\n got %+v\nwant %+v", name, got.Sensors.Input(name), want.Sensors.Input(name))
			}
			for _, key := range yamlKeys(reflect.TypeOf(config.Default().Sensors.Input(name)).Elem()) {
				if !strings.Contains(sample, key+":") && !strings.Contains(sample, key+",") {
					t.Errorf("sample of %s does not document key %q", name, key)
				}
			}
		})
	}
}

// yamlKeys lists every yaml key reachable from the struct t, list elements included.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "-" || key == "" {
			continue
		}
		keys = append(keys, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(ft)...)
		}
	}
	return keys
}
