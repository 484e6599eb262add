package testsvc

import (
	"context"
	"errors"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestTableName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	seen := map[string]bool{}
	for range 20 {
		name := TableName(t, "olschat")
		if !valid.MatchString(name) || !strings.HasPrefix(name, "olschat_") {
			t.Fatalf("TableName = %q; want a lower-case identifier of at most 63 characters", name)
		}
		if seen[name] {
			t.Fatalf("TableName returned %q twice", name)
		}
		seen[name] = true
	}
	t.Run(strings.Repeat("a very long subtest name ", 5), func(t *testing.T) {
		if name := TableName(t, "olschat"); len(name) > 63 || !valid.MatchString(name) {
			t.Fatalf("TableName = %q (%d characters)", name, len(name))
		}
	})
}

func TestRequire(t *testing.T) {
	Require(t, "nothing", nil) // reachable: a no-op
	t.Setenv(RequireEnv, "")
	var skipped bool
	t.Run("missing service", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Require(t, "Imaginary DB", errors.New("connection refused"))
		t.Error("Require returned for a missing service")
	})
	if !skipped {
		t.Fatal("a missing service did not skip the test")
	}
}

func TestServicesAnswerOrSkip(t *testing.T) {
	// Each either returns an address or skips (fails under RequireEnv).
	for name, get := range map[string]func(testing.TB) string{
		"postgres": PostgresDSN,
		"mysql":    MySQLDSN,
		"redis":    RedisAddr,
	} {
		t.Run(name, func(t *testing.T) {
			if addr := get(t); addr == "" {
				t.Fatal("empty address")
			}
		})
	}
}

// TestOwnRedisCluster: a throwaway cluster forms, a master killed stops
// answering while the others serve their slots, and restarted it rejoins
// as the same node and the cluster is ok again.
func TestOwnRedisCluster(t *testing.T) {
	c := StartRedisCluster(t, 3)
	ctx := context.Background()
	id := func(i int) string {
		cl := c.client(i)
		defer cl.Close()
		s, err := cl.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := id(1)
	c.Kill(1)
	if c.running(1) {
		t.Fatal("killed node still answers")
	}
	survivor := c.client(0)
	defer survivor.Close()
	// Any key: it is this master's, or the answer is MOVED, never CLUSTERDOWN.
	if err := survivor.Set(ctx, "x", 1, 0).Err(); err != nil && !strings.Contains(err.Error(), "MOVED") {
		t.Errorf("a surviving master refuses commands: %v", err)
	}
	c.Restart(1)
	if after := id(1); after != before {
		t.Errorf("restarted node is %s, was %s", after, before)
	}
}

// TestBlackhole: a connection to the blackhole opens, and a read on it
// waits for its own deadline: nothing ever comes.
func TestBlackhole(t *testing.T) {
	c, err := net.Dial("tcp", Blackhole(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("PING\r\n"))
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want a timeout", n, err)
	}
}
