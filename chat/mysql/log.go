package mysql

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/go-sql-driver/mysql"
)

// The driver logs through a logger of its own, by default a log.Logger on
// stderr: "[mysql] 2025/01/02 15:04:05 connection.go:49: closing bad idle
// connection: EOF". That line reports what the store expects and handles:
// a pooled connection that the server (wait_timeout, a restart) or a
// proxy closed while it sat idle is found dead before use, dropped and
// replaced, and no error reaches the caller. The driver's other messages
// accompany an error that the store returns anyway. Printed on stderr
// they bypass the application's logging and alarm operators for nothing,
// so the store passes them to slog, at debug level, where they still help
// to diagnose connection churn.
//
// The store sets the logger of its own connector (mysql.Config.Logger)
// rather than calling mysql.SetLogger, which would change the logging of
// every other user of the driver in the process, and would not even reach
// the store's connections: a Config copies the default logger when it is
// made, so a DSN parsed before SetLogger keeps the stderr logger. A
// logger the caller chose (in the Config passed to NewFromConfig, or with
// mysql.SetLogger before the DSN was parsed) is kept.

// slogDriverLogger is a mysql.Logger writing to slog's default logger at
// debug level.
type slogDriverLogger struct{}

func (slogDriverLogger) Print(v ...any) {
	ctx := context.Background()
	l := slog.Default()
	if !l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	l.DebugContext(ctx, fmt.Sprint(v...), "logger", "go-sql-driver/mysql")
}

// isDriverDefaultLogger reports whether l is the driver's own stderr
// logger, which the store replaces.
func isDriverDefaultLogger(l mysql.Logger) bool {
	if l == nil {
		return true
	}
	ll, ok := l.(*log.Logger)
	return ok && ll.Writer() == os.Stderr && ll.Prefix() == "[mysql] "
}
