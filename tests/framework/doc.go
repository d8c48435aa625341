// Package framework starts synod clusters for tests and holds what
// cluster tests share: free loopback addresses, waits on conditions,
// contexts with deadlines, loggers and seeds.
//
// Environment variables, one scheme for every test package:
//
//	SYNOD_TEST_LOG=1          members log to stderr (debug level)
//	SYNOD_<NAME>_SEED=<n>     replay the randomized test that printed seed n
//	                          (NAME as the test prints it, e.g. WATCH, CHAOS)
package framework
