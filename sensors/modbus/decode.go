package modbus

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
)

// maxBlockRegisters is the most registers one Read Holding/Input Registers request
// may ask for (Modbus application protocol, function codes 0x03 and 0x04).
const maxBlockRegisters = 125

// register is one configured reading, checked and with its defaults applied.
type register struct {
	name      string
	input     bool // input table (function 0x04); else holding (0x03)
	address   uint16
	words     int // 1 or 2 registers
	typ       string
	swapBytes bool // byte_order little: the low byte of each register comes first
	lowFirst  bool // word_order low_first: the low word of 32-bit values comes first
	scale     float64
	offset    float64
	unit      string
}

// block is one read request: count contiguous registers of one table from start,
// and the readings they hold.
type block struct {
	input bool
	start uint16
	count uint16
	regs  []register
}

// newRegister checks one configured register and applies its defaults.
func newRegister(r RegisterConfig) (register, error) {
	reg := register{name: r.Name, typ: r.Type, scale: r.Scale, offset: r.Offset, unit: r.Unit}
	if r.Name == "" {
		return reg, fmt.Errorf("register at address %d: name is empty", r.Address)
	}
	switch r.Table {
	case "holding":
	case "input":
		reg.input = true
	default:
		return reg, fmt.Errorf("register %s: table %q is not known (allowed: holding, input)", r.Name, r.Table)
	}
	switch r.Type {
	case "int16", "uint16":
		reg.words = 1
	case "int32", "uint32", "float32":
		reg.words = 2
	default:
		return reg, fmt.Errorf("register %s: type %q is not known (allowed: int16, uint16, int32, uint32, float32)", r.Name, r.Type)
	}
	if r.Address < 0 || r.Address+reg.words > 65536 {
		return reg, fmt.Errorf("register %s: address %d is out of range (allowed: 0..%d for %s)", r.Name, r.Address, 65536-reg.words, r.Type)
	}
	reg.address = uint16(r.Address)
	switch r.ByteOrder {
	case "", "big":
	case "little":
		reg.swapBytes = true
	default:
		return reg, fmt.Errorf("register %s: byte_order %q is not known (allowed: big, little)", r.Name, r.ByteOrder)
	}
	switch r.WordOrder {
	case "", "high_first":
	case "low_first":
		reg.lowFirst = true
	default:
		return reg, fmt.Errorf("register %s: word_order %q is not known (allowed: high_first, low_first)", r.Name, r.WordOrder)
	}
	if reg.scale == 0 {
		reg.scale = 1
	}
	if math.IsNaN(reg.scale) || math.IsInf(reg.scale, 0) || math.IsNaN(reg.offset) || math.IsInf(reg.offset, 0) {
		return reg, fmt.Errorf("register %s: scale and offset must be finite numbers", r.Name)
	}
	return reg, nil
}

// plan groups registers into as few read requests as possible without reading any
// address that is not configured: registers of one table that touch or overlap share
// a request of at most maxBlockRegisters registers.
func plan(regs []register) []block {
	sorted := make([]register, len(regs))
	copy(sorted, regs)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].input != sorted[j].input {
			return !sorted[i].input
		}
		return sorted[i].address < sorted[j].address
	})
	var blocks []block
	for _, r := range sorted {
		end := int(r.address) + r.words // one past the last register
		if n := len(blocks); n > 0 {
			b := &blocks[n-1]
			bEnd := int(b.start) + int(b.count)
			if b.input == r.input && int(r.address) <= bEnd && max(end, bEnd)-int(b.start) <= maxBlockRegisters {
				b.count = uint16(max(end, bEnd) - int(b.start))
				b.regs = append(b.regs, r)
				continue
			}
		}
		blocks = append(blocks, block{input: r.input, start: r.address, count: uint16(r.words), regs: []register{r}})
	}
	return blocks
}

// decode turns the words of one reading, as they came off the wire (each register
// big-endian, in address order), into its scaled value. It fails on a wrong number of
// words and on a float that is not a finite number, never panics.
func (r register) decode(words []uint16) (float64, error) {
	if len(words) != r.words {
		return 0, fmt.Errorf("register %s: %d words for %s, want %d", r.name, len(words), r.typ, r.words)
	}
	w := make([]uint16, len(words))
	for i, v := range words {
		if r.swapBytes {
			v = bits.ReverseBytes16(v)
		}
		w[i] = v
	}
	var raw float64
	switch r.typ {
	case "int16":
		raw = float64(int16(w[0]))
	case "uint16":
		raw = float64(w[0])
	default:
		hi, lo := w[0], w[1]
		if r.lowFirst {
			hi, lo = lo, hi
		}
		u := uint32(hi)<<16 | uint32(lo)
		switch r.typ {
		case "int32":
			raw = float64(int32(u))
		case "uint32":
			raw = float64(u)
		case "float32":
			f := math.Float32frombits(u)
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return 0, fmt.Errorf("register %s: float32 0x%08x is not a finite number", r.name, u)
			}
			raw = float64(f)
		default:
			return 0, fmt.Errorf("register %s: type %q is not known", r.name, r.typ)
		}
	}
	v := raw*r.scale + r.offset
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("register %s: %v*%v%+v is not a finite number", r.name, raw, r.scale, r.offset)
	}
	return v, nil
}
