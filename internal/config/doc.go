// Package config reads groupflow's configuration from the environment, where
// every secret may also come from a file (<NAME>_FILE), collecting every
// problem so a bad start-up fails with one clear line instead of the first
// error of many.
package config
