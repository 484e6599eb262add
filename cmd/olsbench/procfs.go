package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// defaultClockTicks is USER_HZ, the unit of /proc/PID/stat CPU times. It is
// 100 on every mainstream Linux architecture; the auxiliary vector says so
// for certain, and this is only the fallback when it cannot be read.
const defaultClockTicks = 100

// atClkTck is the auxiliary-vector tag carrying sysconf(_SC_CLK_TCK).
const atClkTck = 17

// ProcSample is a server process's accumulated CPU time and resident memory
// at one instant.
type ProcSample struct {
	CPUSeconds float64
	RSSBytes   int64
}

// parseStatCPUTicks returns utime+stime, in clock ticks, from the contents of
// /proc/PID/stat. The command name (field 2) is in parentheses and may itself
// contain spaces and parentheses, so fields are counted from the last ')'.
func parseStatCPUTicks(stat string) (uint64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("stat: no command name")
	}
	// After ")" come fields 3 (state), 4, ...; utime is 14 and stime 15.
	fields := strings.Fields(stat[end+1:])
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3
	if len(fields) <= stimeIdx {
		return 0, fmt.Errorf("stat: only %d fields after the command name", len(fields))
	}
	ut, err := strconv.ParseUint(fields[utimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: utime: %w", err)
	}
	st, err := strconv.ParseUint(fields[stimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: stime: %w", err)
	}
	return ut + st, nil
}

// parseStatusRSS returns VmRSS in bytes from the contents of
// /proc/PID/status. The kernel always reports it in kB (KiB).
func parseStatusRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, found := strings.CutPrefix(line, "VmRSS:")
		if !found {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: unexpected VmRSS line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	// Kernel threads and zombies have no VmRSS line.
	return 0, errors.New("status: no VmRSS line (process exited?)")
}

// parseAuxvClockTicks finds AT_CLKTCK in the raw contents of /proc/self/auxv:
// (tag, value) pairs of native-endian words of wordSize bytes.
func parseAuxvClockTicks(auxv []byte, wordSize int) (int64, bool) {
	if wordSize != 4 && wordSize != 8 {
		return 0, false
	}
	word := func(b []byte) uint64 {
		if wordSize == 8 {
			return binary.NativeEndian.Uint64(b)
		}
		return uint64(binary.NativeEndian.Uint32(b))
	}
	for i := 0; i+2*wordSize <= len(auxv); i += 2 * wordSize {
		tag, val := word(auxv[i:]), word(auxv[i+wordSize:])
		if tag == 0 { // AT_NULL ends the vector
			break
		}
		if tag == atClkTck && val > 0 && val < 1e6 {
			return int64(val), true
		}
	}
	return 0, false
}

// clockTicks returns the kernel's USER_HZ, read from the auxiliary vector
// because Go cannot call sysconf without cgo.
func clockTicks() int64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return defaultClockTicks
	}
	if hz, ok := parseAuxvClockTicks(b, strconv.IntSize/8); ok {
		return hz
	}
	return defaultClockTicks
}

// procReader samples one process through /proc.
type procReader struct {
	pid int
	hz  float64
}

func newProcReader(pid int) *procReader {
	return &procReader{pid: pid, hz: float64(clockTicks())}
}

// sample reads the process's CPU seconds and RSS.
func (p *procReader) sample() (ProcSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return ProcSample{}, err
	}
	ticks, err := parseStatCPUTicks(string(stat))
	if err != nil {
		return ProcSample{}, err
	}
	rss, err := p.rss()
	if err != nil {
		return ProcSample{}, err
	}
	return ProcSample{CPUSeconds: float64(ticks) / p.hz, RSSBytes: rss}, nil
}

// rss reads only the resident set size.
func (p *procReader) rss() (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, err
	}
	return parseStatusRSS(string(status))
}
