package admin

// Exported for the tests of package admin_test.
var (
	TokenHash  = tokenHash
	Neutralise = neutralise
	LoginDelay = loginDelay
)
