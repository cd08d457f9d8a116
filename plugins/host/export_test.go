package host

// SetMaxStateBytes sets the cap on one processor's state for a test and
// returns the function restoring it.
func SetMaxStateBytes(n int64) (restore func()) {
	old := maxStateBytes
	maxStateBytes = n
	return func() { maxStateBytes = old }
}

// SetAfterVerify installs f to run after an executable's sha256 was checked
// and before it is executed, and returns the function removing it.
func SetAfterVerify(f func(m Manifest)) (restore func()) {
	old := afterVerify
	afterVerify = f
	return func() { afterVerify = old }
}
