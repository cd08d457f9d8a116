package host

// SetMaxStateBytes sets the cap on one processor's state for a test and
// returns the function restoring it.
func SetMaxStateBytes(n int64) (restore func()) {
	old := maxStateBytes
	maxStateBytes = n
	return func() { maxStateBytes = old }
}
