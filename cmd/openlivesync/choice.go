package main

import "log/slog"

// choice is a string flag that takes only some values. It refuses the
// others when it is set, so that package flag and parseConfig report the
// mistake as they report a bad number: naming the flag, or the
// OPENLIVESYNC_* variable it came from.
type choice struct {
	p    *string
	ok   func(string) bool
	want string // the error: what the flag takes
}

func (c *choice) String() string {
	if c == nil || c.p == nil { // the zero value flag.PrintDefaults makes
		return ""
	}
	return *c.p
}

func (c *choice) Set(s string) error {
	if !c.ok(s) {
		return choiceError(c.want)
	}
	*c.p = s
	return nil
}

// choiceError is choice's error: only what the flag wants, as package
// flag prefixes the value and the flag's name.
type choiceError string

func (e choiceError) Error() string { return string(e) }

// isLogFormat reports whether s is a -log-format.
func isLogFormat(s string) bool { return s == "text" || s == "json" }

// isLogLevel reports whether s is a -log-level slog reads.
func isLogLevel(s string) bool {
	var lvl slog.Level
	return lvl.UnmarshalText([]byte(s)) == nil
}
