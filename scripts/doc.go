// Package scripts holds the shell scripts behind the Makefile's targets
// (run-stack.sh for make run, fuzz.sh for make fuzz); its tests run them
// as a person would.
package scripts
