package main

import (
	"encoding/binary"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestParseStatCPUTicks(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    uint64
		wantErr string
	}{
		{
			name: "plain",
			// Real line of a Go server: utime 1234, stime 567.
			stat: "4242 (openlivesync) S 1 4242 4242 0 -1 4194560 2513 0 0 0 1234 567 0 0 20 0 9 0 123456 1261568000 3500 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			want: 1801,
		},
		{
			name: "command with spaces and parentheses",
			stat: "77 (my (weird) srv) R 1 77 77 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5 0 0\n",
			want: 30,
		},
		{
			name:    "truncated",
			stat:    "77 (srv) R 1 77 77 0",
			wantErr: "fields after the command name",
		},
		{
			name:    "no command",
			stat:    "garbage",
			wantErr: "no command name",
		},
		{
			name:    "non-numeric utime",
			stat:    "77 (srv) R 1 77 77 0 -1 0 0 0 0 0 x 20 0 0 20 0 1 0 5 0 0",
			wantErr: "utime",
		},
		{
			name:    "empty",
			stat:    "",
			wantErr: "no command name",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPUTicks(tc.stat)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	const status = `Name:	openlivesync
Umask:	0022
State:	S (sleeping)
VmPeak:	 1232772 kB
VmSize:	 1232772 kB
VmHWM:	   60000 kB
VmRSS:	   51234 kB
RssAnon:	   40000 kB
Threads:	9
`
	got, err := parseStatusRSS(status)
	if err != nil || got != 51234*1024 {
		t.Fatalf("got %d, %v", got, err)
	}
	for _, tc := range []struct{ name, status, wantErr string }{
		{"kernel thread", "Name:\tkthreadd\nState:\tS\n", "no VmRSS"},
		{"bad unit", "VmRSS:\t12 MB\n", "unexpected VmRSS"},
		{"bad number", "VmRSS:\tlots kB\n", "VmRSS"},
		{"no newline at end", "VmRSS:\t7 kB", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseStatusRSS(tc.status)
			if tc.wantErr == "" {
				if err != nil || v != 7*1024 {
					t.Fatalf("got %d, %v", v, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseAuxvClockTicks(t *testing.T) {
	auxv := func(ws int, pairs ...uint64) []byte {
		b := make([]byte, len(pairs)*ws)
		for i, p := range pairs {
			if ws == 8 {
				binary.NativeEndian.PutUint64(b[i*8:], p)
			} else {
				binary.NativeEndian.PutUint32(b[i*4:], uint32(p))
			}
		}
		return b
	}
	tests := []struct {
		name   string
		data   []byte
		ws     int
		want   int64
		wantOK bool
	}{
		{"64-bit", auxv(8, 33, 0xdead, 16, 0xbfebfbff, 6, 4096, 17, 100, 3, 0x400040, 0, 0), 8, 100, true},
		{"32-bit", auxv(4, 6, 4096, 17, 250, 0, 0), 4, 250, true},
		{"absent", auxv(8, 6, 4096, 0, 0), 8, 0, false},
		{"after AT_NULL is ignored", auxv(8, 0, 0, 17, 100), 8, 0, false},
		{"truncated pair", auxv(8, 6, 4096, 17)[:20], 8, 0, false},
		{"empty", nil, 8, 0, false},
		{"bad word size", auxv(8, 17, 100), 2, 0, false},
		{"zero value", auxv(8, 17, 0, 0, 0), 8, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAuxvClockTicks(tc.data, tc.ws)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("got %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestProcReaderSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux-only")
	}
	if hz := clockTicks(); hz <= 0 || hz > 10000 {
		t.Fatalf("clock ticks = %d", hz)
	}
	p := newProcReader(os.Getpid())
	s, err := p.sample()
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes <= 0 || s.CPUSeconds < 0 {
		t.Fatalf("sample = %+v", s)
	}
	if _, err := newProcReader(999999999).sample(); err == nil {
		t.Fatal("sampling a missing process succeeded")
	}
	if selfCPUSeconds() <= 0 {
		t.Fatal("own CPU time is zero")
	}
}

func TestRaiseNoFile(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("raiseNoFile is for Linux and macOS")
	}
	got, err := raiseNoFile(64)
	if err != nil || got < 64 {
		t.Fatalf("raiseNoFile(64) = %d, %v", got, err)
	}
}
