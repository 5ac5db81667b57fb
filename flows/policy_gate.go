package flows

// PolicyEnforced reports whether this vpcflow enforces the policy keys
// (acls, acl, security_groups). While it does not, Validate refuses a
// blueprint that uses them, and a source that could write them (the
// CloudStack source) leaves them out and lists them as skipped.
func PolicyEnforced() bool { return policyEnforced }

// SetPolicyEnforcedForTest sets the gate for the rest of one test of
// another package (the CloudStack source's golden tests) and restores it
// when the test ends. Such tests must not run in parallel. Not for
// production code.
func SetPolicyEnforcedForTest(t interface {
	Helper()
	Cleanup(func())
}, on bool) {
	t.Helper()
	old := policyEnforced
	policyEnforced = on
	t.Cleanup(func() { policyEnforced = old })
}
