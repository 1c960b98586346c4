// Package deploytest holds no code, only the tests that keep deploy/ true to
// the binaries: the NATS permissions in deploy/nats/accounts.conf are loaded
// into a real server and the ingest, a worker and a caller run end to end
// under them (and are refused outside them); every manifest is parsed and its
// images, commands, ports, probe paths and environment variable names are
// checked against what the built binaries actually read and serve.
package deploytest
