package opcua

import (
	"os"

	"github.com/gopcua/opcua/debug"
)

func init() { debug.Enable = os.Getenv("OPCUA_DEBUG") != "" }
