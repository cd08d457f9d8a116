// Package all imports every katka input so that each registers itself with the
// sensors registry; import it once, for its side effect, where inputs are started.
package all

import (
	// Each input registers itself in its init.
	_ "github.com/katka-io/katka/sensors/can"
	_ "github.com/katka-io/katka/sensors/modbus"
	_ "github.com/katka-io/katka/sensors/mqtt"
	_ "github.com/katka-io/katka/sensors/opcua"
	_ "github.com/katka-io/katka/sensors/simulated"
	_ "github.com/katka-io/katka/sensors/system"
)
