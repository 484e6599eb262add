package main

import (
	"fmt"
	"strconv"
	"strings"
)

// listFlag is a flag that takes several values: comma-separated, the flag
// repeated, or both (-url A,B -url C is A, B, C). Its first use replaces the
// default instead of adding to it, so that -url names exactly the nodes
// given.
type listFlag struct {
	vals []string
	set  bool
}

// String joins the values with commas, the form Set accepts.
func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.vals, ",")
}

// Set adds the comma-separated values of one use of the flag.
func (l *listFlag) Set(s string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			return fmt.Errorf("empty item in %q", s)
		}
		l.vals = append(l.vals, p)
	}
	return nil
}

// parsePIDs turns a -server-pid or -redis-pid list into process ids. A pid
// named twice is refused: its CPU time would be counted twice.
func parsePIDs(name string, vals []string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, v := range vals {
		pid, err := strconv.Atoi(v)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("-%s %s: want a process id", name, v)
		}
		if seen[pid] {
			return nil, fmt.Errorf("-%s %d: named twice", name, pid)
		}
		seen[pid] = true
		out = append(out, pid)
	}
	return out, nil
}
