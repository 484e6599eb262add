package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/webhook"
)

// The webhooks verify with the maintained standardwebhooks package (npm),
// not only with our own code: each delivery of a join/chat/leave is
// handed, headers and body as received, to testdata/verify/verify.mjs.
func TestSignaturesVerifyWithStandardWebhooksNPM(t *testing.T) {
	node := requireVerifier(t)
	rcv := newReceiver(t, nil)
	n := startNode(t, rcv, webhook.Config{}, livesync.Options{})
	a := n.dial(t, "ann")
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "héllo \u2028 <&>", "metadata": map[string]any{"x": []int{1}}})
	a.Expect(protocol.MsgChatMessage, nil)
	a.Send(protocol.MsgLeaveRoom, nil)
	got := rcv.wait("user.online, room.occupied, member.joined, chat.message, member.left, room.vacated",
		func(d []delivery) bool { return len(d) >= 6 })
	for _, d := range got {
		if err := verifyWithNode(t, node, testSecret, &d); err != nil {
			t.Fatalf("%s %s: standardwebhooks refused it: %v", d.Type, d.ID, err)
		}
		// A tampered body must fail, or the check above proves nothing.
		bad := d
		bad.Body = bytes.Replace(d.Body, []byte(`"type"`), []byte(`"typ\u0065"`), 1)
		if verifyWithNode(t, node, testSecret, &bad) == nil {
			t.Fatalf("%s: a tampered body verified", d.Type)
		}
	}
}

// requireVerifier returns the node binary once testdata/verify's
// node_modules is installed, and skips the test otherwise (fails it when
// the environment promises every tool).
func requireVerifier(t *testing.T) string {
	const install = "(cd webhook/testdata/verify && npm ci)"
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join("testdata", "verify", "node_modules", "standardwebhooks", "package.json"))
	}
	if err != nil {
		if os.Getenv(testsvc.RequireEnv) != "" {
			t.Fatalf("node and %s are required (%s is set): %v", install, testsvc.RequireEnv, err)
		}
		t.Skipf("node or the standardwebhooks package is missing (install: %s): %v", install, err)
	}
	return node
}

func verifyWithNode(t *testing.T, node, secret string, d *delivery) error {
	in, _ := json.Marshal(map[string]any{"secret": secret, "body": string(d.Body), "headers": map[string]string{
		"webhook-id": d.ID, "webhook-timestamp": d.Timestamp, "webhook-signature": d.Signature}})
	ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "verify", "verify.mjs"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return &nodeError{err, stderr.String()}
	}
	return nil
}

type nodeError struct {
	err    error
	stderr string
}

func (e *nodeError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }
