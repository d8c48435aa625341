package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// securitySections are the nested sections of etcd's configuration file
// and the prefix their keys take as flags: client-transport-security's
// cert-file is --cert-file, peer-transport-security's is
// --peer-cert-file.
var securitySections = map[string]string{
	"client-transport-security": "",
	"peer-transport-security":   "peer-",
}

// securityKeys maps the keys of a security section whose flag is not the
// prefix plus the key.
var securityKeys = map[string]string{
	"allowed-cn":                   "cert-allowed-cn",
	"allowed-hostname":             "cert-allowed-hostname",
	"skip-client-san-verification": "skip-client-san-verification",
}

// applyConfigFile sets the flags of fs from etcd's YAML configuration
// file (--config-file): each top-level key is a flag's name and takes
// the flag's value (lists joined with commas; durations as etcd writes
// them, nanoseconds, or as strings like 5s), and the transport security
// sections set the TLS flags. It returns a warning for each key that is
// no flag of etcd's.
func applyConfigFile(fs *flag.FlagSet, path string) (warnings []string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config-file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("--config-file %s: not a YAML mapping: %w", path, err)
	}
	set := func(name string, v any) error {
		f := fs.Lookup(name)
		if f == nil {
			warnings = append(warnings, fmt.Sprintf("--config-file %s: key %q is not an etcd setting; it is ignored", path, name))
			return nil
		}
		val, ok := flagValue(f, v)
		if !ok {
			return nil // null, or an empty value: the default stands
		}
		if err := fs.Set(name, val); err != nil {
			return fmt.Errorf("--config-file %s: %s: %w", path, name, err)
		}
		return nil
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		prefix, nested := securitySections[k]
		if !nested {
			if err := set(k, doc[k]); err != nil {
				return nil, err
			}
			continue
		}
		section, ok := doc[k].(map[string]any)
		if !ok {
			if doc[k] == nil {
				continue
			}
			return nil, fmt.Errorf("--config-file %s: %s must be a mapping", path, k)
		}
		sub := make([]string, 0, len(section))
		for sk := range section {
			sub = append(sub, sk)
		}
		sort.Strings(sub)
		for _, sk := range sub {
			name := sk
			if mapped, ok := securityKeys[sk]; ok {
				name = mapped
			}
			if err := set(prefix+name, section[sk]); err != nil {
				return nil, err
			}
		}
	}
	return warnings, nil
}

// flagValue renders a YAML value as the flag's text; ok is false for a
// value that leaves the default as it is (null, "", an empty list, and
// false or zero where that is the flag's default).
func flagValue(f *flag.Flag, v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case nil:
		return "", false
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = fmt.Sprint(p)
		}
		s = strings.Join(parts, ",")
	case int:
		s = strconv.Itoa(v)
		if isDuration(f) {
			s = time.Duration(v).String() // etcd writes durations in nanoseconds
		}
	default:
		s = fmt.Sprint(v)
	}
	if s == "" || s == f.DefValue {
		return "", false
	}
	return s, true
}

// isDuration reports whether f takes a duration: its default is one
// with a unit (a bare number is not).
func isDuration(f *flag.Flag) bool {
	if _, err := strconv.ParseFloat(f.DefValue, 64); err == nil {
		return false
	}
	_, err := time.ParseDuration(f.DefValue)
	return err == nil
}
